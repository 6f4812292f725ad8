"""The Kubernetes objects of each traffic method, as data (pure), and their validation against
the official schemas: kubernetes-validate for core kinds, the upstream CRDs' openAPIV3Schema for
HTTPRoute, VirtualService, DestinationRule and InferenceService.

Methods:

- ``replicas``: Deployments ``S-stable`` and ``S-canary`` behind one Service ``S`` (selector
  ``app: S``); the weight is the canary's share of ``replicas`` pods;
- ``gateway-api``: the two Deployments, a Service per track, an HTTPRoute ``S`` whose
  backendRefs carry the weights;
- ``istio``: the two Deployments behind Service ``S``, a DestinationRule with subsets ``stable`` and
  ``canary``, a VirtualService whose route destinations carry the weights;
- ``kserve``: one InferenceService ``S`` whose predictor runs the image; ``canaryTrafficPercent``
  is the weight (KServe keeps the last ready revision as the stable).

Shadow steps (``gateway-api`` and ``istio``): the stable's pods mount the ConfigMap
``S-shadow`` read-only and mirror a share of ``/predict`` to the Service ``S-canary`` as its
``shadow.json`` says (``shadow_by: server``); or the mesh mirrors (``shadow_by: mesh``): the
VirtualService's ``mirror``/``mirrorPercentage``, the HTTPRoute's ``RequestMirror`` filter.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from shipml.canary.targets.base import serving_environment
from shipml.errors import ConfigError, did_you_mean

#: a folder of upstream CRDs in the layout of shipml/canary/crds, instead of the shipped copies
CRD_DIR_ENV = "SHIPML_K8S_SCHEMAS"
_CRD_FILES = {
    ("gateway.networking.k8s.io", "HTTPRoute"): "gateway-api/gateway.networking.k8s.io_httproutes.yaml",
    ("networking.istio.io", "VirtualService"): "istio/virtualservices.networking.istio.io.yaml",
    ("networking.istio.io", "DestinationRule"): "istio/destinationrules.networking.istio.io.yaml",
    ("serving.kserve.io", "InferenceService"): "kserve/serving.kserve.io_inferenceservices.yaml",
}
STATE_ANNOTATION = "shipml.dev/canary-state"
#: the stable's image and revision on an InferenceService while its predictor is the canary's
STABLE_IMAGE = "shipml.dev/stable-image"
STABLE_REVISION = "shipml.dev/stable-revision"
#: where the stable's pods have the shadow ConfigMap, read-only
SHADOW_MOUNT = "/etc/shipml/shadow"
SHADOW_FILE = "shadow.json"
MANAGED_BY = {"app.kubernetes.io/managed-by": "shipml"}


def check_method(method: str, where: str) -> str:
    """Return ``method`` when it is a traffic method; raise ConfigError listing the valid ones."""
    if method not in METHODS:
        raise ConfigError(f"{where}: unknown traffic method {method!r}; valid: "
                          f"{', '.join(METHODS)}{did_you_mean(method, METHODS)}")
    return method


def canary_replicas(total: int, weight: int) -> int:
    """Return the canary's pods for ``weight`` percent of ``total``: at least one while the weight
    is above 0, all at 100."""
    if weight <= 0:
        return 0
    return min(total, max(1, math.ceil(total * weight / 100)))


def _labels(service: str, track: str, revision: str) -> dict[str, str]:
    return {"app": service, "track": track, "shipml.dev/revision": revision[:63], **MANAGED_BY}


def deployment(service: str, namespace: str, track: str, image: str, revision: str,
               replicas: int, port: int, shadow: bool = False) -> dict[str, Any]:
    """Return the Deployment ``SERVICE-TRACK`` running ``image`` with its revision label and
    readiness probe; with ``shadow``, its pods mount the ConfigMap ``SERVICE-shadow`` (optional:
    absent, they mirror nothing) and read their shadow target from it."""
    selector = {"app": service, "track": track}
    found: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"{service}-{track}", "namespace": namespace,
                     "labels": _labels(service, track, revision)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": _labels(service, track, revision)},
                "spec": {"containers": [{
                    "name": "server", "image": image,
                    "ports": [{"name": "http", "containerPort": port}],
                    "env": _env(revision, port),
                    "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"},
                                       "periodSeconds": 2},
                }]},
            },
        },
    }
    if shadow:
        pod = found["spec"]["template"]["spec"]
        pod["volumes"] = [{"name": "shadow", "configMap": {"name": f"{service}-shadow",
                                                           "optional": True}}]
        container = pod["containers"][0]
        container["volumeMounts"] = [{"name": "shadow", "mountPath": SHADOW_MOUNT,
                                      "readOnly": True}]
        container["env"].append({"name": "SHIPML_SHADOW_FILE",
                                 "value": f"{SHADOW_MOUNT}/{SHADOW_FILE}"})
    return found


def shadow_config_map(service: str, namespace: str, target: Mapping[str, Any] | None
                      ) -> dict[str, Any]:
    """Return the ConfigMap ``SERVICE-shadow`` whose ``shadow.json`` names the shadow target
    (``{url, sample, revision}``; None: ``{}``, mirror nothing)."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"{service}-shadow", "namespace": namespace,
                         "labels": dict(MANAGED_BY)},
            "data": {SHADOW_FILE: json.dumps(dict(target or {}), sort_keys=True)}}


