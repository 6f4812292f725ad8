"""The bridge to deepchecks: suites and checks from YAML, one run with precomputed predictions,
and deepchecks' condition results turned into shipml check records.

This module and :mod:`shipml.validate._parallel` are the only ones that import deepchecks (the
``shipml[validate]`` extra).
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shipml.config import Config
from shipml.errors import ConfigError, did_you_mean, first_line
from shipml.results import Check, CheckStatus
from shipml.validate._inputs import ModelInputs
from shipml.validate._parallel import run_suite
from shipml.validate._params import check_parameters, parameters

log = logging.getLogger("shipml.validate")

INSTALL_HINT = (
    "deepchecks is not installed in this environment; install the validate extra:\n"
    '  pip install "shipml[validate] @ git+https://github.com/OWNER/shipml@v1"\n'
    "(the validate action does this in its own environment)"
)
SUITE_NAMES = ("data_integrity", "train_test_validation", "model_evaluation", "full_suite")
REFUSED_PARAMETERS = "{where}: {owner} refused its parameters: {reason}"
REJECTED_AT_RUN = ("{where}: {owner} failed with these parameters when it ran: {reason}; check "
                   "their values (valid parameters: {valid})")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?%?")


@dataclass
class Outcome:
    """What deepchecks concluded: one record per condition, and what did not run."""

    checks: list[Check]
    not_run: dict[str, str] = field(default_factory=dict)
    display_only: list[str] = field(default_factory=list)
    suite_result: Any = None


@dataclass(frozen=True)
class _Given:
    """Parameters the user wrote for a check or condition: where, whose, and the names it
    takes."""

    where: str
    owner: str
    valid: str


@dataclass
class _Plan:
    suite: Any
    severities: dict[int, list[str]]
    config_lines: dict[str, int]
    #: id() of each explicit check built with parameters -> where they are written
    given_params: dict[int, _Given] = field(default_factory=dict)
    #: id() of each explicit check -> where each of its conditions' parameters are written
    condition_params: dict[int, list[_Given | None]] = field(default_factory=dict)


def import_deepchecks() -> Any:
    """Return the ``deepchecks.tabular`` module, or raise ConfigError with the install command."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import deepchecks.tabular as tabular
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return tabular


def check_names() -> list[str]:
    """Return every deepchecks tabular check class name."""
    tabular = import_deepchecks()
    from deepchecks.tabular import checks

    del tabular
    return sorted(name for name in dir(checks) if name[:1].isupper())


def build_plan(config: Config) -> _Plan:
    """Assemble one deepchecks Suite from the configured suites and explicit checks.

    Raises ConfigError naming the key for an unknown suite, check or condition, and for
    parameters the check or condition does not take.
    """
    import_deepchecks()
    from deepchecks.tabular import Suite, suites

    section = config.section("validate")
    valid_checks = check_names()
    for key in ("exclude_checks", "warn_only"):
        for index, name in enumerate(section[key]):
            if name not in valid_checks:
                raise ConfigError(_unknown(config.where("validate", key, index), "check", name,
                                           valid_checks))
    excluded = set(section["exclude_checks"])
    # With predictions handed over, deepchecks would time a lookup table, not the model;
    # `shipml latency` measures the real thing. Named under `checks:` it still runs.
    excluded.add("ModelInferenceTime")
    warn_only = set(section["warn_only"])

    selected: list[Any] = []
    for index, suite_name in enumerate(section["suites"]):
        factory = getattr(suites, suite_name, None)
        if factory is None:  # the schema already limits names; guard against a new deepchecks
            raise ConfigError(_unknown(config.where("validate", "suites", index), "suite",
                                       suite_name, list(SUITE_NAMES)))
        for check in factory().checks.values():
            if type(check).__name__ in excluded:
                continue
            if any(type(existing) is type(check) for existing in selected):
                continue  # full_suite and the named suites share checks; run each once
            selected.append(check)

    severities: dict[int, list[str]] = {}
    config_lines: dict[str, int] = {}
    given_params: dict[int, _Given] = {}
    condition_params: dict[int, list[_Given | None]] = {}
    for index, spec in enumerate(section["checks"]):
        name = spec["check"]
        check, given = _explicit_check(config, index, spec, valid_checks)
        if given is not None:
            given_params[id(check)] = given
        conditions = spec.get("conditions", [])
        condition_params[id(check)] = [
            _add_condition(config, (index, c_index), check, condition)
            for c_index, condition in enumerate(conditions)]
        severities[id(check)] = [condition.get("severity", "fail") for condition in conditions]
        line = config.lines.get(("validate", "checks", index))
        if line:
            config_lines.setdefault(name, line)
        selected.append(check)

    if not selected:
        if not section["pytest"]:
            raise ConfigError(
                f"{config.where('validate', 'suites')}: nothing to run: no suites, no checks "
                f"(after exclude_checks) and no pytest model tests; name a suite "
                f"({', '.join(SUITE_NAMES)}), add checks or set validate.pytest"
            )
        return _Plan(suite=None, severities={}, config_lines={})
    for check in selected:
        if type(check).__name__ in warn_only:
            count = len(getattr(check, "_conditions", {}))
            severities[id(check)] = ["warn"] * count
    return _Plan(suite=Suite("shipml validate", *selected), severities=severities,
                 config_lines=config_lines, given_params=given_params,
                 condition_params=condition_params)


