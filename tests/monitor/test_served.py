"""End to end: the example model behind a real ``shipml serve`` with the prediction log on; its
own test rows show no drift, a copy with three features moved by three standard deviations does,
and the result names those features."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from shipml.cli import main
from shipml.results import StageResult
from tests.monitor.conftest import SHIFTED, Served, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.deepchecks]


def _monitor(served: Served, out: Path, *args: str) -> tuple[int, StageResult]:
    write_config(served.folder, {"logs": {"path": "logs/predictions.jsonl"}})
    code = main(["monitor", "--config", str(served.folder / "shipml.yaml"),
                 "--output-dir", str(out), *args])
    return code, StageResult.read(out / "results" / "monitor.json")


def test_the_logged_test_rows_show_no_drift(served: Served, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, result = _monitor(served, tmp_path, "--until", served.boundary)
    out = capsys.readouterr().out
    assert code == 0, out
    assert result.status == "pass"
    assert result.metrics["rows"] == served.requests // 2 == 171
    assert result.metrics["drifted_features"] == []
    assert result.metrics["corrupt_lines"] == 0
    assert result.summary == "no drift in 11 features and the predictions over 171 rows"
    assert {check.group for check in result.checks} >= {
        "FeatureDrift", "PredictionDrift", "columns", "volume", "null rate", "out of range"}
    assert "shipml monitor: PASS: no drift in 11 features" in out


def test_a_shifted_copy_is_drift_naming_the_moved_features(served: Served, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    code, result = _monitor(served, tmp_path, "--since", served.boundary)
    out = capsys.readouterr().out
    assert code == 1, out
    assert result.status == "fail"
    assert result.metrics["rows"] == 171
    assert sorted(result.metrics["drifted_features"]) == sorted(SHIFTED)
    for name in SHIFTED:
        assert name in result.summary
    failed = [check for check in result.checks if check.status == "fail"]
    feature_drift = next(c for c in failed if c.group == "FeatureDrift")
    assert "Found 3 numeric columns" in feature_drift.detail
    for name in SHIFTED:
        assert name in feature_drift.detail
    table = result.tables[0]
    assert {row["feature"] for row in table.rows if row["drifted"]} == set(SHIFTED)
    # the local run writes what it would have posted
    plan = json.loads((tmp_path / "monitor" / "alert.json").read_text(encoding="utf-8"))
    assert plan["state"] == "drift"
    assert plan["issue"]["body"].startswith("<!-- shipml-monitor:model -->\n"
                                            "<!-- shipml-monitor-state:drift -->\n")
    assert "would open or update the issue of model" in out


def test_the_whole_log_writes_html_and_junit(served: Served, tmp_path: Path) -> None:
    code, result = _monitor(served, tmp_path)
    assert code == 1
    assert result.metrics["rows"] == 342
    html = (tmp_path / "artifacts" / "monitor.html").read_text(encoding="utf-8")
    assert "Drift per feature" in html and "mean_radius" in html
    junit = ET.parse(tmp_path / "artifacts" / "monitor.junit.xml").getroot()
    assert junit.get("failures") != "0"
    assert {suite.get("name") for suite in junit} == {"shipml.monitor.drift",
                                                       "shipml.monitor.data"}
