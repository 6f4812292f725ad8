"""Request bodies parsed into what the model needs, or into a precise 4xx error.

Statuses: 400 the body is not the protocol's JSON (not JSON, wrong structure, unknown datatype);
413 too large; 415 not JSON; 422 well-formed but not what this model takes (missing column,
wrong shape, datatype or value); 404 an unknown model or path. Every error names the field and
what would be valid; none carries a traceback.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:  # onnx_model imports pandas: the server listens before the model loads
    from shipml.onnx_model import TensorSpec

#: Open Inference Protocol v2 datatypes by onnxruntime tensor type
V2_DATATYPES: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
#: v2 datatypes of numpy arrays, for outputs
_NUMPY_V2: dict[str, str] = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64", "float16": "FP16",
    "float32": "FP32", "float64": "FP64", "object": "BYTES", "str": "BYTES",
}
KNOWN_DATATYPES = sorted(set(V2_DATATYPES.values()))
JSON_TYPES = ("application/json",)
#: deepest nesting of arrays and objects a body may have (a tensor of rank 32 is numpy's most)
MAX_DEPTH = 64
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_OPENERS = frozenset(b"[{")
TOO_DEEP = "the body nests arrays or objects {depth} deep; at most {limit} levels are accepted"
TOO_MANY_DIGITS = "the body holds a number with more digits than any datatype takes: {reason}"
OUT_OF_RANGE = ("{field} holds {value}, outside the range of model input {name!r} ({datatype}: "
                "{low} to {high})")
NOT_BOOLEAN = ("{field} holds {value}; model input {name!r} takes booleans (BOOL: true or false, "
               "or 0 and 1)")
NO_ROWS = ("{field} has a 0 in shape {shape}; send at least one row and no empty axis")
AXES_DIFFER = ("{field} has {size} values along axis {axis} ({dim!r}), but {other} has {other_size}; "
               "model inputs that share the axis {dim!r} take equal lengths")
ROW_SHAPE = ("{field} holds a value of shape {got}; model input {name!r} takes one value of shape "
             "{want} per row (-1: any size)")


class RequestError(Exception):
    """A request this server will not run: the status, what is wrong, the field and what is valid."""

    def __init__(self, status: int, message: str, field: str | None = None, valid: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.valid = valid
        self.headers = headers or {}

    def body(self, request_id: str) -> dict[str, Any]:
        """Return the JSON error body: ``error`` (v2's key), ``field``, ``valid``, ``request_id``."""
        found: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            found["field"] = self.field
        if self.valid is not None:
            found["valid"] = self.valid
        found["request_id"] = request_id
        return found


def check_content_type(value: str | None) -> None:
    """Raise RequestError 415 unless ``value`` is a JSON media type (parameters allowed)."""
    media = (value or "").split(";", 1)[0].strip().lower()
    if media not in JSON_TYPES and not (media.startswith("application/") and media.endswith("+json")):
        raise RequestError(415, f"Content-Type {value or '(none)'!r} is not supported; send JSON",
                           "Content-Type", "application/json")


def parse_json(body: bytes) -> Any:
    """Return the decoded JSON document.

    Raises RequestError 400 naming the position of a syntax fault, for nesting deeper than
    ``MAX_DEPTH`` (checked before parsing: every later step may recurse) and for an integer with
    more digits than Python converts (over 4300).
    """
    depth = nesting_depth(body)
    if depth > MAX_DEPTH:
        raise RequestError(400, TOO_DEEP.format(depth=depth, limit=MAX_DEPTH), "body",
                           f"at most {MAX_DEPTH} levels of nesting")
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise RequestError(400, "the body is not UTF-8 text", "body", "UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"the body is not valid JSON: {exc.msg} at line {exc.lineno} "
                                f"column {exc.colno}", "body", "a JSON document") from None
    except (ValueError, RecursionError) as exc:  # an integer of over 4300 digits
        raise RequestError(400, TOO_MANY_DIGITS.format(reason=str(exc)[:120]), "body",
                           "numbers within the model input's datatype") from None


def nesting_depth(body: bytes) -> int:
    """Return how deep ``body``'s arrays and objects nest (brackets inside strings not counted);
    cheap for a body with few brackets, one vectorised pass otherwise."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return MAX_DEPTH
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    steps = np.frombuffer(brackets, dtype=np.uint8)
    levels = np.cumsum(np.where((steps == ord("[")) | (steps == ord("{")), 1, -1), dtype=np.int64)
    return int(levels.max()) if levels.size else 0


# -- /predict ----------------------------------------------------------------------------------


def predict_rows(document: Any, max_rows: int) -> list[Any]:
    """Return the rows of a ``/predict`` body: ``{"rows": [...]}``, ``{"instances": [...]}`` or a
    bare list; each row an object of columns (or a list of values for an unnamed tensor model).

    Raises RequestError 400 for another shape, 422 for no rows or more than ``max_rows``.
    """
    if isinstance(document, list):
        rows, name = document, "body"
    elif isinstance(document, dict) and ("rows" in document or "instances" in document):
        name = "rows" if "rows" in document else "instances"
        rows = document[name]
    else:
        raise RequestError(400, 'the body must be {"rows": [{column: value, ...}, ...]} or a list '
                                "of rows", "rows", {"rows": [{"column": "value"}]})
    if not isinstance(rows, list):
        raise RequestError(400, f"{name} must be a list of rows, not {_kind(rows)}", name,
                           "a list of objects")
    if not rows:
        raise RequestError(422, f"{name} is empty; send at least one row", name,
                           "one row or more")
    if len(rows) > max_rows:
        raise RequestError(422, f"{name} has {len(rows)} rows; at most {max_rows} per request "
                                "(serve.max_rows)", name, f"at most {max_rows} rows")
    return rows


def column_values(rows: Sequence[Any], columns: Sequence[str], source: str) -> dict[str, list[Any]]:
    """Return each column's values over ``rows`` (objects naming every column).

    Raises RequestError 422 naming the first row and the columns it lacks, or 400 for a row that is
    not an object.
    """
    found: dict[str, list[Any]] = {name: [] for name in columns}
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(400, f"{source}[{index}] must be an object of columns, not "
                                    f"{_kind(row)}", f"{source}[{index}]", list(columns))
        try:
            for name in columns:
                found[name].append(row[name])
        except KeyError:
            missing = [name for name in columns if name not in row]
            raise RequestError(422, f"{source}[{index}] lacks the columns {missing}; the model "
                                    f"reads {list(columns)}", f"{source}[{index}].{missing[0]}",
                               list(columns)) from None
    return found


def column_array(values: list[Any], spec: TensorSpec, field_name: str) -> NDArray[Any]:
    """Return one input's values over the rows as the array ``spec`` takes, ``[rows, *row
    shape]``, as the v2 protocol binds it: each row's value has the input's shape without its batch
    axis (a lone value for a ``[rows, 1]`` input; a list of L token ids for a ``[rows, L]`` one).

    JSON null is a missing value: NaN for float inputs, the empty string for string inputs (as a
    CSV's empty cell is in ``validate``). Raises RequestError 422 naming the field for a value of
    the wrong kind or shape (another rank, a fixed axis of another size, ragged rows).
    """
    row_shape = v2_shape(spec)[1:]
    array = convert(values, spec, field_name)
    got = list(array.shape[1:])
    if not got and row_shape == [1]:
        return array.reshape(-1, 1)
    if len(got) != len(row_shape) or any(want >= 0 and size != want
                                         for size, want in zip(got, row_shape, strict=True)):
        raise RequestError(422, ROW_SHAPE.format(field=field_name, got=got, name=spec.name,
                                                 want=row_shape), field_name,
                           f"one value of shape {row_shape} per row")
    return array


def check_axes(feeds: Mapping[str, NDArray[Any]], specs: Sequence[TensorSpec],
               fields: Mapping[str, str]) -> None:
    """Check the feeds' sizes beyond the batch axis: none is 0, and inputs that share a named
    axis (``sequence`` of ``input_ids`` and ``attention_mask``) have equal lengths along it.

    Raises RequestError 422 naming the input (its field in ``fields``).
    """
    seen: dict[str, tuple[str, int]] = {}
    for spec in specs:
        array = feeds.get(spec.name)
        if array is None:
            continue
        field_name = fields.get(spec.name, spec.name)
        if 0 in array.shape:
            raise RequestError(422, NO_ROWS.format(field=field_name, shape=list(array.shape)),
                               field_name, v2_shape(spec))
        for axis, (dim, size) in enumerate(zip(spec.shape, array.shape, strict=False)):
            if axis == 0 or not isinstance(dim, str) or not dim:
                continue
            other, other_size = seen.setdefault(dim, (field_name, size))
            if other_size != size:
                raise RequestError(422, AXES_DIFFER.format(field=field_name, size=size, axis=axis,
                                                           dim=dim, other=other,
                                                           other_size=other_size),
                                   field_name, f"{other_size} values along axis {axis}")


def convert(values: Any, spec: TensorSpec, field_name: str) -> NDArray[Any]:
    """Return ``values`` (a flat or nested list) as a numpy array of ``spec``'s type, every value
    within the type: no integer wraps, no finite number becomes an infinity, a BOOL takes only
    booleans (or 0 and 1).

    Raises RequestError 422 naming ``field_name`` and the type the input takes.
    """
    dtype = spec.numpy_type
    if dtype is np.object_:
        return _text(values, spec, field_name)
    try:
        array = np.array(values)
    except (ValueError, RecursionError):
        raise RequestError(422, f"{field_name} is ragged: its nested lists differ in length",
                           field_name, "a flat list, or nested lists of equal length") from None
    if array.dtype.kind == "O":
        array = _numbers(array, dtype, spec, field_name)
    if array.dtype.kind not in "biuf":
        bad = next((v for v in array.reshape(-1).tolist() if not _is_number(v, dtype)), values)
        raise _wrong_value(field_name, bad, spec)
    if dtype is np.bool_:
        if array.dtype.kind != "b" and (array.dtype.kind not in "iuf"
                                        or not np.all((array == 0) | (array == 1))):
            bad = next((v for v in array.reshape(-1).tolist() if v not in (0, 1)), values)
            raise RequestError(422, NOT_BOOLEAN.format(field=field_name, value=_short(bad),
                                                       name=spec.name), field_name, "BOOL")
        return array.astype(dtype, copy=False)
    if np.issubdtype(dtype, np.integer):
        return _integers(array, dtype, spec, field_name)
    with np.errstate(over="ignore", invalid="ignore"):
        converted = array.astype(dtype, copy=False)
    if array.dtype != converted.dtype and array.size:
        overflow = np.isinf(converted) & ~np.isinf(array)
        if np.any(overflow):
            bad = array.reshape(-1)[np.argmax(overflow.reshape(-1))]
            raise _out_of_range(field_name, bad.item(), spec)
    return converted


def _text(values: Any, spec: TensorSpec, field_name: str) -> NDArray[Any]:
    try:
        array = np.array(values, dtype=object)
    except (ValueError, RecursionError):
        raise RequestError(422, f"{field_name} is ragged: its nested lists differ in length",
                           field_name, "a flat list, or nested lists of equal length") from None
    flat = array.reshape(-1)
    for position, value in enumerate(flat):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            flat[position] = ""
        elif isinstance(value, (dict, list)):
            raise _wrong_value(field_name, value, spec)
        elif not isinstance(value, str):
            flat[position] = str(value)
    return array


def _numbers(array: NDArray[Any], dtype: Any, spec: TensorSpec, field_name: str) -> NDArray[Any]:
    """Return an object array of JSON values (ints too large for int64 or uint64, nulls mixed
    with numbers) as numbers: Python ints are kept exact for the range check, nulls become NaN for
    a float input. An array holding anything else is returned as is (refused by the caller)."""
    flat = array.reshape(-1).tolist()
    if not all(_is_number(value, dtype) for value in flat):
        return array
    if np.issubdtype(dtype, np.floating):
        try:
            return np.array([math.nan if value is None else float(value) for value in flat],
                            dtype=np.float64).reshape(array.shape)
        except OverflowError:
            bad = next(v for v in flat if isinstance(v, int) and abs(v) > 2**1023)
            raise _out_of_range(field_name, bad, spec) from None
    low, high = _limits(dtype)
    for value in flat:
        if isinstance(value, int) and not isinstance(value, bool) and not low <= value <= high:
            raise _out_of_range(field_name, value, spec)
    return array


def _integers(array: NDArray[Any], dtype: Any, spec: TensorSpec, field_name: str) -> NDArray[Any]:
    if array.dtype.kind == "f" and not (np.all(np.isfinite(array))
                                        and np.all(array == np.round(array))):
        raise RequestError(422, f"{field_name} holds fractional or missing values; model input "
                                f"{spec.name!r} takes whole numbers ({spec.type})", field_name,
                           V2_DATATYPES.get(spec.type, spec.type))
    if array.size:
        low, high = _limits(dtype)
        # Python compares an int with a float exactly: 2**63 as a float is above int64's top
        smallest, largest = array.min().item(), array.max().item()
        if smallest < low:
            raise _out_of_range(field_name, smallest, spec)
        if largest > high:
            raise _out_of_range(field_name, largest, spec)
    return array.astype(dtype, copy=False)


def _limits(dtype: Any) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _out_of_range(field_name: str, value: Any, spec: TensorSpec) -> RequestError:
    datatype = V2_DATATYPES.get(spec.type, spec.type)
    if np.issubdtype(spec.numpy_type, np.integer):
        low, high = _limits(spec.numpy_type)
        low_text, high_text = str(low), str(high)
    else:
        info = np.finfo(spec.numpy_type)
        low_text, high_text = f"{float(info.min):.6g}", f"{float(info.max):.6g}"
    shown = str(value)
    shown = shown if len(shown) <= 40 else f"{shown[:20]}...({len(shown)} digits)"
    return RequestError(422, OUT_OF_RANGE.format(field=field_name, value=shown, name=spec.name,
                                                 datatype=datatype, low=low_text, high=high_text),
                        field_name, f"{datatype}: {low_text} to {high_text}")


_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")


def _wrong_value(field_name: str, value: Any, spec: TensorSpec) -> RequestError:
    wanted = "text" if spec.numpy_type is np.object_ else "numbers"
    return RequestError(422, f"{field_name} holds {_kind(value)} {_short(value)}; model input "
                             f"{spec.name!r} takes {wanted} ({spec.type})", field_name,
                        V2_DATATYPES.get(spec.type, spec.type))


def _is_number(value: Any, dtype: Any) -> bool:
    if value is None:
        return bool(np.issubdtype(dtype, np.floating))
    return isinstance(value, (int, float, bool))


# -- /v2/models/{name}/infer -------------------------------------------------------------------


@dataclass(frozen=True)
class InferRequest:
    """A parsed v2 inference request: one array per model input, the outputs asked for."""

    feeds: dict[str, NDArray[Any]]
    outputs: list[str] | None
    request_id: str | None
    rows: int


def infer_request(document: Any, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                  max_rows: int) -> InferRequest:
    """Return the feeds of a v2 ``infer`` body checked against the model's inputs.

    Raises RequestError 400 for a body that is not v2 JSON (names the field), 422 for an input the
    model lacks or lacks from the request, a datatype or shape the model does not take, data that
    does not fill the shape, inputs with different batch sizes, or too many rows.
    """
    if not isinstance(document, dict):
        raise RequestError(400, f"the body must be a v2 inference request object, not "
                                f"{_kind(document)}", "body",
                           {"inputs": [{"name": "...", "shape": [1, 4], "datatype": "FP32",
                                        "data": [0, 0, 0, 0]}]})
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise RequestError(400, "inputs must be a non-empty list of tensors", "inputs",
                           [{"name": spec.name, "datatype": V2_DATATYPES.get(spec.type, spec.type),
                             "shape": v2_shape(spec)} for spec in inputs])
    by_name = {spec.name: spec for spec in inputs}
    feeds: dict[str, NDArray[Any]] = {}
    fields: dict[str, str] = {}
    for index, tensor in enumerate(raw_inputs):
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            raise RequestError(400, f"{where} must be an object with name, shape, datatype and data",
                               where, ["name", "shape", "datatype", "data"])
        name = tensor.get("name")
        if not isinstance(name, str):
            raise RequestError(400, f"{where}.name must be a string", f"{where}.name",
                               sorted(by_name))
        spec = by_name.get(name)
        if spec is None:
            raise RequestError(422, f"{where}.name {name!r} is not an input of the model",
                               f"{where}.name", sorted(by_name))
        if name in feeds:
            raise RequestError(422, f"{where}.name {name!r} is given twice", f"{where}.name",
                               sorted(by_name))
        feeds[name] = _tensor(tensor, spec, where)
        fields[name] = f"{where}.shape"
    missing = [spec.name for spec in inputs if spec.name not in feeds]
    if missing:
        raise RequestError(422, f"inputs lacks the model inputs {missing}", "inputs",
                           [spec.name for spec in inputs])
    batch = {name: (array.shape[0] if array.ndim else 1) for name, array in feeds.items()}
    if len(set(batch.values())) > 1:
        raise RequestError(422, f"the inputs have different batch sizes {batch}; row i of every "
                                "input is one example", "inputs", "one batch size")
    check_axes(feeds, inputs, fields)
    rows = next(iter(batch.values()))
    if rows > max_rows:
        raise RequestError(422, f"inputs hold {rows} rows; at most {max_rows} per request "
                                "(serve.max_rows)", "inputs", f"at most {max_rows} rows")
    wanted = _requested_outputs(document.get("outputs"), outputs)
    request_id = document.get("id")
    return InferRequest(feeds=feeds, outputs=wanted,
                        request_id=request_id if isinstance(request_id, str) else None, rows=rows)


def _tensor(tensor: Mapping[str, Any], spec: TensorSpec, where: str) -> NDArray[Any]:
    datatype = tensor.get("datatype")
    expected = V2_DATATYPES.get(spec.type, spec.type)
    if not isinstance(datatype, str) or datatype.upper() not in KNOWN_DATATYPES:
        raise RequestError(400, f"{where}.datatype {datatype!r} is not a v2 datatype",
                           f"{where}.datatype", KNOWN_DATATYPES)
    if datatype.upper() != expected:
        raise RequestError(422, f"{where}.datatype {datatype} does not match model input "
                                f"{spec.name!r}, which takes {expected}", f"{where}.datatype",
                           expected)
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool)
                                              and d >= 0 for d in shape):
        raise RequestError(400, f"{where}.shape must be a list of non-negative integers",
                           f"{where}.shape", v2_shape(spec))
    model_shape = v2_shape(spec)
    if len(shape) != len(model_shape) or any(want >= 0 and got != want
                                             for got, want in zip(shape, model_shape, strict=False)):
        raise RequestError(422, f"{where}.shape {shape} does not fit model input {spec.name!r}, "
                                f"which takes {model_shape} (-1: any size)", f"{where}.shape",
                           model_shape)
    if "data" not in tensor:
        raise RequestError(400, f"{where}.data is missing", f"{where}.data",
                           "a flat list of values in row-major order")
    data = tensor["data"]
    if not isinstance(data, list):
        data = [data]
    array = convert(data, spec, f"{where}.data")
    size = math.prod(shape)
    if array.size != size:
        raise RequestError(422, f"{where}.data holds {array.size} values; shape {shape} needs "
                                f"{size}", f"{where}.data", f"{size} values")
    return array.reshape(shape)


def _requested_outputs(raw: Any, outputs: Sequence[TensorSpec]) -> list[str] | None:
    if raw is None:
        return None
    names = [spec.name for spec in outputs]
    if not isinstance(raw, list):
        raise RequestError(400, "outputs must be a list of {\"name\": ...} objects", "outputs",
                           [{"name": name} for name in names])
    wanted = []
    for index, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if name not in names:
            raise RequestError(422, f"outputs[{index}].name {name!r} is not an output of the model",
                               f"outputs[{index}].name", names)
        wanted.append(str(name))
    return wanted


def v2_shape(spec: TensorSpec) -> list[int]:
    """Return a model tensor's shape as v2 metadata writes it: -1 for a dynamic axis."""
    return [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in spec.shape]


def output_tensor(name: str, value: NDArray[Any]) -> dict[str, Any]:
    """Return one v2 output tensor: name, datatype, shape and the data flattened row-major."""
    datatype = _NUMPY_V2.get(value.dtype.name, "BYTES" if value.dtype.kind in "OUS" else "FP64")
    return {"name": name, "datatype": datatype, "shape": list(value.shape),
            "data": json_values(value.reshape(-1))}


def json_values(array: NDArray[Any]) -> list[Any]:
    """Return ``array`` as JSON-ready Python values; NaN and infinities become null."""
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        return [value if math.isfinite(value) else None for value in array.tolist()]
    if array.dtype.kind in "OUS":
        return [value.decode() if isinstance(value, bytes) else value for value in array.tolist()]
    values: list[Any] = array.tolist()
    return values


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
