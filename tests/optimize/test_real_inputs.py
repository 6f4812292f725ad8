"""Real inputs for models that do not read a table, and a real exporter's quirks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from shipml.cli import main
from shipml.optimize.core import summary
from shipml.results import Check
from tests._models import export_scaled_logistic, token_rows, write_config, write_jsonl

FAST_TIMING = {"rounds": 3, "process_time_s": 0.2, "warmup": 2}


def optimize(folder: Path, document: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    write_config(folder, document)
    code = main(["optimize", "--config", str(folder / "shipml.yaml"),
                 "--output-dir", str(folder / "out")])
    result_file = folder / "out" / "results" / "optimize.json"
    return code, (json.loads(result_file.read_text()) if result_file.exists() else {})


def test_parity_and_calibration_on_real_token_rows(tmp_path: Path, encoder: Path) -> None:
    np.savez(tmp_path / "parity.npz", input_ids=token_rows(24, 20, seed=1))
    write_jsonl(tmp_path / "calibration.jsonl",
                [{"input_ids": row.tolist()} for row in token_rows(32, 20, seed=2)])
    code, result = optimize(tmp_path, {
        "model": {"path": str(encoder)},
        "optimize": {"candidates": ["graph", "static_int8"], "pick": "graph",
                     "parity": {"data": "parity.npz", "min_cosine": 0.9},
                     "static_int8": {"data": "calibration.jsonl", "rows": 32}},
    })
    assert code == 0, result.get("checks")
    metrics = result["metrics"]
    assert (metrics["parity_kind"], metrics["parity_rows"]) == ("embedding", 24)
    assert metrics["parity_source"] == "data"
    assert metrics["candidates"]["graph"]["parity"]["min_cosine"] == pytest.approx(1.0)
    assert metrics["candidates"]["static_int8"]["parity"]["min_cosine"] >= 0.9
    # no dims were configured: the files' own sequence length (20) was used throughout
    assert "optimize.inputs.dims" not in json.dumps(result)


def test_tensor_data_in_optimize_inputs_serves_every_use(tmp_path: Path, encoder: Path) -> None:
    write_jsonl(tmp_path / "tokens.jsonl",
                [{"input_ids": row.tolist()} for row in token_rows(16, 12, seed=4)])
    code, result = optimize(tmp_path, {
        "model": {"path": str(encoder)},
        "optimize": {"candidates": ["dynamic_int8"], "inputs": {"data": "tokens.jsonl"},
                     "parity": {"min_cosine": 0.9}, "timing": FAST_TIMING},
    })
    assert code == 0
    assert result["metrics"]["parity_rows"] == 16
    assert set(result["metrics"]["timing"]["p50_ms"]) == {"original", "dynamic_int8"}


def test_bad_tensor_data_names_the_key_the_file_and_the_input(
        tmp_path: Path, encoder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "parity.npz", input_ids=token_rows(4, 8).astype(np.float64))
    code, _ = optimize(tmp_path, {"model": {"path": str(encoder)},
                                  "optimize": {"parity": {"data": "parity.npz"}}})
    assert code == 2
    assert capsys.readouterr().err == (
        f"shipml optimize: {tmp_path / 'shipml.yaml'}:5 optimize.parity.data: "
        f"{tmp_path / 'parity.npz'}: input 'input_ids' holds float64 values; the model's input "
        "is tensor(int64)\n")


def test_dynamic_int8_on_an_skl2onnx_pipeline_with_a_duplicate_opset_import(
        tmp_path: Path) -> None:
    model = export_scaled_logistic(tmp_path)
    imports = [(entry.domain, entry.version) for entry in onnx.load(str(model)).opset_import]
    assert imports.count(("", 17)) == 2  # what skl2onnx writes: the default domain twice
    code, result = optimize(tmp_path, {
        "model": {"path": "model.onnx", "label": "y", "train": "train.csv", "test": "test.csv"},
        "optimize": {"candidates": ["dynamic_int8", "static_int8"], "pick": "dynamic_int8"},
    })
    assert code == 0, result["summary"]
    assert result["summary"] == "2/2 candidates hold parity; kept dynamic_int8"
    for name in ("dynamic_int8", "static_int8"):
        record = result["metrics"]["candidates"][name]
        assert "error" not in record and record["holds_parity"] is True
    kept = onnx.load(result["metrics"]["output"])
    assert [(e.domain, e.version) for e in kept.opset_import
            if e.domain in ("", "ai.onnx")] == [("", 17)]
    # the hand-off names the kept file and its digest; the original is untouched
    (handoff,) = result["handoff"]
    assert handoff["kind"] == "model" and handoff["path"] == result["metrics"]["output"]
    assert handoff["sha256"] == hashlib.sha256(Path(handoff["path"]).read_bytes()).hexdigest()
    assert [(e.domain, e.version) for e in onnx.load(str(model)).opset_import] == imports


def test_candidates_table(tmp_path: Path) -> None:
    export_scaled_logistic(tmp_path)
    code, result = optimize(tmp_path, {
        "model": {"path": "model.onnx", "label": "y", "test": "test.csv"},
        "optimize": {"candidates": ["graph"], "timing": FAST_TIMING},
    })
    assert code == 0
    (table,) = result["tables"]
    assert [c["key"] for c in table["columns"]] == ["candidate", "size_kib", "parity", "p50_ms",
                                                   "speedup"]
    original, graph = table["rows"]
    assert original["candidate"].startswith("original") and original["speedup"] == 1.0
    assert graph["candidate"].startswith("graph") and graph["parity"] == "holds"
    assert graph["p50_ms"] == result["metrics"]["candidates"]["graph"]["p50_ms"] > 0


def test_the_summary_names_errors_apart_from_broken_parity() -> None:
    records = {"graph": {"holds_parity": True},
               "dynamic_int8": {"holds_parity": False, "error": "Failed to find ai.onnx"},
               "fp16": {"holds_parity": False}}
    checks = [Check("dynamic_int8 transform applies to the model", "error",
                    group="parity:dynamic_int8"),
              Check("fp16 keeps cosine", "fail", group="parity:fp16")]
    assert summary("original", records, checks, {}) == (
        "1/3 candidates hold parity; kept the original "
        "(could not apply: dynamic_int8; broke parity: fp16)")
    assert summary("graph", {"graph": {"holds_parity": True}}, [], {}) == (
        "1/1 candidates hold parity; kept graph")
