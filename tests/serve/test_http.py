"""Real HTTP against ``shipml serve`` on 127.0.0.1: predictions equal in-process onnxruntime, bad
requests get precise 4xx answers, concurrency, batching, drain on SIGTERM, metrics."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from shipml.onnx_model import OnnxModel
from shipml.serve._protocol import V2_DATATYPES
from tests.conftest import Case
from tests.serve.conftest import Server, raw_connect, read_answers, start_server, write_serve_config

ROWS = 40


def _features(case: Case) -> list[str]:
    return [c for c in pd.read_csv(case.train, nrows=0).columns if c != case.label]


def _rows(case: Case, count: int = ROWS, offset: int = 0) -> pd.DataFrame:
    return pd.read_csv(case.test)[_features(case)].iloc[offset:offset + count] \
        .reset_index(drop=True)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(json.dumps(frame.to_dict(orient="records")))
    return records


def _v2_inputs(model: OnnxModel, frame: pd.DataFrame) -> list[dict[str, Any]]:
    inputs = []
    for name, array in model.feeds(frame).items():
        spec = next(spec for spec in model.inputs if spec.name == name)
        inputs.append({"name": name, "shape": list(array.shape), "datatype": V2_DATATYPES[spec.type],
                       "data": array.reshape(-1).tolist()})
    return inputs


@pytest.fixture(scope="module")
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           binary_case: Case, multiclass_case: Case, regression_case: Case
           ) -> Any:
    """One server per model kind, started on first use, stopped (by pid) after the module."""
    cases = {"binary": binary_case, "multiclass": multiclass_case, "regression": regression_case}
    running: dict[str, Server] = {}

    def get(kind: str) -> tuple[Case, Server]:
        if kind not in running:
            folder = tmp_path_factory.mktemp(f"serve-{kind}")
            write_serve_config(folder, cases[kind], max_body_mb=0.05, max_rows=500)
            running[kind] = start_server(folder, env={"SHIPML_REVISION": f"rev-{kind}"})
        return cases[kind], running[kind]

    yield get
    for server in running.values():
        server.stop()


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_predict_equals_in_process_onnxruntime(served: Any, kind: str) -> None:
    case, server = served(kind)
    frame = _rows(case)
    model = OnnxModel(case.model, features=_features(case))
    expected_labels = model.predict(frame)
    answer = requests.post(f"{server.url}/predict", json={"rows": _records(frame)}, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    if kind == "regression":
        np.testing.assert_allclose(body["predictions"], expected_labels, rtol=0, atol=1e-6)
        assert "probabilities" not in body
    else:
        assert body["predictions"] == expected_labels.tolist()
        np.testing.assert_allclose(body["probabilities"], model.predict_proba(frame), rtol=0,
                                   atol=1e-6)
    assert answer.headers["X-Request-Id"]


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_infer_equals_in_process_onnxruntime(served: Any, kind: str) -> None:
    case, server = served(kind)
    frame = _rows(case, offset=ROWS)
    model = OnnxModel(case.model, features=_features(case))
    feeds = model.feeds(frame)
    expected = dict(zip([spec.name for spec in model.outputs],
                        model.session.run(None, feeds), strict=True))
    name = case.model.stem
    answer = requests.post(f"{server.url}/v2/models/{name}/infer",
                           json={"id": "r-1", "inputs": _v2_inputs(model, frame)}, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_name"] == name and body["id"] == "r-1"
    outputs = {tensor["name"]: tensor for tensor in body["outputs"]}
    assert set(outputs) == set(expected)
    for output_name, value in expected.items():
        tensor = outputs[output_name]
        if isinstance(value, list):  # ZipMap: answered as the probability matrix
            value = np.array([[row[key] for key in sorted(row)] for row in value])
        data = np.array(tensor["data"]).reshape(tensor["shape"])
        assert list(data.shape) == list(np.shape(value))
        if np.asarray(value).dtype.kind in "fc":
            np.testing.assert_allclose(data, value, rtol=0, atol=1e-6)
        else:
            assert data.tolist() == np.asarray(value).tolist()


def test_metadata_health_and_request_ids(served: Any) -> None:
    _case, server = served("multiclass")
    assert requests.get(f"{server.url}/v2/health/live", timeout=5).json() == {"live": True}
    assert requests.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200
    assert requests.get(f"{server.url}/v2/models/model/ready", timeout=5).status_code == 200
    metadata = requests.get(f"{server.url}/v2/models/model", timeout=5).json()
    assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 6]}]
    assert metadata["parameters"]["columns"] == [f"f{i}" for i in range(6)]
    assert len(metadata["versions"][0]) == 12
    given = requests.get(f"{server.url}/v2/health/live", headers={"X-Request-Id": "abc-123"},
                         timeout=5)
    assert given.headers["X-Request-Id"] == "abc-123"
    unsafe = requests.get(f"{server.url}/v2/health/live", headers={"X-Request-Id": "a b\"c"},
                          timeout=5)
    assert unsafe.headers["X-Request-Id"] != "a b\"c" and len(unsafe.headers["X-Request-Id"]) == 32
    records = [r for r in server.events("request") if r["request_id"] == "abc-123"]
    assert records and records[0]["status"] == 200 and records[0]["path"] == "/v2/health/live"
    assert {"duration_ms", "method", "endpoint", "bytes_out"} <= set(records[0])


def _infer(server: Server, inputs: Any, model: str = "model", **headers: str) -> requests.Response:
    return requests.post(f"{server.url}/v2/models/{model}/infer", json={"inputs": inputs},
                         headers=headers, timeout=10)


def _good_tensor(rows: int = 1) -> dict[str, Any]:
    return {"name": "X", "shape": [rows, 6], "datatype": "FP32", "data": [0.5] * (6 * rows)}


BAD_REQUESTS: list[tuple[str, str, dict[str, str], bytes, int, str]] = [
    ("malformed JSON", "/predict", {}, b'{"rows": [', 400, "body"),
    ("not JSON", "/predict", {"Content-Type": "text/csv"}, b"f0,f1\n1,2\n", 415, "Content-Type"),
    ("no rows key", "/predict", {}, b'{"data": []}', 400, "rows"),
    ("empty rows", "/predict", {}, b'{"rows": []}', 422, "rows"),
    ("missing column", "/predict", {},
     json.dumps({"rows": [{f"f{i}": 1.0 for i in range(5)}]}).encode(), 422, "rows[0].f5"),
    ("text in a number column", "/predict", {},
     json.dumps({"rows": [{**{f"f{i}": 1.0 for i in range(6)}, "f2": "high"}]}).encode(), 422,
     "rows[].f2"),
    ("too many rows", "/predict", {},
     json.dumps({"rows": [{f"f{i}": 1 for i in range(6)}] * 501}).encode(), 422, "rows"),
    ("body over max_body_mb", "/predict", {},
     json.dumps({"rows": [{f"f{i}": 1.123456789 for i in range(6)}] * 600}).encode(), 413,
     "body"),
    ("wrong shape", "/v2/models/model/infer", {},
     json.dumps({"inputs": [{**_good_tensor(), "shape": [1, 5], "data": [0.5] * 5}]}).encode(),
     422, "inputs[0].shape"),
    ("data does not fill the shape", "/v2/models/model/infer", {},
     json.dumps({"inputs": [{**_good_tensor(), "data": [0.5] * 5}]}).encode(), 422,
     "inputs[0].data"),
    ("wrong datatype", "/v2/models/model/infer", {},
     json.dumps({"inputs": [{**_good_tensor(), "datatype": "INT64"}]}).encode(), 422,
     "inputs[0].datatype"),
    ("unknown datatype", "/v2/models/model/infer", {},
     json.dumps({"inputs": [{**_good_tensor(), "datatype": "FLOAT"}]}).encode(), 400,
     "inputs[0].datatype"),
    ("unknown input", "/v2/models/model/infer", {},
     json.dumps({"inputs": [{**_good_tensor(), "name": "x"}]}).encode(), 422, "inputs[0].name"),
    ("unknown output", "/v2/models/model/infer", {},
     json.dumps({"inputs": [_good_tensor()], "outputs": [{"name": "nope"}]}).encode(), 422,
     "outputs[0].name"),
    ("unknown model name", "/v2/models/resnet/infer", {},
     json.dumps({"inputs": [_good_tensor()]}).encode(), 404, "model_name"),
    ("unknown model version", "/v2/models/model/versions/9/infer", {},
     json.dumps({"inputs": [_good_tensor()]}).encode(), 404, "model_version"),
    ("no inputs", "/v2/models/model/infer", {}, b'{"inputs": []}', 400, "inputs"),
    ("GET on infer", "/v2/models/model/infer", {"X-Method": "GET"}, b"", 405, "method"),
    ("unknown path", "/v1/models/model:predict", {}, b"{}", 404, "path"),
]


@pytest.mark.parametrize(("label", "path", "headers", "body", "status", "field"), BAD_REQUESTS,
                         ids=[case[0] for case in BAD_REQUESTS])
def test_a_bad_request_gets_its_status_and_names_the_field(
        served: Any, label: str, path: str, headers: dict[str, str], body: bytes, status: int,
        field: str) -> None:
    _case, server = served("multiclass")
    method = headers.pop("X-Method", "POST") if headers else "POST"
    sent = {"Content-Type": "application/json", **headers}
    with requests.Session() as session:  # one keep-alive connection for the bad and good request
        answer = session.request(method, f"{server.url}{path}", data=body, headers=sent, timeout=10)
        assert answer.status_code == status, answer.text
        error = answer.json()
        assert error["field"] == field
        assert error["request_id"] == answer.headers["X-Request-Id"]
        assert "Traceback" not in answer.text and error["error"]
        if status in (400, 415, 422):
            assert "valid" in error
        follow = session.post(f"{server.url}/v2/models/model/infer",
                              json={"inputs": [_good_tensor()]}, timeout=10)
        assert follow.status_code == 200, "the server must keep serving after a bad request"


def test_a_model_that_raises_is_a_500_with_the_request_id_logged_once(tmp_path: Path,
                                                                      servers: list[Server]
                                                                      ) -> None:
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["value"], axis=0)], "lookup",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [None, 1])],
        [helper.make_tensor_value_info("value", TensorProto.FLOAT, [None, 1])],
        [numpy_helper.from_array(np.arange(5, dtype=np.float32), "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (tmp_path / "lookup.onnx").write_bytes(model.SerializeToString())
    server = start_server(tmp_path, "lookup.onnx")
    servers.append(server)
    tensor = {"name": "idx", "shape": [1, 1], "datatype": "INT64"}
    good = _infer(server, [{**tensor, "data": [3]}], model="lookup")
    assert good.status_code == 200 and good.json()["outputs"][0]["data"] == [3.0]
    bad = _infer(server, [{**tensor, "data": [9]}], model="lookup", **{"X-Request-Id": "boom-1"})
    assert bad.status_code == 500
    assert bad.json()["request_id"] == "boom-1" and "Traceback" not in bad.text
    time.sleep(0.2)
    mentions = [line for line in server.log_lines() if "out of data bounds" in line]
    assert len(mentions) == 1 and '"request_id":"boom-1"' in mentions[0]
    assert _infer(server, [{**tensor, "data": [4]}], model="lookup").status_code == 200


def test_two_hundred_concurrent_requests_are_each_answered_correctly(served: Any) -> None:
    case, server = served("binary")
    frame = pd.read_csv(case.test)[_features(case)].iloc[:200].reset_index(drop=True)
    expected = OnnxModel(case.model).predict_proba(frame)
    records = _records(frame)
    barrier = threading.Barrier(200)

    def ask(index: int) -> tuple[int, Any]:
        barrier.wait(timeout=60)
        answer = requests.post(f"{server.url}/predict", json={"rows": [records[index]]}, timeout=60)
        return answer.status_code, answer.json()

    with ThreadPoolExecutor(200) as pool:
        answers = list(pool.map(ask, range(200)))
    for index, (status, body) in enumerate(answers):
        assert status == 200, body
        np.testing.assert_allclose(body["probabilities"][0], expected[index], rtol=0, atol=1e-6)


def test_batching_joins_requests_without_mixing_their_answers(binary_case: Case, tmp_path: Path,
                                                              servers: list[Server]) -> None:
    write_serve_config(tmp_path, binary_case, batching={"max_batch_size": 64, "max_delay_ms": 20})
    server = start_server(tmp_path)
    servers.append(server)
    frame = pd.read_csv(binary_case.test)[_features(binary_case)].reset_index(drop=True)
    expected = OnnxModel(binary_case.model).predict_proba(frame)
    records = _records(frame)
    barrier = threading.Barrier(200)

    def ask(index: int) -> tuple[int, int, Any]:
        rows = 1 + index % 3  # requests of 1, 2 and 3 rows share batches
        start = (index * 2) % (len(records) - 3)
        barrier.wait(timeout=60)
        answer = requests.post(f"{server.url}/predict",
                               json={"rows": records[start:start + rows]}, timeout=60)
        return start, answer.status_code, answer.json()

    with ThreadPoolExecutor(200) as pool:
        answers = list(pool.map(ask, range(200)))
    for start, status, body in answers:
        assert status == 200, body
        rows = len(body["probabilities"])
        np.testing.assert_allclose(body["probabilities"], expected[start:start + rows], rtol=0,
                                   atol=1e-6)
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{server.url}/metrics", timeout=10).text
    batches = {sample.name: sample.value for family in text_string_to_metric_families(text)
               if family.name == "shipml_serve_batch_rows" for sample in family.samples}
    # every row went through one onnxruntime call, in fewer calls than requests
    assert batches["shipml_serve_batch_rows_count"] < 200
    assert batches["shipml_serve_batch_rows_sum"] == sum(1 + index % 3 for index in range(200))


def test_sigterm_answers_the_requests_in_flight_then_exits_0(binary_case: Case, tmp_path: Path,
                                                            servers: list[Server]) -> None:
    # A long batching delay holds 50 requests in flight while the signal arrives.
    write_serve_config(tmp_path, binary_case, drain_timeout_s=20,
                       batching={"max_batch_size": 128, "max_delay_ms": 1000})
    server = start_server(tmp_path)
    servers.append(server)
    records = _records(_rows(binary_case, 50))
    results: list[int] = []

    def ask(index: int) -> int:
        return requests.post(f"{server.url}/predict", json={"rows": [records[index]]},
                             timeout=60).status_code

    pool = ThreadPoolExecutor(50)
    futures = [pool.submit(ask, index) for index in range(50)]
    deadline = time.monotonic() + 20
    while _in_flight(server) < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _in_flight(server) >= 50
    server.process.send_signal(15)
    _wait_refused(server)
    results = [future.result(timeout=60) for future in futures]
    pool.shutdown()
    assert results == [200] * 50
    assert server.process.wait(timeout=30) == 0
    stopped = server.events("stopped")
    assert stopped and stopped[0]["drained"] is True


def _wait_refused(server: Server) -> None:
    """Return once the port refuses connections (the listener is closed after a signal)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
        except OSError:
            return
        time.sleep(0.02)
    raise AssertionError("the port still accepts connections 30 s after SIGTERM")


