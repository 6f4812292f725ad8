"""``shipml optimize``: the thin handler over :mod:`shipml.optimize.core`."""

from __future__ import annotations

import argparse
from typing import Any

from shipml import cli as _cli
from shipml._stage import render_summary as stage_summary
from shipml._stage import split_lists, stage_config
from shipml.ci import detect
from shipml.results import StageResult

#: SHIPML_* variables (set by the action from its inputs) and the keys they override
ENVIRONMENT = {
    "SHIPML_MODEL": ("model", "path"),
    "SHIPML_TRAIN": ("model", "train"),
    "SHIPML_TEST": ("model", "test"),
    "SHIPML_LABEL": ("model", "label"),
    "SHIPML_TASK": ("model", "task"),
    "SHIPML_CANDIDATES": ("optimize", "candidates"),
    "SHIPML_PICK": ("optimize", "pick"),
    "SHIPML_OPTIMIZED_MODEL": ("optimize", "output"),
    "SHIPML_FAIL_ON": ("optimize", "fail_on"),
}


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``optimize`` subcommand."""
    parser = subparsers.add_parser(
        "optimize", parents=[common],
        help="optimize and quantize the ONNX model, keeping only what holds parity",
        description="Apply onnxruntime graph optimization, dynamic/static INT8 quantization or "
                    "FP16 conversion, check each candidate against the original on real rows, "
                    "and keep the fastest that holds parity. Exit 0 pass, 1 a candidate broke "
                    "parity, 2 bad input.",
    )
    parser.add_argument("--model", metavar="PATH", help="the ONNX file (model.path)")
    parser.add_argument("--train", metavar="PATH", help="training data, CSV/Parquet (model.train)")
    parser.add_argument("--test", metavar="PATH", help="test data, CSV/Parquet (model.test)")
    parser.add_argument("--label", metavar="COLUMN", help="label column (model.label)")
    parser.add_argument("--candidates", metavar="LIST",
                        help="comma-separated transforms: graph, dynamic_int8, static_int8, fp16 "
                             "(optimize.candidates)")
    parser.add_argument("--pick", metavar="WHICH",
                        help="fastest, none or a candidate name (optimize.pick)")
    parser.add_argument("--output", metavar="PATH",
                        help="where the kept model goes (optimize.output)")
    parser.add_argument("--fail-on", metavar="LEVEL",
                        help="fail, warn or never (optimize.fail_on)")
    parser.set_defaults(handler=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Load the configuration, run the stage, publish outputs; return the exit code."""
    from shipml.optimize.core import run_optimize

    platform = detect()
    flags = {
        "--model": (args.model, ("model", "path")),
        "--train": (args.train, ("model", "train")),
        "--test": (args.test, ("model", "test")),
        "--label": (args.label, ("model", "label")),
        "--candidates": (args.candidates, ("optimize", "candidates")),
        "--pick": (args.pick, ("optimize", "pick")),
        "--output": (args.output, ("optimize", "output")),
        "--fail-on": (args.fail_on, ("optimize", "fail_on")),
    }
    config = stage_config(args, ENVIRONMENT, flags, split_lists({("optimize", "candidates")}))
    run = run_optimize(config, _cli.output_dir(args), platform)
    result = run.result
    platform.set_output("status", result.status)
    platform.set_output("result", str(run.result_path))
    platform.set_output("model", str(run.model_path))
    platform.set_output("chosen", run.chosen)
    platform.add_summary(render_summary(result))
    print(f"shipml optimize: {result.status.upper()}: {result.summary}")
    for check in result.checks:
        if check.status != "pass":
            print(f"  {check.status.upper():5} {check.name}\n        {check.detail}")
    print(f"result: {run.result_path}")
    print(f"model: {run.model_path}")
    return result.exit_code


def render_summary(result: StageResult) -> str:
    """Return the job-summary markdown of an optimize result."""
    return stage_summary("shipml.optimize", "optimize.md.j2", result=result, metrics=result.metrics)
