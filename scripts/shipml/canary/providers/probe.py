"""The probe: the ML check none of the anchors has. It sends the same real rows of the test set
to stable and canary (``POST /predict``, one row per request) and measures how often their
predictions agree, how often the canary fails, each request's latency, and, when the test set
has labels, which rows each answered correctly (or how far off each was) for the paired quality
judge (:mod:`shipml.paired`).

A canary that answers 200 with wrong predictions passes every HTTP metric; it does not pass this.
Queries: ``agreement`` (share of rows whose predictions match stable's), ``error_rate`` (share of
probe requests of the revision that failed), ``latency_ms`` (median), ``requests`` (rows sent);
``samples("latency_ms")`` returns each request's latency, for the Mann-Whitney judge;
:meth:`ProbeProvider.outcomes` the rollout's cumulative paired record against the labels.

Each analysis sends the next chunk of the test set (:class:`ProbeRecord`, which the runner keeps
for the whole rollout), so that a rollout pairs every row once.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from shipml.canary.judges import PairedOutcomes, Task

QUERIES = ("agreement", "error_rate", "latency_ms", "requests")
#: the most of a server's error message a log line quotes
MESSAGE_CHARS = 200


@dataclass(frozen=True)
class ProbeAnswer:
    """One probe request: its prediction (None when it failed), latency, HTTP status (0: no
    answer), the server's own error message when it failed, and the width of its probability
    row (None: the model gave no probabilities, a regressor)."""

    prediction: Any
    seconds: float
    status: int = 200
    error: str = ""
    width: int | None = None


@dataclass
class ProbeRecord:
    """The rollout's paired record of one stable and one canary revision: which test rows were
    sent (``chunk`` per analysis, from ``cursor`` on, wrapping) and each row's latest pair of
    predictions where both answered. Kept by the runner across analyses (a probe is built anew
    for every round)."""

    stable: str
    canary: str
    total: int
    chunk: int
    cursor: int = 0
    #: row → (stable's prediction, canary's prediction)
    pairs: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    #: the width of the stable's probability row (None: no probabilities, or not seen yet)
    width: int | None = None

    def take(self) -> list[int]:
        """Return the rows of the next analysis and move the cursor past them."""
        if self.total <= 0:
            return []
        count = min(self.chunk, self.total)
        rows = [(self.cursor + offset) % self.total for offset in range(count)]
        self.cursor = (self.cursor + count) % self.total
        return rows

    def add(self, rows: Sequence[int], stable: Sequence[ProbeAnswer],
            canary: Sequence[ProbeAnswer]) -> None:
        """Record the pairs of ``rows`` where both revisions answered."""
        for row, mine, theirs in zip(rows, canary, stable, strict=True):
            if theirs.width is not None:
                self.width = theirs.width
            if mine.prediction is not None and theirs.prediction is not None:
                self.pairs[row] = (theirs.prediction, mine.prediction)

    @property
    def complete(self) -> bool:
        """Return whether every test row has been paired."""
        return self.total > 0 and len(self.pairs) >= self.total


@dataclass
class ProbeProvider:
    """Probe ``endpoints`` (revision → base URL) with ``rows`` (JSON objects of columns): every
    row each round, or with a ``record`` the record's next chunk of them."""

    endpoints: Mapping[str, str]
    rows: Sequence[Mapping[str, Any]]
    tolerance: float = 1e-6
    timeout_s: float = 5.0
    max_age_s: float = 1.0
    concurrency: int = 4
    #: each row's label (None: the test set has none), in the order of ``rows``
    labels: Sequence[Any] | None = None
    record: ProbeRecord | None = None
    type: str = "probe"
    _measured: dict[str, list[ProbeAnswer]] = field(default_factory=dict)
    _at: float = -math.inf
    _local: threading.local = field(default_factory=threading.local)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], *, endpoints: Mapping[str, str],
                      rows: Sequence[Mapping[str, Any]], max_age_s: float = 1.0,
                      labels: Sequence[Any] | None = None, record: ProbeRecord | None = None
                      ) -> ProbeProvider:
        """Return the probe of a ``canary.probe`` section."""
        return cls(endpoints=dict(endpoints), rows=list(rows),
                   tolerance=float(settings.get("tolerance", 1e-6)),
                   timeout_s=float(settings.get("timeout_s", 5.0)), max_age_s=max_age_s,
                   concurrency=int(settings.get("concurrency", 4)), labels=labels,
                   record=record)

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

    def why_none(self, revision: str) -> str:
        """Return why ``revision`` gave no prediction to compare, in the server's own words
        (``the canary answered 422 to 40 of 40 probe rows: "…"``); empty when it answered."""
        answers = self._answers(revision)
        if not answers:
            return ""
        failed = [answer for answer in answers if answer.prediction is None]
        if not failed or len(failed) < len(answers):
            return ""
        first = failed[0]
        said = f"answered {first.status}" if first.status else "gave no answer"
        same = sum(1 for answer in failed if answer.status == first.status)
        text = f"{revision} {said} to {same} of {len(answers)} probe rows"
        return f"{text}: {first.error}" if first.error else text

    def outcomes(self, canary: str, stable: str, requested_task: str = "auto",
                 where: str = "model.task") -> PairedOutcomes | None:
        """Return the rollout's paired record of ``canary`` against ``stable`` scored against the
        labels: correct or not per row for a classifier, the absolute error for a regressor (the
        task: ``requested_task``, ``model.task``; ``auto`` as the binding infers it, from the
        width of the stable's probability output and the labels). None without labels, record or
        paired rows.

        Raises ConfigError when ``model.task`` contradicts what the model answers.
        """
        record, labels = self.record, self.labels
        self._answers(canary)
        if record is None or labels is None or not record.pairs:
            return None
        task = _task(requested_task, labels, record.width, where)
        rows = sorted(record.pairs)
        canary_scores: list[float] = []
        stable_scores: list[float] = []
        for row in rows:
            theirs, mine = record.pairs[row]
            label = _plain(labels[row])
            if label is None or (isinstance(label, float) and math.isnan(label)):
                continue  # a row without a label says nothing about quality
            if task == "classification":
                canary_scores.append(float(_same_label(mine, label)))
                stable_scores.append(float(_same_label(theirs, label)))
                continue
            errors = _error(mine, label), _error(theirs, label)
            if errors[0] is not None and errors[1] is not None:
                canary_scores.append(errors[0])
                stable_scores.append(errors[1])
        agreed = sum(self._same(mine, theirs) for theirs, mine in record.pairs.values())
        return PairedOutcomes(task, tuple(canary_scores), tuple(stable_scores), record.complete,
                              agreed / len(rows))

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
        from shipml.serve.shadow import same_predictions

        return same_predictions(first, second, self.tolerance)

    def _answers(self, revision: str) -> list[ProbeAnswer]:
        # With a record, one probe per round (the runner builds a probe per round): a second
        # would take the next chunk of the test set within the same analysis.
        fresh = self.record is not None and self._at > -math.inf
        if not fresh and time.monotonic() - self._at > self.max_age_s:
            self._measured = self._probe()
            self._at = time.monotonic()
        return self._measured.get(revision, [])

    def _probe(self) -> dict[str, list[ProbeAnswer]]:
        record = self.record
        indices = record.take() if record is not None else list(range(len(self.rows)))
        rows = [self.rows[index] for index in indices if index < len(self.rows)]
        found: dict[str, list[ProbeAnswer]] = {}
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            for revision, url in self.endpoints.items():
                found[revision] = list(pool.map(lambda row, u=url: self._send(u, row), rows))
        if record is not None and record.stable in found and record.canary in found:
            record.add(indices[:len(rows)], found[record.stable], found[record.canary])
        return found

    def _session(self) -> requests.Session:
        # one keep-alive connection per worker thread: a rollout sends thousands of rows
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _send(self, url: str, row: Mapping[str, Any]) -> ProbeAnswer:
        started = time.perf_counter()
        try:
            answer = self._session().post(f"{url}/predict", json={"rows": [row]},
                                          timeout=self.timeout_s)
            seconds = time.perf_counter() - started
            if answer.status_code != 200:
                return ProbeAnswer(None, seconds, answer.status_code, _message(answer))
            body = answer.json()
            predictions = body.get("predictions")
            probabilities = body.get("probabilities")
            width = (len(probabilities[0]) if isinstance(probabilities, list) and probabilities
                     and isinstance(probabilities[0], list) else None)
            return ProbeAnswer(predictions[0] if isinstance(predictions, list) and predictions
                               else None, seconds, answer.status_code, width=width)
        except requests.RequestException as error:
            return ProbeAnswer(None, time.perf_counter() - started, 0, type(error).__name__)
        except (ValueError, AttributeError, TypeError):
            return ProbeAnswer(None, time.perf_counter() - started, 200,
                               "the answer is not a JSON object with predictions")


