"""The task monitor judges by is the model's, bound to the reference the way validate binds it:
a three-class model with ``task: auto`` is multiclass, with or without labels, and its classes
are the labels it predicts."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipml.cli import main
from shipml.results import StageResult
from tests.conftest import Case

pytestmark = pytest.mark.deepchecks


@pytest.mark.parametrize("label", ["species", None])
def test_a_three_class_model_is_multiclass(multiclass_case: Case, tmp_path: Path,
                                           label: str | None) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    for path in (multiclass_case.model, multiclass_case.train, multiclass_case.test):
        shutil.copy(path, folder / path.name)
    model: dict[str, Any] = {"path": "model.onnx", "train": "train.csv", "test": "test.csv"}
    # without a label, the model's three probability columns alone say multiclass
    model.update({"label": label} if label else {"ignore_columns": ["species"]})
    config = folder / "shipml.yaml"
    config.write_text(yaml.safe_dump({"model": model, "monitor": {
        "production": "test.csv", "min_records": 50}}), encoding="utf-8")
    code = main(["monitor", "--config", str(config), "--output-dir", str(folder / ".shipml")])
    result = StageResult.read(folder / ".shipml" / "results" / "monitor.json")
    assert (code, result.metrics["task"]) == (0, "multiclass"), result.summary
    # the classes are the labels the model predicts, in its probability columns' order
    assert [delta.name for delta in result.deltas] == ["share predicted virginica"]
