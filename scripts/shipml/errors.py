"""The one exception root of shipml and the exit codes it maps to.

Exit codes, everywhere: 0 all gates passed, 1 a gate failed, 2 bad input or configuration,
3 infrastructure error. ``shipml.cli.main`` catches only :class:`ShipmlError` subclasses.

A failed gate is no exception: it is a verdict, a stage result with status ``fail`` written like
any other (its checks name what failed), and the stage returns ``EXIT_GATE_FAILED``. An exception
is for what stops a stage from judging at all: bad input (2) or infrastructure (3).
"""

from __future__ import annotations

from collections.abc import Iterable

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_CONFIG = 2
EXIT_INFRA = 3


class ShipmlError(Exception):
    """Root of every error shipml raises on purpose; ``exit_code`` is what the CLI returns."""

    exit_code: int = EXIT_INFRA

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(ShipmlError):
    """Bad input or configuration: the user must change something (exit 2)."""

    exit_code = EXIT_CONFIG


class InfrastructureError(ShipmlError):
    """A service shipml depends on could not be reached or misbehaved (exit 3)."""

    exit_code = EXIT_INFRA


def first_line(exc: BaseException) -> str:
    """Return the first non-empty line of ``exc``'s message, or its type name when it has none:
    what a one-line error record or log line shows of an exception shipml did not raise."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def did_you_mean(name: str, valid: Iterable[str], cutoff: float = 0.5) -> str:
    """Return ``"; did you mean 'x'?"`` for the valid name nearest to ``name`` (the same name in
    another case counts), or '' when none is near: the hint every "unknown ..." message ends with."""
    import difflib

    choices = list(valid)
    nearest = difflib.get_close_matches(name, choices, n=1, cutoff=cutoff)
    if not nearest:
        nearest = [choice for choice in choices if choice.lower() == name.lower()][:1]
    return f"; did you mean {nearest[0]!r}?" if nearest else ""
