"""``shipml optimize``: the thin handler over :mod:`shipml.optimize.core`."""

from __future__ import annotations

import argparse
from typing import Any

from shipml import cli as _cli
from shipml._stage import MODEL_OPTIONS, Option, add_command, conclude, stage_config

#: the keys ``shipml optimize`` takes from flags and ``SHIPML_*`` variables (action inputs)
OPTIONS = (
    *MODEL_OPTIONS,
    Option("--candidates", ("optimize", "candidates"), "SHIPML_CANDIDATES",
           "comma-separated transforms: graph, dynamic_int8, static_int8, fp16", "LIST"),
    Option("--pick", ("optimize", "pick"), "SHIPML_PICK",
           "fastest, none or a candidate name", "WHICH"),
    Option("--output", ("optimize", "output"), "SHIPML_OPTIMIZED_MODEL",
           "where the kept model goes", "PATH", input="optimized-model"),
    Option("--inputs", ("optimize", "inputs", "data"), "SHIPML_OPTIMIZE_INPUTS",
           "tensors to time: CSV/Parquet, .npz or JSON Lines of named inputs", "PATH"),
    Option("--parity-data", ("optimize", "parity", "data"), "SHIPML_PARITY_DATA",
           "rows or tensors the candidates are compared on", "PATH"),
    Option("--calibration-data", ("optimize", "static_int8", "data"), "SHIPML_CALIBRATION_DATA",
           "rows or tensors static INT8 calibrates on", "PATH"),
    Option("--provider", ("optimize", "timing", "provider"), "SHIPML_OPTIMIZE_PROVIDER",
           "execution provider the candidates are timed on", "NAME"),
    Option("--fail-on", ("optimize", "fail_on"), "SHIPML_FAIL_ON", "fail, warn or never", "LEVEL",
           pipeline_input="fail-on"),
)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``optimize`` subcommand."""
    add_command(
        subparsers, common, "optimize", OPTIONS, run_cli,
        summary="optimize and quantize the ONNX model, keeping only what holds parity",
        description="Apply onnxruntime graph optimization, dynamic/static INT8 quantization or "
                    "FP16 conversion, check each candidate against the original on real rows, "
                    "and keep the fastest that holds parity. Exit 0 pass, 1 a candidate broke "
                    "parity, 2 bad input.",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Load the configuration, run the stage, publish outputs; return the exit code."""
    from shipml.ci import detect
    from shipml.optimize.core import run_optimize

    platform = detect()
    config = stage_config(args, OPTIONS)
    run = run_optimize(config, _cli.output_dir(args), platform)
    return conclude(run.result, run.result_path, platform,
                    outputs={"model": str(run.model_path), "chosen": run.chosen},
                    files=[("model", run.model_path)], config=config)
