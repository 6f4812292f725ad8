"""Real services for the docker target: the Docker Engine (``.ci/services``), the serving image of
the example model built by ``shipml build``, faulty variants of it, and a Prometheus that scrapes
both slots. Everything a test starts it stops, by id or pid."""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests._services import REPO as REPO  # the canary tests import it from here
from tests._services import free_port, require_tools

BASE_IMAGE = "shipml-test/debian:bookworm"
ROUTER_IMAGE = "shipml-test/canary-router:latest"
SESSION = uuid.uuid4().hex[:6]
#: how each faulty "new model" misbehaves, injected by a module baked into its image
FAULTS = {
    "errors": "import random\nif random.random() < 0.3:\n    raise RuntimeError('injected')\n",
    "slow": "import time\ntime.sleep(0.05)\n",
    "shuffled": "",
    "good": "",
    # the shadow step's canaries: every answer a 500; every answer after 5 s
    "failing": "raise RuntimeError('injected')\n",
    "stalled": "import time\ntime.sleep(5)\n",
}
_SITECUSTOMIZE = '''
import os
fault = os.environ.get("SHIPML_TEST_FAULT", "")
if fault:
    import numpy as np
    import shipml.serve.model as served

    original = served.ServedModel.predict

    def predict(self, rows):
{body}        answer = original(self, rows)
        if fault == "shuffled":
            labels = answer.predictions
            answer = served.Prediction(predictions=1 - labels if labels.dtype.kind in "iu"
                                       else labels[::-1], probabilities=answer.probabilities,
                                       classes=answer.classes, inputs=answer.inputs)
        return answer

    served.ServedModel.predict = predict
'''


@pytest.fixture(scope="session")
def docker_client(services: None) -> Iterator[Any]:
    """A Docker SDK client of the engine ``bash .ci/services`` started."""
    import docker

    client = docker.from_env(timeout=600)
    yield client
    client.close()


