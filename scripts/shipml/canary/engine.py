"""The promotion engine: pure transitions over a rollout's state.

Every function takes the plan, the state and what happened (an analysis round, a command, the
time) and returns a :class:`Decision`: the next state, the traffic weight the target must set and
the one log line that explains it. Nothing here does I/O; the runner applies decisions to a
target and stores the state there, so a later job continues where this one stopped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from shipml.canary.judges import MetricResult
from shipml.canary.plan import Plan, format_duration
from shipml.errors import ConfigError

Phase = Literal["progressing", "paused", "promoted", "rolled_back", "aborted"]
PHASES: tuple[Phase, ...] = ("progressing", "paused", "promoted", "rolled_back", "aborted")
#: phases a rollout ends in: nothing moves any more
FINAL: frozenset[str] = frozenset({"promoted", "rolled_back", "aborted"})
#: what the target must do after a decision
Action = Literal["hold", "set_weight", "promote", "rollback"]
Command = Literal["promote", "abort", "resume"]
COMMANDS: tuple[Command, ...] = ("promote", "abort", "resume")
STATE_VERSION = 1
NEVER_PASSED = "; inconclusive: pass covers a thin window, never a source that gave no data"


@dataclass(frozen=True)
class Revision:
    """One deployed version of the service: its image and the ``revision`` label its metrics carry."""

    image: str
    revision: str

    def to_dict(self) -> dict[str, str]:
        """Return the JSON-ready mapping."""
        return {"image": self.image, "revision": self.revision}

    @property
    def pinned(self) -> bool:
        """Return whether ``image`` names one image for good (``…@sha256:`` or a local image id
        ``sha256:…``), never a tag that may move."""
        return "@sha256:" in self.image or self.image.startswith("sha256:")


@dataclass(frozen=True)
class StepRecord:
    """What happened at one step: its weight, analyses run, failed and inconclusive, the
    canary's last error rate and p95 there, how the step ended (``pass``, ``fail``,
    ``running``), the last analysis round's metric results and the metric that failed it."""

    step: int
    weight: int
    rounds: int = 0
    failed: int = 0
    error_rate: float | None = None
    p95_ms: float | None = None
    status: str = "running"
    #: analyses that counted as inconclusive (after the ``inconclusive`` policy)
    inconclusive: int = 0
    #: every metric of the step's last analysis round, as judged (value, stable's, figures)
    metrics: tuple[MetricResult, ...] = ()
    #: the first failing metric of the step's last failed round: why the step failed
    failing: MetricResult | None = None
    #: why the step ended when not by passing its analysis (rolled back, aborted, promoted by
    #: hand), in words
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping stored on the target (every metric result whole, so a
        metric another judge adds is kept without knowing it; no NaN or infinity)."""
        return {"step": self.step, "weight": self.weight, "rounds": self.rounds,
                "failed": self.failed, "inconclusive": self.inconclusive,
                "error_rate": _finite(self.error_rate), "p95_ms": _finite(self.p95_ms),
                "status": self.status,
                "metrics": [metric_to_dict(result) for result in self.metrics],
                "failing": metric_to_dict(self.failing) if self.failing else None,
                "reason": self.reason}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> StepRecord:
        """Return the record stored as ``record`` (an earlier shipml stored no
        ``inconclusive``, ``metrics``, ``failing`` or ``reason``). Raises KeyError, TypeError or
        ValueError for a record that is not one."""
        failing = record.get("failing")
        return cls(step=int(record["step"]), weight=int(record["weight"]),
                   rounds=int(record.get("rounds", 0)), failed=int(record.get("failed", 0)),
                   error_rate=_optional_float(record.get("error_rate")),
                   p95_ms=_optional_float(record.get("p95_ms")),
                   status=str(record.get("status", "running")),
                   inconclusive=int(record.get("inconclusive", 0)),
                   metrics=tuple(metric_from_dict(item) for item in record.get("metrics") or ()),
                   failing=metric_from_dict(failing) if failing else None,
                   reason=str(record.get("reason") or ""))

    @property
    def tally(self) -> str:
        """Return the step's analyses in words: ``3 analyses, 1 failed`` (and how many were
        inconclusive, when any were)."""
        noun = "analysis" if self.rounds == 1 else "analyses"
        text = f"{self.rounds} {noun}, {self.failed} failed"
        return text + (f", {self.inconclusive} inconclusive" if self.inconclusive else "")


def metric_to_dict(result: MetricResult) -> dict[str, Any]:
    """Return ``result`` as a JSON-ready mapping of all its fields (non-finite numbers as
    None)."""
    record: dict[str, Any] = {}
    for item in fields(result):
        value = getattr(result, item.name)
        if isinstance(value, Mapping):
            value = {str(key): _finite(figure) for key, figure in value.items()}
        record[item.name] = _finite(value)
    return record


def metric_from_dict(record: Mapping[str, Any]) -> MetricResult:
    """Return the metric result stored as ``record`` (keys this version does not know are
    left out). Raises TypeError or ValueError when it is not one."""
    if not isinstance(record, Mapping):
        raise TypeError(f"a metric result is a mapping, not {type(record).__name__}")
    known = {item.name for item in fields(MetricResult)}
    values = {key: value for key, value in record.items() if key in known}
    if values.get("verdict") not in ("pass", "fail", "inconclusive"):
        raise ValueError(f"metric verdict {values.get('verdict')!r}")
    values["figures"] = dict(values.get("figures") or {})
    return MetricResult(**values)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class RolloutState:
    """Where a rollout stands; stored on the target after every transition (``to_dict``)."""

    service: str
    phase: Phase
    step: int
    weight: int
    canary: Revision
    stable: Revision | None
    started_at: float
    step_started_at: float
    updated_at: float
    failures: int = 0
    passed_in_step: int = 0
    reason: str = ""
    history: tuple[StepRecord, ...] = field(default_factory=tuple)

    @property
    def final(self) -> bool:
        """Return whether the rollout has ended (promoted, rolled back or aborted)."""
        return self.phase in FINAL

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping stored on the target."""
        return {
            "version": STATE_VERSION, "service": self.service, "phase": self.phase,
            "step": self.step, "weight": self.weight, "canary": self.canary.to_dict(),
            "stable": self.stable.to_dict() if self.stable else None,
            "started_at": self.started_at, "step_started_at": self.step_started_at,
            "updated_at": self.updated_at, "failures": self.failures,
            "passed_in_step": self.passed_in_step, "reason": self.reason,
            "history": [record.to_dict() for record in self.history],
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], source: str) -> RolloutState:
        """Return the state stored in ``record``; raise ConfigError naming ``source`` when it is
        not a rollout state this version of shipml wrote."""
        try:
            if record.get("version") != STATE_VERSION:
                raise ValueError(f"version {record.get('version')!r}, not {STATE_VERSION}")
            phase = str(record["phase"])
            if phase not in PHASES:
                raise ValueError(f"phase {phase!r}")
            stable = record.get("stable")
            return cls(
                service=str(record["service"]), phase=phase, step=int(record["step"]),
                weight=int(record["weight"]),
                canary=Revision(str(record["canary"]["image"]), str(record["canary"]["revision"])),
                stable=Revision(str(stable["image"]), str(stable["revision"])) if stable else None,
                started_at=float(record["started_at"]),
                step_started_at=float(record["step_started_at"]),
                updated_at=float(record["updated_at"]), failures=int(record.get("failures", 0)),
                passed_in_step=int(record.get("passed_in_step", 0)),
                reason=str(record.get("reason") or ""),
                history=tuple(StepRecord.from_dict(item) for item in record.get("history") or []))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: the stored rollout state cannot be read ({exc}); "
                              "remove it with `shipml canary abort` or by hand") from None


