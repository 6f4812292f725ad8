"""Target kubernetes: every object of every method validated against the official schemas, and
the thin I/O layer against a local HTTP server that answers the documented shapes of the calls
it makes (server-side apply PATCH, GET, 404, 409) and records the exact requests.

What a real API server decides (apply, field ownership, the Lease, each method's steps, RBAC) is
tested against one in tests/canary/k8s/. The stand-in stays for what a real server cannot be
made to do on demand: a write that loses a race (409 between a read and its write), and stored
states a real rollout would not leave (one naming a tag, one written by an earlier shipml)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shipml.canary.engine import Revision
from shipml.canary.lock import Lock
from shipml.canary.targets import Target, kubernetes
from shipml.canary.targets import k8s_objects as objects
from shipml.canary.targets.kube_api import KubeApi, object_path
from shipml.errors import ConfigError

STABLE = ("127.0.0.1:5000/churn@sha256:" + "a" * 64, "churn-aaaaaaaaaaaa")
CANARY = ("127.0.0.1:5000/churn@sha256:" + "b" * 64, "churn-bbbbbbbbbbbb")


@pytest.mark.parametrize("method", objects.METHODS)
@pytest.mark.parametrize("weight", [0, 10, 50, 100])
def test_every_object_of_every_method_is_valid(method: str, weight: int) -> None:
    built = objects.traffic_objects(method, "churn", "prod", stable=STABLE, canary=CANARY,
                                    weight=weight, replicas=4, port=8080,
                                    gateway="infra/public", hosts=["churn.example.com"])
    assert built
    for obj in built:
        assert objects.validate(obj) == [], obj["kind"]


def test_weights_are_in_the_objects() -> None:
    route = objects.traffic_objects("gateway-api", "churn", "prod", stable=STABLE, canary=CANARY,
                                    weight=10, replicas=2, port=8080, gateway="gw", hosts=[])[-1]
    assert [ref["weight"] for ref in route["spec"]["rules"][0]["backendRefs"]] == [90, 10]
    virtual = objects.traffic_objects("istio", "churn", "prod", stable=STABLE, canary=CANARY,
                                      weight=50, replicas=2, port=8080, gateway=None, hosts=[])[-1]
    assert [d["weight"] for d in virtual["spec"]["http"][0]["route"]] == [50, 50]
    isvc = objects.traffic_objects("kserve", "churn", "prod", stable=STABLE, canary=CANARY,
                                   weight=10, replicas=2, port=8080, gateway=None, hosts=[])[0]
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    replicas = objects.traffic_objects("replicas", "churn", "prod", stable=STABLE, canary=CANARY,
                                       weight=10, replicas=4, port=8080, gateway=None, hosts=[])
    assert [d["spec"]["replicas"] for d in replicas[:2]] == [3, 1]
    assert objects.canary_replicas(4, 50) == 2 and objects.canary_replicas(4, 100) == 4


def test_a_wrong_object_is_named_with_its_field() -> None:
    bad = objects.virtual_service("churn", "prod", [], 10)
    bad["spec"]["http"][0]["route"][0]["weight"] = "ten"
    problems = objects.validate(bad)
    assert problems == ["VirtualService/churn: spec.http.0.route.0.weight: 'ten' is not of type "
                        "'integer'"]
    deployment = objects.deployment("churn", "prod", "stable", *STABLE, 1, 8080)
    deployment["spec"]["replicas"] = "one"
    assert objects.validate(deployment)[0].startswith("Deployment/churn-stable: spec.replicas")


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ConfigError) as error:
        objects.check_method("linkerd", "--method")
    assert error.value.message == ("--method: unknown traffic method 'linkerd'; valid: replicas, "
                                   "gateway-api, istio, kserve")


# --- the I/O layer against a local API server ---------------------------------------------------


class FakeApi(ThreadingHTTPServer):
    """Answers like the API server: objects by path, resourceVersion, 404, 409 on create of an
    existing object or on a stale resourceVersion; every request recorded."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.stored: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str, Any]] = []
        self.version = 0

    def next_version(self) -> str:
        self.version += 1
        return str(self.version)


