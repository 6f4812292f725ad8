"""Target ``kubernetes``: the objects of :mod:`shipml.canary.targets.k8s_objects`, each validated
against its official schema, sent through the official client's ``ApiClient`` with server-side
apply (``PATCH …?fieldManager=shipml&force=true``, ``application/apply-patch+yaml``).

The lock and the state live in one ``coordination.k8s.io/v1`` Lease, ``SERVICE-canary``: its
``holderIdentity``/``renewTime`` are the lock, the annotation ``shipml.dev/canary-state`` the
rollout state. It is created with POST (409: someone else holds it) and updated with PUT carrying
its ``resourceVersion`` (409: it changed under us), so two runs cannot both take it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shipml.canary.engine import Revision, RolloutState
from shipml.canary.lock import Lock, may_take, refuse
from shipml.canary.targets import k8s_objects as objects
from shipml.canary.targets.k8s_objects import STATE_ANNOTATION, check_method
from shipml.errors import ConfigError, InfrastructureError

FIELD_MANAGER = "shipml"
APPLY = "application/apply-patch+yaml"
#: (api group/version, plural, namespaced) of every kind the target touches
RESOURCES: Mapping[str, tuple[str, str]] = {
    "Deployment": ("apps/v1", "deployments"),
    "Service": ("v1", "services"),
    "Lease": ("coordination.k8s.io/v1", "leases"),
    "HTTPRoute": ("gateway.networking.k8s.io/v1", "httproutes"),
    "DestinationRule": ("networking.istio.io/v1", "destinationrules"),
    "VirtualService": ("networking.istio.io/v1", "virtualservices"),
    "InferenceService": ("serving.kserve.io/v1beta1", "inferenceservices"),
}
__all__ = ["Conflict", "KubeApi", "KubernetesTarget", "check_method"]


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
        (forcing ownership of the fields it sets); return what the API server stored."""
        problems = objects.validate(obj)
        if problems:
            raise ConfigError("shipml built an object its schema refuses (a bug or a bad "
                              "setting): " + "; ".join(problems))
        meta = obj["metadata"]
        status, document = self._call(
            "PATCH", object_path(str(obj["kind"]), meta["namespace"], meta["name"]),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")], body=dict(obj),
            content_type=APPLY)
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


