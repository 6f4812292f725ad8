"""The build tests run against the real Docker Engine and the two local registries that
``.ci/services`` starts (the ``services`` fixture of tests/conftest.py runs it once per session;
if it cannot start them, the tests fail with its output, they are never skipped)."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REGISTRY = "127.0.0.1:5000"
AUTH_REGISTRY = "127.0.0.1:5001"
#: the test user of the basic-auth registry (.ci/services documents it)
REGISTRY_USER = "shipml"
REGISTRY_PASSWORD = "shipml-test-password"
BASE_IMAGE = "shipml-test/debian:bookworm"
#: one repository name per session: other tests push to the same registries
SESSION = uuid.uuid4().hex[:8]
SESSION_LABEL = "dev.shipml.test-session"
#: the dependency layer of the built-in image, kept between sessions as build cache
CACHE_TAG = "shipml-test/build-cache:dependencies"


@pytest.fixture(scope="session")
def docker_client(services: None) -> Iterator[Any]:
    """A Docker SDK client; every image the tests record is removed at the end (by id)."""
    import docker

    client = docker.from_env(timeout=900)
    yield client
    # Keep the dependency layer as build cache for the next session: a tagged image stops the
    # pruning of untagged parents. Then every image of this session goes, children first (the
    # engine adds labels as the last steps, so the steps' own images carry the label too).
    for image_id in _CREATED:
        with contextlib.suppress(docker.errors.APIError):
            for layer in client.api.history(image_id):
                built_here = layer.get("Id", "<missing>") != "<missing>"
                if built_here and "pip install" in str(layer.get("CreatedBy")):
                    repository, tag = CACHE_TAG.split(":")
                    client.api.tag(layer["Id"], repository, tag, force=True)
                    break
    pending = [*reversed(_CREATED)]
    pending += [image.id for image in client.images.list(
        all=True, filters={"label": f"{SESSION_LABEL}={SESSION}"}) if image.id not in pending]
    while pending:
        left = []
        for image_id in pending:
            try:
                client.images.remove(image_id, force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError:
                left.append(image_id)
        if len(left) == len(pending):
            break
        pending = left
    client.close()


_CREATED: list[str] = []


def record_image(image_id: str) -> None:
    """Remember an image the tests built, to remove it when the session ends."""
    if image_id and image_id not in _CREATED:
        _CREATED.append(image_id)


@dataclass
class Project:
    """A folder with the example model and a shipml.yaml whose build section the test writes."""

    folder: Path
    build: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.folder / "shipml.yaml"

    @property
    def output_dir(self) -> Path:
        return self.folder / ".shipml"

    def write(self, **build: Any) -> Path:
        """Write shipml.yaml with the example model and ``build`` over the defaults."""
        section = {"image": f"{REGISTRY}/shipml-build-test-{SESSION}", "base_image": BASE_IMAGE,
                   "tags": [{"type": "raw", "value": "test"}], **build}
        # every image a test builds carries the session's label: the teardown finds them all
        section["labels"] = {SESSION_LABEL: SESSION, **(build.get("labels") or {})}
        section = {key: value for key, value in section.items() if value is not None}
        document = {"model": {"path": "model.onnx", "label": "benign"}, "build": section}
        self.config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return self.config

    def result(self) -> dict[str, Any]:
        import json

        return dict(json.loads((self.output_dir / "results" / "build.json").read_text()))


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A fresh project with the bundled example model."""
    from shipml.example import example_dir

    for name in ("model.onnx", "test.csv"):
        shutil.copy(Path(example_dir()) / name, tmp_path / name)
    return Project(folder=tmp_path)


def run_build(project: Project, *args: str) -> int:
    """Run ``shipml build`` in-process in the project's folder; return the exit code. Tests set
    the environment (GITHUB_*, SHIPML_*) with monkeypatch."""
    from shipml.cli import main

    previous = Path.cwd()
    os.chdir(project.folder)
    try:
        return main(["build", "--config", str(project.config), "--output-dir",
                     str(project.output_dir), *args])
    finally:
        os.chdir(previous)
