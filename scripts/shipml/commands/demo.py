"""``shipml demo``: copy the bundled example and run the whole pipeline on it (``shipml run``)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from shipml.example import FILES, example_dir


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo", help="run the pipeline on the bundled example model",
        description="Copy the bundled example (a scikit-learn pipeline exported to ONNX, with its "
                    "data and shipml.yaml) into a folder and run the pipeline on it: validate, "
                    "optimize, latency and report, as `shipml run` does.")
    parser.add_argument("--dir", default=".shipml/demo", metavar="DIR",
                        help="where to copy the example and write results (default: .shipml/demo)")
    parser.add_argument("--debug", action="store_true", help="verbose logs and full tracebacks")
    parser.set_defaults(handler=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Run the pipeline on a fresh copy of the example; return ``shipml run``'s exit code."""
    from shipml.cli import main

    workdir = Path(args.dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy2(example_dir() / name, workdir / name)
    print(f"shipml demo: the bundled example is in {workdir}", flush=True)
    code = main(["run", "--config", str(workdir / "shipml.yaml"), "--output-dir", str(workdir),
                 *(["--debug"] if args.debug else [])])
    print("\n=== where the results went ===")
    for path in sorted((workdir / "results").glob("*.json")):
        print(f"result    {path}")
    for path in sorted((workdir / "artifacts").glob("*")):
        print(f"artifact  {path}")
    print(f"\nshipml demo: {'all gates passed' if code == 0 else f'exit code {code}'}")
    return code
