"""The shadow mirror (issue 19, item 3): a sampled share of /predict sent again to another
revision off the request path, a bounded queue whose overflow is counted, series at 0 from the
first scrape, and the shadow file switched on and off while the server runs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from shipml.serve._metrics import ServerMetrics
from shipml.serve.shadow import ShadowMirror, parse_target, same_predictions
from tests.conftest import Case
from tests.serve.conftest import Server, start_server, write_serve_config

WAIT_S = 60.0


def _rows(case: Case, count: int) -> list[dict[str, Any]]:
    frame = pd.read_csv(case.test).drop(columns=[case.label]).head(count)
    rows: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    return rows


def _shadow_values(server: Server, name: str) -> dict[str, float]:
    """Return ``shipml_serve_shadow_NAME_total`` by target revision."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{server.url}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"shipml_serve_shadow_{name}_total":
                found[sample.labels["target"]] = sample.value
    return found


def _wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.1)


def _write(path: Path, record: dict[str, Any]) -> None:
    # written beside and renamed, as a deployment target replaces it: never read half written
    part = path.with_suffix(".part")
    part.write_text(json.dumps(record), encoding="utf-8")
    part.replace(path)


def test_the_sample_share_is_honoured_and_the_queue_is_bounded(tmp_path: Path) -> None:
    # No sender threads: what the request path queued stays in the queue to be counted.
    target = tmp_path / "shadow.json"
    _write(target, {"url": "http://127.0.0.1:9", "sample": 0.2, "revision": "canary-1"})
    metrics = ServerMetrics("model", "1", "stable-1")
    mirror = ShadowMirror(target, metrics, queue_size=100_000, seed=7)
    assert mirror.reload() is not None
    for _ in range(5000):
        mirror.offer({"rows": [[1.0]]}, [0], 0.001)
    sampled = mirror._queue.qsize()
    assert 850 <= sampled <= 1150, sampled  # 1000 expected; 4.7 standard deviations either side

    _write(target, {"url": "http://127.0.0.1:9", "sample": 1.0, "revision": "canary-2"})
    bounded = ShadowMirror(target, metrics, queue_size=5, seed=7)
    bounded.reload()
    for _ in range(100):
        bounded.offer({"rows": [[1.0]]}, [0], 0.001)
    assert bounded._queue.qsize() == 5
    assert metrics.shadow("canary-2").dropped._value.get() == 95


def test_a_shadow_file_that_is_not_a_target_stops_mirroring_and_says_why(tmp_path: Path) -> None:
    path = str(tmp_path / "shadow.json")
    assert parse_target(None, path) is None and parse_target(b"{}", path) is None
    assert parse_target(b'{"url": "http://127.0.0.1:8082", "sample": 0.5, "revision": "r"}',
                        path) is not None
    with pytest.raises(ValueError, match=r"shadow.json: not a shadow target \(sample 2"):
        parse_target(b'{"url": "http://127.0.0.1:8082", "sample": 2}', path)
    with pytest.raises(ValueError, match="url 'ftp://x' is not http"):
        parse_target(b'{"url": "ftp://x"}', path)
    with pytest.raises(ValueError, match="not JSON"):
        parse_target(b"{", path)
    assert same_predictions([1.0, "a"], [1.0 + 1e-9, "a"]) and not same_predictions(1, 2)
    assert not same_predictions(None, 1)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_shadow_series_exist_at_zero_from_the_first_scrape(
        multiclass_case: Case, tmp_path: Path, servers: list[Server], workers: int) -> None:
    shadow = tmp_path / "shadow.json"
    _write(shadow, {"url": "http://127.0.0.1:9", "sample": 0.5, "revision": "canary-0"})
    write_serve_config(tmp_path, multiclass_case, workers=workers)
    server = start_server(tmp_path, env={"SHIPML_SHADOW_FILE": str(shadow)})
    servers.append(server)
    for name in ("requests", "errors", "dropped", "compared", "agreed"):
        assert _shadow_values(server, name) == {"canary-0": 0}, name


def test_the_shadow_file_switches_mirroring_on_and_off_while_the_server_runs(
        multiclass_case: Case, tmp_path: Path, servers: list[Server]) -> None:
    canary_folder = tmp_path / "canary"
    canary_folder.mkdir()
    write_serve_config(canary_folder, multiclass_case, revision="canary-1")
    canary = start_server(canary_folder)
    servers.append(canary)
    shadow = tmp_path / "shadow.json"
    write_serve_config(tmp_path, multiclass_case, revision="stable-1")
    stable = start_server(tmp_path, env={"SHIPML_SHADOW_FILE": str(shadow)})
    servers.append(stable)
    rows = _rows(multiclass_case, 20)

    def send(count: int) -> None:
        for row in rows[:count]:
            answer = requests.post(f"{stable.url}/predict", json={"rows": [row]}, timeout=10)
            assert answer.status_code == 200, answer.text

    send(5)  # no file yet: nothing mirrored
    assert _shadow_values(stable, "requests") == {}
    _write(shadow, {"url": canary.url, "sample": 1.0, "revision": "canary-1"})
    stable.wait_logged("shadow_on")
    send(20)
    _wait_for(lambda: _shadow_values(stable, "compared").get("canary-1") == 20,
              "the stable compared 20 mirrored answers")
    assert _shadow_values(stable, "agreed") == {"canary-1": 20}  # the same model agrees
    assert _shadow_values(stable, "errors") == {"canary-1": 0}

    shadow.unlink()
    stable.wait_logged("shadow_off")
    send(20)
    # on again, to another revision label: the queue is first in, first out, so once the new
    # target's requests are counted, anything queued while off would have been sent already
    _write(shadow, {"url": canary.url, "sample": 1.0, "revision": "canary-2"})
    _wait_for(lambda: len(stable.events("shadow_on")) == 2, "the second shadow_on")
    send(3)
    _wait_for(lambda: _shadow_values(stable, "compared").get("canary-2") == 3,
              "the stable compared 3 answers of the second target")
    assert _shadow_values(stable, "requests") == {"canary-1": 20, "canary-2": 3}


def test_a_stalled_target_never_fails_a_user_request_and_its_overflow_is_counted(
        multiclass_case: Case, tmp_path: Path, servers: list[Server]) -> None:
    import socket

    # A target that takes connections into its backlog and never answers: every mirrored
    # request waits for the sender's timeout, the queue fills, and sampled requests are dropped.
    with socket.create_server(("127.0.0.1", 0), backlog=512) as stalled:
        port = stalled.getsockname()[1]
        shadow = tmp_path / "shadow.json"
        _write(shadow, {"url": f"http://127.0.0.1:{port}", "sample": 1.0, "revision": "stall"})
        write_serve_config(tmp_path, multiclass_case, revision="stable-1")
        stable = start_server(tmp_path, env={"SHIPML_SHADOW_FILE": str(shadow)})
        servers.append(stable)
        rows = _rows(multiclass_case, 20)
        session = requests.Session()
        sent = 0
        while not _shadow_values(stable, "dropped").get("stall"):
            for row in rows:
                answer = session.post(f"{stable.url}/predict", json={"rows": [row]}, timeout=10)
                assert answer.status_code == 200, answer.text
            sent += len(rows)
            assert sent < 20_000, "the queue never overflowed"
        assert _shadow_values(stable, "dropped")["stall"] > 0
        assert _shadow_values(stable, "agreed") == {"stall": 0}
