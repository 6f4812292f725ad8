"""Target ``kubernetes``: a :class:`~shipml.canary.targets.k8s_lease.LeaseStore` for the lock and the
state, a workload per kind of object that runs the revisions (two Deployments, or one KServe
InferenceService) and a router per traffic method (:mod:`shipml.canary.targets.k8s_routers`),
all over one :class:`~shipml.canary.targets.kube_api.KubeApi`. :func:`build` is the factory: the
one place that picks the parts for a method.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shipml.canary.engine import Revision
from shipml.canary.targets.base import Target
from shipml.canary.targets.k8s_lease import LeaseStore
from shipml.canary.targets.k8s_objects import (
    STABLE_IMAGE,
    STABLE_REVISION,
    check_method,
    shadow_config_map,
    shadow_url,
)
from shipml.canary.targets.k8s_routers import ROUTERS, KubeRouter
from shipml.canary.targets.kube_api import Conflict, KubeApi, object_path
from shipml.errors import ConfigError

__all__ = ["VERBS", "Conflict", "DeploymentWorkload", "InferenceServiceWorkload", "KubeApi",
           "build", "check_access", "check_method", "from_settings", "object_path"]


@dataclass
class KubeWorkload:
    """What both workloads share: the service's place, and the router that applies its
    objects (the revisions' objects carry the split, so the router writes them)."""

    api: KubeApi
    service: str
    namespace: str
    method: str
    router: KubeRouter

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

    def endpoints(self) -> dict[str, str]:
        """Return no direct URLs: the probe cannot reach pods from outside the cluster."""
        return {}

    def stable(self) -> Revision | None:
        """Return the revision that serves the traffic now (each workload reads its own)."""
        raise NotImplementedError

    def check_shadow(self, by: str) -> None:
        """Raise ConfigError unless the method keeps a canary with pods but no user traffic
        (istio, gateway-api): replicas puts every canary pod behind the service's one Service,
        and KServe routes its revisions itself."""
        if self.method not in SHADOW_METHODS:
            raise ConfigError(NO_SHADOW.format(method=self.method))

    def set_shadow(self, canary: Revision | None, sample: float, by: str) -> None:
        """Mirror ``sample`` of the stable's requests to ``canary`` (None: stop): ``by`` server,
        the ConfigMap the stable's pods read their shadow file from (kubelet brings a change to
        the pods within about a minute); ``by`` mesh, the route's own mirror."""
        self.check_shadow(by)
        target = None
        if canary is not None and by == "server":
            target = {"url": shadow_url(self.service, self.namespace, self.router.port),
                      "sample": sample, "revision": canary.revision}
        self.api.apply(shadow_config_map(self.service, self.namespace, target))
        mirror = sample if canary is not None and by == "mesh" else None
        if mirror != self.router.mirror:
            # at a shadow step the canary has weight 0; off, the route names the stable alone
            self.router.mirror = mirror
            self.router.apply(self.stable(), canary, 0)

    def _wait_ready(self, kind: str, name: str, minimum: int | None = None) -> None:
        self.router.wait_ready(kind, name, minimum)


#: the methods a shadow step runs on: a canary with pods of its own Service and no user traffic
SHADOW_METHODS = ("gateway-api", "istio")
NO_SHADOW = ("canary.steps: a shadow step needs a canary with pods but no user traffic; method "
             "{method} cannot keep one (valid for a shadow step: gateway-api, istio); drop the "
             "shadow step or change canary.target.kubernetes.method")


class DeploymentWorkload(KubeWorkload):
    """The revisions as Deployments ``SERVICE-stable`` and ``SERVICE-canary`` (methods replicas,
    gateway-api, istio)."""

    def stable(self) -> Revision | None:
        """Return the stable Deployment's revision, or None when there is none."""
        found = self.api.get("Deployment", self.namespace, f"{self.service}-stable")
        if found is None:
            return None
        container = found["spec"]["template"]["spec"]["containers"][0]
        return Revision(str(container["image"]),
                        str(found["metadata"].get("labels", {}).get("shipml.dev/revision", "")))

    def first_deploy(self, revision: Revision) -> None:
        """Apply the stable objects of ``revision`` with all traffic; wait until ready."""
        self.router.apply(revision, None, 0)
        self._wait_ready("Deployment", f"{self.service}-stable")

    def deploy_canary(self, revision: Revision) -> None:
        """Apply the canary's objects at weight 0 and wait until one of its pods is ready (when
        the method runs any at weight 0: replicas runs none yet)."""
        self._shadow_off()
        applied = self.router.apply(self.stable(), revision, 0)
        name = f"{self.service}-canary"
        if any(obj["kind"] == "Deployment" and obj["metadata"]["name"] == name
               and obj["spec"]["replicas"] > 0 for obj in applied):
            self._wait_ready("Deployment", name, minimum=1)

    def promote(self, canary: Revision) -> None:
        """Route all traffic to the canary once its pods are ready, roll the stable Deployment to
        its image, route all traffic back to the stable and remove the canary once the stable's
        pods are ready (method replicas scales the stable up only at that last step)."""
        self._shadow_off()
        self.router.set_weight(self.stable(), canary, 100)
        self.router.apply(canary, canary, 100)
        self._wait_ready("Deployment", f"{self.service}-stable")
        self.router.apply(canary, None, 0)
        self._wait_ready("Deployment", f"{self.service}-stable")
        self.api.delete("Deployment", self.namespace, f"{self.service}-canary")

    def rollback(self, canary: Revision) -> None:
        """Route all traffic to the stable and remove the canary."""
        self._shadow_off()
        self.router.apply(self.stable(), None, 0)
        self.api.delete("Deployment", self.namespace, f"{self.service}-canary")

    def _shadow_off(self) -> None:
        """Empty the stable's shadow ConfigMap (gateway-api, istio) whatever plan this command
        was given: nothing mirrors to a canary that goes, or that has not reached a shadow step
        (a rollout aborted with a plan without its shadow step would leave it mirroring)."""
        if self.method in SHADOW_METHODS:
            self.api.apply(shadow_config_map(self.service, self.namespace, None))


class InferenceServiceWorkload(KubeWorkload):
    """The revisions as one KServe InferenceService ``SERVICE`` (method kserve): KServe keeps the
    last ready revision as the stable and starts the canary itself."""

    def stable(self) -> Revision | None:
        """Return the stable the InferenceService keeps while a canary is rolled out, else its
        predictor's revision; None when there is no InferenceService."""
        found = self.api.get("InferenceService", self.namespace, self.service)
        if found is None:
            return None
        annotations = found["metadata"].get("annotations") or {}
        if annotations.get(STABLE_IMAGE) and annotations.get(STABLE_REVISION):
            return Revision(str(annotations[STABLE_IMAGE]),
                            str(annotations[STABLE_REVISION]))
        container = found["spec"]["predictor"]["containers"][0]
        return Revision(str(container["image"]), str(annotations.get("shipml.dev/revision", "")))

    def first_deploy(self, revision: Revision) -> None:
        """Apply the InferenceService of ``revision``; wait until it is Ready."""
        self.router.apply(revision, None, 0)
        self._wait_ready("InferenceService", self.service)

    def deploy_canary(self, revision: Revision) -> None:
        """Do nothing: KServe starts the canary revision when canaryTrafficPercent is first set."""

    def promote(self, canary: Revision) -> None:
        """Give the canary all traffic (KServe then drops the old revision); wait until Ready."""
        self.router.apply(None, canary, 100)
        self._wait_ready("InferenceService", self.service)

    def rollback(self, canary: Revision) -> None:
        """Put the stable's image back with all traffic."""
        stable = self.stable()
        if stable is not None:
            self.router.apply(stable, None, 0)


#: the workload each traffic method runs its revisions as
WORKLOADS: Mapping[str, type[DeploymentWorkload] | type[InferenceServiceWorkload]] = {
    "replicas": DeploymentWorkload, "gateway-api": DeploymentWorkload,
    "istio": DeploymentWorkload, "kserve": InferenceServiceWorkload,
}


#: what the target does to each kind, by method: the Role it needs (docs/guide/kubernetes.md);
#: a server-side apply that creates its object needs create as well as patch
_LEASE = {"Lease": ("get", "create", "update")}
_DEPLOYMENTS = {"Deployment": ("get", "create", "patch", "delete"),
                "Service": ("create", "patch")}
#: the shadow step's ConfigMap (gateway-api and istio keep canary pods without user traffic)
_SHADOW = {"ConfigMap": ("create", "patch")}
VERBS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "replicas": {**_LEASE, **_DEPLOYMENTS},
    "gateway-api": {**_LEASE, **_DEPLOYMENTS, **_SHADOW,
                    "HTTPRoute": ("get", "create", "patch")},
    "istio": {**_LEASE, **_DEPLOYMENTS, **_SHADOW, "DestinationRule": ("create", "patch"),
              "VirtualService": ("get", "create", "patch")},
    "kserve": {**_LEASE, "InferenceService": ("get", "create", "patch")},
}
DENIED = ("the Kubernetes credentials may not {denied} in namespace {namespace}; method {method} "
          "needs the Role in docs/guide/kubernetes.md (nothing was changed)")


