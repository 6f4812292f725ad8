"""The Kubernetes API as the kubernetes target uses it: the official client's ``ApiClient``, every
object validated against its official schema before it is sent, applied server-side
(``PATCH …?fieldManager=shipml``, ``application/apply-patch+yaml``, never forced: a field
another manager owns is exit 2 naming it), created with POST
and replaced with PUT carrying its ``resourceVersion`` (409: :class:`Conflict`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from shipml.canary.targets import k8s_objects as objects
from shipml.errors import ConfigError, InfrastructureError

FIELD_MANAGER = "shipml"
APPLY = "application/apply-patch+yaml"
#: (api group/version, plural, namespaced) of every kind the target touches
RESOURCES: Mapping[str, tuple[str, str]] = {
    "Deployment": ("apps/v1", "deployments"),
    "Service": ("v1", "services"),
    "ConfigMap": ("v1", "configmaps"),
    "Lease": ("coordination.k8s.io/v1", "leases"),
    "HTTPRoute": ("gateway.networking.k8s.io/v1", "httproutes"),
    "DestinationRule": ("networking.istio.io/v1", "destinationrules"),
    "VirtualService": ("networking.istio.io/v1", "virtualservices"),
    "InferenceService": ("serving.kserve.io/v1beta1", "inferenceservices"),
}


#: a server-side apply met fields another field manager owns (the API server's message names the
#: manager and each field)
FIELD_CONFLICT = ("the Kubernetes API refused {kind}/{name}: {message}. shipml manages this "
                  "object but does not take fields over from another field manager: undo that "
                  "change, or hand the fields back (kubectl apply --server-side "
                  "--field-manager=shipml --force-conflicts), then run again")


class Conflict(Exception):
    """The API server answered 409: the object exists, or changed since we read it."""


def object_path(kind: str, namespace: str, name: str | None = None) -> str:
    """Return the REST path of ``kind`` in ``namespace`` (the collection when ``name`` is None)."""
    api_version, plural = RESOURCES[kind]
    root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{root}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


class KubeApi:
    """The few calls the target makes, over the official client's ``ApiClient``."""

    def __init__(self, api_client: Any, timeout_s: float = 30.0) -> None:
        self.api_client = api_client
        self.timeout_s = timeout_s

    @classmethod
    def connect(cls, api_server: str | None, token_env: str, verify_tls: bool) -> KubeApi:
        """Return a client for ``api_server`` (bearer token from ``token_env``), or for the
        in-cluster service account, else the current kubeconfig context."""
        from kubernetes import client, config

        if api_server:
            configuration = client.Configuration(host=api_server.rstrip("/"))
            token = os.environ.get(token_env, "")
            if token:
                configuration.api_key = {"BearerToken": token}
                configuration.api_key_prefix = {"BearerToken": "Bearer"}
            configuration.verify_ssl = verify_tls
            return cls(client.ApiClient(configuration))
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            try:
                config.load_kube_config()  # type: ignore[no-untyped-call]
            except (config.ConfigException, OSError) as exc:
                raise ConfigError("no Kubernetes API to talk to: set canary.target.kubernetes."
                                  f"api_server, run in a cluster, or provide a kubeconfig ({exc})"
                                  ) from None
        return cls(client.ApiClient())

    def _call(self, method: str, path: str, *, query: Sequence[tuple[str, str]] = (),
              body: Any = None, content_type: str = "application/json") -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        serialized = self.api_client.param_serialize(
            method=method, resource_path=path, query_params=list(query), header_params=headers,
            body=body, auth_settings=["BearerToken"])
        try:
            response = self.api_client.call_api(*serialized, _request_timeout=self.timeout_s)
            response.read()
        except Exception as exc:  # urllib3 and the client wrap connection errors differently
            raise InfrastructureError(f"the Kubernetes API at {self.api_client.configuration.host}"
                                      f" did not answer {method} {path}: {exc}") from None
        text = response.data.decode() if response.data else ""
        try:
            document = json.loads(text) if text else None
        except ValueError:
            document = text
        return int(response.status), document

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """Return the object, or None when the API server answers 404."""
        status, document = self._call("GET", object_path(kind, namespace, name))
        if status == 404:
            return None
        self._check(status, document, "GET", kind, name)
        return dict(document)

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``obj`` against its schema, then server-side apply it as field manager shipml
        (never forcing: a field another manager owns is theirs); return what the API server
        stored. Raises ConfigError naming the other manager and its fields on a conflict."""
        problems = objects.validate(obj)
        if problems:
            raise ConfigError("shipml built an object its schema refuses (a bug or a bad "
                              "setting): " + "; ".join(problems))
        meta = obj["metadata"]
        status, document = self._call(
            "PATCH", object_path(str(obj["kind"]), meta["namespace"], meta["name"]),
            query=[("fieldManager", FIELD_MANAGER)], body=dict(obj), content_type=APPLY)
        if status == 409:
            message = document.get("message") if isinstance(document, dict) else document
            raise ConfigError(FIELD_CONFLICT.format(kind=obj["kind"], name=meta["name"],
                                                    message=message))
        self._check(status, document, "PATCH", str(obj["kind"]), meta["name"])
        return dict(document)

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create ``obj``; raise Conflict when it exists."""
        problems = objects.validate(obj)
        if problems:
            raise ConfigError("; ".join(problems))
        meta = obj["metadata"]
        status, document = self._call("POST", object_path(str(obj["kind"]), meta["namespace"]),
                                      query=[("fieldManager", FIELD_MANAGER)], body=dict(obj))
        if status == 409:
            raise Conflict(str(meta["name"]))
        self._check(status, document, "POST", str(obj["kind"]), meta["name"])
        return dict(document)

    def replace(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Replace ``obj`` (its ``resourceVersion`` set); raise Conflict when it changed."""
        problems = objects.validate(obj)
        if problems:
            raise ConfigError("; ".join(problems))
        meta = obj["metadata"]
        status, document = self._call(
            "PUT", object_path(str(obj["kind"]), meta["namespace"], meta["name"]),
            query=[("fieldManager", FIELD_MANAGER)], body=dict(obj))
        if status == 409:
            raise Conflict(str(meta["name"]))
        self._check(status, document, "PUT", str(obj["kind"]), meta["name"])
        return dict(document)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete the object; a 404 means it is gone already."""
        status, document = self._call("DELETE", object_path(kind, namespace, name))
        if status != 404:
            self._check(status, document, "DELETE", kind, name)

    def denied(self, namespace: str, wanted: Mapping[str, Sequence[str]]) -> list[str]:
        """Return each ``verb kind`` of ``wanted`` (verbs by kind) these credentials may not do
        in ``namespace``, as the API server's authorizer answers a SelfSubjectAccessReview;
        empty when all are allowed. Raises InfrastructureError when it does not answer."""
        refused = []
        for kind, verbs in wanted.items():
            api_version, plural = RESOURCES[kind]
            group = api_version.rpartition("/")[0]
            for verb in verbs:
                review = {"apiVersion": "authorization.k8s.io/v1",
                          "kind": "SelfSubjectAccessReview",
                          "spec": {"resourceAttributes": {"namespace": namespace, "verb": verb,
                                                          "group": group, "resource": plural}}}
                status, document = self._call(
                    "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review)
                self._check(status, document, "POST", "SelfSubjectAccessReview", verb)
                if not (document.get("status") or {}).get("allowed"):
                    refused.append(f"{verb} {plural}" + (f".{group}" if group else ""))
        return refused

    def _check(self, status: int, document: Any, method: str, kind: str, name: str) -> None:
        if 200 <= status < 300:
            return
        message = document.get("message") if isinstance(document, dict) else document
        if status in (401, 403):
            raise ConfigError(f"the Kubernetes API refused {method} {kind}/{name} ({status}): "
                              f"{message}; the credentials need get, create, update, patch and "
                              "delete on it")
        if status in (400, 422):
            raise ConfigError(f"the Kubernetes API refused {kind}/{name} ({status}): {message}")
        raise InfrastructureError(f"the Kubernetes API answered {status} to {method} "
                                  f"{kind}/{name}: {message}")


def wait_ready(api: KubeApi, kind: str, namespace: str, name: str, *, timeout_s: float,
               poll_s: float, minimum: int | None = None) -> None:
    """Return once the Deployment has ``minimum`` ready pods (all it asks for when None) of its
    latest pod template, and, when all, no pod of an older one left (what ``kubectl rollout
    status`` waits for), or once the InferenceService is Ready; raise InfrastructureError after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = api.get(kind, namespace, name)
        if found is not None and _ready(found, minimum):
            return
        if time.monotonic() >= deadline:
            raise InfrastructureError(f"{kind} {namespace}/{name} did not become ready within "
                                      f"{timeout_s:g}s")
        time.sleep(poll_s)


def _ready(found: Mapping[str, Any], minimum: int | None) -> bool:
    status = found.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(
            (found.get("metadata") or {}).get("generation") or 0):
        return False  # the controller has not seen the latest spec yet: its Ready is stale
    if found.get("kind") == "InferenceService":
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in status.get("conditions") or [])
    wanted = minimum if minimum is not None else int((found.get("spec") or {}).get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    # readyReplicas counts the pods of the old template too: while a rolling update runs, the old
    # pods alone would make a Deployment of the new image look ready
    ready = min(updated, int(status.get("readyReplicas") or 0))
    old_left = int(status.get("replicas") or 0) > updated
    return ready >= wanted and not (minimum is None and old_left)
