"""The ONNX artifact as a scikit-learn-style estimator."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from shipml.onnx_model import OnnxModel
from tests.conftest import Case


def test_columns_layout_predicts_like_the_pipeline(binary_case: Case) -> None:
    model = OnnxModel(binary_case.model)
    assert model.layout == "columns"
    assert model.input_names == ["age", "income", "score", "tenure", "plan"]
    frame = pd.read_csv(binary_case.test)
    assert not hasattr(model, "classes_")
    proba = model.predict_proba(frame.drop(columns=["churned"]))
    assert list(model.classes_) == [0, 1]
    assert proba.shape == (len(frame), 2)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    labels = model.predict(frame.drop(columns=["churned"]))
    assert set(np.unique(labels)) <= {0, 1}
    assert np.mean(labels == frame["churned"]) > 0.65


def test_tensor_layout_and_batching_agree(multiclass_case: Case) -> None:
    frame = pd.read_csv(multiclass_case.test).drop(columns=["species"])
    whole = OnnxModel(multiclass_case.model, batch_size=10_000)
    small = OnnxModel(multiclass_case.model, batch_size=7)
    assert whole.layout == "tensor"
    assert whole.n_tensor_features() is None or whole.n_tensor_features() == 6
    assert np.array_equal(whole.predict(frame), small.predict(frame))
    assert np.allclose(whole.predict_proba(frame), small.predict_proba(frame))


def test_pickles_without_its_session_and_fit_is_a_no_op(binary_case: Case) -> None:
    model = OnnxModel(binary_case.model)
    clone = pickle.loads(pickle.dumps(model))
    frame = pd.read_csv(binary_case.test).drop(columns=["churned"]).head(20)
    assert np.array_equal(clone.predict(frame), model.predict(frame))
    assert model.fit(frame) is model


def test_regressor_has_no_probabilities(regression_case: Case) -> None:
    from shipml.errors import ConfigError

    model = OnnxModel(regression_case.model)
    assert not model.is_classifier
    frame = pd.read_csv(regression_case.test).drop(columns=["price"]).head(5)
    assert model.predict(frame).dtype.kind == "f"
    with pytest.raises(ConfigError, match="has no probability output"):
        model.predict_proba(frame)