def shadow_url(service: str, namespace: str, port: int) -> str:
    """Return the in-cluster URL of the canary's own Service, where the stable mirrors to."""
    return f"http://{service}-canary.{namespace}.svc:{port}"


def service_object(name: str, namespace: str, selector: Mapping[str, str],
                   port: int) -> dict[str, Any]:
    """Return a ClusterIP Service ``name`` selecting ``selector`` on ``port``."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY)},
            "spec": {"selector": dict(selector),
                     "ports": [{"name": "http", "port": port, "targetPort": "http"}]}}


def http_route(service: str, namespace: str, gateway: str, hosts: Sequence[str], port: int,
               weight: int, mirror: float | None = None) -> dict[str, Any]:
    """Return the HTTPRoute that splits traffic between ``SERVICE-stable`` and ``SERVICE-canary``
    (``mirror``: that share of requests also mirrored to the canary by a RequestMirror filter)."""
    gateway_namespace, _, gateway_name = gateway.rpartition("/")
    parent: dict[str, Any] = {"name": gateway_name}
    if gateway_namespace:
        parent["namespace"] = gateway_namespace
    spec: dict[str, Any] = {
        "parentRefs": [parent],
        "rules": [{"backendRefs": [
            {"name": f"{service}-stable", "port": port, "weight": 100 - weight},
            {"name": f"{service}-canary", "port": port, "weight": weight}]}]}
    if mirror is not None:
        spec["rules"][0]["filters"] = [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": f"{service}-canary", "port": port},
            "percent": max(1, round(mirror * 100))}}]
    if hosts:
        spec["hostnames"] = list(hosts)
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": service, "namespace": namespace, "labels": dict(MANAGED_BY)},
            "spec": spec}


def destination_rule(service: str, namespace: str) -> dict[str, Any]:
    """Return the DestinationRule with subsets ``stable`` and ``canary`` by the track label."""
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": service, "namespace": namespace, "labels": dict(MANAGED_BY)},
            "spec": {"host": service,
                     "subsets": [{"name": track, "labels": {"track": track}}
                                 for track in ("stable", "canary")]}}


def virtual_service(service: str, namespace: str, hosts: Sequence[str], weight: int,
                    mirror: float | None = None) -> dict[str, Any]:
    """Return the VirtualService whose one route sends ``weight`` percent to subset canary
    (``mirror``: that share of requests also mirrored to it, ``mirror``/``mirrorPercentage``)."""
    found: dict[str, Any] = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": service, "namespace": namespace, "labels": dict(MANAGED_BY)},
            "spec": {"hosts": list(hosts) or [service],
                     "http": [{"name": "canary", "route": [
                         {"destination": {"host": service, "subset": "stable"},
                          "weight": 100 - weight},
                         {"destination": {"host": service, "subset": "canary"},
                          "weight": weight}]}]}}
    if mirror is not None:
        found["spec"]["http"][0]["mirror"] = {"host": service, "subset": "canary"}
        found["spec"]["http"][0]["mirrorPercentage"] = {"value": round(mirror * 100, 3)}
    return found


def inference_service(service: str, namespace: str, image: str, revision: str, port: int,
                      weight: int | None, stable: tuple[str, str] | None = None
                      ) -> dict[str, Any]:
    """Return the InferenceService running ``image`` as a custom predictor; ``weight`` is its
    ``canaryTrafficPercent`` (None: all traffic to the latest revision). ``stable`` (image,
    revision), while a canary is rolled out, is kept in annotations: the predictor names only
    the canary then, and a rollback puts the stable back from them."""
    predictor: dict[str, Any] = {"containers": [{
        "name": "kserve-container", "image": image,
        "ports": [{"containerPort": port, "protocol": "TCP"}],
        "env": _env(revision, port)}]}
    if weight is not None:
        predictor["canaryTrafficPercent"] = weight
    annotations = {"shipml.dev/revision": revision}
    if stable is not None:
        annotations[STABLE_IMAGE], annotations[STABLE_REVISION] = stable
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": service, "namespace": namespace, "labels": dict(MANAGED_BY),
                         "annotations": annotations},
            "spec": {"predictor": predictor}}


def lease(service: str, namespace: str, holder: str | None, lease_s: int, renewed: str | None,
          state: Mapping[str, Any] | None, resource_version: str | None) -> dict[str, Any]:
    """Return the Lease ``SERVICE-canary`` that holds the rollout lock (holderIdentity, renewTime)
    and the rollout state (annotation ``shipml.dev/canary-state``)."""
    metadata: dict[str, Any] = {"name": f"{service}-canary", "namespace": namespace,
                                "labels": dict(MANAGED_BY)}
    if state is not None:
        metadata["annotations"] = {STATE_ANNOTATION: json.dumps(state, sort_keys=True)}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    spec: dict[str, Any] = {"leaseDurationSeconds": lease_s}
    if holder is not None:
        spec["holderIdentity"] = holder
    if renewed is not None:
        spec["renewTime"] = renewed
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
            "spec": spec}


def kserve_objects(service: str, namespace: str, *, stable: tuple[str, str] | None,
                   canary: tuple[str, str] | None, weight: int, replicas: int, port: int,
                   gateway: str | None, hosts: Sequence[str], mirror: float | None = None
                   ) -> list[dict[str, Any]]:
    """Return the InferenceService of method ``kserve``: the canary's image while one is rolled
    out (``canaryTrafficPercent`` its weight, none at 100), else the stable's."""
    image, revision = canary or stable or ("", "")
    rolling = canary is not None and weight < 100
    return [inference_service(service, namespace, image, revision, port,
                              weight if rolling else None, stable if rolling else None)]


