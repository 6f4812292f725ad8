"""``shipml latency``: the thin handler over :mod:`shipml.latency.core`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from shipml import cli as _cli
from shipml._stage import render_summary as stage_summary
from shipml._stage import stage_config
from shipml.ci import detect
from shipml.config import Override, parse_bool
from shipml.errors import ConfigError
from shipml.results import StageResult

#: SHIPML_* variables (set by the action from its inputs) and the keys they override
ENVIRONMENT = {
    "SHIPML_MODEL": ("model", "path"),
    "SHIPML_CANDIDATE": ("latency", "model"),
    "SHIPML_TEST": ("model", "test"),
    "SHIPML_BATCH_SIZES": ("latency", "batch_sizes"),
    "SHIPML_PROVIDER": ("latency", "provider"),
    "SHIPML_BASELINE": ("latency", "baseline", "path"),
    "SHIPML_BASELINE_REF": ("latency", "baseline", "git_ref"),
    "SHIPML_TOLERANCE": ("latency", "baseline", "tolerance"),
    "SHIPML_MAX_TIME": ("latency", "max_time_s"),
    "SHIPML_POLICY": ("latency", "policy"),
    "SHIPML_FAIL_ON": ("latency", "fail_on"),
    "SHIPML_HTML": ("latency", "html"),
}


def _int_list(text: str, source: str) -> list[int]:
    try:
        values = [int(item) for item in text.replace(" ", "").split(",") if item]
    except ValueError:
        raise ConfigError(f"{source}: {text!r} is not a comma-separated list of batch sizes, "
                          f"e.g. 1,8,32") from None
    return values


def _number(text: str, source: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{source}: {text!r} is not a number") from None


_CONVERT: dict[tuple[str, ...], Callable[[str, str], Any]] = {
    ("latency", "batch_sizes"): _int_list,
    ("latency", "baseline", "tolerance"): _number,
    ("latency", "max_time_s"): _number,
    ("latency", "html"): parse_bool,
}


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``latency`` subcommand."""
    parser = subparsers.add_parser(
        "latency", parents=[common],
        help="benchmark the ONNX model and hold it to latency budgets and a baseline",
        description="Measure the model in fresh processes until the confidence intervals are "
                    "narrow, judge the budgets per batch size and the regression against a "
                    "baseline. Exit 0 pass, 1 a gate failed, 2 bad input, 3 infrastructure.",
    )
    parser.add_argument("--model", metavar="PATH", help="the ONNX file (model.path)")
    parser.add_argument("--candidate", metavar="PATH",
                        help="the ONNX file to measure when it is not model.path, e.g. optimize's "
                             "output (latency.model)")
    parser.add_argument("--test", metavar="PATH", help="rows to feed, CSV/Parquet (model.test)")
    parser.add_argument("--batch-sizes", metavar="LIST",
                        help="comma-separated batch sizes (latency.batch_sizes)")
    parser.add_argument("--provider", metavar="NAME",
                        help="cpu, cuda or an onnxruntime provider name (latency.provider)")
    parser.add_argument("--baseline", metavar="PATH",
                        help="baseline ONNX file, or its path at --baseline-ref "
                             "(latency.baseline.path)")
    parser.add_argument("--baseline-ref", metavar="REF",
                        help="git ref to read the baseline from (latency.baseline.git_ref)")
    parser.add_argument("--tolerance", metavar="FRACTION",
                        help="allowed slowdown against the baseline, 0.1 = 10%% "
                             "(latency.baseline.tolerance)")
    parser.add_argument("--max-time", metavar="SECONDS",
                        help="time cap per batch size (latency.max_time_s)")
    parser.add_argument("--policy", metavar="VERDICT",
                        help="fail, warn or pass for an inconclusive budget (latency.policy)")
    parser.add_argument("--fail-on", metavar="LEVEL", help="fail, warn or never (latency.fail_on)")
    parser.set_defaults(handler=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Load the configuration, run the gate, publish outputs; return the exit code."""
    from shipml.latency.core import run_latency

    platform = detect()
    flags = {
        "--model": (args.model, ("model", "path")),
        "--candidate": (args.candidate, ("latency", "model")),
        "--test": (args.test, ("model", "test")),
        "--batch-sizes": (args.batch_sizes, ("latency", "batch_sizes")),
        "--provider": (args.provider, ("latency", "provider")),
        "--baseline": (args.baseline, ("latency", "baseline", "path")),
        "--baseline-ref": (args.baseline_ref, ("latency", "baseline", "git_ref")),
        "--tolerance": (args.tolerance, ("latency", "baseline", "tolerance")),
        "--max-time": (args.max_time, ("latency", "max_time_s")),
        "--policy": (args.policy, ("latency", "policy")),
        "--fail-on": (args.fail_on, ("latency", "fail_on")),
    }
    config = stage_config(args, ENVIRONMENT, flags, _typed)
    run = run_latency(config, _cli.output_dir(args), platform)
    result = run.result
    platform.set_output("status", result.status)
    platform.set_output("result", str(run.result_path))
    platform.set_output("report", str(run.html_path or ""))
    platform.set_output("p95-ms", str(result.metrics.get("p95_ms", "")))
    platform.add_summary(render_summary(result))
    print(f"shipml latency: {result.status.upper()}: {result.summary}")
    for check in result.checks:
        if check.status != "pass":
            print(f"  {check.status.upper():5} {check.name}\n        {check.detail}")
    print(f"result: {run.result_path}")
    if run.html_path:
        print(f"report: {run.html_path}")
    return result.exit_code


def render_summary(result: StageResult) -> str:
    """Return the job-summary markdown of a latency result."""
    return stage_summary("shipml.latency", "latency.md.j2", result=result,
                         batches=result.metrics.get("batches") or {},
                         regression=result.metrics.get("regression") or {})


def _typed(override: Override) -> Override:
    convert = _CONVERT.get(override.path)
    if convert is None or not isinstance(override.value, str):
        return override
    return Override(path=override.path, value=convert(override.value, override.source),
                    source=override.source)
