"""The HTTP protocol layer: one connection's requests read through the framing rules
(:mod:`shipml.serve._framing`) against their deadlines, routed through the table
(:mod:`shipml.serve.routes`), answered with one write each; the connections a worker holds, the
per-address limit, and the drain that answers every request begun before it. [KServe:
``protocol/rest/server.py``]

Why ``http.server``: measured against uvicorn + starlette on the example model (one row, loopback,
wrk), it answers with less overhead per request and more requests per second on 2 cores, because a
request runs start to end on its connection's thread (onnxruntime releases the GIL) with no hop
between an event loop and a thread pool; and it adds nothing to the image. See
``bench/serve_stack.py``.
"""

from __future__ import annotations

import json
import re
import select
import socket
import ssl
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from shipml.errors import first_line
from shipml.serve import _framing, _log, _protocol, routes
from shipml.serve._framing import ClientGone, RequestReader, RequestTimeout
from shipml.serve._metrics import ServerMetrics
from shipml.serve._protocol import RequestError
from shipml.serve.app import App

#: a client's X-Request-Id is kept when it is this safe (it is echoed in a header and logged)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
_JSON = "application/json"
#: what connection errors look like: the client went away, nothing to log
_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError, ssl.SSLError)
TOO_MANY_CONNECTIONS = "too many open connections (serve.max_connections); retry shortly"
TOO_MANY_FROM_CLIENT = ("too many open connections from this address "
                        "(serve.max_connections_per_client); retry shortly")
IDLE_TIMEOUT = ("the client sent nothing for {seconds:g} s in the middle of its request "
                "(serve.read_timeout_s)")
LINE_TOO_LONG = "the request line is too long"
BODY_TOO_LARGE = "the body has {length} bytes; at most {limit} are accepted (serve.max_body_mb)"
BODY_CUT_SHORT = "the body ended after {received} of {length} bytes"
INTERNAL_ERROR = "internal server error; quote the request id when you report it"
#: after SIGTERM, a connection accepted before it that has sent nothing is closed after this long
SILENT_GRACE_S = 1.0


@dataclass
class _Connection:
    """An open client connection: its address and, once its handler runs, its reader."""

    client: str
    reader: RequestReader | None = None
    closing: bool = False


class Connections:
    """The connections one worker holds: the limits checked as each is accepted, the requests in
    flight, and the drain that closes only what no request has begun on."""

    def __init__(self, max_connections: int, max_per_client: int,
                 metrics: ServerMetrics) -> None:
        self._max_connections = max_connections
        self._max_per_client = max_per_client
        self._metrics = metrics
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, _Connection] = {}
        self._per_client: Counter[str] = Counter()
        #: connections refused at accept, answered 503 by their handler: the reason
        self._refused: dict[socket.socket, str] = {}
        self._busy = 0

    def connection_opened(self, conn: socket.socket, client: str) -> str | None:
        """Track ``conn`` from ``client`` as it is accepted; return None, or the reason it is
        refused (``connections`` at ``max_connections``, ``client_connections`` at
        ``max_connections_per_client`` from that address). A refused one is answered 503 by
        its handler (:meth:`refusal`)."""
        with self._lock:
            reason = None
            if len(self._connections) >= self._max_connections:
                reason = "connections"
            elif self._per_client[client] >= self._max_per_client:
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
        self._metrics.in_flight.inc()

    def request_finished(self) -> None:
        """Count a request in flight as answered."""
        with self._lock:
            self._busy -= 1
        self._metrics.in_flight.dec()

    def drain(self, deadline: float) -> bool:
        """Answer every request begun on a connection accepted before the drain, until the
        ``time.monotonic()`` ``deadline``: close only connections idle between requests (and,
        after ``SILENT_GRACE_S``, accepted ones that never sent a byte); the rest are answered
        with ``Connection: close`` by their handlers. Return True when every request begun was
        answered."""
        started = time.monotonic()
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
        return busy == 0


