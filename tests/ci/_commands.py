"""How the GitHub runner finds workflow commands in a step's output, ported from actions/runner.

``src/Runner.Common/ActionCommand.cs``: ``TryParseV2`` (``::name props::data`` after leading
whitespace) and the legacy ``TryParse`` (``##[name props]data`` anywhere in the line); lines come
from .NET's ``ReadLine``, which ends a line at ``\\n``, ``\\r`` or ``\\r\\n``. Every command name
counts as registered here, which is stricter than the runner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Command:
    name: str
    properties: dict[str, str] = field(default_factory=dict)
    data: str = ""


def _unescape_data(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def _unescape_property(text: str) -> str:
    return (text.replace("%0D", "\r").replace("%0A", "\n").replace("%3A", ":").replace("%2C", ",")
            .replace("%25", "%"))


def _parse_v2(line: str) -> Command | None:
    message = line.lstrip()
    if not message.startswith("::"):
        return None
    end = message.find("::", 2)
    if end < 0:
        return None
    info = message[2:end]
    name, _, props = info.partition(" ")
    if not name:
        return None
    properties = {}
    for item in props.strip().split(","):
        key, sep, value = item.partition("=")
        if sep and key and value:
            properties[key] = _unescape_property(value)
    return Command(name, properties, _unescape_data(message[end + 2:]))


def _parse_legacy(line: str) -> Command | None:
    start = line.find("##[")
    if start < 0:
        return None
    close = line.find("]", start)
    if close < 0:
        return None
    name = line[start + 3:close].partition(" ")[0]
    return Command(name, {}, line[close + 1:]) if name else None


def runner_lines(log: str) -> list[str]:
    """Split ``log`` into lines as the runner's ReadLine does."""
    lines = re.split(r"\r\n|\r|\n", log)
    return lines[:-1] if lines and lines[-1] == "" else lines


def workflow_commands(log: str) -> list[Command]:
    """Return every command the runner would take from ``log``, in order."""
    found = []
    for line in runner_lines(log):
        command = _parse_v2(line) or _parse_legacy(line)
        if command is not None:
            found.append(command)
    return found
