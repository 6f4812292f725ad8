"""shipml serve side by side with the peer a user would pick instead: the same ONNX model (the
bundled example) served by KServe's Python model server (``bench/serve_kserve_peer.py``, a custom
``kserve.Model`` calling onnxruntime, as KServe's docs show).

Both answer the same Open Inference Protocol v2 request (one row, 11 named tensors) with their
default settings (one process, access logs on, onnxruntime pinned to one intra-op thread), under the
same load generator (wrk, loopback) at the same concurrency. The servers stay up and wrk runs
alternate between them round by round, so both see the same machine. Prints p50, p99 and
requests/s of each (medians over rounds) and shipml's ratios (targets: p50 ≤ 0.8× the peer's,
requests/s ≥ 1.25× the peer's).

KServe needs its own environment (it pins fastapi, pydantic, grpcio, ...):
  python3 -m venv /tmp/kserve-venv && /tmp/kserve-venv/bin/pip install kserve onnxruntime
Usage: python bench/serve_kserve.py --kserve-python /tmp/kserve-venv/bin/python
       [--rounds 3] [--seconds 5] [--connections 1,16]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import Process, example_v2_body, start_shipml, wrk

from shipml.example import example_dir

PEER = Path(__file__).resolve().with_name("serve_kserve_peer.py")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_kserve(python: str) -> tuple[Process, str]:
    """Start the KServe peer on a free port; return it and its base URL once the model is ready."""
    port = _free_port()
    server = Process([python, str(PEER), str(Path(example_dir()) / "model.onnx"), "model",
                      "--http_port", str(port)])
    url = f"http://127.0.0.1:{port}"
    server.wait_ready(f"{url}/v2/models/model/ready")
    return server, url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kserve-python", required=True,
                        help="an interpreter with kserve and onnxruntime installed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", default="1,16")
    args = parser.parse_args()
    body = example_v2_body(1)
    shipml, shipml_url = start_shipml()
    peer, peer_url = start_kserve(args.kserve_python)
    figures: dict[tuple[str, int, str], list[float]] = {}
    try:
        for connections in (int(part) for part in args.connections.split(",")):
            threads = 1 if connections == 1 else 2
            for _ in range(args.rounds):
                for name, url in (("shipml", shipml_url), ("kserve", peer_url)):
                    measured = wrk(f"{url}/v2/models/model/infer", body, connections=connections,
                                   seconds=args.seconds, threads=threads)
                    if measured["errors"] or measured["non2xx"]:
                        print(f"warning: {name} at {connections} connections: "
                              f"{measured['errors']} errors, {measured['non2xx']} non-2xx")
                    for key in ("p50_ms", "p99_ms", "rps"):
                        figures.setdefault((name, connections, key), []).append(measured[key])
    finally:
        shipml.stop()
        peer.stop()
    for connections in sorted({key[1] for key in figures}):
        print(f"-- {connections} connection(s), v2 infer, one row "
              f"(medians over {args.rounds} rounds of {args.seconds:g} s)")
        median = {(name, key): statistics.median(figures[(name, connections, key)])
                  for name in ("shipml", "kserve") for key in ("p50_ms", "p99_ms", "rps")}
        for name in ("shipml", "kserve"):
            print(f"  {name:7} p50 {median[(name, 'p50_ms')]:8.3f} ms   p99 "
                  f"{median[(name, 'p99_ms')]:8.3f} ms   {median[(name, 'rps')]:8.0f} req/s")
        print(f"  shipml/kserve: p50 {median[('shipml', 'p50_ms')] / median[('kserve', 'p50_ms')]:.2f}x"
              f" (target <= 0.8), req/s {median[('shipml', 'rps')] / median[('kserve', 'rps')]:.2f}x"
              " (target >= 1.25)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
