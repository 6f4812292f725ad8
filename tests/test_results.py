"""The stage-result contract of design.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipml.errors import ConfigError
from shipml.results import Artifact, Check, StageResult, read_all, stage_status


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
                            "checks", "artifacts"]
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
