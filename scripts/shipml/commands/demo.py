"""``shipml demo``: copy the bundled example and run the whole pipeline on it: the pull-request
half (``shipml run``), then with ``--release`` the release half on this machine's services
(:mod:`shipml.commands._demo_release`)."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

from shipml.errors import EXIT_OK
from shipml.example import FILES, example_dir

#: the line a demo without ``--release`` ends with
RELEASE_HINT = ("shipml demo: the release half (build, sign, canary) runs on a Docker Engine: "
                "`sudo bash .ci/services`, then `bash .ci/demo`")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo", help="run the pipeline on the bundled example model",
        description="Copy the bundled example (a scikit-learn pipeline exported to ONNX, with its "
                    "data and shipml.yaml) into a folder and run the pipeline on it: validate, "
                    "optimize, latency and report, as `shipml run` does. With --release, then "
                    "the release half on this machine (the services of `bash .ci/services`): "
                    "build and push to 127.0.0.1:5000, sign with a fresh key, a first deploy, "
                    "a canary of the optimized model, and the report.")
    parser.add_argument("--dir", default=".shipml/demo", metavar="DIR",
                        help="where to copy the example and write results (default: .shipml/demo)")
    parser.add_argument("--release", action="store_true",
                        help="then build, sign and roll out the optimized model as a canary on "
                             "the local Docker Engine (needs `bash .ci/services`)")
    parser.add_argument("--debug", action="store_true", help="verbose logs and full tracebacks")
    parser.set_defaults(handler=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Run the pipeline on a fresh copy of the example, then the release half when asked; return
    the first exit code that is not 0, else 0. Raises InfrastructureError when the release half
    finds a service missing."""
    from shipml.cli import main

    workdir = Path(args.dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy2(example_dir() / name, workdir / name)
    print(f"shipml demo: the bundled example is in {workdir}", flush=True)
    started = time.monotonic()
    code = main(["run", "--config", str(workdir / "shipml.yaml"), "--output-dir", str(workdir),
                 *(["--debug"] if args.debug else [])])
    halves = [f"pull-request half {time.monotonic() - started:.0f} s"]
    if code == EXIT_OK and args.release:
        from shipml.commands._demo_release import run_release

        started = time.monotonic()
        code = run_release(workdir, args.debug)
        halves.append(f"release half {time.monotonic() - started:.0f} s")
    print("\n=== where the results went ===")
    for path in sorted((workdir / "results").glob("*.json")):
        print(f"result    {path}")
    for path in sorted((workdir / "artifacts").glob("*")):
        print(f"artifact  {path}")
    for path in sorted((workdir / "report").glob("report.*")):
        print(f"report    {path}")
    outcome = ("all gates passed" + (", signed and rolled out" if args.release else "")
               if code == 0 else f"exit code {code}")
    print(f"\nshipml demo: {outcome} ({', '.join(halves)})")
    if not args.release:
        print(RELEASE_HINT)
    return code