class _Handler(BaseHTTPRequestHandler):
    server: FakeApi

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def _record(self, body: Any) -> None:
        self.server.requests.append((self.command, self.path,
                                     self.headers.get("Content-Type") or "", body))

    def do_GET(self) -> None:
        self._record(None)
        path = self.path.split("?")[0]
        if path in self.server.stored:
            self._answer(200, self.server.stored[path])
        else:
            self._answer(404, {"kind": "Status", "status": "Failure", "reason": "NotFound",
                               "code": 404, "message": f"{path} not found"})

    def do_PATCH(self) -> None:
        body = self._body()
        self._record(body)
        path = self.path.split("?")[0]
        stored = {**body, "metadata": {**body["metadata"],
                                       "resourceVersion": self.server.next_version(),
                                       "generation": 1}}
        # the status of a settled rollout of generation 1, as the controllers report it
        if body["kind"] in ("Deployment",):
            count = body["spec"]["replicas"]
            stored["status"] = {"observedGeneration": 1, "replicas": count,
                                "updatedReplicas": count, "readyReplicas": count,
                                "availableReplicas": count}
        if body["kind"] == "InferenceService":
            stored["status"] = {"observedGeneration": 1,
                                "conditions": [{"type": "Ready", "status": "True"}]}
        self.server.stored[path] = stored
        self._answer(200, stored)

    def do_POST(self) -> None:
        body = self._body()
        self._record(body)
        path = self.path.split("?")[0] + "/" + body["metadata"]["name"]
        if path in self.server.stored:
            self._answer(409, {"kind": "Status", "status": "Failure", "reason": "AlreadyExists",
                               "code": 409, "message": "already exists"})
            return
        stored = {**body, "metadata": {**body["metadata"],
                                       "resourceVersion": self.server.next_version()}}
        self.server.stored[path] = stored
        self._answer(201, stored)

    def do_PUT(self) -> None:
        body = self._body()
        self._record(body)
        path = self.path.split("?")[0]
        current = self.server.stored.get(path)
        if current is None or current["metadata"]["resourceVersion"] != \
                body["metadata"].get("resourceVersion"):
            self._answer(409, {"kind": "Status", "status": "Failure", "reason": "Conflict",
                               "code": 409, "message": "the object has been modified"})
            return
        stored = {**body, "metadata": {**body["metadata"],
                                       "resourceVersion": self.server.next_version()}}
        self.server.stored[path] = stored
        self._answer(200, stored)

    def do_DELETE(self) -> None:
        self._record(None)
        path = self.path.split("?")[0]
        if self.server.stored.pop(path, None) is None:
            self._answer(404, {"kind": "Status", "code": 404, "message": "not found"})
        else:
            self._answer(200, {"kind": "Status", "status": "Success"})


@pytest.fixture
def api_server() -> Iterator[FakeApi]:
    server = FakeApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _target(server: FakeApi, method: str) -> Target:
    api = KubeApi.connect(f"http://127.0.0.1:{server.server_address[1]}", "NO_SUCH_TOKEN", False)
    return kubernetes.build("churn", api, method=method, namespace="prod", replicas=4, port=8080,
                            gateway="infra/public", hosts=(), ready_timeout_s=5, poll_s=0.05)


