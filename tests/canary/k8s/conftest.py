"""A real Kubernetes control plane for the kubernetes target: etcd, kube-apiserver (TLS, RBAC),
kube-controller-manager, kube-scheduler and kwok's fake nodes, started by ``bash .ci/services``
(``.ci/k8s``). Each test gets a namespace of its own, removed at the end; each rollout's metrics
come from a stand-in exporter per revision (kwok's pods serve nothing) that a real Prometheus
scrapes. When the control plane is not there, the first test that needs it runs
``bash .ci/services`` and fails naming the command and what it said: no test skips."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests._services import REPO, free_port, start_services
from tests.canary.conftest import Prometheus, start_prometheus

#: how the tests find the control plane: the line `bash .ci/services env` prints
KUBECONFIG_VARIABLE = "SHIPML_KUBECONFIG"
#: another cluster's admin kubeconfig (token and inline CA), instead of .ci/k8s: the kind cluster
#: of .github/workflows/k8s.yml, with kwok's nodes and the CRDs installed there
EXTERNAL_KUBECONFIG = "K8S_TEST_KUBECONFIG"
#: an image by digest: kwok runs no container, so no registry is asked for it
DIGESTS = {name: f"sha256:{digit * 64}" for name, digit in
           (("stable", "a"), ("canary", "b"), ("third", "c"))}
REPOSITORY = "127.0.0.1:5000/shipml-k8s-test/churn"


def image(which: str) -> str:
    """Return the image ``which`` (stable, canary, third) by digest."""
    return f"{REPOSITORY}@{DIGESTS[which]}"


def revision(service: str, which: str) -> str:
    """Return the revision label the kubernetes target gives ``image(which)`` of ``service``."""
    return f"{service}-{DIGESTS[which][7:19]}"


class Kube:
    """Plain HTTPS requests to the API server with one kubeconfig's token and CA: what the
    tests read back and what they set up (namespaces, policies, other field managers)."""

    def __init__(self, kubeconfig: Path) -> None:
        document = yaml.safe_load(kubeconfig.read_text(encoding="utf-8"))
        cluster = document["clusters"][0]["cluster"]
        self.kubeconfig = kubeconfig
        self.server = str(cluster["server"])
        # the CA inline (certificate-authority-data), as .ci/k8s and kind write it
        self.ca = Path(tempfile.mkdtemp(prefix="shipml-k8s-ca-")) / "ca.crt"
        self.ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {document['users'][0]['user']['token']}"
        self.requests: list[tuple[str, str]] = []

    def call(self, method: str, path: str, body: Any = None, *,
             content_type: str = "application/json", params: Mapping[str, str] | None = None
             ) -> tuple[int, Any]:
        """Return the status and the decoded answer of ``method path``."""
        data = None if body is None else body if isinstance(body, str) else json.dumps(body)
        # verify per request: a session's own is overridden by $REQUESTS_CA_BUNDLE
        response = self.session.request(method, self.server + path, data=data,
                                        params=dict(params or {}), timeout=60,
                                        headers={"Content-Type": content_type},
                                        verify=str(self.ca))
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text

    def get(self, path: str) -> dict[str, Any] | None:
        """Return the object at ``path``, None on 404; fail on any other error."""
        status, document = self.call("GET", path)
        if status == 404:
            return None
        assert status == 200, (path, status, document)
        return dict(document)

    def ok(self, method: str, path: str, body: Any = None, **options: Any) -> dict[str, Any]:
        """Return the answer of a request that must succeed."""
        status, document = self.call(method, path, body, **options)
        assert 200 <= status < 300, (method, path, status, document)
        return dict(document) if isinstance(document, dict) else {}


@dataclass
class Cluster:
    """The control plane ``.ci/k8s`` started: its admin kubeconfig and a client of it."""

    kubeconfig: Path
    admin: Kube

    def namespace(self) -> str:
        """Create a namespace of its own for one test; return its name."""
        name = f"shipml-{uuid.uuid4().hex[:8]}"
        self.admin.ok("POST", "/api/v1/namespaces",
                      {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return name

    def token_kubeconfig(self, folder: Path, namespace: str, account: str) -> Path:
        """Return a kubeconfig for the ServiceAccount ``account`` of ``namespace`` (created
        here), with a token from the TokenRequest API."""
        self.admin.ok("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                      {"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": {"name": account, "namespace": namespace}})
        answer = self.admin.ok(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
             "spec": {"expirationSeconds": 3600}})
        document = yaml.safe_load(self.kubeconfig.read_text(encoding="utf-8"))
        document["users"] = [{"name": account, "user": {"token": answer["status"]["token"]}}]
        document["contexts"] = [{"name": account, "context": {"cluster":
                                                              document["clusters"][0]["name"],
                                                              "user": account}}]
        document["current-context"] = account
        path = folder / f"{account}.kubeconfig"
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        return path


def _kubeconfig_path() -> Path | None:
    completed = subprocess.run(["bash", str(REPO / ".ci" / "services"), "env"],
                               capture_output=True, text=True, check=False, cwd=REPO)
    for line in completed.stdout.splitlines():
        name, _, value = line.partition("=")
        if name == KUBECONFIG_VARIABLE and value:
            return Path(value)
    return None


def _answers(kubeconfig: Path | None) -> bool:
    if kubeconfig is None or not kubeconfig.is_file():
        return False
    try:
        status, _ = Kube(kubeconfig).call("GET", "/readyz")
    except requests.RequestException:
        return False
    return status == 200


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The control plane of ``.ci/k8s``, started by ``bash .ci/services`` when it does not
    answer (or the cluster of ``$K8S_TEST_KUBECONFIG``); the test fails naming what is missing
    when it still does not."""
    external = os.environ.get(EXTERNAL_KUBECONFIG)
    if external:
        if not _answers(Path(external)):
            pytest.fail(f"the Kubernetes API of {EXTERNAL_KUBECONFIG}={external} does not answer "
                        "/readyz")
        return Cluster(kubeconfig=Path(external), admin=Kube(Path(external)))
    kubeconfig = _kubeconfig_path()
    if not _answers(kubeconfig):
        start_services()
        kubeconfig = _kubeconfig_path()
    if kubeconfig is None:
        pytest.fail(f"`bash .ci/services env` printed no {KUBECONFIG_VARIABLE}: .ci/services does "
                    "not start the Kubernetes control plane (.ci/k8s)")
    if not _answers(kubeconfig):
        pytest.fail(f"the Kubernetes API of {kubeconfig} does not answer /readyz after "
                    "`bash .ci/services`; see the logs in its folder")
    return Cluster(kubeconfig=kubeconfig, admin=Kube(kubeconfig))


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace of this test's own, deleted (with all it holds) at the end."""
    name = cluster.namespace()
    yield name
    cluster.admin.call("DELETE", f"/api/v1/namespaces/{name}")


