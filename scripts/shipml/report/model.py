"""The report as data: a verdict, one section per stage, deltas and chart series.

Built only from stage results (the contract of design.md), never from a stage's code. Renderers
(markdown, text, HTML templates) read this and nothing else. Metrics the charts read, each
optional (a missing key means no chart, never an error):

- latency: ``metrics.distribution = {"<batch>": [[ms, quantile], ...]}``; budgets per batch in
  ``metrics.batches = {"<batch>": {"p50_ms", "p95_ms", "p99_ms", "throughput_rps"}}``; baseline
  comparison in ``metrics.regression = {"<batch>": {"ratio", "ci_low", "ci_high", "tolerance",
  "baseline_p50_ms", "candidate_p50_ms"}}`` (``metrics.baseline`` is read the same way).
- canary: ``metrics.steps = [{"weight": 10, "error_rate": 0.001, "p95_ms": 12.0,
  "status": "pass"}, ...]`` in promotion order.
- any stage: ``metrics.deltas = [{"name", "baseline", "candidate", "unit",
  "higher_is_better"}]`` for other comparisons with a baseline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from shipml.results import Check, StageResult

Verdict = Literal["pass", "fail", "error", "incomplete"]

#: pipeline order; stages not listed come after, by name
STAGE_ORDER = ("validate", "optimize", "latency", "build", "sign", "canary")


@dataclass(frozen=True)
class Delta:
    """A figure against its baseline, with direction and percentage."""

    name: str
    baseline: float
    candidate: float
    unit: str = ""
    higher_is_better: bool = False
    interval: tuple[float, float] | None = None

    @property
    def percent(self) -> float:
        """Return the change in percent of the baseline (0 when the baseline is 0)."""
        return (self.candidate / self.baseline - 1.0) * 100.0 if self.baseline else 0.0

    @property
    def better(self) -> bool | None:
        """Return True when the change is an improvement, None when there is no change."""
        if math.isclose(self.candidate, self.baseline):
            return None
        return (self.candidate > self.baseline) == self.higher_is_better


@dataclass(frozen=True)
class Series:
    """One mermaid ``xychart-beta`` chart: categories on x, one bar or line series."""

    title: str
    x_label: str
    categories: tuple[str, ...]
    y_label: str
    values: tuple[float, ...]
    kind: Literal["line", "bar"] = "line"

    @property
    def y_max(self) -> float:
        """Return a rounded-up top of the y axis."""
        top = max(self.values, default=1.0)
        return _nice_ceiling(top if top > 0 else 1.0)


@dataclass(frozen=True)
class StageSection:
    """One stage in the report."""

    result: StageResult
    failures: tuple[Check, ...]
    warnings: tuple[Check, ...]
    deltas: tuple[Delta, ...] = ()
    charts: tuple[Series, ...] = ()
    table: tuple[Mapping[str, Any], ...] = ()
    #: True when the section was shortened to fit a comment: failures only
    compact: bool = False

    @property
    def name(self) -> str:
        """Return the stage name."""
        return self.result.stage

    @property
    def groups(self) -> dict[str, list[Check]]:
        """Return the checks by group ('' for ungrouped), in first-seen order."""
        grouped: dict[str, list[Check]] = {}
        for check in self.result.checks:
            grouped.setdefault(check.group, []).append(check)
        return grouped


@dataclass(frozen=True)
class Links:
    """Where a reader goes for more."""

    run: str = ""
    artifacts: str = ""
    full_report: str = ""


@dataclass(frozen=True)
class Report:
    """The whole report: what the renderers receive."""

    key: str
    title: str
    verdict: Verdict
    headline: str
    sections: tuple[StageSection, ...]
    links: Links = field(default_factory=Links)
    commit: str = ""
    #: set when the comment was cut to fit GitHub's limit
    truncated: bool = False
    #: last resort of truncation: only the verdict and the failure names remain
    names_only: bool = False

    @property
    def failures(self) -> list[tuple[str, Check]]:
        """Return every failed or errored check with its stage, in pipeline order."""
        return [(s.name, c) for s in self.sections for c in s.failures]

    def with_compact(self, stages: Sequence[str], *, names_only: bool = False) -> Report:
        """Return a copy whose named stages are shortened to their failures."""
        sections = tuple(replace(s, compact=s.compact or s.name in stages) for s in self.sections)
        return replace(self, sections=sections, truncated=True,
                       names_only=names_only or self.names_only)


def marker(key: str) -> str:
    """Return the hidden marker that makes the comment of report ``key`` findable."""
    return f"<!-- shipml-report:{key} -->"


def build_report(results: Sequence[StageResult], *, key: str = "default", title: str = "shipml",
                 links: Links | None = None, commit: str = "") -> Report:
    """Return the report of ``results``: verdict, headline and one section per stage."""
    ordered = sorted(results, key=lambda r: (_stage_rank(r.stage), r.stage))
    sections = tuple(_section(result) for result in ordered)
    verdict = overall_verdict(ordered)
    return Report(key=key, title=title, verdict=verdict, headline=_headline(verdict, sections),
                  sections=sections, links=links or Links(), commit=commit)


def overall_verdict(results: Sequence[StageResult]) -> Verdict:
    """Return fail when a gate failed, error when a stage could not run, incomplete when a stage
    was skipped, pass otherwise."""
    statuses = {result.status for result in results}
    if "fail" in statuses:
        return "fail"
    if "error" in statuses:
        return "error"
    if "skipped" in statuses or not results:
        return "incomplete"
    return "pass"


def _headline(verdict: Verdict, sections: Sequence[StageSection]) -> str:
    failed = [s.name for s in sections if s.result.status in ("fail", "error")]
    count = sum(len(s.failures) for s in sections)
    if verdict == "pass":
        return f"ready to ship: {len(sections)} of {len(sections)} stages passed"
    if verdict == "incomplete":
        pending = [s.name for s in sections if s.result.status == "skipped"]
        return f"no gate failed, but not every stage ran (skipped: {', '.join(pending)})"
    stopped = [s.name for s in sections if s.result.status == "error" and not s.failures]
    parts = []
    if count:
        noun = "check" if count == 1 else "checks"
        judged = [name for name in failed if name not in stopped]
        parts.append(f"{count} {noun} failed in {', '.join(judged)}")
    if stopped:
        parts.append(f"{', '.join(stopped)} stopped with an error")
    return f"not ready to ship: {'; '.join(parts) or ', '.join(failed) + ' failed'}"


def _section(result: StageResult) -> StageSection:
    failures = tuple(c for c in result.checks if c.status in ("fail", "error"))
    warnings = tuple(c for c in result.checks if c.status == "warn")
    metrics = result.metrics
    deltas = list(_generic_deltas(metrics.get("deltas")))
    charts: list[Series] = []
    table: list[Mapping[str, Any]] = []
    if result.stage == "latency":
        deltas = list(_latency_deltas(metrics)) + deltas
        charts.extend(_latency_charts(metrics))
        table.extend(_latency_table(metrics))
    if result.stage == "canary":
        charts.extend(_canary_charts(metrics))
        table.extend(_canary_table(metrics))
    return StageSection(result=result, failures=failures, warnings=warnings,
                        deltas=tuple(deltas), charts=tuple(charts), table=tuple(table))


def _latency_table(metrics: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    batches = _mapping(metrics.get("batches") or metrics.get("batch_sizes"))
    rows: list[Mapping[str, Any]] = []
    for batch, figures in sorted(batches.items(), key=lambda item: _as_int(item[0])):
        if isinstance(figures, Mapping):
            rows.append({"batch": str(batch), **{k: _number(figures.get(k)) for k in
                                                 ("p50_ms", "p95_ms", "p99_ms", "throughput_rps")}})
    return rows


def _latency_deltas(metrics: Mapping[str, Any]) -> list[Delta]:
    deltas = []
    regression = _mapping(metrics.get("regression") or metrics.get("baseline"))
    if "ratio" in regression:  # one comparison, not keyed by batch
        regression = {"": regression}
    for batch, record in sorted(regression.items(), key=lambda item: _as_int(item[0])):
        if not isinstance(record, Mapping):
            continue
        base, cand = _number(record.get("baseline_p50_ms")), _number(record.get("candidate_p50_ms"))
        ratio = _number(record.get("ratio"))
        low, high = _number(record.get("ci_low")), _number(record.get("ci_high"))
        name, unit = (f"p50 latency at batch {batch}" if batch else "p50 latency"), "ms"
        if base is None or cand is None:
            if ratio is None:
                continue
            base, cand = 1.0, ratio  # only the ratio is known: the percentage still holds
            name, unit = (f"latency ratio at batch {batch}" if batch else "latency ratio"), "×"
        interval = (low, high) if low is not None and high is not None else None
        deltas.append(Delta(name=name, baseline=base, candidate=cand, unit=unit,
                            interval=interval))
    return deltas


def _generic_deltas(records: Any) -> list[Delta]:
    deltas = []
    for record in records if isinstance(records, list) else []:
        if not isinstance(record, Mapping):
            continue
        base, cand = _number(record.get("baseline")), _number(record.get("candidate"))
        if base is None or cand is None:
            continue
        deltas.append(Delta(name=str(record.get("name") or "?"), baseline=base, candidate=cand,
                            unit=str(record.get("unit") or ""),
                            higher_is_better=bool(record.get("higher_is_better", False))))
    return deltas


def _latency_charts(metrics: Mapping[str, Any]) -> list[Series]:
    charts = []
    distribution = _mapping(metrics.get("distribution"))
    for batch, points in sorted(distribution.items(), key=lambda item: _as_int(item[0])):
        pairs = [(float(p[1]), float(p[0])) for p in points if _is_point(p)] \
            if isinstance(points, list) else []
        if len(pairs) < 2:
            continue
        pairs.sort()
        charts.append(Series(
            title=f"Latency distribution, batch {batch}",
            x_label="percentile",
            categories=tuple(f"p{_percentile_label(q)}" for q, _ in pairs),
            y_label="ms",
            values=tuple(round(ms, 4) for _, ms in pairs),
        ))
    return charts


def _canary_steps(metrics: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    steps = metrics.get("steps")
    return [s for s in steps if isinstance(s, Mapping)] if isinstance(steps, list) else []


def _canary_table(metrics: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rows: list[Mapping[str, Any]] = []
    for index, step in enumerate(_canary_steps(metrics), start=1):
        rows.append({"step": index, "weight": _number(step.get("weight")),
                     "error_rate": _number(step.get("error_rate")),
                     "p95_ms": _number(step.get("p95_ms")),
                     "status": str(step.get("status") or "")})
    return rows


def _canary_charts(metrics: Mapping[str, Any]) -> list[Series]:
    steps = _canary_steps(metrics)
    if not steps:
        return []
    labels = tuple(f"{i}: {_fmt(_number(s.get('weight')))}%" for i, s in enumerate(steps, 1))
    charts = []
    weights = [_number(s.get("weight")) for s in steps]
    if all(w is not None for w in weights):
        charts.append(Series("Canary traffic weight per step", "step", labels, "weight %",
                             tuple(float(w or 0) for w in weights), kind="bar"))
    errors = [_number(s.get("error_rate")) for s in steps]
    if all(e is not None for e in errors):
        charts.append(Series("Canary error rate per step", "step", labels, "error rate %",
                             tuple(round(float(e or 0) * 100, 4) for e in errors)))
    latencies = [_number(s.get("p95_ms")) for s in steps]
    if all(v is not None for v in latencies):
        charts.append(Series("Canary p95 latency per step", "step", labels, "p95 ms",
                             tuple(float(v or 0) for v in latencies)))
    return charts


def _stage_rank(stage: str) -> int:
    return STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER)


def _mapping(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _is_point(point: Any) -> bool:
    return (isinstance(point, (list, tuple)) and len(point) == 2
            and all(_number(v) is not None for v in point))


def _as_int(text: str) -> int:
    return int(text) if str(text).isdigit() else 0


def _percentile_label(quantile: float) -> str:
    value = quantile * 100
    return f"{value:.0f}" if math.isclose(value, round(value)) else f"{value:g}"


def _fmt(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:g}"


def _nice_ceiling(value: float) -> float:
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)