def _explicit_check(config: Config, index: int, spec: dict[str, Any],
                    valid_checks: list[str]) -> tuple[Any, _Given | None]:
    """Return the check ``validate.checks[index]`` names, built with its parameters, and where
    those are written (None without parameters).

    Raises ConfigError for an unknown check, a parameter its ``__init__`` does not take, a value
    of the wrong type, and a value the check refuses when it is built.
    """
    from deepchecks.tabular import checks

    name = spec["check"]
    check_class = getattr(checks, name, None) if name in valid_checks else None
    if check_class is None:
        raise ConfigError(_unknown(config.where("validate", "checks", index, "check"), "check",
                                   name, valid_checks))
    params = spec.get("params", {})
    check_parameters(params, check_class.__init__, name,
                     lambda key: config.where("validate", "checks", index, "params", key))
    where = config.where("validate", "checks", index, "params")
    try:
        check = check_class(**params)
    except Exception as exc:  # deepchecks validates some values with its own errors
        raise ConfigError(REFUSED_PARAMETERS.format(where=where, owner=name,
                                                    reason=first_line(exc))) from None
    if not params:
        return check, None
    return check, _Given(where, name, ", ".join(sorted(parameters(check_class.__init__))))


def _add_condition(config: Config, position: tuple[int, int], check: Any,
                   condition: dict[str, Any]) -> _Given | None:
    """Add ``validate.checks[i].conditions[j]`` to ``check``; return where its parameters are
    written (None without parameters).

    Raises ConfigError for an unknown condition, a parameter it does not take, or a value it
    refuses."""
    index, c_index = position
    name = type(check).__name__
    key = ("validate", "checks", index, "conditions", c_index)
    method_name = "add_condition_" + condition["condition"].removeprefix("add_condition_")
    method = getattr(check, method_name, None)
    if method is None:
        valid = sorted(m.removeprefix("add_condition_") for m in dir(check)
                       if m.startswith("add_condition_"))
        valid = valid or ["(none: this check only displays)"]
        raise ConfigError(_unknown(config.where(*key, "condition"), f"condition of {name}",
                                   condition["condition"], valid))
    params = condition.get("params", {})
    owner = f"condition {condition['condition']} of {name}"
    check_parameters(params, method, owner, lambda param: config.where(*key, "params", param))
    where = config.where(*key, "params")
    try:
        method(**params)
    except Exception as exc:
        raise ConfigError(REFUSED_PARAMETERS.format(where=where, owner=owner,
                                                    reason=first_line(exc))) from None
    return _Given(where, owner, ", ".join(sorted(parameters(method)))) if params else None


def run_plan(plan: _Plan, inputs: ModelInputs, *, feature_importance: pd.Series | None,
             with_display: bool, workers: int = 1) -> Outcome:
    """Run the suite once over precomputed predictions and return the condition records.

    ``workers`` processes share the suite's checks (see :mod:`shipml.validate._parallel`); the
    result is the one a serial run gives.
    """
    import joblib
    from deepchecks.tabular import Dataset

    if plan.suite is None:
        return Outcome(checks=[])
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
    @contextlib.contextmanager
    def quiet() -> Iterator[None]:
        with warnings.catch_warnings(), joblib.parallel_config(n_jobs=1):
            warnings.simplefilter("ignore")
            logging.getLogger("deepchecks").setLevel(logging.ERROR)
            yield

    suite_result = run_suite(plan.suite, kwargs, workers, quiet)
    return _outcome(plan, suite_result)


