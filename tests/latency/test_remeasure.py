"""An inconclusive budget is measured again, then judged by the policy: real processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shipml.config import load_config
from shipml.latency import _judge
from shipml.latency.core import _judge_budgets, settings_from
from shipml.measure.harness import Harness, Measurement, measure_adaptive
from shipml.measure.inputs import build_input_plan, input_settings
from tests._models import FAST, write_config


def _measured(workdir: Path, remeasure: int, policy: str
              ) -> tuple[Harness, Path, Measurement, dict[str, Any], float]:
    """Measure the example once and return what ``_judge_budgets`` takes, with a p90 budget in
    the middle of the measured interval: undecided at first, by construction."""
    config_path = write_config(workdir, {
        "model": {"path": "model.onnx", "label": "benign", "test": "test.csv"},
        "latency": {**FAST, "remeasure": remeasure, "policy": policy}})
    config = load_config(config_path)
    section = dict(config.section("latency"))
    settings = settings_from(section, ("CPUExecutionProvider",))
    plan = build_input_plan(workdir / "model.onnx", input_settings(config, "latency"))
    harness = Harness(settings)
    feeds = harness.save_feeds(plan.feeds(1))
    measurement = measure_adaptive(harness, workdir / "model.onnx", {1: feeds})[1]
    p90 = _judge.summarize(measurement, settings.confidence).percentiles[90]
    assert p90.low < p90.high
    return harness, feeds, measurement, section, (p90.low + p90.high) / 2


@pytest.mark.parametrize("policy", ["fail", "warn", "pass"])
def test_an_undecided_budget_with_no_remeasure_left_is_judged_by_the_policy(
        workdir: Path, policy: str) -> None:
    harness, feeds, measurement, section, limit = _measured(workdir, 0, policy)
    with harness:
        before = len(measurement.groups)
        _, (check,) = _judge_budgets(harness, workdir / "model.onnx", feeds, measurement,
                                     {"p90_ms": limit}, section, label="model.path")
    assert len(measurement.groups) == before  # nothing measured again
    assert check.status == policy
    assert check.name.startswith("p90 latency at batch 1 is below ")
    assert check.detail.endswith(f"after 0 re-measurement(s); inconclusive, policy {policy}")


@pytest.mark.parametrize("policy", ["fail", "warn"])
def test_an_undecided_budget_is_measured_again_then_judged_on_all_the_runs(
        workdir: Path, policy: str) -> None:
    harness, feeds, measurement, section, limit = _measured(workdir, 1, policy)
    with harness:
        before = len(measurement.groups)
        _, (check,) = _judge_budgets(harness, workdir / "model.onnx", feeds, measurement,
                                     {"p90_ms": limit}, section, label="model.path")
    # one round allowed, and the budget was undecided: exactly one round of min_processes more
    assert len(measurement.groups) == before + harness.settings.min_processes
    # Where the new interval falls is the machine's; the verdict on it is not: the check is the
    # judgement of the final figures, over every run, after that one re-measurement.
    confidence = float(section["confidence"])
    final = _judge.summarize(measurement, confidence)
    verdict = _judge.budget_verdict("p90_ms", limit, final)
    assert check == _judge.budget_check("p90_ms", limit, final, verdict, policy,
                                        remeasured=1, confidence=confidence)
    assert f"over {final.runs} runs in {before + harness.settings.min_processes} processes" \
        in check.detail
