"""Parity: does a candidate answer like the original on the same real rows? Measure, then judge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from shipml.errors import ConfigError
from shipml.measure.inputs import InputPlan
from shipml.onnx_model import OnnxModel, load_session
from shipml.results import Check, CheckStatus

Kind = Literal["classification", "regression", "embedding"]
#: rows per run when the model is fed tensors (synthetic or from a tensor file)
BATCH = 8


@dataclass(frozen=True)
class Answers:
    """What one model answered on the parity rows."""

    labels: NDArray[Any] | None = None
    values: NDArray[Any] | None = None
    vectors: NDArray[Any] | None = None


def infer_kind(plan: InputPlan, original: Path, task: str) -> Kind:
    """Return the parity kind for a model: classification or regression for a tabular model fed
    rows of a table, embedding (outputs compared by cosine) for any other."""
    if plan.table is not None:
        model = OnnxModel(original)
        if model.is_classifier or task in ("binary", "multiclass"):
            return "classification"
        output = model.outputs[0]
        numeric = output.type in ("tensor(float)", "tensor(double)", "tensor(float16)")
        width = output.shape[1] if len(output.shape) > 1 else 1
        if task == "regression" or (numeric and width in (1, None) and len(model.outputs) == 1):
            return "regression"
    return "embedding"


def answers(path: Path, plan: InputPlan, rows: int, kind: Kind,
            features: list[str] | None = None) -> Answers:
    """Run the model at ``path`` on the parity rows and return its answers: labels or values
    of a tabular model on table rows; else each row's float outputs (class probabilities
    included) as one vector, and its integer or text outputs as one label.

    Raises whatever onnxruntime raises when the model cannot run on these inputs."""
    if plan.table is not None and kind != "embedding":
        frame = plan.table.iloc[:rows]
        model = OnnxModel(path, features=features)
        predictions = model.predict(frame)
        if kind == "classification":
            return Answers(labels=np.asarray(predictions))
        return Answers(values=np.asarray(predictions, dtype=np.float64))
    import onnxruntime as ort

    session = load_session(path)
    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # a failing run is reported once, by the caller
    vectors: list[NDArray[Any]] = []
    labels: list[NDArray[Any]] = []
    for start in range(0, rows, BATCH):
        count = min(BATCH, rows - start)
        floats, texts = _per_row(session.run(None, plan.feeds(count, offset=start), quiet), count)
        if floats:
            vectors.append(np.concatenate(floats, axis=1))
        if texts:
            labels.append(np.array(["|".join(row) for row in np.concatenate(texts, axis=1)]))
    if not vectors and not labels:
        raise ConfigError(f"{path}: the model has no output per row that parity can compare "
                          f"(numbers, labels or class probabilities)")
    return Answers(labels=np.concatenate(labels) if labels else None,
                   vectors=np.concatenate(vectors) if vectors else None)


def _per_row(outputs: list[Any], count: int) -> tuple[list[NDArray[Any]], list[NDArray[Any]]]:
    """Split one batch's outputs into numbers and labels, one row per example; outputs that are
    not per row (a scalar, another first axis) are left out."""
    floats: list[NDArray[Any]] = []
    texts: list[NDArray[Any]] = []
    for output in outputs:
        if isinstance(output, list):  # ZipMap: one {class: probability} dict per row
            if len(output) == count and all(isinstance(row, dict) for row in output):
                keys = sorted(output[0]) if output else []
                floats.append(np.array([[row[key] for key in keys] for row in output],
                                       dtype=np.float64).reshape(count, -1))
            continue
        value = np.asarray(output)
        if value.ndim == 0 or value.shape[0] != count:
            continue
        if np.issubdtype(value.dtype, np.floating):
            floats.append(value.astype(np.float64).reshape(count, -1))
        else:
            texts.append(value.astype(str).reshape(count, -1))
    return floats, texts


def measure(original: Answers, candidate: Answers, truth: NDArray[Any] | None) -> dict[str, Any]:
    """Return the parity figures of ``candidate`` against ``original``."""
    figures: dict[str, Any] = {}
    if original.labels is not None and candidate.labels is not None:
        same = original.labels.astype(str) == candidate.labels.astype(str)
        figures["label_agreement"] = float(same.mean())
        if truth is not None:
            truth_text = truth.astype(str)
            accuracy_original = float((original.labels.astype(str) == truth_text).mean())
            accuracy_candidate = float((candidate.labels.astype(str) == truth_text).mean())
            figures["accuracy_original"] = accuracy_original
            figures["accuracy_candidate"] = accuracy_candidate
            figures["metric_delta"] = abs(accuracy_original - accuracy_candidate)
    if original.values is not None and candidate.values is not None:
        difference = np.abs(original.values - candidate.values)
        floor = max(1e-12, 1e-3 * float(np.max(np.abs(original.values))))
        figures["max_abs_error"] = float(difference.max())
        figures["max_rel_error"] = float(
            (difference / np.maximum(np.abs(original.values), floor)).max())
    if original.vectors is not None and candidate.vectors is not None:
        a, b = original.vectors, candidate.vectors
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cosine = np.where(norms > 0, (a * b).sum(axis=1) / np.where(norms > 0, norms, 1), 1.0)
        figures["min_cosine"] = float(cosine.min())
        figures["mean_cosine"] = float(cosine.mean())
    return figures


def judge(name: str, figures: Mapping[str, Any], thresholds: Mapping[str, Any], rows: int
          ) -> list[Check]:
    """Return the parity checks of candidate ``name`` from its figures and the thresholds."""
    severity: CheckStatus = "fail" if thresholds["severity"] == "fail" else "warn"
    checks = []

    def add(label: str, observed: float, threshold: float, ok: bool, what: str) -> None:
        checks.append(Check(
            name=label, status="pass" if ok else severity, observed=round(observed, 6),
            threshold=threshold, group=f"parity:{name}",
            detail=f"{what} {observed:.6g} against the original on {rows} rows",
        ))

    if "label_agreement" in figures:
        limit = float(thresholds["min_label_agreement"])
        add(f"{name} agrees with the original on at least {limit:.0%} of labels",
            figures["label_agreement"], limit, figures["label_agreement"] >= limit,
            "label agreement")
    if "metric_delta" in figures:
        limit = float(thresholds["max_metric_delta"])
        add(f"{name} keeps accuracy within {limit:g} of the original", figures["metric_delta"],
            limit, figures["metric_delta"] <= limit,
            f"accuracy {figures['accuracy_candidate']:.4f} vs {figures['accuracy_original']:.4f}:"
            " delta")
    if "max_abs_error" in figures and thresholds.get("max_abs_error") is not None:
        limit = float(thresholds["max_abs_error"])
        add(f"{name} stays within {limit:g} absolute error of the original",
            figures["max_abs_error"], limit, figures["max_abs_error"] <= limit,
            "largest absolute error")
    if "max_rel_error" in figures and thresholds.get("max_rel_error") is not None:
        limit = float(thresholds["max_rel_error"])
        add(f"{name} stays within {limit * 100:g}% relative error of the original",
            figures["max_rel_error"], limit, figures["max_rel_error"] <= limit,
            "largest relative error")
    if "min_cosine" in figures:
        limit = float(thresholds["min_cosine"])
        add(f"{name} keeps cosine similarity to the original at or above {limit:g}",
            figures["min_cosine"], limit, figures["min_cosine"] >= limit,
            "smallest cosine similarity")
    return checks
