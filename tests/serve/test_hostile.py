"""Hostile and careless clients against a real ``shipml serve``: every input a client can send is
answered 4xx naming the field (never a 500, never a traceback), values never wrap or overflow,
rows of sequences bind as the v2 protocol binds them, the framing of a request is strict (no body
run as a second request), and every log stays strict JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from shipml.serve import _log
from tests.conftest import Case
from tests.serve.conftest import Server, metric_total, raw_exchange, start_server, write_serve_config

# -- models ------------------------------------------------------------------------------------

#: the typed model's inputs: name, ONNX element type, v2 datatype, a good value
TYPED = [("i8", "INT8", 5), ("i32", "INT32", 7), ("i64", "INT64", 9), ("u8", "UINT8", 200),
         ("b", "BOOL", True), ("f16", "FP16", 0.5), ("f32", "FP32", 1.5), ("f64", "FP64", 2.5)]


def _save(folder: Path, name: str, nodes: list[Any], inputs: list[Any], outputs: list[Any],
          initializers: list[Any] | None = None) -> Path:
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, outputs, initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / f"{name}.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _sequence_model(folder: Path) -> Path:
    """``ids`` and ``mask``, both [batch, sequence] INT64: score = sum(ids * mask) per row."""
    from onnx import TensorProto, helper, numpy_helper

    return _save(folder, "seq", [
        helper.make_node("Mul", ["ids", "mask"], ["kept"]),
        helper.make_node("Cast", ["kept"], ["kept_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["kept_f", "axis"], ["score"], keepdims=1)],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(np.array([1], dtype=np.int64), "axis")])


def _image_model(folder: Path) -> Path:
    """``image`` [batch, 3, 4, 4] FP32: the mean per image."""
    from onnx import TensorProto, helper

    return _save(folder, "image", [
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=0)],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["batch"])])


def _typed_model(folder: Path) -> Path:
    """One [batch, 1] input per datatype, each echoed by an Identity output."""
    from onnx import TensorProto, helper

    types = {"INT8": TensorProto.INT8, "INT32": TensorProto.INT32, "INT64": TensorProto.INT64,
             "UINT8": TensorProto.UINT8, "BOOL": TensorProto.BOOL, "FP16": TensorProto.FLOAT16,
             "FP32": TensorProto.FLOAT, "FP64": TensorProto.DOUBLE}
    return _save(folder, "typed",
                 [helper.make_node("Identity", [name], [f"out_{name}"]) for name, _, _ in TYPED],
                 [helper.make_tensor_value_info(name, types[kind], ["batch", 1])
                  for name, kind, _ in TYPED],
                 [helper.make_tensor_value_info(f"out_{name}", types[kind], ["batch", 1])
                  for name, kind, _ in TYPED])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, multiclass_case: Case) -> Iterator[Any]:
    """One server per model, started on first use, stopped (by pid) after the module."""
    running: dict[str, Server] = {}

    def get(kind: str) -> Server:
        if kind not in running:
            folder = tmp_path_factory.mktemp(f"hostile-{kind}")
            if kind == "multiclass":
                write_serve_config(folder, multiclass_case, max_body_mb=1)
                running[kind] = start_server(folder)
            else:
                model = {"seq": _sequence_model, "image": _image_model,
                         "typed": _typed_model}[kind](folder)
                running[kind] = start_server(folder, str(model))
        return running[kind]

    yield get
    for server in running.values():
        server.stop()


def _typed(**data: Any) -> dict[str, Any]:
    """A v2 request for the typed model: every input one good row, ``data`` replacing some."""
    return {"inputs": [{"name": name, "datatype": kind, "shape": [1, 1],
                        "data": [data.get(name, good)]} for name, kind, good in TYPED]}


def _seq(ids: list[Any], mask: list[Any], shape_ids: list[int] | None = None,
         shape_mask: list[int] | None = None) -> dict[str, Any]:
    flat_ids, flat_mask = np.array(ids).reshape(-1).tolist(), np.array(mask).reshape(-1).tolist()
    return {"inputs": [
        {"name": "ids", "datatype": "INT64", "shape": shape_ids or list(np.shape(ids)),
         "data": flat_ids},
        {"name": "mask", "datatype": "INT64", "shape": shape_mask or list(np.shape(mask)),
         "data": flat_mask}]}


def _image(shape: list[int]) -> dict[str, Any]:
    return {"inputs": [{"name": "image", "datatype": "FP32", "shape": shape,
                        "data": [0.5] * math.prod(shape)}]}


def _json(document: Any) -> bytes:
    return json.dumps(document).encode()


# -- item 3: rows of sequences -------------------------------------------------------------------


def test_predict_binds_rows_of_sequences_as_v2_does(hostile: Any) -> None:
    server = hostile("seq")
    rows = [{"ids": [1, 2, 4], "mask": [1, 1, 1]}, {"ids": [5, 6, 7], "mask": [1, 0, 0]}]
    predicted = requests.post(f"{server.url}/predict", json={"rows": rows}, timeout=30)
    assert predicted.status_code == 200, predicted.text
    inferred = requests.post(f"{server.url}/v2/models/seq/infer", timeout=30,
                             json=_seq([[1, 2, 4], [5, 6, 7]], [[1, 1, 1], [1, 0, 0]]))
    assert inferred.status_code == 200, inferred.text
    assert inferred.json()["outputs"][0]["data"] == [7.0, 5.0]
    assert predicted.json()["predictions"] == [7.0, 5.0]
    metadata = requests.get(f"{server.url}/v2/models/seq", timeout=10).json()
    assert metadata["inputs"][0]["shape"] == [-1, -1]


# -- item 4 and 11: no client input is a 500 -----------------------------------------------------

HOSTILE_BODIES: list[tuple[str, str, str, bytes, int, str]] = [
    # values outside their datatype: refused, never wrapped or rounded to an infinity
    ("INT64 2**63", "typed", "infer", _json(_typed(i64=2**63)), 422, "inputs[2].data"),
    ("INT64 -2**63-1", "typed", "infer", _json(_typed(i64=-2**63 - 1)), 422, "inputs[2].data"),
    ("INT64 2**64", "typed", "infer", _json(_typed(i64=2**64)), 422, "inputs[2].data"),
    ("INT64 2**63 as a float", "typed", "infer", _json(_typed(i64=9.3e18)), 422, "inputs[2].data"),
    ("INT64 400 digits", "typed", "infer", _json(_typed(i64=10**400)), 422, "inputs[2].data"),
    ("INT32 2**31", "typed", "infer", _json(_typed(i32=2**31)), 422, "inputs[1].data"),
    ("INT8 128", "typed", "infer", _json(_typed(i8=128)), 422, "inputs[0].data"),
    ("INT8 -129", "typed", "infer", _json(_typed(i8=-129)), 422, "inputs[0].data"),
    ("UINT8 -1", "typed", "infer", _json(_typed(u8=-1)), 422, "inputs[3].data"),
    ("UINT8 256", "typed", "infer", _json(_typed(u8=256)), 422, "inputs[3].data"),
    ("BOOL 2", "typed", "infer", _json(_typed(b=2)), 422, "inputs[4].data"),
    ("FP16 70000", "typed", "infer", _json(_typed(f16=70000)), 422, "inputs[5].data"),
    ("FP32 1e39", "typed", "infer", _json(_typed(f32=1e39)), 422, "inputs[6].data"),
    ("FP32 400 digits", "typed", "infer", _json(_typed(f32=10**400)), 422, "inputs[6].data"),
    ("FP64 400 digits", "typed", "infer", _json(_typed(f64=10**400)), 422, "inputs[7].data"),
    ("text for INT64", "typed", "infer", _json(_typed(i64="9")), 422, "inputs[2].data"),
    ("INT8 128 in a /predict row", "typed", "predict",
     _json({"rows": [{name: (128 if name == "i8" else good) for name, _, good in TYPED}]}), 422,
     "rows[].i8"),
    # bodies that broke the parser
    ("an integer of 5000 digits", "multiclass", "predict",
     b'{"rows": [[' + b"9" * 5000 + b", 1, 1, 1, 1, 1]]}", 400, "body"),
    ("[ nested 100,000 deep", "multiclass", "predict", b"[" * 100_000, 400, "body"),
    ("] and [ nested 100 deep in a row", "multiclass", "predict",
     b'{"rows": [' + b"[" * 100 + b"1" + b"]" * 100 + b"]}", 400, "body"),
    # shapes
    ("zero rows (v2)", "typed", "infer",
     _json({"inputs": [{**tensor, "shape": [0, 1], "data": []} for tensor in _typed()["inputs"]]}),
     422, "inputs[0].shape"),
    ("an empty sequence", "seq", "infer", _json(_seq([[]], [[]], [1, 0], [1, 0])), 422,
     "inputs[0].shape"),
    ("ids and mask of different lengths (v2)", "seq", "infer",
     _json(_seq([[1, 2, 3]], [[1, 1]])), 422, "inputs[1].shape"),
    ("ids and mask of different lengths (/predict)", "seq", "predict",
     _json({"rows": [{"ids": [1, 2, 3], "mask": [1, 1]}]}), 422, "rows[].mask"),
    ("rows of ragged sequences", "seq", "predict",
     _json({"rows": [{"ids": [1, 2, 3], "mask": [1, 1, 1]}, {"ids": [1], "mask": [1]}]}), 422,
     "rows[].ids"),
    ("a sequence where a token goes", "seq", "predict",
     _json({"rows": [{"ids": [[1, 2]], "mask": [1, 1]}]}), 422, "rows[].ids"),
    ("an image of the wrong rank (/predict)", "image", "predict",
     _json({"rows": [{"image": [[0.5] * 4] * 4}]}), 422, "rows[].image"),
    ("an image of the wrong rank (v2)", "image", "infer", _json(_image([1, 4, 4])), 422,
     "inputs[0].shape"),
    ("zero images", "image", "infer", _json(_image([0, 3, 4, 4])), 422, "inputs[0].shape"),
]


@pytest.mark.parametrize(("label", "kind", "endpoint", "body", "status", "field"), HOSTILE_BODIES,
                         ids=[case[0] for case in HOSTILE_BODIES])
def test_a_hostile_body_is_4xx_naming_the_field_never_a_500(
        hostile: Any, label: str, kind: str, endpoint: str, body: bytes, status: int,
        field: str) -> None:
    server = hostile(kind)
    name = {"multiclass": "model"}.get(kind, kind)
    path = "/predict" if endpoint == "predict" else f"/v2/models/{name}/infer"
    errors_before = metric_total(server, "shipml_serve_requests_total", code="500")
    answer = requests.post(f"{server.url}{path}", data=body, timeout=60,
                           headers={"Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field, answer.text
    assert "Traceback" not in answer.text
    assert metric_total(server, "shipml_serve_requests_total", code="500") == errors_before
    assert not server.events("internal_error") and "Traceback" not in server.log_path.read_text()


def test_values_at_the_edges_of_their_datatypes_are_answered_exactly(hostile: Any) -> None:
    server = hostile("typed")
    edges = {"i8": -128, "i32": 2**31 - 1, "i64": 2**63 - 1, "u8": 255, "b": 1, "f16": 65504.0,
             "f32": 3.4e38, "f64": 1e308}
    answer = requests.post(f"{server.url}/v2/models/typed/infer", json=_typed(**edges), timeout=30)
    assert answer.status_code == 200, answer.text
    outputs = {tensor["name"]: tensor["data"][0] for tensor in answer.json()["outputs"]}
    assert outputs["out_i64"] == 2**63 - 1 and outputs["out_i8"] == -128
    assert outputs["out_u8"] == 255 and outputs["out_b"] is True and outputs["out_f16"] == 65504.0


# -- item 5: every log is strict JSON ------------------------------------------------------------


def _strict(line: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"bare {constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_non_finite_values_are_written_as_strings_in_every_log(
        multiclass_case: Case, tmp_path: Path, servers: list[Server]) -> None:
    log = tmp_path / "predictions.jsonl"
    write_serve_config(tmp_path, multiclass_case, log_predictions={"path": str(log), "sample": 1})
    server = start_server(tmp_path)
    servers.append(server)
    body = b'{"rows": [{"f0": NaN, "f1": Infinity, "f2": -Infinity, "f3": 1, "f4": 2, "f5": 3}]}'
    answer = requests.post(f"{server.url}/predict", data=body, timeout=30,
                           headers={"Content-Type": "application/json", "X-Request-Id": "nan-1"})
    assert answer.status_code == 200, answer.text
    tensor = b'{"inputs": [{"name": "X", "shape": [1, 6], "datatype": "FP32", "data": ' \
             b'[NaN, 1, 2, 3, 4, Infinity]}]}'
    inferred = requests.post(f"{server.url}/v2/models/model/infer", data=tensor, timeout=30,
                             headers={"Content-Type": "application/json", "X-Request-Id": "nan-2"})
    assert inferred.status_code == 200, inferred.text
    assert server.stop() == 0
    records = {record["request_id"]: record
               for record in map(_strict, log.read_text(encoding="utf-8").splitlines())}
    assert records["nan-1"]["inputs"]["f0"] == ["NaN"]
    assert records["nan-1"]["inputs"]["f1"] == ["Infinity"]
    assert records["nan-1"]["inputs"]["f2"] == ["-Infinity"]
    assert records["nan-1"]["inputs"]["f3"] == [1]
    assert records["nan-2"]["inputs"]["X"] == [["NaN", 1.0, 2.0, 3.0, 4.0, "Infinity"]]
    for line in server.log_lines():  # the access log and the structured log
        _strict(line)


def test_the_log_encoding_writes_numpy_non_finite_values_as_strings() -> None:
    line = _log.dumps({"a": np.float32("nan"), "b": [np.float64("-inf"), float("inf")],
                       "c": np.int64(3), "d": 0.25})
    assert _strict(line) == {"a": "NaN", "b": ["-Infinity", "Infinity"], "c": 3, "d": 0.25}


# -- item 11: framing ----------------------------------------------------------------------------

READY = b"GET /v2/health/ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
SMUGGLED = b"GET /v2/models/model HTTP/1.1\r\nHost: t\r\n\r\n"


def _post(headers: str, body: bytes = b"", path: str = "/predict") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{headers}\r\n"
            ).encode("latin-1") + body


def test_a_get_whose_body_holds_a_request_is_answered_once(hostile: Any) -> None:
    server = hostile("multiclass")
    smuggling = (f"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nContent-Length: {len(SMUGGLED)}"
                 "\r\n\r\n").encode() + SMUGGLED
    answers = raw_exchange(server.port, smuggling + READY)
    assert [answer.status for answer in answers] == [200, 200]
    assert answers[0].json() == {"live": True} and answers[1].json() == {"ready": True}


FRAMING: list[tuple[str, bytes, int, str]] = [
    ("Content-Length 1_0", _post("Content-Length: 1_0\r\n", b'{"rows":[]}'), 400,
     "Content-Length"),
    ("two different Content-Lengths", _post("Content-Length: 2\r\nContent-Length: 11\r\n",
                                            b'{"rows":[]}'), 400, "Content-Length"),
    ("two equal Content-Lengths", _post("Content-Length: 11\r\nContent-Length: 11\r\n",
                                        b'{"rows":[]}'), 400, "Content-Length"),
    ("a list as Content-Length", _post("Content-Length: 11, 11\r\n", b'{"rows":[]}'), 400,
     "Content-Length"),
    ("a negative Content-Length", _post("Content-Length: -1\r\n"), 400, "Content-Length"),
    ("a signed Content-Length", _post("Content-Length: +11\r\n", b'{"rows":[]}'), 400,
     "Content-Length"),
    ("a space inside Content-Length", _post("Content-Length: 1 1\r\n", b'{"rows":[]}'), 400,
     "Content-Length"),
    ("a superscript digit as Content-Length", _post("Content-Length: \xb2\r\n", b"{}"), 400,
     "Content-Length"),
    ("chunked on a GET", b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
                         b"chunked\r\n\r\n" + f"{len(SMUGGLED):x}\r\n".encode() + SMUGGLED
                         + b"\r\n0\r\n\r\n", 411, "Transfer-Encoding"),
    ("chunked and a Content-Length", _post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                                           b"0\r\n\r\n"), 411, "Transfer-Encoding"),
    ("a Transfer-Encoding other than chunked", _post("Transfer-Encoding: gzip\r\n", b""), 501,
     "Transfer-Encoding"),
    ("a space before a header's colon", _post("Content-Length : 11\r\n", b'{"rows":[]}'), 400,
     "headers"),
    ("a folded header", _post("X-Note: one\r\n two\r\nContent-Length: 0\r\n"), 400, "X-Note"),
    ("a head of 120 KB", _post("".join(f"X-Pad-{index}: {'p' * 2000}\r\n" for index in range(60))
                               + "Content-Length: 0\r\n"), 431, "headers"),
]


@pytest.mark.parametrize(("label", "payload", "status", "field"), FRAMING,
                         ids=[case[0] for case in FRAMING])
def test_a_request_whose_framing_is_ambiguous_is_refused_and_its_connection_closed(
        hostile: Any, label: str, payload: bytes, status: int, field: str) -> None:
    server = hostile("multiclass")
    answers = raw_exchange(server.port, payload + READY)
    assert [answer.status for answer in answers] == [status], answers
    assert answers[0].json()["field"] == field
    assert answers[0].headers["connection"] == "close"


@pytest.mark.parametrize(("path", "status"), [
    ("/v2/health%2Flive", 404), ("/v2/models/model%2Fready", 404), ("/v2%2Fhealth/ready", 404),
    ("/v2/models/mo%64el/ready", 200), ("/v2/health/live?probe=%2F", 200)])
def test_an_encoded_slash_never_routes(hostile: Any, path: str, status: int) -> None:
    server = hostile("multiclass")
    answers = raw_exchange(server.port, f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode() + READY)
    assert [answer.status for answer in answers] == [status, 200]
    if status == 404:
        assert answers[0].json()["field"] == "path"
