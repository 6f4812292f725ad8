"""The runner: the I/O loop around the pure engine. Pre-flight (signature and gates), lock, deploy,
then every interval one analysis round, one decision, applied to the target and stored there;
finally the stage result (steps table, weight / error rate / p95 series).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipml.canary import engine
from shipml.canary.analysis import AnalysisRound, MetricSpec, analyse, metric_specs
from shipml.canary.engine import Decision, RolloutState, Verdicts
from shipml.canary.lock import Heartbeat, me
from shipml.canary.plan import Plan, plan_from_section
from shipml.canary.providers import MetricProvider, build_provider
from shipml.canary.providers.probe import ProbeRecord
from shipml.canary.targets import Target, build_target, check_type
from shipml.config import Config
from shipml.errors import ConfigError
from shipml.results import Check, Column, Series, StageClock, StageResult, Table

log = logging.getLogger("shipml.canary")

NO_IMAGE = ("no image to roll out: give --image (canary.image, $SHIPML_CANARY_IMAGE), or run "
            "shipml build first so that .shipml/results/build.json hands one on")
IN_PROGRESS = ("a rollout of {other} on {service} is {phase} at {weight}%; finish it first: "
               "`shipml canary resume`, `shipml canary promote` or `shipml canary abort`")
NO_TEST_ROWS = ("canary.probe.enabled is true but model.test is not set; the probe sends real "
                "rows of the test set:\n  model:\n    test: data/test.csv")

NO_METRICS = ("{where}: no metric to analyse and the probe is off; every analysis would find "
              "no data, and no data is never good news. Give at least one, e.g.\n  canary:\n"
              "    metrics:\n      - {{name: error-rate, query: error_rate, max: 0.01}}")
NOT_PINNED = ("the stored rollout of {service} names the image {image}, a tag and not a digest "
              "(an older shipml wrote it); it cannot continue, since the tag may name another "
              "image now: `shipml canary abort`, then roll out the image by its digest")
NO_LABELS = ("canary.quality.enabled is true but the test set has no labels: set model.label to "
             "the label column of model.test, e.g.\n  model:\n    test: data/test.csv\n"
             "    label: churned")
QUALITY_NEEDS_PROBE = ("canary.quality.enabled is true but the probe is off, and the quality judge "
                       "compares the probe's answers with the labels; set probe.enabled: auto "
                       "(docker) and model.test, or quality.enabled: auto")
#: the shortest canary.lease: renewed every third of it, one slow answer must not lose it
MIN_LEASE_S = 10.0
#: the most rows one analysis sends to each revision, however large the test set
MAX_PROBE_CHUNK = 10000
PROBE_NEEDS_URLS = ("canary.probe.enabled is true but the kubernetes target gives the probe no "
                    "address of each revision (pods are not reachable from the runner); set "
                    "probe.enabled: auto (on for docker only) or false")


@dataclass(frozen=True)
class Settings:
    """Everything a rollout needs, read from the configuration once."""

    service: str
    plan: Plan
    specs: tuple[MetricSpec, ...]
    target_type: str
    target: Mapping[str, Any]
    prometheus: Mapping[str, Any]
    probe: Mapping[str, Any]
    probe_rows: tuple[Mapping[str, Any], ...]
    lease_s: float
    sample_window_s: float
    #: each probe row's label (model.label), None without labels
    probe_labels: tuple[Any, ...] | None = None
    #: rows the probe sends per analysis, rotating through the test set (0: every row)
    probe_chunk: int = 0


def read_settings(config: Config) -> Settings:
    """Return the rollout settings of ``config``; raise ConfigError for any bad value, before
    anything on the target is touched."""
    from shipml.canary.plan import parse_duration

    section = config.section("canary")
    where = config.where
    plan = plan_from_section(section, where)
    target = section["target"]
    kind = check_type(str(target["type"]), where("canary", "target", "type"))
    if kind == "kubernetes":
        from shipml.canary.targets.k8s_objects import check_method

        check_method(str(target["kubernetes"]["method"]),
                     where("canary", "target", "kubernetes", "method"))
    specs = metric_specs(section["metrics"], where("canary", "metrics"))
    probe = section["probe"]
    rows: tuple[Mapping[str, Any], ...] = ()
    test = config.section("model").get("test")
    enabled = probe["enabled"]
    if enabled is True and not test:
        raise ConfigError(NO_TEST_ROWS)
    if enabled is True and kind == "kubernetes":
        raise ConfigError(PROBE_NEEDS_URLS)
    labels: tuple[Any, ...] | None = None
    chunk = 0
    if (enabled is True or (enabled == "auto" and kind == "docker")) and test:
        rows, labels = _probe_rows(config)
        looks = planned_analyses(plan)
        chunk = min(len(rows), MAX_PROBE_CHUNK,
                    max(int(probe["rows"]), math.ceil(len(rows) / looks)))
        quality = _quality_spec(config, labels, looks)
        if quality is None:
            labels = None
        specs = (*specs, *_agreement_specs(probe, quality is None, where), *(
            (quality,) if quality is not None else ()))
    if section["quality"]["enabled"] is True and not rows:
        raise ConfigError(QUALITY_NEEDS_PROBE)
    if not specs:
        raise ConfigError(NO_METRICS.format(where=where("canary", "metrics")))
    service = str(section["service"] or _default_service(config))
    lease = parse_duration(section["lease"], where("canary", "lease"), allow_zero=False)
    if lease < MIN_LEASE_S:
        raise ConfigError(f"{where('canary', 'lease')}: {section['lease']!r} is shorter than "
                          f"{MIN_LEASE_S:.0f}s; the holder renews it every third of it, and one "
                          "slow answer of the target must not cost it the lock")
    return Settings(service=service, plan=plan, specs=specs, target_type=kind,
                    target=target.get(kind) or {}, prometheus=section["prometheus"], probe=probe,
                    probe_rows=rows, lease_s=lease, probe_labels=labels, probe_chunk=chunk,
                    sample_window_s=max(plan.window_s, 3 * float(
                        section["prometheus"].get("sample_step_s", 10))))


def _default_service(config: Config) -> str:
    """Return the service name the model file's stem gives: what ``canary.service`` allows (a
    letter first, lower-case letters, digits and dashes, at most 42)."""
    import re

    model = config.section("model").get("path") or "model"
    name = re.sub(r"[^a-z0-9-]+", "-", Path(str(model)).stem.lower()).strip("-")
    if not name[:1].isalpha():
        name = f"model-{name}"
    return name[:42].strip("-")


def _probe_rows(config: Config) -> tuple[tuple[Mapping[str, Any], ...], tuple[Any, ...] | None]:
    """Return every row of ``model.test`` as the probe sends it (the label left out) and each
    row's label (None when ``model.label`` is unset or not a column of the test set)."""
    import json

    from shipml.data import load_table

    model = config.section("model")
    table = load_table(config.resolve_path(model["test"], "model", "test"),
                       config.where("model", "test"))
    frame = table.frame
    label = model.get("label")
    labels: tuple[Any, ...] | None = None
    if label and label in frame.columns:
        labels = tuple(json.loads(frame[label].to_json(orient="values")))
        frame = frame.drop(columns=[label])
    rows = json.loads(frame.to_json(orient="records"))
    return tuple(rows), labels


