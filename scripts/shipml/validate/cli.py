"""``shipml validate``: the thin handler over :mod:`shipml.validate.core`."""

from __future__ import annotations

import argparse
from typing import Any

from shipml import cli as _cli
from shipml._stage import MODEL_OPTIONS, Option, add_command, conclude, stage_config

#: the keys ``shipml validate`` takes from flags and ``SHIPML_*`` variables (action inputs)
OPTIONS = (
    *MODEL_OPTIONS,
    Option("--suites", ("validate", "suites"), "SHIPML_SUITES",
           "comma-separated deepchecks suites; none for only the explicit checks", "LIST",
           pipeline_input="suites"),
    Option("--fail-on", ("validate", "fail_on"), "SHIPML_FAIL_ON", "fail, warn or never", "LEVEL",
           pipeline_input="fail-on"),
    Option("--pytest", ("validate", "pytest"), "SHIPML_PYTEST", "model tests to run", "PATH",
           pipeline_input="pytest"),
    Option("--baseline", ("validate", "baseline", "path"), "SHIPML_VALIDATE_BASELINE",
           "baseline ONNX file to judge quality against, or its path at --baseline-ref", "PATH"),
    Option("--baseline-ref", ("validate", "baseline", "git_ref"), "SHIPML_VALIDATE_BASELINE_REF",
           "git ref to read the baseline from, e.g. origin/main", "REF"),
    Option("--max-drop", ("validate", "baseline", "max_drop"), "SHIPML_MAX_DROP",
           "how much worse than the baseline passes: 0.01 = one accuracy point (a regressor: "
           "a mean absolute error 1.01 times the baseline's)", "FRACTION"),
)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``validate`` subcommand."""
    add_command(
        subparsers, common, "validate", OPTIONS, run_cli,
        summary="run deepchecks suites and model tests on the ONNX model that will ship",
        description="Validate the shipped ONNX model with deepchecks and the team's pytest "
                    "model tests. Exit 0 pass, 1 a condition failed, 2 bad input.",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Load the configuration, run the gate, publish outputs; return the exit code."""
    from shipml.ci import detect
    from shipml.validate.core import run_validate

    platform = detect()
    config = stage_config(args, OPTIONS)
    run = run_validate(config, _cli.output_dir(args), platform)
    return conclude(run.result, run.result_path, platform,
                    outputs={"report": str(run.html_path or ""), "junit": str(run.junit_path)},
                    files=[("report", run.html_path), ("junit", run.junit_path)], config=config)
