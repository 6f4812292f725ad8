"""JSON log lines on stderr: one object per line, written whole under a lock; and the one JSON
encoding every log of the server uses (this one, the access log, the prediction log).

Only what the caller passes is written: the server passes no header, no body and no token.
Every line is valid JSON: a non-finite float (a client may send ``NaN``, which Python's JSON
reader accepts) is written as the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``, as proto3's
JSON mapping writes it; everything else is unchanged.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from datetime import datetime, timezone
from typing import Any, TextIO

_lock = threading.Lock()


def emit(event: str, level: str = "info", stream: TextIO | None = None, **fields: Any) -> None:
    """Write one JSON log line: ``ts``, ``level``, ``event`` and ``fields``."""
    record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
              "level": level, "event": event, **fields}
    line = dumps(record) + "\n"
    target = stream or sys.stderr
    with _lock:
        try:
            target.write(line)
            target.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not fail a request
            pass


def dumps(record: Any) -> str:
    """Return ``record`` as one line of strict JSON: non-finite floats as ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"``; numpy scalars as their values; anything else unknown as its
    ``str``. Never raises for a non-finite value."""
    try:
        return json.dumps(record, separators=(",", ":"), default=_plain, allow_nan=False)
    except ValueError:  # a non-finite float somewhere: rare, so only then walk the record
        return json.dumps(_finite(record), separators=(",", ":"), default=_plain,
                          allow_nan=False)


def non_finite_name(value: float) -> str:
    """Return the JSON string for a non-finite float: ``NaN``, ``Infinity`` or ``-Infinity``."""
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    if callable(item):  # a numpy scalar
        try:
            found = item()
        except (TypeError, ValueError):
            return str(value)
        if isinstance(found, float) and not math.isfinite(found):
            return non_finite_name(found)
        return found if isinstance(found, (int, float, str, bool)) or found is None else str(found)
    return str(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else non_finite_name(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
