"""Fixtures of the optimize tests: real models trained or exported with fixed seeds."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests._models import export_encoder


def _mlp_folder(folder: Path, *, regression: bool) -> Path:
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification, make_regression
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    if regression:
        features, target = make_regression(n_samples=900, n_features=12, noise=5.0,
                                           random_state=3)
        estimator = MLPRegressor(hidden_layer_sizes=(64, 64), max_iter=600, random_state=0)
    else:
        features, target = make_classification(n_samples=900, n_features=12, n_informative=8,
                                               random_state=3)
        estimator = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=600, random_state=0)
    features = features.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an MLP that has not fully converged is still a model
        estimator.fit(features[:600], target[:600])
    options = None if regression else {"zipmap": False}
    onnx_model = to_onnx(estimator, features[:1], options=options,
                         target_opset={"": 17, "ai.onnx.ml": 3})
    (folder / "model.onnx").write_bytes(onnx_model.SerializeToString())
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(12)])
    frame["y"] = target
    frame[:600].to_csv(folder / "train.csv", index=False)
    frame[600:].to_csv(folder / "test.csv", index=False)
    return folder


@pytest.fixture(scope="session")
def mlp_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with an MLP classifier (one float tensor input, MatMul layers) and its data."""
    return _mlp_folder(tmp_path_factory.mktemp("mlp_classifier"), regression=False)


@pytest.fixture(scope="session")
def mlp_regressor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with an MLP regressor and its data."""
    return _mlp_folder(tmp_path_factory.mktemp("mlp_regressor"), regression=True)


@pytest.fixture(scope="session")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small transformer encoder (width 128) with dynamic batch and sequence axes."""
    path = tmp_path_factory.mktemp("encoder") / "encoder.onnx"
    export_encoder(path, width=128)
    return path


def copy_case(source: Path, target: Path) -> Path:
    """Copy a case folder's model and CSVs into ``target``; return ``target``."""
    for name in ("model.onnx", "train.csv", "test.csv"):
        if (source / name).exists():
            shutil.copy(source / name, target / name)
    return target
