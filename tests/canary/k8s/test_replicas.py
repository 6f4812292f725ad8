"""Method ``replicas`` against a real API server: `shipml canary` run as a user runs it (its own
process, a kubeconfig), every weight read back from the API (the two Deployments' replicas), the
Lease as the lock and the state, and the API server's own refusals."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import threading
import time
from typing import Any

import pytest

from tests.canary.k8s.conftest import Rollout, image, revision, wait_until

pytestmark = [pytest.mark.slow]

MANUAL_STEPS: list[dict[str, Any]] = [{"weight": 25, "pause": "manual"}, {"weight": 50, "pause": "manual"},
                {"weight": 100}]


def _result(rollout: Rollout, output: str = ".shipml") -> dict[str, Any]:
    path = rollout.folder / output / "results" / "canary.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _first_deploy(rollout: Rollout) -> None:
    done = rollout.run(rollout.config("stable"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert rollout.replicas() == {revision(rollout.name, "stable"): 4}
    wait_until(lambda: (rollout.deployment("stable") or {}).get("status", {}).get(
        "readyReplicas") == 4, what="the stable Deployment's 4 pods Ready (kwok)")


def _state(rollout: Rollout) -> dict[str, Any]:
    lease = rollout.lease()
    assert lease is not None
    return dict(json.loads(lease["metadata"]["annotations"]["shipml.dev/canary-state"]))


def test_first_deploy_then_every_step_as_the_api_server_reports_it(rollout: Rollout) -> None:
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    _first_deploy(rollout)
    stable, canary = revision(rollout.name, "stable"), revision(rollout.name, "canary")
    service = rollout.cluster.admin.get(rollout.path("Service"))
    assert service is not None and service["spec"]["selector"] == {"app": rollout.name}

    config = rollout.config("canary", steps=MANUAL_STEPS)
    paused = rollout.run(config)
    assert paused.returncode == 0, paused.stdout + paused.stderr
    assert rollout.replicas() == {stable: 3, canary: 1}
    assert _state(rollout)["phase"] == "paused" and _state(rollout)["weight"] == 25
    status = rollout.run(config, "status", output="status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"{rollout.name}: paused at step 1/3, weight 25%" in status.stdout

    resumed = rollout.run(config, "resume", output="resume-1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert rollout.replicas() == {stable: 2, canary: 2}
    assert _state(rollout)["weight"] == 50

    promoted = rollout.run(config, "resume", output="resume-2")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert _result(rollout, "resume-2")["metrics"]["phase"] == "promoted"
    # the canary's image is the stable now, on all 4 pods; the canary Deployment is gone
    assert rollout.replicas() == {canary: 4}
    assert rollout.deployment("canary") is None
    stable_now = rollout.deployment("stable")
    assert stable_now is not None
    assert stable_now["spec"]["template"]["spec"]["containers"][0]["image"] == image("canary")
    assert _state(rollout)["phase"] == "promoted"


def test_promote_waits_for_the_new_stable_before_it_removes_the_canary(rollout: Rollout
                                                                          ) -> None:
    # the canary's pods served all traffic until the stable's 4 pods of its image were Ready
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    _first_deploy(rollout)
    config = rollout.config("canary", steps=MANUAL_STEPS)
    assert rollout.run(config).returncode == 0
    promoted = rollout.run(config, "promote", output="promote")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    stable = rollout.deployment("stable")
    assert stable is not None and rollout.deployment("canary") is None
    assert stable["status"].get("readyReplicas") == 4
    assert stable["status"].get("updatedReplicas") == 4
    assert stable["status"].get("observedGeneration") == stable["metadata"]["generation"]


def test_a_failing_canary_is_rolled_back_to_the_stable_alone(rollout: Rollout) -> None:
    rollout.metrics({"stable": 0.0, "canary": 0.5})
    _first_deploy(rollout)
    config = rollout.config("canary", steps=[{"weight": 25, "pause": "30s"}, {"weight": 100}])
    rolled_back = rollout.run(config)
    assert rolled_back.returncode == 1, rolled_back.stdout + rolled_back.stderr
    assert _result(rollout)["metrics"]["phase"] == "rolled_back"
    assert rollout.replicas() == {revision(rollout.name, "stable"): 4}
    assert rollout.deployment("canary") is None
    assert _state(rollout)["phase"] == "rolled_back"


def test_abort_rolls_back_a_paused_rollout(rollout: Rollout) -> None:
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    _first_deploy(rollout)
    config = rollout.config("canary", steps=MANUAL_STEPS)
    assert rollout.run(config).returncode == 0
    aborted = rollout.run(config, "abort", output="abort")
    assert aborted.returncode in (0, 1), aborted.stdout + aborted.stderr
    assert _state(rollout)["phase"] == "aborted"
    assert rollout.replicas() == {revision(rollout.name, "stable"): 4}
    assert rollout.deployment("canary") is None


def test_killed_mid_rollout_it_resumes_from_the_lease(rollout: Rollout) -> None:
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    _first_deploy(rollout)
    canary = revision(rollout.name, "canary")
    config = rollout.config("canary", steps=[{"weight": 25, "pause": "4s"},
                                             {"weight": 50, "pause": "60s"}, {"weight": 100}])
    first = subprocess.Popen(rollout.command(config, output="killed"), env=rollout.environment(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # killed once the API server has the canary at 50% and the Lease says so
        wait_until(lambda: rollout.replicas().get(canary) == 2 and _state(rollout)["weight"] == 50,
                   seconds=120, what="the canary at 50% in the API and in the Lease")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert json.loads(rollout.lease()["spec"]["holderIdentity"])["pid"] == first.pid  # type: ignore[index]
    resumed = rollout.run(rollout.config("canary", steps=[{"weight": 25, "pause": "4s"},
                                                          {"weight": 50, "pause": "2s"},
                                                          {"weight": 100}]))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    decisions = _result(rollout)["metrics"]["decisions"]
    assert any("resume" in line and "step 2/3, weight 50%" in line for line in decisions), decisions
    assert rollout.replicas() == {canary: 4}


def test_a_second_run_is_refused_naming_the_holder(rollout: Rollout) -> None:
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    _first_deploy(rollout)
    canary = revision(rollout.name, "canary")
    rollout.second_run("replicas", lambda: rollout.replicas().get(canary) == 1)


def _policy(rollout: Rollout, name: str) -> None:
    """A ValidatingAdmissionPolicy of the cluster's own (CEL, evaluated by the API server):
    every container of a Deployment in this test's namespace sets resources.limits."""
    admin = rollout.cluster.admin
    admin.ok("POST", "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies", {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{
                     "apiGroups": ["apps"], "apiVersions": ["v1"],
                     "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
                 "validations": [{
                     "expression": "object.spec.template.spec.containers.all(c, "
                                   "has(c.resources) && has(c.resources.limits))",
                     "message": "every container sets resources.limits", "reason": "Invalid"}]}})
    admin.ok("POST", "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings", {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {
                     "kubernetes.io/metadata.name": rollout.namespace}}}}})


