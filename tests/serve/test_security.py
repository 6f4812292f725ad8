"""Bearer tokens, TLS and limits, over real HTTP against ``shipml serve``."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import Case
from tests.serve.conftest import (
    Server,
    metric_total,
    raw_connect,
    raw_exchange,
    read_answers,
    start_server,
    write_serve_config,
)

TOKEN = "s3cret-token-ABCDEF0123456789"
ENV_TOKEN = "other-token-from-the-environment"


def _tensor() -> dict[str, object]:
    return {"inputs": [{"name": "X", "shape": [1, 6], "datatype": "FP32", "data": [0.1] * 6}]}


def test_tokens_guard_predictions_not_health_and_never_reach_a_log(
        multiclass_case: Case, tmp_path: Path, servers: list[Server]) -> None:
    (tmp_path / "tokens").write_text(f"# accepted tokens\n{TOKEN}\n\n", encoding="utf-8")
    write_serve_config(tmp_path, multiclass_case, auth={"tokens_file": "tokens"})
    server = start_server(tmp_path, env={"SHIPML_SERVE_TOKENS": ENV_TOKEN})
    servers.append(server)
    infer = f"{server.url}/v2/models/model/infer"

    missing = requests.post(infer, json=_tensor(), timeout=10)
    assert missing.status_code == 401
    assert missing.json()["field"] == "Authorization"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = requests.post(infer, json=_tensor(), timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN[:-1]}X"})
    assert wrong.status_code == 401
    basic = requests.post(infer, json=_tensor(), timeout=10,
                          headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    for token in (TOKEN, ENV_TOKEN):
        right = requests.post(infer, json=_tensor(), timeout=10,
                              headers={"Authorization": f"Bearer {token}"})
        assert right.status_code == 200, right.text
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/model/ready", "/metrics"):
        assert requests.get(f"{server.url}{path}", timeout=10).status_code == 200, path
    assert requests.get(f"{server.url}/v2/models/model", timeout=10).status_code == 401

    assert server.stop() == 0
    lines = server.log_lines()
    assert len([line for line in lines if '"event":"request"' in line]) >= 8
    for line in lines:
        assert TOKEN not in line and TOKEN[:-1] not in line and ENV_TOKEN not in line


def test_metrics_need_a_token_when_auth_metrics_is_on(multiclass_case: Case, tmp_path: Path,
                                                      servers: list[Server]) -> None:
    write_serve_config(tmp_path, multiclass_case, auth={"metrics": True})
    server = start_server(tmp_path, env={"SHIPML_SERVE_TOKENS": TOKEN})
    servers.append(server)
    assert requests.get(f"{server.url}/metrics", timeout=10).status_code == 401
    assert requests.get(f"{server.url}/metrics", timeout=10,
                        headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "server.crt", folder / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_tls_answers_a_client_that_trusts_the_certificate_and_refuses_plain_http(
        multiclass_case: Case, tmp_path: Path, servers: list[Server],
        certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    write_serve_config(tmp_path, multiclass_case, tls={"cert_file": str(cert), "key_file": str(key)})
    server = start_server(tmp_path, scheme="https", verify=str(cert))
    servers.append(server)
    answer = requests.post(f"{server.url}/v2/models/model/infer", json=_tensor(), timeout=10,
                           verify=str(cert))
    assert answer.status_code == 200, answer.text
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{server.url}/v2/health/live", timeout=10)  # the certificate is not trusted
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{server.port}/v2/health/live", timeout=10)
    # a slow or silent client does not hold up the others (handshakes run per connection)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5):
        again = requests.get(f"{server.url}/v2/health/ready", timeout=10, verify=str(cert))
        assert again.status_code == 200


def test_a_request_over_max_concurrency_is_503_with_retry_after(
        binary_case: Case, tmp_path: Path, servers: list[Server]) -> None:
    # batching holds the first request for 1.5 s, so the second finds no free slot
    write_serve_config(tmp_path, binary_case, max_concurrency=1,
                       batching={"max_batch_size": 64, "max_delay_ms": 1000})
    server = start_server(tmp_path)
    servers.append(server)
    import pandas as pd

    row = pd.read_csv(binary_case.test).drop(columns=[binary_case.label]).iloc[:1] \
        .to_dict(orient="records")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(requests.post, f"{server.url}/predict", json={"rows": row}, timeout=30)
        import time

        time.sleep(0.4)
        second = requests.post(f"{server.url}/predict", json={"rows": row}, timeout=30)
        assert second.status_code == 503
        assert second.headers["Retry-After"] == "1"
        assert "max_concurrency" in second.json()["error"]
        assert first.result().status_code == 200


def _trickle(sockets: list[socket.socket], stop: threading.Event) -> None:
    """Send one header line on each socket every 0.3 s, as a slow-loris client does."""
    while not stop.wait(0.3):
        for sock in sockets:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                pass


def test_a_client_trickling_its_head_gets_408_and_frees_its_slot(
        multiclass_case: Case, tmp_path: Path, servers: list[Server]) -> None:
    # read_timeout_s only caught silence: a header line every 0.3 s held a slot for ever
    write_serve_config(tmp_path, multiclass_case, max_connections=4, max_connections_per_client=4,
                       request_timeout_s=2, read_timeout_s=30)
    # ready from its log: a readiness probe's connection would hold one of the 4 slots until the
    # server notices its close, and refuse a slow client 503
    server = start_server(tmp_path, wait_ready=False)
    servers.append(server)
    server.wait_logged("ready")
    slow = [raw_connect(server.port, "127.0.0.2") for _ in range(4)]
    for sock in slow:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\n")
    stop = threading.Event()
    trickling = threading.Thread(target=_trickle, args=(slow, stop), daemon=True)
    trickling.start()
    try:
        for sock in slow:
            answers = read_answers(sock)
            assert [answer.status for answer in answers] == [408]
            assert answers[0].json()["field"] == "request"
            assert "request_timeout_s" in answers[0].json()["error"]
    finally:
        stop.set()
        trickling.join()
        for sock in slow:
            sock.close()
    answer = requests.post(f"{server.url}/v2/models/model/infer", json=_tensor(), timeout=30)
    assert answer.status_code == 200, answer.text
    assert metric_total(server, "shipml_serve_rejected_total", reason="request_timeout") == 4


def test_one_address_cannot_hold_every_connection(multiclass_case: Case, tmp_path: Path,
                                                  servers: list[Server]) -> None:
    write_serve_config(tmp_path, multiclass_case, max_connections=8, max_connections_per_client=3)
    server = start_server(tmp_path)
    servers.append(server)
    held = [raw_connect(server.port, "127.0.0.2") for _ in range(3)]
    try:
        refused = raw_exchange(server.port, b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n",
                               source="127.0.0.2")
        assert [answer.status for answer in refused] == [503]
        assert "max_connections_per_client" in refused[0].json()["error"]
        assert refused[0].headers["retry-after"] == "1"
        # another address still gets a slot while the first holds all of its own
        answer = requests.post(f"{server.url}/v2/models/model/infer", json=_tensor(), timeout=30)
        assert answer.status_code == 200, answer.text
    finally:
        for sock in held:
            sock.close()
    assert metric_total(server, "shipml_serve_rejected_total", reason="client_connections") == 1
    # closed connections give their slots back
    deadline = time.monotonic() + 30
    while True:
        again = raw_exchange(server.port, b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n"
                                          b"Connection: close\r\n\r\n", source="127.0.0.2")
        if [answer.status for answer in again] == [200] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [answer.status for answer in again] == [200]


def test_max_connections_per_client_defaults_to_half_of_max_connections(tmp_path: Path) -> None:
    from shipml.config import load_config
    from shipml.serve.settings import serve_settings

    (tmp_path / "m.onnx").write_bytes(b"x")
    config_path = tmp_path / "shipml.yaml"
    config_path.write_text("serve: {model: m.onnx, max_connections: 100}\n", encoding="utf-8")
    assert serve_settings(load_config(config_path, [])).max_connections_per_client == 50
    config_path.write_text("serve: {model: m.onnx, max_connections: 10, "
                           "max_connections_per_client: 40}\n", encoding="utf-8")
    assert serve_settings(load_config(config_path, [])).max_connections_per_client == 10
