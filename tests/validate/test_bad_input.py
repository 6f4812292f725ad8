"""Bad input: exit 2, one message naming the file, key or column, and never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from shipml.cli import main
from tests.conftest import Case


@pytest.fixture()
def case(binary_case: Case, tmp_path: Path) -> Case:
    """A private copy of the binary case that a test may break."""
    folder = tmp_path / "case"
    shutil.copytree(binary_case.folder, folder,
                    ignore=shutil.ignore_patterns("shipml.yaml", "model_tests"))
    copy = Case(folder=folder, model=folder / "model.onnx", train=folder / "train.csv",
                test=folder / "test.csv", label=binary_case.label)
    copy.write_config({"suites": ["data_integrity"], "html": False})
    return copy


def validate(case: Case, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["validate", "--config", str(case.config), "--output-dir",
                 str(case.folder / "out"), *extra])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, captured.err


def test_missing_model_file(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.model.unlink()
    code, err = validate(case, capsys)
    assert code == 2
    assert err == (f"shipml validate: {case.config}:2 model.path: model file "
                   f"{case.model} not found\n")


def test_a_file_that_is_not_onnx(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.model.write_text("col_a,col_b\n1,2\n")
    code, err = validate(case, capsys)
    assert code == 2
    assert f"{case.config}:2 model.path: {case.model} is not a valid ONNX model" in err


def test_a_truncated_onnx_file(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    blob = case.model.read_bytes()
    case.model.write_bytes(blob[: len(blob) // 2])
    code, err = validate(case, capsys)
    assert code == 2
    assert "is not a valid ONNX model (truncated or another format?)" in err


def test_yaml_syntax_error_shows_the_line(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.config.write_text("model:\n  path: model.onnx\n  label: [churned\nvalidate: {}\n")
    code, err = validate(case, capsys)
    assert code == 2
    assert err.startswith(f"shipml validate: {case.config}:4:")
    assert "YAML syntax error" in err


def test_unknown_key_suggests_the_nearest(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.write_config({"suites": ["data_integrity"], "fail_onn": "warn"})
    code, err = validate(case, capsys)
    assert code == 2
    assert f"{case.config}:9 validate.fail_onn: unknown key 'validate.fail_onn'; did you mean " \
           f"'fail_on'?" in err


def test_unknown_top_level_section(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.config.write_text(case.config.read_text() + "validat:\n  suites: []\n")
    code, err = validate(case, capsys)
    assert code == 2
    assert "unknown key 'validat'; did you mean 'validate'?" in err


def test_invalid_enum_value_lists_the_valid_ones(case: Case,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, err = validate(case, capsys, "--fail-on", "maybe")
    assert code == 2
    assert err == "shipml validate: --fail-on: 'maybe' is not valid; valid: fail, warn, never\n"


def test_environment_override_is_named(case: Case, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPML_TASK", "ranking")
    code, err = validate(case, capsys)
    assert code == 2
    assert err.startswith("shipml validate: environment SHIPML_TASK: 'ranking' is not valid")


def test_csv_without_the_label_column(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    pd.read_csv(case.test).drop(columns=["churned"]).to_csv(case.test, index=False)
    code, err = validate(case, capsys)
    assert code == 2
    assert err == (f"shipml validate: {case.test}: label column 'churned' (from {case.config}:3 "
                   f"model.label) is not in the data (columns: age, income, score, tenure, "
                   f"plan)\n")


def test_label_all_nan(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.read_csv(case.train)
    frame["churned"] = float("nan")
    frame.to_csv(case.train, index=False)
    code, err = validate(case, capsys)
    assert code == 2
    assert err == f"shipml validate: {case.train}: label column 'churned' has no values (all NaN)\n"


def test_empty_dataset(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    header = case.train.read_text().splitlines()[0]
    case.train.write_text(header + "\n")
    code, err = validate(case, capsys)
    assert code == 2
    assert err == f"shipml validate: {case.config}:4 model.train: data file {case.train} has no rows\n"


def test_completely_empty_file(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.test.write_text("")
    code, err = validate(case, capsys)
    assert code == 2
    assert "is empty (no header, no rows)" in err


def test_model_inputs_that_do_not_match_the_columns(case: Case,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.read_csv(case.train).rename(columns={"income": "salary"})
    frame.to_csv(case.train, index=False)
    code, err = validate(case, capsys)
    assert code == 2
    assert "model inputs ['income'] are not columns of" in err
    assert "model inputs: ['age', 'income', 'score', 'tenure', 'plan']" in err
    assert "data columns: ['age', 'salary', 'score', 'tenure', 'plan']" in err


def test_unknown_suite(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.write_config({"suites": ["data_integrty"]})
    code, err = validate(case, capsys)
    assert code == 2
    assert "validate.suites[0]: 'data_integrty' is not valid; valid: data_integrity, " \
           "train_test_validation, model_evaluation, full_suite" in err


def test_unknown_check_lists_valid_ones(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.write_config({"suites": [], "checks": [{"check": "FeatureDrfit"}]})
    code, err = validate(case, capsys)
    assert code == 2
    assert f"{case.config}:9 validate.checks[0].check: unknown check 'FeatureDrfit'; " \
           "did you mean 'FeatureDrift'? (valid: BoostingOverfit," in err


def test_unknown_condition_lists_the_checks_conditions(
        case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.write_config({"suites": [], "checks": [
        {"check": "FeatureDrift", "conditions": [{"condition": "drift_below"}]}]})
    code, err = validate(case, capsys)
    assert code == 2
    assert "validate.checks[0].conditions[0].condition: unknown condition of FeatureDrift " \
           "'drift_below' (valid: drift_score_less_than)" in err


def test_condition_parameters_it_does_not_take(case: Case,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    case.write_config({"suites": [], "checks": [{"check": "FeatureDrift", "conditions": [
        {"condition": "drift_score_less_than", "params": {"max_score": 0.1}}]}]})
    code, err = validate(case, capsys)
    assert code == 2
    assert err == (f"shipml validate: {case.config}:13 validate.checks[0].conditions[0].params."
                   "max_score: condition drift_score_less_than of FeatureDrift has no parameter "
                   "'max_score' (valid: allowed_num_features_exceeding_threshold, "
                   "max_allowed_categorical_score, max_allowed_numeric_score)\n")


def explicit_check(case: Case, capsys: pytest.CaptureFixture[str],
                   check: dict[str, Any]) -> tuple[int, str]:
    case.write_config({"suites": [], "html": False, "workers": 1, "checks": [check]})
    return validate(case, capsys)


def test_a_misspelled_check_parameter_is_not_ignored(case: Case,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, err = explicit_check(case, capsys, {"check": "FeatureDrift",
                                              "params": {"n_sampels": 500}})
    assert code == 2
    assert err.startswith(f"shipml validate: {case.config}:13 validate.checks[0].params."
                          "n_sampels: FeatureDrift has no parameter 'n_sampels'; did you mean "
                          "'n_samples'? (valid: aggregation_method, categorical_drift_method, ")
    assert "n_samples, n_top_columns" in err


def test_a_parameter_of_the_wrong_type_is_bad_input_not_a_failed_gate(
        case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = explicit_check(case, capsys, {"check": "TrainTestPerformance",
                                              "params": {"scorers": 5}})
    assert code == 2
    assert err == (f"shipml validate: {case.config}:13 validate.checks[0].params.scorers: "
                   "TrainTestPerformance takes a mapping or a list of strings for scorers, "
                   "not 5 (an integer)\n")


def test_a_number_written_as_text(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = explicit_check(case, capsys, {"check": "FeatureDrift",
                                              "params": {"n_samples": "1e4"}})
    assert code == 2
    assert err.endswith("validate.checks[0].params.n_samples: FeatureDrift takes an integer for "
                        "n_samples, not '1e4' (a string)\n")


def test_a_value_the_check_refuses_when_built(case: Case,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, err = explicit_check(case, capsys, {"check": "SimpleModelComparison",
                                              "params": {"strategy": "best"}})
    assert code == 2
    assert err == (f"shipml validate: {case.config}:12 validate.checks[0].params: "
                   "SimpleModelComparison refused its parameters: SimpleModelComparison: "
                   "strategy best is not allowed. allowed strategies are ('stratified', "
                   "'most_frequent', 'uniform', 'tree').\n")


@pytest.mark.deepchecks
def test_a_value_the_check_rejects_when_it_runs(case: Case,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, err = explicit_check(case, capsys, {"check": "TrainTestPerformance",
                                              "params": {"scorers": ["acuracy"]}})
    assert code == 2
    assert (f"\nshipml validate: {case.config}:12 validate.checks[0].params: "
            "TrainTestPerformance failed with these parameters when it ran: "
            "Scorer name acuracy is unknown. See metric guide for a list of allowed scorer "
            "names; check their values") in err
    assert "(valid parameters: n_samples, random_state, scorers)" in err
    result = json.loads((case.folder / "out" / "results" / "validate.json").read_text())
    assert result["status"] == "error"  # an error result, never a failed gate


@pytest.mark.deepchecks
def test_a_column_the_check_does_not_know(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = explicit_check(case, capsys, {"check": "FeatureDrift",
                                              "params": {"columns": ["incom"]}})
    assert code == 2
    assert "validate.checks[0].params: FeatureDrift failed with these parameters when it ran: " \
           "Given columns do not exist in dataset: incom" in err


def test_a_condition_parameter_of_the_wrong_type(case: Case,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, err = explicit_check(case, capsys, {"check": "TrainTestPerformance", "conditions": [
        {"condition": "test_performance_greater_than", "params": {"min_score": "high"}}]})
    assert code == 2
    assert err.endswith("validate.checks[0].conditions[0].params.min_score: condition "
                        "test_performance_greater_than of TrainTestPerformance takes a number for "
                        "min_score, not 'high' (a string)\n")


@pytest.mark.deepchecks
def test_a_condition_value_rejected_when_judged(case: Case,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, err = explicit_check(case, capsys, {"check": "TrainTestPerformance", "conditions": [
        {"condition": "class_performance_imbalance_ratio_less_than",
         "params": {"score": "Recal"}}]})
    assert code == 2
    assert ("validate.checks[0].conditions[0].params: condition "
            "class_performance_imbalance_ratio_less_than of TrainTestPerformance failed with these "
            "parameters when it ran: Exception in condition: DeepchecksValueError: Data was not "
            "calculated using the scoring function: Recal; check their values") in err
    assert "(valid parameters: score, threshold)" in err


def test_a_misspelled_label_suggests_the_column(case: Case,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, err = validate(case, capsys, "--label", "churnd")
    assert code == 2
    assert err == (f"shipml validate: {case.train}: label column 'churnd' (from --label) is not "
                   "in the data; did you mean 'churned'? (columns: age, income, score, tenure, "
                   "plan, churned)\n")


def test_a_label_in_another_case_suggests_the_column(case: Case,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, err = validate(case, capsys, "--label", "CHURNED")
    assert code == 2
    assert "is not in the data; did you mean 'churned'?" in err


def test_unknown_data_file_type(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    target = case.folder / "train.xlsx"
    case.train.rename(target)
    code, err = validate(case, capsys, "--train", str(target))
    assert code == 2
    assert err == (f"shipml validate: --train: {target} has an unknown type '.xlsx'; "
                   "valid: .csv, .tsv, .parquet, .pq\n")


def test_missing_required_key_says_what_to_write(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["validate", "--suites", "data_integrity"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("shipml validate: model.path is not set; give it in shipml.yaml")


def test_explicit_config_that_does_not_exist(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", "--config", str(tmp_path / "nope.yaml")])
    assert code == 2
    assert capsys.readouterr().err == (
        f"shipml validate: --config: config file {tmp_path / 'nope.yaml'} not found\n")


def test_parquet_data_is_read(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    for path in (case.train, case.test):
        pd.read_csv(path).to_parquet(path.with_suffix(".parquet"))
    code, err = validate(case, capsys, "--train", str(case.train.with_suffix(".parquet")),
                         "--test", str(case.test.with_suffix(".parquet")))
    assert code == 0, err
