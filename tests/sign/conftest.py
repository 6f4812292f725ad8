"""Fixtures of the sign tests: real registries (tests/oci/fixtures.py), key pairs written as
cosign writes them, and a workspace holding gate results."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from shipml.oci import Reference, RegistryClient
from shipml.results import Check, Handoff, StageResult
from shipml.sign.keys import generate_key_pair
from tests.oci._registry import Registry, push_test_image
from tests.oci.fixtures import (  # noqa: F401 - fixtures
    basic_registry,
    docker_login,
    registry,
    token_registry,
    token_server,
)

PASSWORD = "correct horse battery staple"
#: cosign's own data, copied unedited from ../shared/cosign-vectors (vectors/README.md: sources)
VECTORS = Path(__file__).resolve().parent / "vectors"


@pytest.fixture(autouse=True)
def _signing_environment(tmp_path_factory: pytest.TempPathFactory,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """No Docker login or key password of the machine, and the built-in signer unless a test
    puts a cosign on PATH and asks for it."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path_factory.mktemp("no-docker-login")))
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    monkeypatch.setenv("SHIPML_COSIGN", "never")


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path
    password: str


def _write_pair(folder: Path, password: str) -> KeyPair:
    folder.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = generate_key_pair(password)
    (folder / "cosign.key").write_bytes(private_pem)
    (folder / "cosign.pub").write_bytes(public_pem)
    return KeyPair(folder / "cosign.key", folder / "cosign.pub", password)


@pytest.fixture(scope="session")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """The signer's key pair (encrypted with PASSWORD)."""
    return _write_pair(tmp_path_factory.mktemp("keys"), PASSWORD)


@pytest.fixture(scope="session")
def other_key_pair(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """Somebody else's key pair."""
    return _write_pair(tmp_path_factory.mktemp("other-keys"), "another password")


def gate_result(stage: str, status: str = "pass", failed: str = "") -> StageResult:
    """A gate's result with one passing check, and one failing check named ``failed``."""
    checks = [Check(f"{stage} check holds", "pass", observed=1.0, threshold=0.5)]
    if failed:
        checks.append(Check(failed, "fail", observed=31.0, threshold=20.0))
    handoff = (Handoff(kind="model", path="optimized.onnx", sha256="ab" * 32),) \
        if stage == "optimize" else ()
    return StageResult(stage=stage, status=status, summary=f"{stage} {status}",  # type: ignore[arg-type]
                       started_at="2026-11-30T10:00:00+00:00", duration_s=1.0,
                       checks=tuple(checks), handoff=handoff)


@pytest.fixture()
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with model.onnx, shipml.yaml naming it, and passing validate and
    latency results; made the working directory."""
    (tmp_path / "model.onnx").write_bytes(b"not really onnx, but bytes with a sha256")
    (tmp_path / "shipml.yaml").write_text("model:\n  path: model.onnx\n", encoding="utf-8")
    for stage in ("validate", "latency"):
        gate_result(stage).write(tmp_path / ".shipml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pushed(target: Registry, content: bytes = b"model v1", tag: str = "v1",
           repository: str = "") -> Reference:
    """Push a tiny image to ``target`` and return its reference (tag and digest)."""
    repository = repository or f"team/{uuid.uuid4().hex[:12]}"
    digest = push_test_image(RegistryClient(target.address), repository, tag, content)
    return Reference(target.address, repository, tag=tag, digest=digest)
