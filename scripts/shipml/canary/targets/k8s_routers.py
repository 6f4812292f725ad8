"""The kubernetes target's traffic routers, one per method (``canary.target.kubernetes.method``),
each applying the objects of :mod:`shipml.canary.targets.k8s_objects` that carry its split:

- ``replicas``: the canary's share of the pods of two Deployments behind one Service;
- ``gateway-api``: an HTTPRoute's backendRefs weights;
- ``istio``: a VirtualService's route weights;
- ``kserve``: an InferenceService's ``canaryTrafficPercent``.

:data:`ROUTERS` is the factory's table (Flagger's ``router.Factory``): the one place that knows
which class serves which method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shipml.canary.engine import Revision
from shipml.canary.targets import k8s_objects as objects
from shipml.canary.targets.kube_api import KubeApi, wait_ready


@dataclass
class KubeRouter:
    """What every method's router shares: the API, where the service runs, and how it is
    served. A subclass says which objects a split is made of, and what is ready after it."""

    api: KubeApi
    service: str
    namespace: str
    replicas: int
    port: int
    gateway: str | None
    hosts: tuple[str, ...]
    ready_timeout_s: float
    poll_s: float = 1.0
    #: the share of requests the mesh mirrors to the canary (a shadow step ``shadow_by: mesh``;
    #: None: no mirror), carried by the objects of istio and gateway-api
    mirror: float | None = None

    def objects(self, stable: Revision | None, canary: Revision | None, weight: int
                ) -> list[dict[str, Any]]:
        """Return the objects that send ``weight`` percent to ``canary`` (pure); raise
        ConfigError when a setting the method needs is missing."""
        raise NotImplementedError

    def settle(self, canary: Revision | None, weight: int) -> None:
        """Return once the revisions a split at ``weight`` sends traffic to are ready; raise
        InfrastructureError when they do not become ready in time."""
        raise NotImplementedError

    def weights(self) -> dict[str, int]:
        """Return each revision's weight as the cluster has it now, by revision."""
        raise NotImplementedError

    def apply(self, stable: Revision | None, canary: Revision | None, weight: int
              ) -> list[dict[str, Any]]:
        """Server-side apply the objects of the split, in order; return them."""
        built = self.objects(stable, canary, weight)
        for obj in built:
            self.api.apply(obj)
        return built

    def set_weight(self, stable: Revision | None, canary: Revision | None, weight: int) -> None:
        """Apply the split and return once it serves (see :meth:`settle`)."""
        self.apply(stable, canary, weight)
        self.settle(canary, weight)

    def wait_ready(self, kind: str, name: str, minimum: int | None = None) -> None:
        """Return once ``kind``/``name`` is ready (see :func:`wait_ready`)."""
        wait_ready(self.api, kind, self.namespace, name, timeout_s=self.ready_timeout_s,
                   poll_s=self.poll_s, minimum=minimum)

    def _build(self, builder: Callable[..., list[dict[str, Any]]], stable: Revision | None,
               canary: Revision | None, weight: int) -> list[dict[str, Any]]:
        return builder(
            self.service, self.namespace, stable=_pair(stable), canary=_pair(canary),
            weight=weight, replicas=self.replicas, port=self.port, gateway=self.gateway,
            hosts=self.hosts, mirror=self.mirror if canary is not None else None)


class _DeploymentsRouter(KubeRouter):
    """A method over the two Deployments ``SERVICE-stable`` and ``SERVICE-canary``."""

    def settle(self, canary: Revision | None, weight: int) -> None:
        """Return once the canary's pods are ready, when it gets traffic."""
        if canary is not None and weight > 0:
            self.wait_ready("Deployment", f"{self.service}-canary")

    def _tracks(self) -> dict[str, dict[str, Any]]:
        """Return the Deployment of each track that exists, by track."""
        found = {track: self.api.get("Deployment", self.namespace, f"{self.service}-{track}")
                 for track in ("stable", "canary")}
        return {track: deployment for track, deployment in found.items() if deployment}

    def _by_revision(self, by_track: Mapping[str, int]) -> dict[str, int]:
        tracks = self._tracks()
        return {_revision_label(tracks[track]): weight for track, weight in by_track.items()
                if track in tracks}


