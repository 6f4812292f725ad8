"""Target docker for real: the example model's image behind a real HAProxy router, scraped by a
real Prometheus, under real load on 127.0.0.1; each faulty "new model" is that image with a fault
baked in."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipml.cli import main
from tests.canary.conftest import REPO, Load, Service, sample_rows

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _run(config: Path, *argv: str) -> int:
    return main(["canary", *argv, "--config", str(config), "--output-dir",
                 str(config.parent / ".shipml")])


def _result(service: Service) -> dict[str, Any]:
    return dict(json.loads((service.folder / ".shipml" / "results" / "canary.json").read_text()))


def _deploy_stable(service: Service, images: dict[str, str]) -> None:
    assert _run(service.config(images["base"])) == 0
    assert _result(service)["metrics"]["reason"].startswith("first deploy")


def test_a_good_model_is_promoted_through_every_step_without_a_failed_request(
        service: Service, images: dict[str, str]) -> None:
    _deploy_stable(service, images)
    with Load(f"http://127.0.0.1:{service.port}", sample_rows(service.folder)) as load:
        code = _run(service.config(images["good"]))
        time.sleep(1)
    result = _result(service)
    assert code == 0, result["summary"]
    assert result["metrics"]["phase"] == "promoted" and result["metrics"]["final_weight"] == 100
    assert [step["weight"] for step in result["metrics"]["steps"]] == [20, 50, 100]
    assert load.failed() == [] and len(load.codes) > 50
    from shipml.canary.targets.haproxy import RuntimeApi

    weights = RuntimeApi("127.0.0.1", service.admin_port).weights()
    assert sorted(weights.values()) == [0, 100]


def test_a_model_answering_500_on_30_percent_is_rolled_back_within_the_failure_limit(
        service: Service, images: dict[str, str]) -> None:
    _deploy_stable(service, images)
    with Load(f"http://127.0.0.1:{service.port}", sample_rows(service.folder)) as load:
        started = time.time()
        code = _run(service.config(images["errors"]))
        ended = time.time()
        time.sleep(2.5)
    result = _result(service)
    assert code == 1 and result["metrics"]["phase"] == "rolled_back"
    assert result["metrics"]["final_weight"] == 0
    assert result["summary"].startswith("rolled back at step 1 (20%): error-rate — ")
    first_bad = min(at for at, code in load.failed() if at >= started)
    # failure_limit 2 × interval 2 s, plus a window to fill and the drain of 1 s
    assert ended - first_bad <= 2 * 2 + 4 + 3, (ended - first_bad, result["metrics"]["decisions"])
    after = [code for at, code in load.codes if at > ended + 0.5]
    assert after and all(code == 200 for code in after), after


def test_a_model_with_wrong_predictions_is_rolled_back_by_the_probe(
        service: Service, images: dict[str, str]) -> None:
    _deploy_stable(service, images)
    # the agreement judge, on when its threshold is set (a figure otherwise)
    config = service.config(images["shuffled"], probe={"enabled": True, "rows": 20,
                                                        "min_agreement": 0.99})
    with Load(f"http://127.0.0.1:{service.port}", sample_rows(service.folder)):
        code = _run(config)
    result = _result(service)
    assert code == 1, result["summary"]
    assert "prediction-agreement" in result["summary"]
    assert "error-rate" not in result["summary"]


def test_a_slower_model_is_rolled_back_by_the_latency_judge(
        service: Service, images: dict[str, str]) -> None:
    _deploy_stable(service, images)
    config = service.config(images["slow"], metrics=[
        {"name": "latency-shift", "query": "mean_ms", "judge": "mann-whitney", "alpha": 0.05,
         "min_effect": 10}])
    with Load(f"http://127.0.0.1:{service.port}", sample_rows(service.folder)):
        code = _run(config)
    result = _result(service)
    assert code == 1, result["summary"]
    assert result["summary"].startswith("rolled back at step 1 (20%): latency-shift — ")


def test_no_promotion_while_prometheus_is_down(service: Service, images: dict[str, str]) -> None:
    _deploy_stable(service, images)
    service.prometheus.stop()
    config = service.config(images["good"], step_timeout="6s")
    with Load(f"http://127.0.0.1:{service.port}", sample_rows(service.folder)):
        code = _run(config)
    result = _result(service)
    assert code == 1 and result["metrics"]["phase"] == "rolled_back"
    assert "no conclusive analysis within 6s" in result["summary"]
    assert all(step["weight"] == 20 for step in result["metrics"]["steps"])
    assert any("is not answering" in line for line in result["metrics"]["decisions"])


def test_inconclusive_pass_never_promotes_while_prometheus_is_down(
        service: Service, images: dict[str, str]) -> None:
    # "pass" may pass a thin window; a source that gives nothing is never good news
    _deploy_stable(service, images)
    service.prometheus.stop()
    config = service.config(images["shuffled"], step_timeout="6s", inconclusive="pass")
    with Load(f"http://127.0.0.1:{service.port}", sample_rows(service.folder)):
        code = _run(config)
    result = _result(service)
    assert code == 1 and result["metrics"]["phase"] == "rolled_back", result["summary"]
    assert all(step["weight"] == 20 for step in result["metrics"]["steps"])
    assert any("never a source that gave no data" in line
               for line in result["metrics"]["decisions"])


def test_no_metric_and_no_probe_is_refused(service: Service, images: dict[str, str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(service.config(images["base"], metrics=[], inconclusive="pass")) == 2
    assert "canary.metrics: no metric to analyse and the probe is off" in capsys.readouterr().err


def test_a_second_rollout_is_refused_naming_the_holder(
        service: Service, images: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    _deploy_stable(service, images)
    from shipml.canary.lock import Lock
    from shipml.canary.targets import build_target
    from shipml.config import load_config

    config = service.config(images["good"])
    loaded = load_config(config)
    target = build_target("docker", service.name, loaded.section("canary")["target"]["docker"],
                          loaded.where)
    other = Lock("GitHub Actions run 42 (pid 1)", "another-runner", 1, time.time(), 60)
    target.store.acquire(other, time.time())
    assert _run(config) == 2
    assert "another shipml canary holds the rollout of " + service.name + \
        ": GitHub Actions run 42 (pid 1)" in capsys.readouterr().err


def test_killed_mid_rollout_it_resumes_from_the_stored_step(
        service: Service, images: dict[str, str]) -> None:
    _deploy_stable(service, images)
    config = service.config(images["good"], steps=[{"weight": 20, "pause": "4s"},
                                                   {"weight": 50, "pause": "8s"},
                                                   {"weight": 100}])
    with Load(f"http://127.0.0.1:{service.port}", sample_rows(service.folder)) as load:
        process = subprocess.Popen([sys.executable, "-m", "shipml", "canary", "--config",
                                    str(config), "--output-dir", str(service.folder / "run1")],
                                   stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert process.stdout is not None
        for line in process.stdout:
            if "→ pass: step 2/3, weight 50%" in line:
                break
        time.sleep(1)  # the line comes before the weight is set and the state stored
        process.kill()
        process.wait()
        resumed = _run(service.config(images["good"]))
        failed = load.failed()
    result = _result(service)
    assert resumed == 0 and result["metrics"]["phase"] == "promoted"
    assert any("resume" in line and "step 2/3, weight 50%" in line
               for line in result["metrics"]["decisions"])
    assert failed == []


def test_an_image_that_does_not_exist_is_refused_before_anything_moves(
        service: Service, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(service.config("127.0.0.1:5000/shipml-canary-test/nothing:here")) == 2
    assert "canary.image: image 127.0.0.1:5000/shipml-canary-test/nothing:here does not exist" \
        in capsys.readouterr().err


def test_an_image_whose_signature_does_not_verify_never_gets_traffic(
        service: Service, images: dict[str, str], docker_client: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    from shipml.sign.keys import generate_key_pair

    _deploy_stable(service, images)
    _, public_pem = generate_key_pair("test-password")
    (service.folder / "cosign.pub").write_bytes(public_pem)
    repository = f"127.0.0.1:5000/shipml-canary-test/{service.name}"
    _push(docker_client, images["good"], repository, "unsigned")
    try:
        config = service.config(f"{repository}:unsigned", public_key="cosign.pub")
        assert _run(config) == 1
        result = _result(service)
        assert result["metrics"] == {} and result["summary"].startswith(
            f"not rolled out: no signature for {repository}@sha256:")
        running = docker_client.containers.list(
            filters={"label": f"dev.shipml.canary={service.name}"})
        assert sorted(c.name for c in running) == [f"{service.name}-a", f"{service.name}-router"]
    finally:
        docker_client.images.remove(f"{repository}:unsigned", noprune=True)


def _push(docker_client: Any, local: str, repository: str, tag: str) -> str:
    """Push ``local`` as ``repository:tag``; return the manifest digest the registry holds."""
    docker_client.images.get(local).tag(repository, tag)
    # the engine reports a failed push inside the stream, not as an exception
    errors = [line["error"] for line in docker_client.images.push(
        repository, tag=tag, stream=True, decode=True) if "error" in line]
    assert not errors, f"pushing {repository}:{tag} failed: {errors}"
    from shipml.oci import Reference, RegistryClient

    return RegistryClient("127.0.0.1:5000").resolve(Reference.parse(f"{repository}:{tag}"))


def _sign(folder: Path, repository: str, digest: str) -> Path:
    """Sign ``repository@digest`` with a fresh key; return the public key's path."""
    from shipml.oci import Reference, RegistryClient
    from shipml.sign.core import sign_image
    from shipml.sign.keys import generate_key_pair, load_private_key

    private_pem, public_pem = generate_key_pair("test-password")
    (folder / "cosign.key").write_bytes(private_pem)
    (folder / "cosign.pub").write_bytes(public_pem)
    key = load_private_key(folder / "cosign.key", "test-password")
    sign_image(RegistryClient("127.0.0.1:5000"), Reference.parse(f"{repository}@{digest}"), key)
    return folder / "cosign.pub"


