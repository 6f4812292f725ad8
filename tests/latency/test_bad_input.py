"""Bad input ends with exit 2 and one precise message, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest

from shipml.cli import main
from tests._models import FAST, write_config

MODEL = {"path": "model.onnx", "label": "benign", "test": "test.csv"}


def fail(folder: Path, document: dict[str, Any], capsys: pytest.CaptureFixture[str],
         *extra: str) -> str:
    config = write_config(folder, document)
    code = main(["latency", "--config", str(config), "--output-dir", str(folder / "out"), *extra])
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err
    # an error result, so that the report does not judge only the stages that finished
    result = json.loads((folder / "out" / "results" / "latency.json").read_text())
    assert (result["status"], result["error"]["exit_code"]) == ("error", 2)
    assert captured.err.startswith(f"shipml latency: {result['summary']}")
    return captured.err


def test_dynamic_axis_without_a_size_names_the_input_and_axis(
        tmp_path: Path, encoder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fail(tmp_path, {"model": {"path": str(encoder)}, "latency": FAST}, capsys)
    assert err == (
        f"shipml latency: {tmp_path / 'shipml.yaml'}:1 model.inputs.dims: model input "
        "'input_ids' axis 1 ('sequence_length') is dynamic and has no size; give it one, e.g.\n"
        "  model:\n    inputs:\n      dims:\n        sequence_length: 128\n"
    )


def test_baseline_with_other_inputs_shows_both(
        workdir: Path, encoder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fail(workdir, {"model": MODEL, "latency": {
        **FAST, "baseline": {"path": str(encoder)}}}, capsys)
    config = workdir / "shipml.yaml"
    assert err.startswith(
        f"shipml latency: {config}:12 latency.baseline: the baseline takes different inputs "
        "than the candidate, so one cannot stand in for the other:\n"
        f"  baseline  {encoder}: input_ids tensor(int64) [batch, sequence_length]\n"
        f"  candidate {workdir / 'model.onnx'}: size_band tensor(string) [?, 1], "
        "mean_radius tensor(double) [?, 1], ")
    assert err.endswith("mean_fractal_dimension tensor(double) [?, 1]\n")


def test_unknown_provider_lists_the_available_ones(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fail(workdir, {"model": MODEL, "latency": FAST}, capsys, "--provider", "tpu")
    available = ", ".join(ort.get_available_providers())
    assert err == (
        f"shipml latency: --provider: provider 'tpu' (tpu) is not an onnxruntime execution "
        f"provider; available here: {available} (aliases: cpu)\n"
    )


def test_cuda_when_absent_says_how_to_get_it(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        # On a GPU runner CUDA is there: the same request must then run on it.
        write_config(workdir, {"model": MODEL, "latency": {**FAST, "provider": "cuda"}})
        assert main(["latency", "--config", "shipml.yaml", "--output-dir", "out"]) == 0
        return
    err = fail(workdir, {"model": MODEL, "latency": {**FAST, "provider": "cuda"}}, capsys)
    assert err.startswith(
        f"shipml latency: {workdir / 'shipml.yaml'}:12 latency.provider: provider 'cuda' "
        "(CUDAExecutionProvider) is not available in this onnxruntime; available here: ")
    assert err.endswith("install onnxruntime-gpu (and a CUDA runtime) on a runner with a GPU\n")


def test_unknown_budget_key_suggests_the_nearest(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fail(workdir, {"model": MODEL, "latency": {"budgets": {"1": {"p95ms": 20}}}}, capsys)
    assert err == (
        f"shipml latency: {workdir / 'shipml.yaml'}:8 latency.budgets.1.p95ms: unknown key "
        "'latency.budgets.1.p95ms'; did you mean 'p95_ms'? (valid keys here: memory_mb, "
        "p50_ms, p90_ms, p95_ms, p99_ms, throughput_min)\n"
    )


def test_budget_for_a_batch_size_not_measured(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fail(workdir, {"model": MODEL, "latency": {"budgets": {"8": {"p95_ms": 20}}}}, capsys)
    assert err == (
        f"shipml latency: {workdir / 'shipml.yaml'}:7 latency.budgets.8: a budget for batch 8, "
        "which is not measured; latency.batch_sizes is [1]: add 8 to it\n"
    )


def test_data_that_does_not_fit_the_model(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "other.csv").write_text("a,b\n1,2\n")
    err = fail(workdir, {"model": {**MODEL, "test": "other.csv"}, "latency": FAST}, capsys)
    assert err.startswith(
        f"shipml latency: {workdir / 'shipml.yaml'}:4 model.test: {workdir / 'model.onnx'}: "
        "model inputs ['size_band', ")
    assert "data columns: ['a', 'b']" in err


def test_bad_environment_number(workdir: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPML_TOLERANCE", "ten percent")
    err = fail(workdir, {"model": MODEL}, capsys)
    assert err == "shipml latency: environment SHIPML_TOLERANCE: 'ten percent' is not a number\n"


def test_missing_baseline_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fail(workdir, {"model": MODEL}, capsys, "--baseline", "nope.onnx")
    assert err == f"shipml latency: --baseline: baseline model {workdir / 'nope.onnx'} not found\n"


def test_unknown_git_ref(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fail(workdir, {"model": MODEL}, capsys, "--baseline-ref", "no-such-ref")
    assert err.startswith("shipml latency: --baseline-ref: `git ")
    assert "fetch-depth: 0" in err


def test_no_model_configured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fail(tmp_path, {"latency": FAST}, capsys)
    assert err == ("shipml latency: no model to measure: set model.path (or latency.model, or "
                   "--model), e.g.\n  model:\n    path: model.onnx\n")


@pytest.mark.parametrize("ref", ["--output=/tmp/shipml-pwned", "-p", "--end-of-options"])
def test_git_ref_that_git_would_read_as_an_option(
        workdir: Path, capsys: pytest.CaptureFixture[str], ref: str) -> None:
    err = fail(workdir, {"model": MODEL, "latency": {**FAST, "baseline": {"git_ref": ref}}},
               capsys)
    assert err == (
        f"shipml latency: {workdir / 'shipml.yaml'}:13 latency.baseline.git_ref: git_ref "
        f"{ref!r} starts with '-', which git would read as an option; give a branch, tag or "
        "commit, e.g. origin/main\n")
    assert not Path("/tmp/shipml-pwned").exists()


def test_git_show_is_told_where_options_end() -> None:
    import inspect

    from shipml import baseline

    assert '["show", "--end-of-options", f"{git_ref}:{inside}"]' in inspect.getsource(
        baseline.resolve_baseline)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("warmup", 1.0e12, "latency.warmup: 1000000000000.0 is greater than the maximum of 100000"),
    ("min_runs", 10**9, "latency.min_runs: 1000000000 is greater than the maximum of 1000000"),
    ("max_time_s", 1e9, "latency.max_time_s: 1000000000.0 is greater than the maximum of 3600"),
    ("inputs", {"dims": {"sequence_length": 1_000_000_000}},
     "latency.inputs.dims.sequence_length: 1000000000 is greater than the maximum of 1048576"),
])
def test_unbounded_numbers_are_bad_keys_not_an_overloaded_runner(
        tmp_path: Path, encoder: Path, capsys: pytest.CaptureFixture[str], key: str,
        value: Any, message: str) -> None:
    err = fail(tmp_path, {"model": {"path": str(encoder)}, "latency": {**FAST, key: value}},
               capsys)
    assert message in err
    assert err.count("\n") == 1


def test_feeds_above_the_ceiling_are_refused_before_allocating(
        tmp_path: Path, encoder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fail(tmp_path, {"model": {"path": str(encoder)}, "latency": {
        **FAST, "batch_sizes": [1, 4096], "inputs": {"dims": {"sequence_length": 100_000}}}},
        capsys)
    assert err == (
        f"shipml latency: {tmp_path / 'shipml.yaml'}:14 latency.inputs.dims: a batch of 4096 "
        "would feed 3125 MiB (input 'input_ids' [4096, 100000] tensor(int64)), more than "
        "latency.inputs.max_feed_mb allows (1024 MiB); use smaller dims or batch sizes, or raise "
        "latency.inputs.max_feed_mb\n")


def test_tensor_data_that_does_not_fit_names_the_file_and_the_input(
        tmp_path: Path, encoder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "tokens.jsonl"
    data.write_text('{"input_ids": [1, 2, 3]}\n{"input_ids": [4, 5]}\n')
    err = fail(tmp_path, {"model": {"path": str(encoder)},
                          "latency": {**FAST, "inputs": {"data": "tokens.jsonl"}}}, capsys)
    assert err == (
        f"shipml latency: {tmp_path / 'shipml.yaml'}:11 latency.inputs.data: {data}: input "
        "'input_ids' is ragged: line 1 has shape [3], line 2 has [2]; pad every row to one "
        "shape (and mark the padding in the attention mask)\n")


def test_a_missing_column_is_named(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    test = pd.read_csv(workdir / "test.csv").drop(columns=["mean_radius"])
    test.to_csv(workdir / "short.csv", index=False)
    err = fail(workdir, {"model": {**MODEL, "test": "short.csv", "train": "train.csv"},
                         "latency": FAST}, capsys)
    assert err.startswith(f"shipml latency: {workdir / 'shipml.yaml'}:4 model.test: ")
    assert "model inputs ['mean_radius'] are not columns of" in err
    assert "model.features" not in err
