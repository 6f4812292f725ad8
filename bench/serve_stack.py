"""The HTTP stack behind shipml serve: the standard library's threading ``http.server`` (what
shipml serve uses) against uvicorn + starlette (httptools, uvloop), both around the same
``ServedModel`` (same binding, onnxruntime call and decoding), on the bundled example model.

Contenders, each a fresh process, without access logs:
- ``stdlib``: ``shipml serve`` itself (``serve.access_log: false``);
- ``starlette-threadpool``: the request parsed on the event loop, the model run in starlette's
  thread pool (``run_in_threadpool``), as an async server must to keep its loop free;
- ``starlette-inline``: the model run on the event loop (fast for tiny models, blocks the loop).

wrk at 1 and 16 connections on v2 infer (one row); rounds alternate the contenders; medians.
Needs uvicorn, starlette, httptools and uvloop in shipml's environment (bench only):
  pip install uvicorn starlette httptools uvloop
Usage: python bench/serve_stack.py [--rounds 3] [--seconds 5] [--connections 1,16]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import Process, example_v2_body, start_shipml, wrk

from shipml.example import example_dir

CANDIDATES = ("stdlib", "starlette-threadpool", "starlette-inline")


def asgi_app(inline: bool) -> Any:
    """Return a starlette app answering v2 infer with shipml's ServedModel."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from shipml.serve._protocol import RequestError, infer_request, parse_json
    from shipml.serve.model import ServedModel
    from shipml.serve.settings import ServeSettings

    model = ServedModel(ServeSettings(model_path=Path(example_dir()) / "model.onnx", name="model"))
    model.warm_up()

    async def infer(request: Request) -> Response:
        try:
            parsed = infer_request(parse_json(await request.body()), model.onnx.inputs,
                                   model.onnx.outputs, 100_000)
        except RequestError as error:
            return JSONResponse(error.body(""), status_code=error.status)
        outputs = model.infer(parsed) if inline else await run_in_threadpool(model.infer, parsed)
        body = {"model_name": model.name, "model_version": model.version, "id": parsed.request_id,
                "outputs": outputs}
        return Response(json.dumps(body, separators=(",", ":")).encode(),
                        media_type="application/json")

    async def ready(request: Request) -> Response:
        return JSONResponse({"ready": True})

    return Starlette(routes=[Route("/v2/models/model/infer", infer, methods=["POST"]),
                             Route("/v2/health/ready", ready)])


def serve_asgi(candidate: str, port: int) -> None:
    """Child mode: run one starlette contender on ``port``."""
    import uvicorn

    uvicorn.run(asgi_app(inline=candidate == "starlette-inline"), host="127.0.0.1", port=port,
                log_level="warning", access_log=False, loop="uvloop", http="httptools")


def start(candidate: str, folder: Path) -> tuple[Process, str]:
    """Start a contender; return it and its URL once ready."""
    if candidate == "stdlib":
        config = folder / "shipml.yaml"
        config.write_text("serve:\n  access_log: false\n", encoding="utf-8")
        return start_shipml("--config", str(config))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = Process([sys.executable, __file__, "--child", candidate, "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    server.wait_ready(f"{url}/v2/health/ready")
    return server, url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", default="1,16")
    parser.add_argument("--child", choices=CANDIDATES[1:], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        serve_asgi(args.child, args.port)
        return 0
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        sys.exit("pip install uvicorn starlette httptools uvloop")
    body = example_v2_body(1)
    figures: dict[tuple[str, int, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        running = {candidate: start(candidate, Path(folder)) for candidate in CANDIDATES}
        try:
            for connections in (int(part) for part in args.connections.split(",")):
                for _ in range(args.rounds):
                    for candidate, (_, url) in running.items():
                        measured = wrk(f"{url}/v2/models/model/infer", body,
                                       connections=connections, seconds=args.seconds,
                                       threads=1 if connections == 1 else 2)
                        for key in ("p50_ms", "p99_ms", "rps"):
                            figures.setdefault((candidate, connections, key), []) \
                                .append(measured[key])
        finally:
            for server, _ in running.values():
                server.stop()
    for connections in sorted({key[1] for key in figures}):
        print(f"-- {connections} connection(s), v2 infer, one row (medians over {args.rounds} rounds)")
        for candidate in CANDIDATES:
            p50, p99, rps = (statistics.median(figures[(candidate, connections, key)])
                             for key in ("p50_ms", "p99_ms", "rps"))
            print(f"  {candidate:21} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms   {rps:8.0f} req/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