def check_access(api: KubeApi, namespace: str, method: str) -> None:
    """Return when the credentials may do all that ``method`` does in ``namespace``; raise
    ConfigError naming each verb and resource they may not, before anything is changed."""
    denied = api.denied(namespace, VERBS[method])
    if denied:
        raise ConfigError(DENIED.format(denied=", ".join(denied), namespace=namespace,
                                        method=method))


def build(service: str, api: KubeApi, *, method: str, namespace: str, replicas: int, port: int,
          gateway: str | None, hosts: tuple[str, ...], ready_timeout_s: float,
          poll_s: float = 1.0) -> Target:
    """Return the target of ``service`` on the cluster behind ``api``: the Lease store, the
    workload and the router of ``method`` (a valid method: see ``check_method``)."""
    router = ROUTERS[method](api=api, service=service, namespace=namespace, replicas=replicas,
                             port=port, gateway=gateway, hosts=hosts,
                             ready_timeout_s=ready_timeout_s, poll_s=poll_s)
    workload = WORKLOADS[method](api=api, service=service, namespace=namespace, method=method,
                                 router=router)
    return Target(service=service, store=LeaseStore(api, service, namespace), workload=workload,
                  router=router)


def from_settings(service: str, settings: Mapping[str, Any], where: Any) -> Target:
    """Return the target of ``canary.target.kubernetes``; raise ConfigError for an unknown
    method, when there is no API to talk to, or when its credentials may not do all the method
    does (:func:`check_access`)."""
    method = check_method(str(settings["method"]),
                          where("canary", "target", "kubernetes", "method"))
    api = KubeApi.connect(settings.get("api_server"), str(settings["token_env"]),
                          bool(settings["verify_tls"]))
    check_access(api, str(settings["namespace"]), method)
    return build(service, api, method=method, namespace=str(settings["namespace"]),
                 replicas=int(settings["replicas"]), port=int(settings["port"]),
                 gateway=settings.get("gateway"), hosts=tuple(settings.get("hosts") or ()),
                 ready_timeout_s=float(settings["ready_timeout_s"]))
