"""The deepchecks suite builder validate and monitor share: checks and their conditions built
from YAML (``validate.checks`` and ``monitor.checks`` take one syntax), one suite run over
precomputed predictions, and deepchecks' condition results turned into shipml check records.

Messages name the key where a check is written: the builder is given that key's path (e.g.
``("monitor", "checks")``). This module, :mod:`shipml.validate._deepchecks` and
:mod:`shipml.validate._parallel` are the only ones that import deepchecks (the
``shipml[validate]`` extra).
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shipml.config import Config
from shipml.errors import ConfigError, did_you_mean, first_line
from shipml.results import Check, CheckStatus
from shipml.validate._parallel import run_suite
from shipml.validate._params import check_parameters, parameters

INSTALL_HINT = (
    "deepchecks is not installed in this environment; install the validate extra:\n"
    '  pip install "shipml[validate]"\n'
    "(the validate action does this in its own environment)"
)
REFUSED_PARAMETERS = "{where}: {owner} refused its parameters: {reason}"
REJECTED_AT_RUN = ("{where}: {owner} failed with these parameters when it ran: {reason}; check "
                   "their values (valid parameters: {valid})")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?%?")

#: where a list of checks is written, e.g. ("validate", "checks")
KeyPath = tuple[str | int, ...]


@dataclass
class Outcome:
    """What deepchecks concluded: one record per condition, and what did not run."""

    checks: list[Check]
    not_run: dict[str, str] = field(default_factory=dict)
    display_only: list[str] = field(default_factory=list)
    suite_result: Any = None


@dataclass(frozen=True)
class Given:
    """Parameters the user wrote for a check or condition: where, whose, and the names it
    takes."""

    where: str
    owner: str
    valid: str


@dataclass
class SuitePlan:
    """The suite to run and how to judge its condition results."""

    suite: Any
    #: id() of each check -> the severity of each of its conditions ("fail" or "warn")
    severities: dict[int, list[str]]
    #: the config line of each explicit check, by check class name (for annotations)
    config_lines: dict[str, int]
    #: id() of each explicit check built with parameters -> where they are written
    given_params: dict[int, Given] = field(default_factory=dict)
    #: id() of each explicit check -> where each of its conditions' parameters are written
    condition_params: dict[int, list[Given | None]] = field(default_factory=dict)


@dataclass
class ExplicitChecks:
    """The checks a list of check entries names, built with their conditions."""

    checks: list[Any] = field(default_factory=list)
    severities: dict[int, list[str]] = field(default_factory=dict)
    config_lines: dict[str, int] = field(default_factory=dict)
    given_params: dict[int, Given] = field(default_factory=dict)
    condition_params: dict[int, list[Given | None]] = field(default_factory=dict)


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
    """Return every deepchecks tabular check class name.

    Raises ConfigError with the install command when deepchecks is not installed.
    """
    import_deepchecks()
    from deepchecks.tabular import checks

    return sorted(name for name in dir(checks) if name[:1].isupper())


def build_checks(config: Config, prefix: KeyPath, specs: Sequence[dict[str, Any]],
                 valid_checks: list[str]) -> ExplicitChecks:
    """Return the checks ``specs`` (the list written at ``prefix``) name, each built with its
    parameters and conditions.

    Raises ConfigError naming ``prefix[i]`` for an unknown check or condition, a parameter it
    does not take, a value of the wrong type, and a value it refuses when it is built.
    """
    built = ExplicitChecks()
    for index, spec in enumerate(specs):
        check, given = explicit_check(config, prefix, index, spec, valid_checks)
        if given is not None:
            built.given_params[id(check)] = given
        conditions = spec.get("conditions", [])
        built.condition_params[id(check)] = [
            add_condition(config, (*prefix, index), c_index, check, condition)
            for c_index, condition in enumerate(conditions)]
        built.severities[id(check)] = [condition.get("severity", "fail")
                                       for condition in conditions]
        line = config.lines.get((*prefix, index))
        if line:
            built.config_lines.setdefault(spec["check"], line)
        built.checks.append(check)
    return built


def explicit_check(config: Config, prefix: KeyPath, index: int, spec: dict[str, Any],
                   valid_checks: list[str]) -> tuple[Any, Given | None]:
    """Return the check ``<prefix>[index]`` names, built with its parameters, and where
    those are written (None without parameters).

    Raises ConfigError for an unknown check, a parameter its ``__init__`` does not take, a value
    of the wrong type, and a value the check refuses when it is built.
    """
    from deepchecks.tabular import checks

    name = spec["check"]
    check_class = getattr(checks, name, None) if name in valid_checks else None
    if check_class is None:
        raise ConfigError(unknown_name(config.where(*prefix, index, "check"), "check",
                                       name, valid_checks))
    params = spec.get("params", {})
    check_parameters(params, check_class.__init__, name,
                     lambda key: config.where(*prefix, index, "params", key))
    where = config.where(*prefix, index, "params")
    try:
        check = check_class(**params)
    except Exception as exc:  # deepchecks validates some values with its own errors
        raise ConfigError(REFUSED_PARAMETERS.format(where=where, owner=name,
                                                    reason=first_line(exc))) from None
    if not params:
        return check, None
    return check, Given(where, name, ", ".join(sorted(parameters(check_class.__init__))))


def add_condition(config: Config, entry: KeyPath, c_index: int, check: Any,
                  condition: dict[str, Any]) -> Given | None:
    """Add ``<entry>.conditions[c_index]`` (``entry``: the key path of the check's entry, e.g.
    ``("validate", "checks", 0)``) to ``check``; return where its parameters are
    written (None without parameters).

    Raises ConfigError for an unknown condition, a parameter it does not take, or a value it
    refuses."""
    name = type(check).__name__
    key = (*entry, "conditions", c_index)
    method_name = "add_condition_" + condition["condition"].removeprefix("add_condition_")
    method = getattr(check, method_name, None)
    if method is None:
        valid = sorted(m.removeprefix("add_condition_") for m in dir(check)
                       if m.startswith("add_condition_"))
        valid = valid or ["(none: this check only displays)"]
        raise ConfigError(unknown_name(config.where(*key, "condition"), f"condition of {name}",
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
    return Given(where, owner, ", ".join(sorted(parameters(method)))) if params else None


def run(plan: SuitePlan, kwargs: Mapping[str, Any], workers: int = 1) -> Outcome:
    """Run ``plan``'s suite with deepchecks' ``Suite.run`` arguments ``kwargs`` (datasets and
    precomputed predictions) on up to ``workers`` processes; return the condition records.

    Raises ConfigError as :func:`read_outcome` does.
    """
    if plan.suite is None:
        return Outcome(checks=[])
    return read_outcome(plan, run_suite(plan.suite, kwargs, workers, quiet))


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence deepchecks' warnings and logging, and keep joblib to one job, while entered."""
    import joblib

    with warnings.catch_warnings(), joblib.parallel_config(n_jobs=1):
        warnings.simplefilter("ignore")
        logging.getLogger("deepchecks").setLevel(logging.ERROR)
        yield


