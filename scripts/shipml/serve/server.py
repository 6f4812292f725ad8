"""The HTTP server: Open Inference Protocol v2 and ``/predict`` over the standard library's
threading HTTP server, with readiness after warm-up, SIGTERM drain, request ids, JSON access logs,
bearer tokens, TLS, limits, metrics, the prediction log and worker processes.

Why ``http.server``: measured against uvicorn + starlette on the example model (one row, loopback,
wrk), it answers with less overhead per request and more requests per second on 2 cores, because a
request runs start to end on its connection's thread (onnxruntime releases the GIL) with no hop
between an event loop and a thread pool; and it adds nothing to the image. See
``bench/serve_stack.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
import select
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from shipml import __version__
from shipml.errors import EXIT_CONFIG, EXIT_INFRA, EXIT_OK, ConfigError, first_line
from shipml.serve import _framing, _log, _protocol
from shipml.serve._framing import ClientGone, RequestReader, RequestTimeout
from shipml.serve._protocol import RequestError
from shipml.serve.settings import ServeSettings

#: a client's X-Request-Id is kept when it is this safe (it is echoed in a header and logged)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
#: endpoints open without a token (health probes)
_OPEN = frozenset({"live", "ready", "model_ready"})
_JSON = "application/json"
#: what connection errors look like: the client went away, nothing to log
_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError, ssl.SSLError)
NOT_READY = "the model is still loading; retry when GET /v2/health/ready answers 200"
TOO_MANY_CONNECTIONS = "too many open connections (serve.max_connections); retry shortly"
TOO_MANY_FROM_CLIENT = ("too many open connections from this address "
                        "(serve.max_connections_per_client); retry shortly")
IDLE_TIMEOUT = ("the client sent nothing for {seconds:g} s in the middle of its request "
                "(serve.read_timeout_s)")
#: after SIGTERM, a connection accepted before it that has sent nothing is closed after this long
SILENT_GRACE_S = 1.0


@dataclass
class _Connection:
    """An open client connection: its address and, once its handler runs, its reader."""

    client: str
    reader: RequestReader | None = None
    closing: bool = False


class App:
    """One worker's state: the model once loaded, metrics, limits, open connections, drain."""

    def __init__(self, settings: ServeSettings, worker: int = 0) -> None:
        from shipml.serve._metrics import ServerMetrics

        self.settings = settings
        self.worker = worker
        self.metrics = ServerMetrics(settings.name, settings.version or "", settings.revision)
        self.model: Any = None
        self.ready = threading.Event()
        self.draining = False
        self._slots = threading.BoundedSemaphore(settings.max_concurrency)
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, _Connection] = {}
        self._per_client: Counter[str] = Counter()
        #: connections refused at accept, answered 503 by their handler: the reason
        self._refused: dict[socket.socket, str] = {}
        self._busy = 0
        self._token_digests = [hashlib.sha256(token.encode()).digest() for token in settings.tokens]
        self.prediction_log: Any = None
        self.batcher: Any = None

    # -- lifecycle ---------------------------------------------------------------------------

    def load(self) -> float:
        """Load the model, run the warm-up, start the batcher and the prediction log; mark ready.
        Return the warm-up seconds. Raises ConfigError when the model cannot be served."""
        from shipml.serve.model import ServedModel

        model = ServedModel(self.settings)
        model.observe_inference(self.metrics.observe_inference)
        warmup = model.warm_up()
        if self.settings.batching:
            from shipml.serve._batching import Batcher

            self.batcher = Batcher(model.session.run, self.settings.max_batch_size,
                                   self.settings.max_delay_s, self.metrics.observe_inference)
            model.use_runner(self.batcher.run)
        log_settings = self.settings.prediction_log
        if log_settings.path is not None:
            from shipml.serve._predlog import PredictionLog

            path = log_settings.path
            if self.settings.workers > 1:
                path = path.with_name(f"{path.stem}-w{self.worker}{path.suffix}")
            try:
                self.prediction_log = PredictionLog(log_settings, path,
                                                    on_written=self.metrics.logged.inc,
                                                    on_dropped=self.metrics.log_dropped.inc)
            except OSError as exc:
                raise ConfigError(f"serve.log_predictions.path: cannot write {path}: "
                                  f"{exc.strerror or first_line(exc)}") from None
        self.model = model
        self.ready.set()
        self.metrics.ready.set(1)
        return warmup

    def drain(self, timeout: float) -> bool:
        """Answer every request begun on a connection accepted before the drain, for up to
        ``timeout`` seconds: close only connections idle between requests (and, after
        ``SILENT_GRACE_S``, accepted ones that never sent a byte), answer the rest with
        ``Connection: close``; then stop the batcher and flush the prediction log. Return True
        when every request begun was answered."""
        self.draining = True
        self.metrics.ready.set(0)
        started = time.monotonic()
        deadline = started + timeout
        while True:
            silent_over = time.monotonic() >= started + SILENT_GRACE_S
            with self._lock:
                tracked = list(self._connections.items())
                busy = self._busy
            waiting = 0
            for conn, connection in tracked:
                if connection.closing:
                    continue
                if _closable(conn, connection, silent_over):
                    connection.closing = True
                    _shutdown(conn)
                else:
                    waiting += 1
            if (busy == 0 and waiting == 0) or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        if self.batcher is not None:
            self.batcher.close()
        if self.prediction_log is not None:
            self.prediction_log.close(timeout=max(0.1, deadline - time.monotonic()))
        return busy == 0

    # -- connections and requests --------------------------------------------------------------

    def connection_opened(self, conn: socket.socket, client: str) -> str | None:
        """Track ``conn`` from ``client`` as it is accepted; return None, or the reason it is
        refused (``connections`` at ``max_connections``, ``client_connections`` at
        ``max_connections_per_client`` from that address). A refused one is answered 503 by
        its handler (:meth:`refusal`)."""
        with self._lock:
            reason = None
            if len(self._connections) >= self.settings.max_connections:
                reason = "connections"
            elif self._per_client[client] >= self.settings.max_connections_per_client:
                reason = "client_connections"
            if reason is not None:
                self._refused[conn] = reason
                return reason
            self._connections[conn] = _Connection(client)
            self._per_client[client] += 1
            return None

    def refusal(self, conn: socket.socket) -> str | None:
        """Return (once) why ``conn`` was refused at accept, None when it was not."""
        with self._lock:
            return self._refused.pop(conn, None)

    def connection_reading(self, conn: socket.socket, reader: RequestReader) -> None:
        """Attach the reader of ``conn``'s handler: drain asks it whether a request has begun."""
        with self._lock:
            if conn in self._connections:
                self._connections[conn].reader = reader

    def connection_closed(self, conn: socket.socket) -> None:
        """Forget ``conn``."""
        with self._lock:
            connection = self._connections.pop(conn, None)
            if connection is not None:
                self._per_client[connection.client] -= 1
                if self._per_client[connection.client] <= 0:
                    del self._per_client[connection.client]

    def request_started(self) -> None:
        """Count a request in flight (its request line arrived)."""
        with self._lock:
            self._busy += 1
        self.metrics.in_flight.inc()

    def request_finished(self) -> None:
        """Count a request in flight as answered."""
        with self._lock:
            self._busy -= 1
        self.metrics.in_flight.dec()

    def authorized(self, header: str | None) -> bool:
        """Return True when ``header`` is ``Bearer <an accepted token>``, compared in constant
        time against every token (no early exit that would tell which one nearly matched)."""
        if not self._token_digests:
            return True
        scheme, _, token = (header or "").partition(" ")
        offered = hashlib.sha256(token.strip().encode("utf-8", "replace")).digest()
        matched = False
        for digest in self._token_digests:
            matched |= hmac.compare_digest(offered, digest)
        return matched and scheme.lower() == "bearer"

    def try_slot(self) -> bool:
        """Take one of ``max_concurrency`` prediction slots without waiting."""
        return self._slots.acquire(blocking=False)

    def release_slot(self) -> None:
        """Give a prediction slot back."""
        self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    """One connection: requests in turn (keep-alive), each answered with one write."""

    protocol_version = "HTTP/1.1"
    server_version = "shipml"
    sys_version = ""
    server: _Server
    reader: RequestReader

    def setup(self) -> None:
        settings = self.server.app.settings
        self.timeout = min(settings.read_timeout_s, settings.request_timeout_s)  # type: ignore[misc]
        super().setup()
        # The framing layer's reader replaces the buffered file: it holds every read to the
        # request deadline and tells the drain whether a request has begun.
        self.rfile.close()
        self.reader = RequestReader(self.connection, settings.read_timeout_s,
                                    settings.request_timeout_s)
        self.reader.arm()
        self.rfile = self.reader  # type: ignore[assignment]
        self._fresh_request()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def _fresh_request(self) -> None:
        self._started = time.perf_counter()
        self._body_read = True
        self._length = 0
        self._continue_sent = False
        self._bytes_in = 0
        self.request_id = uuid.uuid4().hex
        self.endpoint = "other"
        self.command = ""
        self.path = "/"
        self.request_version = self.default_request_version

    def handle(self) -> None:
        app = self.server.app
        reason = app.refusal(self.connection)
        if reason is not None:
            self._raw_reject(reason)
            return
        app.connection_reading(self.connection, self.reader)
        try:
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()
            super().handle()
        except (OSError, ssl.SSLError):
            self.close_connection = True
        finally:
            app.connection_closed(self.connection)

    def handle_one_request(self) -> None:
        # BaseHTTPRequestHandler's loop step, with the framing checked before anything routes the
        # request, and the whole head and body read against the request deadline.
        app = self.server.app
        try:
            self.raw_requestline = self.reader.readline(65537)
        except TimeoutError as timeout:
            self.close_connection = True
            if self.reader.begun:  # part of a request line arrived, too slowly
                self._fresh_request()
                self._answer_timeout(timeout)
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        self._fresh_request()
        app.request_started()
        try:
            self._one_request()
        finally:
            app.request_finished()
            self.reader.disarm()

    def _one_request(self) -> None:
        if len(self.raw_requestline) > 65536:
            self.close_connection = True
            self._answer_error(RequestError(414, "the request line is too long", "path",
                                            "at most 64 KiB"))
            return
        self.reader.limit_head(_framing.MAX_HEAD_BYTES - len(self.raw_requestline))
        try:
            if not self.parse_request():
                return
        except TimeoutError as timeout:
            self.close_connection = True
            self._answer_timeout(timeout)
            return
        except RequestError as error:  # a head over MAX_HEAD_BYTES, refused as it arrived
            self.close_connection = True
            self._answer_error(error)
            return
        finally:
            self.reader.limit_head(None)
        header = self.headers.get("X-Request-Id")
        if header and _REQUEST_ID.match(header):
            self.request_id = header
        try:
            self._length = _framing.body_length(self.headers)
        except RequestError as error:
            self.close_connection = True  # where this request's body ends is unknown
            self._answer_error(error)
            return
        self._body_read = self._length == 0
        self._dispatch()

    def handle_expect_100(self) -> bool:
        # 100 Continue is sent when a route reads the body (_read_body), so a request refused
        # before that (401, 404, 413, a framing error) never makes the client send it.
        return True

    def _answer_timeout(self, timeout: TimeoutError) -> None:
        app = self.server.app
        app.metrics.reject("request_timeout")
        if isinstance(timeout, RequestTimeout):
            error = RequestError(408, str(timeout), "request", "the whole request within "
                                 f"{app.settings.request_timeout_s:g} s")
        else:
            error = RequestError(408, IDLE_TIMEOUT.format(seconds=app.settings.read_timeout_s),
                                 "request", f"no pause over {app.settings.read_timeout_s:g} s")
        self._body_read = True
        self._answer_error(error)

    # -- routing -----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        app = self.server.app
        path = urlsplit(self.path).path
        status, body, content_type = 500, b"", _JSON
        headers: dict[str, str] = {}
        try:
            route = self._route(self.command, _framing.path_segments(self.path))
            self.endpoint = route[0]
            if self.endpoint not in _OPEN and not (self.endpoint == "metrics"
                                                   and not app.settings.auth_metrics):
                if not app.authorized(self.headers.get("Authorization")):
                    raise RequestError(401, "missing or invalid bearer token; send "
                                            "Authorization: Bearer <token>", "Authorization",
                                       "Bearer <token>", {"WWW-Authenticate": 'Bearer realm="shipml"'})
            status, payload, content_type = route[1]()
            body = payload if isinstance(payload, bytes) else _protocol_json(payload)
        except RequestError as error:
            self._answer_error(error)
            return
        except ClientGone:
            self.close_connection = True
            return
        except Exception as exc:  # a bug: answered 500 with the request id, logged once
            details: dict[str, Any] = {}
            if app.settings.debug:
                details["traceback"] = traceback.format_exc(limit=8)
            _log.emit("internal_error", "error", request_id=self.request_id, path=path[:256],
                      error=f"{type(exc).__name__}: {first_line(exc)[:512]}", **details)
            self._answer_error(RequestError(500, "internal server error; quote the request id when "
                                                 "you report it"))
            return
        self._send(status, body, content_type, headers)

    def _route(self, method: str, segments: tuple[str, ...]
               ) -> tuple[str, Callable[[], tuple[int, Any, str]]]:
        app = self.server.app
        if segments == ("predict",):
            return "predict", self._only(method, "POST", self._predict)
        if segments == ("v2", "health", "live"):
            return "live", self._only(method, "GET", lambda: (200, {"live": True}, _JSON))
        if segments == ("v2", "health", "ready"):
            return "ready", self._only(method, "GET", self._server_ready)
        if segments == ("metrics",):
            return "metrics", self._only(method, "GET", lambda: (
                200, app.metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8"))
        if segments in (("v2",), ("v2", "")):
            return "server_metadata", self._only(method, "GET", lambda: (
                200, {"name": "shipml", "version": __version__, "extensions": []}, _JSON))
        model_path = _model_path(segments)
        if model_path is not None:
            name, version, action = model_path
            endpoint = {"ready": "model_ready", "infer": "infer"}.get(action or "", "model_metadata")
            self.endpoint = endpoint
            if name != app.settings.name:
                raise RequestError(404, f"model {name[:128]!r} is not served here", "model_name",
                                   [app.settings.name])
            if version is not None and version != app.settings.version:
                raise RequestError(404, f"model {name!r} has no version {version[:64]!r}",
                                   "model_version", [app.settings.version])
            if endpoint == "infer":
                return endpoint, self._only(method, "POST", self._infer)
            if endpoint == "model_ready":
                return endpoint, self._only(method, "GET", self._server_ready)
            return endpoint, self._only(method, "GET", self._metadata)
        self.endpoint = "not_found"
        raise RequestError(404, f"no endpoint {'/' + '/'.join(segments)[:256]!r}", "path",
                           ["/predict", "/v2/models/{name}/infer", "/v2/models/{name}",
                            "/v2/health/live", "/v2/health/ready", "/metrics"])

    def _only(self, method: str, allowed: str, handler: Callable[[], tuple[int, Any, str]]
              ) -> Callable[[], tuple[int, Any, str]]:
        if method != allowed:
            raise RequestError(405, f"{method[:16]} is not allowed here; use {allowed}", "method",
                               allowed, {"Allow": allowed})
        return handler

    # -- endpoints ---------------------------------------------------------------------------

    def _server_ready(self) -> tuple[int, Any, str]:
        app = self.server.app
        ready = app.ready.is_set() and not app.draining
        return (200 if ready else 503), {"ready": ready}, _JSON

    def _metadata(self) -> tuple[int, Any, str]:
        return 200, self._loaded().metadata(), _JSON

    def _loaded(self) -> Any:
        app = self.server.app
        if not app.ready.is_set():
            raise RequestError(503, NOT_READY, headers={"Retry-After": "1"})
        return app.model

    def _predict(self) -> tuple[int, Any, str]:
        model = self._loaded()
        document = self._json_body()
        rows = _protocol.predict_rows(document, self.server.app.settings.max_rows)
        prediction = self._with_slot(lambda: model.predict(rows))
        body = {"model_name": model.name, "model_version": model.version, **prediction.body()}
        self._log_prediction(lambda: {"inputs": prediction.inputs,
                                      "outputs": {key: body[key] for key in
                                                  ("predictions", "probabilities") if key in body}})
        return 200, body, _JSON

    def _infer(self) -> tuple[int, Any, str]:
        model = self._loaded()
        document = self._json_body()
        request = _protocol.infer_request(document, model.onnx.inputs, model.onnx.outputs,
                                          self.server.app.settings.max_rows)
        outputs = self._with_slot(lambda: model.infer(request))
        body = {"model_name": model.name, "model_version": model.version,
                "id": request.request_id or self.request_id, "outputs": outputs}
        self._log_prediction(lambda: {
            "inputs": {name: array.tolist() for name, array in request.feeds.items()},
            "outputs": {tensor["name"]: tensor["data"] for tensor in outputs}})
        return 200, body, _JSON

    def _with_slot(self, work: Callable[[], Any]) -> Any:
        from shipml.serve.model import ModelRunError

        app = self.server.app
        if not app.try_slot():
            app.metrics.reject("concurrency")
            raise RequestError(503, f"the server is busy: {app.settings.max_concurrency} requests "
                                    "are in progress (serve.max_concurrency); retry shortly",
                               headers={"Retry-After": "1"})
        try:
            return work()
        except ModelRunError as exc:
            _log.emit("model_error", "error", request_id=self.request_id, endpoint=self.endpoint,
                      error=str(exc))
            raise RequestError(500, "the model failed on this request; quote the request id when "
                                    "you report it") from None
        finally:
            app.release_slot()

    def _log_prediction(self, record: Callable[[], dict[str, Any]]) -> None:
        app = self.server.app
        log = app.prediction_log
        if log is None or not log.sampled():
            return
        log.offer({"model": app.settings.name, "version": app.settings.version,
                   "revision": app.settings.revision, "request_id": self.request_id,
                   "endpoint": self.endpoint, **record()})

    def _json_body(self) -> Any:
        _protocol.check_content_type(self.headers.get("Content-Type"))
        return _protocol.parse_json(self._read_body())

    def _read_body(self) -> bytes:
        limit = self.server.app.settings.max_body_bytes
        length = self._length
        if length > limit:
            self.close_connection = True
            raise RequestError(413, f"the body has {length} bytes; at most {limit} are accepted "
                                    "(serve.max_body_mb)", "body", f"at most {limit} bytes")
        self._body_read = True
        if not length:
            return b""
        if self._expects_continue():
            self._continue_sent = True
            try:
                self.wfile.write(f"{self.protocol_version} 100 Continue\r\n\r\n".encode("latin-1"))
            except OSError:
                raise ClientGone from None
        try:
            body = self.reader.read(length)
        except TimeoutError as timeout:
            self.close_connection = True
            self.server.app.metrics.reject("request_timeout")
            if isinstance(timeout, RequestTimeout):
                raise RequestError(408, str(timeout), "body", "the whole request within "
                                   f"{self.reader.request_timeout:g} s") from None
            seconds = self.server.app.settings.read_timeout_s
            raise RequestError(408, IDLE_TIMEOUT.format(seconds=seconds), "body",
                               f"no pause over {seconds:g} s") from None
        except OSError:
            raise ClientGone from None
        self._bytes_in = len(body)
        if len(body) != length:
            self.close_connection = True
            raise RequestError(400, f"the body ended after {len(body)} of {length} bytes",
                               "Content-Length", len(body))
        return body

    def _expects_continue(self) -> bool:
        return (self.request_version == "HTTP/1.1"
                and (self.headers.get("Expect") or "").strip().lower() == "100-continue")

    # -- answers -----------------------------------------------------------------------------

    def _answer_error(self, error: RequestError) -> None:
        self._send(error.status, _protocol_json(error.body(self.request_id)), _JSON, error.headers)

    def _discard_body(self) -> None:
        # An unread body would be parsed as the next request on a keep-alive connection (a
        # body smuggling a second request): it is read and dropped, or the connection closed.
        self._body_read = True
        if self.close_connection or not self._length:
            return
        if self._length > self.server.app.settings.max_body_bytes or self.server.app.draining \
                or (self._expects_continue() and not self._continue_sent):
            self.close_connection = True  # a client waiting for 100 Continue sends no body
            return
        try:
            self.reader.read(self._length)
        except (TimeoutError, OSError):
            self.close_connection = True

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        app = self.server.app
        if not self._body_read:
            self._discard_body()
        if app.draining:
            self.close_connection = True
        lines = [f"{self.protocol_version} {status} {self.responses.get(status, ('',))[0]}",
                 f"Content-Type: {content_type}", f"Content-Length: {len(body)}",
                 f"X-Request-Id: {self.request_id}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.wfile.write(head + body)
        except _GONE:
            self.close_connection = True
        seconds = time.perf_counter() - self._started
        app.metrics.observe_request(self.endpoint, status, seconds)
        if app.settings.access_log:
            _log.emit("request", request_id=self.request_id, method=(self.command or "")[:16],
                      path=urlsplit(self.path or "/").path[:256], endpoint=self.endpoint,
                      status=status, duration_ms=round(seconds * 1000, 3), bytes_in=self._bytes_in,
                      bytes_out=len(body), client=self.client_address[0], worker=app.worker)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer a request http.server could not parse with a JSON error, and close."""
        self.close_connection = True
        self._body_read = True
        self.command = self.command or "GET"
        self.path = getattr(self, "path", "/") or "/"
        self._send(code, _protocol_json({"error": message or self.responses.get(code, ("",))[0],
                                         "request_id": self.request_id}), _JSON)

    def log_message(self, format: str, *args: Any) -> None:
        # The access log is ours (JSON, without headers); http.server's own lines are not wanted.
        return

    def _raw_reject(self, reason: str) -> None:
        message = TOO_MANY_FROM_CLIENT if reason == "client_connections" else TOO_MANY_CONNECTIONS
        self.server.app.metrics.reject(reason)
        body = _protocol_json({"error": message})
        try:
            self.connection.settimeout(min(5.0, self.server.app.settings.read_timeout_s))
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()
            self.wfile.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json"
                             b"\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
        except (OSError, ssl.SSLError):
            pass


def _model_path(segments: tuple[str, ...]) -> tuple[str, str | None, str | None] | None:
    """Return (name, version, action) of a ``/v2/models/...`` path, None for another path."""
    if len(segments) < 3 or segments[:2] != ("v2", "models") or not segments[2]:
        return None
    name, rest = segments[2], segments[3:]
    version = None
    if len(rest) >= 2 and rest[0] == "versions" and rest[1]:
        version, rest = rest[1], rest[2:]
    if rest == ():
        return name, version, None
    if rest in (("ready",), ("infer",)):
        return name, version, rest[0]
    return None


def _closable(conn: socket.socket, connection: _Connection, silent_over: bool) -> bool:
    """Return True when a drain may close ``conn``: idle between requests, or accepted and
    silent past the grace; never while a request has begun or its bytes wait to be read."""
    reader = connection.reader
    if reader is None or reader.begun or reader.pending or _readable(conn):
        return False
    return not reader.in_request or silent_over


def _readable(conn: socket.socket) -> bool:
    if isinstance(conn, ssl.SSLSocket):
        try:
            if conn.pending():
                return True
        except (OSError, ValueError):
            return False
    try:
        poller = select.poll()
        poller.register(conn, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, listener: socket.socket, app: App) -> None:
        super().__init__(listener.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.app = app

    def process_request(self, request: Any, client_address: Any) -> None:
        # Tracked as it is accepted, before its thread starts, so a drain never misses it.
        self.app.connection_opened(request, str(client_address[0]))
        super().process_request(request, client_address)

    def accept_backlog(self) -> int:
        """Accept every connection already waiting in the listening socket's backlog (each one
        completed its handshake and may have sent its request); return how many."""
        accepted = 0
        while True:
            try:
                request, client_address = self.get_request()
            except OSError:  # BlockingIOError: the backlog is empty
                return accepted
            accepted += 1
            self.process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, _GONE) or isinstance(error, OSError):
            return  # the client went away
        _log.emit("connection_error", "error", client=client_address[0],
                  error=f"{type(error).__name__}: {first_line(error) if error else ''}")


def _protocol_json(document: Any) -> bytes:
    import json

    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# -- processes -------------------------------------------------------------------------------


def listen(settings: ServeSettings) -> socket.socket:
    """Return the listening socket (TLS-wrapped when configured). Raises ConfigError naming
    ``serve.host``/``serve.port`` when the address cannot be bound, or the TLS files when they do
    not load."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        listener = socket.create_server((settings.host, settings.port), family=family,
                                        backlog=1024)
    except OSError as exc:
        raise ConfigError(f"serve.host/serve.port: cannot listen on {settings.host}:"
                          f"{settings.port}: {exc.strerror or first_line(exc)}; choose a free port "
                          "(--port) or an address of this machine (--host)") from None
    # Workers share this socket: one that loses the race for a connection must not block in
    # accept(), so the socket never blocks (the selector says when to accept).
    listener.setblocking(False)
    if settings.tls_cert is None or settings.tls_key is None:
        return listener
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    except (ssl.SSLError, OSError) as exc:
        listener.close()
        raise ConfigError(f"serve.tls: cannot load {settings.tls_cert} with {settings.tls_key}: "
                          f"{first_line(exc)}; give a PEM certificate and its private key") from None
    return context.wrap_socket(listener, server_side=True, do_handshake_on_connect=False)


def serve(settings: ServeSettings) -> int:
    """Serve until SIGTERM or SIGINT, then drain; return the exit code (0 after a drain, 2 when
    the model cannot be served, 3 when a worker keeps failing)."""
    started = time.perf_counter()
    if settings.version is None:
        from shipml.serve.model import file_version

        if not settings.model_path.is_file():
            raise ConfigError(f"serve.model: model file {settings.model_path} not found")
        settings = dataclasses.replace(settings, version=file_version(settings.model_path))
    listener = listen(settings)
    host, port = listener.getsockname()[:2]
    _log.emit("listening", host=host, port=port, tls=settings.tls_cert is not None,
              workers=settings.workers, model=settings.name, version=settings.version,
              revision=settings.revision, auth=settings.auth, batching=settings.batching)
    if settings.workers == 1:
        return run_worker(settings, listener, 0, started)
    return _supervise(settings, listener, started)


def run_worker(settings: ServeSettings, listener: socket.socket, worker: int,
               started: float | None = None) -> int:
    """Run one worker on ``listener`` until a signal, then drain; return its exit code."""
    started = time.perf_counter() if started is None else started
    app = App(settings, worker)
    server = _Server(listener, app)
    stop = threading.Event()
    outcome = {"code": EXIT_OK}

    def on_signal(signum: int, frame: Any) -> None:
        # The listening socket is never shut down: with several workers it is shared, and a
        # shutdown resets every connection waiting in its backlog. Each worker stops accepting,
        # accepts what is already waiting, then closes its copy (below).
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def load() -> None:
        try:
            warmup = app.load()
        except ConfigError as exc:
            _log.emit("load_failed", "error", worker=worker, error=exc.message)
            outcome["code"] = EXIT_CONFIG
            stop.set()
            return
        except Exception as exc:
            _log.emit("load_failed", "error", worker=worker,
                      error=f"{type(exc).__name__}: {first_line(exc)}")
            outcome["code"] = EXIT_INFRA
            stop.set()
            return
        _log.emit("ready", worker=worker, model=settings.name, version=settings.version,
                  warmup_ms=round(warmup * 1000, 3),
                  start_to_ready_ms=round((time.perf_counter() - started) * 1000, 1))
        if accept_after_load:
            serving.start()

    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                               name="shipml-accept", daemon=True)
    # Workers share one socket: a worker still loading must not take a connection that a ready
    # one would answer (connections wait in the backlog meanwhile). A lone worker accepts at once,
    # so that /v2/health/live answers while the model loads.
    accept_after_load = settings.workers > 1
    if not accept_after_load:
        serving.start()
    threading.Thread(target=load, name="shipml-load", daemon=True).start()
    # Python runs a signal's handler in the main thread only when that thread wakes: a signal
    # the kernel delivers to another thread (as after SIGSTOP and SIGCONT) would wait forever
    # behind an untimed wait.
    while not stop.wait(0.1):
        pass
    if serving.ident is not None:  # shutdown() waits for a serve_forever that was started
        server.shutdown()
        # Connections the kernel completed before the signal wait in the backlog: they were
        # accepted as far as their clients know, so they are answered, not reset.
        app.draining = True
        server.accept_backlog()
    listener.close()
    drained = app.drain(settings.drain_timeout_s)
    _log.emit("stopped", worker=worker, drained=drained, exit_code=outcome["code"])
    return outcome["code"]


