"""deepchecks' drift checks on reference and production, built from ``monitor.checks``.

The checks and their conditions are built by the suite builder validate uses
(:mod:`shipml.validate.suite`), so ``monitor.checks`` takes exactly ``validate.checks``' syntax
and its mistakes get the same messages (pointing at ``monitor.checks[i]``); the condition results
become check records the way validate turns them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shipml.config import Config
from shipml.results import Check
from shipml.validate import suite

#: what FeatureDrift's drift_score_less_than allows when its parameters are not given
DEFAULT_FEATURE_THRESHOLD = 0.2


@dataclass(frozen=True)
class DriftPlan:
    """The suite to run and how to read its results."""

    plan: suite.SuitePlan
    #: (numeric, categorical) thresholds of each FeatureDrift condition, for naming columns
    feature_thresholds: tuple[tuple[float, float], ...] = ()


@dataclass
class DriftOutcome:
    """The condition records, deepchecks' drift scores, and checks that did not run."""

    checks: list[Check]
    #: column -> (drift score, method) from the first FeatureDrift
    feature_scores: dict[str, tuple[float, str]] = field(default_factory=dict)
    prediction_score: tuple[float, str] | None = None
    not_run: dict[str, str] = field(default_factory=dict)


def build(config: Config) -> DriftPlan:
    """Return the suite of ``monitor.checks``, each check and condition checked against its
    signature. Raises ConfigError (pointing at ``monitor.checks[i]``) as validate does."""
    suite.import_deepchecks()
    from deepchecks.tabular import Suite

    specs = config.section("monitor")["checks"]
    explicit = suite.build_checks(config, ("monitor", "checks"), specs, suite.check_names())
    thresholds: list[tuple[float, float]] = []
    for spec in specs:
        if spec["check"] != "FeatureDrift":
            continue
        for condition in spec.get("conditions", []):
            if condition["condition"].removeprefix("add_condition_") == "drift_score_less_than":
                params = condition.get("params", {})
                thresholds.append((
                    float(params.get("max_allowed_numeric_score", DEFAULT_FEATURE_THRESHOLD)),
                    float(params.get("max_allowed_categorical_score",
                                     DEFAULT_FEATURE_THRESHOLD))))
    plan = suite.SuitePlan(
        suite=Suite("shipml monitor", *explicit.checks) if explicit.checks else None,
        severities=explicit.severities, config_lines={}, given_params=explicit.given_params,
        condition_params=explicit.condition_params)
    return DriftPlan(plan=plan, feature_thresholds=tuple(thresholds))


def run(drift: DriftPlan, reference: pd.DataFrame, production: pd.DataFrame, *,
        features: Sequence[str], categorical: Sequence[str], label: str | None,
        reference_outputs: tuple[NDArray[Any], NDArray[Any] | None],
        production_outputs: tuple[NDArray[Any], NDArray[Any] | None],
        classes: Sequence[Any] | None, task: str) -> DriftOutcome:
    """Run the suite with reference as deepchecks' train and production as its test data, and
    the predictions handed over; return the records (none when ``monitor.checks`` is empty)."""
    from deepchecks.tabular import Dataset

    if drift.plan.suite is None:
        return DriftOutcome(checks=[])
    columns = [name for name in features if name in production.columns]
    with_label = label is not None and label in production.columns and label in reference.columns
    kept = [*columns, label] if with_label and label else columns
    cats = [name for name in categorical if name in columns]
    # Drift is measured on finite values: an infinity is out of range, which its own check counts
    reference_frame = _finite(reference[kept].reset_index(drop=True))
    # deepchecks refuses predictions for data sets that share an index
    production_frame = _finite(production[kept].reset_index(drop=True))
    production_frame.index = production_frame.index + len(reference_frame)
    label_type = task if task in ("binary", "multiclass", "regression") else None
    common: dict[str, Any] = {"features": columns, "cat_features": cats}
    if with_label:
        common.update(label=label, label_type=label_type)
    else:
        common.update(label=None)
    with suite.quiet():
        train = Dataset(reference_frame, dataset_name="reference", **common)
        test = Dataset(production_frame, dataset_name="production", **common)
    kwargs: dict[str, Any] = {
        "train_dataset": train, "test_dataset": test,
        "y_pred_train": reference_outputs[0], "y_pred_test": production_outputs[0],
        "with_display": False,
    }
    if reference_outputs[1] is not None and production_outputs[1] is not None:
        kwargs["y_proba_train"] = reference_outputs[1]
        kwargs["y_proba_test"] = production_outputs[1]
    if classes is not None:
        kwargs["model_classes"] = list(classes)

    outcome = suite.run(drift.plan, kwargs)
    found = DriftOutcome(checks=outcome.checks, not_run=outcome.not_run)
    for result in outcome.suite_result.results if outcome.suite_result is not None else ():
        name = type(result.check).__name__
        value = getattr(result, "value", None)
        if not isinstance(value, Mapping):
            continue
        if name == "FeatureDrift" and not found.feature_scores:
            found.feature_scores = {
                str(column): (float(entry.get("Drift score") or 0.0), str(entry.get("Method") or ""))
                for column, entry in value.items() if isinstance(entry, Mapping)}
        elif name == "PredictionDrift" and found.prediction_score is None and \
                value.get("Drift score") is not None:
            found.prediction_score = (_largest(value["Drift score"]),
                                      str(value.get("Method") or ""))
    return found


def drifted_columns(outcome: DriftOutcome, drift: DriftPlan,
                    categorical: Sequence[str]) -> list[str]:
    """Return the features whose drift score reaches the FeatureDrift condition's threshold,
    highest score first (the default 0.2 when no FeatureDrift condition is set)."""
    numeric_limit, categorical_limit = (drift.feature_thresholds[0] if drift.feature_thresholds
                                        else (DEFAULT_FEATURE_THRESHOLD, DEFAULT_FEATURE_THRESHOLD))
    found = []
    for column, (value, _method) in outcome.feature_scores.items():
        limit = categorical_limit if column in categorical else numeric_limit
        if value >= limit:
            found.append((value, column))
    return [column for _, column in sorted(found, reverse=True)]


def _finite(frame: pd.DataFrame) -> pd.DataFrame:
    floats = [name for name, dtype in frame.dtypes.items() if dtype.kind == "f"]
    if not floats or not np.isinf(frame[floats].to_numpy()).any():
        return frame
    frame = frame.copy()
    frame[floats] = frame[floats].replace([np.inf, -np.inf], np.nan)
    return frame



def _largest(score: Any) -> float:
    """Return a drift score as one number: a multiclass model's prediction drift is one score
    per class ({class: score}), of which the largest is the model's."""
    if isinstance(score, Mapping):
        return max((float(value) for value in score.values()), default=0.0)
    return float(score)
