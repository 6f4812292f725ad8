"""JSON log lines on stderr: one object per line, written whole under a lock.

Only what the caller passes is written: the server passes no header, no body and no token.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime, timezone
from typing import Any, TextIO

_lock = threading.Lock()


def emit(event: str, level: str = "info", stream: TextIO | None = None, **fields: Any) -> None:
    """Write one JSON log line: ``ts``, ``level``, ``event`` and ``fields``."""
    record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
              "level": level, "event": event, **fields}
    line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
    target = stream or sys.stderr
    with _lock:
        try:
            target.write(line)
            target.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not fail a request
            pass