def _created_images(docker_client: Any, service: Service, since: float) -> list[str]:
    """Return the image of every container created for ``service`` since ``since``."""
    events = docker_client.events(since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                                  filters={"type": "container", "event": "create",
                                           "label": f"dev.shipml.canary={service.name}"})
    return [event["Actor"]["Attributes"]["image"] for event in events]


def test_an_unsigned_local_image_under_the_signed_tag_never_serves(
        service: Service, images: dict[str, str], docker_client: Any) -> None:
    # The signed image is pushed and signed; then an unsigned local image (wrong predictions)
    # takes its tag on the engine. The tag must mean the registry's signed digest, nothing else.
    _deploy_stable(service, images)
    repository = f"127.0.0.1:5000/shipml-canary-test/{service.name}"
    signed = _push(docker_client, images["good"], repository, "release")
    public_key = _sign(service.folder, repository, signed)
    unsigned = docker_client.images.get(images["shuffled"])
    unsigned.tag(repository, "release")
    started = time.time()
    try:
        config = service.config(f"{repository}:release", public_key=str(public_key),
                                require_gates=False)
        with Load(f"http://127.0.0.1:{service.port}", sample_rows(service.folder)):
            code = _run(config)
        result = _result(service)
        assert code == 0, result["summary"]
        assert result["metrics"]["image"] == f"{repository}@{signed}"
        assert any("only that digest runs" in line for line in result["metrics"]["decisions"])
        created = _created_images(docker_client, service, started)
        assert f"{repository}@{signed}" in created and f"{repository}:release" not in created
        signed_id = docker_client.images.get(f"{repository}@{signed}").id
        slots = docker_client.containers.list(
            filters={"label": [f"dev.shipml.canary={service.name}", "dev.shipml.canary.slot"]})
        assert len(slots) == 1  # the promoted canary; the old stable is gone
        assert slots[0].image.id == signed_id != unsigned.id
        assert slots[0].image.labels["dev.shipml.test.fault"] == "good"
    finally:
        docker_client.images.remove(f"{repository}:release", noprune=True)


