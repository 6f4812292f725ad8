"""The probe: the ML check none of the anchors has. It sends the same real rows of the test set
to stable and canary (``POST /predict``, one row per request) and measures how often their
predictions agree, how often the canary fails, and each request's latency.

A canary that answers 200 with wrong predictions passes every HTTP metric; it does not pass this.
Queries: ``agreement`` (share of rows whose predictions match stable's), ``error_rate`` (share of
probe requests of the revision that failed), ``latency_ms`` (median), ``requests`` (rows sent);
``samples("latency_ms")`` returns each request's latency, for the Mann-Whitney judge.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

QUERIES = ("agreement", "error_rate", "latency_ms", "requests")


@dataclass(frozen=True)
class ProbeAnswer:
    """One probe request: its prediction (None when it failed) and latency."""

    prediction: Any
    seconds: float


@dataclass
class ProbeProvider:
    """Probe ``endpoints`` (revision → base URL) with ``rows`` (JSON objects of columns)."""

    endpoints: Mapping[str, str]
    rows: Sequence[Mapping[str, Any]]
    tolerance: float = 1e-6
    timeout_s: float = 5.0
    max_age_s: float = 1.0
    concurrency: int = 4
    type: str = "probe"
    _measured: dict[str, list[ProbeAnswer]] = field(default_factory=dict)
    _at: float = -math.inf

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], *, endpoints: Mapping[str, str],
                      rows: Sequence[Mapping[str, Any]], max_age_s: float = 1.0
                      ) -> ProbeProvider:
        """Return the probe of a ``canary.probe`` section."""
        return cls(endpoints=dict(endpoints), rows=list(rows),
                   tolerance=float(settings.get("tolerance", 1e-6)),
                   timeout_s=float(settings.get("timeout_s", 5.0)), max_age_s=max_age_s,
                   concurrency=int(settings.get("concurrency", 4)))

    def describe(self) -> str:
        """Return how messages name this source."""
        return f"the probe ({len(self.rows)} test rows)"

    def is_online(self) -> bool:
        """Return whether every endpoint says it is ready."""
        for url in self.endpoints.values():
            try:
                if requests.get(f"{url}/v2/health/ready", timeout=self.timeout_s).status_code != 200:
                    return False
            except requests.RequestException:
                return False
        return bool(self.rows)

    def query(self, query: str, revision: str, window_s: float) -> float | None:
        """Return the probe figure ``query`` of ``revision``; None without answers."""
        answers = self._answers(revision)
        if not answers:
            return None
        if query == "requests":
            return float(len(answers))
        if query == "error_rate":
            return sum(answer.prediction is None for answer in answers) / len(answers)
        if query == "latency_ms":
            return _median([answer.seconds * 1000 for answer in answers])
        if query == "agreement":
            return self._agreement(revision)
        return None

    def samples(self, query: str, revision: str, window_s: float) -> list[float] | None:
        """Return each probe request's latency in ms (``latency_ms``); None otherwise."""
        answers = self._answers(revision)
        if query != "latency_ms" or not answers:
            return None
        return [answer.seconds * 1000 for answer in answers if answer.prediction is not None] or None

    def _agreement(self, revision: str) -> float | None:
        others = [name for name in self.endpoints if name != revision]
        if not others:
            return None
        mine, theirs = self._answers(revision), self._answers(others[0])
        pairs = [(a.prediction, b.prediction) for a, b in zip(mine, theirs, strict=False)
                 if b.prediction is not None]
        if not pairs:
            return None
        return sum(self._same(a, b) for a, b in pairs) / len(pairs)

    def _same(self, first: Any, second: Any) -> bool:
        if first is None:
            return False
        if isinstance(first, (int, float)) and isinstance(second, (int, float)) \
                and not isinstance(first, bool):
            return math.isclose(float(first), float(second), rel_tol=self.tolerance,
                                abs_tol=self.tolerance)
        if isinstance(first, list) and isinstance(second, list):
            return len(first) == len(second) and all(self._same(a, b)
                                                     for a, b in zip(first, second, strict=True))
        return bool(first == second)

    def _answers(self, revision: str) -> list[ProbeAnswer]:
        if time.monotonic() - self._at > self.max_age_s:
            self._measured = self._probe()
            self._at = time.monotonic()
        return self._measured.get(revision, [])

    def _probe(self) -> dict[str, list[ProbeAnswer]]:
        found: dict[str, list[ProbeAnswer]] = {}
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            for revision, url in self.endpoints.items():
                found[revision] = list(pool.map(lambda row, u=url: self._send(u, row), self.rows))
        return found

    def _send(self, url: str, row: Mapping[str, Any]) -> ProbeAnswer:
        started = time.perf_counter()
        try:
            answer = requests.post(f"{url}/predict", json={"rows": [row]}, timeout=self.timeout_s)
            seconds = time.perf_counter() - started
            if answer.status_code != 200:
                return ProbeAnswer(None, seconds)
            predictions = answer.json().get("predictions")
            return ProbeAnswer(predictions[0] if isinstance(predictions, list) and predictions
                               else None, seconds)
        except (requests.RequestException, ValueError, AttributeError):
            return ProbeAnswer(None, time.perf_counter() - started)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