def planned_analyses(plan: Plan) -> int:
    """Return how many analyses a rollout of ``plan`` makes when every one passes: per step
    below 100%, one per interval of its pause (at least one; one for a manual step)."""
    count = 0
    for step in plan.steps:
        if step.weight >= 100:
            continue
        pause = step.pause_s
        count += 1 if pause is None else max(1, math.ceil(pause / plan.interval_s - 1e-9))
    return max(1, count)


def _agreement_specs(probe: Mapping[str, Any], alone: bool, where: Any
                     ) -> tuple[MetricSpec, ...]:
    """Return the agreement metric: judged against ``probe.min_agreement`` when it is set, else
    a figure of its own only when no quality judge shows it (``alone``)."""
    threshold = probe.get("min_agreement")
    if threshold is None:
        if not alone:
            return ()
        return (MetricSpec(name="prediction-agreement", provider="probe", query="agreement",
                           judge="figure", unit="ratio"),)
    return metric_specs([{"name": "prediction-agreement", "provider": "probe",
                          "query": "agreement", "min": threshold}], where("canary", "probe"))


def _quality_spec(config: Config, labels: tuple[Any, ...] | None, looks: int
                  ) -> MetricSpec | None:
    """Return the paired quality judge of ``canary.quality``, or None when it is off (``auto``:
    on when the test set has labels). Raises ConfigError when it is on without labels."""
    quality = config.section("canary")["quality"]
    enabled = quality["enabled"]
    if enabled is False or (enabled == "auto" and labels is None):
        return None
    if labels is None:
        raise ConfigError(NO_LABELS)
    return MetricSpec(name="quality", provider="probe", query="quality", judge="paired",
                      max_drop=float(quality["max_drop"]),
                      confidence=float(quality["confidence"]), looks=looks,
                      task=str(config.section("model").get("task") or "auto"))


