"""Is this model better? validate judges the candidate against the base branch's model (a real
git repository, real skl2onnx models) with the paired judge, and the PR comment shows it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import yaml

from shipml.cli import main
from shipml.paired import PairedJudgement
from shipml.report import build_report, render_markdown
from shipml.results import StageResult
from shipml.validate._baseline import comparison_line, judge
from tests._models import export_base_branch_classifiers

pytestmark = pytest.mark.deepchecks

GIT = ["git", "-c", "user.name=shipml tests", "-c", "user.email=tests@example.invalid",
       "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]


@pytest.fixture(scope="session")
def quality(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The base branch's classifier, one 3 points worse and an equally good MLP, with data."""
    folder = tmp_path_factory.mktemp("quality")
    paths = export_base_branch_classifiers(folder)
    return {**paths, "train": folder / "train.csv", "test": folder / "test.csv"}


def pull_request(tmp_path: Path, quality: dict[str, Path], candidate: str,
                 sections: dict[str, Any]) -> Path:
    """Return the config of a repository whose main branch ships ``base.onnx`` as
    ``models/model.onnx`` and whose working tree (the pull request) ships ``candidate``."""
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "data").mkdir()
    shutil.copy(quality["base"], repo / "models" / "model.onnx")
    shutil.copy(quality["train"], repo / "data" / "train.csv")
    shutil.copy(quality["test"], repo / "data" / "test.csv")
    config = repo / "shipml.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"path": "models/model.onnx", "train": "data/train.csv",
                  "test": "data/test.csv", "label": "y"},
        "validate": {"suites": [], "html": False, **sections.pop("validate", {})},
        **sections,
    }, sort_keys=False), encoding="utf-8")
    for command in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "model v1"]):
        subprocess.run([*GIT, *command], cwd=repo, check=True, capture_output=True)
    shutil.copy(quality[candidate], repo / "models" / "model.onnx")
    return config


def validate(config: Path, tmp_path: Path) -> tuple[int, dict[str, Any], str]:
    """Run ``shipml validate``; return its exit code, result and the PR comment's markdown."""
    out = tmp_path / "out"
    code = main(["validate", "--config", str(config), "--output-dir", str(out)])
    path = out / "results" / "validate.json"
    comment = render_markdown(build_report([StageResult.read(path)]))
    return code, json.loads(path.read_text()), comment


def accuracy(model: Path, test: Path) -> float:
    """Return ``model``'s test accuracy, computed here with onnxruntime alone."""
    frame = pd.read_csv(test)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    features = frame.drop(columns=["y"]).to_numpy(np.float32)
    labels = session.run(None, {session.get_inputs()[0].name: features})[0]
    return float(np.mean(labels == frame["y"].to_numpy()))


def test_a_model_three_points_less_accurate_than_the_base_branchs_fails_with_its_interval(
        tmp_path: Path, quality: dict[str, Path]) -> None:
    config = pull_request(tmp_path, quality, "worse", {"validate": {"baseline": {
        "git_ref": "main"}}})
    code, result, comment = validate(config, tmp_path)

    assert code == 1
    assert result["status"] == "fail"
    (check,) = result["checks"]
    assert check["status"] == "fail"
    assert check["name"] == ("accuracy is at most 1 point worse than the baseline's "
                             "(main:models/model.onnx) at 95% confidence")
    figures = result["metrics"]["baseline"]
    candidate, base = accuracy(quality["worse"], quality["test"]), accuracy(
        quality["base"], quality["test"])
    assert figures["candidate"] == pytest.approx(candidate)
    assert figures["baseline"] == pytest.approx(base)
    assert figures["drop"] == pytest.approx(base - candidate)
    assert 0.02 < figures["drop"] < 0.04 and figures["low"] > 0.01
    assert figures["verdict"] == "fail" and figures["source"] == "main:models/model.onnx"
    assert figures["p_value"] < 0.05 and figures["pairs"] == 3000
    line = (f"accuracy {candidate:.3f} vs base {base:.3f}: "
            f"{(base - candidate) * 100:.1f} points worse "
            f"[{figures['low'] * 100:.1f}, {figures['high'] * 100:.1f}] at 95%, "
            f"{figures['informative']} discordant pairs (p={figures['p_value']:.2g})")
    assert check["observed"] == line
    assert line in result["summary"]
    # the comment: the failed check with the figures, and the row against the base branch
    escaped = line.replace("[", "\\[").replace("]", "\\]")
    assert f"| ❌ | {check['name']} | {escaped} | ≤ 1 point worse |" in comment
    assert f"| accuracy against main:models/model.onnx | {round(base, 3):.4g} | " \
           f"{round(candidate, 3):.4g} | {escaped.split(': ', 1)[1]} 🔴 worse |" in comment


