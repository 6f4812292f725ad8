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
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from shipml import __version__
from shipml.errors import EXIT_CONFIG, EXIT_INFRA, EXIT_OK, ConfigError, first_line
from shipml.serve import _log, _protocol
from shipml.serve._protocol import RequestError
from shipml.serve.settings import ServeSettings

#: a client's X-Request-Id is kept when it is this safe (it is echoed in a header and logged)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
_MODEL_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?$")
#: endpoints open without a token (health probes)
_OPEN = frozenset({"live", "ready", "model_ready"})
_JSON = "application/json"
#: what connection errors look like: the client went away, nothing to log
_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError, ssl.SSLError)
NOT_READY = "the model is still loading; retry when GET /v2/health/ready answers 200"


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
        #: open connections: True while one is inside a request
        self._connections: dict[socket.socket, bool] = {}
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
        """Refuse new requests on open connections, close idle ones, wait up to ``timeout`` for
        requests in flight; then stop the batcher and flush the prediction log. Return True when
        every request in flight was answered."""
        self.draining = True
        self.metrics.ready.set(0)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                idle = [conn for conn, busy in self._connections.items() if not busy]
                busy, open_connections = self._busy, len(self._connections)
            for conn in idle:
                _shutdown(conn)
            if (busy == 0 and open_connections == 0) or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        if self.batcher is not None:
            self.batcher.close()
        if self.prediction_log is not None:
            self.prediction_log.close(timeout=max(0.1, deadline - time.monotonic()))
        return busy == 0

    # -- connections and requests --------------------------------------------------------------

    def connection_opened(self, conn: socket.socket) -> bool:
        """Track ``conn``; return False when ``max_connections`` are already open."""
        with self._lock:
            if len(self._connections) >= self.settings.max_connections:
                return False
            self._connections[conn] = False
            return True

    def connection_closed(self, conn: socket.socket) -> None:
        """Forget ``conn``."""
        with self._lock:
            self._connections.pop(conn, None)

    def request_started(self, conn: socket.socket) -> None:
        """Mark ``conn`` busy: drain waits for it."""
        with self._lock:
            self._connections[conn] = True
            self._busy += 1
        self.metrics.in_flight.inc()

    def request_finished(self, conn: socket.socket) -> None:
        """Mark ``conn`` idle again."""
        with self._lock:
            if conn in self._connections:
                self._connections[conn] = False
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

    def setup(self) -> None:
        self.timeout = self.server.app.settings.read_timeout_s  # type: ignore[misc]
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def handle(self) -> None:
        app = self.server.app
        if not app.connection_opened(self.connection):
            app.metrics.reject("connections")
            self._raw_reject()
            return
        try:
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()
            super().handle()
        except (OSError, ssl.SSLError):
            self.close_connection = True
        finally:
            app.connection_closed(self.connection)

    def handle_one_request(self) -> None:
        # BaseHTTPRequestHandler's loop step, with the request marked busy for the drain and
        # answered by our dispatcher; the request line's arrival starts the clock.
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            self.close_connection = True
            return
        app = self.server.app
        self._started = time.perf_counter()
        self._body_read = False
        self._bytes_in = 0
        self.request_id = uuid.uuid4().hex
        self.endpoint = "other"
        app.request_started(self.connection)
        try:
            if len(self.raw_requestline) > 65536:
                self.requestline = ""
                self.request_version = self.default_request_version
                self.command = "GET"
                self.path = "/"
                self._answer_error(RequestError(414, "the request line is too long", "path",
                                                "at most 64 KiB"))
                self.close_connection = True
                return
            if not self.parse_request():
                return
            header = self.headers.get("X-Request-Id")
            if header and _REQUEST_ID.match(header):
                self.request_id = header
            self._dispatch()
        finally:
            app.request_finished(self.connection)

    def handle_expect_100(self) -> bool:
        # A body over the limit is refused before the client sends it.
        length = self.headers.get("Content-Length") or "0"
        if length.isdigit() and int(length) > self.server.app.settings.max_body_bytes:
            self.close_connection = True
            self._body_read = True
            limit = self.server.app.settings.max_body_bytes
            self._answer_error(RequestError(413, f"the body has {length} bytes; at most {limit} are "
                                                 "accepted (serve.max_body_mb)", "body",
                                            f"at most {limit} bytes"))
            return False
        return super().handle_expect_100()

    # -- routing -----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        app = self.server.app
        path = unquote(urlsplit(self.path).path)
        status, body, content_type = 500, b"", _JSON
        headers: dict[str, str] = {}
        try:
            route = self._route(self.command, path)
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
        except Exception as exc:  # a bug: answered 500 with the request id, logged once
            _log.emit("internal_error", "error", request_id=self.request_id, path=path,
                      error=f"{type(exc).__name__}: {first_line(exc)}",
                      traceback=traceback.format_exc(limit=8))
            self._answer_error(RequestError(500, "internal server error; quote the request id when "
                                                 "you report it"))
            return
        self._send(status, body, content_type, headers)

    def _route(self, method: str, path: str) -> tuple[str, Callable[[], tuple[int, Any, str]]]:
        app = self.server.app
        if path == "/predict":
            return "predict", self._only(method, "POST", self._predict)
        if path == "/v2/health/live":
            return "live", self._only(method, "GET", lambda: (200, {"live": True}, _JSON))
        if path == "/v2/health/ready":
            return "ready", self._only(method, "GET", self._server_ready)
        if path == "/metrics":
            return "metrics", self._only(method, "GET", lambda: (
                200, app.metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8"))
        if path in ("/v2", "/v2/"):
            return "server_metadata", self._only(method, "GET", lambda: (
                200, {"name": "shipml", "version": __version__, "extensions": []}, _JSON))
        match = _MODEL_PATH.match(path)
        if match:
            name, version, action = match.groups()
            endpoint = {"/ready": "model_ready", "/infer": "infer"}.get(action or "", "model_metadata")
            self.endpoint = endpoint
            if name != app.settings.name:
                raise RequestError(404, f"model {name!r} is not served here", "model_name",
                                   [app.settings.name])
            if version is not None and version != app.settings.version:
                raise RequestError(404, f"model {name!r} has no version {version!r}",
                                   "model_version", [app.settings.version])
            if endpoint == "infer":
                return endpoint, self._only(method, "POST", self._infer)
            if endpoint == "model_ready":
                return endpoint, self._only(method, "GET", self._server_ready)
            return endpoint, self._only(method, "GET", self._metadata)
        self.endpoint = "not_found"
        raise RequestError(404, f"no endpoint {path!r}", "path",
                           ["/predict", "/v2/models/{name}/infer", "/v2/models/{name}",
                            "/v2/health/live", "/v2/health/ready", "/metrics"])

    def _only(self, method: str, allowed: str, handler: Callable[[], tuple[int, Any, str]]
              ) -> Callable[[], tuple[int, Any, str]]:
        if method != allowed:
            raise RequestError(405, f"{method} is not allowed here; use {allowed}", "method",
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
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise RequestError(411, "send the body with a Content-Length header (chunked transfer "
                                    "is not accepted)", "Content-Length", "the body's size in bytes")
        length = self._content_length()
        if length > limit:
            self.close_connection = True
            raise RequestError(413, f"the body has {length} bytes; at most {limit} are accepted "
                                    "(serve.max_body_mb)", "body", f"at most {limit} bytes")
        self._body_read = True
        body = self.rfile.read(length) if length else b""
        self._bytes_in = len(body)
        if len(body) != length:
            self.close_connection = True
            raise RequestError(400, f"the body ended after {len(body)} of {length} bytes",
                               "Content-Length", len(body))
        return body

    def _content_length(self) -> int:
        raw = self.headers.get("Content-Length") or "0"
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise RequestError(400, f"Content-Length {raw!r} is not a byte count",
                               "Content-Length", "a non-negative integer")
        return length

    # -- answers -----------------------------------------------------------------------------

    def _answer_error(self, error: RequestError) -> None:
        if not self._body_read and self.command in ("POST", "PUT", "PATCH") \
                and not self.close_connection:
            self._discard_body()
        self._send(error.status, _protocol_json(error.body(self.request_id)), _JSON, error.headers)

    def _discard_body(self) -> None:
        # An unread body would be parsed as the next request on a keep-alive connection.
        try:
            length = self._content_length()
        except RequestError:
            return
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower() \
                or length > self.server.app.settings.max_body_bytes:
            self.close_connection = True
            return
        if length:
            self.rfile.read(length)
        self._body_read = True

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        app = self.server.app
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
            _log.emit("request", request_id=self.request_id, method=self.command,
                      path=urlsplit(self.path).path[:256], endpoint=self.endpoint, status=status,
                      duration_ms=round(seconds * 1000, 3), bytes_in=self._bytes_in,
                      bytes_out=len(body), client=self.client_address[0], worker=app.worker)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer a request http.server could not parse with a JSON error, and close."""
        self.close_connection = True
        if not hasattr(self, "_started"):
            self._started = time.perf_counter()
            self.request_id = uuid.uuid4().hex
            self.endpoint = "other"
            self._bytes_in = 0
        self._body_read = True
        self.command = self.command or "GET"
        self.path = getattr(self, "path", "/") or "/"
        self._send(code, _protocol_json({"error": message or self.responses.get(code, ("",))[0],
                                         "request_id": self.request_id}), _JSON)

    def log_message(self, format: str, *args: Any) -> None:
        # The access log is ours (JSON, without headers); http.server's own lines are not wanted.
        return

    def _raw_reject(self) -> None:
        body = b'{"error":"too many open connections (serve.max_connections); retry shortly"}'
        try:
            self.wfile.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json"
                             b"\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
        except OSError:
            pass



class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, listener: socket.socket, app: App) -> None:
        super().__init__(listener.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.app = app

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
        # Refuse new connections at once; the drain below answers what is in flight.
        _shutdown(listener)
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
    stop.wait()
    _shutdown(listener)
    if serving.ident is not None:  # shutdown() waits for a serve_forever that was started
        server.shutdown()
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
