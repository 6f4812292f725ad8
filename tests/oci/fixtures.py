"""pytest fixtures over :mod:`tests.oci._registry`, shared by the oci and sign tests (each
conftest imports them): one registry of each kind per session, and a Docker config that logs
in to the ones with auth."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.oci._registry import (
    PASSWORD,
    USER,
    Registry,
    TokenServer,
    require_registry_tools,
    run_registry,
)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain registry (no auth) on 127.0.0.1."""
    require_registry_tools()
    with run_registry(tmp_path_factory.mktemp("registry-plain")) as running:
        yield running


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry that asks for basic auth (htpasswd: USER/PASSWORD)."""
    require_registry_tools()
    with run_registry(tmp_path_factory.mktemp("registry-htpasswd"), "htpasswd") as running:
        yield running


@pytest.fixture(scope="session")
def token_server() -> Iterator[TokenServer]:
    """The token server the token registry trusts."""
    with TokenServer() as server:
        yield server


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory,
                   token_server: TokenServer) -> Iterator[Registry]:
    """A registry that answers 401 with a Bearer challenge pointing at ``token_server``."""
    require_registry_tools()
    with run_registry(tmp_path_factory.mktemp("registry-token"), "token", token_server) as running:
        yield running


def write_docker_config(folder: Path, *registries: Registry, password: str = PASSWORD) -> Path:
    """Write ``folder/config.json`` holding credentials for ``registries``; return ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    document = {"auths": {registry.address: {"auth": auth} for registry in registries}}
    (folder / "config.json").write_text(json.dumps(document), encoding="utf-8")
    return folder


@pytest.fixture()
def docker_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 basic_registry: Registry, token_registry: Registry) -> Path:
    """``DOCKER_CONFIG`` pointing at a config that logs in to the auth registries."""
    folder = write_docker_config(tmp_path / "docker-config", basic_registry, token_registry)
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    return folder
