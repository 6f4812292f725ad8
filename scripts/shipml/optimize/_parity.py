"""Parity: does a candidate answer like the original on the same real rows? Measure, then judge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from shipml.latency.inputs import InputPlan
from shipml.onnx_model import OnnxModel, load_session
from shipml.results import Check, CheckStatus

Kind = Literal["classification", "regression", "embedding"]


@dataclass(frozen=True)
class Answers:
    """What one model answered on the parity rows."""

    labels: NDArray[Any] | None = None
    values: NDArray[Any] | None = None
    vectors: NDArray[Any] | None = None


def infer_kind(plan: InputPlan, original: Path, task: str) -> Kind:
    """Return the parity kind for a model: classification, regression or embedding."""
    if plan.source == "data":
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
    """Run the model at ``path`` on the parity rows and return its answers."""
    if plan.source == "data" and kind != "embedding":
        assert plan.rows is not None
        frame = plan.rows.iloc[:rows]
        model = OnnxModel(path, features=features)
        predictions = model.predict(frame)
        if kind == "classification":
            return Answers(labels=np.asarray(predictions))
        return Answers(values=np.asarray(predictions, dtype=np.float64))
    session = load_session(path)
    batch = 8
    vectors = []
    for start in range(0, rows, batch):
        outputs = session.run(None, plan.feeds(min(batch, rows - start), offset=start))
        floats = [np.asarray(o, dtype=np.float64).reshape(len(o), -1) for o in outputs
                  if isinstance(o, np.ndarray) and np.issubdtype(o.dtype, np.floating)]
        vectors.append(np.concatenate(floats, axis=1))
    return Answers(vectors=np.concatenate(vectors))


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
