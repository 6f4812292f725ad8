"""Fixtures of the monitor tests: the bundled example served by a real ``shipml serve`` with the
prediction log on, clean test rows then a shifted copy sent to it; a GitHub stand-in with the
issue and repository_dispatch endpoints."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
import yaml

from shipml.example import example_dir
from tests.monitor.fake_issues import FakeIssues
from tests.report.conftest import TOKEN
from tests.serve.conftest import start_server

#: features moved by SHIFT_SD training standard deviations in the shifted copy
SHIFTED = ("mean_radius", "mean_texture", "mean_area")
SHIFT_SD = 3.0
LABEL = "benign"


@dataclass(frozen=True)
class Served:
    """The example's folder and its prediction log: clean rows before ``boundary``, shifted after."""

    folder: Path
    log: Path
    boundary: str
    requests: int


def copy_example(folder: Path) -> Path:
    """Copy the bundled example's model and data into ``folder``; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("model.onnx", "train.csv", "test.csv"):
        shutil.copy(example_dir() / name, folder / name)
    return folder


def shifted(frame: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with the SHIFTED features moved by SHIFT_SD standard deviations of train."""
    moved = frame.copy()
    for name in SHIFTED:
        moved[name] = moved[name] + SHIFT_SD * train[name].std()
    return moved


def write_config(folder: Path, monitor: dict[str, Any] | None = None, **extra: Any) -> Path:
    """Write ``folder/shipml.yaml`` with the example's model keys and a ``monitor`` section."""
    document: dict[str, Any] = {"model": {"path": "model.onnx", "label": LABEL,
                                          "train": "train.csv", "test": "test.csv"}}
    if monitor is not None:
        document["monitor"] = monitor
    document.update(extra)
    path = folder / "shipml.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def _send(url: str, frame: pd.DataFrame) -> int:
    rows = json.loads(frame.to_json(orient="records"))
    with requests.Session() as session:
        for row in rows:
            answer = session.post(f"{url}/predict", json={"rows": [row]}, timeout=10)
            assert answer.status_code == 200, answer.text
    return len(rows)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Serve the example with every prediction logged; send the test set, then a shifted copy."""
    folder = copy_example(tmp_path_factory.mktemp("served"))
    log = folder / "logs" / "predictions.jsonl"
    write_config(folder, serve={"log_predictions": {"path": str(log), "sample": 1.0},
                                "access_log": False})
    test = pd.read_csv(folder / "test.csv").drop(columns=[LABEL])
    train = pd.read_csv(folder / "train.csv")
    server = start_server(folder)
    try:
        sent = _send(server.url, test)
        time.sleep(0.05)
        boundary = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        time.sleep(0.05)
        sent += _send(server.url, shifted(test, train))
    finally:
        assert server.stop() == 0  # SIGTERM by pid; the drain flushes the log
    yield Served(folder=folder, log=log, boundary=boundary, requests=sent)


@pytest.fixture
def github() -> Iterator[FakeIssues]:
    """The GitHub stand-in with issue and dispatch endpoints, accepting TOKEN."""
    fake = FakeIssues(TOKEN).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def on_github(monkeypatch: pytest.MonkeyPatch, github: FakeIssues) -> FakeIssues:
    """Run as GitHub Actions against the stand-in (token, repository, run URL)."""
    for name, value in {"SHIPML_CI": "github", "GITHUB_API_URL": github.base_url,
                        "GITHUB_REPOSITORY": github.repository, "GITHUB_TOKEN": TOKEN,
                        "GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": "77"}.items():
        monkeypatch.setenv(name, value)
    return github
