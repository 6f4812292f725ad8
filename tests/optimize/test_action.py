"""actions/optimize: a thin shim, run the way the runner runs it, hostile inputs included."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
import pytest

from shipml.cli import main
from shipml.optimize.cli import OPTIONS
from tests._action_step import load_action, run_step
from tests.optimize.conftest import copy_case

READ_ELSEWHERE = {"SHIPML_CONFIG", "SHIPML_OUTPUT_DIR"}


def test_every_input_reaches_a_variable_the_cli_reads() -> None:
    action = load_action("optimize")
    (step,) = [s for s in action["runs"]["steps"] if s.get("id") == "optimize"]
    assert step["run"].strip().removeprefix("exec ") == '"$SHIPML_EXECUTABLE" optimize'
    assert step["env"]["SHIPML_EXECUTABLE"] == "${{ steps.install.outputs.shipml }}"
    mapped = {expression.split("inputs.")[1].rstrip(" }"): variable
              for variable, expression in step["env"].items() if "inputs." in expression}
    assert set(mapped) == set(action["inputs"]) - {"working-directory", "python-version"}
    assert set(mapped.values()) <= {option.env for option in OPTIONS} | READ_ELSEWHERE
    for name, output in action["outputs"].items():
        assert output["value"] == f"${{{{ steps.optimize.outputs.{name} }}}}"


def test_action_run_keeps_a_model_and_publishes_it(tmp_path: Path, mlp_classifier: Path) -> None:
    copy_case(mlp_classifier, tmp_path)
    completed, outputs = run_step("optimize", {
        "model": "model.onnx", "test": "test.csv", "label": "y", "candidates": "graph",
        "pick": "graph", "optimized-model": "dist/model.onnx"}, tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert outputs["status"] == "pass"
    assert outputs["chosen"] == "graph"
    assert Path(outputs["model"]) == tmp_path / "dist" / "model.onnx"
    ort.InferenceSession(outputs["model"], providers=["CPUExecutionProvider"])
    result = json.loads((tmp_path / outputs["result"]).read_text())
    assert result["metrics"]["candidates"]["graph"]["holds_parity"] is True


def test_job_summary_lists_every_candidate(tmp_path: Path, mlp_regressor: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    copy_case(mlp_regressor, tmp_path)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.chdir(tmp_path)
    code = main(["optimize", "--model", "model.onnx", "--test", "test.csv", "--label", "y",
                 "--candidates", "graph,fp16", "--pick", "none", "--output-dir", "out"])
    assert code == 1  # FP16 moves some small predictions by more than 1%
    text = summary.read_text()
    assert "1/2 candidates hold parity; kept the original (broke parity: fp16)" in text
    assert "| candidate | size (KiB) | parity | p50 (ms) | speed-up (×) |" in text
    assert "| graph | " in text and "| holds |" in text and "| broken |" in text
    assert "fp16 stays within 1% relative error of the original" in text


def test_hostile_candidates_input(tmp_path: Path, mlp_classifier: Path) -> None:
    copy_case(mlp_classifier, tmp_path)
    completed, outputs = run_step("optimize", {
        "model": "model.onnx", "candidates": "graph,$(touch pwned)"}, tmp_path)
    assert completed.returncode == 2
    assert not (tmp_path / "pwned").exists()
    assert completed.stderr == (
        "shipml optimize: environment SHIPML_CANDIDATES: '$(touch pwned)' is not valid; "
        "valid: graph, dynamic_int8, static_int8, fp16\n")
    assert outputs.get("status", "error") == "error"  # an error result, or none at all
