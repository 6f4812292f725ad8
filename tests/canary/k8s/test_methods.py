"""Methods ``gateway-api``, ``istio`` and ``kserve`` against a real API server with the upstream
CRDs installed: every step's weights read back from the objects the API server stored (HTTPRoute
backendRefs, VirtualService routes, InferenceService canaryTrafficPercent), then promotion and
rollback. KServe's controller is not running: a stand-in marks each InferenceService Ready the
way KServe reports it (its status subresource)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.canary.k8s.conftest import Rollout, image, revision, wait_until

pytestmark = [pytest.mark.slow]

MANUAL_STEPS: list[dict[str, Any]] = [{"weight": 25, "pause": "manual"},
                                      {"weight": 50, "pause": "manual"}, {"weight": 100}]


def _weights(rollout: Rollout, method: str) -> dict[str, int]:
    """Return the split as the API server has it, by track (kserve: the latest revision's)."""
    admin = rollout.cluster.admin
    if method == "gateway-api":
        route = admin.get(rollout.path("HTTPRoute"))
        assert route is not None
        return {ref["name"].removeprefix(f"{rollout.name}-"): ref["weight"]
                for ref in route["spec"]["rules"][0]["backendRefs"]}
    if method == "istio":
        virtual = admin.get(rollout.path("VirtualService"))
        assert virtual is not None
        return {route["destination"]["subset"]: route["weight"]
                for route in virtual["spec"]["http"][0]["route"]}
    isvc = admin.get(rollout.path("InferenceService"))
    assert isvc is not None
    percent = isvc["spec"]["predictor"].get("canaryTrafficPercent")
    return {isvc["metadata"]["annotations"]["shipml.dev/revision"]: 100 if percent is None
            else percent}


def _state(rollout: Rollout) -> dict[str, Any]:
    lease = rollout.lease()
    assert lease is not None
    return dict(json.loads(lease["metadata"]["annotations"]["shipml.dev/canary-state"]))


class KServeStandIn:
    """Marks every InferenceService of a namespace Ready through its status subresource, as
    KServe's controller does once the predictor's revision serves (there is none here)."""

    def __init__(self, rollout: Rollout) -> None:
        self.rollout = rollout
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        admin = self.rollout.cluster.admin
        while not self.stop.wait(0.3):
            status, found = admin.call("GET", self.rollout.path("InferenceService"))
            if status != 200:
                continue
            generation = found["metadata"].get("generation")
            if (found.get("status") or {}).get("observedGeneration") == generation:
                continue
            admin.call("PATCH", self.rollout.path("InferenceService") + "/status",
                       json.dumps({"status": {"observedGeneration": generation, "conditions": [
                           {"type": "Ready", "status": "True",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
                       content_type="application/merge-patch+json")


@pytest.fixture
def kserve(rollout: Rollout) -> Iterator[KServeStandIn]:
    stand_in = KServeStandIn(rollout)
    yield stand_in
    stand_in.stop.set()
    stand_in.thread.join(timeout=10)


@pytest.mark.parametrize("method", ["gateway-api", "istio"])
def test_every_step_as_the_api_server_reports_it_then_promotion(rollout: Rollout,
                                                                method: str) -> None:
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    first = rollout.run(rollout.config("stable", method=method))
    assert first.returncode == 0, first.stdout + first.stderr
    assert _weights(rollout, method) == {"stable": 100, "canary": 0}
    config = rollout.config("canary", method=method, steps=MANUAL_STEPS)
    for weight, output in ((25, ".shipml"), (50, "resume-1")):
        verb = () if weight == 25 else ("resume",)
        paused = rollout.run(config, *verb, output=output)
        assert paused.returncode == 0, paused.stdout + paused.stderr
        assert _weights(rollout, method) == {"stable": 100 - weight, "canary": weight}
        assert _state(rollout)["weight"] == weight
        canary = rollout.deployment("canary")
        assert canary is not None and canary["status"].get("readyReplicas") == 4
    promoted = rollout.run(config, "resume", output="resume-2")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert _weights(rollout, method) == {"stable": 100, "canary": 0}
    stable = rollout.deployment("stable")
    assert stable is not None and rollout.deployment("canary") is None
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == image("canary")
    assert stable["metadata"]["labels"]["shipml.dev/revision"] == revision(rollout.name, "canary")


@pytest.mark.parametrize("method", ["gateway-api", "istio"])
def test_a_failing_canary_is_rolled_back_to_weight_0(rollout: Rollout, method: str) -> None:
    rollout.metrics({"stable": 0.0, "canary": 0.5})
    assert rollout.run(rollout.config("stable", method=method)).returncode == 0
    rolled_back = rollout.run(rollout.config("canary", method=method,
                                             steps=[{"weight": 25, "pause": "30s"},
                                                    {"weight": 100}]))
    assert rolled_back.returncode == 1, rolled_back.stdout + rolled_back.stderr
    assert _weights(rollout, method) == {"stable": 100, "canary": 0}
    assert rollout.deployment("canary") is None
    assert _state(rollout)["phase"] == "rolled_back"


def test_kserve_every_step_as_the_api_server_reports_it(rollout: Rollout,
                                                        kserve: KServeStandIn) -> None:
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    first = rollout.run(rollout.config("stable", method="kserve"))
    assert first.returncode == 0, first.stdout + first.stderr
    stable, canary = revision(rollout.name, "stable"), revision(rollout.name, "canary")
    assert _weights(rollout, "kserve") == {stable: 100}
    config = rollout.config("canary", method="kserve", steps=MANUAL_STEPS)
    paused = rollout.run(config)
    assert paused.returncode == 0, paused.stdout + paused.stderr
    assert _weights(rollout, "kserve") == {canary: 25}
    resumed = rollout.run(config, "resume", output="resume-1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _weights(rollout, "kserve") == {canary: 50}
    promoted = rollout.run(config, "resume", output="resume-2")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert _weights(rollout, "kserve") == {canary: 100}
    isvc = rollout.cluster.admin.get(rollout.path("InferenceService"))
    assert isvc is not None
    assert isvc["spec"]["predictor"]["containers"][0]["image"] == image("canary")
    wait_until(lambda: _state(rollout)["phase"] == "promoted", what="the Lease says promoted")


# --- the Lease, the verbs and other field managers, per method ---------------------------------

METHODS = ["gateway-api", "istio", "kserve"]


def _deploy_stable(rollout: Rollout, method: str, request: pytest.FixtureRequest) -> None:
    """Start the KServe stand-in where ``method`` needs it; deploy the stable alone."""
    if method == "kserve":
        request.getfixturevalue("kserve")
    first = rollout.run(rollout.config("stable", method=method))
    assert first.returncode == 0, first.stdout + first.stderr
    assert _canary_weight(rollout, method) == 0


def _canary_weight(rollout: Rollout, method: str) -> int:
    """Return the canary's weight as the API server has it (kserve: 0 while the latest revision
    is the stable's)."""
    weights = _weights(rollout, method)
    if method == "kserve":
        return weights.get(revision(rollout.name, "canary"), 0)
    return weights["canary"]


def _assert_stable_alone(rollout: Rollout, method: str) -> None:
    if method == "kserve":
        assert _weights(rollout, method) == {revision(rollout.name, "stable"): 100}
        return
    assert _weights(rollout, method) == {"stable": 100, "canary": 0}
    assert rollout.deployment("canary") is None
    stable = rollout.deployment("stable")
    assert stable is not None
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == image("stable")


def _assert_promoted(rollout: Rollout, method: str) -> None:
    if method == "kserve":
        assert _weights(rollout, method) == {revision(rollout.name, "canary"): 100}
        isvc = rollout.cluster.admin.get(rollout.path("InferenceService"))
        assert isvc is not None
        assert isvc["spec"]["predictor"]["containers"][0]["image"] == image("canary")
        return
    assert _weights(rollout, method) == {"stable": 100, "canary": 0}
    assert rollout.deployment("canary") is None
    stable = rollout.deployment("stable")
    assert stable is not None
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == image("canary")


def _result(rollout: Rollout, output: str = ".shipml") -> dict[str, Any]:
    path = rollout.folder / output / "results" / "canary.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("method", METHODS)
def test_status_resume_and_promote_by_hand(rollout: Rollout, method: str,
                                           request: pytest.FixtureRequest) -> None:
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    _deploy_stable(rollout, method, request)
    config = rollout.config("canary", method=method, steps=MANUAL_STEPS)
    paused = rollout.run(config)
    assert paused.returncode == 0, paused.stdout + paused.stderr
    assert _canary_weight(rollout, method) == 25
    status = rollout.run(config, "status", output="status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"{rollout.name}: paused at step 1/3, weight 25%" in status.stdout
    assert _canary_weight(rollout, method) == 25
    resumed = rollout.run(config, "resume", output="resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _canary_weight(rollout, method) == 50
    promoted = rollout.run(config, "promote", output="promote")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    _assert_promoted(rollout, method)
    wait_until(lambda: _state(rollout)["phase"] == "promoted", what="the Lease says promoted")


@pytest.mark.parametrize("method", METHODS)
def test_abort_rolls_back_a_paused_rollout(rollout: Rollout, method: str,
                                          request: pytest.FixtureRequest) -> None:
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    _deploy_stable(rollout, method, request)
    config = rollout.config("canary", method=method, steps=MANUAL_STEPS)
    assert rollout.run(config).returncode == 0
    assert _canary_weight(rollout, method) == 25
    aborted = rollout.run(config, "abort", output="abort")
    assert aborted.returncode in (0, 1), aborted.stdout + aborted.stderr
    assert _state(rollout)["phase"] == "aborted"
    _assert_stable_alone(rollout, method)


@pytest.mark.parametrize("method", METHODS)
def test_killed_mid_rollout_it_resumes_from_the_lease(rollout: Rollout, method: str,
                                                      request: pytest.FixtureRequest) -> None:
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    _deploy_stable(rollout, method, request)
    config = rollout.config("canary", method=method,
                            steps=[{"weight": 25, "pause": "4s"}, {"weight": 50, "pause": "60s"},
                                   {"weight": 100}])
    first = subprocess.Popen(rollout.command(config, output="killed"), env=rollout.environment(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # killed once the API server has the canary at 50% and the Lease says so
        wait_until(lambda: _canary_weight(rollout, method) == 50
                   and _state(rollout)["weight"] == 50,
                   seconds=120, what="the canary at 50% in the API and in the Lease")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert json.loads(rollout.lease()["spec"]["holderIdentity"])["pid"] == first.pid  # type: ignore[index]
    resumed = rollout.run(rollout.config("canary", method=method,
                                         steps=[{"weight": 25, "pause": "4s"},
                                                {"weight": 50, "pause": "2s"},
                                                {"weight": 100}]))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    decisions = _result(rollout)["metrics"]["decisions"]
    assert any("resume" in line and "step 2/3, weight 50%" in line for line in decisions), decisions
    _assert_promoted(rollout, method)


@pytest.mark.parametrize("method", METHODS)
def test_a_second_run_is_refused_naming_the_holder(rollout: Rollout, method: str,
                                                   request: pytest.FixtureRequest) -> None:
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    _deploy_stable(rollout, method, request)
    rollout.second_run(method, lambda: _canary_weight(rollout, method) == 25)


def _taken_by_kubectl(rollout: Rollout, method: str) -> str:
    """Change a field of the method's route as ``kubectl`` (merge patch, its field manager):
    the HTTPRoute's weights, the VirtualService's hosts. Return the field's path."""
    admin = rollout.cluster.admin
    if method == "gateway-api":
        route = admin.get(rollout.path("HTTPRoute"))
        assert route is not None
        rules = route["spec"]["rules"]
        for ref in rules[0]["backendRefs"]:
            ref["weight"] = 90 if ref["name"].endswith("-stable") else 10
        admin.ok("PATCH", rollout.path("HTTPRoute"), json.dumps({"spec": {"rules": rules}}),
                 content_type="application/merge-patch+json", params={"fieldManager": "kubectl"})
        return ".spec.rules"
    admin.ok("PATCH", rollout.path("VirtualService"),
             json.dumps({"spec": {"hosts": [f"{rollout.name}.example"]}}),
             content_type="application/merge-patch+json", params={"fieldManager": "kubectl"})
    return ".spec.hosts"


@pytest.mark.parametrize("method", ["gateway-api", "istio"])
def test_a_route_field_another_manager_owns_is_exit_2_naming_the_manager_and_the_field(
        rollout: Rollout, method: str, request: pytest.FixtureRequest) -> None:
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    _deploy_stable(rollout, method, request)
    field = _taken_by_kubectl(rollout, method)
    before = _weights(rollout, method)
    conflicted = rollout.run(rollout.config("canary", method=method, steps=MANUAL_STEPS))
    assert conflicted.returncode == 2, conflicted.stdout + conflicted.stderr
    kind = "HTTPRoute" if method == "gateway-api" else "VirtualService"
    assert f"{kind}/{rollout.name}" in conflicted.stderr
    assert '"kubectl"' in conflicted.stderr and field in conflicted.stderr
    assert "Traceback" not in conflicted.stderr
    # before any traffic moved: the route as the other manager left it
    assert _weights(rollout, method) == before


def test_kserve_a_failing_canary_is_rolled_back_to_the_stable(rollout: Rollout,
                                                               kserve: KServeStandIn) -> None:
    # the predictor names only the canary while it is rolled out: the rollback puts back the
    # stable the InferenceService keeps in its annotations (it used to keep the canary at 100%)
    rollout.metrics({"stable": 0.0, "canary": 0.5})
    assert rollout.run(rollout.config("stable", method="kserve")).returncode == 0
    rolled_back = rollout.run(rollout.config("canary", method="kserve",
                                             steps=[{"weight": 25, "pause": "30s"},
                                                    {"weight": 100}]))
    assert rolled_back.returncode == 1, rolled_back.stdout + rolled_back.stderr
    assert _state(rollout)["phase"] == "rolled_back"
    _assert_stable_alone(rollout, "kserve")
    isvc = rollout.cluster.admin.get(rollout.path("InferenceService"))
    assert isvc is not None
    assert isvc["spec"]["predictor"]["containers"][0]["image"] == image("stable")
    assert "shipml.dev/stable-image" not in isvc["metadata"]["annotations"]


def _shadow_target(rollout: Rollout) -> dict[str, Any] | None:
    """Return what the stable's pods read from the shadow ConfigMap (None: there is none)."""
    found = rollout.cluster.admin.get(rollout.path("ConfigMap", f"{rollout.name}-shadow"))
    return None if found is None else dict(json.loads(found["data"]["shadow.json"]))


def _mirror(rollout: Rollout, method: str) -> dict[str, Any] | None:
    """Return the mesh's mirror as the route the API server stored has it (None: none)."""
    admin = rollout.cluster.admin
    if method == "istio":
        virtual = admin.get(rollout.path("VirtualService"))
        assert virtual is not None
        http = virtual["spec"]["http"][0]
        return ({"to": http["mirror"], "percent": http["mirrorPercentage"]["value"]}
                if "mirror" in http else None)
    route = admin.get(rollout.path("HTTPRoute"))
    assert route is not None
    filters = route["spec"]["rules"][0].get("filters") or []
    mirror = next((f["requestMirror"] for f in filters if f["type"] == "RequestMirror"), None)
    return None if mirror is None else {"to": mirror["backendRef"], "percent": mirror["percent"]}


@pytest.mark.parametrize("by", ["server", "mesh"])
@pytest.mark.parametrize("method", ["gateway-api", "istio"])
def test_a_shadow_step_points_the_stable_at_the_canary_and_an_abort_without_it_stops_that(
        rollout: Rollout, method: str, by: str, request: pytest.FixtureRequest) -> None:
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    _deploy_stable(rollout, method, request)
    config = rollout.config("canary", method=method, steps=[
        {"shadow": "120s", "sample": 0.2, "shadow_by": by}, {"weight": 25}, {"weight": 100}])
    first = subprocess.Popen(rollout.command(config, output="shadow"), env=rollout.environment(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mirrored = (lambda: _shadow_target(rollout)) if by == "server" else (
        lambda: _mirror(rollout, method))
    try:
        wait_until(lambda: mirrored() and _state(rollout)["phase"] == "progressing",
                   seconds=120, what=f"the {by} mirroring to the canary, the Lease at the step")
    finally:
        first.kill()
        first.wait()
    canary = f"{rollout.name}-canary"
    if by == "server":
        assert _shadow_target(rollout) == {
            "url": f"http://{canary}.{rollout.namespace}.svc:8080", "sample": 0.2,
            "revision": revision(rollout.name, "canary")}
        assert _mirror(rollout, method) is None
    else:
        assert _mirror(rollout, method) == (
            {"to": {"host": rollout.name, "subset": "canary"}, "percent": 20} if method == "istio"
            else {"to": {"group": "", "kind": "Service", "name": canary, "port": 8080},
                  "percent": 20})
        assert not _shadow_target(rollout)
    assert _canary_weight(rollout, method) == 0
    # the person who aborts gives a plan without the shadow step
    aborted = rollout.run(rollout.config("canary", method=method), "abort", output="abort")
    assert aborted.returncode in (0, 1), aborted.stdout + aborted.stderr
    assert _state(rollout)["phase"] == "aborted"
    assert _shadow_target(rollout) == {} and _mirror(rollout, method) is None
    _assert_stable_alone(rollout, method)


def _cordon(rollout: Rollout, unschedulable: bool) -> None:
    """Mark every node (un)schedulable, as ``kubectl cordon`` does: new pods stay Pending."""
    admin = rollout.cluster.admin
    for node in admin.ok("GET", "/api/v1/nodes")["items"]:
        admin.ok("PATCH", f"/api/v1/nodes/{node['metadata']['name']}",
                 json.dumps({"spec": {"unschedulable": unschedulable}}),
                 content_type="application/merge-patch+json")


def test_promote_keeps_the_canary_serving_until_every_pod_of_the_new_stable_is_ready(
        rollout: Rollout) -> None:
    # while the stable Deployment rolls to the canary's image its old pods are still Ready:
    # counting them, promote used to route all traffic back to the stable (the old model, mostly)
    # and remove the canary at once
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    assert rollout.run(rollout.config("stable", method="gateway-api")).returncode == 0
    config = rollout.config("canary", method="gateway-api", steps=MANUAL_STEPS)
    assert rollout.run(config).returncode == 0
    assert _canary_weight(rollout, "gateway-api") == 25
    config = rollout.config("canary", method="gateway-api", steps=MANUAL_STEPS,
                            ready_timeout_s=10)
    _cordon(rollout, True)
    try:
        stuck = rollout.run(config, "promote", output="stuck")
    finally:
        _cordon(rollout, False)
    assert stuck.returncode == 3, stuck.stdout + stuck.stderr
    assert f"Deployment {rollout.namespace}/{rollout.name}-stable did not become ready" \
        in stuck.stderr
    # the canary still serves everything; nothing of it was removed
    assert _weights(rollout, "gateway-api") == {"stable": 0, "canary": 100}
    assert rollout.deployment("canary") is not None
    promoted = rollout.run(config, "promote", output="promote")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    _assert_promoted(rollout, "gateway-api")
    stable = rollout.deployment("stable")
    assert stable is not None and stable["status"].get("updatedReplicas") == 4


def test_kserve_a_ready_condition_of_an_older_generation_is_not_ready(
        rollout: Rollout, kserve: KServeStandIn) -> None:
    # KServe's Ready condition describes the generation it observed: after the canary's spec is
    # applied, a Ready of the stable's generation says nothing of the canary yet
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    assert rollout.run(rollout.config("stable", method="kserve")).returncode == 0
    kserve.stop.set()
    kserve.thread.join(timeout=10)
    config = rollout.config("canary", method="kserve", steps=MANUAL_STEPS, ready_timeout_s=8)
    stale = rollout.run(config)
    assert stale.returncode == 3, stale.stdout + stale.stderr
    assert f"InferenceService {rollout.namespace}/{rollout.name} did not become ready" \
        in stale.stderr
    isvc = rollout.cluster.admin.get(rollout.path("InferenceService"))
    assert isvc is not None and isvc["status"]["observedGeneration"] < isvc["metadata"]["generation"]
