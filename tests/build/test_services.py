""".ci/services: a second run reuses everything it started, and says so; what it serves answers."""

from __future__ import annotations

import subprocess

import pytest
import requests

from tests._services import REPO
from tests.build.conftest import AUTH_REGISTRY, REGISTRY, REGISTRY_PASSWORD, REGISTRY_USER

pytestmark = [pytest.mark.docker]


def test_a_second_run_reuses_every_service(services: None) -> None:
    completed = subprocess.run(["bash", str(REPO / ".ci" / "services")], capture_output=True,
                               text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    # the canary's services come later: each says "reused" too
    assert all(": reused (" in line for line in lines), lines
    assert {"services: dockerd: reused (already answering on /var/run/docker.sock)",
            f"services: registry: reused (http://{REGISTRY} already answers)",
            f"services: registry-auth: reused (http://{AUTH_REGISTRY} already answers)",
            "services: base image: reused (shipml-test/debian:bookworm)"} <= set(lines)


def test_the_registries_answer_as_documented(services: None) -> None:
    assert requests.get(f"http://{REGISTRY}/v2/", timeout=5).status_code == 200
    assert requests.get(f"http://{AUTH_REGISTRY}/v2/", timeout=5).status_code == 401
    answer = requests.get(f"http://{AUTH_REGISTRY}/v2/", auth=(REGISTRY_USER, REGISTRY_PASSWORD), timeout=5)
    assert answer.status_code == 200
    listed = subprocess.run(["bash", str(REPO / ".ci" / "services"), "env"], capture_output=True,
                            text=True, timeout=30, check=True).stdout
    assert f"SHIPML_REGISTRY_USER={REGISTRY_USER}\n" in listed
    assert f"SHIPML_REGISTRY_PASSWORD={REGISTRY_PASSWORD}\n" in listed


def test_an_unknown_command_is_refused() -> None:
    completed = subprocess.run(["bash", str(REPO / ".ci" / "services"), "restart"],
                               capture_output=True, text=True, timeout=30, check=False)
    assert completed.returncode == 1
    assert completed.stderr == "services: error: unknown command restart; use start, stop or env\n"
