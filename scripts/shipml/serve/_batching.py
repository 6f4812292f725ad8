"""Dynamic batching, as Triton does it: requests that arrive together are joined into one
onnxruntime call and each answer is routed back to its request by its rows' offsets.

One batcher thread per model takes the first waiting request, then gathers more until
``max_batch_size`` rows or ``max_delay_s`` after the first arrived. Requests whose inputs cannot be
stacked (other trailing shapes or types) run in their own call. When a joined call raises, each
request is run alone, so one bad request fails only itself.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

Feeds = dict[str, NDArray[Any]]
Session = Callable[[list[str] | None, Feeds], list[Any]]


@dataclass
class _Pending:
    feeds: Feeds
    rows: int
    done: threading.Event = field(default_factory=threading.Event)
    outputs: list[Any] | None = None
    error: BaseException | None = None

    @property
    def signature(self) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
        return tuple((name, array.dtype.str, array.shape[1:]) for name, array in self.feeds.items())


class Batcher:
    """Joins concurrent ``run`` calls into one call of ``session_run``."""

    def __init__(self, session_run: Session, max_batch_size: int, max_delay_s: float,
                 observe: Callable[[float, int], None] | None = None) -> None:
        self._run = session_run
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self._observe = observe or (lambda seconds, rows: None)
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="shipml-batcher", daemon=True)
        self._thread.start()

    def run(self, names: list[str] | None, feeds: Feeds) -> list[Any]:
        """Return the model's outputs for ``feeds`` (all outputs: ``names`` must be None), computed
        in a call shared with other requests. Raises what the model raised on these rows."""
        rows = next(iter(feeds.values())).shape[0]
        if rows >= self.max_batch_size:
            return self._timed([feeds], rows)
        pending = _Pending(feeds=feeds, rows=rows)
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.outputs is not None
        return pending.outputs

    def close(self) -> None:
        """Stop the batcher thread once the requests already queued are answered."""
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        carried: _Pending | None = None
        while True:
            first = carried or self._queue.get()
            carried = None
            if first is None:
                return
            batch, rows = [first], first.rows
            deadline = time.perf_counter() + self.max_delay_s
            while rows < self.max_batch_size:
                remaining = deadline - time.perf_counter()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 \
                        else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._finish(batch)
                    return
                if item.signature != first.signature or rows + item.rows > self.max_batch_size:
                    carried = item
                    break
                batch.append(item)
                rows += item.rows
            self._finish(batch)

    def _finish(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:
            self._alone(batch[0])
            return
        names = list(batch[0].feeds)
        joined = {name: np.concatenate([item.feeds[name] for item in batch]) for name in names}
        try:
            outputs = self._timed([joined], sum(item.rows for item in batch))
        except Exception:
            for item in batch:  # one bad request must not fail the others
                self._alone(item)
            return
        start = 0
        for item in batch:
            stop = start + item.rows
            item.outputs = [value[start:stop] for value in outputs]
            start = stop
            item.done.set()

    def _alone(self, item: _Pending) -> None:
        try:
            item.outputs = self._timed([item.feeds], item.rows)
        except Exception as exc:
            item.error = exc
        item.done.set()

    def _timed(self, feeds: list[Feeds], rows: int) -> list[Any]:
        started = time.perf_counter()
        outputs = self._run(None, feeds[0])
        self._observe(time.perf_counter() - started, rows)
        return outputs
