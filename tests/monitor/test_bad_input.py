"""Bad input is exit 2 with a message that names the key and the fix: no log files in the
window, logs of another model, too many corrupt lines (a few are skipped and counted), a missing
reference file, too few records (an error, never a pass), a check that does not exist. Hostile
lines: non-finite values (quoted, and bare in older logs) are read back as floats, a line over
monitor.logs.max_line_mb is a corrupt line read in bounded memory, and a value of the wrong type
in a feature column is a bad input naming the file, line and column."""

from __future__ import annotations

import datetime as dt
import json
import math
import tracemalloc
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from shipml.cli import main
from shipml.monitor._logs import Window, read_logs
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


# --- hostile lines: non-finite values, oversized lines, values of the wrong type ---------------

LOG = Path("logs") / "predictions.jsonl"


def _records(project: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (project / LOG).read_text("utf-8").splitlines()]


def _write(project: Path, records: list[dict[str, Any]]) -> Path:
    """Write ``records`` as the log, non-finite floats as bare NaN (as Python's json does)."""
    log = project / LOG
    log.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return log


def _feature_row(project: Path, feature: str) -> dict[str, Any]:
    result = StageResult.read(project / ".shipml" / "results" / "monitor.json")
    return next(row for row in result.tables[0].rows if row["feature"] == feature)


@pytest.mark.parametrize(("nan", "inf", "minus_inf"), [
    ("NaN", "Infinity", "-Infinity"),
    (math.nan, math.inf, -math.inf),
], ids=["quoted as the log writes them", "bare as older logs hold them"])
def test_non_finite_values_are_read_back_nan_a_null_infinity_out_of_range(
        project: Path, nan: Any, inf: Any, minus_inf: Any) -> None:
    records = _records(project)
    for index in (3, 40, 77):
        records[index]["inputs"]["mean_radius"] = [nan]
    records[90]["inputs"]["mean_radius"] = [inf]
    records[120]["inputs"]["mean_radius"] = [minus_inf]
    records[5]["inputs"]["size_band"] = ["NaN"]  # in a text column: a category, not a null
    _write(project, records)
    assert _monitor(project, {"logs": {"path": "logs"}}) == 0
    result = StageResult.read(project / ".shipml" / "results" / "monitor.json")
    assert result.metrics["corrupt_lines"] == 0 and result.metrics["rows"] == 171
    radius = _feature_row(project, "mean_radius")
    assert radius["null_production"] == round(3 / 171, 4)
    assert radius["out_of_range"] == round(2 / 168, 4)
    assert radius["drift"] is not None and not radius["drifted"]
    band = _feature_row(project, "size_band")
    assert band["null_production"] == 0.0 and band["out_of_range"] == round(1 / 171, 4)


def _huge_record(rows: int) -> str:
    """A valid record of ``rows`` rows far outside the reference: read, it would be drift."""
    features = ["size_band", "mean_radius", "mean_texture", "mean_perimeter", "mean_area",
                "mean_smoothness", "mean_compactness", "mean_concavity", "mean_concave_points",
                "mean_symmetry", "mean_fractal_dimension"]
    inputs = {name: ["XL"] * rows if name == "size_band" else [999.5] * rows for name in features}
    return json.dumps({"version": "0123456789ab", "request_id": "huge", "inputs": inputs,
                       "outputs": {"predictions": [1] * rows,
                                   "probabilities": [[0.0, 1.0]] * rows},
                       "ts": NOW.isoformat()})


def test_a_line_over_max_line_mb_is_a_corrupt_line_skipped_and_counted(project: Path) -> None:
    log = project / LOG
    lines = log.read_text("utf-8").splitlines()
    huge = _huge_record(12000)
    assert len(huge) > 2**20
    lines.insert(49, huge)
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert _monitor(project, {"logs": {"path": "logs", "max_line_mb": 0.5}}) == 0
    result = StageResult.read(project / ".shipml" / "results" / "monitor.json")
    assert result.metrics["log_lines"] == 172 and result.metrics["corrupt_lines"] == 1
    assert result.metrics["rows"] == 171  # the lines after it are read
    corrupt = next(c for c in result.checks if c.name.startswith("corrupt log lines"))
    assert corrupt.status == "warn"
    assert f"{log}:50: longer than monitor.logs.max_line_mb (0.5 MiB), skipped unread" \
        in corrupt.detail
    # under the default limit (32 MiB) the same line is a record, and its 12,000 rows are drift
    assert _monitor(project, {"logs": {"path": "logs"}}) == 1


