"""optimize refuses bad input with exit 2 and one message naming the key or file, before work."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from shipml.cli import main
from tests._models import export_failing_at_run_time, write_config
from tests.optimize.conftest import copy_case


def refused(folder: Path, document: dict[str, Any], capsys: pytest.CaptureFixture[str],
            *extra: str) -> str:
    write_config(folder, document)
    code = main(["optimize", "--config", str(folder / "shipml.yaml"),
                 "--output-dir", str(folder / "out"), *extra])
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err
    result = json.loads((folder / "out" / "results" / "optimize.json").read_text())
    assert (result["status"], result["error"]["exit_code"]) == ("error", 2)
    return captured.err


@pytest.mark.parametrize("output", ["model.onnx", "./sub/../model.onnx", "{folder}/model.onnx",
                                    "link.onnx"])
def test_output_that_is_the_model_itself_is_refused_before_any_work(
        tmp_path: Path, mlp_classifier: Path, capsys: pytest.CaptureFixture[str],
        output: str) -> None:
    copy_case(mlp_classifier, tmp_path)
    (tmp_path / "sub").mkdir()
    os.link(tmp_path / "model.onnx", tmp_path / "link.onnx")  # the same file by another name
    before = (tmp_path / "model.onnx").read_bytes()
    err = refused(tmp_path, {
        "model": {"path": "model.onnx", "test": "test.csv", "label": "y"},
        "optimize": {"candidates": ["graph"], "pick": "graph",
                     "output": output.format(folder=tmp_path)},
    }, capsys)
    assert err.startswith(f"shipml optimize: {tmp_path / 'shipml.yaml'}:")
    assert "optimize.output: optimize.output " in err
    assert "is the model being optimized" in err
    assert err.endswith("e.g.\n  optimize:\n    output: dist/model.optimized.onnx\n")
    assert (tmp_path / "model.onnx").read_bytes() == before
    assert not (tmp_path / "out" / "artifacts").exists()  # nothing was transformed


def test_output_from_the_flag_names_the_flag(tmp_path: Path, mlp_classifier: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    copy_case(mlp_classifier, tmp_path)
    err = refused(tmp_path, {"model": {"path": "model.onnx"}}, capsys,
                  "--output", str(tmp_path / "model.onnx"))
    assert err.startswith(f"shipml optimize: --output: optimize.output {tmp_path / 'model.onnx'} "
                          "is the model being optimized")


def test_output_that_is_a_folder(tmp_path: Path, mlp_classifier: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    copy_case(mlp_classifier, tmp_path)
    (tmp_path / "dist").mkdir()
    err = refused(tmp_path, {"model": {"path": "model.onnx"},
                             "optimize": {"output": "dist"}}, capsys)
    assert err == (f"shipml optimize: {tmp_path / 'shipml.yaml'}:4 optimize.output: "
                   f"{tmp_path / 'dist'} is a directory; give the path of a file, e.g. "
                   "dist/model.optimized.onnx\n")


def test_a_model_that_fails_at_run_time(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    export_failing_at_run_time(tmp_path / "broken.onnx")
    err = refused(tmp_path, {"model": {"path": "broken.onnx"}}, capsys)
    assert err.startswith(
        f"shipml optimize: {tmp_path / 'shipml.yaml'}:2 model.path: onnxruntime could not run "
        f"{tmp_path / 'broken.onnx'} on the parity inputs (synthetic tensors): "
        "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Reshape")
    assert err.count("\n") == 1


def test_a_model_with_string_inputs_and_only_label_outputs_runs(
        tmp_path: Path, binary_case: Any) -> None:
    # String columns, a ZipMap output and no data: synthetic strings, labels and probabilities
    # compared (this was a traceback: no float tensor output to compare).
    document = {"model": {"path": str(binary_case.model)},
                "optimize": {"candidates": ["graph"], "pick": "none"}}
    write_config(tmp_path, document)
    code = main(["optimize", "--config", str(tmp_path / "shipml.yaml"),
                 "--output-dir", str(tmp_path / "out")])
    assert code == 0
    result = json.loads((tmp_path / "out" / "results" / "optimize.json").read_text())
    parity = result["metrics"]["candidates"]["graph"]["parity"]
    assert parity["label_agreement"] == 1.0 and parity["min_cosine"] == pytest.approx(1.0)


def test_optimize_does_not_read_the_latency_section(
        tmp_path: Path, encoder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # latency.inputs.dims sizes latency's inputs alone; the key both stages read is model.inputs.
    err = refused(tmp_path, {"model": {"path": str(encoder)},
                             "latency": {"inputs": {"dims": {"sequence_length": 16}}}}, capsys)
    assert err == (
        f"shipml optimize: {tmp_path / 'shipml.yaml'}:1 model.inputs.dims: model input "
        "'input_ids' axis 1 ('sequence_length') is dynamic and has no size; give it one, e.g.\n"
        "  model:\n    inputs:\n      dims:\n        sequence_length: 128\n")


@pytest.mark.parametrize(("key", "value", "message"), [
    (("timing", "warmup"), 1.0e12, "1000000000000.0 is greater than the maximum of 100000"),
    (("timing", "rounds"), 10**9, "1000000000 is greater than the maximum of 1000"),
    (("inputs", "dims"), {"sequence_length": 10**9},
     "1000000000 is greater than the maximum of 1048576"),
])
def test_unbounded_numbers_are_bad_keys(tmp_path: Path, encoder: Path,
                                        capsys: pytest.CaptureFixture[str],
                                        key: tuple[str, str], value: Any, message: str) -> None:
    write_config(tmp_path, {"model": {"path": str(encoder)},
                            "optimize": {key[0]: {key[1]: value}}})
    code = main(["optimize", "--config", str(tmp_path / "shipml.yaml"),
                 "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"optimize.{key[0]}." in err and message in err


def test_a_missing_column_of_a_single_tensor_model_is_named(
        tmp_path: Path, mlp_classifier: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    copy_case(mlp_classifier, tmp_path)
    pd.read_csv(tmp_path / "test.csv").drop(columns=["x3"]).to_csv(tmp_path / "test.csv",
                                                                   index=False)
    err = refused(tmp_path, {"model": {"path": "model.onnx", "label": "y", "train": "train.csv",
                                       "test": "test.csv"},
                             "optimize": {"candidates": ["graph"]}}, capsys)
    columns = [f"x{i}" for i in range(12)]
    assert err == (
        f"shipml optimize: {tmp_path / 'shipml.yaml'}:5 model.test: {tmp_path / 'test.csv'}: "
        f"feature columns ['x3'] are missing; the model reads {columns}; data columns: "
        f"{[c for c in columns if c != 'x3']}\n")