def replicas_objects(service: str, namespace: str, *, stable: tuple[str, str] | None,
                     canary: tuple[str, str] | None, weight: int, replicas: int, port: int,
                     gateway: str | None, hosts: Sequence[str], mirror: float | None = None
                     ) -> list[dict[str, Any]]:
    """Return the objects of method ``replicas``: the two Deployments sharing ``replicas`` pods
    by the weight (the stable keeps one until 100), behind one Service."""
    canary_pods = canary_replicas(replicas, weight) if canary is not None else 0
    stable_pods = max(replicas - canary_pods, 1) if weight < 100 else 0
    return [*_deployments(service, namespace, stable, canary, stable_pods, canary_pods, port),
            service_object(service, namespace, {"app": service}, port)]


def gateway_api_objects(service: str, namespace: str, *, stable: tuple[str, str] | None,
                        canary: tuple[str, str] | None, weight: int, replicas: int, port: int,
                        gateway: str | None, hosts: Sequence[str], mirror: float | None = None
                        ) -> list[dict[str, Any]]:
    """Return the objects of method ``gateway-api``: the two Deployments (the stable's pods
    mount the shadow ConfigMap), a Service per track and the HTTPRoute (``mirror``: with a
    RequestMirror filter); raise ConfigError when no Gateway is set."""
    if not gateway:
        raise ConfigError(NO_GATEWAY)
    return [*_deployments(service, namespace, stable, canary, replicas,
                          replicas if canary is not None else 0, port, shadow=True),
            *(service_object(f"{service}-{track}", namespace, {"app": service, "track": track},
                             port) for track in ("stable", "canary")),
            http_route(service, namespace, gateway, hosts, port, weight, mirror)]


def istio_objects(service: str, namespace: str, *, stable: tuple[str, str] | None,
                  canary: tuple[str, str] | None, weight: int, replicas: int, port: int,
                  gateway: str | None, hosts: Sequence[str], mirror: float | None = None
                  ) -> list[dict[str, Any]]:
    """Return the objects of method ``istio``: the two Deployments (the stable's pods mount
    the shadow ConfigMap) behind one Service, the canary's own Service (what the stable's pods
    mirror to), the DestinationRule and the VirtualService (``mirror``: with
    ``mirror``/``mirrorPercentage``)."""
    return [*_deployments(service, namespace, stable, canary, replicas,
                          replicas if canary is not None else 0, port, shadow=True),
            service_object(service, namespace, {"app": service}, port),
            service_object(f"{service}-canary", namespace, {"app": service, "track": "canary"},
                           port),
            destination_rule(service, namespace),
            virtual_service(service, namespace, hosts, weight, mirror)]


NO_GATEWAY = ("canary.target.kubernetes.gateway is not set; the gateway-api method attaches its "
              "HTTPRoute to a Gateway, e.g.\n  gateway: infra/public-gateway")
