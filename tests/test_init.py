"""``shipml init`` with bad outputs and labels: exit 2 before any work, nothing lost."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from shipml.cli import main
from tests.conftest import Case


def init(case: Case, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["init", "--model", str(case.model), "--train", str(case.train), *extra])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.err


def test_output_that_is_a_folder(binary_case: Case, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, err = init(binary_case, capsys, "--output", str(tmp_path))
    assert code == 2
    assert err == (f"shipml init: --output: {tmp_path} is a folder; give the file to write, "
                   f"e.g. --output {tmp_path / 'shipml.yaml'}\n")
    assert list(tmp_path.iterdir()) == []


def test_output_folder_with_force_is_still_refused(binary_case: Case, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, err = init(binary_case, capsys, "--output", str(tmp_path), "--force")
    assert code == 2
    assert "is a folder" in err


def test_output_under_a_file_cannot_be_written(binary_case: Case, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me\n")
    output = blocker / "shipml.yaml"
    code, err = init(binary_case, capsys, "--output", str(output))
    assert code == 2
    assert err.startswith(f"shipml init: --output: cannot write {output}: {blocker} (")
    assert blocker.read_text() == "keep me\n"


def test_output_that_is_not_a_regular_file(binary_case: Case,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, err = init(binary_case, capsys, "--output", "/dev/null", "--force")
    assert code == 2
    assert err == "shipml init: --output: /dev/null is not a regular file; give a file path\n"


def test_bad_output_is_refused_before_the_model_is_read(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["init", "--model", str(tmp_path / "missing.onnx"), "--train",
                 str(tmp_path / "missing.csv"), "--output", str(tmp_path)])
    assert code == 2
    assert "--output:" in capsys.readouterr().err


def test_a_failure_keeps_the_old_file_and_leaves_no_temporary(
        binary_case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "shipml.yaml"
    output.write_text("model: {path: mine.onnx}\n")
    code, _ = init(binary_case, capsys, "--output", str(output), "--force", "--label", "nope")
    assert code == 2
    assert output.read_text() == "model: {path: mine.onnx}\n"
    assert [path.name for path in tmp_path.iterdir()] == ["shipml.yaml"]


def test_force_replaces_the_file_with_the_usual_mode(binary_case: Case, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "sub" / "shipml.yaml"
    code, _ = init(binary_case, capsys, "--output", str(output))
    assert code == 0
    assert yaml.safe_load(output.read_text())["model"]["label"] == "churned"
    assert stat.S_IMODE(output.stat().st_mode) & 0o044  # readable by others, as a plain write
    code, _ = init(binary_case, capsys, "--output", str(output), "--force")
    assert code == 0
    assert [path.name for path in output.parent.iterdir()] == ["shipml.yaml"]


def test_a_misspelled_label_suggests_the_column(binary_case: Case, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, err = init(binary_case, capsys, "--output", str(tmp_path / "shipml.yaml"),
                     "--label", "churnd")
    assert code == 2
    assert err == (f"shipml init: {binary_case.train}: label column 'churnd' (from --label) is "
                   "not in the data; did you mean 'churned'? (columns: age, income, score, "
                   "tenure, plan, churned)\n")
    assert not (tmp_path / "shipml.yaml").exists()


def test_the_starter_config_binds_the_model_as_validate_does(multiclass_case: Case,
                                                              tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    output = tmp_path / "shipml.yaml"
    code, _ = init(multiclass_case, capsys, "--output", str(output), "--label", "species")
    assert code == 0
    model = yaml.safe_load(output.read_text(encoding="utf-8"))["model"]
    assert (model["task"], model["label"]) == ("multiclass", "species")
    assert "categorical_features" not in model and "ignore_columns" not in model