def test_a_built_but_unpushed_image_is_rolled_out_by_the_id_build_handed_on(
        service: Service, images: dict[str, str], docker_client: Any) -> None:
    # build (push: false) hands on REPOSITORY:TAG and the local image id; the tag may move
    # before canary runs, the id does not
    from shipml.results import Handoff, StageResult, results_path

    built = docker_client.images.get(images["good"])
    repository = f"shipml-canary-test/{service.name}"
    StageResult(stage="build", status="pass", summary="built locally", started_at="2026-01-01",
                duration_s=1.0, handoff=(Handoff(kind="image", ref=f"{repository}:handed",
                                                 digest=built.id),)
                ).write(service.folder / ".shipml")
    assert results_path(service.folder / ".shipml", "build").is_file()
    docker_client.images.get(images["shuffled"]).tag(repository, "handed")
    try:
        assert _run(service.config(None)) == 0  # type: ignore[arg-type]
        result = _result(service)
        assert result["metrics"]["image"] == built.id
        assert result["metrics"]["revision"] == f"{service.name}-{built.id[7:19]}"
        slot = docker_client.containers.get(f"{service.name}-a")
        assert slot.image.id == built.id
    finally:
        docker_client.images.remove(f"{repository}:handed", noprune=True)


@pytest.mark.parametrize(("same", "message"), [
    (("admin_port", "port"), "canary.target.docker.admin_port: {port} is also {file}:{line} "
                             "canary.target.docker.port; the router, its Runtime API and the two "
                             "slots each need a port of their own"),
    (("b", "admin_port"), "canary.target.docker.ports[1]: {port} is also {file}:{line} "
                          "canary.target.docker.admin_port"),
    (("a", "port"), "canary.target.docker.ports[0]: {port} is also {file}:{line} "
                    "canary.target.docker.port"),
])
def test_two_keys_on_one_port_are_refused_naming_both_before_anything_starts(
        service: Service, images: dict[str, str], docker_client: Any,
        capsys: pytest.CaptureFixture[str], same: tuple[str, str], message: str) -> None:
    ports = {"port": service.port, "admin_port": service.admin_port, "a": service.slots[0],
             "b": service.slots[1]}
    ports[same[0]] = ports[same[1]]
    config = service.config(images["base"])
    text = config.read_text().replace(f"port: {service.port}\n", f"port: {ports['port']}\n") \
        .replace(f"admin_port: {service.admin_port}\n", f"admin_port: {ports['admin_port']}\n") \
        .replace(f"- {service.slots[0]}\n", f"- {ports['a']}\n") \
        .replace(f"- {service.slots[1]}\n", f"- {ports['b']}\n")
    config.write_text(text)
    line = next(number for number, row in enumerate(text.splitlines(), 1)
                if row.strip().startswith({"port": "port:", "admin_port": "admin_port:"}.get(
                    same[1], "ports:")))
    assert _run(config) == 2
    err = capsys.readouterr().err
    assert message.format(port=ports[same[1]], file=config, line=line) in err
    assert docker_client.containers.list(
        all=True, filters={"label": f"dev.shipml.canary={service.name}"}) == []