#: every traffic method and the objects it applies for a weight; Deployments come before what
#: routes to them
TRAFFIC_OBJECTS: Mapping[str, Callable[..., list[dict[str, Any]]]] = {
    "replicas": replicas_objects, "gateway-api": gateway_api_objects, "istio": istio_objects,
    "kserve": kserve_objects,
}
METHODS = tuple(TRAFFIC_OBJECTS)


def traffic_objects(method: str, service: str, namespace: str, *, stable: tuple[str, str] | None,
                    canary: tuple[str, str] | None, weight: int, replicas: int, port: int,
                    gateway: str | None, hosts: Sequence[str], mirror: float | None = None
                    ) -> list[dict[str, Any]]:
    """Return every object ``method`` applies for ``weight`` percent to the canary; ``stable`` and
    ``canary`` are (image, revision) pairs or None; ``mirror``: the share the mesh mirrors to the
    canary (istio, gateway-api). Raises ConfigError when a setting the method needs is
    missing."""
    return TRAFFIC_OBJECTS[method](service, namespace, stable=stable, canary=canary,
                                   weight=weight, replicas=replicas, port=port, gateway=gateway,
                                   hosts=hosts, mirror=mirror)


def _deployments(service: str, namespace: str, stable: tuple[str, str] | None,
                 canary: tuple[str, str] | None, stable_pods: int, canary_pods: int,
                 port: int, shadow: bool = False) -> list[dict[str, Any]]:
    # only the stable's pods mirror: the canary's never read a shadow file (it would name them)
    tracks = (("stable", stable, stable_pods), ("canary", canary, canary_pods))
    return [deployment(service, namespace, track, *revision, pods, port,
                       shadow=shadow and track == "stable")
            for track, revision, pods in tracks if revision is not None]


# --- validation ---------------------------------------------------------------------------------


def crd_dir() -> Path:
    """Return the folder of upstream CRDs: ``$SHIPML_K8S_SCHEMAS``, else the unedited copies
    shipped in ``shipml/canary/crds`` (see its README for their sources)."""
    chosen = os.environ.get(CRD_DIR_ENV)
    if chosen:
        return Path(chosen)
    return Path(str(resources.files("shipml.canary") / "crds"))


@cache
def _crd_schema(group: str, kind: str, version: str) -> dict[str, Any]:
    import yaml

    path = crd_dir() / _CRD_FILES[(group, kind)]
    for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if not document or document.get("kind") != "CustomResourceDefinition":
            continue
        if document["spec"]["names"]["kind"] != kind:
            continue
        for served in document["spec"]["versions"]:
            if served["name"] == version:
                return dict(served["schema"]["openAPIV3Schema"])
    raise ConfigError(f"{path}: no {kind} {version} schema")


def validate(obj: Mapping[str, Any]) -> list[str]:
    """Return what is wrong with ``obj`` against its official schema (empty: valid).

    Core kinds go through kubernetes-validate (strict: unknown fields are errors); the CRD kinds
    through their upstream openAPIV3Schema with unknown fields refused as the API server does.
    """
    api_version, kind = str(obj["apiVersion"]), str(obj["kind"])
    group, _, version = api_version.rpartition("/")
    if (group, kind) in _CRD_FILES:
        import jsonschema

        schema = _closed(_crd_schema(group, kind, version))
        body = {key: value for key, value in obj.items() if key not in ("apiVersion", "kind",
                                                                       "metadata")}
        errors = jsonschema.Draft7Validator(schema).iter_errors(body)
        return [f"{kind}/{obj['metadata']['name']}: {'.'.join(map(str, e.absolute_path))}: "
                f"{e.message}" for e in errors]
    import kubernetes_validate

    try:
        kubernetes_validate.validate(dict(obj), kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(part) for part in exc.absolute_path)
        return [f"{kind}/{obj['metadata']['name']}: {path}: {exc.message}"]
    return []


def _closed(schema: Any) -> Any:
    """Return the structural schema with ``additionalProperties: false`` wherever properties are
    listed and nothing else is allowed: the API server prunes unknown fields, we refuse them."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if "properties" in closed and "additionalProperties" not in closed \
            and not closed.get("x-kubernetes-preserve-unknown-fields"):
        closed["additionalProperties"] = False
    for ignored in ("x-kubernetes-validations",):
        closed.pop(ignored, None)
    return closed


def _env(revision: str, port: int) -> list[dict[str, str]]:
    return [{"name": name, "value": value}
            for name, value in serving_environment(revision, "0.0.0.0", port).items()]
