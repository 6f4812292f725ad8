"""The prediction log read block by block with pyarrow's JSON reader: a block with one corrupt line
goes to the line reader and keeps its other rows; lines over monitor.logs.max_line_mb are cut out
of a block in bounded memory; the non-finite strings and bare NaN are floats; a second-precision
timestamp is text, not pyarrow's timestamp; past monitor.max_rows a seeded uniform sample is kept
and the result says so."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shipml.cli import main
from shipml.monitor import _columnar
from shipml.monitor._columnar import Lines, TooLong, read_block, split_lines
from shipml.monitor._logs import Cancelled, Production, Window, read_logs
from shipml.results import StageResult
from tests.monitor.conftest import LABEL, copy_example, write_config

NOW = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.timezone.utc)
KINDS: dict[str, Any] = {"x": "number", "band": "text"}


def _record(index: int, **inputs: list[Any]) -> dict[str, Any]:
    count = len(next(iter(inputs.values()))) if inputs else 1
    return {"model": "m", "version": "v1", "request_id": f"req-{index}", "endpoint": "predict",
            "inputs": inputs or {"x": [float(index)], "band": ["S" if index % 2 else "L"]},
            "outputs": {"predictions": [index % 2] * count,
                        "probabilities": [[0.25, 0.75]] * count},
            "ts": (NOW + dt.timedelta(seconds=index)).isoformat(timespec="milliseconds")}


def _lines(records: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(record) for record in records]


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _read(path: Path, **options: Any) -> Production:
    return read_logs([path], "monitor.logs.path", options.pop("window", Window()), version=None,
                     max_corrupt_rate=1.0, expected=KINDS, reference="train.csv", **options)


def _block(lines: list[str], **options: Any) -> _columnar.Block | None:
    return read_block(("\n".join(lines) + "\n").encode(), since=options.get("since"),
                      until=options.get("until"), version=options.get("version"),
                      expected=KINDS)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 4 KiB: a few hundred records make dozens of blocks."""
    monkeypatch.setattr(_columnar, "BLOCK_BYTES", 4096)


# --- blocks ----------------------------------------------------------------------------------