def test_an_oversized_line_is_read_past_in_bounded_memory(tmp_path: Path) -> None:
    limit = 64 * 1024
    record = json.dumps({"inputs": {"mean_radius": [14.2]}, "ts": NOW.isoformat()})
    at_limit = record[:-1] + " " * (limit - len(record)) + "}"
    over = at_limit[:-1] + " }"
    huge = _huge_record(100_000)  # 8 MiB, 128 times the limit
    log = tmp_path / "predictions.jsonl"
    log.write_text("\n".join([record, at_limit, over, huge, record]) + "\n", encoding="utf-8")
    tracemalloc.start()
    try:
        production = read_logs([log], "monitor.logs.path", Window(), version=None,
                               max_corrupt_rate=1.0, max_line_bytes=limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (production.lines, production.records, production.corrupt) == (5, 3, 2)
    assert production.corrupt_examples == (
        f"{log}:3: longer than monitor.logs.max_line_mb (0.0625 MiB), skipped unread",
        f"{log}:4: longer than monitor.logs.max_line_mb (0.0625 MiB), skipped unread")
    assert len(huge) > 8 * 2**20 and peak < 2**20  # never the whole line, nor its parse


NUMBERS = 'a number, null, or the string "NaN", "Infinity" or "-Infinity"'


@pytest.mark.parametrize(("value", "shown"), [
    ({"a": 1}, 'an object {"a": 1}'),
    ("abc", 'the text "abc"'),
    ("12.5", 'the text "12.5"'),
])
def test_a_value_that_is_not_a_number_in_a_number_column_is_bad_input(
        project: Path, capsys: pytest.CaptureFixture[str], value: Any, shown: str) -> None:
    records = _records(project)
    for record in records:
        record["inputs"]["mean_radius"] = [value]
    log = _write(project, records)
    assert _monitor(project, {"logs": {"path": "logs"}}) == 2
    assert (f"monitor.logs.path: {log}:1: mean_radius holds {shown} where the reference "
            f"({project / 'train.csv'}) has numbers: {NUMBERS}. These rows are not the model's "
            f"inputs as the reference has them") in _error(capsys)
    result = StageResult.read(project / ".shipml" / "results" / "monitor.json")
    assert result.status == "error" and result.error is not None and result.error.exit_code == 2


def test_a_list_in_a_number_column_is_bad_input(project: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    records = _records(project)
    two_rows = records[6]["inputs"]
    records[6]["inputs"] = {name: values * 2 for name, values in two_rows.items()}
    records[6]["inputs"]["mean_radius"] = [14.2, [14.2, 15.0]]
    log = _write(project, records)
    assert _monitor(project, {"logs": {"path": "logs"}}) == 2
    assert f"{log}:7: mean_radius holds a list [14.2, 15.0] where the reference" in _error(capsys)


def test_a_column_whose_type_flips_between_lines_names_the_first_line_that_differs(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = _records(project)
    for record in records[100:]:
        record["inputs"]["mean_area"] = [str(record["inputs"]["mean_area"][0])]
    log = _write(project, records)
    assert _monitor(project, {"logs": {"path": "logs"}}) == 2
    first = records[100]["inputs"]["mean_area"][0]
    assert f"{log}:101: mean_area holds the text \"{first}\" where the reference" in _error(capsys)


def test_an_object_in_a_text_column_is_bad_input(project: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    records = _records(project)
    records[11]["inputs"]["size_band"] = [{"band": "M"}]
    log = _write(project, records)
    assert _monitor(project, {"logs": {"path": "logs"}}) == 2
    assert (f"{log}:12: size_band holds an object {{\"band\": \"M\"}} where the reference "
            f"({project / 'train.csv'}) has text: text, a number, a boolean or null, never an "
            f"object or a list.") in _error(capsys)


def test_booleans_in_a_number_column_are_the_numbers_the_server_took_them_for(
        project: Path) -> None:
    records = _records(project)
    for index in (2, 30, 60):
        records[index]["inputs"]["mean_concavity"] = [False]  # 0.0: inside the reference's range
    records[61]["inputs"]["mean_concavity"] = [True]  # 1.0: outside it
    _write(project, records)
    assert _monitor(project, {"logs": {"path": "logs"}}) == 0
    result = StageResult.read(project / ".shipml" / "results" / "monitor.json")
    assert result.metrics["corrupt_lines"] == 0
    concavity = _feature_row(project, "mean_concavity")
    # three test rows already lie outside the range; True is the fourth
    assert concavity["null_production"] == 0.0 and concavity["out_of_range"] == round(4 / 171, 4)


def test_text_in_a_number_column_of_a_production_table_is_bad_input(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = pd.read_csv(project / "test.csv").drop(columns=[LABEL])
    rows["mean_radius"] = rows["mean_radius"].astype(object)
    rows.loc[4, "mean_radius"] = "about 14"
    rows.to_csv(project / "rows.csv", index=False)
    assert _monitor(project, {"production": "rows.csv"}) == 2
    # the other cells of the column are text in a CSV now, and read as the numbers they are
    assert (f"monitor.production: {project / 'rows.csv'} row 5: mean_radius holds the text "
            f"\"about 14\" where the reference ({project / 'train.csv'}) has numbers") \
        in _error(capsys)
