"""The built-in image for real: built on the local debootstrap base through the engine, run on the
host network, asked for predictions over HTTP, pushed to the plain and to the basic-auth
registry, and rebuilt from the cache after a model-only change."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from tests._services import free_port
from tests.build.conftest import (
    AUTH_REGISTRY,
    BASE_IMAGE,
    REGISTRY,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    SESSION,
    Project,
    record_image,
    run_build,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SHA = "0123456789abcdef0123456789abcdef01234567"
MANIFEST_TYPES = ", ".join(["application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.oci.image.manifest.v1+json"])


def _github(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ref: str) -> Path:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"repository": {"full_name": "acme/churn", "default_branch": "main",
                                                "license": {"spdx_id": "Apache-2.0"}}}))
    outputs = tmp_path / "github_output.txt"
    outputs.write_text("")
    for name, value in {"GITHUB_ACTIONS": "true", "GITHUB_REF": ref, "GITHUB_SHA": SHA,
                        "GITHUB_REPOSITORY": "acme/churn", "GITHUB_SERVER_URL": "https://github.com",
                        "GITHUB_EVENT_PATH": str(event), "GITHUB_EVENT_NAME": "push",
                        "GITHUB_OUTPUT": str(outputs)}.items():
        monkeypatch.setenv(name, value)
    return outputs


def _registry_digest(registry: str, name: str, tag: str, auth: tuple[str, str] | None = None) -> str:
    answer = requests.head(f"http://{registry}/v2/{name}/manifests/{tag}", auth=auth, timeout=10,
                           headers={"Accept": MANIFEST_TYPES})
    assert answer.status_code == 200, answer.status_code
    return str(answer.headers["Docker-Content-Digest"])


@pytest.fixture(scope="module")
def example_image(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The example's image, built on a tag push and pushed to the plain registry."""
    from shipml.example import example_dir

    folder = tmp_path_factory.mktemp("image")
    for name in ("model.onnx", "test.csv"):
        (folder / name).write_bytes((Path(example_dir()) / name).read_bytes())
    project = Project(folder=folder)
    project.write(tags=[{"type": "sha"}, {"type": "tag"}, {"type": "semver", "pattern": "{{version}}"},
                        {"type": "semver", "pattern": "{{major}}.{{minor}}"}, {"type": "latest"}])
    with pytest.MonkeyPatch.context() as monkeypatch:
        outputs_file = _github(monkeypatch, folder, "refs/tags/v1.4.2")
        (folder / ".shipml" / "results").mkdir(parents=True)
        (folder / ".shipml" / "results" / "validate.json").write_text(json.dumps(
            {"stage": "validate", "status": "pass", "summary": "", "started_at": "", "duration_s": 1}))
        (folder / ".shipml" / "results" / "latency.json").write_text(json.dumps(
            {"stage": "latency", "status": "fail", "summary": "", "started_at": "", "duration_s": 1}))
        code = run_build(project)
        outputs = outputs_file.read_text()
    assert code == 0
    result = project.result()
    record_image(result["metrics"]["image_id"])
    yield {"project": project, "result": result, "outputs": outputs}


def test_the_result_hands_on_the_pushed_digest(example_image: dict[str, Any]) -> None:
    result = example_image["result"]
    metrics = result["metrics"]
    repository = f"{REGISTRY}/shipml-build-test-{SESSION}"
    assert result["status"] == "pass"
    assert metrics["image"] == repository
    assert metrics["tags"] == ["sha-0123456", "v1.4.2", "1.4.2", "1.4"]
    assert metrics["digest"].startswith("sha256:") and len(metrics["digest"]) == 71
    assert result["handoff"] == [{"kind": "image", "ref": f"{repository}@{metrics['digest']}",
                                  "digest": metrics["digest"]}]
    for tag in metrics["tags"]:
        assert _registry_digest(REGISTRY, f"shipml-build-test-{SESSION}", tag) == metrics["digest"]
    outputs = example_image["outputs"]
    for name, value in (("image", repository), ("digest", metrics["digest"]),
                        ("tags", "sha-0123456,v1.4.2,1.4.2,1.4")):
        assert f"{name}<<ghadelimiter_" in outputs and f"\n{value}\n" in outputs


def test_labels_say_where_it_came_from_what_it_serves_and_what_the_gates_said(
        example_image: dict[str, Any], docker_client: Any) -> None:
    from shipml.example import example_dir

    labels = docker_client.images.get(example_image["result"]["metrics"]["image_id"]).labels
    model_sha = __import__("hashlib").sha256((Path(example_dir()) / "model.onnx").read_bytes()).hexdigest()
    assert labels["org.opencontainers.image.source"] == "https://github.com/acme/churn"
    assert labels["org.opencontainers.image.revision"] == SHA
    assert labels["org.opencontainers.image.version"] == "1.4.2"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.created"].endswith("Z")
    assert labels["dev.shipml.model.sha256"] == model_sha
    assert labels["dev.shipml.gate.validate"] == "pass"
    assert labels["dev.shipml.gate.latency"] == "fail"
    assert labels["dev.shipml.gates"] == "fail"


def test_it_runs_as_a_user_with_a_healthcheck(example_image: dict[str, Any], docker_client: Any) -> None:
    config = docker_client.images.get(example_image["result"]["metrics"]["image_id"]).attrs["Config"]
    assert config["User"] == "10001:10001"
    assert "/v2/health/ready" in " ".join(config["Healthcheck"]["Test"])


