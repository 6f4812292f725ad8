"""The release half of ``shipml demo --release``: what the release workflow does after a merge,
on this machine, with the services of ``bash .ci/services``.

Build the example's original model and push it to the loopback registry, sign it with a fresh
key (``shipml keygen``) and deploy it (the first deploy of the service); then build the model the
pull-request half optimized, sign it, verify it, and roll it out as a canary in two steps, with
Prometheus scraping both slots (its configuration is ``shipml canary --print-prometheus-config``)
and a small load on the router, since the analysis judges live requests. Finally ``shipml
report`` renders the gates, the image, its signature and the rollout in one report.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from shipml.errors import EXIT_OK, ConfigError, InfrastructureError

#: the config of the release half, beside the example's shipml.yaml
RELEASE_CONFIG = "release.yaml"
REGISTRY = "127.0.0.1:5000"
NEEDS_SERVICES = ("the release half needs {missing}; start the services as root: "
                  "`sudo bash .ci/services`, then `bash .ci/demo`")
NO_OPTIMIZED = ("the pull-request half handed on no optimized model (results/optimize.json); "
                "the canary rolls out optimize's output")
#: requests per second the demo's load generator sends to the router during the canary
LOAD_RATE = 25.0
PROMETHEUS_READY_S = 60.0


def missing_services() -> list[str]:
    """Return what the release half needs and does not find: the docker SDK (the build and
    canary extras), an answering Docker Engine, the registry on 127.0.0.1:5000, the
    ``prometheus`` binary; empty when all are there."""
    missing = []
    try:
        import docker
    except ImportError:
        return ["shipml[build,sign] (bash .ci/demo installs them)"]
    try:
        client = docker.from_env(timeout=10)
        client.ping()
        client.close()
    except Exception:  # the SDK raises DockerException and requests errors alike
        missing.append("a Docker Engine")
    try:
        if requests.get(f"http://{REGISTRY}/v2/", timeout=3).status_code != 200:
            missing.append(f"the registry on {REGISTRY}")
    except requests.RequestException:
        missing.append(f"the registry on {REGISTRY}")
    if shutil.which("prometheus") is None:
        missing.append("the prometheus binary")
    return missing


def run_release(workdir: Path, debug: bool) -> int:
    """Run the release half in ``workdir`` (where the pull-request half left its results);
    return the exit code of the first stage that did not pass, else of the report. Raises
    InfrastructureError when a service is missing."""
    from shipml.cli import main
    from shipml.example import example_dir

    missing = missing_services()
    if missing:
        raise InfrastructureError(NEEDS_SERVICES.format(missing=", ".join(missing)))
    shutil.copy2(example_dir() / RELEASE_CONFIG, workdir / RELEASE_CONFIG)
    config = str(workdir / RELEASE_CONFIG)
    common = ["--config", config, "--output-dir", str(workdir), *(["--debug"] if debug else [])]
    service = _service(config)
    _remove_service(service)
    for name in ("cosign.key", "cosign.pub"):
        (workdir / name).unlink(missing_ok=True)
    optimized = _optimized(workdir)

    def stage(title: str, *argv: str) -> int:
        print(f"\n=== {title} ===", flush=True)
        return main([*argv, *common])

    with _environment(COSIGN_PASSWORD=secrets.token_urlsafe(24)):
        print("\n=== keygen: a fresh key pair (cosign.key, cosign.pub) ===", flush=True)
        code = main(["keygen", "--output-key-prefix", str(workdir / "cosign"), "--config", config])
        try:
            code = code or _release(stage, config, workdir, optimized)
        finally:
            _remove_service(service)
    report = stage("report: the gates, the image, its signature and the rollout", "report")
    return code if code != EXIT_OK else report


def _release(stage: Callable[..., int], config: str, workdir: Path, optimized: Path) -> int:
    """Build, sign and deploy the original model, then build, sign, verify and roll out the
    optimized one, with Prometheus (the printed scrape configuration) scraping both slots and a
    load on the router during the canary; return the first exit code that is not 0, else 0."""
    from shipml.cli import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["canary", "--print-prometheus-config", "--config", config])
    if code != EXIT_OK:
        return code
    folder = workdir / "prometheus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "prometheus.yml").write_text(printed.getvalue(), encoding="utf-8")
    router = _router_url(config)
    with _prometheus(folder) as url:
        print(f"\nshipml demo: Prometheus {url} scrapes both slots, as "
              f"{folder / 'prometheus.yml'} says (shipml canary --print-prometheus-config)",
              flush=True)
        steps: list[tuple[str, list[str]]] = [
            ("build: the original model, pushed to the loopback registry", ["build"]),
            ("sign: its image, with an attestation of the gate results", ["sign"]),
            ("canary: the first deploy of the service (no stable to compare with)",
             ["canary", "--prometheus-url", url]),
            ("build: the optimized model", ["build", "--candidate", str(optimized)]),
            ("sign: the optimized model's image", ["sign"]),
            ("verify: its signature and gates attestation with cosign.pub", ["verify"]),
        ]
        for title, argv in steps:
            code = stage(title, *argv)
            if code != EXIT_OK:
                return code
        with Load(router, _rows(workdir)) as load:
            print(f"\nshipml demo: {LOAD_RATE:g} requests/s go to the router {router}: the "
                  "analysis judges live requests", flush=True)
            code = stage("canary: the optimized model at 25%, then 50%, then promoted; "
                         "analysed every 5 s", "canary", "--prometheus-url", url)
        print(f"shipml demo: the load sent {load.sent} requests to the router; "
              f"{load.failed} did not answer 200", flush=True)
    return code


def _service(config: str) -> str:
    from shipml.config import load_config

    return str(load_config(Path(config)).section("canary")["service"])


def _optimized(workdir: Path) -> Path:
    from shipml.results import handed_on

    handed = handed_on(workdir, "model")
    if handed is None or not handed.handoff.argument:
        raise ConfigError(NO_OPTIMIZED)
    return Path(handed.handoff.argument)


def _router_url(config: str) -> str:
    """Return the router's URL, as the printed Prometheus configuration names it."""
    from shipml.canary.targets.docker_prometheus import router_url
    from shipml.config import load_config

    return router_url(load_config(Path(config)).section("canary")["target"]["docker"])


