"""Input plans take their settings as arguments: bounded sizes, and each stage its own keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipml.config import load_config
from shipml.errors import ConfigError
from shipml.measure.inputs import MAX_AXIS, InputSettings, build_input_plan, input_settings
from tests._models import write_config


def test_a_batch_bigger_than_the_feed_ceiling_is_refused_before_allocating(
        encoder: Path) -> None:
    settings = InputSettings(dims={"sequence_length": 1_000_000}, dims_where="latency.inputs.dims")
    with pytest.raises(ConfigError) as caught:
        build_input_plan(encoder, settings, batch_sizes=[1, 1024])
    assert caught.value.message == (
        "latency.inputs.dims: a batch of 1024 would feed 7812 MiB (input 'input_ids' "
        "[1024, 1000000] tensor(int64)), more than latency.inputs.max_feed_mb allows (1024 MiB); "
        "use smaller dims or batch sizes, or raise latency.inputs.max_feed_mb")
    # the same dims at batch 1 (7.6 MiB) fit
    plan = build_input_plan(encoder, settings, batch_sizes=[1])
    assert plan.feed_bytes(1) == {"input_ids": 8_000_000}


def test_an_axis_above_the_ceiling_is_refused(encoder: Path) -> None:
    settings = InputSettings(dims={"sequence_length": MAX_AXIS + 1}, dims_where="here")
    with pytest.raises(ConfigError, match=r"^here: sequence_length is 1048577; a dimension is "
                                          r"between 1 and 1048576$"):
        build_input_plan(encoder, settings)


def test_each_stage_reads_only_its_own_inputs(tmp_path: Path, encoder: Path) -> None:
    config = load_config(write_config(tmp_path, {
        "model": {"path": str(encoder)},
        "latency": {"inputs": {"dims": {"sequence_length": 16}, "seed": 3}},
        "optimize": {"inputs": {"dims": {"sequence_length": 8}}},
    }))
    latency, optimize = input_settings(config, "latency"), input_settings(config, "optimize")
    assert (dict(latency.dims), latency.seed) == ({"sequence_length": 16}, 3)
    assert (dict(optimize.dims), optimize.seed) == ({"sequence_length": 8}, 0)
    assert build_input_plan(encoder, optimize).feeds(2)["input_ids"].shape == (2, 8)


def test_data_files_in_order_of_preference(tmp_path: Path) -> None:
    for name in ("train.csv", "test.csv", "tokens.npz"):
        (tmp_path / name).write_text("")
    config = load_config(write_config(tmp_path, {
        "model": {"path": "m.onnx", "train": "train.csv", "test": "test.csv", "label": "y",
                  "ignore_columns": ["id"]},
        "optimize": {"inputs": {"data": "tokens.npz"}},
    }))
    calibration = input_settings(config, "optimize", prefer=("train", "test"))
    assert [d.path.name for d in calibration.data] == ["tokens.npz", "train.csv", "test.csv"]
    assert calibration.drop_columns == ("y", "id")
    latency = input_settings(config, "latency")
    assert [d.path.name for d in latency.data] == ["test.csv", "train.csv"]
    assert latency.data[0].where == f"{tmp_path / 'shipml.yaml'}:4 model.test"