@dataclass
class Runner:
    """One ``shipml canary`` invocation: settings, target, providers, and the clock (injectable
    so tests drive time)."""

    settings: Settings
    target: Target
    providers: dict[str, MetricProvider]
    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    lines: list[str] | None = None
    rounds: list[AnalysisRound] | None = None
    #: the probe's paired record of each (stable, canary) pair of revisions, across rounds
    records: dict[tuple[str, str], ProbeRecord] = field(default_factory=dict)
    #: the lock's renewal while this runner holds it (see :func:`held`)
    heartbeat: Heartbeat | None = None

    def say(self, line: str) -> None:
        """Print one decision line, once (stdout only: a runner or act that shows both streams
        would show a second copy written to the log), and keep it for the result."""
        print(line, flush=True)
        if self.lines is not None:
            self.lines.append(line)

    def apply(self, decision: Decision) -> RolloutState:
        """Apply a decision to the target, then store its state there; return the state.
        Raises LockHeld or InfrastructureError first when this runner lost the lock."""
        self.check_lock()
        self.say(decision.line)
        target, canary = self.target, decision.state.canary
        if decision.action != "hold":
            self.shadow(decision.state)
        if decision.action == "set_weight":
            target.router.set_weight(decision.state.stable, canary, decision.weight)
        elif decision.action == "promote":
            target.workload.promote(canary)
        elif decision.action == "rollback":
            target.workload.rollback(canary)
        self.store(decision.state)
        return decision.state

    def check_lock(self) -> None:
        """Raise LockHeld or InfrastructureError when this runner lost the rollout lock (see
        :func:`held`): before it touches the target or its stored state."""
        if self.heartbeat is not None:
            self.heartbeat.check()

    def store(self, state: RolloutState) -> None:
        """Store ``state`` on the target, unless this runner lost the lock meanwhile (a long
        wait for readiness lies behind most writes: another run's state is not overwritten)."""
        self.check_lock()
        self.target.store.write_state(state)

    def shadow(self, state: RolloutState) -> None:
        """Point the stable's shadow mirror at the canary while ``state`` is at a shadow step,
        else switch it off (a plan without shadow steps touches nothing)."""
        plan = self.settings.plan
        if not plan.has_shadow:
            return
        step = plan.steps[state.step]
        if state.phase == "progressing" and step.shadow:
            self.target.workload.set_shadow(state.canary, step.sample, step.shadow_by)
        else:
            self.target.workload.set_shadow(None, 0.0, plan.steps[0].shadow_by)

    def specs_for(self, state: RolloutState) -> tuple[MetricSpec, ...]:
        """Return the metrics judged at ``state``'s step: the shadow series at a shadow step."""
        from shipml.canary.shadow import shadow_specs

        return shadow_specs(self.settings.specs, self.settings.plan.steps[state.step])

    def loop(self, state: RolloutState) -> RolloutState:
        """Analyse every interval until the rollout ends or pauses; return the last state."""
        plan = self.settings.plan
        while state.phase == "progressing":
            self.sleep(plan.interval_s)
            self.check_lock()
            round_ = self.analyse(state)
            state = self.apply(engine.decide(plan, state, round_.verdicts(self.specs_for(state)),
                                             self.now()))
        return state

    def analyse(self, state: RolloutState) -> AnalysisRound:
        """Run one analysis round of the canary against the stable."""
        providers = self.providers_for(state)
        stable = state.stable.revision if state.stable else ""
        round_ = analyse(self.specs_for(state), providers, canary=state.canary.revision,
                         stable=stable, window_s=self.settings.plan.window_s,
                         sample_window_s=max(self.settings.sample_window_s,
                                             self.now() - state.step_started_at),
                         min_requests=self.settings.plan.min_requests,
                         traffic_to=self.target.describe())
        if self.rounds is not None:
            self.rounds.append(round_)
        return round_

    def providers_for(self, state: RolloutState) -> dict[str, MetricProvider]:
        """Return the providers, the probe pointed at the revisions that run now with the
        rollout's paired record of them (kept across rounds: the probe is built anew each)."""
        found = dict(self.providers)
        settings = self.settings
        if any(spec.provider == "probe" for spec in settings.specs):
            stable = state.stable.revision if state.stable else ""
            key = (stable, state.canary.revision)
            if key not in self.records:
                self.records[key] = ProbeRecord(stable, state.canary.revision,
                                                total=len(settings.probe_rows),
                                                chunk=settings.probe_chunk
                                                or len(settings.probe_rows))
            found["probe"] = build_provider(
                "probe", settings.probe, endpoints=self.target.workload.endpoints(),
                rows=settings.probe_rows, max_age_s=settings.plan.interval_s / 2,
                labels=settings.probe_labels, record=self.records[key])
        return found