@dataclass
class KubernetesTarget:
    """A service on a cluster, traffic split by ``method``."""

    service: str
    api: KubeApi
    method: str
    namespace: str
    replicas: int
    port: int
    gateway: str | None
    hosts: tuple[str, ...]
    ready_timeout_s: float
    poll_s: float = 1.0
    _lease_version: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, service: str, settings: Mapping[str, Any], where: Any
                      ) -> KubernetesTarget:
        """Return the target of ``canary.target.kubernetes``."""
        method = check_method(str(settings["method"]),
                              where("canary", "target", "kubernetes", "method"))
        api = KubeApi.connect(settings.get("api_server"), str(settings["token_env"]),
                              bool(settings["verify_tls"]))
        return cls(service=service, api=api, method=method, namespace=str(settings["namespace"]),
                   replicas=int(settings["replicas"]), port=int(settings["port"]),
                   gateway=settings.get("gateway"), hosts=tuple(settings.get("hosts") or ()),
                   ready_timeout_s=float(settings["ready_timeout_s"]))

    def describe(self) -> str:
        """Return how messages name this target."""
        return f"kubernetes {self.method} service {self.namespace}/{self.service}"

    def resolve(self, image: str) -> Revision:
        """Return the revision of ``image`` pinned to its digest (``REPOSITORY@sha256:…``, what
        every pod spec names; a tag is resolved once, in its registry), labelled by the digest's
        first 12 hex digits. Raises ConfigError when the registry has no such image, and
        InfrastructureError when it cannot be reached."""
        from shipml.oci import Reference, RegistryClient, RegistryOptions

        reference = Reference.parse(image, "canary.image")
        digest = reference.digest
        if not digest:
            digest = RegistryClient(reference.registry, RegistryOptions()).resolve(reference)
        pinned = reference.with_digest(digest)
        label = digest.split(":", 1)[1][:12]
        return Revision(image=str(pinned), revision=f"{self.service}-{label}")

    # --- the Lease: lock and state ----------------------------------------------------------

    def _lease(self) -> dict[str, Any] | None:
        found = self.api.get("Lease", self.namespace, f"{self.service}-canary")
        if found is not None:
            self._lease_version = str(found["metadata"].get("resourceVersion") or "") or None
        return found

    def acquire(self, lock: Lock, now: float) -> None:
        """Take or renew the Lease; raise LockHeld naming a live holder."""
        for _ in range(3):
            current = self._lease()
            if current is None:
                try:
                    created = self.api.create(objects.lease(
                        self.service, self.namespace, _holder(lock), int(lock.lease_s),
                        _micro_time(now), None, None))
                except Conflict:
                    continue
                self._lease_version = created["metadata"].get("resourceVersion")
                return
            held = _lock_of(current)
            if held is not None and not may_take(held, lock, now):
                raise refuse(self.service, held, now)
            try:
                self._put_lease(current, holder=_holder(lock), lease_s=int(lock.lease_s),
                                renewed=_micro_time(now))
                return
            except Conflict:
                continue
        raise InfrastructureError(f"the Lease {self.namespace}/{self.service}-canary kept "
                                  "changing; could not take it in 3 tries")

    def release(self, lock: Lock) -> None:
        """Clear the Lease's holder when it is us."""
        current = self._lease()
        held = _lock_of(current) if current is not None else None
        if current is not None and held is not None and held.host == lock.host \
                and held.pid == lock.pid:
            try:
                self._put_lease(current, holder=None, lease_s=int(lock.lease_s), renewed=None)
            except Conflict:
                pass

    def read_state(self) -> RolloutState | None:
        """Return the state in the Lease's annotation, or None."""
        current = self._lease()
        text = ((current or {}).get("metadata", {}).get("annotations") or {}).get(STATE_ANNOTATION)
        if not text:
            return None
        source = f"Lease {self.namespace}/{self.service}-canary annotation {STATE_ANNOTATION}"
        try:
            record = json.loads(text)
        except ValueError:
            raise ConfigError(f"{source} is not JSON") from None
        return RolloutState.from_dict(record, source)

    def write_state(self, state: RolloutState) -> None:
        """Write the state into the Lease's annotation, keeping the holder."""
        current = self._lease()
        if current is None:
            raise InfrastructureError(f"the Lease {self.namespace}/{self.service}-canary is gone")
        spec = current.get("spec") or {}
        self._put_lease(current, holder=spec.get("holderIdentity"),
                        lease_s=int(spec.get("leaseDurationSeconds") or 60),
                        renewed=spec.get("renewTime"), state=state.to_dict())

    def _put_lease(self, current: Mapping[str, Any], *, holder: str | None, lease_s: int,
                   renewed: str | None, state: Mapping[str, Any] | None = None) -> None:
        if state is None:
            text = ((current.get("metadata") or {}).get("annotations") or {}).get(STATE_ANNOTATION)
            state = json.loads(text) if text else None
        version = str(current["metadata"].get("resourceVersion") or "") or None
        stored = self.api.replace(objects.lease(self.service, self.namespace, holder, lease_s,
                                                renewed, state, version))
        self._lease_version = stored["metadata"].get("resourceVersion")

    # --- traffic ----------------------------------------------------------------------------

    def stable(self) -> Revision | None:
        """Return the stable revision from the cluster (the stable Deployment, or the
        InferenceService's predictor)."""
        if self.method == "kserve":
            found = self.api.get("InferenceService", self.namespace, self.service)
            if found is None:
                return None
            container = found["spec"]["predictor"]["containers"][0]
            revision = found["metadata"].get("annotations", {}).get("shipml.dev/revision", "")
            return Revision(str(container["image"]), str(revision))
        found = self.api.get("Deployment", self.namespace, f"{self.service}-stable")
        if found is None:
            return None
        container = found["spec"]["template"]["spec"]["containers"][0]
        return Revision(str(container["image"]),
                        str(found["metadata"].get("labels", {}).get("shipml.dev/revision", "")))

    def _canary(self) -> Revision | None:
        state = self.read_state()
        return state.canary if state is not None and not state.final else None

    def _apply_all(self, stable: Revision | None, canary: Revision | None, weight: int) -> None:
        for obj in objects.traffic_objects(
                self.method, self.service, self.namespace,
                stable=(stable.image, stable.revision) if stable else None,
                canary=(canary.image, canary.revision) if canary else None,
                weight=weight, replicas=self.replicas, port=self.port, gateway=self.gateway,
                hosts=self.hosts):
            self.api.apply(obj)

    def first_deploy(self, revision: Revision) -> None:
        """Apply the stable objects of ``revision`` with all traffic; wait until ready."""
        self._apply_all(revision, None, 0)
        self._wait_ready("stable" if self.method != "kserve" else None)

    def deploy_canary(self, revision: Revision) -> None:
        """Apply the canary's objects at weight 0 and wait until its pods are ready."""
        stable = self.stable()
        if self.method == "kserve":
            return  # KServe starts the canary revision when canaryTrafficPercent is first set
        self._apply_all(stable, revision, 0)
        if self.method != "replicas":  # at weight 0 the replicas method runs no canary pod yet
            self._wait_ready("canary", minimum=1)

    def set_weight(self, weight: int) -> None:
        """Apply the traffic objects for ``weight``."""
        stable, canary = self.stable(), self._pending_canary()
        self._apply_all(stable, canary, weight)
        if self.method == "kserve":
            self._wait_ready(None)
        elif canary is not None and weight > 0:
            self._wait_ready("canary")

    def _pending_canary(self) -> Revision | None:
        state = self.read_state()
        return state.canary if state is not None else None

    def promote(self) -> None:
        """Route all traffic to the canary, roll the stable Deployment to its image, route all
        traffic back to the stable and remove the canary."""
        canary = self._pending_canary()
        if canary is None:
            return
        if self.method == "kserve":
            self._apply_all(None, canary, 100)
            self._wait_ready(None)
            return
        stable = self.stable()
        self._apply_all(stable, canary, 100)
        self._apply_all(canary, canary, 100)
        self._wait_ready("stable")
        self._apply_all(canary, None, 0)
        self.api.delete("Deployment", self.namespace, f"{self.service}-canary")

    def rollback(self) -> None:
        """Route all traffic to the stable and remove the canary."""
        stable = self.stable()
        if self.method == "kserve":
            if stable is not None:
                self._apply_all(stable, None, 0)
            return
        self._apply_all(stable, None, 0)
        self.api.delete("Deployment", self.namespace, f"{self.service}-canary")

    def endpoints(self) -> dict[str, str]:
        """Return no direct URLs: the probe cannot reach pods from outside the cluster."""
        return {}

    def _wait_ready(self, track: str | None, minimum: int | None = None) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        kind, name = (("InferenceService", self.service) if track is None
                      else ("Deployment", f"{self.service}-{track}"))
        while True:
            found = self.api.get(kind, self.namespace, name)
            if found is not None and _ready(found, minimum):
                return
            if time.monotonic() >= deadline:
                raise InfrastructureError(f"{kind} {self.namespace}/{name} did not become ready "
                                          f"within {self.ready_timeout_s:g}s")
            time.sleep(self.poll_s)


def _ready(found: Mapping[str, Any], minimum: int | None) -> bool:
    status = found.get("status") or {}
    if found.get("kind") == "InferenceService":
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in status.get("conditions") or [])
    wanted = minimum if minimum is not None else int((found.get("spec") or {}).get("replicas", 1))
    return int(status.get("readyReplicas") or 0) >= wanted and \
        int(status.get("observedGeneration") or 0) >= int(
            (found.get("metadata") or {}).get("generation") or 0)


def _holder(lock: Lock) -> str:
    return json.dumps({"holder": lock.holder, "host": lock.host, "pid": lock.pid},
                      sort_keys=True)


def _lock_of(lease: Mapping[str, Any]) -> Lock | None:
    spec = lease.get("spec") or {}
    identity, renewed = spec.get("holderIdentity"), spec.get("renewTime")
    if not identity or not renewed:
        return None
    try:
        who = json.loads(identity)
        at = _dt.datetime.strptime(renewed, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=_dt.timezone.utc).timestamp()
    except (ValueError, TypeError):
        return None
    return Lock.from_dict({**who, "renewed_at": at,
                           "lease_s": spec.get("leaseDurationSeconds") or 0})


def _micro_time(now: float) -> str:
    return _dt.datetime.fromtimestamp(now, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
