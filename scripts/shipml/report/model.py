"""The report as data: a verdict, one section per stage, in pipeline order.

Built only from stage results (the contract of design.md), never from a stage's code: a section
shows the stage's checks, its ``error`` (kind and message), and the figures it asked for —
``result.tables``, ``result.series`` (charts) and ``result.deltas`` (against a baseline). The
report knows no stage by name and no stage's metric shapes; the one legacy shape still read is
``metrics.deltas = [{"name", "baseline", "candidate", "unit", "higher_is_better"}]``.
Renderers (markdown, text, HTML templates) read this and nothing else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from shipml import stages
from shipml.results import Check, Delta, Series, StageError, StageResult, Table

Verdict = Literal["pass", "fail", "error", "incomplete"]

#: what a report key may be: it goes into the hidden marker, an HTML comment
KEY_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,100}")

#: how the headline says why stages stopped, by error kind
_STOPPED_BY = {"config": "{names} stopped with a configuration error",
               "infrastructure": "{names} stopped with an infrastructure error",
               "internal": "{names} stopped with an internal error",
               "cancelled": "{names} cancelled",
               "missing": "{names} missing"}
MISSING = (
    "missing: shipml.yaml configures {stage}, but no result of it was found: it did not run, "
    "was stopped before it could write one (SIGKILL, a lost runner), or its result was not "
    "downloaded into the results folder. Nothing vouches for it."
)


@dataclass(frozen=True)
class StageSection:
    """One stage in the report."""

    result: StageResult
    failures: tuple[Check, ...]
    warnings: tuple[Check, ...]
    #: the stage's deltas, then those of the legacy ``metrics.deltas``
    deltas: tuple[Delta, ...] = ()
    #: the stage's charts that can be drawn (finite values, one per category)
    series: tuple[Series, ...] = ()
    #: True when the section was shortened to fit a size limit: failures only
    compact: bool = False

    @property
    def name(self) -> str:
        """Return the stage name."""
        return self.result.stage

    @property
    def error(self) -> StageError | None:
        """Return why the stage stopped without judging, when it did."""
        return self.result.error

    @property
    def tables(self) -> tuple[Table, ...]:
        """Return the stage's tables that have columns and rows."""
        return tuple(t for t in self.result.tables if t.columns and t.rows)

    @property
    def ordered_checks(self) -> tuple[Check, ...]:
        """Return every check, failures and errors first, then warnings, then the rest (each in
        the stage's order)."""
        return (*self.failures, *self.warnings,
                *(c for c in self.result.checks if c.status not in ("fail", "error", "warn")))

    @property
    def groups(self) -> dict[str, list[Check]]:
        """Return the checks by group ('' for ungrouped), in first-seen order."""
        grouped: dict[str, list[Check]] = {}
        for check in self.result.checks:
            grouped.setdefault(check.group, []).append(check)
        return grouped


@dataclass(frozen=True)
class Links:
    """Where a reader goes for more (http and https links only)."""

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
    #: set when the rendering was cut to fit a size limit
    truncated: bool = False
    #: last resort of truncation: only the verdict and the failure names remain
    names_only: bool = False
    #: with ``names_only``: how many failure names fit (None: all of them)
    failure_limit: int | None = None
    #: the limit that cut it, in words ("comment", "job summary")
    limit_name: str = "comment"
    #: how many failure names were cut (with an ellipsis) to their share of the limit
    clipped_names: int = 0

    @property
    def failures(self) -> list[tuple[str, Check]]:
        """Return every failed or errored check with its stage, in pipeline order."""
        return [(s.name, c) for s in self.sections for c in s.failures]

    @property
    def shown_failures(self) -> list[tuple[str, Check]]:
        """Return the failures a names-only rendering lists (all, or the first that fit)."""
        failures = self.failures
        return failures if self.failure_limit is None else failures[: self.failure_limit]

    @property
    def hidden_failures(self) -> int:
        """Return how many failure names a names-only rendering leaves out."""
        if self.failure_limit is None:
            return 0
        return max(sum(len(s.failures) for s in self.sections) - self.failure_limit, 0)

    def with_compact(self, stages: Sequence[str], *, names_only: bool = False,
                     failure_limit: int | None = None, limit_name: str | None = None) -> Report:
        """Return a truncated copy: the named stages shortened to their failures, or (with
        ``names_only``) only the first ``failure_limit`` failure names (None: all)."""
        sections = tuple(replace(s, compact=s.compact or s.name in stages) for s in self.sections)
        return replace(self, sections=sections, truncated=True,
                       names_only=names_only or self.names_only, failure_limit=failure_limit,
                       limit_name=limit_name or self.limit_name)


def marker(key: str) -> str:
    """Return the hidden marker that makes the comment of report ``key`` findable.

    Raises ValueError when ``key`` is not letters, digits, ``.``, ``_`` or ``-`` (1-100): any
    other text could close the HTML comment or forge another key's marker.
    """
    if not KEY_PATTERN.fullmatch(key):
        raise ValueError(f"report key {key!r} must match {KEY_PATTERN.pattern}")
    return f"<!-- shipml-report:{key} -->"


