"""The route table on its own (no server): which route a path and method reach, and the 404 and
405 answers that come from the table. The HTTP tests prove the same answers over the wire."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipml.serve import routes
from shipml.serve._protocol import RequestError
from shipml.serve.settings import ServeSettings

SETTINGS = ServeSettings(model_path=Path("model.onnx"), name="model", version="v1")


def _segments(path: str) -> tuple[str, ...]:
    return tuple(path.split("/")[1:])


def _resolve(method: str, path: str) -> tuple[str, dict[str, str]]:
    found = routes.find(method, _segments(path))
    if found is None:
        raise routes.not_found(_segments(path))
    routes.check(found, method, SETTINGS)
    return found.route.endpoint, found.params


@pytest.mark.parametrize(("method", "path", "endpoint", "params"), [
    ("POST", "/predict", "predict", {}),
    ("POST", "/v2/models/model/infer", "infer", {"name": "model"}),
    ("POST", "/v2/models/model/versions/v1/infer", "infer", {"name": "model", "version": "v1"}),
    ("GET", "/v2/models/model", "model_metadata", {"name": "model"}),
    ("GET", "/v2/models/model/versions/v1", "model_metadata", {"name": "model", "version": "v1"}),
    ("GET", "/v2/models/model/ready", "model_ready", {"name": "model"}),
    ("GET", "/v2/health/live", "live", {}),
    ("GET", "/v2/health/ready", "ready", {}),
    ("GET", "/metrics", "metrics", {}),
    ("GET", "/v2", "server_metadata", {}),
    ("GET", "/v2/", "server_metadata", {}),
])
def test_each_path_reaches_its_endpoint(method: str, path: str, endpoint: str,
                                        params: dict[str, str]) -> None:
    assert _resolve(method, path) == (endpoint, params)


@pytest.mark.parametrize("path", ["/predict/", "/v2/models/model/", "/v2/models//infer",
                                  "/v2/models/model/versions//infer", "/v2/models/model/versions",
                                  "/v2/models/versions/x/infer", "/v2/health", "/"])
def test_a_path_no_route_has_is_a_404_naming_the_listed_endpoints(path: str) -> None:
    with pytest.raises(RequestError) as raised:
        _resolve("GET", path)
    assert raised.value.status == 404
    assert raised.value.field == "path"
    assert raised.value.valid == ["/predict", "/v2/models/{name}/infer", "/v2/models/{name}",
                                  "/v2/health/live", "/v2/health/ready", "/metrics"]
    assert raised.value.valid == [route.path for route in routes.ROUTES if route.listed]


def test_another_model_or_version_is_a_404_before_the_method_is_judged() -> None:
    with pytest.raises(RequestError) as raised:
        _resolve("GET", "/v2/models/other/infer")
    assert (raised.value.status, raised.value.field, raised.value.valid) == \
        (404, "model_name", ["model"])
    with pytest.raises(RequestError) as raised:
        _resolve("GET", "/v2/models/model/versions/v2/infer")
    assert (raised.value.status, raised.value.field, raised.value.valid) == \
        (404, "model_version", ["v1"])


def test_a_wrong_method_is_a_405_allowing_what_the_table_has_on_that_path() -> None:
    with pytest.raises(RequestError) as raised:
        _resolve("GET", "/v2/models/model/infer")
    assert raised.value.status == 405
    assert raised.value.message == "GET is not allowed here; use POST"
    assert raised.value.headers == {"Allow": "POST"}
    with pytest.raises(RequestError) as raised:
        _resolve("DELETE", "/metrics")
    assert raised.value.headers == {"Allow": "GET"}


def test_only_health_probes_and_unguarded_metrics_answer_without_a_token() -> None:
    guarded = ServeSettings(model_path=Path("model.onnx"), name="model", auth_metrics=True)
    open_paths = {route.path for route in routes.ROUTES if route.is_open(SETTINGS)}
    assert open_paths == {"/v2/health/live", "/v2/health/ready", "/v2/models/{name}/ready",
                          "/v2/models/{name}/versions/{version}/ready", "/metrics"}
    assert "/metrics" not in {route.path for route in routes.ROUTES if route.is_open(guarded)}
