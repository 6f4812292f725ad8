"""The team's own pytest model tests run with shipml's fixtures and join the stage result."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from shipml.cli import main
from tests.conftest import Case

pytestmark = pytest.mark.deepchecks

MODEL_TESTS = '''
import numpy as np


def test_accuracy_beats_a_coin(model, test_data, shipml_config):
    label = shipml_config.section("model")["label"]
    predicted = model.predict(test_data.drop(columns=[label]))
    assert np.mean(predicted == test_data[label]) > 0.6


def test_probabilities_sum_to_one(model, train_data):
    proba = model.predict_proba(train_data.drop(columns=["churned"]).head(50))
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-4)


def test_premium_customers_never_churn(model, test_data):
    pro = test_data[test_data["plan"] == "pro"].drop(columns=["churned"])
    assert (model.predict(pro) == 0).all(), "pro customers predicted to churn"
'''


def test_passing_and_failing_user_tests_both_appear(binary_case: Case, tmp_path: Path) -> None:
    tests_dir = binary_case.folder / "model_tests"
    tests_dir.mkdir(exist_ok=True)
    (tests_dir / "test_model_quality.py").write_text(MODEL_TESTS)
    binary_case.write_config({"suites": [], "html": False, "pytest": "model_tests"})
    out = tmp_path / "out"
    code = main(["validate", "--config", str(binary_case.config), "--output-dir", str(out)])
    assert code == 1
    result = json.loads((out / "results" / "validate.json").read_text())
    by_name = {c["name"].rsplit("::", 1)[-1]: c for c in result["checks"] if c["group"] == "pytest"}
    assert by_name["test_accuracy_beats_a_coin"]["status"] == "pass"
    assert by_name["test_probabilities_sum_to_one"]["status"] == "pass"
    failing = by_name["test_premium_customers_never_churn"]
    assert failing["status"] == "fail"
    assert "pro customers predicted to churn" in failing["observed"]
    assert result["metrics"]["pytest"] == {"pass": 2, "warn": 0, "fail": 1, "error": 0}
    junit = ET.parse(out / "artifacts" / "validate.junit.xml").getroot()
    pytest_suite = junit.find("testsuite[@name='shipml.validate.pytest']")
    assert pytest_suite is not None
    assert pytest_suite.get("tests") == "3" and pytest_suite.get("failures") == "1"


def test_a_path_with_no_model_tests_is_an_error(binary_case: Case, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    binary_case.write_config({"suites": [], "html": False, "pytest": "no_such_dir"})
    code = main(["validate", "--config", str(binary_case.config), "--output-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "validate.pytest" in err and "no_such_dir does not exist" in err
