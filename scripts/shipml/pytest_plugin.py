"""pytest plugin: the team's own model tests get the shipped model and its data as fixtures.

``shipml validate`` loads it with ``-p shipml.pytest_plugin``; it also works by hand:
``pytest -p shipml.pytest_plugin tests/model`` reads ``./shipml.yaml`` (or ``$SHIPML_CONFIG``).

Fixtures (session-scoped): ``model`` (an :class:`shipml.onnx_model.OnnxModel` with ``predict`` and
``predict_proba`` on DataFrames), ``train_data`` and ``test_data`` (pandas DataFrames, label
included), ``shipml_config`` (the whole validated configuration as a dict).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from shipml.config import Config, find_config, load_config
from shipml.data import load_table
from shipml.onnx_model import OnnxModel


@pytest.fixture(scope="session")
def shipml_config() -> Config:
    """The validated shipml configuration (``shipml.yaml`` or ``$SHIPML_CONFIG``)."""
    return load_config(find_config(None))


@pytest.fixture(scope="session")
def model(shipml_config: Config) -> OnnxModel:
    """The ONNX model that will ship, as an estimator over onnxruntime."""
    section = shipml_config.section("model")
    path = os.environ.get("SHIPML_MODEL_PATH") or section.get("path")
    if not path:
        pytest.fail("model.path is not set in shipml.yaml", pytrace=False)
    return OnnxModel(shipml_config.resolve_path(str(path), "model", "path"),
                     features=section.get("features"))


def _table(config: Config, key: str, env: str) -> pd.DataFrame:
    path: Any = os.environ.get(env) or config.section("model").get(key)
    if not path:
        pytest.fail(f"model.{key} is not set in shipml.yaml", pytrace=False)
    return load_table(config.resolve_path(str(path), "model", key), f"model.{key}").frame


@pytest.fixture(scope="session")
def train_data(shipml_config: Config) -> pd.DataFrame:
    """The training data, label column included."""
    return _table(shipml_config, "train", "SHIPML_TRAIN_PATH")


@pytest.fixture(scope="session")
def test_data(shipml_config: Config) -> pd.DataFrame:
    """The test data, label column included."""
    return _table(shipml_config, "test", "SHIPML_TEST_PATH")


def pytest_report_header(config: pytest.Config) -> str:
    """Say which config the fixtures come from."""
    chosen = os.environ.get("SHIPML_CONFIG") or "shipml.yaml"
    return f"shipml: fixtures model, train_data, test_data from {Path(chosen)}"
