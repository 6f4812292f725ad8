"""The probe and the paired quality judge against real ``shipml serve`` processes: real models
trained on one seeded dataset (skl2onnx), the probe's rows of the test set with their labels,
the rollout's paired record across rounds, the server's own 4xx message; and the settings that
turn them on (issue 19, items 1 and 5)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from shipml.canary import judges
from shipml.canary.analysis import MetricSpec, analyse
from shipml.canary.core import NO_LABELS, QUALITY_NEEDS_PROBE, planned_analyses, read_settings
from shipml.canary.plan import plan_from_section
from shipml.canary.providers.probe import ProbeProvider, ProbeRecord, _same_label
from shipml.config import load_config
from shipml.errors import ConfigError
from tests._models import export_quality_classifiers
from tests.serve.conftest import Server, start_server

STABLE, CANARY = "rev-stable", "rev-canary"
TEST_ROWS = 600


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("probe-models")
    return folder, export_quality_classifiers(folder, test_rows=TEST_ROWS)


def _serve(folder: Path, model: Path, train: Path) -> Server:
    """Start ``shipml serve`` of ``model`` from a user's config (columns from ``train``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "shipml.yaml").write_text(yaml.safe_dump({"model": {
        "path": str(model), "train": str(train), "label": "y"}}), encoding="utf-8")
    return start_server(folder)


@pytest.fixture(scope="module")
def servers(data: tuple[Path, dict[str, Path]]) -> Iterator[dict[str, Server]]:
    folder, models = data
    started: dict[str, Server] = {}
    try:
        for role in ("stable", "better", "worse"):
            started[role] = _serve(folder / f"serve-{role}", models[role], folder / "train.csv")
        renamed = folder / "renamed.csv"
        pd.read_csv(folder / "train.csv").rename(
            columns={f"f{i}": f"x{i}" for i in range(6)}).to_csv(renamed, index=False)
        started["renamed"] = _serve(folder / "serve-renamed", models["stable"], renamed)
        yield started
    finally:
        for server in started.values():
            server.stop()


def _test_set(folder: Path) -> tuple[list[dict[str, Any]], list[Any]]:
    frame = pd.read_csv(folder / "test.csv")
    return (list(frame.drop(columns=["y"]).to_dict(orient="records")),
            [int(value) for value in frame["y"]])


def _quality(looks: int) -> MetricSpec:
    return MetricSpec(name="quality", provider="probe", query="quality", judge="paired",
                      max_drop=0.01, confidence=0.95, looks=looks)