def _predict_request(case: Case, rows: int) -> bytes:
    body = json.dumps({"rows": _records(_rows(case, 50)) * (rows // 50)}).encode()
    return (f"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_sigterm_answers_every_request_begun_on_a_connection_accepted_before_it(
        binary_case: Case, tmp_path: Path, servers: list[Server]) -> None:
    # Requests cut mid request line, mid head and mid body (large bodies) when the signal comes:
    # the drain closed every connection not yet "busy", the first kind among them.
    write_serve_config(tmp_path, binary_case, drain_timeout_s=60)
    server = start_server(tmp_path)
    servers.append(server)
    request = _predict_request(binary_case, 2000)
    head = request.index(b"\r\n\r\n")
    cuts = [5, head // 2, head + (len(request) - head) // 2]
    sockets = []
    for index in range(21):
        sock = raw_connect(server.port)
        cut = cuts[index % 3]
        sock.sendall(request[:cut])
        sockets.append((sock, cut))
    server.process.send_signal(15)
    _wait_refused(server)
    statuses = []
    for sock, cut in sockets:
        with sock:
            sock.sendall(request[cut:])
            statuses.append([answer.status for answer in read_answers(sock)])
    assert statuses == [[200]] * 21
    assert server.process.wait(timeout=60) == 0
    assert server.events("stopped")[0]["drained"] is True


def _worker_pids(server: Server) -> list[int]:
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children] or [pid]


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_answers_the_connections_waiting_in_the_backlog(
        binary_case: Case, tmp_path: Path, servers: list[Server], workers: int) -> None:
    # Stopped workers accept nothing: the kernel completes these connections into the listening
    # socket's backlog, where a shutdown of the socket reset them.
    write_serve_config(tmp_path, binary_case, drain_timeout_s=60, workers=workers)
    server = start_server(tmp_path)
    servers.append(server)
    deadline = time.monotonic() + 60
    while len(server.events("ready")) < workers and time.monotonic() < deadline:
        time.sleep(0.05)
    request = _predict_request(binary_case, 50)
    stopped = _worker_pids(server)
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        sockets = []
        for _ in range(10):
            sock = raw_connect(server.port)
            sock.sendall(request)
            sockets.append(sock)
        server.process.send_signal(signal.SIGTERM)
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    statuses = []
    for sock in sockets:
        with sock:
            statuses.append([answer.status for answer in read_answers(sock)])
    assert statuses == [[200]] * 10
    assert server.process.wait(timeout=60) == 0


def _in_flight(server: Server) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{server.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "shipml_serve_in_flight_requests":
            return sum(sample.value for sample in family.samples) - 1  # less this request
    return 0.0


def _request_counts(server: Server) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[tuple[str, str], float] = {}
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "shipml_serve_requests_total":
                found[(sample.labels["endpoint"], sample.labels["code"])] = sample.value
    return found


def test_a_wrong_method_is_counted_under_the_endpoint_of_its_path_on_every_route(
        served: Any) -> None:
    # A 405 on /v2/models/{name}/infer counted as "infer" but one on /predict as "other": the
    # endpoint label comes from the route table now, for every route alike.
    _, server = served("regression")
    before = _request_counts(server)
    for path in ("/predict", "/v2/models/model/infer", "/v2/health/live", "/metrics"):
        method = "GET" if path in ("/predict", "/v2/models/model/infer") else "POST"
        answer = requests.request(method, f"{server.url}{path}", timeout=10)
        assert answer.status_code == 405, (path, answer.text)
        assert answer.headers["Allow"] == ("POST" if method == "GET" else "GET")
    after = _request_counts(server)
    for endpoint in ("predict", "infer", "live", "metrics"):
        assert after[(endpoint, "405")] - before.get((endpoint, "405"), 0) == 1, endpoint
    assert after.get(("other", "405"), 0) == before.get(("other", "405"), 0)


def test_metrics_count_exactly_the_requests_sent_with_model_version_revision(served: Any) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    case, server = served("regression")

    def counts() -> dict[tuple[str, str], float]:
        found: dict[tuple[str, str], float] = {}
        text = requests.get(f"{server.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            if family.name == "shipml_serve_requests":
                for sample in family.samples:
                    if sample.name == "shipml_serve_requests_total":
                        labels = sample.labels
                        assert labels["model"] == "model" and labels["revision"] == "rev-regression"
                        assert len(labels["version"]) == 12
                        found[(labels["endpoint"], labels["code"])] = sample.value
        return found

    before = counts()
    records = _records(_rows(case, 7))
    for index in range(7):
        assert requests.post(f"{server.url}/predict", json={"rows": [records[index]]},
                             timeout=10).status_code == 200
    for _ in range(3):
        requests.post(f"{server.url}/predict", json={"rows": []}, timeout=10)
    after = counts()
    assert after[("predict", "200")] - before.get(("predict", "200"), 0) == 7
    assert after[("predict", "422")] - before.get(("predict", "422"), 0) == 3
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name in ("shipml_serve_request_duration_seconds", "shipml_serve_inference_duration_seconds",
                 "shipml_serve_in_flight_requests", "shipml_serve_prediction_log_dropped",
                 "shipml_serve_ready"):
        assert name in families, name
    buckets = {float(sample.labels["le"]) for sample in
               families["shipml_serve_request_duration_seconds"].samples
               if sample.name.endswith("_bucket")}
    assert {0.001, 0.005, 0.01, 0.1, 1.0} <= buckets


def test_a_tensor_model_without_column_names_takes_rows_as_lists(multiclass_case: Case,
                                                                 tmp_path: Path,
                                                                 servers: list[Server]) -> None:
    server = start_server(tmp_path, str(multiclass_case.model))  # no shipml.yaml: no names
    servers.append(server)
    frame = _rows(multiclass_case, 5)
    expected = OnnxModel(multiclass_case.model).predict(frame)
    answer = requests.post(f"{server.url}/predict", json={"rows": frame.to_numpy().tolist()},
                           timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == expected.tolist()
    named = requests.post(f"{server.url}/predict", json={"rows": _records(frame)}, timeout=10)
    assert named.status_code == 422
    assert named.json()["field"] == "rows[0]" and "model.features" in named.json()["error"]
    short = requests.post(f"{server.url}/predict", json={"rows": [[1.0, 2.0]]}, timeout=10)
    assert short.status_code == 422 and short.json()["valid"] == "6 numbers"


@pytest.mark.parametrize("workers", [1, 2])
def test_the_model_endpoints_request_counters_exist_at_zero_before_the_first_request(
        multiclass_case: Case, tmp_path: Path, servers: list[Server], workers: int) -> None:
    # A series born at its first 500 has no earlier sample: increase() over it reads nothing and
    # the canary's first analysis windows were blind to the errors (issue 19, item 2).
    from shipml.serve._metrics import COUNTED_AT_START

    write_serve_config(tmp_path, multiclass_case, workers=workers)
    server = start_server(tmp_path)
    servers.append(server)
    counts = _request_counts(server)
    for endpoint, code in COUNTED_AT_START:
        assert counts.get((endpoint, str(code))) == 0, (endpoint, code, counts)
    assert {code for endpoint, code in counts if endpoint == "predict"} >= {"200", "400", "500"}
