"""Everything ``validate`` judges, loaded once: the model, its data, the task and predictions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shipml.config import Config
from shipml.data import Table, Task, infer_categorical, infer_task, load_table, require_label
from shipml.errors import ConfigError, first_line
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

    model = OnnxModel(model_path, key=config.where("model", "path"),
                      features=section.get("features"), batch_size=batch_size)
    train = load_table(train_path, config.where("model", "train"))
    test = load_table(test_path, config.where("model", "test"))
    require_label(train, label, config.where("model", "label"))
    require_label(test, label, config.where("model", "label"))

    ignored = set(section.get("ignore_columns") or [])
    unknown_ignored = sorted(ignored - set(train.columns))
    if unknown_ignored:
        raise ConfigError(
            f"{config.where('model', 'ignore_columns')}: {unknown_ignored} are not columns of "
            f"{train.source}; columns: {', '.join(train.columns)}"
        )
    candidates = [c for c in train.columns if c != label and c not in ignored]
    features = model.bind_columns(candidates, train.source)
    missing_in_test = [c for c in features if c not in test.columns]
    if missing_in_test:
        raise ConfigError(
            f"{test.source}: feature columns {missing_in_test} are missing; the model reads "
            f"{features}; test columns: {', '.join(test.columns)}"
        )

    categorical = section.get("categorical_features")
    if categorical is None:
        categorical = infer_categorical(train.frame, features)
        if model.layout == "columns":
            categorical += [
                spec.name for spec in model.inputs
                if spec.type == "tensor(string)" and spec.name not in categorical
            ]
    else:
        unknown = [c for c in categorical if c not in features]
        if unknown:
            raise ConfigError(
                f"{config.where('model', 'categorical_features')}: {unknown} are not features; "
                f"features: {', '.join(features)}"
            )

    started = time.perf_counter()
    train_predictions = _predict(model, train, features)
    test_predictions = _predict(model, test, features)
    prediction_seconds = time.perf_counter() - started

    classes = None
    width = None
    if train_predictions.probabilities is not None:
        width = train_predictions.probabilities.shape[1]
        classes = _classes(model, train, test, label, train_predictions, width)
    task = _task(section.get("task", "auto"), train.frame[label], width, config)
    return ModelInputs(
        model=model, train=train, test=test, label=label, features=features,
        categorical=list(categorical), task=task, classes=classes,
        train_predictions=train_predictions, test_predictions=test_predictions,
        prediction_seconds=prediction_seconds,
    )


def _predict(model: OnnxModel, table: Table, features: list[str]) -> Predictions:
    try:
        labels, probabilities = model.run(table.frame[features])
    except ConfigError:
        raise
    except Exception as exc:  # onnxruntime's own exception types
        raise ConfigError(
            f"{model.path}: onnxruntime could not run the model on {table.source}: "
            f"{first_line(exc)}"
        ) from None
    return Predictions(labels=labels, probabilities=probabilities)


def _classes(model: OnnxModel, train: Table, test: Table, label: str,
             predictions: Predictions, width: int) -> list[Any]:
    known = getattr(model, "classes_", None)
    if known is not None and not np.array_equal(known, np.arange(width)):
        return [_plain(value) for value in known]
    observed = pd.concat([train.frame[label], test.frame[label],
                          pd.Series(predictions.labels)]).dropna().unique()
    ordered = sorted(_plain(value) for value in observed)
    if len(ordered) == width:
        return ordered
    return list(range(width))


def _task(requested: str, labels: pd.Series, width: int | None, config: Config) -> Task:
    if requested != "auto":
        task = cast(Task, requested)
        if task == "regression" and width is not None:
            raise ConfigError(
                f"{config.where('model', 'task')}: task is regression but the model outputs "
                f"probabilities for {width} classes; use binary or multiclass"
            )
        if task != "regression" and width is None and pd.api.types.is_float_dtype(labels):
            raise ConfigError(
                f"{config.where('model', 'task')}: task is {task} but the model has no "
                f"probability output and the label is continuous; use regression"
            )
        return task
    return infer_task(labels, width)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