def test_a_stale_write_meets_409_and_is_retried_on_the_new_version(api_server: FakeApi) -> None:
    target = _target(api_server, "istio")
    mine = Lock("me", "runner", 3, 1_000.0, 60.0)
    target.store.acquire(mine, 1_000.0)
    path = object_path("Lease", "prod", "churn-canary")
    # someone else bumps the Lease between our read and our write: the first PUT gets 409
    api = target.store.api  # type: ignore[attr-defined]
    real_get = api.get
    bumped = {"done": False}

    def racing_get(kind: str, namespace: str, name: str) -> Any:
        found = real_get(kind, namespace, name)
        if kind == "Lease" and not bumped["done"]:
            bumped["done"] = True
            api_server.stored[path]["metadata"]["resourceVersion"] = api_server.next_version()
        return found

    api.get = racing_get
    target.store.acquire(mine, 1_001.0)
    statuses = [r[0] for r in api_server.requests if r[1].startswith(path)]
    assert statuses.count("PUT") == 2


def _push_tiny_image(repository: str, tag: str, content: bytes) -> str:
    """Store a one-layer OCI image as ``127.0.0.1:5000/repository:tag`` in the real registry;
    return its manifest digest."""
    from shipml.oci import OCI_CONFIG, OCI_MANIFEST, RegistryClient, sha256_digest

    client = RegistryClient("127.0.0.1:5000")
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = content
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": client.put_blob(repository, config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": client.put_blob(repository, layer), "size": len(layer)}],
    }).encode()
    client.put_manifest(repository, tag, manifest, OCI_MANIFEST)
    return sha256_digest(manifest)


@pytest.mark.parametrize("method", objects.METHODS)
def test_a_tag_is_resolved_once_and_every_object_names_the_digest(api_server: FakeApi,
                                                                  method: str) -> None:
    import uuid

    repository = f"shipml-canary-test/k8s-{uuid.uuid4().hex[:8]}"
    digest = _push_tiny_image(repository, "v1", b"first")
    target = _target(api_server, method)
    revision = target.workload.resolve(f"127.0.0.1:5000/{repository}:v1")
    pinned = f"127.0.0.1:5000/{repository}@{digest}"
    assert revision == Revision(pinned, f"churn-{digest[7:19]}")
    # the tag moves on; what was resolved does not
    _push_tiny_image(repository, "v1", b"second")
    target.workload.first_deploy(revision)
    images = [container["image"] for verb, _, _, body in api_server.requests if verb == "PATCH"
              for container in _containers(body)]
    assert images and set(images) == {pinned}
    assert target.workload.stable() == Revision(pinned, revision.revision)


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] == "Deployment":
        return list(obj["spec"]["template"]["spec"]["containers"])
    if obj["kind"] == "InferenceService":
        return list(obj["spec"]["predictor"]["containers"])
    return []


def test_a_tag_the_registry_does_not_have_is_refused(api_server: FakeApi) -> None:
    target = _target(api_server, "replicas")
    with pytest.raises(ConfigError, match="no such manifest in the registry"):
        target.workload.resolve("127.0.0.1:5000/shipml-canary-test/k8s-nothing:here")
    assert api_server.requests == []


def test_a_stored_rollout_naming_a_tag_never_moves_on_but_can_be_aborted(api_server: FakeApi
                                                                          ) -> None:
    from shipml.canary import core, engine
    from shipml.canary.plan import Plan, Step

    target = _target(api_server, "replicas")
    target.workload.first_deploy(Revision(*STABLE))
    plan = Plan((Step(10, 0.0), Step(100, 0.0)), 1.0, 1, 0, "hold", 10.0, 1.0)
    tagged = Revision("127.0.0.1:5000/churn:v2", "churn-v2")
    target.store.acquire(Lock("older shipml", "runner", 3, 1_000.0, 60.0), 1_000.0)
    target.store.write_state(engine.begin(plan, "churn", tagged, Revision(*STABLE), 1_000.0).state)
    target.store.release(Lock("older shipml", "runner", 3, 1_000.0, 60.0))
    settings = core.Settings(service="churn", plan=plan, specs=(), target_type="kubernetes",
                             target={}, prometheus={}, probe={}, probe_rows=(), lease_s=60.0,
                             sample_window_s=1.0)
    runner = core.Runner(settings=settings, target=target, providers={}, lines=[], rounds=[])
    before = len(api_server.requests)
    for verb in ("promote", "resume"):
        with pytest.raises(ConfigError, match=r"names the image 127\.0\.0\.1:5000/churn:v2, a tag"):
            core.manual(runner, verb)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="a tag and not a digest"):
        core.roll_out(runner, None)
    assert not [r for r in api_server.requests[before:] if r[0] == "PATCH"]
    assert core.manual(runner, "abort").phase == "aborted"


