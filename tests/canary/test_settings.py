"""The rollout settings refuse what a target cannot carry, naming the key: a service name a
Kubernetes Service cannot have, a lease too short to survive one slow answer; the default service
name from a model file is always a valid one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shipml.canary.core import read_settings
from shipml.cli import main
from shipml.config import load_config


def _config(folder: Path, model: str = "model.onnx", **canary: Any) -> Path:
    path = folder / "shipml.yaml"
    path.write_text(yaml.safe_dump({"model": {"path": model}, "canary": {
        "image": "127.0.0.1:5000/churn:v2", "target": {"type": "kubernetes"}, **canary}}),
        encoding="utf-8")
    return path


@pytest.mark.parametrize("service", ["9lives", "-churn", "churn-", "Churn", "churn_v2", "a" * 43])
def test_a_service_name_a_kubernetes_service_cannot_have_is_exit_2_naming_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], service: str) -> None:
    assert main(["canary", "status", "--config", str(_config(tmp_path, service=service))]) == 2
    err = capsys.readouterr().err
    assert f"canary.service: {service!r} does not match" in err and "a letter first" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("model", "service"), [
    ("churn.onnx", "churn"), ("models/Churn_V2.onnx", "churn-v2"),
    ("2024-churn.onnx", "model-2024-churn"), ("___.onnx", "model"),
    (f"{'x' * 50}.onnx", "x" * 42),
])
def test_the_default_service_name_from_the_model_file_is_always_valid(
        tmp_path: Path, model: str, service: str) -> None:
    assert read_settings(load_config(_config(tmp_path, model))).service == service


def test_a_lease_too_short_to_survive_one_slow_answer_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["canary", "status", "--config", str(_config(tmp_path, lease="5s"))]) == 2
    err = capsys.readouterr().err
    assert "canary.lease: '5s' is shorter than 10s; the holder renews it every third of it" in err
    assert read_settings(load_config(_config(tmp_path, lease="10s"))).lease_s == 10.0