class ReplicasRouter(_DeploymentsRouter):
    """Method ``replicas``: the weight is the canary's share of the pods."""

    def objects(self, stable: Revision | None, canary: Revision | None, weight: int
                ) -> list[dict[str, Any]]:
        """Return the two Deployments sized by the weight and their Service."""
        return self._build(objects.replicas_objects, stable, canary, weight)

    def weights(self) -> dict[str, int]:
        """Return each revision's share of the pods, in percent."""
        pods = {_revision_label(found): int(found["spec"].get("replicas") or 0)
                for found in self._tracks().values()}
        total = sum(pods.values())
        return {revision: round(100 * count / total) for revision, count in pods.items()} \
            if total else {}


class GatewayApiRouter(_DeploymentsRouter):
    """Method ``gateway-api``: an HTTPRoute's backendRefs carry the weights."""

    def objects(self, stable: Revision | None, canary: Revision | None, weight: int
                ) -> list[dict[str, Any]]:
        """Return the Deployments, a Service per track and the HTTPRoute."""
        return self._build(objects.gateway_api_objects, stable, canary, weight)

    def weights(self) -> dict[str, int]:
        """Return the HTTPRoute's backendRefs weights, by the revision of their Deployment."""
        route = self.api.get("HTTPRoute", self.namespace, self.service)
        refs = [ref for rule in ((route or {}).get("spec") or {}).get("rules") or []
                for ref in rule.get("backendRefs") or []]
        prefix = f"{self.service}-"
        return self._by_revision({str(ref["name"]).removeprefix(prefix): int(ref.get("weight", 1))
                                  for ref in refs})


class IstioRouter(_DeploymentsRouter):
    """Method ``istio``: a VirtualService's route destinations carry the weights."""

    def objects(self, stable: Revision | None, canary: Revision | None, weight: int
                ) -> list[dict[str, Any]]:
        """Return the Deployments, their Service, the DestinationRule and the VirtualService."""
        return self._build(objects.istio_objects, stable, canary, weight)

    def weights(self) -> dict[str, int]:
        """Return the VirtualService's route weights, by the revision of their subset."""
        virtual = self.api.get("VirtualService", self.namespace, self.service)
        routes = [route for http in ((virtual or {}).get("spec") or {}).get("http") or []
                  for route in http.get("route") or []]
        return self._by_revision({str(route["destination"].get("subset")):
                                  int(route.get("weight", 0)) for route in routes})


class KServeRouter(KubeRouter):
    """Method ``kserve``: the InferenceService's ``canaryTrafficPercent`` is the weight (KServe
    keeps the last ready revision as the stable)."""

    def objects(self, stable: Revision | None, canary: Revision | None, weight: int
                ) -> list[dict[str, Any]]:
        """Return the InferenceService."""
        return self._build(objects.kserve_objects, stable, canary, weight)

    def settle(self, canary: Revision | None, weight: int) -> None:
        """Return once the InferenceService is Ready."""
        self.wait_ready("InferenceService", self.service)

    def weights(self) -> dict[str, int]:
        """Return the latest revision's ``canaryTrafficPercent`` (100 when unset); KServe names
        the revision it keeps as the stable itself, so only the latest is known by ours."""
        found = self.api.get("InferenceService", self.namespace, self.service)
        if found is None:
            return {}
        percent = found["spec"]["predictor"].get("canaryTrafficPercent")
        revision = (found["metadata"].get("annotations") or {}).get("shipml.dev/revision", "")
        return {str(revision): 100 if percent is None else int(percent)}


#: the router of each traffic method
ROUTERS: Mapping[str, type[KubeRouter]] = {
    "replicas": ReplicasRouter, "gateway-api": GatewayApiRouter, "istio": IstioRouter,
    "kserve": KServeRouter,
}


def _revision_label(deployment: Mapping[str, Any]) -> str:
    return str((deployment.get("metadata") or {}).get("labels", {}).get("shipml.dev/revision", ""))


def _pair(revision: Revision | None) -> tuple[str, str] | None:
    return (revision.image, revision.revision) if revision is not None else None