@pytest.fixture(scope="session")
def images(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The example model's serving image (``base``) and its variants, by fault."""
    built = build_images(docker_client, tmp_path_factory.mktemp("canary-build"))
    yield built
    remove_images(docker_client, built)


def remove_images(docker_client: Any, built: dict[str, str]) -> None:
    """Remove the images :func:`build_images` built, by tag."""
    for tag in reversed(list(built.values())):
        try:
            docker_client.images.remove(tag, force=True, noprune=True)
        except Exception:
            pass


def build_images(docker_client: Any, folder: Path) -> dict[str, str]:
    """Build the example model's serving image with ``shipml build`` and one image per fault
    on it; return their tags by fault (``base`` the plain one)."""
    from shipml.cli import main
    from shipml.example import example_dir

    shutil.copy(Path(example_dir()) / "model.onnx", folder / "model.onnx")
    repository = f"shipml-canary-test/churn-{SESSION}"
    (folder / "shipml.yaml").write_text(yaml.safe_dump({
        "model": {"path": "model.onnx", "label": "benign"},
        "build": {"image": repository, "base_image": BASE_IMAGE, "push": False,
                  "tags": [{"type": "raw", "value": "base"}]}}), encoding="utf-8")
    code = main(["build", "--config", str(folder / "shipml.yaml"), "--output-dir",
                 str(folder / ".shipml")])
    assert code == 0, "shipml build of the example model failed"
    built = {"base": f"{repository}:base"}
    for fault, body in FAULTS.items():
        script = _SITECUSTOMIZE.format(body="".join(f"        {line}\n" for line in
                                                    body.splitlines()))
        dockerfile = (f"FROM {built['base']}\n"
                      "COPY shipml_fault.py shipml_fault.pth /opt/shipml/lib/python3.11/site-packages/\n"
                      f"ENV SHIPML_TEST_FAULT={fault}\n"
                      f"LABEL dev.shipml.test.fault={fault}\n")
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as archive:
            # Debian's own sitecustomize shadows one in site-packages: a .pth line imports ours
            for name, data in (("Dockerfile", dockerfile.encode()),
                               ("shipml_fault.py", script.encode()),
                               ("shipml_fault.pth", b"import shipml_fault\n")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        context.seek(0)
        tag = f"{repository}:{fault}"
        docker_client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
        built[fault] = tag
    return built


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    config: Path
    port: int
    args: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        _wait(f"{self.url}/-/ready", 30)


def start_prometheus(folder: Path, targets: list[int]) -> Prometheus:
    require_tools("prometheus")
    binary = str(shutil.which("prometheus"))
    port = free_port()
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "500ms", "evaluation_interval": "500ms"},
        "scrape_configs": [{"job_name": "canary", "scrape_interval": "500ms",
                            "scrape_timeout": "400ms",
                            "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in targets]}]}],
    }), encoding="utf-8")
    args = [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    prometheus = Prometheus(url=f"http://127.0.0.1:{port}", process=None, config=config,  # type: ignore[arg-type]
                            port=port, args=args)
    prometheus.start()
    return prometheus


def _wait(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds}s")


@dataclass
class Service:
    """One service under test: its ports, its Prometheus, its containers (removed at the end)."""

    name: str
    folder: Path
    port: int
    admin_port: int
    slots: list[int]
    prometheus: Prometheus

    def config(self, image: str, **canary: Any) -> Path:
        section = {
            "image": image, "service": self.name,
            "steps": [{"weight": 20, "pause": 0}, {"weight": 50, "pause": 0}, {"weight": 100}],
            "interval": "2s", "window": "4s", "failure_limit": 2, "min_requests": 5,
            "step_timeout": "30s", "lease": "20s",
            "target": {"type": "docker", "docker": {
                "router_image": ROUTER_IMAGE, "router_base_image": BASE_IMAGE,
                "port": self.port, "admin_port": self.admin_port, "ports": self.slots,
                "drain_s": 1, "ready_timeout_s": 90}},
            "prometheus": {"url": self.prometheus.url, "sample_step_s": 1},
            "metrics": [
                {"name": "error-rate", "query": "error_rate", "max": 0.05},
                {"name": "p95-latency", "query": "p95_ms", "judge": "relative",
                 "max_ratio": 1.5, "slack": 20}],
            "probe": {"enabled": False},
            **canary,
        }
        path = self.folder / "shipml.yaml"
        path.write_text(yaml.safe_dump({"model": {"path": "model.onnx", "label": "benign",
                                                  "test": str(self.folder / "test.csv")},
                                        "canary": section}), encoding="utf-8")
        return path


@pytest.fixture
def service(docker_client: Any, tmp_path: Path) -> Iterator[Service]:
    found = new_service(tmp_path)
    yield found
    end_service(docker_client, found)


def new_service(folder: Path) -> Service:
    """Return a fresh service: free ports, the test set, its own Prometheus."""
    from shipml.example import example_dir

    shutil.copy(Path(example_dir()) / "test.csv", folder / "test.csv")
    slots = [free_port(), free_port()]
    prometheus = start_prometheus(folder, slots)
    return Service(name=f"canary-{uuid.uuid4().hex[:8]}", folder=folder, port=free_port(),
                   admin_port=free_port(), slots=slots, prometheus=prometheus)


def end_service(docker_client: Any, service: Service) -> None:
    """Stop the service's Prometheus and remove its containers (by its label) and its shadow
    volume."""
    service.prometheus.stop()
    for container in docker_client.containers.list(
            all=True, filters={"label": f"dev.shipml.canary={service.name}"}):
        container.remove(force=True)
    for volume in docker_client.volumes.list(filters={"name": f"{service.name}-shadow"}):
        volume.remove(force=True)


class Load:
    """Steady requests of real rows to the router from a thread; records every status code."""

    def __init__(self, url: str, rows: list[dict[str, Any]], rate: float = 40.0) -> None:
        self.url, self.rows, self.delay = url, rows, 1.0 / rate
        self.codes: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        session = requests.Session()
        index = 0
        while not self._stop.is_set():
            row = self.rows[index % len(self.rows)]
            index += 1
            try:
                code = session.post(f"{self.url}/predict", json={"rows": [row]},
                                    timeout=5).status_code
            except requests.RequestException:
                code = 0
            self.codes.append((time.time(), code))
            time.sleep(self.delay)

    def failed(self) -> list[tuple[float, int]]:
        return [(at, code) for at, code in self.codes if code != 200]


def sample_rows(folder: Path) -> list[dict[str, Any]]:
    import pandas as pd

    frame = pd.read_csv(folder / "test.csv").drop(columns=["benign"])
    return list(frame.head(40).to_dict(orient="records"))


