"""``shipml validate``: the thin handler over :mod:`shipml.validate.core`."""

from __future__ import annotations

import argparse
from typing import Any

from shipml import cli as _cli
from shipml._stage import split_lists, stage_config
from shipml.ci import detect
from shipml.config import Override

#: SHIPML_* variables (set by the action from its inputs) and the keys they override
ENVIRONMENT = {
    "SHIPML_MODEL": ("model", "path"),
    "SHIPML_TRAIN": ("model", "train"),
    "SHIPML_TEST": ("model", "test"),
    "SHIPML_LABEL": ("model", "label"),
    "SHIPML_TASK": ("model", "task"),
    "SHIPML_SUITES": ("validate", "suites"),
    "SHIPML_FAIL_ON": ("validate", "fail_on"),
    "SHIPML_PYTEST": ("validate", "pytest"),
}
_SPLIT = split_lists({("validate", "suites")})


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``validate`` subcommand."""
    parser = subparsers.add_parser(
        "validate", parents=[common],
        help="run deepchecks suites and model tests on the ONNX model that will ship",
        description="Validate the shipped ONNX model with deepchecks and the team's pytest "
                    "model tests. Exit 0 pass, 1 a condition failed, 2 bad input.",
    )
    parser.add_argument("--model", metavar="PATH", help="the ONNX file (model.path)")
    parser.add_argument("--train", metavar="PATH", help="training data, CSV/Parquet (model.train)")
    parser.add_argument("--test", metavar="PATH", help="test data, CSV/Parquet (model.test)")
    parser.add_argument("--label", metavar="COLUMN", help="label column (model.label)")
    parser.add_argument("--task", metavar="TASK",
                        help="binary, multiclass, regression or auto (model.task)")
    parser.add_argument("--suites", metavar="LIST",
                        help="comma-separated deepchecks suites (validate.suites); none (or '') for "
                             "only the explicit checks")
    parser.add_argument("--fail-on", metavar="LEVEL",
                        help="fail, warn or never (validate.fail_on)")
    parser.add_argument("--pytest", metavar="PATH", help="model tests to run (validate.pytest)")
    parser.set_defaults(handler=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Load the configuration, run the gate, publish outputs; return the exit code."""
    from shipml.validate.core import run_validate

    platform = detect()
    flags = {
        "--model": (args.model, ("model", "path")),
        "--train": (args.train, ("model", "train")),
        "--test": (args.test, ("model", "test")),
        "--label": (args.label, ("model", "label")),
        "--task": (args.task, ("model", "task")),
        "--suites": (args.suites, ("validate", "suites")),
        "--fail-on": (args.fail_on, ("validate", "fail_on")),
        "--pytest": (args.pytest, ("validate", "pytest")),
    }
    config = stage_config(args, ENVIRONMENT, flags, _suites)
    run = run_validate(config, _cli.output_dir(args), platform)
    result = run.result
    platform.set_output("status", result.status)
    platform.set_output("result", str(run.result_path))
    platform.set_output("report", str(run.html_path or ""))
    platform.set_output("junit", str(run.junit_path))
    print(f"shipml validate: {result.status.upper()}: {result.summary}")
    for check in result.checks:
        if check.status != "pass":
            print(f"  {check.status.upper():5} {check.name}\n"
                  f"        observed: {check.observed}\n        threshold: {check.threshold}")
    print(f"result: {run.result_path}")
    if run.html_path:
        print(f"report: {run.html_path}")
    return result.exit_code


def _suites(override: Override) -> Override:
    override = _SPLIT(override)
    if override.path == ("validate", "suites") and \
            [str(item).lower() for item in override.value] == ["none"]:
        # an empty action input means "not set", so `none` says "no suites"
        return Override(path=override.path, value=[], source=override.source)
    return override