def test_every_revision_behind_a_proxy_has_no_per_client_limit_below_its_max_connections() -> None:
    # a gateway, a sidecar or KServe's queue-proxy is the one client address a pod sees
    image = "127.0.0.1:5000/model@sha256:" + "a" * 64
    containers = [
        objects.deployment("svc", "ns", "canary", image, "r2", 2, 8080)[
            "spec"]["template"]["spec"]["containers"][0],
        objects.inference_service("svc", "ns", image, "r2", 8080, 10)[
            "spec"]["predictor"]["containers"][0],
    ]
    for container in containers:
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["SHIPML_MAX_CONNECTIONS_PER_CLIENT"] == "100000"
        assert env["SHIPML_REVISION"] == "r2" and env["SHIPML_SERVE_PORT"] == "8080"


#: the rollout state as shipml stored it before the target was cut into store, workload and
#: router: the annotation of the Lease SERVICE-canary (a later job must still resume it)
EARLIER_STATE = (
    '{"canary": {"image": "127.0.0.1:5000/churn@sha256:' + "b" * 64 + '", "revision": '
    '"churn-bbbbbbbbbbbb"}, "failures": 0, "history": [{"error_rate": null, "failed": 0, '
    '"p95_ms": null, "rounds": 0, "status": "running", "step": 0, "weight": 10}], '
    '"passed_in_step": 0, "phase": "progressing", "reason": "", "service": "churn", "stable": '
    '{"image": "127.0.0.1:5000/churn@sha256:' + "a" * 64 + '", "revision": '
    '"churn-aaaaaaaaaaaa"}, "started_at": 1000.0, "step": 0, "step_started_at": 1000.0, '
    '"updated_at": 1000.0, "version": 1, "weight": 10}')


@pytest.mark.parametrize("method", objects.METHODS)
def test_a_rollout_stored_by_an_earlier_shipml_is_read_and_promoted(api_server: FakeApi,
                                                                     method: str) -> None:
    from shipml.canary import core
    from shipml.canary.plan import Plan, Step

    target = _target(api_server, method)
    target.workload.first_deploy(Revision(*STABLE))
    target.workload.deploy_canary(Revision(*CANARY))
    api_server.stored[object_path("Lease", "prod", "churn-canary")] = {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "churn-canary", "namespace": "prod", "resourceVersion": "900",
                     "labels": {"app.kubernetes.io/managed-by": "shipml"},
                     "annotations": {"shipml.dev/canary-state": EARLIER_STATE}},
        "spec": {"leaseDurationSeconds": 60}}
    stored = target.store.read_state()
    assert stored is not None and stored.phase == "progressing" and stored.weight == 10
    assert stored.canary == Revision(*CANARY) and stored.stable == Revision(*STABLE)
    plan = Plan((Step(10, 0.0), Step(100, 0.0)), 1.0, 1, 0, "hold", 10.0, 1.0)
    settings = core.Settings(service="churn", plan=plan, specs=(), target_type="kubernetes",
                             target={}, prometheus={}, probe={}, probe_rows=(), lease_s=60.0,
                             sample_window_s=1.0)
    runner = core.Runner(settings=settings, target=target, providers={}, lines=[], rounds=[])
    assert core.manual(runner, "promote").phase == "promoted"
    assert target.workload.stable() == Revision(*CANARY)
    assert target.router.weights() == {CANARY[1]: 100}