def _supervise(settings: ServeSettings, listener: socket.socket, started: float) -> int:
    """Fork ``settings.workers`` workers on the shared socket, forward signals, restart a worker
    that dies before the server is stopped; return 0 after a drain."""
    folder = tempfile.mkdtemp(prefix="shipml-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    children: dict[int, int] = {}
    stopping = {"now": False}
    codes: list[int] = []

    def spawn(index: int) -> None:
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = EXIT_INFRA
            try:
                code = run_worker(settings, listener, index, started)
            finally:
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index

    def forward(signum: int, frame: Any) -> None:
        stopping["now"] = True
        # The workers accept what waits in the backlog, then close their copies; once the
        # last one is closed the port refuses connections.
        listener.close()
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    for index in range(settings.workers):
        spawn(index)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    from prometheus_client import multiprocess

    restarts = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
        if stopping["now"]:
            codes.append(code)
            continue
        _log.emit("worker_exited", "error", worker=index, exit_code=code)
        if code == EXIT_CONFIG or restarts >= 5 * settings.workers:
            forward(signal.SIGTERM, None)
            codes.append(code if code != EXIT_OK else EXIT_INFRA)
            continue
        restarts += 1
        spawn(index)
    import shutil

    listener.close()
    shutil.rmtree(folder, ignore_errors=True)
    return max(codes, default=EXIT_OK)