# --- the stand-in exporter per revision ---------------------------------------------------------


class Exporter(ThreadingHTTPServer):
    """What ``shipml serve`` publishes on /metrics for one revision, as if its pods served: every
    scrape counts ``per_scrape`` more predict requests, ``error_share`` of them answered 500.
    Deterministic: the numbers move with the scrapes, not with the clock."""

    def __init__(self, revision: str, error_share: float, per_scrape: int = 20) -> None:
        super().__init__(("127.0.0.1", free_port()), _ExporterHandler)
        self.revision, self.error_share, self.per_scrape = revision, error_share, per_scrape
        self.ok = self.errors = 0
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        """Return the port it listens on (127.0.0.1)."""
        return int(self.server_address[1])

    def page(self) -> str:
        """Count one scrape's requests; return the exposition text."""
        errors = round(self.per_scrape * self.error_share)
        self.ok += self.per_scrape - errors
        self.errors += errors
        labels = f'revision="{self.revision}",endpoint="predict"'
        return ("# TYPE shipml_serve_requests_total counter\n"
                f'shipml_serve_requests_total{{{labels},code="200"}} {self.ok}\n'
                f'shipml_serve_requests_total{{{labels},code="500"}} {self.errors}\n')

    def stop(self) -> None:
        """Stop serving."""
        self.shutdown()
        self.server_close()


