"""``shipml run``: the pipeline in one command, stage after stage, then ``report``.

Which half runs comes from the event: a pull request runs the gates; a push to the default branch
or a tag (the release) runs the gates again on the merged commit, then ``build``, ``sign`` and the
rollout (``canary`` when its section is written), so that the image's attestation carries the
gates of exactly this commit. The event is ``--event`` > ``SHIPML_EVENT`` > what the CI says
(GitHub's event name and ref, Jenkins' ``CHANGE_ID`` / ``TAG_NAME`` / ``BRANCH_NAME``) >
``pull_request``. ``--stages`` (or ``SHIPML_STAGES``) overrides the selection whatever the event.

Any stage that does not pass (a gate failed, bad input, infrastructure, cancelled by SIGTERM or
SIGINT) stops every later stage but ``report``: no image is built from a model that failed a gate
and nothing is rolled out; each stage not run leaves a ``skipped`` result that says why, and the
report publishes them all. A stage that consumes a hand-off (latency reads a model, sign an image)
gets the one an earlier stage of this run produced and passed, unless the user named that input
themselves. A config that does not load still ends in an error result per stage and an error
report, so that no earlier "ready to ship" comment stays standing. Stages run in this process, so a
signal reaches the running stage, which leaves a ``cancelled`` result; the report then still runs
(a second signal stops it) and the run exits 128 + the signal's number.

Under act the run is shipml's dry run: nothing is pushed to a registry that is not on loopback,
nothing is signed keylessly or into a transparency log, the rollout only targets the local
Docker Engine, and the report is printed, never posted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from shipml import stages
from shipml._stage import IN_PIPELINE, Cancelled, Option, cancellable, overrides
from shipml.config import Config, find_config, load_config, parse_bool
from shipml.errors import EXIT_CONFIG, EXIT_INFRA, EXIT_OK, ConfigError
from shipml.results import (
    CANCEL_EXIT_CODES,
    Handed,
    StageClock,
    StageError,
    StageResult,
    handed_on,
    results_path,
)

#: the half of the pipeline a run is for
Half = Literal["pull_request", "release"]

#: the pipeline's status by its exit code
_STATUS = ("pass", "fail", "error", "error")
_WORDS = {0: "passed", 1: "failed", 2: "bad input", 3: "infrastructure error",
          **{code: f"cancelled ({name})" for name, code in CANCEL_EXIT_CODES.items()}}
#: the events ``--event`` takes, and the half of the pipeline each one runs
EVENTS: dict[str, Half] = {"pull_request": "pull_request", "push": "release"}
#: what a push must be for the release half: a tag or the default branch
GITHUB_RELEASE_EVENTS = ("push", "workflow_dispatch", "release")

UNKNOWN_EVENT = "{source}: {value!r} is not an event; valid: pull_request, push"

log = logging.getLogger("shipml.run")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run", parents=[common],
        help="run the pipeline: the gates, the release on a push, then report",
        description="On a pull request run the gates configured in shipml.yaml (a section per "
                    "stage), then report; on a push to the default branch or a tag run them, "
                    "then build, sign and roll out (canary, when configured), then report. A "
                    "stage that does not pass stops every later one but report. Exit 0 all "
                    "passed, 1 a gate failed, 2 bad input, 3 infrastructure.",
    )
    parser.add_argument("--stages", metavar="LIST",
                        help="comma-separated stages to run, in pipeline order "
                             f"({', '.join(stages.pipeline())}); default: $SHIPML_STAGES, else the "
                             "event's half: the stages with a section in shipml.yaml, then report")
    parser.add_argument("--event", choices=tuple(EVENTS), default=None,
                        help="which half runs by default: pull_request (the gates) or push (the "
                             "gates, then the release); default: $SHIPML_EVENT, else what the CI "
                             "says (GitHub's event and ref, Jenkins' CHANGE_ID, TAG_NAME, "
                             "BRANCH_NAME), else pull_request")
    parser.add_argument("--rollout", action=argparse.BooleanOptionalAction, default=None,
                        help="on a release, roll out (canary) after build and sign; "
                             "--no-rollout leaves it to a later job (default: $SHIPML_ROLLOUT, "
                             "else true)")
    parser.set_defaults(handler=run_cli, writes_results=True)


# --- which half: the event ----------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """The half of the pipeline this run is for, and the sentence that says why."""

    half: Half
    reason: str


def detect_event(environ: Mapping[str, str], default_branch: str | None = None) -> Event:
    """Return the half the CI's event calls for, judged from ``environ``.

    GitHub (and act): a push, a manual dispatch or a release on a tag or on the repository's
    default branch is a release, anything else (pull_request, a push to another branch) runs the
    gates. Jenkins: ``CHANGE_ID`` is a pull request, ``TAG_NAME`` or ``BRANCH_NAME`` equal to the
    default branch a release. ``default_branch`` is used where the CI does not say it (Jenkins,
    or a GitHub event without a repository); ``main`` when None. Raises ConfigError naming
    GITHUB_EVENT_PATH when the payload is unusable.
    """
    from shipml.ci import detect, event_field, read_event

    platform = detect(environ)
    if platform.name in ("github", "act"):
        name = environ.get("GITHUB_EVENT_NAME", "")
        if name not in GITHUB_RELEASE_EVENTS:
            return Event("pull_request", f"GitHub event {name or 'unknown'}")
        ref = environ.get("GITHUB_REF", "")
        if ref.startswith("refs/tags/"):
            return Event("release", f"GitHub {name} of tag {ref.removeprefix('refs/tags/')}")
        path = environ.get("GITHUB_EVENT_PATH") or ""
        default = (event_field(read_event(path), path, "repository", "default_branch", kind=str)
                   or default_branch or "main")
        branch = ref.removeprefix("refs/heads/")
        if ref.startswith("refs/heads/") and branch == default:
            return Event("release", f"GitHub {name} to the default branch {branch}")
        return Event("pull_request", f"GitHub {name} to {branch or ref or 'an unknown ref'}, not "
                                     f"the default branch {default}")
    if platform.name == "jenkins":
        if environ.get("CHANGE_ID", "").strip():
            return Event("pull_request", f"Jenkins change request {environ['CHANGE_ID']}")
        if environ.get("TAG_NAME", "").strip():
            return Event("release", f"Jenkins build of tag {environ['TAG_NAME']}")
        branch = environ.get("BRANCH_NAME", "")
        default = default_branch or "main"
        if branch and branch == default:
            return Event("release", f"Jenkins build of the default branch {branch}")
        return Event("pull_request", f"Jenkins build of {branch or 'an unnamed branch'}")
    return Event("pull_request", "no CI event (use --event push for the release)")


def choose_event(flag: str | None, environ: Mapping[str, str],
                 default_branch: str | None = None) -> Event:
    """Return the half to run: ``--event`` > ``SHIPML_EVENT`` > :func:`detect_event`.

    Raises ConfigError for an event that is not ``pull_request`` or ``push``.
    """
    for value, source in ((flag, "--event"), (environ.get("SHIPML_EVENT"), "environment SHIPML_EVENT")):
        if value is None or not value.strip():
            continue
        if value.strip() not in EVENTS:
            raise ConfigError(UNKNOWN_EVENT.format(source=source, value=value))
        return Event(EVENTS[value.strip()], f"{source} {value.strip()}")
    return detect_event(environ, default_branch)


# --- which stages -------------------------------------------------------------------------------


def select_stages(explicit: str | None, written: Sequence[str], source: str,
                  half: Half = "pull_request", rollout: bool = True) -> list[str]:
    """Return the stages to run in pipeline order.

    ``explicit`` is a comma-separated list (from ``source``) and wins. Without it: the
    pull-request gates whose sections the user wrote (validate when there are none); on the
    release half then build and sign, and every other release stage whose section is written
    (canary) unless ``rollout`` is False; report last. Raises ConfigError for an unknown stage or a
    list that names none.
    """
    pipeline = stages.pipeline()
    if explicit is not None:
        asked = [name.strip() for name in explicit.split(",") if name.strip()]
        unknown = [name for name in asked if name not in pipeline]
        if unknown:
            raise ConfigError(f"{source}: unknown stage {unknown[0]!r}; valid stages: "
                              f"{', '.join(pipeline)}")
        if not asked:
            raise ConfigError(f"{source}: names no stage; give a comma-separated list of "
                              f"{', '.join(pipeline)}, or leave it unset for the configured ones")
        return [stage for stage in pipeline if stage in asked]
    chosen = list(stages.configured_gates(written) or stages.fallback_gates())
    if half == "release":
        chosen += stages.release_stages(written, rollout)
    return [*chosen, *stages.closing()]


# --- the run ------------------------------------------------------------------------------------


def run_cli(args: argparse.Namespace) -> int:
    """Run the selected stages through the CLI, one after the other; return the worst code."""
    from shipml.cli import main, output_dir

    output = output_dir(args)
    explicit, source = _explicit_stages(args)
    event: Event | None = None
    try:
        config_path = find_config(args.config)
        config = load_config(config_path)
        event = choose_event(args.event, os.environ, _configured_default_branch(config))
        rollout = _rollout(args)
        chosen = select_stages(explicit, sorted(config.written), source, event.half, rollout)
    except ConfigError as exc:
        return _stopped_at_load(args, output, exc, explicit)
    print(f"shipml run: the {event.half.replace('_', '-')} half ({event.reason}): "
          f"{', '.join(chosen)}", flush=True)
    for stage in chosen:
        # A result left by an earlier run of a stage that runs now must not outlive a crash.
        results_path(output, stage).unlink(missing_ok=True)
    common = [*(["--config", str(config_path)] if config_path else []), "--output-dir", str(output)]
    if args.debug:
        common.append("--debug")
    dry_run = _under_act()
    closing = stages.closing()

    codes: dict[str, int] = {}
    stopped: tuple[str, int] | None = None  # the stage that stopped the rest, and its exit code
    previous = os.environ.get(IN_PIPELINE)
    os.environ[IN_PIPELINE] = "1"
    try:
        for stage in chosen:
            if stopped is not None and stage not in closing:
                reason = f"not run: {stopped[0]} {_WORDS.get(stopped[1], f'exit {stopped[1]}')}"
                log.info("shipml run: %s %s", stage, reason)
                _skip(output, stage, reason)
                continue
            try:
                # Stages run in this process: a signal reaches the running one (which leaves a
                # cancelled result); one between stages is caught here.
                with cancellable():
                    extra = handoff_flags(stage, config, output, codes)
                    if dry_run:
                        plan = act_dry_run(stage, config, output, codes)
                        if plan.skip:
                            print(f"shipml run: {stage} {plan.skip}", flush=True)
                            _skip(output, stage, plan.skip)
                            continue
                        extra += list(plan.flags)
                    print(f"\n=== shipml {stage} ===", flush=True)
                    codes[stage] = main([stage, *common, *extra])
            except Cancelled as cancel:
                codes[stage] = cancel.exit_code
                _cancelled(output, stage, cancel)
            if codes[stage] != EXIT_OK and stopped is None and stage not in closing:
                stopped = (stage, codes[stage])
    finally:
        if previous is None:
            os.environ.pop(IN_PIPELINE, None)
        else:
            os.environ[IN_PIPELINE] = previous
    worst = max(codes.values(), default=EXIT_OK)
    # --no-rollout: a later job (behind an environment) rolls out what this one built and signed
    deferred = (event.half == "release" and not rollout and explicit is None and worst == EXIT_OK
                and bool(stages.deferred_rollouts(config.written)))
    _set_outputs(output, worst, chosen, event.half, deferred)
    listed = ", ".join(f"{stage} {_WORDS.get(code, f'exit {code}')}" for stage, code in codes.items())
    not_run = [stage for stage in chosen if stage not in codes]
    print(f"\nshipml run: {listed}" + (f"; not run: {', '.join(not_run)}" if not_run else ""))
    return worst


def _explicit_stages(args: argparse.Namespace) -> tuple[str | None, str]:
    if args.stages is not None:
        return args.stages, "--stages"
    from_env = os.environ.get("SHIPML_STAGES", "")
    return (from_env if from_env.strip() else None), "environment SHIPML_STAGES"


def _rollout(args: argparse.Namespace) -> bool:
    if args.rollout is not None:
        return bool(args.rollout)
    value = os.environ.get("SHIPML_ROLLOUT", "")
    return parse_bool(value, "environment SHIPML_ROLLOUT") if value.strip() else True


def _configured_default_branch(config: Config) -> str | None:
    value = _lookup(_as_stage_reads(config, stages.DEFAULT_BRANCH_KEY), stages.DEFAULT_BRANCH_KEY)
    return str(value) if value else None


def _cancelled(output: Path, stage: str, cancel: Cancelled) -> None:
    """Leave the cancelled result of a gate a signal stopped before its own command could."""
    from shipml.cli import CANCELLED

    message = CANCELLED.format(signal=cancel.signal_name)
    print(f"shipml {stage}: {message}", flush=True)
    entry = stages.get(stage)
    if entry is not None and entry.gate and not results_path(output, stage).is_file():
        clock = StageClock()
        StageResult(stage=stage, status="error", summary=message, started_at=clock.started_at,
                    duration_s=0.0, error=StageError("cancelled", cancel.exit_code,
                                                     message)).write(output)


def _skip(output: Path, stage: str, reason: str) -> None:
    clock = StageClock()
    StageResult(stage=stage, status="skipped", summary=reason, started_at=clock.started_at,
                duration_s=0.0).write(output)


def handoff_flags(stage: str, config: Config, output: Path, ran: Mapping[str, int]) -> list[str]:
    """Return the flags that hand ``stage`` what an earlier stage of this run produced and
    passed (``ran``: exit code per stage run so far), named as :attr:`Handoff.argument` says,
    for each input the user did not set themselves (file, flag or variable)."""
    entry = stages.get(stage)
    if entry is None or not entry.consumes:
        return []
    flags: list[str] = []
    for wanted in entry.consumes:
        option = _option(wanted.key)
        if option is None or _user_set(config, wanted.key) or os.environ.get(option.env, "").strip():
            continue
        handed = handed_on(output, wanted.kind, ran)
        if handed is not None and handed.handoff.argument:
            flags += [option.flag, handed.handoff.argument]
    return flags


def _option(key: Sequence[str]) -> Option | None:
    """Return the option row of config ``key``, from the table of the stage whose section it is
    in (None for a shared section's key)."""
    entry = stages.get(key[0])
    if entry is None:
        return None
    options: Sequence[Option] = importlib.import_module(entry.module).OPTIONS
    return next((option for option in options if tuple(option.key) == tuple(key)), None)


def _as_stage_reads(config: Config, *keys: Sequence[str]) -> Config:
    """Return ``config`` with the ``SHIPML_*`` variables of ``keys`` applied, as the stages
    whose keys they are read them. Raises ConfigError for a bad value, naming the variable."""
    rows = [option for option in (_option(key) for key in keys) if option is not None]
    if not rows:
        return config
    return load_config(config.file, overrides(argparse.Namespace(), rows))


def _lookup(config: Config, key: Sequence[str]) -> Any:
    node: Any = config.data
    for part in key:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _user_set(config: Config, key: Sequence[str]) -> bool:
    return _lookup(config, key) not in (None, "", [])


# --- the dry run under act ----------------------------------------------------------------------


@dataclass(frozen=True)
class DryRun:
    """How a stage runs under act: extra flags, or why it does not run at all."""

    flags: tuple[str, ...] = ()
    skip: str = ""


def is_loopback_registry(image: str) -> bool:
    """Return True when ``image`` (REGISTRY/REPOSITORY[...]) lives on a loopback registry; a
    bare name (Docker Hub) or text that is no image reference is not."""
    from shipml.oci.reference import Reference

    try:
        return Reference.parse(image).is_loopback
    except ConfigError:
        return False


def act_dry_run(stage: str, config: Config, output: Path, ran: Mapping[str, int]) -> DryRun:
    """Return how ``stage`` runs in shipml's dry run under act, as its registry entry's
    :class:`shipml.stages.DryRun` says: build pushes only to a loopback registry (else it builds
    without pushing); sign signs only an image on a loopback registry, with a key and without a
    transparency log; canary rolls out only to the local Docker Engine. Other stages run as they
    are (report never posts under act). A key whose variable holds a bad value leaves the stage
    to run and say so itself (exit 2 before any work)."""
    entry = stages.get(stage)
    if entry is None or entry.dry_run is None:
        return DryRun()
    rules = entry.dry_run
    keys = [key for key in (rules.refused_when, rules.registry_image, rules.target) if key]
    try:
        reads = _as_stage_reads(config, *keys)
    except ConfigError:
        return DryRun()
    if rules.refused_when and _lookup(reads, rules.refused_when) is True:
        return DryRun(skip=f"{DRY_RUN}: {rules.refused}")
    flags = list(rules.flags)
    if rules.registry_image:
        image = str(_lookup(reads, rules.registry_image) or "") or _handed_image(entry, output, ran)
        if not is_loopback_registry(image):
            said = rules.off_loopback.format(image=image or "the built image")
            if not rules.off_loopback_flags:
                return DryRun(skip=f"{DRY_RUN}: {said}")
            if image:  # none named: the stage runs as it is and says what is missing
                print(f"shipml run: {DRY_RUN}: {said}", flush=True)
                flags += rules.off_loopback_flags
    if rules.target:
        target = str(_lookup(reads, rules.target) or rules.local_target)
        docker_host = os.environ.get("DOCKER_HOST", "")
        if target != rules.local_target:
            return DryRun(skip=f"{DRY_RUN}: would roll out to the {target} target; {LOCAL_ONLY}")
        if docker_host and not docker_host.startswith("unix://"):
            return DryRun(skip=f"{DRY_RUN}: would roll out to the engine at {docker_host}; "
                               f"{LOCAL_ONLY}")
    return DryRun(flags=tuple(flags))


DRY_RUN = "dry run under act"
LOCAL_ONLY = "only the local Docker Engine is a target"


def _handed_image(entry: stages.Stage, output: Path, ran: Mapping[str, int]) -> str:
    """Return where the image hand-off ``entry`` consumes lives (its reference, registry
    included), or ''."""
    handed: Handed | None = None
    for wanted in entry.consumes:
        handed = handed or handed_on(output, wanted.kind, ran)
    return handed.handoff.ref if handed is not None else ""


def _under_act() -> bool:
    from shipml.ci import detect

    return detect().name == "act"


# --- outputs ------------------------------------------------------------------------------------


def _set_outputs(output: Path, worst: int, chosen: Sequence[str], half: Half,
                 deferred: bool = False) -> None:
    from shipml.ci import detect
    from shipml.report.model import overall_verdict

    platform = detect()
    # Each stage also set its own outputs (a later stage's `result` replaces an earlier one's);
    # these are the pipeline's, set last so that they win.
    ran: dict[str, StageResult] = {}
    for stage in chosen:
        path = results_path(output, stage)
        if path.is_file():
            ran[stage] = StageResult.read(path)
    platform.set_output("status", _STATUS[min(worst, EXIT_INFRA)])
    platform.set_output("verdict", overall_verdict([r for s, r in ran.items()
                                                     if s not in stages.closing()]))
    platform.set_output("half", half)
    platform.set_output("results-dir", str(output / "results"))
    for stage in stages.gates():
        if stage in ran:
            platform.set_output(f"{stage}-status", ran[stage].status)
    for entry in stages.STAGES:
        for row in entry.outputs:
            platform.set_output(row.name, _output_value(row, ran.get(entry.name), output, half,
                                                        deferred))


def _output_value(row: stages.RunOutput, result: StageResult | None, output: Path, half: Half,
                  deferred: bool) -> str:
    """Return the value of step output ``row`` from the result of the stage that declares it
    (None: it left none)."""
    if row.source == "file":
        return str(output / row.file) if (output / row.file).is_file() else ""
    if row.source == "rollout":
        if half != "release":
            return ""
        return "deferred" if deferred else _rollout_outcome(result)
    image = result.handed("image") if result is not None and result.status == "pass" else None
    if image is None:
        return ""
    return image.repository if row.source == "image-repository" else image.digest


def _rollout_outcome(canary: StageResult | None) -> str:
    """Return promoted, paused, rolled_back, aborted, refused, or not-run (deferred is decided by
    the caller)."""
    if canary is None or (canary.status == "skipped" and not canary.metrics):
        return "not-run"
    phase = canary.metrics.get("phase")
    if phase:
        return str(phase)
    return "refused" if canary.status == "fail" else "not-run"


def _stopped_at_load(args: argparse.Namespace, output: Path, exc: ConfigError,
                     explicit: str | None) -> int:
    """The config (or the stage list) did not load: leave an error result for every gate that
    would have run, publish an error report, set the outputs; return 2."""
    from shipml.ci import detect
    from shipml.report.core import publish_error_report

    print(f"shipml run: {exc.message}")
    clock = StageClock()
    asked = [name.strip() for name in (explicit or "").split(",") if name.strip()]
    gates = [name for name in stages.gates() if name in asked] or list(stages.fallback_gates())
    error = StageError("config", EXIT_CONFIG, exc.message)
    platform = detect()
    for stage in gates:
        StageResult(stage=stage, status="error", summary=exc.message,
                    started_at=clock.started_at, duration_s=clock.elapsed(),
                    error=error).write(output)
        platform.set_output(f"{stage}-status", "error")
    platform.set_output("status", "error")
    platform.set_output("verdict", "error")
    platform.set_output("results-dir", str(output / "results"))
    publish_error_report(output, platform)
    for entry in stages.STAGES:
        for row in entry.outputs:
            if row.source in ("file", "rollout"):
                platform.set_output(row.name, _output_value(row, None, output, "pull_request",
                                                            False))
    return EXIT_CONFIG
