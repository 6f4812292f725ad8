"""What every stage's command shares: its option table (flag, ``SHIPML_*`` variable, key path),
its configuration from flags, environment and file, and how it concludes (outputs, summary,
annotations, exit code).

A stage declares its options once, as a tuple of :class:`Option`; the argparse flags, the
environment overrides and the help text are generated from it, and each value is converted to
the type the JSON Schema gives its key (in :mod:`shipml.config`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from shipml.config import (
    Config,
    KeyPath,
    Override,
    dotted,
    find_config,
    key_schema,
    key_types,
    load_config,
)

if TYPE_CHECKING:
    from shipml.ci import Platform
    from shipml.results import StageResult

#: the checks that did not pass that a command prints at most (the result file has them all)
PRINTED_CHECKS = 50
#: set by ``shipml run`` for the stages it runs: the report writes the one job summary
IN_PIPELINE = "SHIPML_IN_PIPELINE"


#: the signals that cancel a command: a CI cancel, a step timeout, a Jenkins abort, Ctrl-C
CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Cancelled(BaseException):
    """A command was stopped by SIGTERM or SIGINT. A BaseException, like KeyboardInterrupt, so
    that no ``except Exception`` in a stage turns a cancel into a check's error."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        """Return the signal's name, e.g. ``SIGTERM``."""
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """Return 128 + the signal's number (130 SIGINT, 143 SIGTERM), as a shell reports it."""
        return 128 + self.signum


@contextlib.contextmanager
def cancellable() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`Cancelled` in the main thread, once:
    after the first, both are ignored until the block ends, so that the error result is written
    whole. The handlers in place before are put back on leaving (a nested command hands the
    signal back to ``shipml run``). Elsewhere than in the main thread it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in CANCEL_SIGNALS}

    def cancel(signum: int, frame: FrameType | None) -> None:
        for each in CANCEL_SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        raise Cancelled(signum)

    for signum in CANCEL_SIGNALS:
        signal.signal(signum, cancel)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclass(frozen=True)
class Option:
    """One configuration key a stage exposes: its CLI flag, its ``SHIPML_*`` variable and its
    action input, declared once (the rule that makes inputs of options is in
    :mod:`shipml.generate.actions`).

    The value's type, bounds and (where ``help`` is empty) description are the JSON Schema's for
    ``key``: text from a flag, variable or input is converted (comma lists, numbers, strict
    booleans) by :func:`shipml.config.load_config`.
    """

    flag: str
    key: KeyPath
    env: str
    help: str = ""
    metavar: str = ""
    #: the action input's name where it is not the flag's (kebab-case, without ``--``)
    input: str = ""
    #: names the input had before a rename, kept working with a ``deprecationMessage``
    old_inputs: tuple[str, ...] = ()
    #: the input's name in the all-in-one action (``action.yml`` at the root); "" for none
    pipeline_input: str = ""

    @property
    def dest(self) -> str:
        """Return the argparse attribute that holds this option's value."""
        return "option_" + self.flag.lstrip("-").replace("-", "_")

    @property
    def input_name(self) -> str:
        """Return the name of this option's input in its stage's action: ``input``, else the
        flag without its leading ``--`` (``--failure-limit`` → ``failure-limit``)."""
        return self.input or self.flag.removeprefix("--")

    @property
    def description(self) -> str:
        """Return what the option sets: ``help``, else the JSON Schema's description of its key
        (empty where neither says)."""
        return self.help or str(key_schema(self.key).get("description", ""))


#: the ``model:`` keys every model stage accepts
MODEL = Option("--model", ("model", "path"), "SHIPML_MODEL", "the ONNX file that will ship", "PATH",
               pipeline_input="model")
TRAIN = Option("--train", ("model", "train"), "SHIPML_TRAIN", "training data, CSV/Parquet", "PATH",
               pipeline_input="train")
TEST = Option("--test", ("model", "test"), "SHIPML_TEST", "test data, CSV/Parquet", "PATH",
              pipeline_input="test")
LABEL = Option("--label", ("model", "label"), "SHIPML_LABEL", "label column", "COLUMN",
               pipeline_input="label")
TASK = Option("--task", ("model", "task"), "SHIPML_TASK",
              "binary, multiclass, regression or auto", "TASK", pipeline_input="task")
MODEL_OPTIONS = (MODEL, TRAIN, TEST, LABEL, TASK)


