"""Tensor files: real inputs for models that do not read a table.

``.npz``: one array per model input, named as the input, rows on the first axis.
JSON Lines (``.jsonl``, ``.ndjson``): one object per row naming every input,
``{"input_ids": [101, 2023, 102], "attention_mask": [1, 1, 1]}``; all rows of an input share one
shape (pad them, and say so in the attention mask).

Each array is checked against the model's input: present, a dtype that converts without losing
meaning (no floats into token ids, no numbers into strings), the input's rank and fixed axes.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shipml.errors import ConfigError, first_line
from shipml.onnx_model import TensorSpec

TENSOR_SUFFIXES = (".npz", ".jsonl", ".ndjson")
JSONL_HINT = ('one JSON object per line naming every model input, e.g. '
              '{"input_ids": [101, 2023, 102], "attention_mask": [1, 1, 1]}')


def is_tensor_file(path: Path) -> bool:
    """Return True when ``path`` names a tensor file (by its suffix)."""
    return path.suffix.lower() in TENSOR_SUFFIXES


def read_tensors(path: Path, where: str, inputs: Sequence[TensorSpec], max_rows: int
                 ) -> dict[str, NDArray[Any]]:
    """Return one array per model input from the tensor file at ``path`` (at most ``max_rows``
    rows), converted to the input's type.

    Raises ConfigError naming ``where``, the file and the input for a missing or unreadable file,
    a missing input, a wrong dtype or shape, ragged rows, or inputs with different row counts.
    """
    if not path.exists():
        raise ConfigError(f"{where}: data file {path} not found")
    if path.is_dir():
        raise ConfigError(f"{where}: {path} is a directory; expected a .npz or JSON Lines file")
    if path.suffix.lower() == ".npz":
        raw = _read_npz(path, where, inputs, max_rows)
    else:
        raw = _read_jsonl(path, where, inputs, max_rows)
    arrays = {spec.name: _fit(raw[spec.name], spec, path, where) for spec in inputs}
    counts = {name: len(array) for name, array in arrays.items()}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise ConfigError(f"{where}: {path}: the inputs have different numbers of rows ({shown}); "
                          f"row i of every input must be one example")
    if not counts or min(counts.values()) == 0:
        raise ConfigError(f"{where}: {path} has no rows")
    return arrays


def _read_npz(path: Path, where: str, inputs: Sequence[TensorSpec], max_rows: int
              ) -> dict[str, NDArray[Any]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            missing = [spec.name for spec in inputs if spec.name not in names]
            if missing:
                raise ConfigError(
                    f"{where}: {path} has no array named {missing[0]!r}; name one array after "
                    f"each model input ({_names(inputs)}); arrays in the file: "
                    f"{', '.join(names) or 'none'}"
                )
            arrays = {}
            for spec in inputs:
                array = archive[spec.name]
                if array.ndim == 0:
                    raise ConfigError(f"{where}: {path}: array {spec.name!r} is a scalar; its "
                                      f"first axis must be the rows")
                arrays[spec.name] = array[:max_rows]
            return arrays
    except ConfigError:
        raise
    except ValueError as exc:  # object arrays need pickle, which is never loaded
        raise ConfigError(f"{where}: cannot read {path} as .npz without pickle: "
                          f"{first_line(exc)}; save plain numeric or string arrays") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ConfigError(f"{where}: cannot read {path} as .npz: {first_line(exc)}") from None


def _read_jsonl(path: Path, where: str, inputs: Sequence[TensorSpec], max_rows: int
                ) -> dict[str, NDArray[Any]]:
    columns: dict[str, list[NDArray[Any]]] = {spec.name: [] for spec in inputs}
    first_seen: dict[str, int] = {}
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        rows = 0
        try:
            for number, line in enumerate(handle, start=1):
                if rows >= max_rows:
                    break
                if not line.strip():
                    continue
                record = _json_object(line, path, number, where)
                rows += 1
                for spec in inputs:
                    if spec.name not in record:
                        raise ConfigError(
                            f"{where}: {path} line {number}: no input {spec.name!r}; "
                            f"each line names every model input ({_names(inputs)})")
                    value = _row_array(record[spec.name], spec, path, number, where)
                    column = columns[spec.name]
                    if column and value.shape != column[0].shape:
                        raise ConfigError(
                            f"{where}: {path}: input {spec.name!r} is ragged: line "
                            f"{first_seen[spec.name]} has shape {_shape(column[0].shape)}, line "
                            f"{number} has {_shape(value.shape)}; pad every row to one shape "
                            f"(and mark the padding in the attention mask)")
                    first_seen.setdefault(spec.name, number)
                    column.append(value)
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: {path} is not UTF-8 text; expected "
                              f"{JSONL_HINT}") from None
    if rows == 0:
        raise ConfigError(f"{where}: {path} has no rows; expected {JSONL_HINT}")
    return {name: np.stack(values) for name, values in columns.items()}


def _json_object(line: str, path: Path, number: int, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise ConfigError(f"{where}: {path} line {number}: not JSON ({detail}); expected "
                          f"{JSONL_HINT}") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: {path} line {number}: a JSON {type(record).__name__}, not "
                          f"an object; expected {JSONL_HINT}")
    return record


def _row_array(value: Any, spec: TensorSpec, path: Path, number: int, where: str
               ) -> NDArray[Any]:
    try:
        array = np.asarray(value)
    except ValueError:  # numpy refuses nested lists of unequal lengths
        array = np.asarray(value, dtype=object)
    if array.dtype == np.object_:
        raise ConfigError(
            f"{where}: {path} line {number}: input {spec.name!r} is ragged or mixed inside the "
            f"row (nested lists of unequal lengths, or numbers mixed with text or null); give "
            f"each row one rectangular list")
    return array


def _fit(array: NDArray[Any], spec: TensorSpec, path: Path, where: str) -> NDArray[Any]:
    """Return ``array`` converted to the input's type; ConfigError for a dtype or shape that
    does not fit."""
    dtype = spec.numpy_type
    kind = array.dtype.kind
    wanted = {np.object_: "US", np.bool_: "b"}.get(dtype)
    if wanted is None:
        wanted = "biu" if np.issubdtype(dtype, np.integer) else "biuf"
    if kind not in wanted:
        raise ConfigError(
            f"{where}: {path}: input {spec.name!r} holds {_kind_name(array)} values; the model's "
            f"input is {spec.type}")
    expected = spec.shape
    rows_shape = ("rows", *array.shape[1:])
    if array.ndim != len(expected) or any(
            isinstance(size, int) and size > 0 and size != actual
            for size, actual in zip(expected[1:], array.shape[1:], strict=False)):
        raise ConfigError(
            f"{where}: {path}: input {spec.name!r} has shape {_shape(rows_shape)}; the model's "
            f"input is {_shape(('batch', *expected[1:]))} (rows on the first axis)")
    if dtype is np.object_:
        return array.astype(object)
    if np.issubdtype(dtype, np.integer) and array.size and kind in "iu":
        info = np.iinfo(dtype)
        if int(array.min()) < info.min or int(array.max()) > info.max:
            raise ConfigError(f"{where}: {path}: input {spec.name!r} has values outside "
                              f"{spec.type} ({info.min}..{info.max})")
    return array.astype(dtype)


def _kind_name(array: NDArray[Any]) -> str:
    if array.dtype.kind in "US":
        return "text"
    return str(array.dtype)


def _shape(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("?" if size is None or size == "" else str(size) for size in shape) + "]"


def _names(inputs: Sequence[TensorSpec]) -> str:
    return ", ".join(spec.name for spec in inputs)

