"""Fixtures of the OCI client tests: real registries (tests/oci/fixtures.py)."""

from __future__ import annotations

import pytest

from tests.oci.fixtures import (  # noqa: F401 - fixtures
    basic_registry,
    docker_login,
    registry,
    token_registry,
    token_server,
)


@pytest.fixture(autouse=True)
def _no_outer_docker_login(tmp_path_factory: pytest.TempPathFactory,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no Docker login of the machine they run on unless they write one."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path_factory.mktemp("no-docker-login")))
