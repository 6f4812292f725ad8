"""The shadow mirror: a sampled share of the live ``/predict`` requests sent again to another
revision (the canary of a shadow step), off the request path, its answers compared with this
server's own.

Where to mirror is a small JSON file named by ``SHIPML_SHADOW_FILE``, ``{"url": "http://…",
"sample": 0.2, "revision": "<the target's revision label>"}``, which the deployment target writes
and removes while the server runs: the server re-reads it once a second in a thread of its own
(an absent, empty or ``{}`` file: no mirroring), so a stable that is already serving starts and
stops mirroring without a restart.

A user's request never waits for the mirror and never fails because of it: the request thread
only draws the sample and puts the request in a bounded queue (full: the request is dropped and
counted); a few worker threads send the same body to the target's ``/predict``, compare its
predictions with this server's (numbers within a tolerance, the same rule as the canary's probe)
and count requests, errors, drops and agreement, and time both answers (see
:mod:`shipml.serve._metrics`).
"""

from __future__ import annotations

import http.client
import json
import math
import queue
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shipml.serve import _log
from shipml.serve._metrics import ServerMetrics, ShadowSeries

#: the environment variable that names the shadow file
SHADOW_FILE_ENV = "SHIPML_SHADOW_FILE"
#: mirrored requests waiting for a worker; one more sampled request is dropped and counted
QUEUE_SIZE = 256
#: threads that send mirrored requests
WORKERS = 2
#: how long one mirrored request may take before it counts as an error
TIMEOUT_S = 2.0
#: how often the shadow file is read again
POLL_S = 1.0
#: two numeric predictions agree when they are this close (relative and absolute)
TOLERANCE = 1e-6
BAD_FILE = ("{path}: not a shadow target ({reason}); write {{\"url\": \"http://HOST:PORT\", "
            "\"sample\": 0.2, \"revision\": \"NAME\"}}, or remove the file to stop mirroring")


