"""The ``shipml`` command: one subcommand per stage, each registered by its own package.

``main(argv)`` returns the exit code (0 pass, 1 gate failed, 2 bad input, 3 infrastructure) so that
tests run the CLI in-process. Only :class:`shipml.errors.ShipmlError` is caught; anything else is a
bug and keeps its traceback (shown in full with ``--debug``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from shipml import __version__
from shipml.errors import EXIT_CONFIG, EXIT_INFRA, ShipmlError
from shipml.results import StageClock, StageResult

Handler = Callable[[argparse.Namespace], int]

#: modules with a ``register(subparsers, common)`` function, in the order ``--help`` lists them
_COMMAND_MODULES = (
    "shipml.validate.cli",
    "shipml.optimize.cli",
    "shipml.latency.cli",
    "shipml.report.cli",
    "shipml.commands.run",
    "shipml.commands.init",
    "shipml.commands.demo",
    "shipml.commands.schema",
)

#: commands that are gates of the pipeline: each leaves a result, an error one when it stops early
GATE_STAGES = ("validate", "optimize", "latency")

log = logging.getLogger("shipml")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits with 2 already; make the message point at --help like every other error.
        self.print_usage(sys.stderr)
        self.exit(EXIT_CONFIG, f"shipml: error: {message} (see `{self.prog} --help`)\n")


def common_options() -> argparse.ArgumentParser:
    """Return the parent parser holding options every stage accepts."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        help="shipml.yaml to read (default: $SHIPML_CONFIG, else ./shipml.yaml when present)",
    )
    common.add_argument(
        "--output-dir",
        metavar="DIR",
        default=None,
        help="where results and artifacts go (default: $SHIPML_OUTPUT_DIR, else .shipml)",
    )
    common.add_argument("--debug", action="store_true", help="verbose logs and full tracebacks")
    return common


def output_dir(args: argparse.Namespace) -> Path:
    """Return the output folder: ``--output-dir`` > ``SHIPML_OUTPUT_DIR`` > ``.shipml``."""
    chosen = getattr(args, "output_dir", None) or os.environ.get("SHIPML_OUTPUT_DIR") or ".shipml"
    return Path(chosen)


def build_parser() -> argparse.ArgumentParser:
    """Return the full parser with every available stage registered."""
    import importlib

    parser = _Parser(
        prog="shipml",
        description="Validate, optimize and benchmark ML models in CI, and report on the PR.",
    )
    parser.add_argument("--version", action="version", version=f"shipml {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = common_options()
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A stage not built yet (or not in this install) is simply not offered.
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        module.register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    debug = bool(getattr(args, "debug", False))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(message)s" if not debug else "%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    clock = StageClock()
    try:
        return handler(args)
    except ShipmlError as exc:
        print(f"shipml {args.command}: {exc.message}", file=sys.stderr)
        if debug:
            traceback.print_exc()
        if args.command in GATE_STAGES:
            _record_error(args, exc, clock)
        return exc.exit_code
    except KeyboardInterrupt:
        print("shipml: interrupted", file=sys.stderr)
        return EXIT_INFRA


def _record_error(args: argparse.Namespace, exc: ShipmlError, clock: StageClock) -> None:
    """Write an ``error`` result for a gate that stopped on bad input or infrastructure, so that
    the report says the pipeline did not pass instead of judging only the stages that finished."""
    result = StageResult(stage=args.command, status="error", summary=exc.message,
                         started_at=clock.started_at, duration_s=clock.elapsed(),
                         metrics={"exit_code": exc.exit_code})
    try:
        result.write(output_dir(args))
    except OSError as error:
        log.warning("shipml %s: could not write the error result: %s", args.command, error)


def main_entry() -> None:
    """Console-script entry point: exit with :func:`main`'s code."""
    sys.exit(main())