def test_a_clean_block_is_read_in_columns() -> None:
    block = _block(_lines([_record(i) for i in range(5)]))
    assert block is not None and block.part is not None
    assert (block.lines, block.records, block.versions) == (5, 5, {"v1": 5})
    assert block.part.frame["x"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert block.part.frame["band"].tolist() == ["L", "S", "L", "S", "L"]
    assert block.part.predictions is not None and block.part.predictions.tolist() == [0, 1, 0, 1, 0]
    assert block.part.probabilities is not None and block.part.probabilities.shape == (5, 2)
    assert block.seen == block.kept == ("2026-11-24T08:00:00.000+00:00",
                                        "2026-11-24T08:00:04.000+00:00")


@pytest.mark.parametrize("bad", [
    '{"inputs": {"x": [1.0]',                          # cut short
    '[1, 2]',                                          # not an object
    '{"inputs": {"x": [1.0, 2.0], "band": ["S"]}}',    # ragged
    '{"inputs": {"x": [{"a": 1}], "band": ["S"]}}',    # an object in a number column
    '{"inputs": {"x": ["abc"], "band": ["S"]}}',       # text in a number column
])
def test_a_block_with_anything_but_records_goes_to_the_line_reader(bad: str) -> None:
    lines = _lines([_record(i) for i in range(5)])
    lines.insert(2, bad)
    assert _block(lines) is None


def test_one_corrupt_line_in_the_middle_of_a_block_keeps_the_other_rows(
        tmp_path: Path, small_blocks: None) -> None:
    lines = _lines([_record(i) for i in range(400)])
    clean = _read(_write(tmp_path / "clean.jsonl", lines))
    lines.insert(200, '{"inputs": {"x": [1.0], "band": ')
    log = _write(tmp_path / "predictions.jsonl", lines)
    production = _read(log)
    assert (production.lines, production.records, production.corrupt) == (401, 400, 1)
    assert production.corrupt_examples == (
        f"{log}:201: not JSON (Expecting value)",)
    pd.testing.assert_frame_equal(production.frame, clean.frame)
    assert production.request_ids is not None and clean.request_ids is not None
    assert production.request_ids.tolist() == clean.request_ids.tolist()
    assert production.predictions is not None and production.predictions.dtype.kind == "i"
    assert production.probabilities is not None and production.probabilities.shape == (400, 2)


def test_records_that_lack_a_column_hold_nulls_and_requests_keep_their_rows() -> None:
    records = [_record(0), _record(1, x=[5.0, 6.0, 7.0]), _record(2, band=["M"])]
    block = _block(_lines(records))
    assert block is not None and block.part is not None
    frame = block.part.frame
    assert frame["x"].tolist()[:4] == [0.0, 5.0, 6.0, 7.0] and math.isnan(frame["x"].iloc[4])
    assert frame["band"].tolist() == ["L", None, None, None, "M"]
    assert block.part.request_ids.tolist() == ["req-0", "req-1", "req-1", "req-1", "req-2"]
    assert block.part.request_rows.tolist() == [0, 0, 1, 2, 0]


@pytest.mark.parametrize(("values", "columnar"), [
    (['"NaN"', '"Infinity"', '"-Infinity"'], True),   # every value of the block a string
    (['"NaN"', "1.5", '"-Infinity"'], False),          # strings among numbers: line by line
    (["NaN", "Infinity", "-Infinity"], True),           # bare, as older logs hold them
])
def test_non_finite_values_are_floats_on_either_path(tmp_path: Path, values: list[str],
                                                     columnar: bool) -> None:
    lines = [f'{{"inputs": {{"x": [{value}], "band": ["S"]}}, "ts": "2026-11-24T08:00:00Z"}}'
             for value in values]
    assert (_block(lines) is not None) == columnar
    production = _read(_write(tmp_path / "predictions.jsonl", lines))
    assert production.corrupt == 0
    numbers = production.frame["x"].tolist()
    expected = [NON_FINITE_TEXT.get(value.strip('"'), 1.5) for value in values]
    assert [("nan" if math.isnan(n) else n) for n in numbers] == \
        [("nan" if math.isnan(n) else n) for n in expected]


NON_FINITE_TEXT = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def test_a_timestamp_without_milliseconds_is_text_and_the_window_applies() -> None:
    lines = [json.dumps({**_record(i), "ts": (NOW + dt.timedelta(minutes=i)).isoformat()})
             for i in range(6)]
    block = _block(lines, since=NOW + dt.timedelta(minutes=2), until=NOW + dt.timedelta(minutes=4))
    assert block is not None and block.part is not None
    assert (block.records, block.outside_window) == (6, 3)
    assert block.part.frame["x"].tolist() == [2.0, 3.0, 4.0]
    assert block.kept == ("2026-11-24T08:02:00+00:00", "2026-11-24T08:04:00+00:00")


def test_a_timestamp_that_is_not_one_goes_to_the_line_reader(tmp_path: Path) -> None:
    lines = _lines([_record(i) for i in range(3)])
    lines[1] = json.dumps({**_record(1), "ts": "yesterday"})
    since = NOW - dt.timedelta(days=1)
    assert _block(lines, since=since) is None
    production = _read(_write(tmp_path / "predictions.jsonl", lines), window=Window(since=since))
    assert production.corrupt == 1 and production.records == 2
    assert production.corrupt_examples[0].endswith(":2: timestamp 'yesterday' is not ISO-8601")


# --- lines over the limit ----------------------------------------------------------------------


def _split(data: bytes, limit: int) -> list[tuple[int, str]]:
    """Return each line the blocks hold with its number, and ("too long") for each cut out."""
    numbered: list[tuple[int, str]] = []
    for item in split_lines(io.BytesIO(data), limit):
        if isinstance(item, TooLong):
            numbered.append((item.number, "(too long)"))
            continue
        assert isinstance(item, Lines) and len(item.data) <= limit + _columnar.BLOCK_BYTES
        pieces = bytes(item.data).decode().split("\n")
        if bytes(item.data).endswith(b"\n"):
            pieces.pop()
        numbered += [(item.first + offset, line) for offset, line in enumerate(pieces)]
    return numbered


@pytest.mark.parametrize("block", [4, 64, 4096])
def test_a_long_line_is_cut_out_wherever_the_reads_fall(monkeypatch: pytest.MonkeyPatch,
                                                         block: int) -> None:
    monkeypatch.setattr(_columnar, "BLOCK_BYTES", block)
    data = b"a\n" + b"x" * 30 + b"\nb\n\n" + b"y" * 20 + b"\n" + b"z" * 21 + b"\nc"
    assert _split(data, 20) == [(1, "a"), (2, "(too long)"), (3, "b"), (4, ""), (5, "y" * 20),
                                (6, "(too long)"), (7, "c")]


def test_a_huge_line_is_read_past_in_pieces_and_numbering_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_columnar, "BLOCK_BYTES", 64)
    data = b"first\n" + b"h" * 10_000 + b"\nsecond\nthird"
    assert _split(data, 100) == [(1, "first"), (2, "(too long)"), (3, "second"), (4, "third")]


