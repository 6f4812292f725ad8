"""The stage-result contract of design.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipml.errors import ConfigError
from shipml.results import Artifact, Check, Handoff, StageResult, handed_on, read_all, stage_status


def sample() -> StageResult:
    return StageResult(
        stage="latency", status="pass", summary="p95 4.1 ms ≤ 20 ms budget",
        started_at="2026-11-24T06:00:00+00:00", duration_s=12.3456,
        metrics={"p95_ms": 4.1, "nan": float("nan")},
        checks=(Check("p95 budget @ batch 1", "pass", 4.1, 20, "ok"),),
        artifacts=(Artifact("latency.html", ".shipml/artifacts/latency.html"),),
    )


def test_round_trip_and_exact_shape(tmp_path: Path) -> None:
    path = sample().write(tmp_path)
    assert path == tmp_path / "results" / "latency.json"
    record = json.loads(path.read_text())
    assert list(record) == ["stage", "status", "summary", "started_at", "duration_s", "metrics",
                            "checks", "artifacts", "error", "handoff", "tables", "series", "deltas"]
    assert record["metrics"] == {"p95_ms": 4.1, "nan": None}
    assert record["checks"] == [{"name": "p95 budget @ batch 1", "status": "pass",
                                 "observed": 4.1, "threshold": 20, "detail": "ok"}]
    back = StageResult.read(path)
    assert back.checks == sample().checks
    assert [r.stage for r in read_all(tmp_path)] == ["latency"]


def test_reading_a_bad_status_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"stage": "x", "status": "green"}))
    with pytest.raises(ConfigError, match=r"field 'status' is 'green'; valid: pass, fail"):
        StageResult.read(path)


@pytest.mark.parametrize(("statuses", "fail_on", "expected"), [
    (["pass", "warn"], "fail", "pass"),
    (["pass", "warn"], "warn", "fail"),
    (["pass", "fail"], "fail", "fail"),
    (["pass", "error"], "fail", "fail"),
    (["fail", "error"], "never", "pass"),
    ([], "fail", "pass"),
])
def test_stage_status(statuses: list[str], fail_on: str, expected: str) -> None:
    checks = [Check(f"c{i}", s) for i, s in enumerate(statuses)]  # type: ignore[arg-type]
    assert stage_status(checks, fail_on) == expected  # type: ignore[arg-type]


def test_exit_codes() -> None:
    assert sample().exit_code == 0
    for status, code in (("fail", 1), ("error", 3), ("skipped", 0)):
        result = StageResult("v", status, "", "", 0.0)  # type: ignore[arg-type]
        assert result.exit_code == code


def test_error_handoff_and_figures_round_trip(tmp_path: Path) -> None:
    from shipml.results import Column, Delta, Handoff, Series, StageError, Table

    result = StageResult(
        stage="optimize", status="error", summary="bad", started_at="2026-12-03T00:00:00+00:00",
        duration_s=1.0, error=StageError("config", 2, "optimize.output: same file as model.path"),
        handoff=(Handoff("model", path="m.onnx", sha256="ab" * 32),),
        tables=(Table("candidates", (Column("name", "candidate"), Column("p50", "p50", "ms")),
                      ({"name": "graph", "p50": 0.25},)),),
        series=(Series("CDF", "percentile", "ms", ("p50", "p99"), (0.2, 0.9)),),
        deltas=(Delta("p50 latency", 0.3, 0.25, "ms", interval=(0.8, 0.9)),),
    )
    back = StageResult.read(result.write(tmp_path))
    assert back == result
    assert back.exit_code == 2
    assert back.handed("model") == Handoff("model", path="m.onnx", sha256="ab" * 32)
    assert back.handed("image") is None
    record = json.loads(result.to_json())
    assert record["error"] == {"kind": "config", "exit_code": 2,
                               "message": "optimize.output: same file as model.path"}
    assert record["handoff"] == [{"kind": "model", "path": "m.onnx", "sha256": "ab" * 32}]


def test_a_series_point_without_a_value_round_trips(tmp_path: Path) -> None:
    import math

    from shipml.results import Series

    # a canary promoted at its last step has no error rate for that step
    result = StageResult(stage="canary", status="pass", summary="", started_at="", duration_s=0.0,
                         series=(Series("Canary error rate per step", "step", "error rate %",
                                        ("1: 50%", "2: 100%"), (0.0, math.nan)),))
    assert json.loads(result.to_json())["series"][0]["values"] == [0.0, None]
    back = StageResult.read(result.write(tmp_path))
    assert back.series[0].values[0] == 0.0 and math.isnan(back.series[0].values[1])


@pytest.mark.parametrize(("field", "value", "message"), [
    ("error", {"kind": "oops", "exit_code": 2},
     "error.kind is 'oops'; valid: config, infrastructure, internal"),
    ("series", [{"title": "t", "categories": ["a", "b"], "values": [1]}], "has 2 categories and 1 values"),
    ("tables", [{"title": "t", "columns": [{"key": "a"}], "rows": [{"a": [1]}]}], "a table cell must be"),
])
def test_a_bad_new_field_names_what_is_wrong(tmp_path: Path, field: str, value: object,
                                              message: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"stage": "x", "status": "error", field: value}))
    with pytest.raises(ConfigError) as error:
        StageResult.read(path)
    assert message in error.value.message and str(path) in error.value.message


def test_a_result_nested_100k_deep_is_bad_input_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"stage": "x", "status": "pass", "metrics": {"a": ' + "[" * 100_000
                    + "]" * 100_000 + "}}")
    with pytest.raises(ConfigError) as error:
        StageResult.read(path)
    assert error.value.message == f"{path}: not a shipml stage result (nested too deeply)"


# --- hand-offs: one rule for what names them, one reader ----------------------------------------

_ID = "sha256:" + "1" * 64
_MANIFEST = "sha256:" + "2" * 64


@pytest.mark.parametrize(("handoff", "argument"), [
    # pushed: the manifest digest pins it in its registry
    (Handoff("image", ref=f"127.0.0.1:5000/wine@{_MANIFEST}", digest=_MANIFEST),
     f"127.0.0.1:5000/wine@{_MANIFEST}"),
    # built, not pushed: the local image id, which no later tag can move
    (Handoff("image", ref="127.0.0.1:5000/wine:v1", digest=_ID), _ID),
    (Handoff("image", ref="wine:v1"), "wine:v1"),
    (Handoff("image"), ""),
])
def test_an_image_is_named_by_its_digest_pushed_or_not(handoff: Handoff, argument: str) -> None:
    assert handoff.argument == argument


def test_a_model_is_named_by_its_file_while_it_exists(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    handoff = Handoff("model", path=str(model), sha256="ab" * 32)
    assert handoff.argument == ""
    model.write_bytes(b"onnx")
    assert handoff.argument == str(model)


@pytest.mark.parametrize(("ref", "repository"), [
    (f"127.0.0.1:5000/acme/wine@{_MANIFEST}", "127.0.0.1:5000/acme/wine"),
    ("localhost:5000/wine:v1", "localhost:5000/wine"), ("wine:v1", "wine"), ("wine", "wine"),
])
def test_the_repository_of_an_image_handoff(ref: str, repository: str) -> None:
    assert Handoff("image", ref=ref, digest=_MANIFEST).repository == repository


def _left(output: Path, stage: str, status: str, *handoff: Handoff) -> None:
    StageResult(stage=stage, status=status, summary="", started_at="",  # type: ignore[arg-type]
                duration_s=0.0, handoff=handoff).write(output)


def test_the_latest_passing_producer_hands_on(tmp_path: Path) -> None:
    from shipml import stages

    [producer] = stages.producers("image")
    image = Handoff("image", ref=f"r.example/wine@{_MANIFEST}", digest=_MANIFEST)
    assert handed_on(tmp_path, "image") is None
    _left(tmp_path, producer, "fail", image)
    assert handed_on(tmp_path, "image") is None  # a failed stage hands nothing on
    _left(tmp_path, producer, "pass", image)
    handed = handed_on(tmp_path, "image")
    assert handed is not None and (handed.stage, handed.handoff) == (producer, image)
    assert handed.source == f"the {producer} hand-off"
    # shipml run: only a stage that ran and passed in this run
    assert handed_on(tmp_path, "image", {}) is None
    assert handed_on(tmp_path, "image", {producer: 1}) is None
    assert handed_on(tmp_path, "image", {producer: 0}) == handed


def test_a_delta_without_a_value_round_trips(tmp_path: Path) -> None:
    import math

    from shipml.results import Delta

    result = StageResult(stage="latency", status="pass", summary="", started_at="",
                         duration_s=0.0, deltas=(Delta("p95", baseline=math.inf,
                                                       candidate=math.nan, unit="ms",
                                                       interval=(math.nan, 1.2)),))
    back = StageResult.read(result.write(tmp_path))
    delta = back.deltas[0]
    assert math.isnan(delta.baseline) and math.isnan(delta.candidate)
    assert delta.interval is not None and math.isnan(delta.interval[0])
