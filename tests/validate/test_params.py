"""Check and condition parameters against signatures, on plain functions (no deepchecks)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, Literal, Optional

import pytest

from shipml.errors import ConfigError
from shipml.validate._params import check_parameters, describe, fits


class Check:
    """deepchecks' style: ``**kwargs`` swallows any name, None defaults without Optional."""

    def __init__(self, columns: Hashable | list[Hashable] | None = None,
                 n_samples: int = 10_000, threshold: float = 0.2, ignore_na: bool = True,
                 scorers: Mapping[str, str | Callable[..., Any]] | list[str] | None = None,
                 method: Literal["KS", "EMD"] = "KS",
                 top: Optional[int] = None,  # noqa: UP045 - typing.Union, as deepchecks writes
                 alternative: dict[str, str] = None,  # type: ignore[assignment]  # noqa: RUF013
                 **kwargs: Any) -> None:
        del kwargs


def where(name: str) -> str:
    return f"shipml.yaml:9 validate.checks[0].params.{name}"


def refused(params: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as raised:
        check_parameters(params, Check.__init__, "Check", where)
    return str(raised.value)


def test_good_parameters_pass() -> None:
    check_parameters({"columns": ["age"], "n_samples": 500, "threshold": 1, "ignore_na": False,
                      "scorers": {"acc": "accuracy"}, "method": "EMD", "top": None,
                      "alternative": None},
                     Check.__init__, "Check", where)
    check_parameters({"scorers": ["accuracy", "f1"], "columns": "age"}, Check.__init__, "Check",
                     where)


def test_a_name_swallowed_by_kwargs_is_refused_with_the_nearest() -> None:
    assert refused({"n_sampels": 5}) == (
        "shipml.yaml:9 validate.checks[0].params.n_sampels: Check has no parameter 'n_sampels'; "
        "did you mean 'n_samples'? (valid: alternative, columns, ignore_na, method, n_samples, "
        "scorers, threshold, top)")


def test_self_and_kwargs_are_not_parameters() -> None:
    assert "has no parameter 'self'" in refused({"self": 1})
    assert "has no parameter 'kwargs'" in refused({"kwargs": {}})


@pytest.mark.parametrize(("params", "message"), [
    ({"scorers": 5}, "Check takes a mapping or a list of strings for scorers, not 5 (an integer)"),
    ({"scorers": ["accuracy", 3]}, "a mapping or a list of strings for scorers"),
    ({"n_samples": "1000"}, "Check takes an integer for n_samples, not '1000' (a string)"),
    ({"n_samples": 1.5}, "takes an integer for n_samples, not 1.5 (a number)"),
    ({"n_samples": True}, "takes an integer for n_samples, not True (a boolean)"),
    ({"ignore_na": "yes"}, "takes true or false for ignore_na, not 'yes' (a string)"),
    ({"threshold": "0.2"}, "takes a number for threshold"),
    ({"method": "ks"}, "takes one of 'KS', 'EMD' for method, not 'ks' (a string)"),
    ({"top": "3"}, "takes an integer for top"),
    ({"n_samples": None}, "takes an integer for n_samples, not None (null)"),
])
def test_a_value_of_the_wrong_type_is_refused(params: dict[str, Any], message: str) -> None:
    assert message in refused(params)


def test_fits_accepts_what_it_cannot_read() -> None:
    class Frame:
        pass

    assert fits(Frame, [1, 2])
    assert fits("pd.Series", 3)
    assert fits(Any, object())
    assert not fits(Callable[..., Any], "accuracy")
    assert describe(Optional[list[int]]) == "a list of integers"  # noqa: UP045


@pytest.mark.deepchecks
def test_twenty_thousand_failed_conditions_are_all_kept_quickly() -> None:
    """A suite that yields 20,000 failed conditions: validate keeps each as a record."""
    import time
    from types import SimpleNamespace

    from deepchecks.core.check_result import CheckResult
    from deepchecks.core.condition import ConditionCategory, ConditionResult
    from deepchecks.tabular.checks import FeatureDrift

    from shipml.validate.suite import SuitePlan, read_outcome

    results = []
    for index in range(20_000):
        check = FeatureDrift().add_condition_drift_score_less_than(max_allowed_numeric_score=0.1)
        result = CheckResult(value={}, header=f"Feature Drift {index}")
        result.check = check
        condition = ConditionResult(ConditionCategory.FAIL, f"drift {index} is 0.9")
        condition.set_name("drift score < 0.1")
        result.conditions_results = [condition]
        results.append(result)
    plan = SuitePlan(suite=None, severities={}, config_lines={})
    started = time.perf_counter()
    outcome = read_outcome(plan, SimpleNamespace(results=results))
    assert time.perf_counter() - started < 10  # linear: about 1 s here
    assert len(outcome.checks) == 20_000
    assert {check.status for check in outcome.checks} == {"fail"}
    assert outcome.checks[-1].name == "Feature Drift 19999: drift score < 0.1"
    assert outcome.checks[-1].threshold == 0.1
