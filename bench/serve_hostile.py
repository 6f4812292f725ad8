"""``shipml serve`` against SIGTERM and slow clients, now and at a baseline commit, side by side.

1. SIGTERM 0.5 s after 50 clients start large ``/predict`` requests (each connects, waits up to
   0.9 s, then streams a ~1 MB body): answered / lost (connected, never answered) / refused (the
   connection itself was refused once the server stopped accepting).
2. 200 slow clients against ``max_connections: 100`` (each sends its request line, then a header
   line every second, and reconnects when closed) while one good client asks ``/predict`` in a
   loop: the share of its requests answered 200. Slow clients from another address (127.0.0.2,
   the per-client limit applies) and from the good client's own address (only the whole-request
   deadline frees slots; ``request_timeout_s: 3`` here).

The baseline runs from ``git archive REF scripts`` on PYTHONPATH, so both columns come from one run
on one machine. Run: ``python bench/serve_hostile.py [--baseline 7d95dea] [--window 12]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import Process, example_rows, source_env

from shipml.example import example_dir


def _request(rows: int) -> bytes:
    body = json.dumps({"rows": example_rows(50) * (rows // 50)}).encode()
    return (f"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _status(sock: socket.socket) -> int | None:
    """Return the status of the first answer on ``sock``, None when the connection ended first."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return None
            data += chunk
    except OSError:
        return None
    return int(data.split(b" ", 2)[1])


def _start(config: dict[str, Any], env: dict[str, str], folder: Path) -> tuple[Process, int]:
    (folder / "shipml.yaml").write_text(json.dumps({"serve": config}), encoding="utf-8")
    model = Path(example_dir()) / "model.onnx"
    server = Process([sys.executable, "-m", "shipml", "serve", str(model), "--port", "0",
                      "--config", str(folder / "shipml.yaml")], env=env, cwd=folder)
    port = server.wait_port()
    server.wait_ready(f"http://127.0.0.1:{port}/v2/health/ready")
    return server, port


def sigterm_in_flight(env: dict[str, str], folder: Path,
                      clients: int = 50) -> tuple[int, int, int]:
    """Return (answered, lost, refused) of ``clients`` large requests when SIGTERM comes 0.5 s
    after they start: each connects, waits 0 to 0.9 s (a client still preparing its request),
    sends its request line in two pieces, then streams its ~1 MB body. Lost: connected, no
    answer; refused: the connection itself was refused (the server had stopped accepting)."""
    server, port = _start({"drain_timeout_s": 60}, env, folder)
    request = _request(5000)
    statuses: list[int | str | None] = ["refused"] * clients

    def client(index: int) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        except OSError:
            return
        statuses[index] = None
        with sock:
            time.sleep((index % 10) * 0.1)
            try:
                sock.sendall(request[:6])
                time.sleep(0.01)
                for start in range(6, len(request), 65536):
                    sock.sendall(request[start:start + 65536])
                    time.sleep(0.002)
            except OSError:
                return
            statuses[index] = _status(sock)

    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    server.process.send_signal(15)
    for thread in threads:
        thread.join(timeout=120)
    server.stop()
    answered = sum(1 for status in statuses if status == 200)
    refused = sum(1 for status in statuses if status == "refused")
    return answered, clients - answered - refused, refused


def slow_clients(env: dict[str, str], folder: Path, window: float, source: str,
                 config: dict[str, Any], slow: int = 200) -> float:
    """Return the share of a good client's requests answered 200 while ``slow`` slow clients
    from ``source`` hold connections."""
    server, port = _start({"max_connections": 100, **config}, env, folder)
    stop = threading.Event()

    def slow_client() -> None:
        while not stop.is_set():
            sock = socket.socket()
            try:
                sock.bind((source, 0))
                sock.connect(("127.0.0.1", port))
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: bench\r\n")
                while not stop.wait(1.0):
                    sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                time.sleep(0.05)
            finally:
                sock.close()

    threads = [threading.Thread(target=slow_client, daemon=True) for _ in range(slow)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)  # let them take their slots
    request = _request(50)
    asked = answered = 0
    ends = time.monotonic() + window
    while time.monotonic() < ends:
        asked += 1
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(request)
                answered += _status(sock) == 200
        except OSError:
            pass
        time.sleep(0.05)
    stop.set()
    server.stop()
    return answered / asked if asked else 0.0


def _knows_deadline(env: dict[str, str]) -> bool:
    """Return True when the shipml on ``env``'s PYTHONPATH accepts serve.request_timeout_s."""
    schema = Path(env["PYTHONPATH"]) / "shipml" / "schema" / "serve.json"
    return schema.is_file() and "request_timeout_s" in schema.read_text(encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--baseline", default="7d95dea", help="git ref to compare with")
    parser.add_argument("--window", type=float, default=12.0, help="seconds of slow clients")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "base").mkdir()
        columns = {"now": source_env(None, root),
                   f"baseline {args.baseline}": source_env(args.baseline, root / "base")}
        rows: dict[str, dict[str, str]] = {}
        for name, env in columns.items():
            folder = root / name.replace(" ", "-")
            folder.mkdir()
            answered, lost, refused = sigterm_in_flight(env, folder)
            rows.setdefault("SIGTERM, 50 large requests in flight: answered / lost / refused",
                            {})[name] = f"{answered} / {lost} / {refused}"
            share = slow_clients(env, folder, args.window, "127.0.0.2", {})
            rows.setdefault("200 slow clients (other address), max_connections 100: good "
                            "answered", {})[name] = f"{share:.0%}"
            # a baseline older than request_timeout_s runs without it (its schema refuses the key)
            deadline = {"request_timeout_s": 3} if _knows_deadline(env) else {}
            share = slow_clients(env, folder, args.window, "127.0.0.1", deadline)
            rows.setdefault("200 slow clients (same address, request_timeout_s 3): good "
                            "answered", {})[name] = f"{share:.0%}"
    width = max(len(label) for label in rows)
    print(f"{'':{width}}  " + "  ".join(f"{name:>18}" for name in columns))
    for label, values in rows.items():
        print(f"{label:{width}}  " + "  ".join(f"{values[name]:>18}" for name in columns))
    print(f"(cpu count {os.cpu_count()}, window {args.window:g} s)")


if __name__ == "__main__":
    main()
