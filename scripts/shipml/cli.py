"""The ``shipml`` command: one subcommand per stage, each registered by its own package.

``main(argv)`` returns the exit code (0 pass, 1 gate failed, 2 bad input, 3 infrastructure) so that
tests run the CLI in-process. Only :class:`shipml.errors.ShipmlError` is caught; anything else is a
bug and keeps its traceback (shown in full with ``--debug``).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from shipml import __version__, stages
from shipml._stage import Cancelled, cancellable
from shipml.errors import EXIT_CONFIG, EXIT_INFRA, ConfigError, ShipmlError, first_line
from shipml.results import ErrorKind, StageClock, StageError, StageResult

Handler = Callable[[argparse.Namespace], int]

#: modules with a ``register(subparsers, common)`` function, in the order ``--help`` lists them
_COMMAND_MODULES = (*(stage.module for stage in stages.STAGES), *stages.COMMANDS)

#: commands that are gates of the pipeline: each leaves a result, an error one when it stops early
GATE_STAGES = stages.gates()

INTERNAL_ERROR = (
    "internal error: {error} — this is a bug in shipml, not in your model or config; rerun with "
    "--debug for the traceback and report it"
)
STAGE_FILE_UNUSABLE = (
    "{path}: shipml {command} writes {what} there, but {problem}; remove or rename it, or "
    "choose another --output-dir (SHIPML_OUTPUT_DIR)"
)
CANCELLED = (
    "cancelled by {signal} before it finished: nothing was judged; run it again (a CI cancel, "
    "a step timeout or a Jenkins abort sends this signal)"
)
MISSING_EXTRA = (
    "{module} is not installed: shipml {command} needs shipml[{extra}]; add it with\n"
    '  pip install "shipml[{extra}]"'
)
OUTPUT_DIR_UNUSABLE = (
    "{source}: {path} cannot hold results: {reason}; choose a folder shipml may create and "
    "write (default .shipml)"
)

#: extras of shipml's metadata that no command asks a user to install
_NOT_USER_EXTRAS = frozenset({"dev"})

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


def check_output_dir(args: argparse.Namespace) -> Path:
    """Return the output folder once it exists and takes files; raise ConfigError naming the
    flag or variable when it is a file or cannot be created or written, before any work."""
    folder = output_dir(args)
    source = ("--output-dir" if getattr(args, "output_dir", None)
              else "environment SHIPML_OUTPUT_DIR" if os.environ.get("SHIPML_OUTPUT_DIR")
              else "output folder")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(OUTPUT_DIR_UNUSABLE.format(source=source, path=folder,
                                                     reason="it is a file, not a folder"))
    try:
        (folder / "results").mkdir(parents=True, exist_ok=True)
        # a name of its own per call: a fixed one (the pid) collided between two commands run in
        # one process at once, one removing the other's probe
        with tempfile.TemporaryFile(dir=folder / "results", prefix=".probe-"):
            pass
    except OSError as exc:
        raise ConfigError(OUTPUT_DIR_UNUSABLE.format(
            source=source, path=folder, reason=exc.strerror or first_line(exc))) from None
    return folder


def check_stage_files(folder: Path, command: str) -> None:
    """Raise ConfigError (exit 2) naming the path when a file command ``command`` will write
    under ``folder`` (:func:`shipml.stages.files`) could not be: it is a folder, something else
    than a file, read-only, or a file stands where one of its folders must be. Called before
    the stage's work, so that nothing measured is lost when its result cannot be written."""
    for relative in stages.files(command):
        wants_folder = relative.endswith("/")
        path = folder / relative.rstrip("/")
        for parent in reversed(path.relative_to(folder).parents[:-1]):
            if (folder / parent).exists() and not (folder / parent).is_dir():
                raise ConfigError(STAGE_FILE_UNUSABLE.format(
                    path=folder / parent, command=command, what=f"the folder of {path.name}",
                    problem="it is a file"))
        if wants_folder:
            if path.exists() and not path.is_dir():
                raise ConfigError(STAGE_FILE_UNUSABLE.format(
                    path=path, command=command, what="a folder", problem="it is a file"))
            continue
        what = "its result" if relative.startswith("results/") else "a file"
        if path.is_dir():
            problem = "it is a folder"
        elif path.exists() and not path.is_file():
            problem = "it is not a regular file"
        elif path.exists() and not os.access(path, os.W_OK):
            problem = "it is read-only"
        else:
            continue
        raise ConfigError(STAGE_FILE_UNUSABLE.format(path=path, command=command, what=what,
                                                     problem=problem))


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
    from shipml.ci import guard_output

    # Whatever the stage prints (a value from a flag, a file, an exception) cannot become a
    # workflow command on the runner: one guard over both streams for the whole command.
    with guard_output():
        return _dispatch(args, handler, debug)