@dataclass(frozen=True)
class Decision:
    """A transition: the next state, what the target must do and the log line that says why."""

    state: RolloutState
    action: Action
    line: str

    @property
    def weight(self) -> int:
        """Return the canary weight the target must have after this decision."""
        return self.state.weight


@dataclass(frozen=True)
class Verdicts:
    """What one analysis round concluded, as the engine needs it: the overall verdict, each
    metric's result, and the figures it records per step."""

    verdict: Literal["pass", "fail", "inconclusive"]
    results: tuple[MetricResult, ...]
    error_rate: float | None = None
    p95_ms: float | None = None
    note: str = ""
    #: some metric had no value at all (its source did not answer, no series), or there were
    #: no metrics: ``inconclusive: pass`` never passes such a round
    missing: bool = False


def begin(plan: Plan, service: str, canary: Revision, stable: Revision | None,
          now: float) -> Decision:
    """Start a rollout of ``canary`` at the first step's weight."""
    state = RolloutState(service=service, phase="progressing", step=0, weight=plan.weight(0),
                         canary=canary, stable=stable, started_at=now, step_started_at=now,
                         updated_at=now, history=(StepRecord(0, plan.weight(0)),))
    line = (f"{_where(plan, state)}: start {canary.revision} ({canary.image}) against "
            f"{stable.revision if stable else 'no stable'} → weight {state.weight}%")
    if plan.steps[0].shadow:
        line += f", the stable mirrors {plan.steps[0].sample:.0%} of its requests to it"
    return Decision(state, "set_weight", line)


