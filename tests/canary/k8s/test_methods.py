"""Methods ``gateway-api``, ``istio`` and ``kserve`` against a real API server with the upstream
CRDs installed: every step's weights read back from the objects the API server stored (HTTPRoute
backendRefs, VirtualService routes, InferenceService canaryTrafficPercent), then promotion and
rollback. KServe's controller is not running: a stand-in marks each InferenceService Ready the
way KServe reports it (its status subresource)."""

from __future__ import annotations

import json
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
    wait_until(lambda: _state(rollout)["phase"] == "promoted", 5, "the Lease says promoted")
