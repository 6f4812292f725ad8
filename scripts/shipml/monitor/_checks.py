"""The checks of production data that are not deepchecks': columns, volume, corrupt lines,
null rates, out-of-range rates and performance against late labels.

Each ``measure_*`` function returns numbers; each ``judge_*`` function turns numbers and a
threshold into check records whose names read as sentences with the threshold in them. No I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shipml.errors import ConfigError
from shipml.results import Check, CheckStatus

Severity = Literal["fail", "warn"]
Metric = Literal["accuracy", "roc_auc", "mae", "rmse"]

NO_COMMON_COLUMNS = (
    "{source}: none of the model's features is a column here: these rows are not this model's "
    "inputs. The model reads {features}; the data has {columns}. Point monitor at the right logs "
    "(monitor.logs.path) or model (model.path)"
)
#: metrics where a higher value is better
HIGHER_IS_BETTER = {"accuracy": True, "roc_auc": True, "mae": False, "rmse": False}


@dataclass(frozen=True)
class ColumnStats:
    """What was measured of one feature in reference and production."""

    name: str
    kind: Literal["numeric", "categorical"]
    reference_null_rate: float
    production_null_rate: float
    #: share of production values outside the reference's range or categories
    out_of_range_rate: float
    reference_min: Any = None
    reference_max: Any = None
    new_categories: tuple[str, ...] = ()


def _pct(value: float) -> str:
    return f"{value:.1%}"


def judge_columns(production_columns: Sequence[str], features: Sequence[str], source: str, *,
                  max_missing: int, max_new: int, new_severity: Severity,
                  ignored: Sequence[str] = ()) -> list[Check]:
    """Return the checks of missing and new columns.

    Raises ConfigError when no feature of the model is a column of production at all: the wrong
    logs or the wrong model, not drift.
    """
    present = set(production_columns)
    missing = [name for name in features if name not in present]
    if len(missing) == len(features):
        raise ConfigError(NO_COMMON_COLUMNS.format(
            source=source, features=", ".join(features),
            columns=", ".join(production_columns) or "no columns"))
    skip = set(features) | set(ignored)
    new = [name for name in production_columns if name not in skip]
    checks = [
        Check(name=f"production carries every feature the model reads (at most {max_missing} "
                   f"missing)",
              status="pass" if len(missing) <= max_missing else "fail",
              observed=len(missing), threshold=max_missing,
              detail=(f"missing: {', '.join(missing)}" if missing else
                      f"all {len(features)} features present"),
              group="columns"),
        Check(name=f"production has at most {max_new} columns the model does not read",
              status="pass" if len(new) <= max_new else new_severity,
              observed=len(new), threshold=max_new,
              detail=f"new: {', '.join(new)}" if new else "no new columns", group="columns"),
    ]
    return checks


def judge_volume(rows: int, min_records: int, source: str) -> Check:
    """Return the volume check: fewer rows than ``min_records`` is an ``error``, never a pass."""
    return Check(name=f"production has at least {min_records} rows to judge",
                 status="pass" if rows >= min_records else "error", observed=rows,
                 threshold=min_records,
                 detail=(f"{rows} rows from {source}" if rows >= min_records else
                         f"only {rows} rows from {source}: too little traffic to judge drift; "
                         f"widen monitor.logs.since, raise serve.log_predictions.sample or lower "
                         f"monitor.min_records"),
                 group="volume")


def judge_corrupt(lines: int, corrupt: int, limit: float, examples: Sequence[str]) -> Check:
    """Return the corrupt-lines check: none passes, some under ``limit`` warn (they were skipped)."""
    rate = corrupt / lines if lines else 0.0
    return Check(name=f"corrupt log lines are at most {_pct(limit)} of the log",
                 status="pass" if corrupt == 0 else "warn", observed=corrupt, threshold=limit,
                 detail=(f"{corrupt} of {lines} lines ({_pct(rate)}) skipped: "
                         + "; ".join(examples)) if corrupt else f"{lines} lines, none corrupt",
                 group="volume")


def measure_columns(reference: pd.DataFrame, production: pd.DataFrame, features: Sequence[str],
                    categorical: Sequence[str], margin: float = 0.0) -> list[ColumnStats]:
    """Return null and out-of-range rates of each feature present in both frames; a number is
    out of range outside the reference's [min, max] widened by ``margin`` of its span."""
    found = []
    for name in features:
        if name not in production.columns or name not in reference.columns:
            continue
        ref = reference[name]
        prod = production[name]
        ref_null = float(ref.isna().mean())
        prod_null = float(prod.isna().mean())
        present = prod.dropna()
        numeric = name not in categorical and pd.api.types.is_numeric_dtype(ref)
        if numeric:
            values = pd.to_numeric(present, errors="coerce")
            span = float(ref.max() - ref.min()) if ref.notna().any() else 0.0
            low, high = ref.min() - margin * span, ref.max() + margin * span
            outside = int(((values < low) | (values > high) | values.isna()).sum())
            rate = outside / len(present) if len(present) else 0.0
            found.append(ColumnStats(name, "numeric", ref_null, prod_null, rate,
                                     _plain(low), _plain(high)))
        else:
            known = set(ref.dropna().astype(str).unique())
            as_text = present.astype(str)
            unseen = ~as_text.isin(known)
            rate = float(unseen.mean()) if len(present) else 0.0
            new = tuple(sorted(as_text[unseen].unique()[:5]))
            found.append(ColumnStats(name, "categorical", ref_null, prod_null, rate,
                                     new_categories=new))
    return found


