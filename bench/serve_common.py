"""What the serve benchmarks share: start ``shipml serve`` (or any server command) as a fresh
process, wait for it to answer, load it with wrk on loopback, read wrk's figures as JSON.

wrk comes from Debian (``apt-get install -y wrk``); its Lua ``done`` hook prints the percentiles,
so nothing is parsed from its human-readable table.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd

from shipml.example import example_dir

REPO = Path(__file__).resolve().parents[1]

_DONE = r"""
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
                 + summary.errors.timeout
  io.write(string.format(
    '{"p50_us":%d,"p90_us":%d,"p99_us":%d,"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d}\n',
    latency:percentile(50), latency:percentile(90), latency:percentile(99), summary.requests,
    summary.duration, errors, summary.errors.status))
end
"""


def example_rows(count: int = 1) -> list[dict[str, Any]]:
    """Return ``count`` rows of the bundled example's test set, without the label, as JSON."""
    frame = pd.read_csv(Path(example_dir()) / "test.csv").drop(columns=["benign"]).iloc[:count]
    rows: list[dict[str, Any]] = json.loads(json.dumps(frame.to_dict(orient="records")))
    return rows


def example_v2_body(count: int = 1) -> dict[str, Any]:
    """Return a v2 inference request for the example model (one [rows, 1] tensor per column)."""
    rows = example_rows(count)
    inputs = []
    for column in rows[0]:
        text = isinstance(rows[0][column], str)
        inputs.append({"name": column, "shape": [count, 1], "datatype": "BYTES" if text else "FP64",
                       "data": [row[column] for row in rows]})
    return {"id": "bench", "inputs": inputs}


def require_wrk() -> str:
    """Return wrk's path, or exit with how to install it."""
    found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is needed: apt-get install -y wrk")
    return found


def wrk(url: str, body: dict[str, Any] | None, *, connections: int, seconds: float,
        threads: int = 1, headers: dict[str, str] | None = None) -> dict[str, float]:
    """Load ``url`` (POST ``body`` as JSON, or GET) with wrk; return p50/p90/p99 (ms), requests/s
    and error counts."""
    script_lines = []
    if body is not None:
        script_lines += ['wrk.method = "POST"',
                         'wrk.headers["Content-Type"] = "application/json"',
                         f"wrk.body = {json.dumps(json.dumps(body))}"]
    for name, value in (headers or {}).items():
        script_lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(script_lines) + "\n" + _DONE)
    try:
        completed = subprocess.run(
            [require_wrk(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
             "--timeout", "10s", "-s", script.name, url], capture_output=True, text=True, check=True)
    finally:
        os.unlink(script.name)
    line = next(text for text in completed.stdout.splitlines() if text.startswith("{"))
    raw = json.loads(line)
    return {"p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000,
            "rps": raw["requests"] / (raw["duration_us"] / 1e6),
            "errors": raw["errors"], "non2xx": raw["non2xx"], "requests": raw["requests"]}


class Process:
    """A server started as a fresh process, stopped by its pid."""

    def __init__(self, command: list[str], *, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="bench-serve-", suffix=".log", delete=False)
        environment = {key: value for key, value in os.environ.items()
                       if not key.startswith(("SHIPML_", "PROMETHEUS_"))}
        environment.update(env or {})
        self.started = time.perf_counter()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        env=environment, cwd=cwd)

    def events(self, name: str) -> list[dict[str, Any]]:
        """Return the JSON log records of event ``name``."""
        found = []
        for line in Path(self.log.name).read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == name:
                found.append(record)
        return found

    def wait_port(self, timeout: float = 60) -> int:
        """Return the port from shipml's ``listening`` line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listening = self.events("listening")
            if listening:
                return int(listening[0]["port"])
            if self.process.poll() is not None:
                break
            time.sleep(0.005)
        self.stop()
        raise RuntimeError(f"server did not start:\n{Path(self.log.name).read_text()}")

    def wait_ready(self, url: str, timeout: float = 120) -> float:
        """Poll ``url`` until it answers 200; return the seconds since the process started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.005)
        self.stop()
        raise RuntimeError(f"server did not get ready:\n{Path(self.log.name).read_text()}")

    def stop(self) -> int:
        """SIGTERM the server (SIGKILL after 30 s); remove its log; return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=10)
        self.log.close()
        os.unlink(self.log.name)
        return code


def start_shipml(*args: str, env: dict[str, str] | None = None,
                 model: Path | None = None) -> tuple[Process, str]:
    """Start ``shipml serve`` on ``model`` (default: the example model) and a free port; return
    it and its base URL once ready."""
    model = model or Path(example_dir()) / "model.onnx"
    server = Process([sys.executable, "-m", "shipml", "serve", str(model), "--port", "0",
                      *args], env={"SHIPML_SERVE_HOST": "127.0.0.1", **(env or {})})
    port = server.wait_port()
    url = f"http://127.0.0.1:{port}"
    server.wait_ready(f"{url}/v2/health/ready")
    return server, url


def source_env(ref: str | None, folder: Path) -> dict[str, str]:
    """Return the environment that runs shipml from the working tree (``ref`` None) or from
    ``git archive REF scripts`` unpacked under ``folder``, so two columns of a comparison come
    from one run on one machine."""
    if ref is None:
        return {"PYTHONPATH": str(REPO / "scripts")}
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "scripts"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return {"PYTHONPATH": str(folder / "scripts")}