def make_runner(settings: Settings, config: Config) -> Runner:
    """Return the runner of ``settings``: its target and providers."""
    target = build_target(settings.target_type, settings.service, settings.target, config.where)
    providers: dict[str, MetricProvider] = {}
    if settings.plan.has_shadow or any(spec.provider == "prometheus" for spec in settings.specs):
        providers["prometheus"] = build_provider("prometheus", settings.prometheus)
    return Runner(settings=settings, target=target, providers=providers, lines=[], rounds=[])


@contextmanager
def held(runner: Runner) -> Iterator[None]:
    """Hold the service's rollout lock for the block: take it (LockHeld names a live holder),
    renew it from a heartbeat while the block runs, whatever it waits for, and release it."""
    store = runner.target.store
    lock = me(runner.settings.lease_s, runner.now())
    store.acquire(lock, runner.now())
    try:
        with Heartbeat(store, lock, runner.settings.service, runner.now) as beat:
            runner.heartbeat = beat
            yield
    finally:
        runner.heartbeat = None
        store.release(lock)


def roll_out(runner: Runner, image: str | None) -> RolloutState:
    """Run (or continue) the rollout of ``image`` to its end or a pause; return the final state.

    A stored rollout that has not ended continues from its step; another image while one is in
    progress is refused. With no stable revision yet the image is deployed plainly.
    """
    settings, store, workload = runner.settings, runner.target.store, runner.target.workload
    with held(runner):
        stored = store.read_state()
        if stored is not None and not stored.final:
            if image is not None and workload.resolve(image).revision != stored.canary.revision:
                raise ConfigError(IN_PROGRESS.format(other=stored.canary.revision,
                                                     service=settings.service,
                                                     phase=stored.phase, weight=stored.weight))
            _check_pinned(stored)
            runner.say(f"canary {settings.service}: resume {stored.canary.revision} at step "
                       f"{stored.step + 1}/{len(settings.plan.steps)}, weight {stored.weight}%")
            if stored.phase == "progressing":
                runner.target.router.set_weight(stored.stable, stored.canary, stored.weight)
                runner.shadow(stored)
            return runner.loop(stored)
        if image is None:
            raise ConfigError(NO_IMAGE)
        canary = workload.resolve(image)
        stable = workload.stable()
        now = runner.now()
        if stable is None:
            runner.say(f"canary {settings.service}: no stable revision yet: first deploy of "
                       f"{canary.revision} ({canary.image}), a plain rollout with health checks")
            workload.first_deploy(canary)
            state = RolloutState(service=settings.service, phase="promoted", step=0, weight=100,
                                 canary=canary, stable=None, started_at=now, step_started_at=now,
                                 updated_at=runner.now(),
                                 reason="first deploy: a plain rollout, no stable to compare with")
            runner.store(state)
            return state
        if stable.revision == canary.revision:
            runner.say(f"canary {settings.service}: {canary.revision} is already the stable "
                       "revision; nothing to roll out")
            state = RolloutState(service=settings.service, phase="promoted", step=0, weight=100,
                                 canary=canary, stable=stable, started_at=now,
                                 step_started_at=now, updated_at=now,
                                 reason="already the stable revision")
            return state
        for step in settings.plan.steps:
            if step.shadow:
                workload.check_shadow(step.shadow_by)
        workload.deploy_canary(canary)
        state = runner.apply(engine.begin(settings.plan, settings.service, canary, stable,
                                          runner.now()))
        return runner.loop(state)


