"""How a model reads a table: the one binding every stage that feeds the model uses.

A model is bound to a table once, the same way in ``validate``, ``monitor`` and ``init``: the
columns it reads (its input names for a per-column export, the table's columns minus the label
and ``model.ignore_columns`` for one tensor, or ``model.features``), which of them are
categorical, and the task, from the width of the model's probability output (a sample of rows is
run to learn it) and the label's values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shipml.data import Table, Task, infer_categorical, infer_task
from shipml.errors import ConfigError, first_line
from shipml.onnx_model import OnnxModel

#: rows run through the model to learn the width of its probability output
SAMPLE_ROWS = 200
UNKNOWN_IGNORED = "{key}: {unknown} are not columns of {source}; columns: {columns}"
UNKNOWN_CATEGORICAL = "{key}: {unknown} are not features; features: {features}"
REGRESSION_WITH_PROBABILITIES = ("{key}: task is regression but the model outputs probabilities "
                                 "for {width} classes; use binary or multiclass")
CLASSES_WITHOUT_PROBABILITIES = ("{key}: task is {task} but the model has no probability output "
                                 "and the label is continuous; use regression")
CANNOT_RUN = "{path}: onnxruntime could not run the model on {source}: {reason}"


def model_key(name: str) -> str:
    """Return ``model.<name>``: where a binding key is written in ``shipml.yaml``."""
    return f"model.{name}"


@dataclass(frozen=True)
class ModelBinding:
    """What the model reads of a table and what it predicts."""

    #: the table's columns the model reads, in the order it reads them
    features: list[str]
    categorical: list[str]
    #: the label column, None where there is none
    label: str | None
    #: the table's columns that are neither the label nor read by the model
    unread: list[str]
    task: Task
    #: the number of probability columns the model outputs; None for a model without them
    width: int | None


def bind_model(model: OnnxModel, table: Table, *, label: str | None,
               ignore_columns: Sequence[str] = (), categorical: Sequence[str] | None = None,
               task: str = "auto", where: Callable[[str], str] = model_key) -> ModelBinding:
    """Return how ``model`` reads ``table``.

    ``label`` is left out of the features (None: the table has none); ``ignore_columns`` and
    ``categorical`` are ``model.ignore_columns`` and ``model.categorical_features`` (None:
    inferred from the column types and the model's text inputs); ``task`` is ``model.task``.
    ``where`` names a ``model`` key in messages.

    Raises ConfigError naming the key for an ignored column the table lacks, a categorical
    feature the model does not read, a task the model's outputs contradict, model inputs the
    table lacks, and a model onnxruntime cannot run on the table's rows.
    """
    ignored = set(ignore_columns)
    unknown_ignored = sorted(ignored - set(table.columns))
    if unknown_ignored:
        raise ConfigError(UNKNOWN_IGNORED.format(
            key=where("ignore_columns"), unknown=unknown_ignored, source=table.source,
            columns=", ".join(table.columns)))
    candidates = [c for c in table.columns if c != label and c not in ignored]
    features = model.bind_columns(candidates, table.source)
    found_categorical = _categorical(model, table, features, categorical, where)
    width = probability_width(model, table, features)
    labels = table.frame[label] if label is not None and label in table.frame.columns else None
    return ModelBinding(
        features=features, categorical=found_categorical, label=label,
        unread=[c for c in candidates if c not in features],
        task=resolve_task(task, labels, width, where), width=width)


def probability_width(model: OnnxModel, table: Table, features: Sequence[str]) -> int | None:
    """Return the number of probability columns the model outputs on ``table``'s first rows,
    None for a model without a probability output (a regressor).

    Raises ConfigError when onnxruntime cannot run the model on those rows.
    """
    if not model.is_classifier:
        return None
    probabilities = predict(model, table.frame.head(SAMPLE_ROWS), list(features), table.source)[1]
    return probabilities.shape[1] if probabilities is not None else None


def predict(model: OnnxModel, frame: pd.DataFrame, features: list[str],
            source: str) -> tuple[NDArray[Any], NDArray[Any] | None]:
    """Return ``(predictions, probabilities or None)`` for the rows of ``frame``.

    Raises ConfigError naming the model and ``source`` when onnxruntime cannot run them.
    """
    try:
        return model.run(frame[features])
    except ConfigError:
        raise
    except Exception as exc:  # onnxruntime's own exception types
        raise ConfigError(CANNOT_RUN.format(path=model.path, source=source,
                                            reason=first_line(exc))) from None


def resolve_task(requested: str, labels: pd.Series | None, width: int | None,
                 where: Callable[[str], str] = model_key) -> Task:
    """Return the task: ``requested`` when it is not ``auto``, else what the model's probability
    width (binary for two, multiclass for more) or, for a model without probabilities, the
    labels say (regression without labels).

    Raises ConfigError naming ``model.task`` when the model's outputs contradict it.
    """
    if requested == "auto":
        if labels is None and width is None:
            return "regression"
        return infer_task(labels if labels is not None else pd.Series(dtype=object), width)
    task = cast(Task, requested)
    if task == "regression" and width is not None:
        raise ConfigError(REGRESSION_WITH_PROBABILITIES.format(key=where("task"), width=width))
    if task != "regression" and width is None and labels is not None \
            and pd.api.types.is_float_dtype(labels):
        raise ConfigError(CLASSES_WITHOUT_PROBABILITIES.format(key=where("task"), task=task))
    return task


def model_classes(model: OnnxModel, width: int, observed: Sequence[Any]) -> list[Any]:
    """Return the class labels in probability-column order, once the model has run: the model's
    own where it names them (a ZipMap's keys), else the values of the ``observed`` columns
    (labels and predictions) in sorted order where there are ``width`` of them, else
    ``0 .. width - 1``."""
    known = getattr(model, "classes_", None)
    if known is not None and not np.array_equal(known, np.arange(width)):
        return [_plain(value) for value in known]
    values = pd.concat([pd.Series(column) for column in observed]) if observed else pd.Series()
    ordered = sorted(_plain(value) for value in values.dropna().unique())
    if len(ordered) == width:
        return ordered
    return list(range(width))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _categorical(model: OnnxModel, table: Table, features: list[str],
                 given: Sequence[str] | None, where: Callable[[str], str]) -> list[str]:
    if given is not None:
        unknown = [c for c in given if c not in features]
        if unknown:
            raise ConfigError(UNKNOWN_CATEGORICAL.format(
                key=where("categorical_features"), unknown=unknown,
                features=", ".join(features)))
        return list(given)
    found = infer_categorical(table.frame, features)
    if model.layout == "columns":
        found += [spec.name for spec in model.inputs
                  if spec.type == "tensor(string)" and spec.name not in found]
    return found
