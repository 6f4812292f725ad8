"""validate's deepchecks plan: the named suites and ``validate.checks`` in one suite, run once
over the precomputed predictions, its HTML report, and permutation feature importance.

The check builder and the run are :mod:`shipml.validate.suite`'s, shared with monitor.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shipml.config import Config
from shipml.errors import ConfigError
from shipml.validate import suite
from shipml.validate._baseline import baseline_section
from shipml.validate._inputs import ModelInputs

log = logging.getLogger("shipml.validate")

SUITE_NAMES = ("data_integrity", "train_test_validation", "model_evaluation", "full_suite")


def build_plan(config: Config) -> suite.SuitePlan:
    """Assemble one deepchecks Suite from the configured suites and explicit checks.

    Raises ConfigError naming the key for an unknown suite, check or condition, and for
    parameters the check or condition does not take.
    """
    suite.import_deepchecks()
    from deepchecks.tabular import Suite, suites

    section = config.section("validate")
    valid_checks = suite.check_names()
    for key in ("exclude_checks", "warn_only"):
        for index, name in enumerate(section[key]):
            if name not in valid_checks:
                raise ConfigError(suite.unknown_name(config.where("validate", key, index),
                                                     "check", name, valid_checks))
    excluded = set(section["exclude_checks"])
    # With predictions handed over, deepchecks would time a lookup table, not the model;
    # `shipml latency` measures the real thing. Named under `checks:` it still runs.
    excluded.add("ModelInferenceTime")
    warn_only = set(section["warn_only"])

    selected: list[Any] = []
    for index, suite_name in enumerate(section["suites"]):
        factory = getattr(suites, suite_name, None)
        if factory is None:  # the schema already limits names; guard against a new deepchecks
            raise ConfigError(suite.unknown_name(config.where("validate", "suites", index),
                                                 "suite", suite_name, list(SUITE_NAMES)))
        for check in factory().checks.values():
            if type(check).__name__ in excluded:
                continue
            if any(type(existing) is type(check) for existing in selected):
                continue  # full_suite and the named suites share checks; run each once
            selected.append(check)

    explicit = suite.build_checks(config, ("validate", "checks"), section["checks"], valid_checks)
    selected += explicit.checks
    severities = explicit.severities

    if not selected:
        if not section["pytest"] and baseline_section(config) is None:
            raise ConfigError(
                f"{config.where('validate', 'suites')}: nothing to run: no suites, no checks "
                f"(after exclude_checks), no pytest model tests and no baseline; name a suite "
                f"({', '.join(SUITE_NAMES)}), add checks, set validate.pytest or "
                f"validate.baseline"
            )
        return suite.SuitePlan(suite=None, severities={}, config_lines={})
    for check in selected:
        if type(check).__name__ in warn_only:
            count = len(getattr(check, "_conditions", {}))
            severities[id(check)] = ["warn"] * count
    return suite.SuitePlan(suite=Suite("shipml validate", *selected), severities=severities,
                           config_lines=explicit.config_lines,
                           given_params=explicit.given_params,
                           condition_params=explicit.condition_params)


def run_plan(plan: suite.SuitePlan, inputs: ModelInputs, *,
             feature_importance: pd.Series | None, with_display: bool,
             workers: int = 1) -> suite.Outcome:
    """Run the suite once over precomputed predictions and return the condition records.

    ``workers`` processes share the suite's checks (see :mod:`shipml.validate._parallel`); the
    result is the one a serial run gives. Raises ConfigError as :func:`suite.read_outcome` does.
    """
    from deepchecks.tabular import Dataset

    if plan.suite is None:
        return suite.Outcome(checks=[])
    label_type = inputs.task
    train = Dataset(inputs.train.frame, label=inputs.label, features=inputs.features,
                    cat_features=inputs.categorical, label_type=label_type,
                    dataset_name="train")
    test = Dataset(inputs.test.frame, label=inputs.label, features=inputs.features,
                   cat_features=inputs.categorical, label_type=label_type, dataset_name="test")
    kwargs: dict[str, Any] = {
        "train_dataset": train,
        "test_dataset": test,
        "y_pred_train": inputs.train_predictions.labels,
        "y_pred_test": inputs.test_predictions.labels,
        "with_display": with_display,
    }
    if inputs.train_predictions.probabilities is not None:
        kwargs["y_proba_train"] = inputs.train_predictions.probabilities
        kwargs["y_proba_test"] = inputs.test_predictions.probabilities
    if inputs.classes is not None:
        kwargs["model_classes"] = inputs.classes
    if feature_importance is not None:
        kwargs["feature_importance"] = feature_importance
    return suite.run(plan, kwargs, workers)


def save_html(outcome: suite.Outcome, path: Path) -> bool:
    """Write deepchecks' own HTML report (self-contained) to ``path``; False when nothing ran."""
    if outcome.suite_result is None:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome.suite_result.save_as_html(str(path), as_widget=False, connected=False)
    return True


def permutation_importance(inputs: ModelInputs, rows: int, seed: int) -> pd.Series:
    """Return each feature's share of the score lost when it is shuffled (sums to 1).

    Predictions are batched through onnxruntime: one call per feature and repeat on a sample.
    """
    frame = inputs.test.frame
    if len(frame) > rows:
        frame = frame.sample(n=rows, random_state=seed)
    features = frame[inputs.features].reset_index(drop=True)
    truth = frame[inputs.label].to_numpy()
    rng = np.random.default_rng(seed)
    base = _score(inputs, features, truth)
    drops = {}
    for name in inputs.features:
        losses = []
        for _ in range(2):
            shuffled = features.copy()
            shuffled[name] = rng.permutation(shuffled[name].to_numpy())
            losses.append(base - _score(inputs, shuffled, truth))
        drops[name] = max(float(np.mean(losses)), 0.0)
    importance = pd.Series(drops, dtype=float)
    total = importance.sum()
    if total <= 0:
        return pd.Series(1.0 / len(importance), index=importance.index)
    return importance / total


def _score(inputs: ModelInputs, features: pd.DataFrame, truth: NDArray[Any]) -> float:
    predicted, _ = inputs.model.run(features)
    mask = ~pd.isna(truth)
    if inputs.task == "regression":
        error = np.abs(predicted[mask].astype(float) - truth[mask].astype(float))
        return -float(np.mean(error))
    return float(np.mean(predicted[mask] == truth[mask]))