def test_an_equally_good_retrained_model_of_another_family_passes(
        tmp_path: Path, quality: dict[str, Path]) -> None:
    assert quality["retrained"].read_bytes() != quality["base"].read_bytes()
    config = pull_request(tmp_path, quality, "retrained", {"validate": {"baseline": {
        "git_ref": "main"}}})
    code, result, comment = validate(config, tmp_path)

    assert code == 0, result["checks"]
    (check,) = result["checks"]
    assert check["status"] == "pass"
    figures = result["metrics"]["baseline"]
    assert figures["informative"] > 0  # the answers differ on some rows
    assert abs(figures["drop"]) < 0.01
    assert "🔴" not in comment and check["observed"] in result["summary"]


def test_latency_baseline_names_the_base_branchs_model_for_validate_too(
        tmp_path: Path, quality: dict[str, Path]) -> None:
    config = pull_request(tmp_path, quality, "worse", {"latency": {"baseline": {
        "git_ref": "main"}}})
    code, result, _ = validate(config, tmp_path)
    assert code == 1
    assert result["metrics"]["baseline"]["key"] == "latency.baseline"
    assert result["metrics"]["baseline"]["source"] == "main:models/model.onnx"


def test_from_latency_false_leaves_quality_unjudged(
        tmp_path: Path, quality: dict[str, Path]) -> None:
    config = pull_request(tmp_path, quality, "worse", {
        "latency": {"baseline": {"git_ref": "main"}},
        "validate": {"suites": ["model_evaluation"], "baseline": {"from_latency": False}}})
    code, result, _ = validate(config, tmp_path)
    assert "baseline" not in result["metrics"]
    assert all(check["group"] != "baseline" for check in result["checks"])
    assert code in (0, 1)


def test_a_larger_max_drop_lets_the_worse_model_pass(
        tmp_path: Path, quality: dict[str, Path]) -> None:
    config = pull_request(tmp_path, quality, "worse", {"validate": {"baseline": {
        "git_ref": "main", "max_drop": 0.05}}})
    code, result, _ = validate(config, tmp_path)
    assert code == 0
    assert result["checks"][0]["name"].startswith("accuracy is at most 5 points worse")


def test_a_baseline_by_path_is_read_from_the_file(
        tmp_path: Path, quality: dict[str, Path]) -> None:
    config = pull_request(tmp_path, quality, "base", {"validate": {"baseline": {
        "path": str(quality["worse"])}}})
    code, result, _ = validate(config, tmp_path)
    assert code == 0  # the candidate is the better one
    figures = result["metrics"]["baseline"]
    assert figures["source"] == str(quality["worse"]) and figures["drop"] < 0
    assert "points better" in result["checks"][0]["observed"]


