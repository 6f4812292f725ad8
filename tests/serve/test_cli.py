"""``shipml serve`` as a command: configuration errors exit 2 with the key and the fix, worker
processes share the port and their metrics, start-to-ready."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import requests

from shipml.cli import main
from shipml.config import load_config
from shipml.serve.settings import serve_settings
from tests.conftest import Case
from tests.serve.conftest import Server, start_server, write_serve_config


@pytest.mark.parametrize(("serve", "argv", "message"), [
    ({}, [], "serve.model: no model to serve; run `shipml serve model.onnx`"),
    ({"tls": {"cert_file": "server.crt"}}, ["m.onnx"],
     "serve.tls needs both cert_file and key_file"),
    ({"tls": {"cert_file": "a.crt", "key_file": "a.key"}}, ["m.onnx"],
     "serve.tls.cert_file: "),
    ({"auth": {"tokens_file": "missing-tokens"}}, ["m.onnx"], "cannot read"),
    ({"port": 70000}, ["m.onnx"], "serve.port: 70000 is greater than the maximum of 65535"),
    ({"batching": {"max_delay_ms": -1}}, ["m.onnx"], "serve.batching.max_delay_ms"),
    ({"workers": 0}, ["m.onnx"], "serve.workers"),
    ({}, ["missing.onnx"], "serve.model: model file"),
    ({}, ["m.onnx", "--port", "eighty"], "--port: 'eighty' is not a whole number"),
])
def test_a_bad_configuration_exits_2_naming_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        serve: dict[str, Any], argv: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"not read before the configuration is checked")
    write_serve_config(tmp_path, **serve)
    assert main(["serve", *argv]) == 2
    assert message in capsys.readouterr().err


def test_an_empty_tokens_file_and_a_bad_token_are_errors_that_never_show_the_token(
        tmp_path: Path) -> None:
    from shipml.errors import ConfigError

    (tmp_path / "m.onnx").write_bytes(b"x")
    (tmp_path / "tokens").write_text("# nothing\n\n")
    config = write_serve_config(tmp_path, model="m.onnx", auth={"tokens_file": "tokens"})
    with pytest.raises(ConfigError, match="holds no token"):
        serve_settings(load_config(config))
    (tmp_path / "tokens").write_text("tok\ten secret\n")
    with pytest.raises(ConfigError) as error:
        serve_settings(load_config(config))
    assert "token #1" in error.value.message and "secret" not in error.value.message
    settings = serve_settings(load_config(write_serve_config(tmp_path, model="m.onnx")),
                              environ={"SHIPML_SERVE_TOKENS": "tok-1, tok-2,tok-1"})
    assert settings.tokens == ("tok-1", "tok-2") and "tok-" not in repr(settings)


def test_a_port_in_use_exits_2(tmp_path: Path, example: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", str(example / "model.onnx"), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_a_model_whose_warm_up_fails_stops_the_server_with_2(tmp_path: Path,
                                                             servers: list[Server]) -> None:
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07garbage")
    server = start_server(tmp_path, "broken.onnx", wait_ready=False)
    servers.append(server)
    assert server.process.wait(timeout=60) == 2
    failed = server.events("load_failed")
    assert failed and "serve.model" in failed[0]["error"]


def test_workers_share_the_port_and_sum_their_metrics(multiclass_case: Case, tmp_path: Path,
                                                      servers: list[Server]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    write_serve_config(tmp_path, multiclass_case, workers=2)
    server = start_server(tmp_path)
    servers.append(server)
    tensor = {"inputs": [{"name": "X", "shape": [1, 6], "datatype": "FP32", "data": [0.2] * 6}]}
    for _ in range(20):  # new connections: the kernel spreads them over both workers
        assert requests.post(f"{server.url}/v2/models/model/infer", json=tensor,
                             timeout=10).status_code == 200
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    total = sum(sample.value for family in text_string_to_metric_families(text)
                for sample in family.samples if sample.name == "shipml_serve_requests_total"
                and sample.labels["endpoint"] == "infer")
    assert total == 20
    workers = {record["worker"] for record in server.events("request")}
    assert workers == {0, 1}
    assert server.stop() == 0
    assert len(server.events("stopped")) == 2


def test_start_to_ready_is_logged(example: Path, tmp_path: Path, servers: list[Server]) -> None:
    server = start_server(tmp_path, str(example / "model.onnx"), "--name", "cancer")
    servers.append(server)
    ready = server.events("ready")[0]
    assert ready["model"] == "cancer" and ready["start_to_ready_ms"] > 0
    assert requests.get(f"{server.url}/v2/models/cancer/ready", timeout=5).status_code == 200
    listening = server.events("listening")[0]
    assert json.dumps(listening).count("token") == 0


def test_python_m_shipml_serve_takes_the_same_arguments(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from shipml.serve.__main__ import main as serve_main

    monkeypatch.chdir(tmp_path)
    assert serve_main(["missing.onnx", "--workers", "2"]) == 2
    assert "serve.model: model file" in capsys.readouterr().err