def decide(plan: Plan, state: RolloutState, round_: Verdicts, now: float) -> Decision:
    """Return the transition after one analysis round at ``now``.

    A failed round counts toward ``failure_limit`` (then rollback); an inconclusive one counts as
    the plan's ``inconclusive`` policy says (``hold``: no progress); a passing one lets the step
    end once its pause is over (then the next step, or promotion after the last). A step that
    lasts past ``step_timeout`` without ending rolls back: no data is never good news.
    """
    if state.phase != "progressing":
        return Decision(state, "hold", f"{_where(plan, state)}: {state.phase}; no analysis acts")
    verdict = round_.verdict
    counted = verdict
    if verdict == "inconclusive" and plan.inconclusive != "hold":
        counted = plan.inconclusive
    never_passed = ""
    if counted == "pass" and verdict == "inconclusive" and round_.missing:
        # inconclusive: pass may pass a thin window, never a source that gave nothing
        counted, never_passed = "inconclusive", NEVER_PASSED
    record = _record(state, counted, round_)
    metrics = "; ".join(result.describe() for result in round_.results) or "no metrics"
    head = f"{_where(plan, state)}: {metrics}"
    if round_.note:
        head += f"; {round_.note}"
    if counted == "fail":
        failures = state.failures + 1
        if failures >= plan.failure_limit:
            why = _first_failure(round_) or (
                _because(record.failing) if record.failing
                else "inconclusive analyses counted as failures (canary.inconclusive: fail)")
            tally = record.tally + (f" (failure {failures}/{plan.failure_limit} of the rollout)"
                                    if failures > record.failed else "")
            nxt = replace(state, phase="rolled_back", weight=0, failures=failures, updated_at=now,
                          reason=f"rolled back at {_at(state)}: {why} — after {tally}",
                          history=_close(record, "fail", state.history, f"rolled back: {why}"))
            return Decision(nxt, "rollback", f"{head} → {verdict}, failure {failures}/"
                                             f"{plan.failure_limit}: roll back to weight 0")
        nxt = replace(state, failures=failures, updated_at=now,
                      history=_replace_last(state.history, record))
        return Decision(nxt, "hold", f"{head} → {verdict}, failure {failures}/"
                                     f"{plan.failure_limit}: hold at {state.weight}%")
    if counted == "inconclusive":
        if now - state.step_started_at >= plan.step_timeout_s:
            why = f"no conclusive analysis within {format_duration(plan.step_timeout_s)}"
            unsure = next((result for result in round_.results
                           if result.verdict == "inconclusive"), None)
            if unsure is not None:
                why += f" ({_because(unsure)})"
            nxt = replace(state, phase="rolled_back", weight=0, updated_at=now,
                          reason=f"rolled back at {_at(state)}: {why} — after {record.tally}",
                          history=_close(record, "fail", state.history, f"rolled back: {why}"))
            return Decision(nxt, "rollback", f"{head} → inconclusive past the step timeout "
                                             f"{format_duration(plan.step_timeout_s)}: roll back")
        nxt = replace(state, updated_at=now, history=_replace_last(state.history, record))
        return Decision(nxt, "hold", f"{head} → inconclusive: hold at {state.weight}% "
                                     f"(no data is not good news{never_passed})")
    passed = state.passed_in_step + 1
    step = plan.steps[state.step]
    held = now - state.step_started_at
    if step.manual:
        nxt = replace(state, phase="paused", passed_in_step=passed, updated_at=now,
                      history=_replace_last(state.history, record))
        return Decision(nxt, "hold", f"{head} → pass: pause at {state.weight}% until "
                                     "`shipml canary resume` or `promote`")
    if held < (step.pause_s or 0.0):
        nxt = replace(state, passed_in_step=passed, updated_at=now,
                      history=_replace_last(state.history, record))
        return Decision(nxt, "hold", f"{head} → pass: hold at {state.weight}% "
                                     f"({held:.0f}s of {format_duration(step.pause_s)})")
    history = _close(record, "pass", state.history)
    return _advance(plan, replace(state, history=history, passed_in_step=passed), now, head)


