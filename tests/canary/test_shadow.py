"""The shadow step (issue 19, item 3) on the docker target for real: the stable's built-in server
mirrors a share of live /predict to the canary, which gets no user traffic; a real HAProxy
router, a real Prometheus scraping both slots, real load on 127.0.0.1. And the plan's shape."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from shipml.canary.plan import Step, parse_steps
from shipml.cli import main
from shipml.errors import ConfigError
from tests.canary.conftest import Load, Service, sample_rows

SHADOW_PLAN = [{"shadow": "6s", "sample": 0.5}, {"weight": 20, "pause": 0}, {"weight": 100}]


def _run(config: Path, *argv: str) -> int:
    return main(["canary", *argv, "--config", str(config), "--output-dir",
                 str(config.parent / ".shipml")])


def _result(service: Service) -> dict[str, Any]:
    return dict(json.loads((service.folder / ".shipml" / "results" / "canary.json").read_text()))


class Weights:
    """The router's weights read back from its Runtime API while a rollout runs."""

    def __init__(self, service: Service) -> None:
        from shipml.canary.targets.haproxy import RuntimeApi

        self.api = RuntimeApi("127.0.0.1", service.admin_port)
        self.seen: list[dict[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Weights:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.seen.append(self.api.weights())
            except Exception:  # the Runtime API between two commands: read again
                continue


def _shadow_then_weights(service: Service, image: str, **canary: Any) -> tuple[int, Load, Weights]:
    config = service.config(image, steps=SHADOW_PLAN, **canary)
    with Load(f"http://127.0.0.1:{service.port}", sample_rows(service.folder)) as load, \
            Weights(service) as weights:
        code = _run(config)
    return code, load, weights


# --- the plan -----------------------------------------------------------------------------------


def test_a_shadow_step_is_weight_0_with_its_sample_and_comes_before_the_weights() -> None:
    steps = parse_steps([{"shadow": "2m", "sample": 0.2}, {"weight": 10, "pause": "1m"},
                         "100"], "shipml.yaml: canary.steps")
    assert steps[0] == Step(0, 120.0, shadow=True, sample=0.2)
    assert [step.weight for step in steps] == [0, 10, 100]


@pytest.mark.parametrize(("steps", "message"), [
    ([{"weight": 10}, {"shadow": "2m", "sample": 0.2}, {"weight": 100}],
     "canary.steps[1]: a shadow step comes after the weight step 1; shadow steps go first"),
    ([{"shadow": "2m", "sample": 0.2}],
     "canary.steps: the plan has only shadow steps"),
    ([{"shadow": "2m", "sample": 0}, {"weight": 100}],
     "canary.steps[0].sample: 0 is not a share of requests; give a number above 0 and at most 1"),
    ([{"shadow": "2m", "sample": 1.5}, {"weight": 100}],
     "canary.steps[0].sample: 1.5 is not a share of requests"),
    ([{"shadow": "2m", "weight": 10}, {"weight": 100}],
     "canary.steps[0]: 'weight' is not a key of a shadow step; valid: shadow, sample"),
    ([{"shadow": "2x"}, {"weight": 100}],
     "canary.steps[0].shadow: '2x' is not a duration"),
])
def test_a_misplaced_or_malformed_shadow_step_is_refused_naming_the_key(
        steps: list[Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_steps(steps, "shipml.yaml: canary.steps")
    assert message in str(raised.value)


def test_a_shadow_step_judges_the_shadow_series_with_the_configured_thresholds() -> None:
    from shipml.canary.analysis import metric_specs
    from shipml.canary.shadow import shadow_specs

    specs = metric_specs([
        {"name": "error-rate", "query": "error_rate", "max": 0.05},
        {"name": "p95-latency", "query": "p95_ms", "judge": "relative", "max_ratio": 1.5,
         "slack": 20},
        {"name": "agreement", "provider": "probe", "query": "agreement", "min": 0.9}], "metrics")
    judged = {spec.name: spec for spec in shadow_specs(specs, Step(0, 60.0, True, 0.2))}
    assert list(judged) == ["shadow-error-rate", "shadow-p95-latency", "shadow-agreement",
                            "agreement"]
    assert judged["shadow-error-rate"].maximum == 0.05
    assert (judged["shadow-p95-latency"].max_ratio, judged["shadow-p95-latency"].slack) == (1.5, 20)
    assert judged["shadow-agreement"].judge == "figure"  # fails nothing unless a threshold is set
    strict = shadow_specs(specs, Step(0, 60.0, True, 0.2, min_agreement=0.95))
    assert strict[2].judge == "absolute" and strict[2].minimum == 0.95
    # the mesh drops the canary's answers: its own series, the configured metrics, judge it
    assert shadow_specs(specs, Step(0, 60.0, True, 0.2, shadow_by="mesh")) == specs
    assert shadow_specs(specs, Step(10, 0.0)) == specs


def test_the_decision_lines_of_a_shadow_step_say_so() -> None:
    from shipml.canary import engine
    from shipml.canary.engine import Revision
    from shipml.canary.plan import Plan

    plan = Plan(parse_steps([{"shadow": "1m", "sample": 0.2}, {"weight": 10}, {"weight": 100}],
                            "steps"), 10.0, 2, 5, "hold", 300.0, 10.0)
    begun = engine.begin(plan, "churn", Revision("img@sha256:" + "b" * 64, "churn-b"),
                         Revision("img@sha256:" + "a" * 64, "churn-a"), 0.0)
    assert begun.line.startswith("canary churn step 1/3 shadow 20% weight 0%: start churn-b")
    assert begun.line.endswith("→ weight 0%, the stable mirrors 20% of its requests to it")
    assert begun.weight == 0


# --- the docker target --------------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.slow
def test_the_shadow_of_a_canary_answering_500_rolls_back_before_any_weight_moves(
        service: Service, images: dict[str, str]) -> None:
    assert _run(service.config(images["base"])) == 0
    code, load, weights = _shadow_then_weights(service, images["failing"])
    result = _result(service)
    assert code == 1, result["summary"]
    assert result["metrics"]["phase"] == "rolled_back"
    assert [step["weight"] for step in result["metrics"]["steps"]] == [0]
    assert "shadow-error-rate" in result["metrics"]["reason"]
    assert load.failed() == [] and len(load.codes) > 20
    # the canary's slot never had a weight: only the stable's slot did
    assert weights.seen and all(sorted(seen.values()) == [0, 100] for seen in weights.seen)
    stable_slots = {max(seen, key=lambda slot: seen[slot]) for seen in weights.seen}
    assert len(stable_slots) == 1


@pytest.mark.docker
@pytest.mark.slow
def test_the_shadow_of_a_good_canary_proceeds_to_the_weight_steps(
        service: Service, images: dict[str, str]) -> None:
    assert _run(service.config(images["base"])) == 0
    code, load, weights = _shadow_then_weights(service, images["good"])
    result = _result(service)
    assert code == 0, result["summary"]
    assert result["metrics"]["phase"] == "promoted"
    assert [step["weight"] for step in result["metrics"]["steps"]] == [0, 20, 100]
    assert result["metrics"]["steps"][0]["status"] == "pass"
    shadow_lines = [line for line in result["metrics"]["decisions"] if "step 1/3" in line
                    and "→ pass" in line]
    assert shadow_lines and "shadow-error-rate=0" in shadow_lines[-1]
    assert "shadow-agreement=1" in shadow_lines[-1]
    assert load.failed() == []
    assert any(sorted(seen.values()) == [20, 80] for seen in weights.seen)


@pytest.mark.docker
@pytest.mark.slow
def test_a_stalled_shadow_canary_never_fails_a_user_request(
        service: Service, images: dict[str, str]) -> None:
    assert _run(service.config(images["base"])) == 0
    code, load, _ = _shadow_then_weights(service, images["stalled"])
    result = _result(service)
    assert code == 1, result["summary"]
    assert [step["weight"] for step in result["metrics"]["steps"]] == [0]
    assert load.failed() == [] and len(load.codes) > 20


@pytest.mark.docker
@pytest.mark.slow
def test_a_stable_started_without_the_shadow_volume_is_refused_before_the_canary_starts(
        service: Service, images: dict[str, str], docker_client: Any) -> None:
    assert _run(service.config(images["base"])) == 0
    # the stable as an earlier shipml started it: no shadow volume, no SHIPML_SHADOW_FILE
    stable = docker_client.containers.get(f"{service.name}-a")
    environment = [item for item in stable.attrs["Config"]["Env"]
                   if not item.startswith("SHIPML_SHADOW_FILE=")]
    labels, image = stable.labels, stable.attrs["Config"]["Image"]
    stable.remove(force=True)
    docker_client.containers.run(image, name=f"{service.name}-a", detach=True,
                                 network_mode="host", environment=environment, labels=labels)
    code = _run(service.config(images["good"], steps=SHADOW_PLAN))
    assert code == 2
    assert docker_client.containers.list(all=True, filters={"name": f"{service.name}-b"}) == []
    summary = _result(service)["summary"]
    assert "was started by a shipml without the shadow step" in summary
    assert "promote once with a plan without a shadow step" in summary


# --- the kubernetes target ----------------------------------------------------------------------

STABLE = ("127.0.0.1:5000/churn@sha256:" + "a" * 64, "churn-aaaaaaaaaaaa")
CANARY = ("127.0.0.1:5000/churn@sha256:" + "b" * 64, "churn-bbbbbbbbbbbb")


@pytest.mark.parametrize("method", ["gateway-api", "istio"])
def test_the_stable_pods_mount_the_shadow_config_map_and_the_mesh_mirror_is_valid(
        method: str) -> None:
    from shipml.canary.targets import k8s_objects as objects

    built = objects.traffic_objects(method, "churn", "prod", stable=STABLE, canary=CANARY,
                                    weight=0, replicas=2, port=8080, gateway="infra/public",
                                    hosts=["churn.example.com"], mirror=0.2)
    config_map = objects.shadow_config_map("churn", "prod", {
        "url": objects.shadow_url("churn", "prod", 8080), "sample": 0.2,
        "revision": CANARY[1]})
    for obj in [*built, config_map]:
        assert objects.validate(obj) == [], obj["kind"]
    deployments = {obj["metadata"]["name"]: obj for obj in built if obj["kind"] == "Deployment"}
    stable = deployments["churn-stable"]["spec"]["template"]["spec"]
    assert stable["volumes"] == [{"name": "shadow", "configMap": {"name": "churn-shadow",
                                                                   "optional": True}}]
    assert {"name": "SHIPML_SHADOW_FILE", "value": "/etc/shipml/shadow/shadow.json"} \
        in stable["containers"][0]["env"]
    assert "volumes" not in deployments["churn-canary"]["spec"]["template"]["spec"]
    assert json.loads(config_map["data"]["shadow.json"])["url"] == \
        "http://churn-canary.prod.svc:8080"
    assert any(obj["kind"] == "Service" and obj["metadata"]["name"] == "churn-canary"
               for obj in built)
    route = built[-1]
    if method == "istio":
        assert route["spec"]["http"][0]["mirror"] == {"host": "churn", "subset": "canary"}
        assert route["spec"]["http"][0]["mirrorPercentage"] == {"value": 20}
    else:
        assert route["spec"]["rules"][0]["filters"] == [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": "churn-canary", "port": 8080}, "percent": 20}}]


@pytest.mark.parametrize("method", ["replicas", "kserve"])
def test_a_shadow_step_on_a_method_without_a_canary_of_its_own_is_refused(method: str) -> None:
    # what the API server stores at a shadow step, and after it: tests/canary/k8s/test_methods.py
    from shipml.canary.targets import kubernetes
    from shipml.canary.targets.kube_api import KubeApi

    target = kubernetes.build("churn", KubeApi(api_client=None), method=method, namespace="prod",
                              replicas=2, port=8080, gateway=None, hosts=(), ready_timeout_s=5)
    with pytest.raises(ConfigError, match=f"method {method} cannot keep one"):
        target.workload.check_shadow("server")


def _shadow_files(docker_client: Any, service: Service) -> dict[str, Any]:
    """Return the shadow file of each slot, as the revisions read them."""
    import io
    import tarfile

    holder = docker_client.containers.get(f"{service.name}-shadow-files")
    found = {}
    for slot in ("a", "b"):
        stream, _ = holder.get_archive(f"/shipml/{slot}.json")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.next()
            handle = archive.extractfile(member) if member is not None else None
            found[slot] = json.loads(handle.read()) if handle is not None else None
    return found


@pytest.mark.docker
@pytest.mark.slow
def test_an_abort_stops_the_mirror_even_when_its_plan_has_no_shadow_step(
        service: Service, images: dict[str, str], docker_client: Any) -> None:
    assert _run(service.config(images["base"])) == 0
    paused = [{"shadow": "manual", "sample": 0.5}, {"weight": 20}, {"weight": 100}]
    with Load(f"http://127.0.0.1:{service.port}", sample_rows(service.folder)) as load:
        assert _run(service.config(images["good"], steps=paused)) == 0
        assert _result(service)["metrics"]["phase"] == "paused"
        mirrored = _shadow_files(docker_client, service)
        assert mirrored["a"]["url"] == f"http://127.0.0.1:{service.slots[1]}"
        assert mirrored["a"]["sample"] == 0.5 and mirrored["b"] == {}
        # the person who aborts gives a plan without the shadow step
        assert _run(service.config(images["good"]), "abort") == 1
    assert _shadow_files(docker_client, service) == {"a": {}, "b": {}}
    assert load.failed() == []
