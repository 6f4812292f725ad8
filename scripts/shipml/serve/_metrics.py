"""Prometheus metrics for the canary: every series carries ``model``, ``version`` and
``revision``, so one PromQL query compares stable with canary, e.g.

    sum by (revision) (increase(shipml_serve_requests_total{code=~"5.."}[1m]))
      / sum by (revision) (increase(shipml_serve_requests_total[1m]))

The request counter of every (endpoint, code) in :data:`COUNTED_AT_START` exists at 0 from the
first scrape: a series born at its first error has no earlier sample, so ``increase`` over it
reads nothing, and the first windows after a start would be blind to the errors.

The shadow series (``shipml_serve_shadow_*``) are what this server measured while it mirrored a
share of its ``/predict`` requests to another revision (:mod:`shipml.serve.shadow`); they carry
``target``, the revision mirrored to, and are created at 0 when the server takes that target,
before it mirrors the first request. The latency histogram's ``answered_by`` is the revision
whose answer was timed (the target's round trip, or this server's own time for the same request).

With several worker processes the values are shared through prometheus_client's multiprocess
files (``PROMETHEUS_MULTIPROC_DIR``, set by the server before any worker starts).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

#: request and inference latency buckets (seconds): resolve 0.5 ms to 1 s, then 2.5 s and 5 s
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075,
                   0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)
LABELS = ("model", "version", "revision")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"
#: the model endpoints the canary's analysis queries, and the answers they give: each pair's
#: request counter is created at 0 when the server starts
MODEL_ENDPOINTS = ("predict", "infer")
MODEL_CODES = (200, 400, 401, 404, 405, 408, 413, 414, 415, 422, 431, 500, 503)
COUNTED_AT_START = tuple((endpoint, code) for endpoint in MODEL_ENDPOINTS for code in MODEL_CODES)


@dataclass(frozen=True)
class ShadowSeries:
    """The shadow series of one target, labels bound: counters and the two latency sides."""

    requests: Any
    errors: Any
    dropped: Any
    compared: Any
    agreed: Any
    target_seconds: Any
    own_seconds: Any


class ServerMetrics:
    """The server's counters, histograms and gauges, with the model's labels bound once."""

    def __init__(self, model: str, version: str, revision: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROCESS))
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"model": model, "version": version, "revision": revision}
        self._labels = labels
        self.requests = Counter("shipml_serve_requests", "HTTP requests answered, by endpoint and "
                                "status code", [*LABELS, "endpoint", "code"], registry=self.registry)
        self.request_seconds = Histogram(
            "shipml_serve_request_duration_seconds", "time from the request line read to the "
            "answer written, by endpoint", [*LABELS, "endpoint"], buckets=LATENCY_BUCKETS,
            registry=self.registry)
        self.inference_seconds = Histogram(
            "shipml_serve_inference_duration_seconds", "time inside onnxruntime per call (a joined "
            "batch is one call)", LABELS, buckets=LATENCY_BUCKETS,
            registry=self.registry).labels(**labels)
        self.batch_rows = Histogram(
            "shipml_serve_batch_rows", "rows per onnxruntime call", LABELS, buckets=BATCH_BUCKETS,
            registry=self.registry).labels(**labels)
        self.in_flight = Gauge("shipml_serve_in_flight_requests", "requests being processed",
                               LABELS, registry=self.registry,
                               multiprocess_mode="livesum").labels(**labels)
        self.rejected = Counter("shipml_serve_rejected", "requests refused by a limit, by reason",
                                [*LABELS, "reason"], registry=self.registry)
        self.logged = Counter("shipml_serve_prediction_log_records", "prediction-log records "
                              "written", LABELS, registry=self.registry).labels(**labels)
        self.log_dropped = Counter("shipml_serve_prediction_log_dropped", "prediction-log records "
                                   "dropped because the writer's queue was full or the write "
                                   "failed", LABELS, registry=self.registry).labels(**labels)
        self.ready = Gauge("shipml_serve_ready", "1 once the model is loaded and warmed up",
                           LABELS, registry=self.registry,
                           multiprocess_mode="livemin").labels(**labels)
        self.info = Gauge("shipml_serve_model_info", "the served model; always 1", LABELS,
                          registry=self.registry, multiprocess_mode="max").labels(**labels)
        self.info.set(1)
        self._request_children: dict[tuple[str, int], Any] = {}
        self._duration_children: dict[str, Any] = {}
        for endpoint, code in COUNTED_AT_START:
            self._request_children[(endpoint, code)] = self.requests.labels(
                **labels, endpoint=endpoint, code=str(code))
        for endpoint in MODEL_ENDPOINTS:
            self._duration_children[endpoint] = self.request_seconds.labels(
                **labels, endpoint=endpoint)
        shadow_labels = [*LABELS, "target"]
        self.shadow_requests = Counter(
            "shipml_serve_shadow_requests", "requests mirrored to the shadow target (answered or "
            "not)", shadow_labels, registry=self.registry)
        self.shadow_errors = Counter(
            "shipml_serve_shadow_errors", "mirrored requests the shadow target did not answer "
            "with 2xx (an error status, a timeout, no connection)", shadow_labels,
            registry=self.registry)
        self.shadow_dropped = Counter(
            "shipml_serve_shadow_dropped", "sampled requests not mirrored because the shadow "
            "queue was full", shadow_labels, registry=self.registry)
        self.shadow_compared = Counter(
            "shipml_serve_shadow_compared", "mirrored requests whose predictions were compared "
            "with this server's", shadow_labels, registry=self.registry)
        self.shadow_agreed = Counter(
            "shipml_serve_shadow_agreed", "compared mirrored requests whose predictions matched "
            "this server's", shadow_labels, registry=self.registry)
        self.shadow_seconds = Histogram(
            "shipml_serve_shadow_duration_seconds", "latency of the same mirrored requests: the "
            "target's round trip and this server's own time, by answered_by",
            [*shadow_labels, "answered_by"], buckets=LATENCY_BUCKETS, registry=self.registry)
        if not self.multiprocess:
            from prometheus_client import ProcessCollector

            ProcessCollector(registry=self.registry)

    def observe_request(self, endpoint: str, code: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        key = (endpoint, code)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self.requests.labels(**self._labels, endpoint=endpoint, code=str(code))
            self._request_children[key] = counter
        counter.inc()
        histogram = self._duration_children.get(endpoint)
        if histogram is None:
            histogram = self.request_seconds.labels(**self._labels, endpoint=endpoint)
            self._duration_children[endpoint] = histogram
        histogram.observe(seconds)

    def observe_inference(self, seconds: float, rows: int) -> None:
        """Record one onnxruntime call."""
        self.inference_seconds.observe(seconds)
        self.batch_rows.observe(rows)

    def shadow(self, target: str) -> ShadowSeries:
        """Return the shadow series of ``target`` (a revision), created at 0 now."""
        labels = {**self._labels, "target": target}
        return ShadowSeries(
            requests=self.shadow_requests.labels(**labels),
            errors=self.shadow_errors.labels(**labels),
            dropped=self.shadow_dropped.labels(**labels),
            compared=self.shadow_compared.labels(**labels),
            agreed=self.shadow_agreed.labels(**labels),
            target_seconds=self.shadow_seconds.labels(**labels, answered_by=target),
            own_seconds=self.shadow_seconds.labels(**labels,
                                                   answered_by=self._labels["revision"]))

    def reject(self, reason: str) -> None:
        """Count a request refused by a limit (``concurrency``, ``connections``, ``draining``)."""
        self.rejected.labels(**self._labels, reason=reason).inc()

    def exposition(self) -> bytes:
        """Return every metric in Prometheus text format (all workers' with multiprocess files)."""
        from prometheus_client import CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        return bytes(generate_latest(self.registry))
