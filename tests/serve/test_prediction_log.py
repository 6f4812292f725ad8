"""The prediction log: sampled share, records that parse, rotation, a full queue that drops and
counts instead of slowing requests."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from shipml.serve._predlog import PredictionLog
from shipml.serve.settings import PredictionLogSettings
from tests.conftest import Case
from tests.serve.conftest import Server, start_server, write_serve_config


def _row(case: Case) -> list[dict[str, Any]]:
    frame = pd.read_csv(case.test).drop(columns=[case.label]).iloc[:1]
    rows: list[dict[str, Any]] = json.loads(json.dumps(frame.to_dict(orient="records")))
    return rows


def _metric(server: Server, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{server.url}/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == name)


def test_a_sampled_share_of_1000_requests_is_logged_as_parseable_records(
        binary_case: Case, tmp_path: Path, servers: list[Server]) -> None:
    log = tmp_path / "logs" / "predictions.jsonl"
    write_serve_config(tmp_path, binary_case, access_log=False,
                       log_predictions={"path": str(log), "sample": 0.2})
    server = start_server(tmp_path, env={"SHIPML_REVISION": "r7"})
    servers.append(server)
    row = _row(binary_case)
    with requests.Session() as session:
        for _ in range(1000):
            assert session.post(f"{server.url}/predict", json={"rows": row},
                                timeout=10).status_code == 200
    assert server.stop() == 0  # the drain flushes the log
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    # binomial(1000, 0.2): mean 200, sd 12.6; these bounds are 5 sd wide
    assert 137 <= len(records) <= 263
    record = records[0]
    assert record["model"] == "model" and record["revision"] == "r7"
    assert len(record["version"]) == 12 and record["request_id"] and record["ts"]
    assert set(record["inputs"]) == set(row[0])
    assert record["inputs"]["plan"] == [row[0]["plan"]]
    assert len(record["outputs"]["predictions"]) == 1
    assert len(record["outputs"]["probabilities"][0]) == 2


def test_rotation_keeps_at_most_max_files(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    settings = PredictionLogSettings(path=path, sample=1.0, max_bytes=2000, max_files=3,
                                     queue_size=1000)
    log = PredictionLog(settings, path)
    for index in range(200):
        assert log.offer({"index": index, "inputs": {"x": [index] * 10}})
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["predictions.jsonl", "predictions.jsonl.1", "predictions.jsonl.2"]
    kept = [json.loads(line)["index"] for name in reversed(files)
            for line in (tmp_path / name).read_text().splitlines()]
    assert kept == sorted(kept) and kept[-1] == 199  # the newest records, in order
    assert all((tmp_path / name).stat().st_size <= 2000 for name in files)
    assert log.written == 200 and log.dropped == 0


def test_a_full_queue_drops_and_counts_instead_of_slowing_requests(
        binary_case: Case, tmp_path: Path, servers: list[Server]) -> None:
    # The log is a pipe nobody reads: once its buffer is full the writer blocks for good.
    fifo = tmp_path / "predictions.jsonl"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_serve_config(tmp_path, binary_case, access_log=False, drain_timeout_s=1,
                           log_predictions={"path": str(fifo), "sample": 1.0, "queue_size": 5})
        server = start_server(tmp_path)
        servers.append(server)
        row = _row(binary_case)
        started = time.perf_counter()

        def ask(_: int) -> int:
            return requests.post(f"{server.url}/predict", json={"rows": row},
                                 timeout=10).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(ask, range(600)))
        elapsed = time.perf_counter() - started
        assert statuses == [200] * 600
        dropped = _metric(server, "shipml_serve_prediction_log_dropped_total")
        written = _metric(server, "shipml_serve_prediction_log_records_total")
        assert dropped > 0
        assert written + dropped <= 600 <= written + dropped + 6  # 5 queued, 1 in the writer
        assert elapsed < 60
        assert server.stop() == 0
    finally:
        os.close(reader)