class _Handler(BaseHTTPRequestHandler):
    """One connection: requests in turn (keep-alive), each answered with one write."""

    protocol_version = "HTTP/1.1"
    server_version = "shipml"
    sys_version = ""
    server: HTTPServer
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
        connections = self.server.connections
        reason = connections.refusal(self.connection)
        if reason is not None:
            self._raw_reject(reason)
            return
        connections.connection_reading(self.connection, self.reader)
        try:
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()
            super().handle()
        except (OSError, ssl.SSLError):
            self.close_connection = True
        finally:
            connections.connection_closed(self.connection)

    def handle_one_request(self) -> None:
        # BaseHTTPRequestHandler's loop step, with the framing checked before anything routes the
        # request, and the whole head and body read against the request deadline.
        connections = self.server.connections
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
        connections.request_started()
        try:
            self._one_request()
        finally:
            connections.request_finished()
            self.reader.disarm()

    def _one_request(self) -> None:
        if len(self.raw_requestline) > 65536:
            self.close_connection = True
            self._answer_error(RequestError(414, LINE_TOO_LONG, "path", "at most 64 KiB"))
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
        try:
            segments = _framing.path_segments(self.path)
            found = routes.find(self.command, segments)
            if found is None:
                self.endpoint = "not_found"
                raise routes.not_found(segments)
            self.endpoint = found.route.endpoint
            routes.check(found, self.command, app.settings)
            if not found.route.is_open(app.settings) \
                    and not app.authorized(self.headers.get("Authorization")):
                raise routes.unauthorized()
            status, payload, content_type = found.route.handler(app, self, found.params)
            body = payload if isinstance(payload, bytes) else _json_bytes(payload)
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
            self._answer_error(RequestError(500, INTERNAL_ERROR))
            return
        self._send(status, body, content_type)

    # -- the body, as the route handlers read it ---------------------------------------------

    def json_body(self) -> Any:
        """Return the body parsed as JSON. Raises RequestError for a wrong content type, a body
        over ``max_body_bytes``, sent too slowly or cut short, or not JSON; ClientGone when the
        client went away."""
        _protocol.check_content_type(self.headers.get("Content-Type"))
        return _protocol.parse_json(self._read_body())

    def _read_body(self) -> bytes:
        limit = self.server.app.settings.max_body_bytes
        length = self._length
        if length > limit:
            self.close_connection = True
            raise RequestError(413, BODY_TOO_LARGE.format(length=length, limit=limit), "body",
                               f"at most {limit} bytes")
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
            raise RequestError(400, BODY_CUT_SHORT.format(received=len(body), length=length),
                               "Content-Length", len(body))
        return body

    def _expects_continue(self) -> bool:
        return (self.request_version == "HTTP/1.1"
                and (self.headers.get("Expect") or "").strip().lower() == "100-continue")


    def _answer_error(self, error: RequestError) -> None:
        self._send(error.status, _json_bytes(error.body(self.request_id)), _JSON, error.headers)

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
        self._send(code, _json_bytes({"error": message or self.responses.get(code, ("",))[0],
                                         "request_id": self.request_id}), _JSON)

    def log_message(self, format: str, *args: Any) -> None:
        # The access log is ours (JSON, without headers); http.server's own lines are not wanted.
        return

    def _raw_reject(self, reason: str) -> None:
        message = TOO_MANY_FROM_CLIENT if reason == "client_connections" else TOO_MANY_CONNECTIONS
        self.server.app.metrics.reject(reason)
        body = _json_bytes({"error": message})
        try:
            self.connection.settimeout(min(5.0, self.server.app.settings.read_timeout_s))
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()
            self.wfile.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json"
                             b"\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
        except (OSError, ssl.SSLError):
            pass


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


class HTTPServer(ThreadingHTTPServer):
    """A worker's HTTP server on a listening socket it may share with other workers."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, listener: socket.socket, app: App) -> None:
        super().__init__(listener.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.app = app
        self.connections = Connections(app.settings.max_connections,
                                       app.settings.max_connections_per_client, app.metrics)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Tracked as it is accepted, before its thread starts, so a drain never misses it.
        self.connections.connection_opened(request, str(client_address[0]))
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


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


