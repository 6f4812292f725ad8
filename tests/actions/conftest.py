"""Fixtures of the act tests: one cache kept across sessions, one copy of the action repository per
session, the local engine and registry for the release, a test key, and cleanup of every container
and image a rollout under act started (by the service's name, which the test chose)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._services import free_port
from tests.actions._act import REPO, act_cache_home, copy_action_source

REGISTRY = "127.0.0.1:5000"
BASE_IMAGE = "shipml-test/debian:bookworm"
ROUTER_IMAGE = "shipml-test/canary-router:latest"
#: a test password: long enough that act's masking of it hides nothing else in the log
KEY_PASSWORD = "shipml-act-test-key-password-0f3a"


@pytest.fixture(scope="session")
def act_home() -> Path:
    return act_cache_home()


@pytest.fixture(scope="session")
def action_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_action_source(tmp_path_factory.mktemp("action") / "shipml")


@pytest.fixture(scope="session")
def test_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cosign key pair made by `shipml keygen` for this session (never a real key)."""
    folder = tmp_path_factory.mktemp("key")
    subprocess.run([str(REPO / ".venv" / "bin" / "shipml"), "keygen", "--output-key-prefix",
                    str(folder / "cosign")], env={**os.environ, "COSIGN_PASSWORD": KEY_PASSWORD},
                   check=True, capture_output=True)
    return folder / "cosign.key"


@pytest.fixture
def service_name() -> str:
    """A fresh service name, for a test that starts nothing under it."""
    return f"shipml-act-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def service(services: None) -> Iterator[str]:
    """A fresh service name; its containers and images go at the end."""
    name = f"shipml-act-{uuid.uuid4().hex[:8]}"
    yield name
    _remove(name)


def _remove(name: str) -> None:
    import docker

    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"name": f"^{name}-"}):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
    for image in client.images.list(name=f"{REGISTRY}/{name}"):
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image.id, force=True)
    client.close()


def release_config(service: str, **extra: Any) -> dict[str, Any]:
    """shipml.yaml of the example for a release on this machine: a quick latency gate, the image
    on the loopback registry, a key from the environment, a canary on the local engine judged by
    the probe alone (first deploys need no metrics)."""
    return {
        "model": {"path": "model.onnx", "label": "benign", "train": "train.csv", "test": "test.csv"},
        "latency": {"batch_sizes": [1], "max_time_s": 2, "min_runs": 50, "process_time_s": 0.2,
                    "min_processes": 2},
        "build": {"image": f"{REGISTRY}/{service}", "base_image": BASE_IMAGE},
        "canary": {
            "service": service, "steps": [{"weight": 50, "pause": 0}, {"weight": 100}],
            "interval": "1s", "failure_limit": 2, "min_requests": 1, "step_timeout": "30s",
            "metrics": [], "probe": {"enabled": True, "rows": 10},
            "target": {"type": "docker", "docker": {
                "router_image": ROUTER_IMAGE, "router_base_image": BASE_IMAGE, "port": free_port(),
                "admin_port": free_port(), "ports": [free_port(), free_port()], "drain_s": 0,
                "ready_timeout_s": 90}}},
        **extra,
    }
