"""The image of a user's ordinary single-tensor model: built from ``model: {path, train, test,
label}`` (no ``model.features``), it answers the named rows the canary's probe sends, as
onnxruntime answers them in process, and it serves under the same name whatever the model file
is called (``model.onnx`` before optimize, ``model.optimized.onnx`` after)."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import yaml

from tests._models import export_scaled_logistic
from tests._services import free_port
from tests.build.conftest import (
    BASE_IMAGE,
    REGISTRY,
    SESSION,
    SESSION_LABEL,
    Project,
    record_image,
    run_build,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _write(project: Project, model_file: str, serve: dict[str, Any] | None = None) -> None:
    """A user's ordinary shipml.yaml: the model and its data, no ``model.features``."""
    document: dict[str, Any] = {
        "model": {"path": model_file, "train": "train.csv", "test": "test.csv", "label": "y"},
        "build": {"image": f"{REGISTRY}/shipml-binding-test-{SESSION}", "base_image": BASE_IMAGE,
                  "tags": [{"type": "raw", "value": "test"}], "push": False,
                  "labels": {SESSION_LABEL: SESSION}},
    }
    if serve is not None:
        document["serve"] = serve
    project.config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def single_tensor(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project with a scaler + logistic regression exported from a numpy array (one ``X``
    input, no column names), its train and test sets, built into an image."""
    project = Project(folder=tmp_path_factory.mktemp("single-tensor"))
    export_scaled_logistic(project.folder)
    _write(project, "model.onnx")
    assert run_build(project) == 0
    record_image(project.result()["metrics"]["image_id"])
    return project


@contextlib.contextmanager
def _running(docker_client: Any, image_id: str) -> Iterator[str]:
    """Run ``image_id`` on the host network at a free port; yield its base URL once ready."""
    port = free_port()
    container = docker_client.containers.run(image_id, detach=True, network_mode="host",
                                             environment={"SHIPML_SERVE_PORT": str(port)})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{base}/v2/health/ready", timeout=2).status_code == 200:
                    break
            container.reload()
            assert container.status == "running", container.logs().decode()[-3000:]
            assert time.monotonic() < deadline, container.logs().decode()[-3000:]
            time.sleep(0.2)
        yield base
    finally:
        container.stop(timeout=10)
        container.remove(force=True)


def test_the_image_answers_named_rows_of_a_model_without_model_features(
        single_tensor: Project, docker_client: Any) -> None:
    import onnxruntime as ort

    frame = pd.read_csv(single_tensor.folder / "test.csv").drop(columns=["y"]).head(30)
    session = ort.InferenceSession(str(single_tensor.folder / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    expected = session.run(None, {"X": frame.to_numpy().astype(np.float32)})
    rows = frame.to_dict(orient="records")
    with _running(docker_client, single_tensor.result()["metrics"]["image_id"]) as base:
        answer = requests.post(f"{base}/predict", json={"rows": rows}, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["predictions"] == [int(value) for value in expected[0]]
        np.testing.assert_allclose(body["probabilities"], expected[1], rtol=0, atol=1e-5)
        # the columns are bound by name, not by position: another key order, the same answer
        shuffled = [dict(reversed(list(row.items()))) for row in rows]
        again = requests.post(f"{base}/predict", json={"rows": shuffled}, timeout=30)
        assert again.status_code == 200, again.text
        assert again.json()["predictions"] == body["predictions"]


def test_a_renamed_model_file_serves_under_the_same_name(
        single_tensor: Project, docker_client: Any, tmp_path: Path) -> None:
    renamed = Project(folder=tmp_path)
    for name in ("train.csv", "test.csv"):
        shutil.copy(single_tensor.folder / name, tmp_path / name)
    shutil.copy(single_tensor.folder / "model.onnx", tmp_path / "model.optimized.onnx")
    _write(renamed, "model.optimized.onnx")
    assert run_build(renamed) == 0
    record_image(renamed.result()["metrics"]["image_id"])
    for project in (single_tensor, renamed):
        with _running(docker_client, project.result()["metrics"]["image_id"]) as base:
            metadata = requests.get(f"{base}/v2/models/model", timeout=30)
            assert metadata.status_code == 200, metadata.text
            assert metadata.json()["name"] == "model"


def test_a_declared_serve_name_is_the_image_s_name(single_tensor: Project, tmp_path: Path) -> None:
    from shipml.build.core import prepare_context
    from shipml.config import load_config

    project = Project(folder=tmp_path)
    shutil.copy(single_tensor.folder / "model.onnx", tmp_path / "model.optimized.onnx")
    _write(project, "model.optimized.onnx", serve={"name": "churn"})
    config = load_config(project.config)
    context = prepare_context(config, config.section("build"), tmp_path / "model.optimized.onnx",
                              tmp_path / "context")
    written = yaml.safe_load((context.folder / "shipml.yaml").read_text(encoding="utf-8"))
    assert written["serve"]["name"] == "churn"
