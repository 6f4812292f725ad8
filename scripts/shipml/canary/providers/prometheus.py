"""Prometheus as a metric provider: PromQL templates over the built-in server's metrics, told
apart by the ``revision`` label, or the user's own queries with the same placeholders.

Placeholders: ``{revision}`` (the revision label), ``{window}`` (the analysis window as a
Prometheus duration), ``{selector}`` (extra label matchers from ``prometheus.selector``, with a
leading comma when set).

Counts are ``increase`` over a window of at least two sample steps (``sample_step_s``, at least
the scrape interval), so that every window holds two scrapes of each series; the server creates
its request counters at 0 (:mod:`shipml.serve._metrics`). No series is no data, never zero: an
error rate Prometheus cannot compute is inconclusive, not ``0``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from shipml.errors import ConfigError

_PREDICT = 'revision="{revision}",endpoint=~"predict|infer"{selector}'
#: the shadow series the stable exports while it mirrors to the canary {revision}
#: (:mod:`shipml.serve.shadow`); the latency's ``answered_by`` is the revision timed, so
#: ``shadow_p95_ms`` of the stable is its own time for the same mirrored requests
_SHADOW = 'target="{revision}"{selector}'
_SHADOW_TEMPLATES: Mapping[str, str] = {
    "shadow_requests": "sum(increase(shipml_serve_shadow_requests_total{{{{target}}}}[{window}]))",
    "shadow_dropped": "sum(increase(shipml_serve_shadow_dropped_total{{{{target}}}}[{window}]))",
    "shadow_error_rate": (
        "sum(increase(shipml_serve_shadow_errors_total{{{{target}}}}[{window}]))"
        " / sum(increase(shipml_serve_shadow_requests_total{{{{target}}}}[{window}]))"),
    "shadow_agreement": (
        "sum(increase(shipml_serve_shadow_agreed_total{{{{target}}}}[{window}]))"
        " / sum(increase(shipml_serve_shadow_compared_total{{{{target}}}}[{window}]))"),
    "shadow_p95_ms": (
        "1000 * histogram_quantile(0.95, sum by (le) (rate("
        'shipml_serve_shadow_duration_seconds_bucket{{answered_by="{revision}"{selector}}}'
        "[{window}])))"),
}
#: the PromQL of each built-in metric of ``shipml serve``
TEMPLATES: Mapping[str, str] = {
    # the requests Prometheus saw between the window's first and last scrape, not extrapolated
    # to its edges: two scrapes 0.5 s apart in a 4 s window are the few requests they saw, and
    # canary.min_requests counts requests that were answered, not an estimate
    "requests": ("sum(max_over_time(shipml_serve_requests_total{{" + _PREDICT + "}}[{window}])"
                 " - min_over_time(shipml_serve_requests_total{{" + _PREDICT + "}}[{window}]))"),
    "error_rate": (
        "sum(increase(shipml_serve_requests_total{{" + _PREDICT + ',code=~"5.."}}[{window}])) '
        "/ sum(increase(shipml_serve_requests_total{{" + _PREDICT + "}}[{window}]))"),
    # the share the revision refused (4xx): a new revision that rejects what clients send
    "client_error_rate": (
        "sum(increase(shipml_serve_requests_total{{" + _PREDICT + ',code=~"4.."}}[{window}])) '
        "/ sum(increase(shipml_serve_requests_total{{" + _PREDICT + "}}[{window}]))"),
    "mean_ms": (
        "1000 * sum(rate(shipml_serve_request_duration_seconds_sum{{" + _PREDICT + "}}[{window}]))"
        " / sum(rate(shipml_serve_request_duration_seconds_count{{" + _PREDICT + "}}[{window}]))"),
    **{f"p{q}_ms": (
        f"1000 * histogram_quantile(0.{q}, sum by (le) "
        "(rate(shipml_serve_request_duration_seconds_bucket{{" + _PREDICT + "}}[{window}])))")
       for q in ("50", "90", "95", "99")},
    **{name: template.replace("{{target}}", _SHADOW) for name, template in _SHADOW_TEMPLATES.items()},
}
UNITS: Mapping[str, str] = {"requests": "", "error_rate": "ratio", "client_error_rate": "ratio",
                            "mean_ms": "ms", "p50_ms": "ms",
                            "p90_ms": "ms", "p95_ms": "ms", "p99_ms": "ms",
                            "shadow_requests": "", "shadow_dropped": "",
                            "shadow_error_rate": "ratio", "shadow_agreement": "ratio",
                            "shadow_p95_ms": "ms"}


def promql(query: str, revision: str, window_s: float, selector: str = "") -> str:
    """Return the PromQL of ``query`` (a template name or the user's PromQL with placeholders)
    for ``revision`` over ``window_s``."""
    template = TEMPLATES.get(query, query)
    extra = f",{selector}" if selector else ""
    return template.format(revision=revision, window=prometheus_duration(window_s),
                           selector=extra)


def prometheus_duration(seconds: float) -> str:
    """Return ``seconds`` as a Prometheus duration (``1500ms``, ``30s``)."""
    millis = max(1, round(seconds * 1000))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


@dataclass
class PrometheusProvider:
    """The Prometheus HTTP API (``/api/v1/query``, ``/api/v1/query_range``) at ``url``."""

    url: str
    timeout_s: float = 5.0
    selector: str = ""
    sample_step_s: float = 10.0
    type: str = "prometheus"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> PrometheusProvider:
        """Return the provider of a ``canary.prometheus`` section; ConfigError without a URL."""
        url = settings.get("url")
        if not url:
            raise ConfigError("canary.prometheus.url is not set; the metrics need a Prometheus "
                              "that scrapes both revisions, e.g.\n  canary:\n    prometheus:\n"
                              "      url: http://127.0.0.1:9090")
        return cls(url=str(url).rstrip("/"), timeout_s=float(settings.get("timeout_s", 5.0)),
                   selector=str(settings.get("selector") or ""),
                   sample_step_s=float(settings.get("sample_step_s", 10.0)))

    def describe(self) -> str:
        """Return how messages name this source."""
        return f"Prometheus at {self.url}"

    def is_online(self) -> bool:
        """Return whether Prometheus answers its readiness endpoint."""
        try:
            answer = requests.get(f"{self.url}/-/ready", timeout=self.timeout_s)
        except requests.RequestException:
            return False
        return answer.status_code == 200

    def window_s(self, window_s: float) -> float:
        """Return the window a query of ``window_s`` is evaluated over: at least two sample
        steps, so that it holds two scrapes of every series (one scrape has no increase)."""
        return max(window_s, 2 * self.sample_step_s)

    def query(self, query: str, revision: str, window_s: float) -> float | None:
        """Return the instant value of the query over :meth:`window_s`, or None (no series, NaN,
        or no answer)."""
        data = self._api("query", {"query": promql(query, revision, self.window_s(window_s),
                                                   self.selector)})
        if data is None:
            return None
        values = [_number(item["value"][1]) for item in data.get("result", [])]
        finite = [value for value in values if value is not None]
        return finite[0] if finite else None

    def samples(self, query: str, revision: str, window_s: float) -> list[float] | None:
        """Return the query evaluated every ``sample_step_s`` over the last ``window_s``, each
        point over a window of twice the step (what ``rate`` needs), or None without data."""
        step = self.sample_step_s
        now = time.time()
        expression = promql(query, revision, 2 * step, self.selector)
        data = self._api("query_range", {"query": expression, "start": f"{now - window_s:.3f}",
                                         "end": f"{now:.3f}", "step": f"{step:g}"})
        if data is None:
            return None
        found = [_number(value) for item in data.get("result", []) for _, value in item["values"]]
        finite = [value for value in found if value is not None]
        return finite or None

    def _api(self, endpoint: str, params: Mapping[str, str]) -> dict[str, Any] | None:
        try:
            answer = requests.get(f"{self.url}/api/v1/{endpoint}", params=dict(params),
                                  timeout=self.timeout_s)
            body = answer.json()
        except (requests.RequestException, ValueError):
            return None
        if answer.status_code == 400 and body.get("errorType") == "bad_data":
            raise ConfigError(f"{self.describe()} refused the query {params['query']!r}: "
                              f"{body.get('error')}; fix the PromQL in canary.metrics")
        if answer.status_code != 200 or body.get("status") != "success":
            return None
        data = body.get("data")
        return data if isinstance(data, dict) else None


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
