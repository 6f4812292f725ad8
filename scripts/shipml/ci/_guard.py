"""Keep whatever shipml prints from being read as a workflow command by the GitHub runner or act.

The runner reads every line of a step's stdout and stderr. A line is a command when, after leading
whitespace, it starts with ``::`` (``::add-mask::x``, ``::warning file=…::x``, ``::stop-commands::t``),
or when it holds ``##[`` anywhere (the legacy form, ``##[add-mask]x``); a line ends at ``\\n``,
``\\r`` or ``\\r\\n`` (actions/runner, ``ActionCommand.TryParseV2`` and ``TryParse``). A value that
shipml echoes (a config key, an input, a file name, a test's message) can therefore forge
annotations or masks, or stop command processing, as soon as it carries a line break.

:func:`guard_streams` wraps ``sys.stdout`` and ``sys.stderr`` so that no line written through them
can be a command (:func:`shipml.ci.guard_output` does it on the platforms that read commands): a
line that would start with ``::`` gets an invisible U+200B (ZERO WIDTH SPACE) in front of its first
``::``, and every ``##[`` becomes ``##\\u200b[``. The text stays readable and nothing else changes.
The :class:`~shipml.ci.Platform` writes its own commands (annotations, masks) to
:func:`command_stream`, which goes to the raw stream, after closing any line left open.

This module is below ``_platform``: it knows streams, not platforms.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO, cast

#: put where a line would otherwise be a command; not whitespace to .NET's TrimStart or Go's
_BREAK = "\u200b"
_LINE_END = re.compile(r"\r\n|\r|\n")
_LEGACY = "##["
_V2 = "::"


def neutralize_line(line: str, *, line_start: bool = True) -> str:
    """Return ``line`` (no line break in it) changed so that the runner cannot read a command in it.

    ``line_start`` is False for the rest of a line whose beginning was already written.
    """
    if line_start:
        body = len(line) - len(line.lstrip())
        if line.startswith(_V2, body):
            line = line[:body] + _BREAK + line[body:]
    return line.replace(_LEGACY, "##" + _BREAK + "[")


def neutralize(text: str) -> str:
    """Return ``text`` with every line neutralised (see :func:`neutralize_line`), line breaks kept."""
    out: list[str] = []
    position = 0
    for match in _LINE_END.finditer(text):
        out.append(neutralize_line(text[position:match.start()]) + match.group())
        position = match.end()
    out.append(neutralize_line(text[position:]))
    return "".join(out)


class GuardedStream:
    """A text stream over ``raw`` in which no written line can be a workflow command.

    A line is passed on when it ends; :meth:`flush` passes on as much of an open line as is safe
    (its start must be known, and a trailing ``#`` may still become ``##[``).
    """

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw
        self._pending = ""
        self._line_open = False  # the start of the current line is already written
        self._lock = threading.RLock()
        self.commands = CommandChannel(self)

    # --- the TextIO surface that print(), logging and warnings use ---

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            self._pass_lines()
        return len(text)

    def writelines(self, lines: Iterator[str] | list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._lock:
            self._pass_open_line(final=False)
            self.raw.flush()

    def close_line(self) -> None:
        """Write whatever is held of the current line, and a line break when a line was open."""
        with self._lock:
            was_open = self._line_open or bool(self._pending)
            self._pass_open_line(final=True)
            if was_open:
                self.raw.write("\n")
                self._line_open = False

    def release(self) -> None:
        """Write what is held (neutralised) without closing the line; used when the guard ends."""
        with self._lock:
            self._pass_open_line(final=True)
            self.raw.flush()

    @property
    def encoding(self) -> str:
        return str(getattr(self.raw, "encoding", None) or "utf-8")

    @property
    def errors(self) -> str | None:
        return getattr(self.raw, "errors", None)

    def isatty(self) -> bool:
        return bool(self.raw.isatty())

    def fileno(self) -> int:
        return self.raw.fileno()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return bool(getattr(self.raw, "closed", False))

    def __getattr__(self, name: str) -> object:
        # Anything else (newlines, name, mode, ...) is the raw stream's; never its binary buffer,
        # which would let bytes past the guard.
        if name == "buffer":
            raise AttributeError(name)
        return getattr(self.raw, name)

    # --- internals ---

    def _pass_lines(self) -> None:
        out: list[str] = []
        position = 0
        for match in _LINE_END.finditer(self._pending):
            line = self._pending[position:match.start()]
            out.append(neutralize_line(line, line_start=not self._line_open) + match.group())
            self._line_open = False
            position = match.end()
        self._pending = self._pending[position:]
        if out:
            self.raw.write("".join(out))

    def _pass_open_line(self, *, final: bool) -> None:
        text = self._pending
        if not text:
            return
        if not final:
            if not self._line_open and text.lstrip() in ("", ":"):
                return  # cannot tell yet whether the line starts with "::"
            keep = len(text) - len(text.rstrip("#"))
            keep = min(keep, len(_LEGACY) - 1)  # "#" or "##" may still become "##["
            text, held = text[:len(text) - keep], text[len(text) - keep:]
        else:
            held = ""
        # The held "#"s are prepended again below, so a "##[" across the cut is still seen.
        self.raw.write(neutralize_line(text, line_start=not self._line_open))
        self._pending = held
        self._line_open = True


class CommandChannel:
    """Where the Platform writes its own workflow commands: straight to the raw stream.

    A command must start a line of its own, so a line that shipml left open is closed first.
    """

    def __init__(self, guarded: GuardedStream) -> None:
        self._guarded = guarded

    def write(self, text: str) -> int:
        with self._guarded._lock:
            self._guarded.close_line()
            self._guarded.raw.write(text)
        return len(text)

    def flush(self) -> None:
        self._guarded.raw.flush()


def command_stream(stream: TextIO) -> TextIO:
    """Return where workflow commands meant for ``stream`` go: its raw side when it is guarded."""
    if isinstance(stream, GuardedStream):
        return stream.commands  # type: ignore[return-value]
    return stream


@contextmanager
def guard_streams() -> Iterator[None]:
    """Guard ``sys.stdout`` and ``sys.stderr`` for the duration of the ``with`` block: both
    streams, and the logging handlers writing to them, are wrapped in :class:`GuardedStream`; on
    exit the open line is written and everything restored. Nested calls guard once. Never raises
    on its own. :func:`shipml.ci.guard_output` calls it where the platform reads commands.
    """
    if isinstance(sys.stdout, GuardedStream):
        yield
        return
    originals = (sys.stdout, sys.stderr)
    guarded = (GuardedStream(originals[0]), GuardedStream(originals[1]))
    swapped = _swap_logging_streams(dict(zip(map(id, originals), guarded, strict=True)))
    sys.stdout, sys.stderr = cast(TextIO, guarded[0]), cast(TextIO, guarded[1])
    try:
        yield
    finally:
        for guarded_stream in guarded:
            guarded_stream.release()
        current: tuple[object, object] = (sys.stdout, sys.stderr)
        if current[0] is guarded[0]:
            sys.stdout = originals[0]
        if current[1] is guarded[1]:
            sys.stderr = originals[1]
        for handler, original in swapped:
            if isinstance(handler.stream, GuardedStream):
                handler.setStream(original)


def _swap_logging_streams(
    replacements: dict[int, GuardedStream],
) -> list[tuple[logging.StreamHandler[TextIO], TextIO]]:
    handlers: list[logging.Handler] = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers.extend(logger.handlers)
    swapped: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []
    for handler in handlers:
        if isinstance(handler, logging.StreamHandler) and id(handler.stream) in replacements:
            original = handler.stream
            handler.setStream(cast(TextIO, replacements[id(original)]))
            swapped.append((handler, original))
    return swapped
