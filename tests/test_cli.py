"""The shipml command as a user meets it: help, version, init, demo, subprocess exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shipml.cli import build_parser, main
from shipml.example import example_dir
from tests.conftest import Case


def test_help_lists_only_commands_that_exist(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for command in build_parser()._subparsers._group_actions[0].choices:  # type: ignore[union-attr]
        assert command in out
    for future in ("deploy", "rollout"):
        assert f"    {future} " not in out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: shipml" in capsys.readouterr().err


def test_unknown_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["validate", "--modle", "x.onnx"])
    assert stop.value.code == 2
    assert "unrecognized arguments: --modle x.onnx" in capsys.readouterr().err


def test_python_dash_m_and_console_script(tmp_path: Path) -> None:
    version = subprocess.run([sys.executable, "-m", "shipml", "--version"], capture_output=True,
                             text=True, check=True)
    assert version.stdout.startswith("shipml ")
    bad = subprocess.run([sys.executable, "-m", "shipml", "validate", "--model",
                          str(tmp_path / "missing.onnx"), "--suites", "data_integrity"],
                         capture_output=True, text=True, cwd=tmp_path, check=False)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert bad.stderr.startswith("shipml validate: model.label is not set")


def test_init_detects_label_task_and_categoricals(binary_case: Case, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "shipml.yaml"
    code = main(["init", "--model", str(binary_case.model), "--train", str(binary_case.train),
                 "--test", str(binary_case.test), "--output", str(output)])
    assert code == 0
    document = yaml.safe_load(output.read_text())
    assert document["model"]["label"] == "churned"
    assert document["model"]["task"] == "binary"
    assert document["model"]["categorical_features"] == ["plan"]
    assert "wrote" in capsys.readouterr().out
    assert main(["init", "--model", str(binary_case.model), "--train", str(binary_case.train),
                 "--output", str(output)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err


def test_init_multiclass_tensor_model_needs_the_label(multiclass_case: Case, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "shipml.yaml"
    assert main(["init", "--model", str(multiclass_case.model), "--train",
                 str(multiclass_case.train), "--output", str(output)]) == 2
    assert "cannot tell which column is the label; pass --label" in capsys.readouterr().err
    assert main(["init", "--model", str(multiclass_case.model), "--train",
                 str(multiclass_case.train), "--label", "species", "--output", str(output)]) == 0
    assert yaml.safe_load(output.read_text())["model"]["task"] == "multiclass"


@pytest.mark.deepchecks
def test_demo_runs_the_bundled_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--dir", str(tmp_path / "demo")])
    out = capsys.readouterr().out
    assert code == 0, out
    for stage in ("validate", "optimize", "latency"):
        result = json.loads((tmp_path / "demo" / "results" / f"{stage}.json").read_text())
        assert result["status"] == "pass", (stage, result["summary"])
        assert f"result    {tmp_path / 'demo' / 'results' / f'{stage}.json'}" in out
    # latency measured what optimize kept, against the original as its baseline
    latency = json.loads((tmp_path / "demo" / "results" / "latency.json").read_text())
    assert latency["metrics"]["model"] == str(tmp_path / "demo" / "artifacts" / "model.optimized.onnx")
    assert "ready to ship: 3 of 3 stages passed" in (tmp_path / "demo" / "report" / "report.md").read_text()
    assert "shipml run: validate passed, optimize passed, latency passed, report passed" in out
    assert "shipml demo: all gates passed" in out
    for name in ("model.onnx", "train.csv", "test.csv", "shipml.yaml"):
        assert (example_dir() / name).is_file()


def test_a_bug_in_a_stage_leaves_an_error_result_and_no_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import shipml.validate.core

    def crash(*_: object) -> None:
        raise KeyError("p95_ms")  # stands in for any bug that escapes a stage

    monkeypatch.setattr(shipml.validate.core, "run_validate", crash)
    output = tmp_path / "github_output"
    output.write_text("")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    code = main(["validate", "--model", "m.onnx", "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 3
    assert "Traceback" not in err
    assert "shipml validate: internal error: KeyError: 'p95_ms' — this is a bug in shipml" in err
    result = json.loads((tmp_path / "out" / "results" / "validate.json").read_text())
    assert result["status"] == "error"
    assert result["error"]["kind"] == "internal" and result["error"]["exit_code"] == 3
    assert "status<<" in output.read_text() and "\nerror\n" in output.read_text()


@pytest.mark.parametrize("command", ["validate", "latency", "optimize", "run"])
def test_an_output_dir_that_is_a_file_is_refused_before_any_work(
        command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file")
    code = main([command, "--model", "missing.onnx", "--output-dir", str(blocker)]
                if command != "run" else [command, "--output-dir", str(blocker)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"--output-dir: {blocker} cannot hold results: it is a file, not a folder" in err
    assert "Traceback" not in err
    assert blocker.read_text() == "a file"


def test_an_output_dir_that_cannot_be_created_names_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("SHIPML_OUTPUT_DIR", str(tmp_path / "file" / "below"))
    assert main(["validate", "--model", "m.onnx"]) == 2
    assert "environment SHIPML_OUTPUT_DIR: " in capsys.readouterr().err


def test_schema_output_at_a_folder_is_refused(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--output", str(tmp_path)]) == 2
    assert f"--output: {tmp_path} is a folder; name the file to write" in capsys.readouterr().err
    assert main(["schema", "--output", str(tmp_path / "missing" / "s.json")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert main(["schema", "--output", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["properties"]["model"]
