"""Fixtures of the latency tests: the bundled example, a slower copy of it, a tiny transformer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests._models import add_redundant_work
from tests._models import encoder as encoder  # the shared session fixture


@pytest.fixture(scope="session")
def slow_example(example: Path) -> Path:
    """The example's graph plus redundant work: several times slower, same inputs."""
    target = example / "slow.onnx"
    add_redundant_work(example / "model.onnx", target, matmuls=12)
    return target


@pytest.fixture()
def workdir(tmp_path: Path, example: Path, slow_example: Path,
            monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh folder holding the example's files and ``slow.onnx``, made the working directory."""
    for name in ("model.onnx", "train.csv", "test.csv"):
        shutil.copy(example / name, tmp_path / name)
    shutil.copy(slow_example, tmp_path / "slow.onnx")
    monkeypatch.chdir(tmp_path)
    return tmp_path
