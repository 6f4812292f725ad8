"""Real tensors as inputs: .npz and JSON Lines fed to the tiny transformer, and every way such a
file can fail to fit the model, each named with the file and the input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from shipml.errors import ConfigError
from shipml.measure.inputs import DataFile, InputSettings, build_input_plan
from tests._models import token_rows, write_jsonl

WHERE = "shipml.yaml:7 latency.inputs.data"


def plan_for(model: Path, data: Path, **settings: object):  # type: ignore[no-untyped-def]
    return build_input_plan(model, InputSettings(data=(DataFile(data, WHERE),), **settings),
                            key="model.path", batch_sizes=[1, 4])


def refused(model: Path, data: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        plan_for(model, data)
    return caught.value.message


def test_npz_rows_feed_the_model_in_order_and_wrap_around(tmp_path: Path, encoder: Path) -> None:
    ids = token_rows(3, 12)
    np.savez(tmp_path / "inputs.npz", input_ids=ids, unrelated=np.zeros(3))
    plan = plan_for(encoder, tmp_path / "inputs.npz")
    assert plan.source == "data" and plan.row_count == 3
    assert plan.describe()["tensors"] == [{"name": "input_ids", "type": "tensor(int64)",
                                           "shape": ["batch", 12]}]
    feeds = plan.feeds(4, offset=1)
    np.testing.assert_array_equal(feeds["input_ids"], ids[[1, 2, 0, 1]])
    session = ort.InferenceSession(str(encoder), providers=["CPUExecutionProvider"])
    assert session.run(None, feeds)[0].shape == (4, 64)


def test_json_lines_of_named_inputs(tmp_path: Path, encoder: Path) -> None:
    ids = token_rows(5, 9, seed=3)
    path = write_jsonl(tmp_path / "inputs.jsonl",
                       [{"input_ids": row.tolist(), "label": 1} for row in ids])
    plan = plan_for(encoder, path)
    assert plan.row_count == 5
    feeds = plan.feeds(2)
    assert feeds["input_ids"].dtype == np.int64
    np.testing.assert_array_equal(feeds["input_ids"], ids[:2])


def test_a_missing_input_names_the_file_and_the_input(tmp_path: Path, encoder: Path) -> None:
    np.savez(tmp_path / "inputs.npz", ids=token_rows(2, 4))
    assert refused(encoder, tmp_path / "inputs.npz") == (
        f"{WHERE}: {tmp_path / 'inputs.npz'} has no array named 'input_ids'; name one array "
        "after each model input (input_ids); arrays in the file: ids")
    path = write_jsonl(tmp_path / "inputs.jsonl", [{"input_ids": [1, 2]}, {"ids": [1, 2]}])
    assert refused(encoder, path) == (
        f"{WHERE}: {path} line 2: no input 'input_ids'; each line names every model input "
        "(input_ids)")


def test_float_token_ids_are_a_wrong_dtype(tmp_path: Path, encoder: Path) -> None:
    np.savez(tmp_path / "inputs.npz", input_ids=token_rows(2, 4).astype(np.float32))
    assert refused(encoder, tmp_path / "inputs.npz") == (
        f"{WHERE}: {tmp_path / 'inputs.npz'}: input 'input_ids' holds float32 values; the "
        "model's input is tensor(int64)")
    path = write_jsonl(tmp_path / "inputs.jsonl", [{"input_ids": ["a", "b"]}])
    assert refused(encoder, path) == (
        f"{WHERE}: {path}: input 'input_ids' holds text values; the model's input is "
        "tensor(int64)")


def test_a_wrong_rank_is_a_wrong_shape(tmp_path: Path, encoder: Path) -> None:
    np.savez(tmp_path / "inputs.npz", input_ids=token_rows(2, 4).reshape(2, 2, 2))
    assert refused(encoder, tmp_path / "inputs.npz") == (
        f"{WHERE}: {tmp_path / 'inputs.npz'}: input 'input_ids' has shape [rows, 2, 2]; the "
        "model's input is [batch, sequence_length] (rows on the first axis)")


def test_ragged_rows_are_named_with_their_lines(tmp_path: Path, encoder: Path) -> None:
    path = write_jsonl(tmp_path / "inputs.jsonl", [{"input_ids": [1, 2, 3]},
                                                   {"input_ids": [1, 2, 3]},
                                                   {"input_ids": [4, 5]}])
    assert refused(encoder, path) == (
        f"{WHERE}: {path}: input 'input_ids' is ragged: line 1 has shape [3], line 3 has [2]; "
        "pad every row to one shape (and mark the padding in the attention mask)")
    inside = write_jsonl(tmp_path / "inside.jsonl", [{"input_ids": [[1, 2], [3]]}])
    assert refused(encoder, inside).startswith(
        f"{WHERE}: {inside} line 1: input 'input_ids' is ragged or mixed inside the row")


def test_lines_that_are_not_json_objects(tmp_path: Path, encoder: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"input_ids": [1, 2]}\n{"input_ids": [1,\n')
    assert refused(encoder, broken).startswith(
        f"{WHERE}: {broken} line 2: not JSON (Expecting value); expected one JSON object per "
        "line naming every model input")
    listed = write_jsonl(tmp_path / "listed.jsonl", [[1, 2]])  # type: ignore[list-item]
    assert refused(encoder, listed).startswith(f"{WHERE}: {listed} line 1: a JSON list, not an "
                                               "object")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert refused(encoder, empty).startswith(f"{WHERE}: {empty} has no rows")


def test_unreadable_and_missing_npz(tmp_path: Path, encoder: Path) -> None:
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert refused(encoder, tmp_path / "bad.npz").startswith(
        f"{WHERE}: cannot read {tmp_path / 'bad.npz'} as .npz")
    assert refused(encoder, tmp_path / "none.npz") == (
        f"{WHERE}: data file {tmp_path / 'none.npz'} not found")
    np.savez(tmp_path / "objects.npz", input_ids=np.array([[1, "a"]], dtype=object))
    assert refused(encoder, tmp_path / "objects.npz").startswith(
        f"{WHERE}: cannot read {tmp_path / 'objects.npz'} as .npz without pickle")
