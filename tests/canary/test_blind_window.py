"""No analysis window is blind: the real ``shipml serve`` scraped by a real Prometheus, and the
canary's analysis run right after Prometheus first sees the canary's errors.

A counter series born at its first error has no earlier sample, so ``increase``/``rate`` over it
reads nothing; with ``or vector(0)`` that read as an error rate of 0 and the first windows after a
canary started passed a model that answered 500 (issue 19, item 2).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests

from shipml.canary.analysis import AnalysisRound, analyse, metric_specs
from shipml.canary.providers.prometheus import PrometheusProvider
from tests.canary.conftest import Prometheus, start_prometheus
from tests.conftest import Case
from tests.serve.conftest import Server, start_server, write_serve_config

REVISION = "blind-canary"
DEADLINE_S = 120.0
#: every /predict fails while the flag file exists: the fault is switched by the test, not by luck
_SITECUSTOMIZE = '''
import os
import shipml.serve.model as served

original = served.ServedModel.predict


def predict(self, rows):
    if os.path.exists({flag!r}):
        raise RuntimeError("injected")
    return original(self, rows)


served.ServedModel.predict = predict
'''


@pytest.fixture
def canary(binary_case: Case, tmp_path: Path) -> Iterator[tuple[Server, Prometheus, Path]]:
    """A canary server (answering 500 while its flag file exists) and a Prometheus scraping it."""
    flag = tmp_path / "fail-now"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(flag=str(flag)),
                                            encoding="utf-8")
    path = os.pathsep.join(part for part in (str(hooks), os.environ.get("PYTHONPATH")) if part)
    write_serve_config(tmp_path, binary_case)
    server = start_server(tmp_path, env={"SHIPML_REVISION": REVISION, "PYTHONPATH": path})
    (tmp_path / "prometheus").mkdir()
    try:
        prometheus = start_prometheus(tmp_path / "prometheus", [server.port])
    except BaseException:
        server.stop()
        raise
    yield server, prometheus, flag
    prometheus.stop()
    server.stop()


def _scraped(prometheus: Prometheus, code: str) -> list[float]:
    """Return the raw samples Prometheus holds of the canary's /predict counter of ``code``."""
    series = (f'shipml_serve_requests_total{{revision="{REVISION}",endpoint="predict",'
              f'code="{code}"}}[5m]')
    answer = requests.get(f"{prometheus.url}/api/v1/query", params={"query": series}, timeout=10)
    return [float(value) for item in answer.json()["data"]["result"]
            for _, value in item["values"]]


def _wait_scraped(prometheus: Prometheus, code: str, count: float) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while count not in _scraped(prometheus, code):
        assert time.monotonic() < deadline, (code, count, _scraped(prometheus, code))
        time.sleep(0.1)


def _predict(server: Server, row: dict[str, object]) -> int:
    return requests.post(f"{server.url}/predict", json={"rows": [row]}, timeout=30).status_code


def _analyse(prometheus: Prometheus, selector: str = "") -> AnalysisRound:
    specs = metric_specs([{"name": "error-rate", "query": "error_rate", "max": 0.05}],
                         "canary.metrics")
    provider = PrometheusProvider(url=prometheus.url, selector=selector, sample_step_s=1)
    return analyse(specs, {"prometheus": provider}, canary=REVISION, stable="blind-stable",
                   window_s=60, sample_window_s=60, min_requests=5)


def test_an_analysis_right_after_the_first_errors_are_scraped_sees_them(
        canary: tuple[Server, Prometheus, Path], binary_case: Case) -> None:
    server, prometheus, flag = canary
    row = pd.read_csv(binary_case.test).drop(columns=[binary_case.label]).iloc[0].to_dict()
    for _ in range(5):
        assert _predict(server, row) == 200
    _wait_scraped(prometheus, "200", 5)
    for _ in range(20):
        assert _predict(server, row) == 200
    flag.touch()
    for _ in range(10):
        assert _predict(server, row) == 500
    flag.unlink()
    # the canary's first errors are in Prometheus; nothing fails after them
    _wait_scraped(prometheus, "500", 10)
    _wait_scraped(prometheus, "200", 25)

    round_ = _analyse(prometheus)

    assert round_.verdict == "fail", [result.describe() for result in round_.results]
    error_rate = round_.canary_value("error-rate")
    assert error_rate is not None and 0.05 < error_rate <= 1, error_rate


def test_an_error_rate_that_cannot_be_computed_from_a_served_window_is_never_a_pass(
        canary: tuple[Server, Prometheus, Path], binary_case: Case) -> None:
    # A selector that keeps no 5xx series: the canary served requests, but its error numbers do
    # not exist. That is no data, not an error rate of 0.
    server, prometheus, _ = canary
    row = pd.read_csv(binary_case.test).drop(columns=[binary_case.label]).iloc[0].to_dict()
    for _ in range(5):
        assert _predict(server, row) == 200
    _wait_scraped(prometheus, "200", 5)
    for _ in range(20):
        assert _predict(server, row) == 200
    _wait_scraped(prometheus, "200", 25)

    round_ = _analyse(prometheus, selector='code!~"5.."')

    assert round_.canary_requests is not None and round_.canary_requests >= 5
    assert round_.verdict == "inconclusive", [result.describe() for result in round_.results]
    assert round_.results[0].missing
