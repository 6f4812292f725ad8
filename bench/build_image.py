"""The built-in image next to a plain FastAPI + onnxruntime image built the way FastAPI's
"FastAPI in Containers - Docker" tutorial shows (requirements layer, then the app folder with the
model in it, ``fastapi run``), both on the same local base image, built through the same engine.

Prints, for each: the size of the layers added over the base (target for shipml ≤ 170 MB),
container start to ready, median of ``--starts`` (target ≤ 3 s), and the rebuild after a
model-only change (target ≤ 10 s); then shipml's ratio to the FastAPI image. The first build of
each (cold or warm, as the engine's cache is found) is printed apart: not a comparison.
Needs bash .ci/services (dockerd, the base image). Usage: python bench/build_image.py [--starts 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker
import requests

from shipml.cli import main
from shipml.example import example_dir

REPO = Path(__file__).resolve().parent.parent
BASE_IMAGE = "shipml-test/debian:bookworm"
MB = 1e6

FASTAPI_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
WORKDIR /code
COPY ./requirements.txt ./ca-certificates.crt /code/
RUN python3 -m venv /venv \\
 && PIP_CERT=/code/ca-certificates.crt \\
    /venv/bin/pip install --no-cache-dir --upgrade -r /code/requirements.txt
COPY ./app /code/app
ENV PORT=8000
CMD /venv/bin/fastapi run app/main.py --host 127.0.0.1 --port $PORT
"""
FASTAPI_REQUIREMENTS = "fastapi[standard]\nonnxruntime\nnumpy\n"
FASTAPI_APP = '''\
from pathlib import Path

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI

session = ort.InferenceSession(str(Path(__file__).parent / "model.onnx"))
app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
def predict(rows: list[dict[str, float | str]]) -> dict[str, list[int]]:
    feeds = {}
    for item in session.get_inputs():
        values = [row[item.name] for row in rows]
        kind = object if item.type == "tensor(string)" else np.float64
        feeds[item.name] = np.array(values, dtype=kind).reshape(-1, 1)
    labels, _ = session.run(None, feeds)
    return {"predictions": [int(v) for v in labels]}
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def change_model(path: Path, text: str) -> None:
    import onnx

    model = onnx.load(str(path))
    model.doc_string = text
    onnx.save(model, str(path))


def start_to_ready(client: Any, image: str, url: str, env: dict[str, str], port: int) -> float:
    started = time.perf_counter()
    container = client.containers.run(image, detach=True, network_mode="host",
                                      environment={**env})
    try:
        while True:
            try:
                if requests.get(url.format(port=port), timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except requests.ConnectionError:
                pass
            if time.perf_counter() - started > 120:
                raise RuntimeError(container.logs().decode()[-2000:])
            time.sleep(0.02)
    finally:
        container.remove(force=True)


def shipml_build(folder: Path) -> tuple[float, dict[str, Any]]:
    import json

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["build", "--config", str(folder / "shipml.yaml"), "--output-dir",
                     str(folder / ".shipml")])
    elapsed = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"shipml build exited {code}")
    return elapsed, json.loads((folder / ".shipml" / "results" / "build.json").read_text())["metrics"]


def fastapi_build(client: Any, folder: Path, tag: str) -> tuple[float, str]:
    started = time.perf_counter()
    image, _ = client.images.build(path=str(folder), tag=tag, network_mode="host", rm=True)
    return time.perf_counter() - started, str(image.id)


def bench(starts: int) -> None:
    subprocess.run(["bash", str(REPO / ".ci" / "services")], check=True, stdout=subprocess.DEVNULL)
    client = docker.from_env(timeout=1800)
    base_size = client.images.get(BASE_IMAGE).attrs["Size"]
    created: list[str] = []
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        # shipml's built-in image
        project = work / "shipml"
        project.mkdir()
        shutil.copy(Path(example_dir()) / "model.onnx", project / "model.onnx")
        (project / "shipml.yaml").write_text(
            "model: {path: model.onnx, label: benign}\n"
            f"build: {{image: shipml-bench/example, base_image: '{BASE_IMAGE}', push: false,\n"
            "        tags: [{type: raw, value: bench}]}\n")
        first_s, metrics = shipml_build(project)
        created.append(metrics["image_id"])
        change_model(project / "model.onnx", "retrained")
        rebuild_s, metrics = shipml_build(project)
        created.append(metrics["image_id"])
        ready = [start_to_ready(client, metrics["image_id"], "http://127.0.0.1:{port}/v2/health/ready",
                                {"SHIPML_SERVE_PORT": str(port)}, port)
                 for port in (free_port() for _ in range(starts))]
        figures["shipml"] = {"added_mb": (metrics["size_bytes"] - base_size) / MB,
                             "ready_s": statistics.median(ready), "rebuild_s": rebuild_s,
                             "first_build_s": first_s}

        # FastAPI + onnxruntime as the tutorial builds it
        app = work / "fastapi"
        (app / "app").mkdir(parents=True)
        (app / "Dockerfile").write_text(FASTAPI_DOCKERFILE)
        (app / "requirements.txt").write_text(FASTAPI_REQUIREMENTS)
        (app / "app" / "main.py").write_text(FASTAPI_APP)
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", app / "ca-certificates.crt")
        shutil.copy(Path(example_dir()) / "model.onnx", app / "app" / "model.onnx")
        first_s, image_id = fastapi_build(client, app, "shipml-bench/fastapi:bench")
        created.append(image_id)
        change_model(app / "app" / "model.onnx", "retrained")
        rebuild_s, image_id = fastapi_build(client, app, "shipml-bench/fastapi:bench")
        created.append(image_id)
        ready = [start_to_ready(client, image_id, "http://127.0.0.1:{port}/health",
                                {"PORT": str(port)}, port)
                 for port in (free_port() for _ in range(starts))]
        size = client.images.get(image_id).attrs["Size"]
        figures["fastapi"] = {"added_mb": (size - base_size) / MB,
                              "ready_s": statistics.median(ready), "rebuild_s": rebuild_s,
                              "first_build_s": first_s}
    for image_id in reversed(created):
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image_id, force=True, noprune=True)

    rows = (("layers added over the base (MB)", "added_mb", 170),
            ("container start to ready (s, median)", "ready_s", 3),
            ("rebuild after a model-only change (s)", "rebuild_s", 10))
    print(f"base image {BASE_IMAGE}: {base_size / MB:.1f} MB; {starts} starts each")
    print(f"{'figure':44} {'shipml':>9} {'FastAPI':>9} {'ratio':>7}  target")
    for label, key, target in rows:
        ours, theirs = figures["shipml"][key], figures["fastapi"][key]
        verdict = "" if target is None else f"≤ {target} {'met' if ours <= target else 'NOT met'}"
        print(f"{label:44} {ours:9.2f} {theirs:9.2f} {ours / theirs:7.2f}  {verdict}")
    print(f"first builds in this run, cache as found: shipml {figures['shipml']['first_build_s']:.1f} s, "
          f"FastAPI {figures['fastapi']['first_build_s']:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5, help="container starts measured per image")
    bench(parser.parse_args().starts)