def _rows(workdir: Path) -> list[dict[str, Any]]:
    import pandas as pd

    frame = pd.read_csv(workdir / "test.csv").drop(columns=["benign"])
    return list(frame.head(50).to_dict(orient="records"))


def _remove_service(service: str) -> None:
    """Remove the demo service's containers (by the canary's label) and its shadow volume."""
    import docker

    from shipml.canary.targets._docker import LABEL

    client = docker.from_env(timeout=120)
    try:
        for found in client.containers.list(all=True, filters={"label": f"{LABEL}={service}"}):
            found.remove(force=True)
        for volume in client.volumes.list(filters={"name": f"{service}-"}):
            with contextlib.suppress(docker.errors.APIError):
                volume.remove(force=True)
    finally:
        client.close()


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _prometheus(folder: Path) -> Iterator[str]:
    """Run ``prometheus`` with ``folder/prometheus.yml`` on a free loopback port; yield its URL."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [str(shutil.which("prometheus")), f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + PROMETHEUS_READY_S
        while not _answers(f"{url}/-/ready"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise InfrastructureError(f"Prometheus did not start; its log: "
                                          f"{folder / 'prometheus.log'}")
            time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class Load:
    """A steady stream of real rows to the router's ``/predict`` from a thread of its own."""

    url: str
    rows: list[dict[str, Any]]
    rate: float = LOAD_RATE
    sent: int = 0
    failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=self._run, name="shipml-demo-load", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.wait(1.0 / self.rate):
            row = self.rows[self.sent % len(self.rows)]
            self.sent += 1
            try:
                answer = session.post(f"{self.url}/predict", json={"rows": [row]}, timeout=10)
                ok = answer.status_code == 200
            except requests.RequestException:
                ok = False
            self.failed += 0 if ok else 1
