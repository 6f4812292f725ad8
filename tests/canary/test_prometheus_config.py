"""``shipml canary --print-prometheus-config``: the scrape configuration the docker target needs,
fed as printed to a real Prometheus that scrapes a real ``shipml serve`` in a slot; and the first
analysis without traffic says where to send it (issue 21, item 6)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml

from shipml.canary.analysis import AnalysisRound, analyse, metric_specs
from shipml.canary.providers.prometheus import PrometheusProvider
from shipml.cli import main
from tests._services import free_port, require_tools
from tests.conftest import Case
from tests.serve.conftest import Server, start_server, write_serve_config

REVISION = "scraped-canary"
DEADLINE_S = 120.0


def _canary_config(folder: Path, slots: list[int], router: int, **target: object) -> Path:
    path = folder / "canary.yaml"
    path.write_text(yaml.safe_dump({"model": {"path": "model.onnx"}, "canary": {
        "service": "churn", "min_requests": 5,
        "target": {"type": "docker", "docker": {"port": router, "ports": slots}, **target},
        "prometheus": {"url": "http://127.0.0.1:9", "sample_step_s": 1},
        "metrics": [{"name": "error-rate", "query": "error_rate", "max": 0.05}]}}),
        encoding="utf-8")
    return path


def _printed(config: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["canary", "--print-prometheus-config", "--config", str(config)]) == 0
    return capsys.readouterr().out


@pytest.fixture
def slot(binary_case: Case, tmp_path: Path) -> Iterator[Server]:
    """A revision's server, as the docker target runs one in a slot."""
    write_serve_config(tmp_path, binary_case)
    server = start_server(tmp_path, env={"SHIPML_REVISION": REVISION})
    yield server
    server.stop()


def test_the_printed_configuration_scrapes_both_slots_at_the_sample_step(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = _printed(_canary_config(tmp_path, [18181, 18182], 18180), capsys)
    document = yaml.safe_load(text)
    job = document["scrape_configs"][0]
    assert job["static_configs"] == [{"targets": ["127.0.0.1:18181", "127.0.0.1:18182"]}]
    assert job["job_name"] == "shipml-canary-churn"
    assert job["scrape_interval"] == job["scrape_timeout"] == "1s"
    assert job["metrics_path"] == "/metrics"
    assert ("# The analysis judges live requests: send traffic to http://127.0.0.1:18180 during "
            "the rollout,\n# at least canary.min_requests (5) to the canary per analysis "
            "window.\n") in text


def test_another_target_is_bad_input_naming_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _canary_config(tmp_path, [18181, 18182], 18180, type="kubernetes")
    assert main(["canary", "--print-prometheus-config", "--config", str(config)]) == 2
    assert ("--print-prometheus-config: canary.target.type is kubernetes; the printed "
            "configuration is the docker target's") in capsys.readouterr().err


def test_a_real_prometheus_run_with_it_feeds_the_analysis_and_a_window_without_traffic_says_where_to_send_it(
        slot: Server, binary_case: Case, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    require_tools("prometheus")
    router = free_port()
    text = _printed(_canary_config(tmp_path, [slot.port, free_port()], router), capsys)
    (tmp_path / "prometheus.yml").write_text(text, encoding="utf-8")
    port = free_port()
    prometheus = subprocess.Popen(
        [str(shutil.which("prometheus")), f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    provider = PrometheusProvider(url=url, sample_step_s=1)
    specs = metric_specs([{"name": "error-rate", "query": "error_rate", "max": 0.05}],
                         "canary.metrics")

    def analysed() -> AnalysisRound:
        return analyse(specs, {"prometheus": provider}, canary=REVISION, stable="other",
                       window_s=600, sample_window_s=600, min_requests=5,
                       traffic_to=f"the router http://127.0.0.1:{router}")

    try:
        # the slot's counters exist at 0 from its first scrape: scraped twice, the window is
        # served by Prometheus and holds no request
        _wait(lambda: _samples(url) >= 2)
        quiet = analysed()
        assert quiet.verdict == "inconclusive"
        assert quiet.note == (
            "the canary served 0 requests in the last 600s; canary.min_requests is 5; send "
            f"traffic to the router http://127.0.0.1:{router}; the analysis judges live requests")
        row = pd.read_csv(binary_case.test).drop(columns=[binary_case.label]).iloc[0].to_dict()
        for _ in range(3):
            answer = requests.post(f"{slot.url}/predict", json={"rows": [row]}, timeout=30)
            assert answer.status_code == 200
        _wait(lambda: _scraped_requests(url) >= 3)
        thin = analysed()
        # some traffic, less than min_requests: thin, and nothing to say about where to send it
        assert thin.note == ("the canary served 3 requests in the last 600s; "
                             "canary.min_requests is 5")
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=20)


def _samples(url: str) -> int:
    """Return how many samples Prometheus holds of the slot's /predict counter."""
    query = f'shipml_serve_requests_total{{revision="{REVISION}",endpoint="predict"}}[5m]'
    return sum(len(item["values"]) for item in _result(url, query))


def _scraped_requests(url: str) -> float:
    query = f'sum(shipml_serve_requests_total{{revision="{REVISION}",endpoint="predict"}})'
    return max((float(item["value"][1]) for item in _result(url, query)), default=0.0)


def _result(url: str, query: str) -> list[dict[str, object]]:
    try:
        answer = requests.get(f"{url}/api/v1/query", params={"query": query}, timeout=5)
    except requests.RequestException:
        return []
    if answer.status_code != 200:
        return []
    return list(answer.json()["data"]["result"])


def _wait(ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not ready():
        assert time.monotonic() < deadline, "Prometheus did not scrape the slot in time"
        time.sleep(0.2)
