"""``model.inputs``: what the model is fed, said once for every stage that feeds it; a stage's own
``<stage>.inputs`` key wins for that stage alone, key by key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shipml.cli import main
from shipml.config import Override, load_config
from shipml.errors import ConfigError
from shipml.measure.inputs import (
    build_input_plan,
    input_settings,
    model_input_keys,
    stage_inputs,
)
from tests._models import FAST, token_rows, write_config

STAGES = ("latency", "optimize")


def settings_of(folder: Path, document: dict[str, Any], stage: str) -> Any:
    return input_settings(load_config(write_config(folder, document)), stage)


def run(folder: Path, stage: str, document: dict[str, Any]
        ) -> tuple[int, dict[str, Any]]:
    write_config(folder, document)
    code = main([stage, "--config", str(folder / "shipml.yaml"),
                 "--output-dir", str(folder / "out")])
    result_file = folder / "out" / "results" / f"{stage}.json"
    return code, (json.loads(result_file.read_text()) if result_file.exists() else {})


def test_the_shared_keys_are_the_ones_the_schema_declares() -> None:
    assert model_input_keys() == ("source", "data", "dims", "vocab_size")


@pytest.mark.parametrize("stage", STAGES)
def test_dims_set_once_in_model_inputs_reach_every_stage(
        tmp_path: Path, encoder: Path, stage: str) -> None:
    settings = settings_of(tmp_path, {"model": {
        "path": str(encoder), "inputs": {"dims": {"sequence_length": 12}, "vocab_size": 7}}},
        stage)
    assert dict(settings.dims) == {"sequence_length": 12}
    assert settings.vocab_size == 7
    assert settings.dims_where == f"{tmp_path / 'shipml.yaml'}:4 model.inputs.dims"
    feeds = build_input_plan(encoder, settings).feeds(3)["input_ids"]
    assert feeds.shape == (3, 12) and int(feeds.max()) < 7


def test_latency_measures_with_the_dims_of_model_inputs(tmp_path: Path, encoder: Path) -> None:
    code, result = run(tmp_path, "latency", {
        "model": {"path": str(encoder), "inputs": {"dims": {"sequence_length": 12}}},
        "latency": {**FAST, "batch_sizes": [1]}})
    assert code == 0, result.get("error")
    assert result["metrics"]["inputs"]["tensors"] == [
        {"name": "input_ids", "type": "tensor(int64)", "shape": ["batch", 12]}]


def test_optimize_runs_on_the_dims_of_model_inputs(tmp_path: Path, encoder: Path) -> None:
    # without a size for sequence_length optimize stops with exit 2; model.inputs gives it one
    code, result = run(tmp_path, "optimize", {
        "model": {"path": str(encoder), "inputs": {"dims": {"sequence_length": 12}}},
        "optimize": {"candidates": ["graph"], "pick": "graph"}})
    assert code == 0, result.get("error")
    assert result["metrics"]["parity_source"] == "synthetic"


def test_a_stage_key_wins_for_that_stage_alone_key_by_key(tmp_path: Path, encoder: Path) -> None:
    config = load_config(write_config(tmp_path, {
        "model": {"path": str(encoder),
                  "inputs": {"dims": {"sequence_length": 8}, "vocab_size": 9}},
        "latency": {"inputs": {"dims": {"sequence_length": 16}, "seed": 3}},
    }))
    latency, optimize = input_settings(config, "latency"), input_settings(config, "optimize")
    assert (dict(latency.dims), latency.vocab_size, latency.seed) == (
        {"sequence_length": 16}, 9, 3)
    assert (dict(optimize.dims), optimize.vocab_size, optimize.seed) == (
        {"sequence_length": 8}, 9, 0)
    assert latency.dims_where == f"{tmp_path / 'shipml.yaml'}:9 latency.inputs.dims"
    resolved = stage_inputs(config, "latency")
    assert {key: item.path for key, item in resolved.items()} == {
        "source": ("model", "inputs", "source"), "data": ("model", "inputs", "data"),
        "dims": ("latency", "inputs", "dims"), "vocab_size": ("model", "inputs", "vocab_size"),
        "seed": ("latency", "inputs", "seed"),
        "max_feed_mb": ("latency", "inputs", "max_feed_mb")}


def test_stage_dims_replace_the_model_dims_whole(tmp_path: Path, encoder: Path) -> None:
    settings = settings_of(tmp_path, {
        "model": {"path": str(encoder), "inputs": {"dims": {"sequence_length": 8}}},
        "latency": {"inputs": {"dims": {"input_ids.1": 4}}}}, "latency")
    assert dict(settings.dims) == {"input_ids.1": 4}


def test_a_missing_size_under_a_stage_override_is_asked_for_there(
        tmp_path: Path, encoder: Path) -> None:
    settings = settings_of(tmp_path, {
        "model": {"path": str(encoder), "inputs": {"dims": {"sequence_length": 8}}},
        "optimize": {"inputs": {"dims": {"other": 4}}}}, "optimize")
    with pytest.raises(ConfigError) as caught:
        build_input_plan(encoder, settings)
    assert caught.value.message == (
        f"{tmp_path / 'shipml.yaml'}:8 optimize.inputs.dims: model input 'input_ids' axis 1 "
        "('sequence_length') is dynamic and has no size; give it one, e.g.\n"
        "  optimize:\n    inputs:\n      dims:\n        sequence_length: 128")


def test_the_old_per_stage_config_works_unchanged(tmp_path: Path, encoder: Path) -> None:
    config = load_config(write_config(tmp_path, {
        "model": {"path": str(encoder)},
        "latency": {"inputs": {"source": "synthetic", "dims": {"sequence_length": 16},
                               "vocab_size": 5, "seed": 3, "max_feed_mb": 2}},
        "optimize": {"inputs": {"dims": {"sequence_length": 8}}},
    }))
    latency, optimize = input_settings(config, "latency"), input_settings(config, "optimize")
    assert (latency.source, dict(latency.dims), latency.vocab_size, latency.seed,
            latency.max_feed_bytes) == ("synthetic", {"sequence_length": 16}, 5, 3, 2 * 2**20)
    assert (optimize.source, dict(optimize.dims), optimize.vocab_size, optimize.seed,
            optimize.max_feed_bytes) == ("auto", {"sequence_length": 8}, None, 0, 1024 * 2**20)
    assert build_input_plan(encoder, latency).feeds(2)["input_ids"].shape == (2, 16)
    assert build_input_plan(encoder, optimize).feeds(2)["input_ids"].shape == (2, 8)


def test_model_inputs_data_feeds_every_stage_after_their_own_keys(
        tmp_path: Path, encoder: Path) -> None:
    np.savez(tmp_path / "tokens.npz", input_ids=token_rows(6, 10))
    np.savez(tmp_path / "latency.npz", input_ids=token_rows(6, 14))
    for name in ("train.csv", "test.csv"):
        (tmp_path / name).write_text("")
    document = {"model": {"path": str(encoder), "train": "train.csv", "test": "test.csv",
                          "inputs": {"data": "tokens.npz"}},
                "latency": {"inputs": {"data": "latency.npz"}}}
    config = load_config(write_config(tmp_path, document))
    calibration = input_settings(config, "optimize", prefer=("train", "test"))
    assert [d.path.name for d in calibration.data] == ["tokens.npz", "train.csv", "test.csv"]
    assert [d.path.name for d in input_settings(config, "latency").data] == [
        "latency.npz", "test.csv", "train.csv"]
    plan = build_input_plan(encoder, input_settings(config, "optimize"))
    assert (plan.source, plan.data_source) == ("data", str(tmp_path / "tokens.npz"))


def test_a_flag_still_sets_the_stage_key_over_model_inputs(
        tmp_path: Path, encoder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.savez(tmp_path / "tokens.npz", input_ids=token_rows(6, 10))
    np.savez(tmp_path / "flag.npz", input_ids=token_rows(6, 14))
    write_config(tmp_path, {"model": {"path": str(encoder), "inputs": {"data": "tokens.npz"}}})
    monkeypatch.chdir(tmp_path)  # a flag's path resolves against the working directory
    config = load_config(tmp_path / "shipml.yaml", [
        Override(("latency", "inputs", "data"), "flag.npz", "environment SHIPML_INPUTS")])
    settings = input_settings(config, "latency")
    assert [(d.path, d.where) for d in settings.data] == [
        (tmp_path / "flag.npz", "environment SHIPML_INPUTS")]


@pytest.mark.parametrize(("inputs", "message"), [
    ({"dimz": {"sequence_length": 8}},
     ":4 model.inputs.dimz: unknown key 'model.inputs.dimz'; did you mean 'dims'? "
     "(valid keys here: data, dims, source, vocab_size)"),
    ({"dims": {"sequence_length": 0}},
     ":5 model.inputs.dims.sequence_length: 0 is less than the minimum of 1; valid: a whole "
     "number from 1 to "),
    ({"source": "tensors"},
     ":4 model.inputs.source: 'tensors' is not valid; valid: auto, data, synthetic"),
    ({"seed": 3},
     ":4 model.inputs.seed: unknown key 'model.inputs.seed' (valid keys here: data, dims, "
     "source, vocab_size)"),
])
@pytest.mark.parametrize("stage", STAGES)
def test_a_bad_model_inputs_key_is_exit_2_naming_it(
        tmp_path: Path, encoder: Path, capsys: pytest.CaptureFixture[str], stage: str,
        inputs: dict[str, Any], message: str) -> None:
    code, _ = run(tmp_path, stage, {"model": {"path": str(encoder), "inputs": inputs}})
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith(f"shipml {stage}: {tmp_path / 'shipml.yaml'}{message}"), err


def test_data_as_the_shared_source_without_a_data_set_names_where_to_put_one(
        tmp_path: Path, encoder: Path) -> None:
    settings = settings_of(tmp_path, {"model": {"path": str(encoder),
                                                "inputs": {"source": "data"}}}, "optimize")
    with pytest.raises(ConfigError) as caught:
        build_input_plan(encoder, settings)
    assert caught.value.message == (
        f"{tmp_path / 'shipml.yaml'}:4 model.inputs.source: inputs.source is data but no data "
        "set is configured; set model.inputs.data (optimize.inputs.data for optimize alone) or "
        "model.test")
