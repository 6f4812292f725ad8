"""Judging latency figures: pure functions from numbers and thresholds to check records."""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from shipml.config import key_schema
from shipml.measure import stats
from shipml.measure.harness import Measurement
from shipml.results import Check, CheckStatus

Verdict = Literal["pass", "fail", "inconclusive"]
Policy = Literal["fail", "warn", "pass"]

#: what a check's sentence calls each measured figure that is not a percentile, and its unit
_FIGURES: dict[str, tuple[str, str]] = {
    "throughput": ("throughput", "rows/s"),
    "memory": ("peak memory", "MiB"),
}
#: a budget key is ``<figure>_<suffix>``: ``_ms``/``_mb`` bound the figure from above, ``_min``
#: from below
_UPPER_SUFFIXES = ("ms", "mb")
_LOWER_SUFFIX = "min"
UNKNOWN_BUDGET = ("schema/latency.json: budget key {key!r} is not <figure>_ms, <figure>_mb or "
                  "<figure>_min of a figure latency measures ({figures})")


@dataclass(frozen=True)
class Budget:
    """What a budget key of ``latency.budgets`` bounds: a figure, from above or below."""

    figure: str
    upper: bool
    unit: str
    #: the figure's name in the check's sentence
    stem: str


def budget(key: str) -> Budget:
    """Return what budget ``key`` (``p95_ms``, ``throughput_min``, ``memory_mb``) bounds, read
    from its name. Raises ValueError for a name that bounds no figure latency measures."""
    figure, _, suffix = key.rpartition("_")
    if suffix not in (*_UPPER_SUFFIXES, _LOWER_SUFFIX):
        raise ValueError(UNKNOWN_BUDGET.format(key=key, figures=_measured()))
    if re.fullmatch(r"p[0-9]+", figure) and int(figure[1:]) in stats.PERCENTILES:
        stem, unit = ("median latency" if figure == "p50" else f"{figure} latency"), "ms"
    elif figure in _FIGURES:
        stem, unit = _FIGURES[figure]
    else:
        raise ValueError(UNKNOWN_BUDGET.format(key=key, figures=_measured()))
    return Budget(figure=figure, upper=suffix != _LOWER_SUFFIX, unit=unit, stem=stem)


def _measured() -> str:
    return ", ".join([*(f"p{percentile}" for percentile in stats.PERCENTILES), *_FIGURES])


@lru_cache(maxsize=1)
def budget_keys() -> dict[str, Budget]:
    """Return every budget key the JSON Schema allows under ``latency.budgets.<batch>``, in its
    order, with what it bounds (the schema is the one list of them). Raises ValueError for a key
    that bounds no figure."""
    per_batch = key_schema(("latency", "budgets")).get("additionalProperties") or {}
    return {key: budget(key) for key in per_batch.get("properties") or {}}


@dataclass(frozen=True)
class BatchFigures:
    """Every figure reported for one batch size."""

    batch_size: int
    percentiles: Mapping[int, stats.Interval]
    mean: stats.Interval
    throughput: stats.Interval
    memory_mb: float
    peak_rss_mb: float
    session_create_ms: float
    model_load_ms: float
    first_run_ms: float
    runs: int
    processes: int
    seconds: float
    converged: bool

    def interval(self, figure: str) -> stats.Interval:
        """Return the interval of ``figure`` (p50, p90, p95, p99, throughput or memory)."""
        if figure == "throughput":
            return self.throughput
        if figure == "memory":
            return stats.Interval(self.memory_mb, self.memory_mb, self.memory_mb)
        return self.percentiles[int(figure[1:])]

    def to_metrics(self) -> dict[str, Any]:
        """Return the JSON-ready figures of this batch size."""
        record: dict[str, Any] = {}
        for percentile, interval in self.percentiles.items():
            record[f"p{percentile}_ms"] = round(interval.estimate, 6)
            record[f"p{percentile}_ci_ms"] = [round(interval.low, 6), round(interval.high, 6)]
        record.update({
            "mean_ms": round(self.mean.estimate, 6),
            "mean_ci_ms": [round(self.mean.low, 6), round(self.mean.high, 6)],
            "throughput_rps": round(self.throughput.estimate, 3),
            "throughput_ci_rps": [round(self.throughput.low, 3), round(self.throughput.high, 3)],
            "memory_mb": round(self.memory_mb, 2),
            "peak_rss_mb": round(self.peak_rss_mb, 2),
            "session_create_ms": round(self.session_create_ms, 3),
            "model_load_ms": round(self.model_load_ms, 3),
            "first_run_ms": round(self.first_run_ms, 3),
            "runs": self.runs,
            "processes": self.processes,
            "seconds": round(self.seconds, 3),
            "converged": self.converged,
        })
        return record