class _ExporterHandler(BaseHTTPRequestHandler):
    server: Exporter

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        data = self.server.page().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@dataclass
class Rollout:
    """One service under test on the cluster: its namespace, folder, exporters and Prometheus."""

    cluster: Cluster
    namespace: str
    folder: Path
    name: str = field(default_factory=lambda: f"churn-{uuid.uuid4().hex[:6]}")
    exporters: list[Exporter] = field(default_factory=list)
    prometheus: Prometheus | None = None
    #: the kubeconfig of the next ``shipml canary`` run (default: the admin's)
    kubeconfig: Path | None = None

    def metrics(self, error_share: Mapping[str, float]) -> None:
        """Start an exporter per revision (``stable``, ``canary``, …: its 5xx share) and a
        Prometheus scraping them."""
        for which, share in error_share.items():
            self.exporters.append(Exporter(revision(self.name, which), share))
        self.prometheus = start_prometheus(self.folder, [e.port for e in self.exporters])

    def config(self, which: str, *, method: str = "replicas", kubeconfig: Path | None = None,
               steps: Sequence[Mapping[str, Any]] | None = None, ready_timeout_s: float = 90,
               **canary: Any) -> Path:
        """Write the shipml.yaml that rolls out ``image(which)``; return its path."""
        section: dict[str, Any] = {
            "image": image(which), "service": self.name,
            "steps": list(steps or [{"weight": 25, "pause": 0}, {"weight": 50, "pause": 0},
                                    {"weight": 100}]),
            "interval": "2s", "window": "4s", "failure_limit": 2, "min_requests": 5,
            "step_timeout": "60s", "lease": "30s",
            "target": {"type": "kubernetes", "kubernetes": {
                "method": method, "namespace": self.namespace, "replicas": 4,
                "gateway": "infra/public-gateway", "ready_timeout_s": ready_timeout_s}},
            "metrics": [{"name": "error-rate", "query": "error_rate", "max": 0.05}],
            "probe": {"enabled": False},
            **canary,
        }
        if self.prometheus is not None:
            section.setdefault("prometheus", {"url": self.prometheus.url, "sample_step_s": 1})
        path = self.folder / "shipml.yaml"
        path.write_text(yaml.safe_dump({"model": {"path": "model.onnx"}, "canary": section}),
                        encoding="utf-8")
        self.kubeconfig = kubeconfig
        return path

    def command(self, config: Path, *argv: str, output: str = ".shipml") -> list[str]:
        """Return the ``shipml canary`` command line of ``config``."""
        return [sys.executable, "-m", "shipml", "canary", *argv, "--config", str(config),
                "--output-dir", str(self.folder / output)]

    def environment(self) -> dict[str, str]:
        """Return the environment of a ``shipml canary`` run: this rollout's kubeconfig."""
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("SHIPML_", "GITHUB_", "INPUT_", "KUBERNETES_"))}
        return {**keep, "KUBECONFIG": str(self.kubeconfig or self.cluster.kubeconfig)}

    def run(self, config: Path, *argv: str, output: str = ".shipml"
            ) -> subprocess.CompletedProcess[str]:
        """Run ``shipml canary`` to its end; return the finished process."""
        return subprocess.run(self.command(config, *argv, output=output), capture_output=True,
                              text=True, timeout=600, check=False, cwd=REPO,
                              env=self.environment())

    def second_run(self, method: str, at_25: Callable[[], bool]) -> None:
        """Start a rollout with a lease of 10s (its heartbeat renews it every 3s) and a long
        pause at 25%; once ``at_25()`` says the API has the canary there, wait past the lease and
        run a second one. Assert it is refused naming the first (its pid), the first still
        running; the first run's output is in every failure's message."""
        config = self.config("canary", method=method, lease="10s",
                             steps=[{"weight": 25, "pause": "120s"}, {"weight": 100}])
        log = self.folder / "first.log"
        with log.open("w", encoding="utf-8") as out:
            first = subprocess.Popen(self.command(config, output="first"),
                                     env=self.environment(), stdout=out, stderr=out)
        try:
            wait_until(at_25, seconds=120, what="the first run's canary at 25%")
            time.sleep(12)  # longer than the lease: only renewals keep it
            second = self.run(config, output="second")
            running = first.poll() is None
        finally:
            first.kill()
            first.wait()
        told = f"{second.stdout}{second.stderr}\nthe first run:\n{log.read_text(encoding='utf-8')}"
        assert running, told
        assert second.returncode == 2, told
        assert f"another shipml canary holds the rollout of {self.name}: " in second.stderr, told
        assert f"pid {first.pid}" in second.stderr, told
        assert at_25(), "the second run moved the canary"

    def end(self) -> None:
        """Stop the Prometheus and the exporters."""
        if self.prometheus is not None:
            self.prometheus.stop()
        for exporter in self.exporters:
            exporter.stop()

    # --- what the API server has ---------------------------------------------------------------

    def path(self, kind: str, name: str | None = None) -> str:
        """Return the REST path of this rollout's ``kind`` (``name`` default: the service's)."""
        from shipml.canary.targets.kube_api import object_path

        return object_path(kind, self.namespace, name or self.name)

    def deployment(self, track: str) -> dict[str, Any] | None:
        """Return the Deployment of ``track`` as the API server has it, or None."""
        return self.cluster.admin.get(self.path("Deployment", f"{self.name}-{track}"))

    def replicas(self) -> dict[str, int]:
        """Return the replicas of each Deployment that exists, by its revision label."""
        found = {}
        for track in ("stable", "canary"):
            deployment = self.deployment(track)
            if deployment is not None:
                label = deployment["metadata"]["labels"]["shipml.dev/revision"]
                found[label] = int(deployment["spec"]["replicas"])
        return found

    def lease(self) -> dict[str, Any] | None:
        """Return the Lease ``SERVICE-canary``, or None."""
        return self.cluster.admin.get(self.path("Lease", f"{self.name}-canary"))


@pytest.fixture
def rollout(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Rollout]:
    """A service to roll out in this test's namespace; its exporters and Prometheus stopped at
    the end."""
    found = Rollout(cluster=cluster, namespace=namespace, folder=tmp_path)
    yield found
    found.end()


def wait_until(check: Any, seconds: float = 60.0, what: str = "") -> Any:
    """Return ``check()``'s first true answer, polling; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        answer = check()
        if answer:
            return answer
        assert time.monotonic() < deadline, f"not within {seconds:g}s: {what}"
        time.sleep(0.2)
