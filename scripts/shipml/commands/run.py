"""``shipml run``: the pipeline in one command, stage after stage, then ``report``.

Which stages run: ``--stages`` (or ``SHIPML_STAGES``) when given, else the gates of the
pull-request half that have a section written in ``shipml.yaml`` (validate alone when none has),
and ``report`` last. A gate failure (exit 1) does not stop the pipeline, so the report shows every
stage; bad input (2) and infrastructure errors (3) stop the gates, and ``report`` still publishes
what finished. A stage that consumes a hand-off (latency reads a model) gets the one an earlier
stage of this run produced and passed, unless the user named that input themselves. A config that
does not load still ends in an error result per stage and an error report, so that no earlier
"ready to ship" comment stays standing.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shipml import stages
from shipml._stage import IN_PIPELINE
from shipml.config import Config, find_config, load_config
from shipml.errors import EXIT_CONFIG, EXIT_GATE_FAILED, EXIT_INFRA, EXIT_OK, ConfigError
from shipml.results import Handoff, StageClock, StageError, StageResult, results_path

#: the pipeline's status by its exit code
_STATUS = ("pass", "fail", "error", "error")
_WORDS = {0: "passed", 1: "failed", 2: "bad input", 3: "infrastructure error"}

log = logging.getLogger("shipml.run")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run", parents=[common],
        help="run the pipeline: the configured gates, then report",
        description="Run every stage configured in shipml.yaml (a section per stage), then "
                    "report. Gate failures do not stop the pipeline; bad input and "
                    "infrastructure errors do. Exit 0 all gates passed, 1 a gate failed, "
                    "2 bad input, 3 infrastructure.",
    )
    parser.add_argument("--stages", metavar="LIST",
                        help="comma-separated stages to run, in pipeline order "
                             f"({', '.join(stages.pipeline())}); default: $SHIPML_STAGES, else the "
                             "stages with a section in shipml.yaml, then report")
    parser.set_defaults(handler=run_cli, writes_results=True)


def select_stages(explicit: str | None, written: Sequence[str], source: str) -> list[str]:
    """Return the stages to run in pipeline order.

    ``explicit`` is a comma-separated list (from ``source``); without it the pull-request gates
    whose sections the user wrote are run (validate when there are none), followed by report.
    Raises ConfigError for an unknown stage or a list that names none.
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
    gates = [stage.name for stage in stages.STAGES
             if stage.gate and stage.half == "pull_request" and stage.name in written]
    return [*(gates or ["validate"]), "report"]


def run_cli(args: argparse.Namespace) -> int:
    """Run the selected stages through the CLI, one after the other; return the worst code."""
    from shipml.cli import main, output_dir

    output = output_dir(args)
    explicit, source = _explicit_stages(args)
    try:
        config_path = find_config(args.config)
        config = load_config(config_path)
        chosen = select_stages(explicit, sorted(config.written), source)
    except ConfigError as exc:
        return _stopped_at_load(args, output, exc, explicit)
    for stage in chosen:
        # A result left by an earlier run of a stage that runs now must not outlive a crash.
        results_path(output, stage).unlink(missing_ok=True)
    common = [*(["--config", str(config_path)] if config_path else []), "--output-dir", str(output)]
    if args.debug:
        common.append("--debug")

    codes: dict[str, int] = {}
    stopped: int | None = None  # the exit code (2 or 3) that stops the remaining gates
    previous = os.environ.get(IN_PIPELINE)
    os.environ[IN_PIPELINE] = "1"
    try:
        for stage in chosen:
            if stopped is not None and stage != "report":
                log.info("shipml run: %s not run (an earlier stage exited %d)", stage, stopped)
                continue
            extra = _handoff_flags(stage, config, output, codes)
            print(f"\n=== shipml {stage} ===", flush=True)
            codes[stage] = main([stage, *common, *extra])
            if codes[stage] > EXIT_GATE_FAILED and stopped is None:
                stopped = codes[stage]
    finally:
        if previous is None:
            os.environ.pop(IN_PIPELINE, None)
        else:
            os.environ[IN_PIPELINE] = previous
    worst = max(codes.values(), default=EXIT_OK)
    _set_outputs(output, worst, codes)
    listed = ", ".join(f"{stage} {_WORDS.get(code, f'exit {code}')}" for stage, code in codes.items())
    print(f"\nshipml run: {listed}")
    return worst


def _explicit_stages(args: argparse.Namespace) -> tuple[str | None, str]:
    if args.stages is not None:
        return args.stages, "--stages"
    from_env = os.environ.get("SHIPML_STAGES", "")
    return (from_env if from_env.strip() else None), "environment SHIPML_STAGES"


def _handoff_flags(stage: str, config: Config, output: Path, codes: dict[str, int]) -> list[str]:
    """Return the flags that hand ``stage`` what an earlier passing stage of this run produced,
    for each input the user did not name themselves."""
    entry = stages.get(stage)
    if entry is None or not entry.consumes:
        return []
    options = importlib.import_module(entry.module).OPTIONS
    flags: list[str] = []
    for wanted in entry.consumes:
        option = next((o for o in options if o.key == wanted.key), None)
        if option is None or _user_set(config, wanted.key) or os.environ.get(option.env, "").strip():
            continue
        for producer in reversed(stages.STAGES):
            if wanted.kind not in producer.produces or codes.get(producer.name) != EXIT_OK:
                continue
            handed = StageResult.read(results_path(output, producer.name)).handed(wanted.kind)
            reference = _reference(handed)
            if reference:
                flags += [option.flag, reference]
                break
    return flags


def _reference(handed: Handoff | None) -> str:
    """Return what names a hand-off on a command line: a file that exists, or an image
    reference (``repo@sha256:…``); '' for none."""
    if handed is None:
        return ""
    if handed.path:
        return handed.path if Path(handed.path).is_file() else ""
    return handed.ref


def _user_set(config: Config, key: Sequence[str]) -> bool:
    node: Any = config.data
    for part in key:
        node = node.get(part) if isinstance(node, dict) else None
    return node not in (None, "", [])


def _set_outputs(output: Path, worst: int, codes: dict[str, int]) -> None:
    from shipml.ci import detect

    platform = detect()
    # Each stage also set its own outputs (a later stage's `result` replaces an earlier one's);
    # these are the pipeline's, set last so that they win.
    platform.set_output("status", _STATUS[min(worst, EXIT_INFRA)])
    platform.set_output("results-dir", str(output / "results"))
    for stage in stages.gates():
        path = results_path(output, stage)
        if stage in codes and path.is_file():
            platform.set_output(f"{stage}-status", StageResult.read(path).status)


def _stopped_at_load(args: argparse.Namespace, output: Path, exc: ConfigError,
                     explicit: str | None) -> int:
    """The config (or the stage list) did not load: leave an error result for every gate that
    would have run, publish an error report, set the outputs; return 2."""
    from shipml.ci import detect
    from shipml.report.core import publish_error_report

    print(f"shipml run: {exc.message}")
    clock = StageClock()
    asked = [name.strip() for name in (explicit or "").split(",") if name.strip()]
    gates = [name for name in stages.gates() if name in asked] or ["validate"]
    error = StageError("config", EXIT_CONFIG, exc.message)
    platform = detect()
    for stage in gates:
        StageResult(stage=stage, status="error", summary=exc.message,
                    started_at=clock.started_at, duration_s=clock.elapsed(),
                    error=error).write(output)
        platform.set_output(f"{stage}-status", "error")
    platform.set_output("status", "error")
    platform.set_output("results-dir", str(output / "results"))
    publish_error_report(output, platform)
    return EXIT_CONFIG