def build_report(results: Sequence[StageResult], *, key: str = "default", title: str = "shipml",
                 links: Links | None = None, commit: str = "",
                 expected: Sequence[str] = ()) -> Report:
    """Return the report of ``results``: verdict, headline and one section per stage, in the
    registry's pipeline order (unknown stages last, by name). Each stage of ``expected`` (the
    configured gates) without a result gets an ``error`` section of kind ``missing``, so that
    the verdict is never "ready to ship" without it. Raises ValueError for a bad key."""
    marker(key)
    present = {result.stage for result in results}
    missing = [missing_result(stage) for stage in dict.fromkeys(expected) if stage not in present]
    ordered = sorted([*results, *missing], key=lambda r: (stages.rank(r.stage), r.stage))
    sections = tuple(_section(result) for result in ordered)
    verdict = overall_verdict(ordered)
    links = links or Links()
    safe_links = Links(run=_web_link(links.run), artifacts=_web_link(links.artifacts),
                       full_report=_web_link(links.full_report))
    return Report(key=key, title=title, verdict=verdict, headline=_headline(verdict, sections),
                  sections=sections, links=safe_links, commit=commit)


def missing_result(stage: str) -> StageResult:
    """Return the stand-in of a configured gate that left no result: ``error``, kind
    ``missing`` (kept in memory, never written)."""
    message = MISSING.format(stage=stage)
    return StageResult(stage=stage, status="error", summary=message, started_at="",
                       duration_s=0.0, error=StageError("missing", 3, message))


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


def percent_change(delta: Delta) -> float:
    """Return the change of ``delta`` in percent of its baseline (0 when the baseline is 0)."""
    return (delta.candidate / delta.baseline - 1.0) * 100.0 if delta.baseline else 0.0


def improvement(delta: Delta) -> bool | None:
    """Return True when ``delta`` is an improvement, False when worse, None when unchanged or
    within the noise of its measurement (:func:`within_noise`)."""
    if math.isclose(delta.candidate, delta.baseline) or within_noise(delta):
        return None
    return (delta.candidate > delta.baseline) == delta.higher_is_better


def within_noise(delta: Delta) -> bool:
    """Return True when ``delta`` changed but its measurement's own interval of
    candidate/baseline holds 1: a change noise alone could give, neither better nor worse."""
    return (delta.interval is not None and not math.isclose(delta.candidate, delta.baseline)
            and delta.interval[0] <= 1.0 <= delta.interval[1])


def axis_range(series: Series) -> tuple[float, float]:
    """Return a rounded bottom and top of the y axis of ``series`` (0 at the bottom unless a
    value is negative)."""
    top = max(series.values, default=1.0)
    bottom = min(series.values, default=0.0)
    upper = _nice_ceiling(top) if top > 0 else (0.0 if bottom < 0 else 1.0)
    lower = -_nice_ceiling(-bottom) if bottom < 0 else 0.0
    return lower, upper


def numeric_column(table: Table, key: str) -> bool:
    """Return True when every cell of column ``key`` is a number or empty (right-aligned)."""
    return all(row.get(key) is None or (isinstance(row.get(key), (int, float))
                                        and not isinstance(row.get(key), bool))
               for row in table.rows)


def _headline(verdict: Verdict, sections: Sequence[StageSection]) -> str:
    failed = [s.name for s in sections if s.result.status in ("fail", "error")]
    count = sum(len(s.failures) for s in sections)
    if verdict == "pass":
        return f"ready to ship: {len(sections)} of {len(sections)} stages passed"
    if verdict == "incomplete":
        pending = [s.name for s in sections if s.result.status == "skipped"]
        return f"no gate failed, but not every stage ran (skipped: {', '.join(pending)})"
    stopped = [s for s in sections if s.result.status == "error" and not s.failures]
    stopped_names = {s.name for s in stopped}
    parts = []
    if count:
        noun = "check" if count == 1 else "checks"
        judged = [name for name in failed if name not in stopped_names]
        parts.append(f"{count} {noun} failed in {', '.join(judged)}")
    by_cause: dict[str, list[str]] = {}
    for section in stopped:
        cause = _STOPPED_BY.get(section.error.kind if section.error else "",
                                "{names} stopped with an error")
        by_cause.setdefault(cause, []).append(section.name)
    for cause, names in by_cause.items():
        parts.append(cause.format(names=", ".join(names)))
    return f"not ready to ship: {'; '.join(parts) or ', '.join(failed) + ' failed'}"


def _section(result: StageResult) -> StageSection:
    failures = tuple(c for c in result.checks if c.status in ("fail", "error"))
    warnings = tuple(c for c in result.checks if c.status == "warn")
    deltas = (*result.deltas, *_legacy_deltas(result.metrics.get("deltas")))
    series = tuple(s for s in result.series if _drawable(s))
    return StageSection(result=result, failures=failures, warnings=warnings, deltas=deltas,
                        series=series)


def _legacy_deltas(records: Any) -> list[Delta]:
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


def _drawable(series: Series) -> bool:
    return (0 < len(series.values) == len(series.categories)
            and all(_number(value) is not None for value in series.values))


def _web_link(url: str) -> str:
    # Links come from the environment and configuration: only web links become links.
    return url if re.match(r"https?://[^\s<>\"]+$", url or "") else ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _nice_ceiling(value: float) -> float:
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)
