"""The statistics and the judge as pure functions over numbers."""

from __future__ import annotations

import numpy as np
import pytest

from shipml.latency import _judge
from shipml.measure import stats as _stats

RNG = np.random.default_rng(7)


def lognormal_groups(scale: float, groups: int = 8, size: int = 400,
                     seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [scale * rng.lognormal(0.0, 0.2, size) * rng.uniform(0.97, 1.03)
            for _ in range(groups)]


def test_percentile_interval_contains_the_true_percentile() -> None:
    groups = lognormal_groups(1.0)
    true_p95 = float(np.exp(0.2 * 1.6449))
    interval = _stats.percentile_interval(groups, 95, 0.95)
    assert interval.low <= true_p95 <= interval.high
    assert interval.low <= interval.estimate <= interval.high
    assert interval.relative_width < 0.2


def test_more_samples_give_a_narrower_interval() -> None:
    few = _stats.percentile_interval(lognormal_groups(1.0, groups=3, size=50), 50, 0.95)
    many = _stats.percentile_interval(lognormal_groups(1.0, groups=12, size=2000), 50, 0.95)
    assert many.relative_width < few.relative_width / 2


def test_ratio_of_medians_finds_a_slowdown_and_not_a_phantom() -> None:
    base = lognormal_groups(1.0, seed=1)
    same = lognormal_groups(1.0, seed=2)
    slower = lognormal_groups(1.3, seed=3)
    null = _stats.ratio_of_medians(base, same, 0.95)
    assert null.low < 1.0 < null.high
    effect = _stats.ratio_of_medians(base, slower, 0.95)
    assert effect.low > 1.2 and effect.estimate == pytest.approx(1.3, rel=0.05)


def test_ratio_of_medians_needs_paired_rounds() -> None:
    with pytest.raises(ValueError, match="same, non-zero number of rounds"):
        _stats.ratio_of_medians(lognormal_groups(1.0, groups=3), lognormal_groups(1.0), 0.95)


def test_cdf_points_are_monotone_and_span_the_samples() -> None:
    samples = RNG.exponential(1.0, 5000)
    points = _stats.cdf_points(samples)
    assert points[0] == [pytest.approx(samples.min(), abs=1e-6), 0.0]
    assert points[-1] == [pytest.approx(samples.max(), abs=1e-6), 1.0]
    assert [p[1] for p in points] == sorted(p[1] for p in points)
    assert {0.5, 0.95, 0.99} <= {p[1] for p in points}


def figures(p95: tuple[float, float, float], throughput: tuple[float, float, float] = (100, 90, 110),
            memory: float = 50.0) -> _judge.BatchFigures:
    interval = _stats.Interval(*p95)
    return _judge.BatchFigures(
        batch_size=1, percentiles={50: interval, 90: interval, 95: interval, 99: interval},
        mean=interval, throughput=_stats.Interval(*throughput), memory_mb=memory,
        peak_rss_mb=memory + 60, session_create_ms=3.0, model_load_ms=0.1, first_run_ms=0.5,
        runs=1000, processes=5, seconds=4.0, converged=True,
    )


@pytest.mark.parametrize(("interval", "verdict"), [
    ((10.0, 9.0, 11.0), "pass"),          # wholly inside the 20 ms budget
    ((25.0, 21.0, 30.0), "fail"),         # wholly above it
    ((19.0, 17.0, 21.0), "inconclusive"),  # straddles it
])
def test_budget_verdict_uses_the_whole_interval(interval: tuple[float, float, float],
                                                verdict: str) -> None:
    assert _judge.budget_verdict("p95_ms", 20.0, figures(interval)) == verdict


def test_throughput_is_a_lower_bound_and_memory_a_plain_limit() -> None:
    assert _judge.budget_verdict("throughput_min", 80, figures((1, 1, 1))) == "pass"
    assert _judge.budget_verdict("throughput_min", 120, figures((1, 1, 1))) == "fail"
    assert _judge.budget_verdict("throughput_min", 100, figures((1, 1, 1))) == "inconclusive"
    assert _judge.budget_verdict("memory_mb", 40, figures((1, 1, 1), memory=50)) == "fail"
    assert _judge.budget_verdict("memory_mb", 60, figures((1, 1, 1), memory=50)) == "pass"


@pytest.mark.parametrize(("policy", "status"), [("fail", "fail"), ("warn", "warn"),
                                                ("pass", "pass")])
def test_inconclusive_budget_follows_the_policy(policy: _judge.Policy, status: str) -> None:
    check = _judge.budget_check("p95_ms", 20.0, figures((19.0, 17.0, 21.0)), "inconclusive",
                                policy, remeasured=2, confidence=0.95)
    assert check.status == status
    assert check.name == "p95 latency at batch 1 is below 20 ms"
    assert check.detail == (
        "p95 19.0 ms (95% CI 17.0–21.0 ms) over 1000 runs in 5 processes: the interval straddles "
        f"the 20 ms budget after 2 re-measurement(s); inconclusive, policy {policy}")


@pytest.mark.parametrize(("ratio", "status"), [
    ((1.02, 0.98, 1.06), "pass"),
    ((1.13, 1.08, 1.18), "warn"),
    ((1.25, 1.15, 1.35), "fail"),
    ((1.09, 1.02, 1.16), "pass"),
])
def test_regression_fails_only_when_the_interval_is_above_the_tolerance(
        ratio: tuple[float, float, float], status: str) -> None:
    check = _judge.regression_check(1, _stats.Interval(*ratio), 0.10, rounds=10,
                                    baseline_p50=1.0, candidate_p50=ratio[0],
                                    baseline="main:model.onnx", confidence=0.95)
    assert check.status == status
    assert check.name == "latency at batch 1 is at most 10% above the baseline"
    assert check.threshold == 1.1
