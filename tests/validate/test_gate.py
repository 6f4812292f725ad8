"""The validation gate on real models: sound models pass, broken ones fail on the right check."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from shipml.cli import main
from tests.conftest import Case

pytestmark = pytest.mark.deepchecks


def run(case: Case, tmp_path: Path, validate: dict[str, Any], **model: Any) -> tuple[int, dict[str, Any]]:
    case.write_config({"html": False, **validate}, **model)
    out = tmp_path / "out"
    code = main(["validate", "--config", str(case.config), "--output-dir", str(out)])
    result = json.loads((out / "results" / "validate.json").read_text())
    return code, result


def failed(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [check for check in result["checks"] if check["status"] == "fail"]


def test_sound_binary_model_passes_all_three_suites(binary_case: Case, tmp_path: Path) -> None:
    code, result = run(binary_case, tmp_path, {
        "suites": ["data_integrity", "train_test_validation", "model_evaluation"]})
    assert code == 0
    assert result["status"] == "pass"
    assert result["stage"] == "validate"
    # the contract's fields (tests/test_results.py holds the whole set)
    assert set(result) >= {"stage", "status", "summary", "started_at", "duration_s", "metrics",
                           "checks", "artifacts"}
    assert result["metrics"]["task"] == "binary"
    assert result["metrics"]["categorical_features"] == ["plan"]
    names = [check["name"] for check in result["checks"]]
    assert any(name.startswith("Simple Model Comparison") for name in names)
    assert any(name.startswith("Feature Drift") for name in names)
    assert not failed(result)


def test_multiclass_model_with_one_tensor_input_passes(multiclass_case: Case,
                                                       tmp_path: Path) -> None:
    code, result = run(multiclass_case, tmp_path,
                       {"suites": ["train_test_validation", "model_evaluation"]})
    assert code == 0, failed(result)
    assert result["metrics"]["task"] == "multiclass"
    assert result["metrics"]["classes"] == ["setosa", "versicolor", "virginica"]


def test_regression_model_passes_with_an_explicit_condition(regression_case: Case,
                                                            tmp_path: Path) -> None:
    code, result = run(regression_case, tmp_path, {
        "suites": ["model_evaluation"],
        "exclude_checks": ["RegressionErrorDistribution"],
        "checks": [{
            "check": "RegressionErrorDistribution",
            "conditions": [{"condition": "systematic_error_ratio_to_rmse_less_than",
                            "params": {"max_ratio": 0.05}}],
        }],
    })
    assert code == 0, failed(result)
    assert result["metrics"]["task"] == "regression"
    explicit = [c for c in result["checks"] if c["group"] == "RegressionErrorDistribution"]
    assert explicit and all(c["threshold"] == 0.05 for c in explicit)


def test_label_leakage_fails_feature_label_correlation(leaky_case: Case, tmp_path: Path) -> None:
    code, result = run(leaky_case, tmp_path, {"suites": ["data_integrity"]})
    assert code == 1
    assert result["status"] == "fail"
    bad = failed(result)
    assert {check["group"] for check in bad} == {"FeatureLabelCorrelation"}
    assert all("refund_issued" in check["observed"] for check in bad)
    assert bad[0]["threshold"] == 0.8


def test_drifted_feature_fails_feature_drift(drift_case: Case, tmp_path: Path) -> None:
    code, result = run(drift_case, tmp_path, {"suites": ["train_test_validation"]})
    assert code == 1
    drift = [c for c in failed(result) if c["group"] == "FeatureDrift"]
    assert drift and "income" in drift[0]["observed"]
    assert drift[0]["threshold"] == 0.2


def test_model_worse_than_simple_baseline_fails(weak_case: Case, tmp_path: Path) -> None:
    code, result = run(weak_case, tmp_path, {"suites": ["model_evaluation"]})
    assert code == 1
    assert "SimpleModelComparison" in {c["group"] for c in failed(result)}
    assert "SimpleModelComparison" in result["summary"]


def test_warn_severity_reports_without_failing_and_fail_on_warn_fails(
        drift_case: Case, tmp_path: Path) -> None:
    checks = [{"check": "FeatureDrift", "conditions": [
        {"condition": "drift_score_less_than", "params": {"max_allowed_numeric_score": 0.2},
         "severity": "warn"}]}]
    code, result = run(drift_case, tmp_path, {"suites": [], "checks": checks})
    assert code == 0
    assert [c["status"] for c in result["checks"]] == ["warn"]
    code, result = run(drift_case, tmp_path / "again", {"suites": [], "checks": checks,
                                                         "fail_on": "warn"})
    assert code == 1
    assert result["status"] == "fail"


def test_each_check_that_did_not_pass_is_annotated_once(
        drift_case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checks = [{"check": "FeatureDrift", "conditions": [
        {"condition": "drift_score_less_than", "params": {"max_allowed_numeric_score": 0.2}}]}]
    capsys.readouterr()
    code, _ = run(drift_case, tmp_path, {"suites": [], "checks": checks, "workers": 1})
    assert code == 1
    annotations = [line for line in capsys.readouterr().err.splitlines()
                   if line.startswith("error: ") and "Feature Drift" in line]
    assert len(annotations) == 1, annotations


def test_suites_none_from_the_action_runs_only_the_explicit_checks(
        drift_case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPML_SUITES", "none")  # what `suites: none` on the action sets
    checks = [{"check": "FeatureDrift", "conditions": [
        {"condition": "drift_score_less_than", "params": {"max_allowed_numeric_score": 0.2}}]}]
    code, result = run(drift_case, tmp_path, {"suites": ["data_integrity"], "checks": checks})
    assert code == 1
    assert {c["group"] for c in result["checks"]} == {"FeatureDrift"}


def test_fail_on_flag_overrides_the_file(drift_case: Case, tmp_path: Path) -> None:
    drift_case.write_config({"suites": ["train_test_validation"], "html": False})
    code = main(["validate", "--config", str(drift_case.config), "--output-dir",
                 str(tmp_path), "--fail-on", "never"])
    assert code == 0


def test_artifacts_html_junit_and_step_outputs(binary_case: Case, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    binary_case.write_config({"suites": ["train_test_validation"], "html": True})
    out = tmp_path / "out"
    code = main(["validate", "--config", str(binary_case.config), "--output-dir", str(out)])
    assert code == 0
    html = (out / "artifacts" / "validate.html").read_text()
    assert "<html" in html.lower() and "Feature Drift" in html
    result = json.loads((out / "results" / "validate.json").read_text())
    junit = ET.parse(out / "artifacts" / "validate.junit.xml").getroot()
    cases = junit.findall(".//testcase")
    assert len(cases) == len(result["checks"])
    assert {a["name"] for a in result["artifacts"]} == {"validate.html", "validate.junit.xml"}
    written = outputs.read_text()
    assert "status<<ghadelimiter_" in written
    assert "\npass\n" in written
    assert str(out / "results" / "validate.json") in written


def test_predictions_are_computed_once_not_per_check(binary_case: Case, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from shipml.binding import SAMPLE_ROWS
    from shipml.onnx_model import OnnxModel

    calls: list[int] = []
    original = OnnxModel.run

    def counting(self: OnnxModel, frame: Any) -> Any:
        calls.append(len(frame))
        return original(self, frame)

    monkeypatch.setattr(OnnxModel, "run", counting)
    code, _ = run(binary_case, tmp_path, {"suites": ["model_evaluation"],
                                          "feature_importance": "none"})
    assert code == 0
    # bind_model's sample (the width of the probability output), then train once, test once:
    # deepchecks never called the model itself
    assert calls == [SAMPLE_ROWS, 1100, 500]


def test_a_threshold_condition_shows_the_value_it_saw_not_only_its_name(
        weak_case: Case, tmp_path: Path) -> None:
    # deepchecks says "Failed for metrics: ['accuracy']"; the record says what was measured.
    checks = [{"check": "SingleDatasetPerformance", "params": {"scorers": ["accuracy"]},
               "conditions": [{"condition": "greater_than", "params": {"threshold": 0.85}},
                              {"condition": "greater_than", "params": {"threshold": 0.1}}]}]
    code, result = run(weak_case, tmp_path, {"suites": [], "checks": checks})
    assert code == 1
    low, high = (c for c in result["checks"] if "Test Dataset" in c["name"])
    assert (low["status"], high["status"]) == ("fail", "pass")
    seen = re.fullmatch(r"accuracy (0\.\d{3}) < 0\.85", low["observed"])
    assert seen is not None, low["observed"]
    assert high["observed"] == f"accuracy {seen.group(1)} > 0.1"
    # the log line and the annotation show the detail, with the figure in it
    assert low["detail"] == f"Failed for metrics: ['accuracy'] ({low['observed']})"
    assert high["detail"] == f"Passed for all of the metrics ({high['observed']})"
    assert low["threshold"] == 0.85


def test_deepchecks_own_page_shows_a_warn_only_check_as_a_warning(
        drift_case: Case, tmp_path: Path) -> None:
    drift_case.write_config({"suites": [], "html": True, "warn_only": ["FeatureDrift"],
                             "checks": [{"check": "FeatureDrift", "conditions": [
                                 {"condition": "drift_score_less_than",
                                  "params": {"max_allowed_numeric_score": 0.2}}]}]})
    out = tmp_path / "out"
    code = main(["validate", "--config", str(drift_case.config), "--output-dir", str(out)])
    assert code == 0
    result = json.loads((out / "results" / "validate.json").read_text())
    assert [c["status"] for c in result["checks"]] == ["warn"]
    page = (out / "artifacts" / "validate.html").read_text()
    # deepchecks' condition icons: a red cross for a failure, an orange "!" for a warning
    assert "color: red;text-align: center" not in page
    assert "color: orange;text-align: center" in page