def _dispatch(args: argparse.Namespace, handler: Handler, debug: bool) -> int:
    """Run ``handler`` and turn what it raises into an exit code and, for a gate, a result.

    SIGTERM and SIGINT stop the handler (:func:`shipml._stage.cancellable`): a gate then leaves
    an ``error`` result of kind ``cancelled`` and the command exits 128 + the signal's number.
    """
    clock = StageClock()
    with cancellable():
        return _run_handler(args, handler, debug, clock)


def _run_handler(args: argparse.Namespace, handler: Handler, debug: bool,
                 clock: StageClock) -> int:
    gate = args.command in GATE_STAGES
    try:
        if gate or getattr(args, "writes_results", False) or stages.files(args.command):
            check_stage_files(check_output_dir(args), args.command)
        return _call(handler, args)
    except (Cancelled, KeyboardInterrupt) as exc:
        cancel = exc if isinstance(exc, Cancelled) else Cancelled(signal.SIGINT)
        message = CANCELLED.format(signal=cancel.signal_name)
        print(f"shipml {args.command}: {message}", file=sys.stderr)
        if gate:
            record_error(args, StageError("cancelled", cancel.exit_code, message), clock)
        return cancel.exit_code
    except ShipmlError as exc:
        print(f"shipml {args.command}: {exc.message}", file=sys.stderr)
        if debug:
            traceback.print_exc()
        if gate:
            kind: ErrorKind = "config" if exc.exit_code == EXIT_CONFIG else "infrastructure"
            record_error(args, StageError(kind, exc.exit_code, exc.message), clock)
        return exc.exit_code
    except Exception as exc:
        # A bug: the stage still leaves an error result, so that no report can call a
        # pipeline that crashed "ready to ship".
        message = INTERNAL_ERROR.format(error=f"{type(exc).__name__}: {first_line(exc)}")
        print(f"shipml {args.command}: {message}", file=sys.stderr)
        if debug:
            traceback.print_exc()
        if gate:
            record_error(args, StageError("internal", EXIT_INFRA, message), clock)
        return EXIT_INFRA


def _call(handler: Handler, args: argparse.Namespace) -> int:
    try:
        return handler(args)
    except ModuleNotFoundError as exc:
        extra = extra_providing(exc.name or "", args.command)
        if extra is None:
            raise
        raise ConfigError(MISSING_EXTRA.format(
            module=(exc.name or "").split(".")[0], command=args.command, extra=extra)) from None


def _extra_requirements() -> dict[str, list[str]]:
    """Return the distributions each extra of the installed shipml requires, by extra, read from
    its metadata (pyproject's optional-dependencies); empty when shipml has no metadata."""
    import importlib.metadata

    try:
        requires = importlib.metadata.requires("shipml") or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    found: dict[str, list[str]] = {}
    for requirement in requires:
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        extra = re.search(r"""extra\s*==\s*['"]([^'"]+)['"]""", requirement)
        if name and extra and extra.group(1) not in _NOT_USER_EXTRAS:
            found.setdefault(extra.group(1), []).append(name.group(1))
    return found


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def extra_providing(module: str, command: str) -> str | None:
    """Return the extra of shipml that installs the top-level module of ``module`` for
    ``command``, or None when none does (a bug, not a missing extra).

    An extra provides a module when it requires a distribution of that name, or the installed
    but broken distribution that holds it. Of several, the one named like ``command`` wins, else
    the smallest (``keygen`` is told ``sign``, not ``canary``). When none matches by name
    (``nacl`` comes from ``pynacl``), the extra named like ``command`` does if one of its
    distributions is missing.
    """
    import importlib.metadata

    top = module.split(".")[0]
    if not top:
        return None
    extras = _extra_requirements()
    holders = {_normalized(top)} | {
        _normalized(name) for name in importlib.metadata.packages_distributions().get(top, [])}
    matching = [extra for extra, names in extras.items()
                if holders & {_normalized(name) for name in names}]
    if command in matching:
        return command
    if matching:
        return min(matching, key=lambda extra: (len(extras[extra]), extra))
    for name in extras.get(command, []):
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            return command
    return None


def record_error(args: argparse.Namespace, error: StageError, clock: StageClock) -> None:
    """Write an ``error`` result for a gate that stopped without judging the model, and set its
    ``status`` output, so that the report and the workflow say the pipeline did not pass."""
    from shipml.ci import detect

    result = StageResult(stage=args.command, status="error", summary=error.message,
                         started_at=clock.started_at, duration_s=clock.elapsed(), error=error)
    platform = detect()
    platform.set_output("status", "error")
    try:
        path = result.write(output_dir(args))
    except OSError as exc:
        log.warning("shipml %s: could not write the error result: %s", args.command,
                    exc.strerror or first_line(exc))
        return
    platform.set_output("result", str(path))


def main_entry() -> None:
    """Console-script entry point: exit with :func:`main`'s code."""
    sys.exit(main())