def _expected(test_csv: Path, model: Path) -> tuple[list[int], np.ndarray[Any, Any], list[dict[str, Any]]]:
    import onnxruntime as ort

    frame = pd.read_csv(test_csv).drop(columns=["benign"]).head(25)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    feeds = {}
    for item in session.get_inputs():
        column = frame[item.name].to_numpy()
        feeds[item.name] = (column.astype(object) if item.type == "tensor(string)"
                            else column.astype(np.float64)).reshape(-1, 1)
    labels, probabilities = session.run(None, feeds)
    return [int(v) for v in labels], np.asarray(probabilities), frame.to_dict(orient="records")


def test_the_container_answers_what_onnxruntime_answers_in_process(
        example_image: dict[str, Any], docker_client: Any) -> None:
    project: Project = example_image["project"]
    port = free_port()
    container = docker_client.containers.run(
        example_image["result"]["metrics"]["image_id"], detach=True, network_mode="host",
        environment={"SHIPML_SERVE_PORT": str(port)})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            container.reload()
            assert container.status == "running", container.logs().decode()[-3000:]
            assert time.monotonic() < deadline, container.logs().decode()[-3000:]
            time.sleep(0.2)
        labels, probabilities, rows = _expected(project.folder / "test.csv", project.folder / "model.onnx")
        answer = requests.post(f"{base}/predict", json={"rows": rows}, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["predictions"] == labels
        np.testing.assert_allclose(body["probabilities"], probabilities, rtol=0, atol=1e-6)
        # the same through the Open Inference Protocol
        inputs = [{"name": name, "shape": [len(rows), 1],
                   "datatype": "BYTES" if name == "size_band" else "FP64",
                   "data": [row[name] for row in rows]} for name in rows[0]]
        infer = requests.post(f"{base}/v2/models/model/infer", json={"inputs": inputs}, timeout=30)
        assert infer.status_code == 200, infer.text
        outputs = {item["name"]: item for item in infer.json()["outputs"]}
        assert outputs["label"]["data"] == labels
        assert container.exec_run("id -u").output.decode().strip() == "10001"
        # the engine's HEALTHCHECK (every 10 s) reaches the same readiness endpoint
        deadline = time.monotonic() + 40
        while (container.attrs["State"].get("Health") or {}).get("Status") != "healthy":
            assert time.monotonic() < deadline, container.attrs["State"]
            time.sleep(1)
            container.reload()
    finally:
        container.stop(timeout=10)
        container.remove(force=True)


def test_a_model_only_change_reuses_every_dependency_layer(
        example_image: dict[str, Any], project: Project, docker_client: Any) -> None:
    import onnx

    project.write(push=False)
    assert run_build(project) == 0
    first = project.result()["metrics"]
    record_image(first["image_id"])
    model = onnx.load(str(project.folder / "model.onnx"))
    model.doc_string = "retrained"  # another file, the same server
    onnx.save(model, str(project.folder / "model.onnx"))
    assert run_build(project) == 0
    second = project.result()["metrics"]
    record_image(second["image_id"])
    before = docker_client.images.get(first["image_id"]).attrs["RootFS"]["Layers"]
    after = docker_client.images.get(second["image_id"]).attrs["RootFS"]["Layers"]
    # base, user, requirements, dependencies: the same layers; the model's layer (the last) is new
    base_layers = len(docker_client.images.get(BASE_IMAGE).attrs["RootFS"]["Layers"])
    # user, requirements, pip, wheel, unpack, workdir, config, model
    assert len(before) == len(after) == base_layers + 8
    assert before[:base_layers + 3] == after[:base_layers + 3]
    assert before[-1] != after[-1]
    assert second["cached_steps"] >= 5  # ENV, user, ARG, requirements, dependencies at least
    assert second["model_sha256"] != first["model_sha256"]


def test_push_to_the_registry_with_basic_auth(project: Project, docker_client: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"shipml-build-auth-{SESSION}"
    project.write(image=f"{AUTH_REGISTRY}/{name}")
    monkeypatch.setenv("SHIPML_REGISTRY_USERNAME", REGISTRY_USER)
    monkeypatch.setenv("SHIPML_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
    assert run_build(project) == 0
    result = project.result()
    record_image(result["metrics"]["image_id"])
    assert _registry_digest(AUTH_REGISTRY, name, "test", (REGISTRY_USER, REGISTRY_PASSWORD)) == \
        result["metrics"]["digest"]


def test_push_with_docker_login_credentials(project: Project, docker_client: Any, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # What docker/login-action leaves behind: DOCKER_CONFIG/config.json with the credentials.
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    token = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
    (config_dir / "config.json").write_text(json.dumps({"auths": {AUTH_REGISTRY: {"auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    name = f"shipml-build-login-{SESSION}"
    project.write(image=f"{AUTH_REGISTRY}/{name}")
    assert run_build(project) == 0
    result = project.result()
    record_image(result["metrics"]["image_id"])
    assert _registry_digest(AUTH_REGISTRY, name, "test", (REGISTRY_USER, REGISTRY_PASSWORD)) == \
        result["metrics"]["digest"]