def _refused_by_policy(rollout: Rollout) -> bool:
    from shipml.canary.targets import k8s_objects as objects

    probe = objects.deployment("policy-probe", rollout.namespace, "stable", image("stable"),
                               "probe", 1, 8080)
    status, _ = rollout.cluster.admin.call("POST", rollout.path("Deployment").rsplit("/", 1)[0],
                                           probe, params={"dryRun": "All"})
    return status == 422


def test_an_object_the_api_server_refuses_is_exit_2_naming_the_object_and_the_rule(
        rollout: Rollout) -> None:
    rollout.metrics({"stable": 0.0})
    name = f"limits-{rollout.namespace}"
    _policy(rollout, name)
    try:
        wait_until(lambda: _refused_by_policy(rollout), what="the policy in force")
        refused = rollout.run(rollout.config("stable"))
    finally:
        admin = rollout.cluster.admin
        admin.call("DELETE", "/apis/admissionregistration.k8s.io/v1/"
                             f"validatingadmissionpolicybindings/{name}")
        admin.call("DELETE", f"/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/{name}")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"Deployment/{rollout.name}-stable" in refused.stderr
    assert "every container sets resources.limits" in refused.stderr
    assert f"ValidatingAdmissionPolicy '{name}'" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert rollout.deployment("stable") is None


def test_a_field_another_manager_owns_is_exit_2_naming_the_manager_and_the_field(
        rollout: Rollout) -> None:
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    _first_deploy(rollout)
    # someone scales the stable by hand (`kubectl scale` is an update by field manager
    # kubectl): the replicas are theirs now, and shipml does not silently take them back
    rollout.cluster.admin.ok(
        "PATCH", rollout.path("Deployment", f"{rollout.name}-stable"),
        '{"spec": {"replicas": 6}}', content_type="application/merge-patch+json",
        params={"fieldManager": "kubectl"})
    conflicted = rollout.run(rollout.config("canary", steps=MANUAL_STEPS))
    assert conflicted.returncode == 2, conflicted.stdout + conflicted.stderr
    assert f"Deployment/{rollout.name}-stable" in conflicted.stderr
    assert '"kubectl"' in conflicted.stderr and ".spec.replicas" in conflicted.stderr
    assert "Traceback" not in conflicted.stderr
    # before any traffic moved: no canary, the stable as the other manager left it
    assert rollout.deployment("canary") is None
    assert rollout.replicas() == {revision(rollout.name, "stable"): 6}


def test_the_heartbeat_and_the_runs_own_writes_share_the_lease_without_a_conflict(
        rollout: Rollout, monkeypatch: pytest.MonkeyPatch) -> None:
    # the heartbeat renews the Lease from its thread while the run writes its state into the same
    # object: each GET-then-PUT (with its resourceVersion) must not interleave with the other's
    from shipml.canary import engine
    from shipml.canary.engine import Revision
    from shipml.canary.lock import me
    from shipml.canary.plan import Plan, Step
    from shipml.canary.targets.k8s_lease import LeaseStore
    from shipml.canary.targets.kube_api import KubeApi

    monkeypatch.setenv("KUBECONFIG", str(rollout.cluster.kubeconfig))
    store = LeaseStore(KubeApi.connect(None, "", verify_tls=True), rollout.name,
                       rollout.namespace)
    lock = me(10.0, time.time())
    store.acquire(lock, time.time())
    plan = Plan((Step(10, 0.0), Step(100, 0.0)), 1.0, 1, 0, "hold", 10.0, 1.0)
    state = engine.begin(plan, rollout.name, Revision(image("canary"), "churn-b"),
                         Revision(image("stable"), "churn-a"), time.time()).state
    failed: list[BaseException] = []

    def renew() -> None:
        try:
            for _ in range(30):
                store.acquire(dataclasses.replace(lock, renewed_at=time.time()), time.time())
        except BaseException as exc:  # reported by the assertion below
            failed.append(exc)

    beat = threading.Thread(target=renew)
    beat.start()
    try:
        for written in range(30):
            store.write_state(dataclasses.replace(state, updated_at=float(written)))
    finally:
        beat.join()
    assert failed == []
    stored = store.read_state()
    assert stored is not None and stored.updated_at == 29.0
    assert json.loads(rollout.lease()["spec"]["holderIdentity"])["pid"] == os.getpid()  # type: ignore[index]
    store.release(lock)
    assert rollout.lease()["spec"].get("holderIdentity") is None  # type: ignore[index]