def manual(runner: Runner, verb: engine.Command) -> RolloutState:
    """Apply ``promote``, ``abort`` or ``resume`` to the stored rollout; resume continues the
    loop in this process. Raises ConfigError when there is no rollout to act on."""
    settings, target = runner.settings, runner.target
    with held(runner):
        stored = target.store.read_state()
        if stored is None:
            raise ConfigError(f"there is no rollout of {settings.service} to {verb} on "
                              f"{target.describe()}")
        if verb != "abort":
            _check_pinned(stored)
        state = runner.apply(engine.command(settings.plan, stored, verb, runner.now()))
        return runner.loop(state) if state.phase == "progressing" else state


def _check_pinned(stored: RolloutState) -> None:
    """Raise ConfigError when a stored rollout that would move on names its canary by a tag."""
    if not stored.final and not stored.canary.pinned:
        raise ConfigError(NOT_PINNED.format(service=stored.service, image=stored.canary.image))


# --- the stage result ---------------------------------------------------------------------------


def stage_result(state: RolloutState | None, clock: StageClock, runner: Runner | None,
                 *, preflight: tuple[Check, ...] = (), summary: str | None = None) -> StageResult:
    """Return the canary's stage result: a check per step (how it ended and why) and per metric
    of the last analysis, the steps table, the per-step table of every metric's canary and
    stable values with its figures, and the weight / error rate / p95 series."""
    checks = list(preflight)
    if state is None:
        return StageResult(stage="canary", status="fail", summary=summary or "not rolled out",
                           started_at=clock.started_at, duration_s=clock.elapsed(),
                           checks=tuple(checks))
    for record in state.history:
        status: Any = {"pass": "pass", "fail": "fail"}.get(record.status, "warn")
        checks.append(Check(f"step {record.step + 1} at {record.weight}% traffic passed its "
                            "analysis", status, observed=record.rounds, threshold=None,
                            detail=_step_story(record)))
    rounds = runner.rounds if runner and runner.rounds else []
    # The stored state keeps each step's last round: a resumed or manual run has it too.
    last = next((record.metrics for record in reversed(state.history) if record.metrics), ())
    for result in last:
        status = {"pass": "pass", "fail": "fail"}.get(result.verdict, "warn")
        checks.append(Check(result.sentence, status, observed=result.canary,
                            threshold=result.threshold, detail=result.detail,
                            group="last analysis"))
    status_of = {"promoted": "pass", "rolled_back": "fail", "aborted": "fail",
                 "paused": "skipped", "progressing": "skipped"}
    stage_status: Any = status_of[state.phase]
    text = summary or _summary(state)
    labels = tuple(_step_label(r) for r in state.history)
    steps = Table(
        title="Promotion steps",
        columns=(Column("step", "step"), Column("weight", "traffic weight", "%"),
                 Column("rounds", "analyses"), Column("failed", "failed"),
                 Column("inconclusive", "inconclusive"),
                 Column("error_rate_pct", "error rate", "%"), Column("p95_ms", "p95", "ms"),
                 Column("status", "status"), Column("reason", "why")),
        rows=tuple({"step": r.step + 1, "weight": r.weight, "rounds": r.rounds,
                    "failed": r.failed, "inconclusive": r.inconclusive,
                    "error_rate_pct": None if r.error_rate is None else r.error_rate * 100,
                    "p95_ms": r.p95_ms, "status": r.status, "reason": r.reason}
                   for r in state.history))
    analysis = _analysis_table(state)
    series: tuple[Series, ...] = ()
    if state.history:
        series = (
            Series("Canary traffic weight per step", "step", "weight %", labels,
                   tuple(float(r.weight) for r in state.history), "bar"),
            Series("Canary error rate per step", "step", "error rate %", labels,
                   tuple(math.nan if r.error_rate is None else round(r.error_rate * 100, 4)
                         for r in state.history)),
            Series("Canary p95 latency per step", "step", "p95 ms", labels,
                   tuple(math.nan if r.p95_ms is None else r.p95_ms for r in state.history)),
        )
    analysis_s = [round_.seconds for round_ in rounds]
    metrics = {
        "service": state.service, "phase": state.phase, "final_weight": state.weight,
        "image": state.canary.image, "revision": state.canary.revision,
        "stable": state.stable.revision if state.stable else None,
        "failures": state.failures, "reason": state.reason,
        "analyses": len(rounds),
        "analysis_s_mean": sum(analysis_s) / len(analysis_s) if analysis_s else None,
        "steps": [record.to_dict() for record in state.history],
        "decisions": list(runner.lines or []) if runner else [],
    }
    tables = tuple(table for table in (steps, analysis) if table.rows)
    return StageResult(stage="canary", status=stage_status, summary=text,
                       started_at=clock.started_at, duration_s=clock.elapsed(),
                       metrics=metrics, checks=tuple(checks), tables=tables, series=series)


