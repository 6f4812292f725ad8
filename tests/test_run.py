"""``shipml run``: stage selection, chaining optimize into latency, and what stops the pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from shipml import stages
from shipml.cli import main
from shipml.commands.run import select_stages
from shipml.errors import ConfigError
from shipml.example import FILES, example_dir
from shipml.results import StageResult


def test_stages_default_to_the_sections_in_the_config() -> None:
    assert select_stages(None, ["latency", "validate"], "--stages") == ["validate", "latency", "report"]
    assert select_stages(None, [], "--stages") == ["validate", "report"]
    assert select_stages(None, ["optimize", "model", "report"], "--stages") == ["optimize", "report"]


def test_an_explicit_list_that_names_no_stage_is_an_error() -> None:
    with pytest.raises(ConfigError) as error:
        select_stages(" , ", ["optimize"], "--stages")
    assert error.value.message.startswith("--stages: names no stage; give a comma-separated list")


def test_explicit_stages_run_in_pipeline_order() -> None:
    assert select_stages("report, latency", ["validate"], "--stages") == ["latency", "report"]


def test_unknown_stage_names_the_source_and_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as error:
        select_stages("validate,lantecy", [], "environment SHIPML_STAGES")
    assert error.value.message == ("environment SHIPML_STAGES: unknown stage 'lantecy'; valid stages: "
                                   + ", ".join(stages.pipeline()))
    assert "serve" not in stages.pipeline()  # runs until stopped: never a pipeline stage


def _example(tmp_path: Path, **sections: object) -> Path:
    for name in FILES:
        shutil.copy2(example_dir() / name, tmp_path / name)
    config = yaml.safe_load((tmp_path / "shipml.yaml").read_text())
    config.update(sections)
    (tmp_path / "shipml.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "shipml.yaml"


_QUICK_LATENCY = {"batch_sizes": [1], "max_time_s": 2, "min_runs": 50, "process_time_s": 0.2,
                  "min_processes": 2}


def test_latency_measures_the_model_optimize_kept(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = _example(tmp_path, optimize={"candidates": ["graph"], "pick": "graph"},
                      latency=_QUICK_LATENCY)
    out = tmp_path / "out"
    (out / "results").mkdir(parents=True)
    (out / "results" / "latency.json").write_text("stale")  # removed before the stage runs
    code = main(["run", "--config", str(config), "--output-dir", str(out),
                 "--stages", "optimize,latency,report"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    optimize = json.loads((out / "results" / "optimize.json").read_text())
    latency = json.loads((out / "results" / "latency.json").read_text())
    assert optimize["metrics"]["chosen"] == "graph"
    assert latency["metrics"]["model"] == optimize["metrics"]["output"]
    assert not (out / "results" / "validate.json").exists()
    assert (out / "report" / "report.md").is_file()
    assert "shipml run: optimize passed, latency passed, report passed" in printed


def test_a_configured_latency_model_is_not_replaced(tmp_path: Path) -> None:
    config = _example(tmp_path, optimize={"candidates": ["graph"], "pick": "graph"},
                      latency={**_QUICK_LATENCY, "model": "model.onnx"})
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--output-dir", str(out),
                 "--stages", "optimize,latency"]) == 0
    latency = json.loads((out / "results" / "latency.json").read_text())
    assert latency["metrics"]["model"] == str(tmp_path / "model.onnx")


def test_bad_input_stops_the_gates_and_report_still_publishes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _example(tmp_path, optimize={"candidates": ["graph"], "pick": "graph",
                                          "model": "missing.onnx"},
                      latency=_QUICK_LATENCY)
    out = tmp_path / "out"
    (out / "results").mkdir(parents=True)
    # a result from an earlier job (e.g. a downloaded artifact) of a stage not run now is kept
    StageResult(stage="validate", status="pass", summary="41/41 conditions passed",
                started_at="2026-11-25T10:00:00+00:00", duration_s=9.5).write(out)
    code = main(["run", "--config", str(config), "--output-dir", str(out),
                 "--stages", "optimize,latency,report"])
    captured = capsys.readouterr()
    assert code == 2
    assert "missing.onnx" in captured.err
    assert "latency not run (an earlier stage exited 2)" in captured.err
    assert not (out / "results" / "latency.json").exists()
    assert (out / "report" / "report.md").is_file()
    assert "shipml run: optimize bad input, report passed" in captured.out
    optimize = json.loads((out / "results" / "optimize.json").read_text())
    assert optimize["status"] == "error" and "missing.onnx" in optimize["summary"]
    report = (out / "report" / "report.md").read_text()
    assert "41/41 conditions passed" in report
    assert "not ready to ship: optimize stopped with a configuration error" in report
    assert "missing.onnx" in report


def test_a_config_that_does_not_load_still_ends_in_an_error_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "shipml.yaml"
    config.write_text("model:\n  path: model.onnx\nvalidate:\n  fail_onn: warn\n")
    outputs = tmp_path / "github_output"
    outputs.write_text("")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    out = tmp_path / "out"
    StageResult(stage="validate", status="pass", summary="an earlier run passed",
                started_at="2026-11-25T10:00:00+00:00", duration_s=1.0).write(out)
    code = main(["run", "--config", str(config), "--output-dir", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err
    assert "unknown key 'validate.fail_onn'; did you mean 'fail_on'?" in captured.out
    validate = StageResult.read(out / "results" / "validate.json")
    assert validate.status == "error" and validate.error is not None
    assert validate.error.kind == "config" and validate.error.exit_code == 2
    report = (out / "report" / "report.md").read_text()
    assert "not ready to ship" in report and "fail_onn" in report
    assert "an earlier run passed" not in report
    written = outputs.read_text()
    assert "status<<" in written and "\nerror\n" in written


def test_the_report_publishes_the_error_results_when_its_own_config_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "shipml.yaml"
    config.write_text("report:\n  titel: x\n")
    out = tmp_path / "out"
    assert main(["validate", "--config", str(config), "--output-dir", str(out)]) == 2
    assert main(["report", "--config", str(config), "--output-dir", str(out)]) == 2
    assert "unknown key 'report.titel'" in capsys.readouterr().err
    assert "not ready to ship: validate stopped with a configuration error" in \
        (out / "report" / "report.md").read_text()