def test_a_record_longer_than_pyarrows_block_is_still_a_record(tmp_path: Path) -> None:
    rows = 150_000  # about 2 MiB: longer than one of pyarrow's blocks, under max_line_mb
    lines = _lines([_record(0), _record(1, x=[1.0] * rows, band=["S"] * rows), _record(2)])
    assert len(lines[1]) > _columnar.ARROW_BLOCK_BYTES
    production = _read(_write(tmp_path / "predictions.jsonl", lines))
    assert production.corrupt == 0 and len(production.frame) == rows + 2


# --- max_rows ----------------------------------------------------------------------------------


def test_past_max_rows_a_seeded_uniform_sample_is_kept(tmp_path: Path, small_blocks: None) -> None:
    log = _write(tmp_path / "predictions.jsonl", _lines([_record(i) for i in range(5000)]))
    production = _read(log, max_rows=500, seed=42)
    assert len(production.frame) == 500 and production.sampled_from == 5000
    assert production.sampling == \
        "sampled 500 of 5,000 rows (uniform, seeded by monitor.random_state)"
    picked = production.frame["x"].to_numpy()
    assert (np.diff(picked) > 0).all()  # in the log's order, no row twice
    assert production.request_ids is not None
    assert production.request_ids.tolist() == [f"req-{int(x)}" for x in picked]
    assert production.predictions is not None
    assert production.predictions.tolist() == [int(x) % 2 for x in picked]
    # uniform: each fifth of the log holds about a fifth of the sample
    assert np.histogram(picked, bins=5, range=(0, 5000))[0].min() >= 80
    again = _read(log, max_rows=500, seed=42)
    assert again.frame["x"].tolist() == picked.tolist()
    assert _read(log, max_rows=500, seed=7).frame["x"].tolist() != picked.tolist()
    whole = _read(log, max_rows=5000)
    assert (len(whole.frame), whole.sampled_from, whole.sampling) == (5000, 0, "")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = copy_example(tmp_path / "project")
    rows = pd.read_csv(folder / "test.csv").drop(columns=[LABEL])
    records = [{"version": "v1", "request_id": f"req-{index}",
                "inputs": {name: [value] for name, value in row.items()},
                "ts": (NOW + dt.timedelta(seconds=index)).isoformat()}
               for index, row in enumerate(json.loads(rows.to_json(orient="records")))]
    _write(folder / "logs" / "predictions.jsonl", _lines(records))
    return folder


@pytest.mark.deepchecks
def test_the_result_and_the_report_say_the_rows_were_sampled(project: Path) -> None:
    write_config(project, {"logs": {"path": "logs"}, "max_rows": 150, "min_records": 100})
    assert main(["monitor", "--config", str(project / "shipml.yaml"),
                 "--output-dir", str(project / ".shipml")]) == 0
    result = StageResult.read(project / ".shipml" / "results" / "monitor.json")
    said = "sampled 150 of 171 rows (uniform, seeded by monitor.random_state)"
    assert result.metrics["rows"] == 150 and result.metrics["rows_read"] == 171
    assert result.metrics["sampling"] == said
    assert result.summary.endswith(f"over 150 rows; {said}")
    assert said in (project / ".shipml" / "artifacts" / "monitor.html").read_text("utf-8")


@pytest.mark.deepchecks
def test_a_production_table_past_max_rows_is_sampled_too(project: Path) -> None:
    rows = pd.read_csv(project / "test.csv").drop(columns=[LABEL])
    rows.to_csv(project / "rows.csv", index=False)
    write_config(project, {"production": "rows.csv", "max_rows": 120, "min_records": 100})
    assert main(["monitor", "--config", str(project / "shipml.yaml"),
                 "--output-dir", str(project / ".shipml")]) == 0
    result = StageResult.read(project / ".shipml" / "results" / "monitor.json")
    assert result.metrics["sampling"] == \
        "sampled 120 of 171 rows (uniform, seeded by monitor.random_state)"


def test_the_reading_stops_when_the_caller_cancels_it(tmp_path: Path, small_blocks: None) -> None:
    log = _write(tmp_path / "predictions.jsonl", _lines([_record(i) for i in range(400)]))
    asked: list[int] = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(Cancelled):
        _read(log, cancelled=cancelled)
    assert len(asked) == 4  # once per block, the fourth said stop


@pytest.mark.deepchecks
def test_a_mistake_in_the_checks_is_said_before_a_mistake_in_the_data(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = project / "logs" / "predictions.jsonl"
    records = [json.loads(line) for line in log.read_text("utf-8").splitlines()]
    records[3]["inputs"]["mean_radius"] = ["abc"]
    _write(log, _lines(records))
    write_config(project, {"logs": {"path": "logs"}, "checks": [{"check": "FeatureDrfit"}]})
    assert main(["monitor", "--config", str(project / "shipml.yaml"),
                 "--output-dir", str(project / ".shipml")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "monitor.checks[0].check: unknown check 'FeatureDrfit'" in err
    assert "mean_radius holds" not in err