def add_command(subparsers: Any, common: argparse.ArgumentParser, name: str,
                options: Iterable[Option], handler: Callable[[argparse.Namespace], int], *,
                summary: str, description: str) -> argparse.ArgumentParser:
    """Add subcommand ``name`` with the options every command takes (``common``), one flag per
    option of its table, and its handler; return its parser, for positional arguments."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, parents=[common], help=summary, description=description)
    add_options(parser, options)
    parser.set_defaults(handler=handler)
    return parser


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """Add one flag per option. A boolean key gets a pair that takes no value, ``--summary`` and
    ``--no-summary`` (so ``--require-gates IMAGE`` leaves IMAGE alone); its variable takes the
    words true/false."""
    for option in options:
        where = f"{dotted(option.key)}; ${option.env}"
        text = f"{option.description} ({where})" if option.description else f"({where})"
        if "boolean" in key_types(option.key):
            parser.add_argument(option.flag, dest=option.dest, action="store_const",
                                const="true", help=text)
            parser.add_argument("--no-" + option.flag[2:], dest=option.dest,
                                action="store_const", const="false",
                                help=f"the opposite of {option.flag}")
        else:
            parser.add_argument(option.flag, dest=option.dest, metavar=option.metavar or "VALUE",
                                help=text)


def overrides(args: argparse.Namespace, options: Iterable[Option],
              environ: Mapping[str, str] | None = None) -> list[Override]:
    """Return the overrides of ``options``: set ``SHIPML_*`` variables, then given flags, so that
    a flag wins over the environment. Empty values mean "not set" (an empty action input)."""
    env = os.environ if environ is None else environ
    found: list[Override] = []
    chosen = tuple(options)
    for option in chosen:
        value = env.get(option.env, "")
        if value.strip():
            found.append(Override(path=option.key, value=value, source=f"environment {option.env}"))
    for option in chosen:
        given = getattr(args, option.dest, None)
        if given is not None:
            found.append(Override(path=option.key, value=given, source=option.flag))
    return found


def stage_config(args: argparse.Namespace, options: Iterable[Option]) -> Config:
    """Return the configuration of a stage: ``shipml.yaml`` (or none), ``SHIPML_*`` variables,
    then flags. Raises ConfigError naming the file, key, flag or variable of a bad value."""
    return load_config(find_config(args.config), overrides(args, options))


def conclude(result: StageResult, result_path: Path, platform: Platform, *,
             outputs: Mapping[str, str] | None = None, files: Sequence[tuple[str, Path | None]] = (),
             config: Config | None = None) -> int:
    """Finish a stage's command: set its outputs, write its job summary, annotate the checks
    that did not pass, print the verdict; return the exit code the result stands for.

    ``outputs`` are step outputs beyond ``status`` and ``result``; ``files`` are printed as
    ``name: path`` lines (None is skipped).
    """
    platform.set_output("status", result.status)
    platform.set_output("result", str(result_path))
    for name, value in (outputs or {}).items():
        platform.set_output(name, value)
    if not os.environ.get(IN_PIPELINE):
        # Under `shipml run` the report writes the one summary of every stage.
        from shipml.report.render import render_stage_summary

        platform.add_summary(render_stage_summary(result))
    if config is not None:
        annotate_checks(result, config, platform)
    print(f"shipml {result.stage}: {result.status.upper()}: {result.summary}")
    shown = [check for check in result.checks if check.status != "pass"]
    for check in shown[:PRINTED_CHECKS]:
        print(f"  {check.status.upper():5} {check.name}")
        if check.detail:
            print(f"        {check.detail}")
    if len(shown) > PRINTED_CHECKS:
        print(f"  … and {len(shown) - PRINTED_CHECKS} more checks that did not pass: every one "
              f"is in the result file")
    print(f"result: {result_path}")
    for name, path in files:
        if path is not None:
            print(f"{name}: {path}")
    return result.exit_code


def annotate_checks(result: StageResult, config: Config, platform: Platform) -> None:
    """Annotate each check that did not pass, at the stage's section of the config file."""
    file = str(config.file) if config.file is not None else None
    line = config.lines.get((result.stage,)) if file else None
    for check in result.checks:
        if check.status == "pass":
            continue
        level: Any = "warning" if check.status == "warn" else "error"
        platform.annotate(level, f"{check.name} — {check.detail}", file=file, line=line,
                          title=f"shipml {result.stage}: {check.status.upper()}")