def summarize(measurement: Measurement, confidence: float) -> BatchFigures:
    """Return the figures of one measured batch size."""
    mean = measurement.mean(confidence)
    batch = measurement.batch_size
    throughput = stats.Interval(
        estimate=batch * 1000.0 / mean.estimate,
        low=batch * 1000.0 / mean.high if mean.high > 0 else 0.0,
        high=batch * 1000.0 / mean.low if mean.low > 0 else float("inf"),
    )
    return BatchFigures(
        batch_size=batch,
        percentiles={p: measurement.percentile(p, confidence) for p in stats.PERCENTILES},
        mean=mean,
        throughput=throughput,
        memory_mb=max(measurement.memory_mb),
        peak_rss_mb=max(measurement.peak_rss_mb),
        session_create_ms=statistics.median(measurement.session_create_ms),
        model_load_ms=statistics.median(measurement.model_load_ms),
        first_run_ms=statistics.median(measurement.first_run_ms),
        runs=measurement.runs,
        processes=len(measurement.groups),
        seconds=measurement.seconds,
        converged=measurement.converged,
    )


def budget_verdict(key: str, limit: float, figures: BatchFigures) -> Verdict:
    """Judge one budget with the interval: pass when the whole interval is inside the budget,
    fail when it is wholly outside, inconclusive when it straddles the limit."""
    bound = budget_keys()[key]
    interval = figures.interval(bound.figure)
    if bound.upper:
        if interval.high <= limit:
            return "pass"
        return "fail" if interval.low > limit else "inconclusive"
    if interval.low >= limit:
        return "pass"
    return "fail" if interval.high < limit else "inconclusive"


def budget_name(key: str, limit: float, batch_size: int) -> str:
    """Return the check's sentence, e.g. ``p95 latency at batch 1 is below 20 ms``."""
    bound = budget_keys()[key]
    relation = "is below" if bound.upper else "is at least"
    return f"{bound.stem} at batch {batch_size} {relation} {_format_limit(limit)} {bound.unit}"


def budget_check(key: str, limit: float, figures: BatchFigures, verdict: Verdict,
                 policy: Policy, *, remeasured: int, confidence: float) -> Check:
    """Return the check record of one budget after any re-measurement."""
    bound = budget_keys()[key]
    figure, upper, unit = bound.figure, bound.upper, bound.unit
    interval = figures.interval(figure)
    if figure == "memory":
        described = f"peak {interval.estimate:.1f} MiB added to the process"
    else:
        described = (f"{figure} {_format_figure(interval.estimate)} {unit} ({confidence:.0%} CI "
                     f"{_format_figure(interval.low)}–{_format_figure(interval.high)} {unit}) over "
                     f"{figures.runs} runs in {figures.processes} processes")
    status: CheckStatus
    if verdict == "pass":
        status = "pass"
        detail = f"{described}: inside the budget"
    elif verdict == "fail":
        status = "fail"
        side = "above" if upper else "below"
        detail = f"{described}: the whole interval is {side} the budget"
    else:
        status = "pass" if policy == "pass" else policy
        detail = (f"{described}: the interval straddles the {_format_limit(limit)} {unit} budget after "
                  f"{remeasured} re-measurement(s); inconclusive, policy {policy}")
    return Check(name=budget_name(key, limit, figures.batch_size), status=status,
                 observed=round(interval.estimate, 6), threshold=limit, detail=detail,
                 group="budget")


def regression_check(batch_size: int, ratio: stats.Interval, tolerance: float, *,
                     rounds: int, baseline_p50: float, candidate_p50: float, baseline: str,
                     confidence: float) -> Check:
    """Judge candidate/baseline median latency: fail only when the whole interval lies above
    ``1 + tolerance``; warn when the estimate does but the interval does not."""
    limit = 1.0 + tolerance
    detail = (f"candidate/baseline median {ratio.estimate:.3f} ({confidence:.0%} CI "
              f"{ratio.low:.3f}–{ratio.high:.3f}) over {rounds} interleaved rounds; baseline "
              f"{baseline} p50 {_format_figure(baseline_p50)} ms, candidate p50 "
              f"{_format_figure(candidate_p50)} ms")
    status: CheckStatus
    if ratio.low > limit:
        status, verdict = "fail", "the whole interval is above the tolerance"
    elif ratio.estimate > limit:
        status, verdict = "warn", "inconclusive: the estimate is above the tolerance, the interval is not"
    else:
        status, verdict = "pass", "not slower beyond the tolerance"
    return Check(
        name=f"latency at batch {batch_size} is at most {tolerance:.0%} above the baseline",
        status=status, observed=round(ratio.estimate, 4), threshold=round(limit, 4),
        detail=f"{detail}: {verdict}", group="regression",
    )


def _format_figure(value: float) -> str:
    # A measured figure in a message: three significant digits at most, ∞ for an open bound.
    if value == float("inf"):
        return "∞"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _format_limit(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
