"""Process supervision: the listening socket, one worker or several forked on it, signals, the
drain on SIGTERM or SIGINT, and a worker restarted when it dies before the server is stopped.
[KServe: ``model_server.py``'s process start]
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
from typing import Any

from shipml.errors import EXIT_CONFIG, EXIT_INFRA, EXIT_OK, ConfigError, first_line
from shipml.serve import _log
from shipml.serve._http import HTTPServer
from shipml.serve.app import App
from shipml.serve.settings import ServeSettings

CANNOT_LISTEN = ("serve.host/serve.port: cannot listen on {host}:{port}: {reason}; choose a free "
                 "port (--port) or an address of this machine (--host)")
TLS_NOT_LOADED = ("serve.tls: cannot load {cert} with {key}: {reason}; give a PEM certificate and "
                  "its private key")
MODEL_NOT_FOUND = "serve.model: model file {path} not found"
#: a worker that dies before the server is stopped is restarted, this many times per worker
RESTARTS_PER_WORKER = 5

def listen(settings: ServeSettings) -> socket.socket:
    """Return the listening socket (TLS-wrapped when configured). Raises ConfigError naming
    ``serve.host``/``serve.port`` when the address cannot be bound, or the TLS files when they do
    not load."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        listener = socket.create_server((settings.host, settings.port), family=family,
                                        backlog=1024)
    except OSError as exc:
        raise ConfigError(CANNOT_LISTEN.format(host=settings.host, port=settings.port,
                                               reason=exc.strerror or first_line(exc))) from None
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
        raise ConfigError(TLS_NOT_LOADED.format(cert=settings.tls_cert, key=settings.tls_key,
                                                reason=first_line(exc))) from None
    return context.wrap_socket(listener, server_side=True, do_handshake_on_connect=False)


def serve(settings: ServeSettings) -> int:
    """Serve until SIGTERM or SIGINT, then drain; return the exit code (0 after a drain, 2 when
    the model cannot be served, 3 when a worker keeps failing)."""
    started = time.perf_counter()
    if settings.version is None:
        from shipml.serve.model import file_version

        if not settings.model_path.is_file():
            raise ConfigError(MODEL_NOT_FOUND.format(path=settings.model_path))
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
    server = HTTPServer(listener, app)
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
    drained = _drain(app, server, settings.drain_timeout_s)
    _log.emit("stopped", worker=worker, drained=drained, exit_code=outcome["code"])
    return outcome["code"]


def _drain(app: App, server: HTTPServer, timeout: float) -> bool:
    """Stop being ready, answer every request begun on a connection accepted before, for up to
    ``timeout`` seconds, then stop the batcher and flush the prediction log in what is left.
    Return True when every request begun was answered."""
    app.begin_drain()
    deadline = time.monotonic() + timeout
    answered = server.connections.drain(deadline)
    app.close(deadline)
    return answered


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
        if code == EXIT_CONFIG or restarts >= RESTARTS_PER_WORKER * settings.workers:
            forward(signal.SIGTERM, None)
            codes.append(code if code != EXIT_OK else EXIT_INFRA)
            continue
        restarts += 1
        spawn(index)
    import shutil

    listener.close()
    shutil.rmtree(folder, ignore_errors=True)
    return max(codes, default=EXIT_OK)
