"""Everything ``validate`` judges, loaded once: the model, its data, the task and predictions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from shipml.binding import ModelBinding, bind_model, model_classes, predict
from shipml.config import Config
from shipml.data import Table, Task, load_table, require_label
from shipml.errors import ConfigError
from shipml.onnx_model import OnnxModel

MISSING_KEY = (
    "{key} is not set; give it in shipml.yaml, as a flag or an environment variable, e.g.\n"
    "  model:\n    path: model.onnx\n    label: target\n    train: data/train.csv\n"
    "    test: data/test.csv"
)


@dataclass
class Predictions:
    """Labels (or values) and class probabilities for one data set, computed once."""

    labels: NDArray[Any]
    probabilities: NDArray[Any] | None


@dataclass
class ModelInputs:
    """The model, train and test tables, and what was inferred about them."""

    model: OnnxModel
    train: Table
    test: Table
    label: str
    features: list[str]
    categorical: list[str]
    task: Task
    classes: list[Any] | None
    train_predictions: Predictions
    test_predictions: Predictions
    prediction_seconds: float


def require(section: dict[str, Any], key: str, config: Config) -> str:
    """Return ``section[key]`` or raise ConfigError telling where to set ``model.<key>``."""
    value = section.get(key)
    if not value:
        raise ConfigError(MISSING_KEY.format(key=f"model.{key}"))
    return str(value)


def load_inputs(config: Config, batch_size: int) -> ModelInputs:
    """Load and cross-check model and data, then compute every prediction once, in batches.

    Raises ConfigError for a missing key or file, a file that is not ONNX or not a table, a
    missing or empty label, and model inputs that do not match the data's columns.
    """
    section = config.section("model")
    model_path = config.resolve_path(require(section, "path", config), "model", "path")
    label = require(section, "label", config)
    train_path = config.resolve_path(require(section, "train", config), "model", "train")
    test_path = config.resolve_path(require(section, "test", config), "model", "test")

    model = open_model(config, model_path, config.where("model", "path"), batch_size)
    train = load_table(train_path, config.where("model", "train"))
    test = load_table(test_path, config.where("model", "test"))
    require_label(train, label, config.where("model", "label"))
    require_label(test, label, config.where("model", "label"))

    binding = bind(config, model, train)
    features = binding.features
    missing_in_test = [c for c in features if c not in test.columns]
    if missing_in_test:
        raise ConfigError(
            f"{test.source}: feature columns {missing_in_test} are missing; the model reads "
            f"{features}; test columns: {', '.join(test.columns)}"
        )

    started = time.perf_counter()
    train_predictions = predict_table(model, train, features)
    test_predictions = predict_table(model, test, features)
    prediction_seconds = time.perf_counter() - started

    classes = None
    if train_predictions.probabilities is not None:
        classes = model_classes(model, train_predictions.probabilities.shape[1], [
            train.frame[label], test.frame[label], train_predictions.labels])
    return ModelInputs(
        model=model, train=train, test=test, label=label, features=features,
        categorical=binding.categorical, task=binding.task, classes=classes,
        train_predictions=train_predictions, test_predictions=test_predictions,
        prediction_seconds=prediction_seconds,
    )


def open_model(config: Config, path: Path, key: str, batch_size: int) -> OnnxModel:
    """Return the model at ``path`` (``key``: where it is configured) with ``model.features``.

    Raises ConfigError when it is missing or not ONNX."""
    return OnnxModel(path, key=key, features=config.section("model").get("features"),
                     batch_size=batch_size)


def bind(config: Config, model: OnnxModel, train: Table) -> ModelBinding:
    """Return how ``model`` reads ``train`` under the ``model`` section's keys (label, ignored
    and categorical columns, task).

    Raises ConfigError as :func:`shipml.binding.bind_model` does."""
    section = config.section("model")
    return bind_model(model, train, label=section.get("label"),
                      ignore_columns=section.get("ignore_columns") or [],
                      categorical=section.get("categorical_features"),
                      task=section.get("task", "auto"),
                      where=lambda key: config.where("model", key))


def predict_table(model: OnnxModel, table: Table, features: list[str]) -> Predictions:
    """Return ``model``'s predictions for ``table``'s rows (its ``features`` columns).

    Raises ConfigError naming the model and the table when onnxruntime cannot run them."""
    labels, probabilities = predict(model, table.frame, features, table.source)
    return Predictions(labels=labels, probabilities=probabilities)