@dataclass(frozen=True)
class ShadowTarget:
    """Where to mirror: the target's base URL, the share of requests, its revision label."""

    url: str
    sample: float
    revision: str

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping the shadow file holds."""
        return {"url": self.url, "sample": self.sample, "revision": self.revision}


def parse_target(text: bytes | None, path: str) -> ShadowTarget | None:
    """Return the target of the shadow file's ``text`` (None: absent, empty or ``{}``: no
    mirroring). Raises ValueError, naming ``path`` and the valid shape, when it is not one."""
    if text is None or not text.strip():
        return None
    try:
        record = json.loads(text)
    except ValueError:
        raise ValueError(BAD_FILE.format(path=path, reason="not JSON")) from None
    if not isinstance(record, dict):
        raise ValueError(BAD_FILE.format(path=path, reason="not an object"))
    if not record or record.get("url") is None:
        return None
    url, sample = record.get("url"), record.get("sample", 1.0)
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") \
            or not urlsplit(url).hostname:
        raise ValueError(BAD_FILE.format(path=path, reason=f"url {url!r} is not http(s)://HOST"))
    if isinstance(sample, bool) or not isinstance(sample, (int, float)) or not 0 < sample <= 1:
        raise ValueError(BAD_FILE.format(path=path, reason=f"sample {sample!r} is not in (0, 1]"))
    return ShadowTarget(url.rstrip("/"), float(sample), str(record.get("revision") or "unknown"))


def same_predictions(first: Any, second: Any, tolerance: float = TOLERANCE) -> bool:
    """Return whether two predictions agree: numbers within ``tolerance``, lists element by
    element, anything else equal."""
    if first is None:
        return False
    if isinstance(first, (int, float)) and isinstance(second, (int, float)) \
            and not isinstance(first, bool) and not isinstance(second, bool):
        return math.isclose(float(first), float(second), rel_tol=tolerance, abs_tol=tolerance)
    if isinstance(first, list) and isinstance(second, list):
        return len(first) == len(second) and all(
            same_predictions(a, b, tolerance) for a, b in zip(first, second, strict=True))
    return bool(first == second)


@dataclass(frozen=True)
class _Job:
    target: ShadowTarget
    series: ShadowSeries
    document: Any
    predictions: Any
    own_seconds: float


_STOP = object()


class ShadowMirror:
    """Mirror sampled requests to the target the shadow file at ``path`` names."""

    def __init__(self, path: Path, metrics: ServerMetrics, *, token: str | None = None,
                 queue_size: int = QUEUE_SIZE, workers: int = WORKERS,
                 timeout_s: float = TIMEOUT_S, poll_s: float = POLL_S,
                 tolerance: float = TOLERANCE, seed: int | None = None) -> None:
        self.path = path
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.tolerance = tolerance
        self._token = token
        self._random = random.Random(seed).random
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
        self._workers = max(1, workers)
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._text: bytes | None = None
        #: the target now and its series, swapped as one value (read without a lock)
        self._active: tuple[ShadowTarget, ShadowSeries] | None = None

    @property
    def target(self) -> ShadowTarget | None:
        """Return the target mirrored to now (None: not mirroring)."""
        active = self._active
        return active[0] if active is not None else None

    def start(self) -> None:
        """Read the file once, then start the thread that re-reads it and the senders."""
        self.reload()
        threads = [threading.Thread(target=self._poll, name="shipml-shadow-file", daemon=True)]
        threads += [threading.Thread(target=self._send_loop, name=f"shipml-shadow-{number}",
                                     daemon=True) for number in range(self._workers)]
        for thread in threads:
            thread.start()
        self._threads = threads

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop mirroring; wait up to ``timeout_s`` for the threads (queued requests are
        dropped, not counted: the server is going away)."""
        self._active = None
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for _ in range(self._workers):
            try:
                self._queue.put_nowait(_STOP)
            except queue.Full:
                break
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def reload(self) -> ShadowTarget | None:
        """Read the shadow file; when its content changed, take its target (its series created
        at 0 first) or stop mirroring. Return the target now. A file that is not a target is
        logged once and stops mirroring."""
        try:
            text: bytes | None = self.path.read_bytes()
        except OSError:
            text = None
        if text == self._text:
            return self.target
        self._text = text
        try:
            target = parse_target(text, str(self.path))
        except ValueError as exc:
            _log.emit("shadow_file_invalid", "warning", error=str(exc))
            target = None
        if target is None:
            if self._active is not None:
                _log.emit("shadow_off", target=self._active[0].url)
            self._active = None
            return None
        self._active = (target, self.metrics.shadow(target.revision))
        _log.emit("shadow_on", target=target.url, sample=target.sample,
                  target_revision=target.revision)
        return target

    def offer(self, document: Any, predictions: Any, own_seconds: float) -> None:
        """Queue one answered request for mirroring when it is sampled; never blocks: with the
        queue full it is dropped and counted."""
        active = self._active
        if active is None:
            return
        target, series = active
        if self._random() >= target.sample:
            return
        try:
            self._queue.put_nowait(_Job(target, series, document, predictions, own_seconds))
        except queue.Full:
            series.dropped.inc()

    # -- the threads -------------------------------------------------------------------------

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.reload()

    def _send_loop(self) -> None:
        connections: dict[str, http.client.HTTPConnection] = {}
        while True:
            job = self._queue.get()
            if job is _STOP or self._stop.is_set():
                break
            self._mirror(job, connections)
        for connection in connections.values():
            connection.close()

    def _mirror(self, job: _Job, connections: dict[str, http.client.HTTPConnection]) -> None:
        series = job.series
        series.requests.inc()
        body = json.dumps(job.document).encode()
        headers = {"Content-Type": "application/json", "X-Shipml-Shadow": "1"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        parts = urlsplit(job.target.url)
        started = time.perf_counter()
        try:
            connection = connections.get(job.target.url)
            if connection is None:
                kind = (http.client.HTTPSConnection if parts.scheme == "https"
                        else http.client.HTTPConnection)
                connection = kind(parts.netloc, timeout=self.timeout_s)
                connections[job.target.url] = connection
            connection.request("POST", f"{parts.path}/predict", body=body, headers=headers)
            answer = connection.getresponse()
            payload = answer.read()
            seconds = time.perf_counter() - started
            if answer.will_close:
                connections.pop(job.target.url).close()
            if not 200 <= answer.status < 300:
                series.errors.inc()
                return
            predictions = json.loads(payload).get("predictions")
        except (OSError, http.client.HTTPException, ValueError, AttributeError):
            failed = connections.pop(job.target.url, None)
            if failed is not None:
                failed.close()
            series.errors.inc()
            return
        series.target_seconds.observe(seconds)
        series.own_seconds.observe(job.own_seconds)
        series.compared.inc()
        if same_predictions(predictions, job.predictions, self.tolerance):
            series.agreed.inc()
