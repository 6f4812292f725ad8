"""bind_model: the one binding of a model to a table that validate, monitor and init share."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from shipml.binding import bind_model, model_classes
from shipml.data import Table, load_table
from shipml.errors import ConfigError
from shipml.onnx_model import OnnxModel
from tests.conftest import Case


def test_one_tensor_without_column_names_reads_every_column_but_the_label(
        multiclass_case: Case) -> None:
    model = OnnxModel(multiclass_case.model)
    binding = bind_model(model, load_table(multiclass_case.train, "model.train"),
                         label="species")
    assert binding.features == [f"f{i}" for i in range(6)]
    assert (binding.task, binding.width, binding.categorical, binding.unread) == (
        "multiclass", 3, [], [])


def test_a_three_class_model_is_multiclass_without_labels(multiclass_case: Case) -> None:
    frame = pd.read_csv(multiclass_case.train).drop(columns=["species"])
    binding = bind_model(OnnxModel(multiclass_case.model), Table(frame, "rows"), label=None)
    assert (binding.task, binding.width, binding.label) == ("multiclass", 3, None)


def test_per_column_inputs_are_read_by_name_and_the_rest_is_unread(binary_case: Case) -> None:
    frame = pd.read_csv(binary_case.train)
    frame.insert(0, "customer_id", range(len(frame)))
    binding = bind_model(OnnxModel(binary_case.model), Table(frame, "train.csv"),
                         label="churned")
    assert binding.features == ["age", "income", "score", "tenure", "plan"]
    assert (binding.categorical, binding.unread) == (["plan"], ["customer_id"])
    assert (binding.task, binding.width) == ("binary", 2)


def test_a_regressor_has_no_width_and_its_label_says_regression(regression_case: Case) -> None:
    table = load_table(regression_case.train, "model.train")
    model = OnnxModel(regression_case.model)
    assert bind_model(model, table, label="price").task == "regression"
    unlabelled = Table(table.frame.drop(columns=["price"]), "rows")
    assert bind_model(model, unlabelled, label=None).task == "regression"


def test_features_absent_from_the_config_are_the_columns_in_order(multiclass_case: Case) -> None:
    frame = pd.read_csv(multiclass_case.train)
    frame["batch"] = 1
    model = OnnxModel(multiclass_case.model)
    with pytest.raises(ConfigError, match=r"takes 6 features but rows has 7 feature columns "
                                          r".*under model.features"):
        bind_model(model, Table(frame, "rows"), label="species")
    binding = bind_model(model, Table(frame, "rows"), label="species", ignore_columns=["batch"])
    assert binding.features == [f"f{i}" for i in range(6)]


@pytest.mark.parametrize(("keys", "message"), [
    ({"ignore_columns": ["nope"]},
     "model.ignore_columns: ['nope'] are not columns of rows; columns: f0, f1"),
    ({"categorical": ["species"]},
     "model.categorical_features: ['species'] are not features; features: f0, f1"),
    ({"task": "regression"},
     "model.task: task is regression but the model outputs probabilities for 3 classes; "
     "use binary or multiclass"),
])
def test_keys_that_contradict_the_model_name_the_key(multiclass_case: Case, keys: dict[str, Any],
                                                     message: str) -> None:
    table = Table(pd.read_csv(multiclass_case.train), "rows")
    with pytest.raises(ConfigError) as error:
        bind_model(OnnxModel(multiclass_case.model), table, label="species", **keys)
    assert str(error.value).startswith(message)


def test_messages_name_the_key_where_it_was_given(multiclass_case: Case) -> None:
    table = Table(pd.read_csv(multiclass_case.train), "rows")
    with pytest.raises(ConfigError, match=r"^shipml.yaml:4: model.task: task is regression"):
        bind_model(OnnxModel(multiclass_case.model), table, label="species", task="regression",
                   where=lambda key: f"shipml.yaml:4: model.{key}")


def test_classes_are_the_labels_the_model_predicts_in_column_order(multiclass_case: Case) -> None:
    table = load_table(multiclass_case.train, "model.train")
    model = OnnxModel(multiclass_case.model)
    binding = bind_model(model, table, label="species")
    predictions, probabilities = model.run(table.frame[binding.features])
    assert probabilities is not None
    assert model_classes(model, probabilities.shape[1], [predictions]) == [
        "setosa", "versicolor", "virginica"]
    assert model_classes(model, probabilities.shape[1], []) == [0, 1, 2]
