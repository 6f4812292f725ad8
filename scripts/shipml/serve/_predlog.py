"""The prediction log for monitoring: a sampled share of requests as rotated JSON Lines.

A request only decides (by its sample draw) and puts a record on a bounded queue; one writer
thread serialises and writes. A full queue drops the record and counts it: the request path never
waits for the disk. Files rotate by size: ``PATH`` is current, ``PATH.1`` the newest old one, and at
most ``max_files`` exist. A later ``shipml monitor`` reads them to detect drift. Every line is
strict JSON: a non-finite float is the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``.
"""

from __future__ import annotations

import os
import queue
import random
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shipml.serve import _log
from shipml.serve.settings import PredictionLogSettings


class PredictionLog:
    """Samples, queues and writes prediction records; counts what it wrote and dropped."""

    def __init__(self, settings: PredictionLogSettings, path: Path, *,
                 on_written: Callable[[], None] = lambda: None,
                 on_dropped: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.path = path
        self._on_written = on_written
        self._on_dropped = on_dropped
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=settings.queue_size)
        self._random = random.Random()
        self.written = 0
        self.dropped = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._stream = path.open("a", encoding="utf-8")
        try:
            self._size = self._stream.tell()
        except OSError:  # a pipe has no size: it is never rotated
            self._size = 0
        self._thread = threading.Thread(target=self._loop, name="shipml-prediction-log", daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        """Return True for the share ``sample`` of calls (one draw per request)."""
        return self._random.random() < self.settings.sample

    def offer(self, record: dict[str, Any]) -> bool:
        """Queue ``record`` (a timestamp is added); return False when it was dropped because the
        queue is full. Never blocks."""
        record["ts"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            self._on_dropped()
            return False
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (for at most ``timeout`` seconds), then close the file."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout=timeout)
        if not self._thread.is_alive():
            self._stream.close()

    def _loop(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                self._stream.flush()
                return
            # strict JSON: a client's NaN is written "NaN" (proto3's JSON mapping), never bare
            line = _log.dumps(record) + "\n"
            try:
                data = line.encode("utf-8")
                if self._size and self._size + len(data) > self.settings.max_bytes:
                    self._rotate()
                self._stream.write(line)
                self._size += len(data)
                if self._queue.empty():
                    self._stream.flush()
            except OSError:
                self.dropped += 1
                self._on_dropped()
                continue
            self.written += 1
            self._on_written()

    def _rotate(self) -> None:
        self._stream.close()
        keep = self.settings.max_files - 1
        if keep <= 0:
            self.path.unlink(missing_ok=True)
        else:
            oldest = self.path.with_name(f"{self.path.name}.{keep}")
            oldest.unlink(missing_ok=True)
            for number in range(keep - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{number}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{number + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._stream = self.path.open("a", encoding="utf-8")
        self._size = 0
