"""``shipml latency``: the thin handler over :mod:`shipml.latency.core`."""

from __future__ import annotations

import argparse
from typing import Any

from shipml import cli as _cli
from shipml._stage import MODEL, TEST, Option, add_command, conclude, stage_config

#: the keys ``shipml latency`` takes from flags and ``SHIPML_*`` variables (action inputs)
OPTIONS = (
    MODEL,
    Option("--candidate", ("latency", "model"), "SHIPML_CANDIDATE",
           "the ONNX file to measure when it is not model.path, e.g. optimize's output", "PATH"),
    TEST,
    Option("--inputs", ("latency", "inputs", "data"), "SHIPML_INPUTS",
           "rows or tensors to feed: CSV/Parquet, .npz or JSON Lines of named inputs", "PATH"),
    Option("--batch-sizes", ("latency", "batch_sizes"), "SHIPML_BATCH_SIZES",
           "comma-separated batch sizes", "LIST"),
    Option("--provider", ("latency", "provider"), "SHIPML_PROVIDER",
           "cpu, cuda or an onnxruntime provider name", "NAME"),
    Option("--baseline", ("latency", "baseline", "path"), "SHIPML_BASELINE",
           "baseline ONNX file, or its path at --baseline-ref", "PATH", pipeline_input="baseline"),
    Option("--baseline-ref", ("latency", "baseline", "git_ref"), "SHIPML_BASELINE_REF",
           "git ref to read the baseline from", "REF", pipeline_input="baseline-ref"),
    Option("--tolerance", ("latency", "baseline", "tolerance"), "SHIPML_TOLERANCE",
           "allowed slowdown against the baseline, 0.1 = 10%%", "FRACTION"),
    Option("--max-time", ("latency", "max_time_s"), "SHIPML_MAX_TIME",
           "time cap per batch size", "SECONDS"),
    Option("--policy", ("latency", "policy"), "SHIPML_POLICY",
           "fail, warn or pass for an inconclusive budget", "VERDICT"),
    Option("--fail-on", ("latency", "fail_on"), "SHIPML_FAIL_ON", "fail, warn or never", "LEVEL",
           pipeline_input="fail-on"),
    Option("--html", ("latency", "html"), "SHIPML_HTML", "write artifacts/latency.html"),
)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``latency`` subcommand."""
    add_command(
        subparsers, common, "latency", OPTIONS, run_cli,
        summary="benchmark the ONNX model and hold it to latency budgets and a baseline",
        description="Measure the model in fresh processes until the confidence intervals are "
                    "narrow, judge the budgets per batch size and the regression against a "
                    "baseline. Exit 0 pass, 1 a gate failed, 2 bad input, 3 infrastructure.",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Load the configuration, run the gate, publish outputs; return the exit code."""
    from shipml.ci import detect
    from shipml.latency.core import run_latency

    platform = detect()
    config = stage_config(args, OPTIONS)
    run = run_latency(config, _cli.output_dir(args), platform)
    return conclude(run.result, run.result_path, platform,
                    outputs={"report": str(run.html_path or ""),
                             "p95-ms": str(run.result.metrics.get("p95_ms", ""))},
                    files=[("report", run.html_path)], config=config)
