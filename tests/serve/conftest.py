"""Servers for the HTTP tests: ``shipml serve`` started as a real process on 127.0.0.1 with a port
the kernel picks, stopped by its own pid, its JSON log kept for the assertions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import Case

START_TIMEOUT_S = 60.0


@dataclass
class Server:
    """A running ``shipml serve`` process."""

    process: subprocess.Popen[bytes]
    log_path: Path
    port: int
    scheme: str = "http"
    ready_s: float = 0.0
    _log_offset: int = field(default=0)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def log_lines(self) -> list[str]:
        """Return every line the server has logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Return the JSON log records (of event ``name``)."""
        found = []
        for line in self.log_lines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if name is None or record.get("event") == name:
                found.append(record)
        return found

    def wait_logged(self, name: str, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
        """Return the first record of event ``name`` once the server has logged it; fail after
        ``timeout`` seconds or when the server exits. Unlike polling an endpoint, this opens no
        connection that the server would count until it notices the close."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(name)
            if found:
                return found[0]
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server never logged {name!r}:\n{self.log_path.read_text()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM this server (by pid) and return its exit code; SIGKILL after ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)


def write_serve_config(folder: Path, case: Case | None = None,
                       **serve: Any) -> Path:
    """Write ``folder/shipml.yaml`` with the case's ``model:`` keys and a ``serve:`` section."""
    document: dict[str, Any] = {}
    if case is not None:
        document["model"] = {"path": str(case.model), "label": case.label, "train": str(case.train)}
    if serve:
        document["serve"] = serve
    path = folder / "shipml.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def start_server(folder: Path, *args: str, env: dict[str, str] | None = None,
                 scheme: str = "http", verify: str | bool = True, wait_ready: bool = True) -> Server:
    """Start ``shipml serve --port 0 ARGS`` in ``folder``; return once it answers ready."""
    log_path = folder / f"server-{time.monotonic_ns()}.log"
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("SHIPML_", "PROMETHEUS_"))}
    environment.update(env or {})
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "shipml", "serve", "--port", "0", *args],
            cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=environment)
    server = Server(process=process, log_path=log_path, port=0, scheme=scheme)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.port:
        listening = server.events("listening")
        if listening:
            server.port = int(listening[0]["port"])
            break
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"server did not start:\n{log_path.read_text()}")
        time.sleep(0.05)
    while wait_ready:
        try:
            answer = requests.get(f"{server.url}/v2/health/ready", timeout=5, verify=verify)
            if answer.status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"server did not get ready:\n{log_path.read_text()}")
        time.sleep(0.05)
    server.ready_s = time.perf_counter() - started
    return server


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test starts; each still running at the end is stopped by its pid."""
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


@dataclass
class RawAnswer:
    """One HTTP answer read off a raw socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_connect(port: int, source: str = "127.0.0.1", timeout: float = 30.0) -> Any:
    """Return a socket connected to the server from ``source`` (any 127.0.0.0/8 address is this
    machine, so a test can be several clients)."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def read_answers(sock: Any) -> list[RawAnswer]:
    """Return every answer the server writes on ``sock`` until it closes the connection."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    answers = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        answers.append(RawAnswer(int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return answers


def raw_exchange(port: int, payload: bytes, source: str = "127.0.0.1") -> list[RawAnswer]:
    """Send ``payload`` on one connection, close the sending side, return every answer."""
    import socket

    with raw_connect(port, source) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        return read_answers(sock)


def metric_total(server: Server, name: str, **labels: str) -> float:
    """Return the sum of ``name``'s samples whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{server.url}/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())