def command(plan: Plan, state: RolloutState, verb: Command, now: float) -> Decision:
    """Apply a person's command: ``promote`` (all traffic to the canary now), ``abort`` (roll
    back now) or ``resume`` (continue a paused rollout). Raises ConfigError when the rollout is
    in a phase where the command means nothing."""
    if state.final:
        raise ConfigError(f"the rollout of {state.canary.revision} on {state.service} has already "
                          f"ended ({state.phase.replace('_', ' ')}); start a new one with "
                          "`shipml canary`")
    where = _where(plan, state)
    if verb == "promote":
        nxt = replace(state, phase="promoted", weight=100, updated_at=now,
                      reason=f"promoted by hand at {_at(state)}",
                      history=_close(state.history[-1], "pass", state.history,
                                     "promoted by hand"))
        return Decision(nxt, "promote", f"{where}: promote by hand → weight 100%, canary is stable")
    if verb == "abort":
        nxt = replace(state, phase="aborted", weight=0, updated_at=now,
                      reason=f"aborted by hand at {_at(state)}",
                      history=_close(state.history[-1], "fail", state.history,
                                     "aborted by hand"))
        return Decision(nxt, "rollback", f"{where}: abort by hand → weight 0")
    if state.phase != "paused":
        raise ConfigError(f"the rollout on {state.service} is {state.phase}, not paused; "
                          "resume continues a paused rollout")
    return _advance(plan, state, now, f"{where}: resume by hand")


def _advance(plan: Plan, state: RolloutState, now: float, head: str) -> Decision:
    if state.step >= plan.last:
        nxt = replace(state, phase="promoted", weight=100, updated_at=now,
                      reason=f"promoted after {len(plan.steps)} steps")
        return Decision(nxt, "promote", f"{head} → pass: promote, weight 100%, canary is stable")
    step = state.step + 1
    weight = plan.weight(step)
    if weight == 100:
        # At 100% the stable serves nothing left to compare with: reaching it is the promotion.
        nxt = replace(state, phase="promoted", step=step, weight=100, step_started_at=now,
                      updated_at=now, passed_in_step=0,
                      reason=f"promoted after {len(plan.steps)} steps",
                      history=(*state.history, StepRecord(step, 100, status="pass")))
        return Decision(nxt, "promote", f"{head} → pass: step {step + 1}/{len(plan.steps)}, "
                                        "promote, weight 100%, canary is stable")
    nxt = replace(state, phase="progressing", step=step, weight=weight, step_started_at=now,
                  updated_at=now, passed_in_step=0,
                  history=(*state.history, StepRecord(step, weight)))
    return Decision(nxt, "set_weight", f"{head} → pass: step {step + 1}/{len(plan.steps)}, "
                                       f"weight {weight}%")


def _where(plan: Plan, state: RolloutState) -> str:
    step = plan.steps[state.step] if state.step < len(plan.steps) else None
    shadow = f" shadow {step.sample:.0%}" if step is not None and step.shadow else ""
    return (f"canary {state.service} step {state.step + 1}/{len(plan.steps)}{shadow} "
            f"weight {state.weight}%")


def _at(state: RolloutState) -> str:
    return f"step {state.step + 1} ({state.weight}%)"


def _record(state: RolloutState, verdict: str, round_: Verdicts) -> StepRecord:
    """Return the step's record with one more analysis round counted as ``verdict`` (after the
    ``inconclusive`` policy): its metric results kept, and the first of them that failed."""
    last = state.history[-1] if state.history else StepRecord(state.step, state.weight)
    failing = next((result for result in round_.results if result.verdict == "fail"), None)
    return replace(last, rounds=last.rounds + 1, failed=last.failed + (verdict == "fail"),
                   inconclusive=last.inconclusive + (verdict == "inconclusive"),
                   error_rate=round_.error_rate if round_.error_rate is not None
                   else last.error_rate,
                   p95_ms=round_.p95_ms if round_.p95_ms is not None else last.p95_ms,
                   metrics=round_.results, failing=failing or last.failing)


def _replace_last(history: tuple[StepRecord, ...], record: StepRecord) -> tuple[StepRecord, ...]:
    return (*history[:-1], record)


def _close(record: StepRecord, status: str, history: tuple[StepRecord, ...],
           reason: str = "") -> tuple[StepRecord, ...]:
    return _replace_last(history, replace(record, status=status, reason=reason))


def _first_failure(round_: Verdicts) -> str:
    for result in round_.results:
        if result.verdict == "fail":
            return _because(result)
    return ""


def _because(result: MetricResult) -> str:
    return f"{result.name} — {result.detail}" if result.detail else result.name