def read_outcome(plan: SuitePlan, suite_result: Any) -> Outcome:
    """Return one check record per condition result of ``suite_result``, and what did not run.

    Raises ConfigError naming where the parameters are written when a check or condition built
    with the user's parameters failed on them.
    """
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
                # deepchecks' own HTML page shows what shipml concluded: a warning.
                condition_result.category = ConditionCategory.WARN
            params = conditions[index].params if index < len(conditions) else {}
            threshold = _threshold(params, condition_result.name)
            observed = _observed(condition_result.details, condition_result.name,
                                 result.value, threshold)
            detail = str(condition_result.details)
            if observed not in _short(detail):
                # the log line and the annotation show the detail: with the figure in it
                detail = f"{detail.rstrip('.')} ({observed})"
            outcome.checks.append(Check(
                name=f"{result.get_header()}: {condition_result.name}",
                status=status,
                observed=observed,
                threshold=threshold,
                detail=detail,
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


def _observed(details: str, sentence: str, value: Any, threshold: Any) -> str:
    """Return what a condition saw: its details, or, where they name no figure ("Failed for
    metrics: ['accuracy']"), the value of each metric they name against the threshold
    ("accuracy 0.500 < 0.85")."""
    text = _short(details)
    if re.search(r"\d", text):
        return text
    figures = _metric_figures(text, sentence, value, threshold)
    return _short(figures) if figures else text


def _metric_figures(details: str, sentence: str, value: Any, threshold: Any) -> str:
    import pandas as pd

    if not isinstance(value, pd.DataFrame) or not {"Metric", "Value"} <= set(value.columns):
        return ""
    metrics = [str(name) for name in value["Metric"].unique()]
    named = [name for name in metrics if f"'{name}'" in details] or metrics
    lowered = sentence.lower()
    shown = []
    for name in named:
        rows = value[value["Metric"].astype(str) == name]
        figures = pd.to_numeric(rows["Value"], errors="coerce").dropna()
        if figures.empty:
            continue
        # the figure nearest to failing: the lowest under "greater than", the highest under
        # "less than"
        where = figures.idxmax() if "less" in lowered else figures.idxmin()
        figure = float(figures[where])
        label = name
        if "Class" in rows.columns and not pd.isna(rows.at[where, "Class"]) and len(rows) > 1:
            label += f" (class {rows.at[where, 'Class']})"
        text = f"{label} {figure:.3f}" if abs(figure) < 10 else f"{label} {figure:.4g}"
        if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
            relation = "<" if figure < threshold else (">" if figure > threshold else "=")
            text += f" {relation} {threshold:g}"
        shown.append(text)
    return "; ".join(shown)


def _short(text: str, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def unknown_name(where: str, kind: str, name: str, valid: list[str]) -> str:
    """Return the message for an unknown suite, check or condition: the key, a close match and
    the valid names."""
    return f"{where}: unknown {kind} {name!r}{did_you_mean(name, valid)} (valid: {', '.join(valid)})"

