"""The route table: every endpoint the server answers, as one row of method, path pattern,
endpoint name (the metrics and access-log label), who may call it and its handler.

The 404 for an unknown path, its list of endpoints, the 404 for another model or version and the
405 with its ``Allow`` header all come from :data:`ROUTES`. Handlers take the worker's
:class:`~shipml.serve.app.App`, the request (:class:`Request`) and the path's parameters, and
return ``(status, body, content type)``; they never see HTTP framing. [KServe:
``protocol/rest/v2_endpoints.py``]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

from shipml import __version__
from shipml.serve import _protocol
from shipml.serve._metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from shipml.serve._protocol import RequestError
from shipml.serve.app import App
from shipml.serve.settings import ServeSettings

JSON = "application/json"
NO_ENDPOINT = "no endpoint {path!r}"
NO_MODEL = "model {name!r} is not served here"
NO_VERSION = "model {name!r} has no version {version!r}"
WRONG_METHOD = "{method} is not allowed here; use {allowed}"
UNAUTHORIZED = "missing or invalid bearer token; send Authorization: Bearer <token>"

#: what a handler returns: status, a JSON document (or bytes as they are), content type
Answer = tuple[int, Any, str]
#: who may call a route: anyone, a token holder, or a token holder when serve.auth_metrics
Access = Literal["open", "token", "metrics"]


class Request(Protocol):
    """What a handler may ask of the request it answers."""

    @property
    def request_id(self) -> str:
        """The request's id (the client's X-Request-Id when safe, else a fresh one)."""

    @property
    def endpoint(self) -> str:
        """The endpoint name of the route that matched."""

    def json_body(self) -> Any:
        """Return the body parsed as JSON. Raises RequestError for a wrong content type, a body
        over the limit, late or cut short, or not JSON."""


Handler = Callable[[App, Request, Mapping[str, str]], Answer]


@dataclass(frozen=True)
class Route:
    """One row of the table: ``method`` on ``path`` (``{name}`` and ``{version}`` match one
    segment, which must be the served model's name and version) is answered by ``handler``."""

    method: str
    path: str
    endpoint: str
    handler: Handler
    access: Access = "token"
    #: named in the list of endpoints a 404 answers with
    listed: bool = True
    segments: tuple[str, ...] = field(init=False, repr=False)
    _parameters: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        segments = tuple(self.path.split("/")[1:])
        object.__setattr__(self, "segments", segments)
        object.__setattr__(self, "_parameters", any(part.startswith("{") for part in segments))

    def match(self, segments: tuple[str, ...]) -> dict[str, str] | None:
        """Return the path's parameters when ``segments`` is this route's path, else None."""
        if not self._parameters:
            return {} if segments == self.segments else None
        if len(segments) != len(self.segments):
            return None
        params = {}
        for pattern, segment in zip(self.segments, segments, strict=True):
            if pattern.startswith("{"):
                if not segment:
                    return None
                params[pattern[1:-1]] = segment
            elif pattern != segment:
                return None
        return params

    def is_open(self, settings: ServeSettings) -> bool:
        """Return True when this route answers without a token."""
        return self.access == "open" or (self.access == "metrics" and not settings.auth_metrics)


class Found(NamedTuple):
    """The route a request's path matched: the one for its method, or the first on that path."""

    route: Route
    params: dict[str, str]
    segments: tuple[str, ...]


# -- handlers --------------------------------------------------------------------------------


def live(app: App, request: Request, params: Mapping[str, str]) -> Answer:
    """The server process answers."""
    return 200, {"live": True}, JSON


def ready(app: App, request: Request, params: Mapping[str, str]) -> Answer:
    """200 once the model is loaded and until a drain begins, else 503."""
    is_ready = app.is_ready()
    return (200 if is_ready else 503), {"ready": is_ready}, JSON


def metrics(app: App, request: Request, params: Mapping[str, str]) -> Answer:
    """Prometheus exposition."""
    return 200, app.metrics.exposition(), METRICS_CONTENT_TYPE


def server_metadata(app: App, request: Request, params: Mapping[str, str]) -> Answer:
    """The v2 server metadata."""
    return 200, {"name": "shipml", "version": __version__, "extensions": []}, JSON


def model_metadata(app: App, request: Request, params: Mapping[str, str]) -> Answer:
    """The v2 model metadata. Raises RequestError 503 while the model loads."""
    return 200, app.loaded().metadata(), JSON


def predict(app: App, request: Request, params: Mapping[str, str]) -> Answer:
    """``{"rows": [...]}`` in, predictions (and probabilities) out; a sampled share is mirrored
    to the shadow target, if one is on, after the answer is built."""
    started = time.perf_counter()
    model = app.loaded()
    document = request.json_body()
    rows = _protocol.predict_rows(document, app.settings.max_rows)
    prediction = app.run_model(lambda: model.predict(rows), request.request_id, request.endpoint)
    body = {"model_name": model.name, "model_version": model.version, **prediction.body()}
    app.log_prediction(request.request_id, request.endpoint, lambda: {
        "inputs": prediction.inputs,
        "outputs": {key: body[key] for key in ("predictions", "probabilities") if key in body}})
    app.mirror(document, body.get("predictions"), time.perf_counter() - started)
    return 200, body, JSON


def infer(app: App, request: Request, params: Mapping[str, str]) -> Answer:
    """An Open Inference Protocol v2 inference request."""
    model = app.loaded()
    document = request.json_body()
    infer_request = _protocol.infer_request(document, model.onnx.inputs, model.onnx.outputs,
                                            app.settings.max_rows)
    outputs = app.run_model(lambda: model.infer(infer_request), request.request_id,
                            request.endpoint)
    body = {"model_name": model.name, "model_version": model.version,
            "id": infer_request.request_id or request.request_id, "outputs": outputs}
    app.log_prediction(request.request_id, request.endpoint, lambda: {
        "inputs": {name: array.tolist() for name, array in infer_request.feeds.items()},
        "outputs": {tensor["name"]: tensor["data"] for tensor in outputs}})
    return 200, body, JSON


#: every endpoint; the listed ones, in this order, are what a 404 names
ROUTES: tuple[Route, ...] = (
    Route("POST", "/predict", "predict", predict),
    Route("POST", "/v2/models/{name}/infer", "infer", infer),
    Route("POST", "/v2/models/{name}/versions/{version}/infer", "infer", infer, listed=False),
    Route("GET", "/v2/models/{name}", "model_metadata", model_metadata),
    Route("GET", "/v2/models/{name}/versions/{version}", "model_metadata", model_metadata,
          listed=False),
    Route("GET", "/v2/models/{name}/ready", "model_ready", ready, "open", listed=False),
    Route("GET", "/v2/models/{name}/versions/{version}/ready", "model_ready", ready, "open",
          listed=False),
    Route("GET", "/v2/health/live", "live", live, "open"),
    Route("GET", "/v2/health/ready", "ready", ready, "open"),
    Route("GET", "/metrics", "metrics", metrics, "metrics"),
    Route("GET", "/v2", "server_metadata", server_metadata, listed=False),
    Route("GET", "/v2/", "server_metadata", server_metadata, listed=False),
)

#: the endpoints a 404 names
ENDPOINTS: list[str] = [route.path for route in ROUTES if route.listed]


#: the routes by their number of segments: a request is matched against these only
_BY_LENGTH: dict[int, tuple[Route, ...]] = {
    length: tuple(route for route in ROUTES if len(route.segments) == length)
    for length in {len(route.segments) for route in ROUTES}}


def find(method: str, segments: tuple[str, ...]) -> Found | None:
    """Return the route for ``method`` on the path ``segments``, else the first route on that
    path (answered 405 by :func:`check`); None when no route has that path."""
    first = None
    for route in _BY_LENGTH.get(len(segments), ()):
        params = route.match(segments)
        if params is None:
            continue
        if route.method == method:
            return Found(route, params, segments)
        if first is None:
            first = Found(route, params, segments)
    return first


def not_found(segments: tuple[str, ...]) -> RequestError:
    """Return the 404 for a path no route has, naming the endpoints there are."""
    return RequestError(404, NO_ENDPOINT.format(path="/" + "/".join(segments)[:256]), "path",
                        list(ENDPOINTS))


def check(found: Found, method: str, settings: ServeSettings) -> None:
    """Raise RequestError 404 when the path names another model or version than the one served,
    405 (with ``Allow``) when ``method`` is not the route's."""
    name = found.params.get("name")
    if name is not None and name != settings.name:
        raise RequestError(404, NO_MODEL.format(name=name[:128]), "model_name", [settings.name])
    version = found.params.get("version")
    if version is not None and version != settings.version:
        raise RequestError(404, NO_VERSION.format(name=name, version=version[:64]),
                           "model_version", [settings.version])
    if method != found.route.method:
        allowed = ", ".join(dict.fromkeys(route.method for route in ROUTES
                                          if route.match(found.segments) is not None))
        raise RequestError(405, WRONG_METHOD.format(method=method[:16], allowed=allowed),
                           "method", allowed, {"Allow": allowed})


def unauthorized() -> RequestError:
    """Return the 401 for a request to a guarded route without an accepted token."""
    return RequestError(401, UNAUTHORIZED, "Authorization", "Bearer <token>",
                        {"WWW-Authenticate": 'Bearer realm="shipml"'})