def _message(answer: requests.Response) -> str:
    """Return the server's own error message of a failed answer (its JSON ``error``), quoted."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    text = body.get("error") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text:
        text = answer.text.strip() or answer.reason or ""
    text = " ".join(text.split())
    if len(text) > MESSAGE_CHARS:
        text = text[:MESSAGE_CHARS - 1] + "…"
    return json.dumps(text, ensure_ascii=False) if text else ""


def _task(requested: str, labels: Sequence[Any], width: int | None, where: str) -> Task:
    import pandas as pd

    from shipml.binding import resolve_task

    resolved = resolve_task(requested, pd.Series(list(labels)), width, lambda _key: where)
    return "regression" if resolved == "regression" else "classification"


def _plain(value: Any) -> Any:
    # a one-value list (a regressor's [[y]] output) is its value
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def _same_label(prediction: Any, label: Any) -> bool:
    """Return whether a prediction names the label: numbers as numbers (1 and 1.0 and "1"),
    anything else as text."""
    prediction, label = _plain(prediction), _plain(label)
    first, second = _number(prediction), _number(label)
    if first is not None and second is not None:
        return first == second
    return str(prediction) == str(label)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _error(prediction: Any, label: Any) -> float | None:
    """Return the absolute error of a regressor's prediction; None unless both are numbers."""
    first, second = _number(_plain(prediction)), _number(_plain(label))
    if first is None or second is None:
        return None
    return abs(first - second)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