def _step_label(record: engine.StepRecord) -> str:
    return f"{record.step + 1}: {record.weight}%"


def _step_story(record: engine.StepRecord) -> str:
    """Return how a step ended in words: why it failed (the metric, its value against the
    stable's) and its analyses counted."""
    if record.reason:
        return f"{record.reason} — {record.tally}"
    if record.failing is not None and record.status != "pass":
        return f"{record.failing.name} — {record.failing.detail} — {record.tally}"
    return record.tally


def _analysis_table(state: RolloutState) -> Table:
    """Return the per-step table of the last analysis of each step: every metric (whatever its
    judge) with its verdict, canary and stable values and further figures (a quality judge's
    interval and discordant pairs, agreement), and the failure that ended a step when a later
    round passed."""
    rows: list[dict[str, Any]] = []
    for record in state.history:
        shown = list(record.metrics)
        if record.failing is not None and record.failing not in shown:
            shown.append(record.failing)
        for result in shown:
            earlier = result is record.failing and result not in record.metrics
            unit = f" ({result.unit})" if result.unit and result.unit != "ratio" else ""
            rows.append({"step": _step_label(record), "metric": f"{result.name}{unit}",
                         "verdict": result.verdict + (" (an earlier analysis)" if earlier else ""),
                         "canary": result.canary, "stable": result.stable,
                         "figures": _figures(result.figures), "detail": result.detail})
    return Table(
        title="Analysis per step (the step's last analysis)",
        columns=(Column("step", "step"), Column("metric", "metric"), Column("verdict", "verdict"),
                 Column("canary", "canary"), Column("stable", "stable"),
                 Column("figures", "figures"), Column("detail", "detail")),
        rows=tuple(rows))


def _figures(figures: Mapping[str, float | int | None]) -> str:
    return ", ".join(f"{name} {_figure(value)}" for name, value in figures.items())


def _figure(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _summary(state: RolloutState) -> str:
    if state.phase == "promoted":
        text = f"{state.canary.revision} promoted to 100%, now the stable of {state.service}"
        if state.reason and ("first deploy" in state.reason or "by hand" in state.reason):
            text += f" ({state.reason})"
        return text
    if state.phase == "paused":
        return (f"paused at step {state.step + 1} ({state.weight}%): run `shipml canary resume` "
                "or `shipml canary promote`")
    if state.phase == "progressing":
        return f"progressing at step {state.step + 1} ({state.weight}%)"
    return state.reason or state.phase.replace("_", " ")


def summary_of(round_: AnalysisRound | None) -> str:
    """Return a one-line analysis summary (an action output): each metric's name, canary value
    and verdict."""
    if round_ is None:
        return ""
    return "; ".join(f"{r.name} {_figure(r.canary)} {r.verdict}" if r.canary is not None
                     else f"{r.name} {r.verdict}" for r in round_.results)


__all__ = ["Decision", "Runner", "Settings", "Verdicts", "make_runner", "manual", "read_settings",
           "roll_out", "stage_result"]
