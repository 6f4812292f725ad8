"""Least privilege, proven against the API server's RBAC: the Role of docs/guide/kubernetes.md is
the target's table of verbs, a ServiceAccount bound to exactly that Role rolls a service out, and
one verb less is exit 2 naming the verb and the resource before anything is changed."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import yaml

from shipml.canary.targets.kube_api import RESOURCES
from shipml.canary.targets.kubernetes import VERBS
from tests._services import REPO
from tests.canary.k8s.conftest import Rollout, revision

pytestmark = [pytest.mark.slow]


def _rules(verbs: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    return [{"apiGroups": [RESOURCES[kind][0].rpartition("/")[0]],
             "resources": [RESOURCES[kind][1]], "verbs": list(allowed)}
            for kind, allowed in verbs.items()]


def _documented_role() -> dict[str, Any]:
    text = (REPO / "docs" / "guide" / "kubernetes.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    return next(document for document in map(yaml.safe_load, blocks)
                if document.get("kind") == "Role")


def _grants(rules: Sequence[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in rules for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def test_the_documented_role_is_what_the_methods_need() -> None:
    documented = _grants(_documented_role()["rules"])
    needed = _grants([rule for method in ("replicas", "gateway-api", "istio")
                      for rule in _rules(VERBS[method])])
    assert documented == needed


def _bind(rollout: Rollout, account: str, verbs: Mapping[str, Sequence[str]]) -> None:
    admin, namespace = rollout.cluster.admin, rollout.namespace
    admin.ok("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": account, "namespace": namespace}, "rules": _rules(verbs)})
    admin.ok("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": account, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]})


@pytest.mark.parametrize("method", ["replicas", "gateway-api", "istio"])
def test_a_service_account_bound_to_the_role_rolls_out_to_promotion(rollout: Rollout,
                                                                     method: str) -> None:
    rollout.metrics({"stable": 0.0, "canary": 0.0})
    account = "shipml-canary"
    kubeconfig = rollout.cluster.token_kubeconfig(rollout.folder, rollout.namespace, account)
    _bind(rollout, account, VERBS[method])
    first = rollout.run(rollout.config("stable", method=method, kubeconfig=kubeconfig))
    assert first.returncode == 0, first.stdout + first.stderr
    promoted = rollout.run(rollout.config("canary", method=method, kubeconfig=kubeconfig),
                           output="canary")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert rollout.deployment("canary") is None
    stable = rollout.deployment("stable")
    assert stable is not None and stable["spec"]["replicas"] == 4
    assert stable["metadata"]["labels"]["shipml.dev/revision"] == revision(rollout.name, "canary")


@pytest.mark.parametrize(("kind", "verb"), [("Deployment", "delete"), ("Lease", "update"),
                                            ("Service", "create")])
def test_one_verb_less_is_exit_2_naming_it_before_anything_changes(rollout: Rollout, kind: str,
                                                                   verb: str) -> None:
    rollout.metrics({"stable": 0.0})
    account = "shipml-canary"
    kubeconfig = rollout.cluster.token_kubeconfig(rollout.folder, rollout.namespace, account)
    verbs = {name: tuple(v for v in allowed if (name, v) != (kind, verb))
             for name, allowed in VERBS["replicas"].items()}
    _bind(rollout, account, verbs)
    refused = rollout.run(rollout.config("stable", kubeconfig=kubeconfig))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    api_version, plural = RESOURCES[kind]
    group = api_version.rpartition("/")[0]
    named = f"{verb} {plural}" + (f".{group}" if group else "")
    assert f"may not {named} in namespace {rollout.namespace}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert rollout.deployment("stable") is None and rollout.lease() is None