def _rounds(data: tuple[Path, dict[str, Path]], stable: Server, canary: Server, *,
            looks: int) -> list[Any]:
    """Run ``looks`` analyses of the quality judge, each with a new probe over one record (as
    the runner does); return each round's quality result."""
    rows, labels = _test_set(data[0])
    record = ProbeRecord(STABLE, CANARY, total=len(rows), chunk=-(-len(rows) // looks))
    results = []
    for _ in range(looks):
        probe = ProbeProvider(endpoints={STABLE: stable.url, CANARY: canary.url}, rows=rows,
                              labels=labels, record=record)
        round_ = analyse((_quality(looks),), {"probe": probe}, canary=CANARY, stable=STABLE,
                         window_s=1, sample_window_s=1, min_requests=0)
        results.append(round_.results[0])
    return results


def test_a_more_accurate_model_passes_and_every_test_row_is_paired_once(
        data: tuple[Path, dict[str, Path]], servers: dict[str, Server]) -> None:
    results = _rounds(data, servers["stable"], servers["better"], looks=3)
    assert [result.verdict for result in results] == ["pass"] * 3, \
        [result.describe() for result in results]
    last = results[-1].figures
    assert last["pairs"] == TEST_ROWS
    assert last["canary"] is not None and last["stable"] is not None
    assert last["canary"] > last["stable"]
    assert isinstance(last["discordant"], int) and last["discordant"] > 0
    assert last["agreement"] is not None and 0.8 < last["agreement"] < 1
    assert "discordant of 600 rows" in results[-1].detail


def test_a_model_a_few_points_worse_fails_on_the_cumulative_record(
        data: tuple[Path, dict[str, Path]], servers: dict[str, Server]) -> None:
    results = _rounds(data, servers["stable"], servers["worse"], looks=2)
    assert results[-1].verdict == "fail", [result.describe() for result in results]
    assert results[-1].figures["pairs"] == TEST_ROWS
    assert "worse by" in results[-1].detail


def test_the_probe_says_the_servers_own_4xx_message_instead_of_no_data(
        data: tuple[Path, dict[str, Path]], servers: dict[str, Server]) -> None:
    results = _rounds(data, servers["stable"], servers["renamed"], looks=1)
    result = results[0]
    assert result.verdict == "inconclusive" and result.missing
    assert f"{CANARY} answered 4" in result.detail and f"of {TEST_ROWS} probe rows: \"" \
        in result.detail, result.detail
    # the server's message names what it missed (a column the stable's rows do not have)
    assert "x0" in result.detail, result.detail


def test_the_record_rotates_through_the_test_set_and_completes() -> None:
    record = ProbeRecord(STABLE, CANARY, total=5, chunk=2)
    assert [record.take(), record.take(), record.take()] == [[0, 1], [2, 3], [4, 0]]
    assert not record.complete


@pytest.mark.parametrize(("prediction", "label", "same"), [
    (1, 1, True), (1, 1.0, True), ("1", 1, True), (0, 1, False), ("yes", "yes", True),
    ("yes", "no", False), ([2.0], 2, True), (True, 1, True)])
def test_a_prediction_names_its_label_as_numbers_or_text(prediction: Any, label: Any,
                                                         same: bool) -> None:
    assert _same_label(prediction, label) is same


def _plan(steps: list[Any], interval: str) -> Any:
    return plan_from_section({"steps": steps, "interval": interval, "step_timeout": "1h",
                              "failure_limit": 2, "min_requests": 1, "inconclusive": "hold"},
                             lambda *key: ".".join(key))


def test_the_planned_analyses_follow_the_steps_pauses_and_interval() -> None:
    assert planned_analyses(_plan([{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "2m"},
                                   {"weight": 100}], "30s")) == 2 + 4
    assert planned_analyses(_plan([{"weight": 20}, {"weight": 50}, {"weight": 100}], "2s")) == 2
    assert planned_analyses(_plan(["10:manual", "60:45s"], "30s")) == 1 + 2


def _settings(folder: Path, data: tuple[Path, dict[str, Path]], **canary: Any) -> Any:
    source = data[0]
    shutil.copy(source / "test.csv", folder / "test.csv")
    path = folder / "shipml.yaml"
    model: dict[str, Any] = {"path": "model.onnx", "test": "test.csv",
                             **canary.pop("model", {"label": "y"})}
    path.write_text(yaml.safe_dump({"model": model, "canary": {
        "steps": [{"weight": 20}, {"weight": 50}, {"weight": 100}], "interval": "2s",
        "lease": "20s", "metrics": [], "target": {"type": "docker"}, **canary}}),
        encoding="utf-8")
    return read_settings(load_config(path))


def test_with_labels_quality_is_judged_and_agreement_is_a_figure_by_default(
        tmp_path: Path, data: tuple[Path, dict[str, Path]]) -> None:
    settings = _settings(tmp_path, data)
    judges = {spec.name: spec.judge for spec in settings.specs}
    assert judges == {"quality": "paired"}
    quality = settings.specs[0]
    assert (quality.max_drop, quality.confidence, quality.looks) == (0.01, 0.95, 2)
    assert settings.probe_chunk == TEST_ROWS // 2 and len(settings.probe_rows) == TEST_ROWS
    assert settings.probe_labels is not None and len(settings.probe_labels) == TEST_ROWS
    assert "y" not in settings.probe_rows[0]


def test_a_set_min_agreement_is_judged_beside_quality(
        tmp_path: Path, data: tuple[Path, dict[str, Path]]) -> None:
    settings = _settings(tmp_path, data, probe={"min_agreement": 0.99},
                         quality={"max_drop": 0.02, "confidence": 0.9})
    judges = {spec.name: (spec.judge, spec.minimum) for spec in settings.specs}
    assert judges == {"prediction-agreement": ("absolute", 0.99), "quality": ("paired", None)}
    assert settings.specs[1].max_drop == 0.02 and settings.specs[1].confidence == 0.9


def test_without_labels_agreement_is_a_figure_and_quality_is_off(
        tmp_path: Path, data: tuple[Path, dict[str, Path]]) -> None:
    settings = _settings(tmp_path, data, model={})
    assert [(spec.name, spec.judge) for spec in settings.specs] == [
        ("prediction-agreement", "figure")]
    assert settings.probe_labels is None


def test_quality_on_without_labels_is_refused_naming_model_label(
        tmp_path: Path, data: tuple[Path, dict[str, Path]]) -> None:
    with pytest.raises(ConfigError) as raised:
        _settings(tmp_path, data, model={}, quality={"enabled": True})
    assert str(raised.value) == NO_LABELS
    assert NO_LABELS.startswith("canary.quality.enabled is true but the test set has no labels: "
                                "set model.label")


def test_quality_on_where_the_probe_cannot_run_is_refused(
        tmp_path: Path, data: tuple[Path, dict[str, Path]]) -> None:
    # the kubernetes target gives the probe no address of each revision
    with pytest.raises(ConfigError) as raised:
        _settings(tmp_path, data, quality={"enabled": True}, target={"type": "kubernetes"})
    assert str(raised.value) == QUALITY_NEEDS_PROBE


def test_quality_auto_is_off_where_the_probe_cannot_run(
        tmp_path: Path, data: tuple[Path, dict[str, Path]]) -> None:
    settings = _settings(tmp_path, data, target={"type": "kubernetes"},
                         metrics=[{"name": "error-rate", "query": "error_rate", "max": 0.01}])
    assert [spec.name for spec in settings.specs] == ["error-rate"]
    assert settings.probe_rows == () and settings.probe_labels is None


def test_agreement_without_a_threshold_is_a_figure_never_a_failure() -> None:
    low = judges.figure("prediction-agreement", 0.5, unit="ratio")
    assert (low.verdict, low.canary, low.missing) == ("pass", 0.5, False)
    none = judges.figure("prediction-agreement", None, why_missing="x answered 422")
    assert (none.verdict, none.missing) == ("inconclusive", True)
    assert none.detail == "no canary data: x answered 422"


def test_a_regressors_judgement_names_its_informative_pairs_and_its_drop_in_percent() -> None:
    outcomes = judges.PairedOutcomes("regression", (1.2,) * 30, (1.0,) * 30, complete=True,
                                     agreement=0.0)
    result = judges.paired_quality("quality", outcomes, max_drop=0.01, confidence=0.95, looks=3)
    assert result.verdict == "fail"
    assert result.sentence == ("canary mean absolute error is at most 1% above stable's "
                               "(paired, 95% confidence)")
    assert result.figures["informative"] == 30 and result.figures["pairs"] == 30
    assert "drop in [20%, 20%]" in result.detail, result.detail


def test_one_round_takes_one_chunk_however_long_its_queries_take(
        data: tuple[Path, dict[str, Path]], servers: dict[str, Server]) -> None:
    rows, labels = _test_set(data[0])
    record = ProbeRecord(STABLE, CANARY, total=len(rows), chunk=100)
    probe = ProbeProvider(endpoints={STABLE: servers["stable"].url,
                                     CANARY: servers["better"].url},
                          rows=rows, labels=labels, record=record, max_age_s=0.0)
    assert probe.query("agreement", CANARY, 1) is not None
    outcomes = probe.outcomes(CANARY, STABLE)
    assert outcomes is not None and len(outcomes.canary) == 100
    assert record.cursor == 100
