"""The application layer of one worker: the model once loaded, readiness, metrics, tokens, the
prediction slots (``max_concurrency``), the batcher and the prediction log.

Nothing here knows HTTP: the route handlers (:mod:`shipml.serve.routes`) call these methods, the
protocol layer (:mod:`shipml.serve._http`) reads ``draining`` and the metrics, the worker
(:mod:`shipml.serve.workers`) loads, drains and closes. [KServe: ``model_server.py`` and
``protocol/dataplane.py``]
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from typing import Any

from shipml.errors import ConfigError, first_line
from shipml.serve import _log
from shipml.serve._metrics import ServerMetrics
from shipml.serve._protocol import RequestError
from shipml.serve.settings import ServeSettings

NOT_READY = "the model is still loading; retry when GET /v2/health/ready answers 200"
BUSY = ("the server is busy: {limit} requests are in progress (serve.max_concurrency); "
        "retry shortly")
MODEL_FAILED = "the model failed on this request; quote the request id when you report it"
LOG_NOT_WRITABLE = "serve.log_predictions.path: cannot write {path}: {reason}"


class App:
    """One worker's state: the model once loaded, readiness and drain, metrics, tokens, limits."""

    def __init__(self, settings: ServeSettings, worker: int = 0) -> None:
        self.settings = settings
        self.worker = worker
        self.metrics = ServerMetrics(settings.name, settings.version or "", settings.revision)
        self.model: Any = None
        self.ready = threading.Event()
        self.draining = False
        self._slots = threading.BoundedSemaphore(settings.max_concurrency)
        self._token_digests = [hashlib.sha256(token.encode()).digest() for token in settings.tokens]
        self.prediction_log: Any = None
        self.batcher: Any = None
        self.shadow: Any = None

    # -- lifecycle ---------------------------------------------------------------------------

    def load(self) -> float:
        """Load the model, run the warm-up, start the batcher and the prediction log; mark ready.
        Return the warm-up seconds. Raises ConfigError when the model cannot be served."""
        from shipml.serve.model import ServedModel

        model = ServedModel(self.settings)
        model.observe_inference(self.metrics.observe_inference)
        warmup = model.warm_up()
        if self.settings.batching:
            from shipml.serve._batching import Batcher

            self.batcher = Batcher(model.session.run, self.settings.max_batch_size,
                                   self.settings.max_delay_s, self.metrics.observe_inference)
            model.use_runner(self.batcher.run)
        log_settings = self.settings.prediction_log
        if log_settings.path is not None:
            from shipml.serve._predlog import PredictionLog

            path = log_settings.path
            if self.settings.workers > 1:
                path = path.with_name(f"{path.stem}-w{self.worker}{path.suffix}")
            try:
                self.prediction_log = PredictionLog(log_settings, path,
                                                    on_written=self.metrics.logged.inc,
                                                    on_dropped=self.metrics.log_dropped.inc)
            except OSError as exc:
                raise ConfigError(LOG_NOT_WRITABLE.format(
                    path=path, reason=exc.strerror or first_line(exc))) from None
        if self.settings.shadow_file is not None:
            from shipml.serve.shadow import ShadowMirror

            self.shadow = ShadowMirror(self.settings.shadow_file, self.metrics,
                                       token=next(iter(self.settings.tokens), None))
            self.shadow.start()
        self.model = model
        self.ready.set()
        self.metrics.ready.set(1)
        return warmup

    def begin_drain(self) -> None:
        """Stop being ready: /v2/health/ready answers 503 and every answer closes its
        connection from now on."""
        self.draining = True
        self.metrics.ready.set(0)

    def close(self, deadline: float) -> None:
        """Stop the batcher and flush the prediction log, waiting for its writer until the
        ``time.monotonic()`` ``deadline`` (at least 0.1 s)."""
        if self.shadow is not None:
            self.shadow.close()
        if self.batcher is not None:
            self.batcher.close()
        if self.prediction_log is not None:
            self.prediction_log.close(timeout=max(0.1, deadline - time.monotonic()))

    # -- what the routes use -----------------------------------------------------------------

    def is_ready(self) -> bool:
        """Return True once the model is loaded and until a drain begins."""
        return self.ready.is_set() and not self.draining

    def authorized(self, header: str | None) -> bool:
        """Return True when ``header`` is ``Bearer <an accepted token>``, compared in constant
        time against every token (no early exit that would tell which one nearly matched)."""
        if not self._token_digests:
            return True
        scheme, _, token = (header or "").partition(" ")
        offered = hashlib.sha256(token.strip().encode("utf-8", "replace")).digest()
        matched = False
        for digest in self._token_digests:
            matched |= hmac.compare_digest(offered, digest)
        return matched and scheme.lower() == "bearer"

    def loaded(self) -> Any:
        """Return the served model. Raises RequestError 503 while it is still loading."""
        if not self.ready.is_set():
            raise RequestError(503, NOT_READY, headers={"Retry-After": "1"})
        return self.model

    def run_model(self, work: Callable[[], Any], request_id: str, endpoint: str) -> Any:
        """Return ``work()`` run in one of ``max_concurrency`` prediction slots. Raises
        RequestError 503 when every slot is taken (nothing waits), 500 when the model fails
        (logged once with ``request_id``)."""
        from shipml.serve.model import ModelRunError

        if not self._slots.acquire(blocking=False):
            self.metrics.reject("concurrency")
            raise RequestError(503, BUSY.format(limit=self.settings.max_concurrency),
                               headers={"Retry-After": "1"})
        try:
            return work()
        except ModelRunError as exc:
            _log.emit("model_error", "error", request_id=request_id, endpoint=endpoint,
                      error=str(exc))
            raise RequestError(500, MODEL_FAILED) from None
        finally:
            self._slots.release()

    def mirror(self, document: Any, predictions: Any, own_seconds: float) -> None:
        """Offer an answered ``/predict`` request to the shadow mirror, if one is on (never
        blocks, never raises for the mirror's sake)."""
        if self.shadow is not None:
            self.shadow.offer(document, predictions, own_seconds)

    def log_prediction(self, request_id: str, endpoint: str,
                       record: Callable[[], dict[str, Any]]) -> None:
        """Offer ``record()`` (built only when sampled) to the prediction log, if one is on."""
        log = self.prediction_log
        if log is None or not log.sampled():
            return
        log.offer({"model": self.settings.name, "version": self.settings.version,
                   "revision": self.settings.revision, "request_id": request_id,
                   "endpoint": endpoint, **record()})
