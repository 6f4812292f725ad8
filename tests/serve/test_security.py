"""Bearer tokens, TLS and limits, over real HTTP against ``shipml serve``."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import requests

from tests.conftest import Case
from tests.serve.conftest import Server, start_server, write_serve_config

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