@pytest.mark.parametrize("key", ["port", "admin_port", "ports"])
def test_a_port_another_process_listens_on_is_refused_before_anything_starts(
        service: Service, images: dict[str, str], docker_client: Any,
        capsys: pytest.CaptureFixture[str], key: str) -> None:
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        config = service.config(images["base"])
        old = {"port": service.port, "admin_port": service.admin_port}.get(key)
        text = config.read_text()
        text = (text.replace(f"{key}: {old}\n", f"{key}: {taken}\n") if old is not None
                else text.replace(f"- {service.slots[1]}\n", f"- {taken}\n"))
        config.write_text(text)
        assert _run(config) == 2
    err = capsys.readouterr().err
    named = "ports[1]" if key == "ports" else key
    assert f"canary.target.docker.{named}: 127.0.0.1:{taken} is already in use by another " \
           "process; choose a free port (nothing was started)" in err
    assert docker_client.containers.list(
        all=True, filters={"label": f"dev.shipml.canary={service.name}"}) == []


def _with_slot_environment(config: Path, environment: dict[str, str]) -> Path:
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    document["canary"]["target"]["docker"]["env"] = environment
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    return config


def test_the_router_is_one_client_of_every_slot_and_never_meets_the_per_client_limit(
        service: Service, images: dict[str, str]) -> None:
    # serve refuses more than half of max_connections from one address; every connection a slot
    # gets comes from HAProxy's, so concurrent load above that half must still be answered
    slot_environment = {"SHIPML_MAX_CONNECTIONS": "16"}
    assert _run(_with_slot_environment(service.config(images["base"]), slot_environment)) == 0
    url = f"http://127.0.0.1:{service.port}"
    loads = [Load(url, sample_rows(service.folder), rate=100) for _ in range(12)]
    for load in loads:
        load.__enter__()
    try:
        code = _run(_with_slot_environment(service.config(images["good"]), slot_environment))
    finally:
        for load in loads:
            load.__exit__()
    result = _result(service)
    assert code == 0, result["summary"]
    assert [load.failed() for load in loads] == [[]] * len(loads)