def test_a_ref_git_does_not_know_is_bad_input_naming_the_key(
        tmp_path: Path, quality: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config = pull_request(tmp_path, quality, "worse", {"validate": {"baseline": {
        "git_ref": "origin/nowhere"}}})
    code = main(["validate", "--config", str(config), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "validate.baseline.git_ref: `git show --end-of-options " \
           "origin/nowhere:models/model.onnx` failed" in err
    assert "fetch-depth: 0" in err and "Traceback" not in err


def test_a_baseline_that_reads_other_columns_is_bad_input(
        tmp_path: Path, quality: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    other.mkdir()
    narrow = _one_input_model(other / "narrow.onnx", width=3)  # test.csv has six features
    config = pull_request(tmp_path, quality, "base", {"validate": {"baseline": {
        "path": str(narrow)}}})
    code = main(["validate", "--config", str(config), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"validate.baseline: the baseline model {narrow} cannot answer model.test as the " \
           "candidate does" in err
    assert "Traceback" not in err


def _one_input_model(path: Path, width: int) -> Path:
    import warnings

    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    features = rng.standard_normal((50, width)).astype(np.float32)
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_model = to_onnx(model, features[:1], options={"zipmap": False}, target_opset=17)
    path.write_bytes(onnx_model.SerializeToString())
    return path


@pytest.mark.parametrize(("candidate", "baseline", "expected"), [
    ([1, 1, 0, 0], [1, 1, 1, 1], "accuracy 0.500 vs base 1.000: 50 points worse"),
    ([1, 1, 1, 1], [1, 1, 0, 0], "accuracy 1.000 vs base 0.500: 50 points better"),
    ([1, 1, 1, 0], [1, 1, 1, 0], "accuracy 0.750 vs base 0.750: no different"),
])
def test_the_comparison_line_says_which_way_and_by_how_much(
        candidate: list[int], baseline: list[int], expected: str) -> None:
    judgement = judge("binary", [1, 1, 1, 1], candidate, baseline, max_drop=0.01,
                      confidence=0.95)
    assert comparison_line(judgement, 0.95).startswith(expected)
    assert judgement.verdict in ("pass", "fail")  # one look at the whole set: never undecided


def test_a_regressor_twenty_percent_worse_fails_and_unlabelled_rows_are_left_out() -> None:
    truth = np.array([10.0, 12.0, np.nan, 9.0] * 50)
    rng = np.random.default_rng(0)
    base_error = rng.uniform(0.5, 1.5, 200)
    baseline = truth + base_error
    candidate = truth + base_error * 1.2
    judgement: PairedJudgement = judge("regression", truth, candidate, baseline,
                                       max_drop=0.05, confidence=0.95)
    assert judgement.pairs == 150
    assert judgement.verdict == "fail"
    assert judgement.drop == pytest.approx(0.2)
    line = comparison_line(judgement, 0.95)
    assert line.startswith("mean absolute error ") and ": 20% worse [" in line
    assert "150 of 150 rows with different errors" in line


def test_a_regressor_with_a_fifth_more_error_than_the_base_branchs_fails(
        tmp_path: Path) -> None:
    from tests._models import export_quality_regressors

    folder = tmp_path / "models"
    folder.mkdir()
    models = export_quality_regressors(folder)
    quality = {"base": models["stable"], "worse": models["worse"],
               "train": folder / "train.csv", "test": folder / "test.csv"}
    config = pull_request(tmp_path, quality, "worse", {"validate": {"baseline": {
        "git_ref": "main", "max_drop": 0.1}}})
    code, result, comment = validate(config, tmp_path)
    assert code == 1
    figures = result["metrics"]["baseline"]
    assert figures["metric"] == "mean absolute error" and figures["verdict"] == "fail"
    assert figures["drop"] == pytest.approx(0.2, abs=0.01)
    assert result["checks"][0]["name"].startswith(
        "mean absolute error is at most 10% worse than the baseline's")
    assert "rows with different errors" in comment and "🔴 worse" in comment


def test_the_baseline_ref_and_max_drop_flags_set_the_keys(
        tmp_path: Path, quality: dict[str, Path]) -> None:
    config = pull_request(tmp_path, quality, "worse", {})
    out = tmp_path / "out"
    code = main(["validate", "--config", str(config), "--output-dir", str(out),
                 "--baseline-ref", "main", "--max-drop", "0.05"])
    result = json.loads((out / "results" / "validate.json").read_text())
    assert code == 0
    assert result["metrics"]["baseline"]["max_drop"] == 0.05
    assert result["metrics"]["baseline"]["source"] == "main:models/model.onnx"


def test_a_latency_baseline_that_is_the_model_file_itself_is_no_comparison(
        tmp_path: Path, quality: dict[str, Path]) -> None:
    # The bundled example's latency times optimize's output against model.path itself.
    config = pull_request(tmp_path, quality, "worse", {"latency": {"baseline": {
        "path": "models/model.onnx"}}, "validate": {"suites": ["model_evaluation"]}})
    _, result, _ = validate(config, tmp_path)
    assert "baseline" not in result["metrics"]
    assert all(check["group"] != "baseline" for check in result["checks"])
