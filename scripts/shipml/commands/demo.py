"""``shipml demo``: copy the bundled example and run every stage that exists on it."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from shipml.example import FILES, example_dir

#: the pipeline in order; a stage runs when its command is installed
PIPELINE = ("validate", "optimize", "latency", "report")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo", help="run the pipeline on the bundled example model",
        description="Copy the bundled example (a scikit-learn pipeline exported to ONNX, with its "
                    "data and shipml.yaml) into a folder and run every stage on it.")
    parser.add_argument("--dir", default=".shipml/demo", metavar="DIR",
                        help="where to copy the example and write results (default: .shipml/demo)")
    parser.set_defaults(handler=run_cli, _subparsers=subparsers)


def run_cli(args: argparse.Namespace) -> int:
    """Run each available stage on the example; return the worst exit code."""
    from shipml.cli import main

    workdir = Path(args.dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy2(example_dir() / name, workdir / name)
    available = set(args._subparsers.choices)
    stages = [stage for stage in PIPELINE if stage in available]
    config = workdir / "shipml.yaml"
    output = workdir
    worst = 0
    for stage in stages:
        print(f"\n=== shipml {stage} (example: {workdir}) ===", flush=True)
        code = main([stage, "--config", str(config), "--output-dir", str(output)])
        worst = max(worst, code)
    print("\n=== where the results went ===")
    for path in sorted((output / "results").glob("*.json")):
        print(f"result    {path}")
    for path in sorted((output / "artifacts").glob("*")):
        print(f"artifact  {path}")
    print(f"\nshipml demo: {'all gates passed' if worst == 0 else f'exit code {worst}'} "
          f"({', '.join(stages)})")
    return worst