def judge_null_rates(stats: Sequence[ColumnStats], max_increase: float,
                     severity: Severity) -> list[Check]:
    """Return one check per feature: its null rate exceeds the reference's by at most
    ``max_increase``."""
    checks = []
    for column in stats:
        allowed = column.reference_null_rate + max_increase
        status: CheckStatus = "pass" if column.production_null_rate <= allowed + 1e-12 else severity
        checks.append(Check(
            name=f"null rate of {column.name} is at most {_pct(max_increase)} above the "
                 f"reference's ({_pct(column.reference_null_rate)})",
            status=status, observed=round(column.production_null_rate, 6),
            threshold=round(allowed, 6),
            detail=f"{_pct(column.production_null_rate)} missing in production",
            group="null rate"))
    return checks


def judge_out_of_range(stats: Sequence[ColumnStats], max_rate: float,
                       severity: Severity) -> list[Check]:
    """Return one check per feature: at most ``max_rate`` of its values lie outside the
    reference's range (numbers) or categories."""
    checks = []
    for column in stats:
        if column.kind == "numeric":
            name = (f"at most {_pct(max_rate)} of {column.name} lies outside the reference's "
                    f"range [{column.reference_min:.4g}, {column.reference_max:.4g}]")
            detail = f"{_pct(column.out_of_range_rate)} outside"
        else:
            name = f"at most {_pct(max_rate)} of {column.name} is a category the reference lacks"
            detail = (f"{_pct(column.out_of_range_rate)} unseen"
                      + (f": {', '.join(column.new_categories)}" if column.new_categories else ""))
        checks.append(Check(name=name,
                            status="pass" if column.out_of_range_rate <= max_rate else severity,
                            observed=round(column.out_of_range_rate, 6), threshold=max_rate,
                            detail=detail, group="out of range"))
    return checks


def choose_metric(requested: str, task: str, has_probabilities: bool) -> Metric:
    """Return the metric ``requested`` names, or the default for ``task`` (auto).

    Raises ConfigError for a metric the task or outputs cannot give."""
    if requested == "auto":
        return "mae" if task == "regression" else "accuracy"
    if requested in ("mae", "rmse") and task != "regression":
        raise ConfigError(f"monitor.labels.metric: {requested} is for regressors; this model is "
                          f"a {task} classifier (use accuracy or roc_auc)")
    if requested in ("accuracy", "roc_auc") and task == "regression":
        raise ConfigError(f"monitor.labels.metric: {requested} is for classifiers; this model is "
                          f"a regressor (use mae or rmse)")
    if requested == "roc_auc" and (task != "binary" or not has_probabilities):
        raise ConfigError("monitor.labels.metric: roc_auc needs a binary classifier with "
                          "probabilities; use accuracy")
    return requested  # type: ignore[return-value]


def score(metric: Metric, truth: NDArray[Any], predictions: NDArray[Any],
          probabilities: NDArray[Any] | None, classes: Sequence[Any] | None) -> float:
    """Return ``metric`` of ``predictions`` (or the positive class's probabilities, roc_auc)."""
    if metric == "accuracy":
        return float(np.mean(_same(truth, predictions)))
    if metric == "mae":
        return float(np.mean(np.abs(truth.astype(float) - predictions.astype(float))))
    if metric == "rmse":
        return float(np.sqrt(np.mean((truth.astype(float) - predictions.astype(float)) ** 2)))
    assert probabilities is not None and classes is not None
    positive = _same(truth, np.full(len(truth), classes[-1], dtype=object))
    return _auc(positive, probabilities[:, -1])


def _same(truth: NDArray[Any], predictions: NDArray[Any]) -> NDArray[Any]:
    # 1 and "1" and 1.0 are the same label once a CSV or JSON has been through them
    return np.asarray([str(_plain(a)) == str(_plain(b)) or _num_equal(a, b)
                       for a, b in zip(truth, predictions, strict=True)])


def _num_equal(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _auc(positive: NDArray[Any], scores: NDArray[Any]) -> float:
    positives = int(positive.sum())
    negatives = len(positive) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = pd.Series(scores).rank().to_numpy()
    return float((ranks[positive].sum() - positives * (positives + 1) / 2)
                 / (positives * negatives))


def judge_performance(metric: Metric, production: float, reference: float, rows: int,
                      max_drop: float, min_rows: int) -> Check:
    """Return the performance check: production at most ``max_drop`` worse than reference; an
    ``error`` with fewer than ``min_rows`` labelled rows."""
    higher = HIGHER_IS_BETTER[metric]
    worse = "below" if higher else "above"
    name = (f"{metric} on labelled production rows is at most {max_drop:g} {worse} the "
            f"reference's ({reference:.4g})")
    if rows < min_rows:
        return Check(name=name, status="error", observed=rows, threshold=min_rows,
                     detail=f"only {rows} labelled rows joined, fewer than monitor.labels.min_rows "
                            f"({min_rows})", group="performance")
    drop = reference - production if higher else production - reference
    return Check(name=name, status="pass" if drop <= max_drop + 1e-12 else "fail",
                 observed=round(production, 6),
                 threshold=round(reference - max_drop if higher else reference + max_drop, 6),
                 detail=f"{metric} {production:.4g} on {rows} rows (reference {reference:.4g})",
                 group="performance")


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
