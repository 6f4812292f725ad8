"""An inconclusive budget is measured again, then judged by the policy: real processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipml.config import load_config
from shipml.latency import _judge
from shipml.latency.core import _judge_budgets, settings_from
from shipml.measure.harness import Harness, measure_adaptive
from shipml.measure.inputs import build_input_plan, input_settings
from tests._models import FAST, write_config


@pytest.mark.parametrize("policy", ["fail", "warn"])
def test_straddled_budget_is_remeasured_then_judged_by_policy(workdir: Path, policy: str) -> None:
    config_path = write_config(workdir, {
        "model": {"path": "model.onnx", "label": "benign", "test": "test.csv"},
        "latency": {**FAST, "remeasure": 2, "policy": policy}})
    config = load_config(config_path)
    section = config.section("latency")
    settings = settings_from(section, ("CPUExecutionProvider",))
    plan = build_input_plan(workdir / "model.onnx", input_settings(config, "latency"))
    with Harness(settings) as harness:
        feeds = harness.save_feeds(plan.feeds(1))
        measurement = measure_adaptive(harness, workdir / "model.onnx", {1: feeds})[1]
        p90 = _judge.summarize(measurement, settings.confidence).percentiles[90]
        assert p90.low < p90.high
        limit = (p90.low + p90.high) / 2  # inside the interval: undecided at first
        before = len(measurement.groups)
        _, (check,) = _judge_budgets(harness, workdir / "model.onnx", feeds, measurement,
                                     {"p90_ms": limit}, section, label="model.path")
    added = len(measurement.groups) - before
    assert added in (settings.min_processes, 2 * settings.min_processes)
    assert check.name.startswith("p90 latency at batch 1 is below ")
    if "inconclusive" in check.detail:
        assert added == 2 * settings.min_processes
        assert check.status == policy
        assert "after 2 re-measurement(s); inconclusive, policy " + policy in check.detail
    else:  # more processes settled it: the whole interval is now on one side
        assert check.status in ("pass", "fail")
