"""``shipml run``: the pull-request pipeline in one command (validate, optimize, latency, report).

Which stages run: ``--stages`` (or ``SHIPML_STAGES``) when given, else every stage that has a
section in ``shipml.yaml`` (validate alone when none has), and ``report`` last. A gate failure
(exit 1) does not stop the pipeline, so the report shows every stage; bad input (2) and
infrastructure errors (3) stop it, and ``report`` still publishes what finished. When optimize
passes and neither ``latency.model`` nor ``SHIPML_CANDIDATE`` is set, latency measures the
model optimize kept.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shipml.ci import detect
from shipml.cli import GATE_STAGES
from shipml.config import find_config, load_config
from shipml.errors import EXIT_GATE_FAILED, EXIT_INFRA, EXIT_OK, ConfigError
from shipml.results import StageResult, results_path

#: the pull-request pipeline, in order
GATES = GATE_STAGES
PIPELINE = (*GATES, "report")

#: the pipeline's status by its exit code
_STATUS = ("pass", "fail", "error", "error")

log = logging.getLogger("shipml.run")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run", parents=[common],
        help="run the pipeline: validate, optimize, latency, then report",
        description="Run every stage configured in shipml.yaml (a section per stage), then "
                    "report. Gate failures do not stop the pipeline; bad input and "
                    "infrastructure errors do. Exit 0 all gates passed, 1 a gate failed, "
                    "2 bad input, 3 infrastructure.",
    )
    parser.add_argument("--stages", metavar="LIST",
                        help="comma-separated stages to run, in pipeline order "
                             f"({', '.join(PIPELINE)}); default: $SHIPML_STAGES, else the "
                             "stages with a section in shipml.yaml, then report")
    parser.set_defaults(handler=run_cli)


def select_stages(explicit: str | None, configured: Sequence[str], source: str) -> list[str]:
    """Return the stages to run in pipeline order.

    ``explicit`` is a comma-separated list (from ``source``); without it the configured gate
    sections are run (validate when there are none), followed by report.
    """
    if explicit is not None and explicit.strip():
        asked = [name.strip() for name in explicit.split(",") if name.strip()]
        unknown = [name for name in asked if name not in PIPELINE]
        if unknown:
            raise ConfigError(f"{source}: unknown stage {unknown[0]!r}; valid stages: "
                              f"{', '.join(PIPELINE)}")
        return [stage for stage in PIPELINE if stage in asked]
    gates = [stage for stage in GATES if stage in configured] or ["validate"]
    return [*gates, "report"]


def run_cli(args: argparse.Namespace) -> int:
    """Run the selected stages through the CLI, one after the other; return the worst code."""
    from shipml.cli import main, output_dir

    config_path = find_config(args.config)
    config = load_config(config_path)
    from_env = os.environ.get("SHIPML_STAGES")
    source = "--stages" if args.stages is not None else "environment SHIPML_STAGES"
    stages = select_stages(args.stages if args.stages is not None else from_env,
                           [name for name in GATES if name in config.data], source)
    output = output_dir(args)
    for stage in stages:
        # A result left by an earlier run of a stage that runs now must not outlive a crash.
        results_path(output, stage).unlink(missing_ok=True)
    common = [*(["--config", str(config_path)] if config_path else []), "--output-dir", str(output)]
    if args.debug:
        common.append("--debug")

    codes: dict[str, int] = {}
    stopped: int | None = None  # the exit code (2 or 3) that stops the remaining gates
    for stage in stages:
        if stopped is not None and stage != "report":
            log.info("shipml run: %s not run (an earlier stage exited %d)", stage, stopped)
            continue
        extra: list[str] = []
        if stage == "latency" and codes.get("optimize") == EXIT_OK:
            chosen = config.section("latency").get("model") or os.environ.get("SHIPML_CANDIDATE", "")
            kept = None if chosen.strip() else _optimized_model(output)
            if kept is not None:
                extra = ["--candidate", str(kept)]
        print(f"\n=== shipml {stage} ===", flush=True)
        codes[stage] = main([stage, *common, *extra])
        if codes[stage] > EXIT_GATE_FAILED and stopped is None:
            stopped = codes[stage]
    worst = max(codes.values(), default=EXIT_OK)
    platform = detect()
    # Each stage also set its own outputs (a later stage's `result` replaces an earlier one's);
    # these are the pipeline's, set last so that they win.
    platform.set_output("status", _STATUS[min(worst, EXIT_INFRA)])
    platform.set_output("results-dir", str(output / "results"))
    for stage in GATES:
        path = results_path(output, stage)
        if stage in codes and path.is_file():
            platform.set_output(f"{stage}-status", StageResult.read(path).status)
    listed = ", ".join(f"{stage} {_word(code)}" for stage, code in codes.items())
    print(f"\nshipml run: {listed}")
    return worst


def _optimized_model(output: Path) -> Path | None:
    path = results_path(output, "optimize")
    if not path.is_file():
        return None
    kept = StageResult.read(path).metrics.get("output")
    return Path(kept) if isinstance(kept, str) and Path(kept).is_file() else None


def _word(code: int) -> str:
    return {0: "passed", 1: "failed", 2: "bad input", 3: "infrastructure error"}.get(
        code, f"exit {code}")
