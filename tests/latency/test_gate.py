"""The latency gate end to end: real models measured in real child processes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shipml.cli import main
from tests._models import FAST, FAST_BASELINE, write_config

MODEL = {"path": "model.onnx", "label": "benign", "test": "test.csv"}


def run(folder: Path, latency: dict[str, Any], *extra: str) -> tuple[int, dict[str, Any]]:
    write_config(folder, {"model": MODEL, "latency": {**FAST, **latency}})
    code = main(["latency", "--config", str(folder / "shipml.yaml"),
                 "--output-dir", str(folder / ".shipml"), *extra])
    result_file = folder / ".shipml" / "results" / "latency.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return code, result


def test_example_within_generous_budgets_passes_and_reports_every_figure(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(workdir, {
        "batch_sizes": [1, 4],
        "budgets": {"1": {"p95_ms": 500, "p99_ms": 800, "throughput_min": 1, "memory_mb": 2000},
                    "4": {"p50_ms": 500}},
    })
    assert code == 0, capsys.readouterr()
    assert result["status"] == "pass"
    batches = result["metrics"]["batches"]
    assert set(batches) == {"1", "4"}
    for figures in batches.values():
        for key in ("p50", "p90", "p95", "p99"):
            low, high = figures[f"{key}_ci_ms"]
            assert 0 < low <= figures[f"{key}_ms"] <= high
        assert figures["p50_ms"] <= figures["p90_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
        assert figures["processes"] >= 2 and figures["runs"] >= 20
        assert figures["session_create_ms"] > 0 and figures["model_load_ms"] > 0
        assert figures["throughput_rps"] > 0
    distribution = result["metrics"]["distribution"]["1"]
    assert len(distribution) >= 20
    values = [point[0] for point in distribution]
    quantiles = [point[1] for point in distribution]
    assert values == sorted(values) and quantiles == sorted(quantiles)
    assert quantiles[0] == 0.0 and quantiles[-1] == 1.0
    names = [check["name"] for check in result["checks"]]
    assert names == [
        "p95 latency at batch 1 is below 500 ms",
        "p99 latency at batch 1 is below 800 ms",
        "throughput at batch 1 is at least 1 rows/s",
        "peak memory at batch 1 is below 2000 MiB",
        "median latency at batch 4 is below 500 ms",
    ]
    assert all(check["status"] == "pass" for check in result["checks"])
    assert result["metrics"]["inputs"]["source"] == "data"
    # the generic figures the report renders without knowing latency
    (table,) = result["tables"]
    assert [c["key"] for c in table["columns"]] == ["batch", "p50_ms", "p95_ms", "p99_ms",
                                                   "throughput_rps"]
    assert [row["batch"] for row in table["rows"]] == [1, 4]
    assert table["rows"][0]["p95_ms"] == batches["1"]["p95_ms"]
    assert table["rows"][1]["throughput_rps"] == batches["4"]["throughput_rps"]
    assert [s["title"] for s in result["series"]] == ["Latency distribution, batch 1",
                                                      "Latency distribution, batch 4"]
    series = result["series"][0]
    assert (series["x_label"], series["y_label"]) == ("percentile", "ms")
    assert series["categories"][0] == "p0" and series["categories"][-1] == "p100"
    assert "p50" in series["categories"] and "p99" in series["categories"]
    assert series["values"] == sorted(series["values"])
    assert result["deltas"] == [] and result["handoff"] == []
    html = (workdir / ".shipml" / "artifacts" / "latency.html").read_text()
    assert "<polyline" in html and "p95 latency at batch 1 is below 500 ms" in html
    out = capsys.readouterr().out
    assert out.startswith("shipml latency: PASS: batch 1: p50 ")


def test_a_budget_wholly_below_the_interval_fails_the_gate(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(workdir, {"budgets": {"1": {"p95_ms": 0.0001}}})
    assert code == 1
    assert result["status"] == "fail"
    (check,) = result["checks"]
    assert check["name"] == "p95 latency at batch 1 is below 0.0001 ms"
    assert check["status"] == "fail"
    assert check["threshold"] == 0.0001
    assert "the whole interval is above the budget" in check["detail"]
    assert "FAIL  p95 latency at batch 1 is below 0.0001 ms" in capsys.readouterr().out


def test_an_unreachable_throughput_and_memory_fail(workdir: Path) -> None:
    code, result = run(workdir, {"budgets": {"1": {"throughput_min": 1e12, "memory_mb": 0.5}}})
    assert code == 1
    throughput, memory = result["checks"]
    assert throughput["name"] == "throughput at batch 1 is at least 1000000000000 rows/s"
    assert throughput["status"] == "fail"
    assert "below the budget" in throughput["detail"]
    assert memory["name"] == "peak memory at batch 1 is below 0.5 MiB"
    assert memory["status"] == "fail"
    assert memory["observed"] == pytest.approx(result["metrics"]["batches"]["1"]["memory_mb"], abs=0.01)
    assert memory["observed"] > 0.5


def test_artifact_against_itself_passes_the_regression_gate(workdir: Path) -> None:
    code, result = run(workdir, {"baseline": {**FAST_BASELINE, "path": "model.onnx"}})
    assert code == 0
    regression = result["metrics"]["regression"]["1"]
    assert regression["ci_low"] <= regression["ratio"] <= regression["ci_high"]
    assert regression["ci_low"] < 1.1
    (check,) = result["checks"]
    assert check["name"] == "latency at batch 1 is at most 10% above the baseline"
    assert check["status"] == "pass"
    assert check["threshold"] == 1.1
    (delta,) = result["deltas"]
    # one p50 of the candidate, the figures table's; the baseline's over the measured ratio
    p50 = result["metrics"]["batches"]["1"]["p50_ms"]
    assert delta == {"name": "p50 latency at batch 1",
                     "baseline": round(p50 / regression["ratio"], 6), "candidate": p50,
                     "unit": "ms", "higher_is_better": False,
                     "interval": [regression["ci_low"], regression["ci_high"]], "note": ""}


@pytest.mark.parametrize("interleave", ["runs", "processes"])
def test_a_slower_artifact_fails_the_regression_gate(
        workdir: Path, capsys: pytest.CaptureFixture[str], interleave: str) -> None:
    # The candidate is the example plus redundant work; the baseline is the plain example.
    code, result = run(workdir, {"model": "slow.onnx", "baseline": {
        **FAST_BASELINE, "path": "model.onnx", "interleave": interleave}})
    assert code == 1, capsys.readouterr()
    regression = result["metrics"]["regression"]["1"]
    assert regression["interleave"] == interleave
    assert len(regression["round_ratios"]) == regression["rounds"] >= 4
    assert regression["ci_low"] > 1.1
    assert regression["candidate_p50_ms"] > regression["baseline_p50_ms"]
    (check,) = result["checks"]
    assert check["status"] == "fail"
    assert "the whole interval is above the tolerance" in check["detail"]


def _commit_model(workdir: Path) -> None:
    """Make ``workdir`` a git repository whose HEAD holds ``model.onnx`` as it is now."""
    git = shutil.which("git")
    assert git is not None, "git is needed for the git_ref baseline"
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(workdir)}
    for command in (["init", "-q"], ["add", "model.onnx"], ["commit", "-q", "-m", "model"]):
        subprocess.run([git, *command], cwd=workdir, check=True, env=env)


def test_baseline_read_from_a_git_ref(workdir: Path) -> None:
    _commit_model(workdir)
    # The working tree now holds a slower model; HEAD still has the original.
    shutil.copy(workdir / "slow.onnx", workdir / "model.onnx")
    code, result = run(workdir, {"baseline": {**FAST_BASELINE, "git_ref": "HEAD"}})
    assert code == 1
    assert result["metrics"]["regression"]["1"]["baseline"] == "HEAD:model.onnx"
    assert result["metrics"]["regression"]["1"]["ci_low"] > 1.1


def test_git_ref_baseline_is_the_shipped_artifact_when_another_file_is_measured(
        workdir: Path) -> None:
    # As under `shipml run` after optimize: latency measures a file git never saw (--candidate);
    # the baseline is still model.path as it is at the ref.
    _commit_model(workdir)
    kept = workdir / ".shipml" / "artifacts" / "model.optimized.onnx"
    kept.parent.mkdir(parents=True)
    shutil.copy(workdir / "slow.onnx", kept)
    code, result = run(workdir, {"baseline": {**FAST_BASELINE, "git_ref": "HEAD"}},
                       "--candidate", str(kept))
    assert code == 1
    assert result["metrics"]["model"] == str(kept)
    assert result["metrics"]["regression"]["1"]["baseline"] == "HEAD:model.onnx"


def test_transformer_with_synthetic_token_ids(tmp_path: Path, encoder: Path) -> None:
    write_config(tmp_path, {"model": {"path": str(encoder)}, "latency": {
        **FAST, "batch_sizes": [1, 2], "inputs": {"dims": {"sequence_length": 16}},
        "budgets": {"2": {"p99_ms": 10000}}}})
    code = main(["latency", "--config", str(tmp_path / "shipml.yaml"),
                 "--output-dir", str(tmp_path / "out")])
    assert code == 0
    result = json.loads((tmp_path / "out" / "results" / "latency.json").read_text())
    inputs = result["metrics"]["inputs"]
    assert inputs["source"] == "synthetic"
    assert inputs["tensors"] == [{"name": "input_ids", "type": "tensor(int64)",
                                  "shape": ["batch", 16]}]
    assert set(result["metrics"]["batches"]) == {"1", "2"}


def test_github_outputs_and_summary(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs, summary = workdir / "out.txt", workdir / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("SHIPML_BATCH_SIZES", "1,2")
    code, result = run(workdir, {})
    assert code == 0
    assert set(result["metrics"]["batches"]) == {"1", "2"}
    text = outputs.read_text()
    assert "status<<ghadelimiter_" in text and "\npass\n" in text
    assert str(workdir / ".shipml" / "results" / "latency.json") in text
    text = summary.read_text()
    assert "latency" in text.splitlines()[0]
    assert "| batch | p50 (ms) | p95 (ms) | p99 (ms) | throughput (rows/s) |" in text


def test_transformer_on_real_token_rows(tmp_path: Path, encoder: Path) -> None:
    import numpy as np

    from tests._models import token_rows

    np.savez(tmp_path / "tokens.npz", input_ids=token_rows(5, 24))
    write_config(tmp_path, {"model": {"path": str(encoder)}, "latency": {
        **FAST, "batch_sizes": [1, 8], "inputs": {"data": "tokens.npz"}}})
    code = main(["latency", "--config", str(tmp_path / "shipml.yaml"),
                 "--output-dir", str(tmp_path / "out")])
    assert code == 0
    inputs = json.loads((tmp_path / "out" / "results" / "latency.json").read_text())[
        "metrics"]["inputs"]
    assert inputs == {"source": "data", "data": str(tmp_path / "tokens.npz"),
                      "tensors": [{"name": "input_ids", "type": "tensor(int64)",
                                   "shape": ["batch", 24]}]}
