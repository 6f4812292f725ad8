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
    """The validated shipml configuration (``shipml.yaml`` or ``$SHIPML_CONFIG``), with the
    ``model:`` keys that ``SHIPML_MODEL``, ``SHIPML_TRAIN``... set, as for the CLI."""
    import argparse

    from shipml._stage import MODEL_OPTIONS, overrides

    return load_config(find_config(None), overrides(argparse.Namespace(), MODEL_OPTIONS))


@pytest.fixture(scope="session")
def model(shipml_config: Config) -> OnnxModel:
    """The ONNX model that will ship, as an estimator over onnxruntime."""
    section = shipml_config.section("model")
    if not section.get("path"):
        pytest.fail("model.path is not set in shipml.yaml (nor $SHIPML_MODEL)", pytrace=False)
    return OnnxModel(shipml_config.resolve_path(str(section["path"]), "model", "path"),
                     features=section.get("features"))


def _table(config: Config, key: str) -> pd.DataFrame:
    path: Any = config.section("model").get(key)
    if not path:
        pytest.fail(f"model.{key} is not set in shipml.yaml (nor $SHIPML_{key.upper()})",
                    pytrace=False)
    return load_table(config.resolve_path(str(path), "model", key), f"model.{key}").frame


@pytest.fixture(scope="session")
def train_data(shipml_config: Config) -> pd.DataFrame:
    """The training data, label column included."""
    return _table(shipml_config, "train")


@pytest.fixture(scope="session")
def test_data(shipml_config: Config) -> pd.DataFrame:
    """The test data, label column included."""
    return _table(shipml_config, "test")


def pytest_report_header(config: pytest.Config) -> str:
    """Say which config the fixtures come from."""
    chosen = os.environ.get("SHIPML_CONFIG") or "shipml.yaml"
    return f"shipml: fixtures model, train_data, test_data from {Path(chosen)}"
