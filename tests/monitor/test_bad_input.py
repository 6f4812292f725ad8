"""Bad input is exit 2 with a message that names the key and the fix: no log files in the
window, logs of another model, too many corrupt lines (a few are skipped and counted), a missing
reference file, too few records (an error, never a pass), a check that does not exist."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from shipml.cli import main
from shipml.onnx_model import OnnxModel
from shipml.results import StageResult
from tests.monitor.conftest import LABEL, copy_example, write_config

pytestmark = pytest.mark.deepchecks

NOW = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.timezone.utc)


def write_log(path: Path, frame: pd.DataFrame, model: Path, *, start: dt.datetime = NOW,
              corrupt_every: int = 0) -> int:
    """Write ``frame`` as prediction records the way the server does, one row a request, a
    second apart from ``start``; every ``corrupt_every``-th line is cut short. Return lines."""
    onnx = OnnxModel(model)
    features = onnx.bind_columns(list(frame.columns), "rows")
    predictions, probabilities = onnx.run(frame[features])
    lines = []
    for index, row in enumerate(json.loads(frame.to_json(orient="records"))):
        record: dict[str, Any] = {
            "model": "model", "version": "0123456789ab", "revision": "r1",
            "request_id": f"req-{index}", "endpoint": "predict",
            "inputs": {name: [value] for name, value in row.items()},
            "outputs": {"predictions": [int(predictions[index])],
                        "probabilities": [probabilities[index].tolist()]
                        if probabilities is not None else None},
            "ts": (start + dt.timedelta(seconds=index)).isoformat(timespec="milliseconds")}
        line = json.dumps(record)
        if corrupt_every and index % corrupt_every == 0:
            line = line[: len(line) // 2]
        lines.append(line)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = copy_example(tmp_path / "project")
    test = pd.read_csv(folder / "test.csv").drop(columns=[LABEL])
    write_log(folder / "logs" / "predictions.jsonl", test, folder / "model.onnx")
    return folder


def _monitor(project: Path, monitor: dict[str, Any], *args: str) -> int:
    write_config(project, monitor)
    return main(["monitor", "--config", str(project / "shipml.yaml"),
                 "--output-dir", str(project / ".shipml"), *args])


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    return " ".join(capsys.readouterr().err.split())


def test_no_log_files_match(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _monitor(project, {"logs": {"path": "logs/*.ndjson"}}) == 2
    err = _error(capsys)
    assert "monitor.logs.path: no prediction log files match" in err
    assert "logs/*.ndjson" in err and "serve.log_predictions.path" in err
    result = StageResult.read(project / ".shipml" / "results" / "monitor.json")
    assert result.status == "error" and result.error is not None and result.error.exit_code == 2


def test_no_records_in_the_window(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _monitor(project, {"logs": {"path": "logs", "since": "2026-12-01T00:00:00Z"}})
    assert code == 2
    err = _error(capsys)
    assert "none of the 171 records in" in err
    assert "lies in the window [2026-12-01T00:00:00+00:00, …]" in err
    assert "(records span 2026-11-24T08:00:00.000+00:00 to 2026-11-24T08:02:50.000+00:00)" in err


def test_a_window_that_holds_part_of_the_records(project: Path) -> None:
    assert _monitor(project, {"logs": {"path": "logs/predictions.jsonl",
                                       "since": "2026-11-24T08:00:00Z",
                                       "until": "2026-11-24T08:01:39Z"}, "min_records": 50}) == 0
    result = StageResult.read(project / ".shipml" / "results" / "monitor.json")
    assert result.metrics["rows"] == 100 and result.metrics["outside_window"] == 71


def test_logs_of_another_model(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = project / "logs" / "predictions.jsonl"
    log.write_text("".join(json.dumps({"inputs": {"age": [31], "plan": ["pro"]},
                                       "ts": NOW.isoformat()}) + "\n" for _ in range(200)),
                   encoding="utf-8")
    assert _monitor(project, {"logs": {"path": str(log)}}) == 2
    err = _error(capsys)
    assert "none of the model's features is a column here" in err
    assert "the data has age, plan" in err and "mean_radius" in err


def test_a_missing_feature_is_a_failed_check(project: Path) -> None:
    test = pd.read_csv(project / "test.csv").drop(columns=[LABEL, "mean_area"])
    test["customer_id"] = range(len(test))
    test.to_csv(project / "rows.csv", index=False)
    assert _monitor(project, {"production": "rows.csv"}) == 1
    result = StageResult.read(project / ".shipml" / "results" / "monitor.json")
    checks = {check.name: check for check in result.checks if check.group == "columns"}
    missing = checks["production carries every feature the model reads (at most 0 missing)"]
    assert missing.status == "fail" and missing.detail == "missing: mean_area"
    new = checks["production has at most 0 columns the model does not read"]
    assert new.status == "warn" and new.detail == "new: customer_id"


def test_a_corrupt_line_is_skipped_and_counted(project: Path) -> None:
    log = project / "logs" / "predictions.jsonl"
    log.write_text(log.read_text(encoding="utf-8") + '{"inputs": {"mean_radius": [1, 2]\n',
                   encoding="utf-8")
    assert _monitor(project, {"logs": {"path": str(log)}}) == 0
    result = StageResult.read(project / ".shipml" / "results" / "monitor.json")
    assert result.metrics["corrupt_lines"] == 1 and result.metrics["rows"] == 171
    corrupt = next(c for c in result.checks if c.name.startswith("corrupt log lines"))
    assert corrupt.status == "warn" and "predictions.jsonl:172: not JSON" in corrupt.detail


def test_corrupt_lines_over_the_threshold_are_fatal(project: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    test = pd.read_csv(project / "test.csv").drop(columns=[LABEL])
    write_log(project / "logs" / "predictions.jsonl", test, project / "model.onnx",
              corrupt_every=10)
    assert _monitor(project, {"logs": {"path": "logs/predictions.jsonl"}}) == 2
    err = _error(capsys)
    assert "18 of 171 lines (10.5%) are corrupt, more than monitor.logs.max_corrupt_rate " \
           "allows (1.0%)" in err
    assert "predictions.jsonl:1: not JSON" in err
    assert _monitor(project, {"logs": {"path": "logs/predictions.jsonl",
                                       "max_corrupt_rate": 0.2}}) == 0


def test_a_missing_reference_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _monitor(project, {"logs": {"path": "logs"}, "reference": "gone.parquet"}) == 2
    err = _error(capsys)
    assert "monitor.reference: data file" in err and "gone.parquet not found" in err


def test_too_few_records_is_an_error_not_a_pass(project: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert _monitor(project, {"logs": {"path": "logs"}, "min_records": 500}) == 2
    result = StageResult.read(project / ".shipml" / "results" / "monitor.json")
    assert result.status == "error" and result.error is not None
    volume = next(c for c in result.checks if c.group == "volume")
    assert volume.status == "error" and volume.observed == 171 and volume.threshold == 500
    assert "only 171 rows" in capsys.readouterr().out


def test_a_check_that_does_not_exist_points_at_monitor_checks(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _monitor(project, {"logs": {"path": "logs"},
                              "checks": [{"check": "FeatureDrfit"}]})
    assert code == 2
    err = _error(capsys)
    assert "monitor.checks[0].check: unknown check 'FeatureDrfit'; did you mean 'FeatureDrift'?" \
        in err


def test_a_condition_parameter_is_checked_like_validate(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checks = [{"check": "PredictionDrift", "conditions": [
        {"condition": "drift_score_less_than", "params": {"max_allowed_score": 0.1}}]}]
    assert _monitor(project, {"logs": {"path": "logs"}, "checks": checks}) == 2
    assert "monitor.checks[0].conditions[0].params.max_allowed_score: condition " \
           "drift_score_less_than of PredictionDrift has no parameter 'max_allowed_score'; did " \
           "you mean 'max_allowed_drift_score'?" in _error(capsys)


def test_logs_and_a_production_table_together(project: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert _monitor(project, {"logs": {"path": "logs"}, "production": "test.csv"}) == 2
    assert "are both set" in _error(capsys)


def test_no_production_data_shows_the_yaml_to_paste(project: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert _monitor(project, {}) == 2
    assert "monitor: logs: path: logs/predictions.jsonl since: 24h" in _error(capsys)


def test_a_time_that_is_not_one(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _monitor(project, {"logs": {"path": "logs"}}, "--since", "yesterday") == 2
    assert "--since: 'yesterday' is neither an ISO-8601 time" in _error(capsys)