def save_html(outcome: Outcome, path: Path) -> bool:
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


def _outcome(plan: _Plan, suite_result: Any) -> Outcome:
    from deepchecks.core.check_result import CheckFailure, CheckResult
    from deepchecks.core.condition import ConditionCategory
    from deepchecks.core.errors import DeepchecksBaseError

    category_status: dict[Any, CheckStatus] = {
        ConditionCategory.PASS: "pass",
        ConditionCategory.WARN: "warn",
        ConditionCategory.FAIL: "fail",
        ConditionCategory.ERROR: "error",
    }
    outcome = Outcome(checks=[], suite_result=suite_result)
    for result in suite_result.results:
        check = result.check
        check_name = type(check).__name__
        if isinstance(result, CheckFailure):
            reason = first_line(result.exception)
            given = plan.given_params.get(id(check))
            if given is not None and _rejects_values(result.exception):
                # The user's parameters are the likely cause: a bad input, not a broken model.
                raise ConfigError(REJECTED_AT_RUN.format(where=given.where, owner=given.owner,
                                                         reason=reason.rstrip("."),
                                                         valid=given.valid))
            if isinstance(result.exception, DeepchecksBaseError):
                # deepchecks' own refusal: the check does not apply to this data or task.
                outcome.not_run[result.get_header()] = reason
            else:
                outcome.checks.append(Check(name=f"{result.get_header()} ran without error",
                                            status="error", observed=reason,
                                            threshold="no exception", detail=reason,
                                            group=check_name))
            continue
        if not isinstance(result, CheckResult):
            continue
        if not result.conditions_results:
            outcome.display_only.append(result.get_header())
            continue
        conditions = list(getattr(check, "_conditions", {}).values())
        levels = plan.severities.get(id(check), [])
        condition_given = plan.condition_params.get(id(check), [])
        for index, condition_result in enumerate(result.conditions_results):
            status = category_status.get(condition_result.category, "error")
            given = condition_given[index] if index < len(condition_given) else None
            if status == "error" and given is not None:
                raise ConfigError(REJECTED_AT_RUN.format(
                    where=given.where, owner=given.owner,
                    reason=first_line(condition_result.details).rstrip("."),
                    valid=given.valid))
            if status == "fail" and index < len(levels) and levels[index] == "warn":
                status = "warn"
            params = conditions[index].params if index < len(conditions) else {}
            outcome.checks.append(Check(
                name=f"{result.get_header()}: {condition_result.name}",
                status=status,
                observed=_short(condition_result.details),
                threshold=_threshold(params, condition_result.name),
                detail=condition_result.details,
                group=check_name,
            ))
    return outcome


def _rejects_values(exc: BaseException) -> bool:
    """Return True for the errors a bad parameter value raises on first use: a wrong type or
    value (deepchecks' DeepchecksValueError), not "this check does not apply to this data"."""
    from deepchecks.core.errors import DeepchecksValueError

    return type(exc) in (TypeError, ValueError, KeyError, DeepchecksValueError)


def _threshold(params: dict[str, Any], sentence: str) -> Any:
    numeric = {k: v for k, v in params.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if len(numeric) == 1:
        return next(iter(numeric.values()))
    shown = {k: v for k, v in params.items() if v is not None}
    if not shown:
        # deepchecks' default conditions carry the threshold in their sentence only.
        numbers = _NUMBER.findall(sentence)
        if not numbers:
            return None
        value = numbers[-1]
        if value.endswith("%"):
            return value
        return float(value) if "." in value else int(value)
    return ", ".join(f"{key}={value}" for key, value in shown.items())


def _short(text: str, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _unknown(where: str, kind: str, name: str, valid: list[str]) -> str:
    return f"{where}: unknown {kind} {name!r}{did_you_mean(name, valid)} (valid: {', '.join(valid)})"

