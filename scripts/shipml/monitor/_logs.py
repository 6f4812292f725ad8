"""Production rows from the server's prediction log (JSON Lines), or from a plain table.

A log record (see :mod:`shipml.serve._predlog`) holds one request: ``inputs`` as named columns
(``{"mean_radius": [14.2, 9.8]}``; ``/v2`` records name the tensor instead), ``outputs``
(``predictions`` and ``probabilities``, or ``/v2`` tensors), ``version``, ``request_id`` and
``ts``. Lines are read one at a time and gathered in column chunks, so a million records take
what their values take, not a million dictionaries. A line that cannot be read is skipped and
counted; too many of them make the input unusable.
"""

from __future__ import annotations

import datetime as _dt
import glob
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shipml.errors import ConfigError

_loads: Callable[[str], Any]
try:  # parsing the log is most of a monitor run: orjson reads a line about four times faster
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson comes with the validate extra
    _loads = json.loads

NO_LOGS = (
    "{key}: no prediction log files match {pattern}; point it at the log `shipml serve` writes "
    "(serve.log_predictions.path), a folder of them or a glob, e.g.\n"
    "  monitor:\n    logs:\n      path: logs/predictions.jsonl\n"
    "or give a table of production rows instead (monitor.production)"
)
NO_INPUT = (
    "monitor: no production data; set the prediction log or a table of production rows, e.g.\n"
    "  monitor:\n    logs:\n      path: logs/predictions.jsonl\n      since: 24h\n"
    "(or monitor.production: production.parquet; flags --logs / --production)"
)
BOTH_INPUTS = ("{logs} and {production} are both set: monitor reads the prediction log or a table "
               "of production rows, not both; unset one")
EMPTY_WINDOW = (
    "{key}: none of the {records} records in {files} lies in the window {window}{seen}; widen "
    "monitor.logs.since / until or check the server's clock"
)
NO_RECORDS = "{key}: {files} hold no prediction records ({corrupt} corrupt lines)"
TOO_CORRUPT = (
    "{key}: {corrupt} of {lines} lines ({rate:.1%}) are corrupt, more than "
    "monitor.logs.max_corrupt_rate allows ({limit:.1%}); first: {examples}"
)
BAD_TIME = ("{key}: {value!r} is neither an ISO-8601 time (2026-11-24T08:00:00Z) nor a duration "
            "back from now (30m, 24h, 7d)")
#: rows gathered in Python lists before they become a DataFrame chunk
CHUNK_ROWS = 65536
#: corrupt lines quoted in messages
EXAMPLES = 3
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Window:
    """The time window records must lie in (either end open when None)."""

    since: _dt.datetime | None = None
    until: _dt.datetime | None = None

    def text(self) -> str:
        """Return the window as ``[since, until]`` in ISO-8601, ``…`` for an open end."""
        return (f"[{self.since.isoformat() if self.since else '…'}, "
                f"{self.until.isoformat() if self.until else '…'}]")

    @property
    def is_open(self) -> bool:
        """Return True when neither end is set."""
        return self.since is None and self.until is None


@dataclass(frozen=True)
class Production:
    """Production rows and what was logged or computed for them."""

    frame: pd.DataFrame
    source: str
    #: the logged predictions and class probabilities (None: not logged, to be computed)
    predictions: NDArray[Any] | None = None
    probabilities: NDArray[Any] | None = None
    #: one request id per row (rows of one request share it) and the row's place in it
    request_ids: NDArray[Any] | None = None
    request_rows: NDArray[Any] | None = None
    files: tuple[str, ...] = ()
    lines: int = 0
    records: int = 0
    corrupt: int = 0
    corrupt_examples: tuple[str, ...] = ()
    outside_window: int = 0
    other_versions: int = 0
    versions: dict[str, int] = field(default_factory=dict)
    first_ts: str = ""
    last_ts: str = ""


def parse_time(value: str, key: str, now: _dt.datetime) -> _dt.datetime:
    """Return ``value`` (ISO-8601, or a duration back from ``now``) as an aware UTC time.

    Raises ConfigError naming ``key`` for anything else."""
    match = _DURATION.match(value)
    if match:
        return now - _dt.timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    try:
        moment = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(BAD_TIME.format(key=key, value=value)) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.astimezone(_dt.timezone.utc)


def find_log_files(path: Path, key: str) -> list[Path]:
    """Return the log files ``path`` names, oldest first: a file with its rotations and worker
    files, every file of a folder, or what a glob matches. Raises ConfigError when none is found."""
    text = str(path)
    if _GLOB.search(text):
        found = [Path(p) for p in glob.glob(text) if Path(p).is_file()]
    elif path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    else:
        # the file, PATH.1 … PATH.N (rotated) and PATH-wN (one per server worker), and theirs
        siblings = glob.glob(glob.escape(text) + ".*") + glob.glob(glob.escape(text) + "-w*")
        found = [p for p in (path, *map(Path, siblings)) if p.is_file()]
    if not found:
        raise ConfigError(NO_LOGS.format(key=key, pattern=path))
    # Rotated files hold older records: the newest number first, then the live file.
    return sorted(set(found), key=lambda p: (p.stat().st_mtime, -_rotation(p)))


def _rotation(path: Path) -> int:
    suffix = path.name.rsplit(".", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0


def read_logs(files: Sequence[Path], key: str, window: Window, *, version: str | None,
              max_corrupt_rate: float) -> Production:
    """Read the prediction records of ``files`` within ``window`` (and of ``version``).

    Returns the rows with their logged outputs. Raises ConfigError when no record is left, or
    when the share of corrupt lines is over ``max_corrupt_rate``.
    """
    reader = _Reader(window, version)
    for path in files:
        if window.since is not None and _modified(path) < window.since:
            continue  # written before the window opened: every record in it is older
        reader.read(path)
    names = ", ".join(str(p) for p in files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    if reader.lines and reader.corrupt / reader.lines > max_corrupt_rate:
        raise ConfigError(TOO_CORRUPT.format(
            key=key, corrupt=reader.corrupt, lines=reader.lines,
            rate=reader.corrupt / reader.lines, limit=max_corrupt_rate,
            examples="; ".join(reader.examples)))
    if not reader.rows:
        if reader.records and (reader.outside_window or reader.other_versions):
            seen = (f" (records span {reader.first_seen} to {reader.last_seen})"
                    if reader.first_seen else "")
            if reader.other_versions and not reader.outside_window:
                raise ConfigError(f"{key}: none of the {reader.records} records in {names} is of "
                                  f"model version {version!r} (monitor.logs.version); versions "
                                  f"found: {', '.join(sorted(reader.all_versions))}")
            raise ConfigError(EMPTY_WINDOW.format(key=key, records=reader.records, files=names,
                                                  window=window.text(), seen=seen))
        if reader.records == 0 and reader.lines == 0 and not window.is_open:
            raise ConfigError(EMPTY_WINDOW.format(key=key, records=0, files=names,
                                                  window=window.text(), seen=""))
        raise ConfigError(NO_RECORDS.format(key=key, files=names, corrupt=reader.corrupt))
    return reader.result(", ".join(str(p) for p in files), tuple(str(p) for p in files))


def _modified(path: Path) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(path.stat().st_mtime, tz=_dt.timezone.utc)


class _Reader:
    """Gathers records line by line into column chunks."""

    def __init__(self, window: Window, version: str | None) -> None:
        self.window = window
        self.version = version
        self.lines = self.records = self.rows = 0
        self.corrupt = self.outside_window = self.other_versions = 0
        self.examples: list[str] = []
        self.versions: dict[str, int] = {}
        self.all_versions: set[str] = set()
        self.first_seen = self.last_seen = ""
        self.first_ts = self.last_ts = ""
        self._chunks: list[pd.DataFrame] = []
        self._columns: dict[str, list[Any]] = {}
        self._chunk_rows = 0
        self._predictions: list[Any] = []
        self._probabilities: list[Any] = []
        self._has_predictions = True
        self._has_probabilities = True
        self._request_ids: list[str] = []
        self._request_rows: list[int] = []

    def read(self, path: Path) -> None:
        with path.open("r", encoding="utf-8", errors="replace") as stream:
            for number, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                self.lines += 1
                problem = self._record(line)
                if problem:
                    self.corrupt += 1
                    if len(self.examples) < EXAMPLES:
                        self.examples.append(f"{path}:{number}: {problem}")

    def _record(self, line: str) -> str:
        try:
            record = _loads(line)
        except json.JSONDecodeError as exc:
            return f"not JSON ({exc.msg})"
        except ValueError:  # orjson's JSONDecodeError is a ValueError
            return "not JSON"
        if not isinstance(record, dict):
            return "not a JSON object"
        inputs = record.get("inputs")
        if type(inputs) is not dict or not inputs:
            return "no `inputs` object"
        count = _flat_length(inputs)
        columns = inputs if count > 0 else _columns(inputs)
        if columns is None:
            return "`inputs` is not named columns of equal length"
        if count <= 0:
            count = len(next(iter(columns.values())))
        raw_outputs = record.get("outputs")
        outputs: dict[str, Any] = raw_outputs if isinstance(raw_outputs, dict) else {}
        predictions, probabilities = _outputs(outputs, count)
        stamp = str(record.get("ts") or "")
        self.records += 1
        if stamp:
            self.first_seen = min(self.first_seen, stamp) if self.first_seen else stamp
            self.last_seen = max(self.last_seen, stamp)
        if not self.window.is_open:
            try:
                moment = _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            except ValueError:
                self.records -= 1
                return f"timestamp {stamp!r} is not ISO-8601"
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=_dt.timezone.utc)
            if (self.window.since is not None and moment < self.window.since) or \
                    (self.window.until is not None and moment > self.window.until):
                self.outside_window += 1
                return ""
        version = str(record.get("version") or "")
        self.all_versions.add(version)
        if self.version is not None and version != self.version:
            self.other_versions += 1
            return ""
        self.versions[version] = self.versions.get(version, 0) + 1
        if stamp:
            self.first_ts = min(self.first_ts, stamp) if self.first_ts else stamp
            self.last_ts = max(self.last_ts, stamp)
        self._add(columns, count, predictions, probabilities, str(record.get("request_id") or ""))
        return ""

    def _add(self, columns: dict[str, list[Any]], count: int, predictions: list[Any] | None,
             probabilities: list[Any] | None, request_id: str) -> None:
        kept_columns = self._columns
        if columns.keys() == kept_columns.keys():
            # the usual record: the same columns as the last one, often one row
            if count == 1:
                for name, values in columns.items():
                    kept_columns[name].append(values[0])
            else:
                for name, values in columns.items():
                    kept_columns[name].extend(values)
        else:
            for name, values in columns.items():
                kept = kept_columns.get(name)
                if kept is None:
                    kept = kept_columns[name] = [None] * self._chunk_rows
                kept.extend(values)
            for name, kept in kept_columns.items():
                if name not in columns:
                    kept.extend([None] * count)
        if predictions is None:
            self._has_predictions = False
        elif self._has_predictions:
            self._predictions.extend(predictions)
        if probabilities is None:
            self._has_probabilities = False
        elif self._has_probabilities:
            self._probabilities.extend(probabilities)
        if count == 1:
            self._request_ids.append(request_id)
            self._request_rows.append(0)
        else:
            self._request_ids.extend([request_id] * count)
            self._request_rows.extend(range(count))
        self._chunk_rows += count
        self.rows += count
        if self._chunk_rows >= CHUNK_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._chunk_rows:
            self._chunks.append(pd.DataFrame(self._columns))
        self._columns = {}
        self._chunk_rows = 0

    def result(self, source: str, files: tuple[str, ...]) -> Production:
        self._flush()
        frame = pd.concat(self._chunks, ignore_index=True, sort=False, copy=False) \
            if len(self._chunks) > 1 else self._chunks[0]
        self._chunks = []
        predictions = np.asarray(self._predictions) if self._has_predictions else None
        probabilities = None
        if self._has_probabilities:
            try:
                probabilities = np.asarray(self._probabilities, dtype=np.float64)
            except ValueError:  # rows with different numbers of classes: not usable
                probabilities = None
            if probabilities is not None and probabilities.ndim != 2:
                probabilities = None
        return Production(
            frame=frame, source=source, predictions=predictions, probabilities=probabilities,
            request_ids=np.asarray(self._request_ids, dtype=object),
            request_rows=np.asarray(self._request_rows, dtype=np.int64),
            files=files, lines=self.lines, records=self.records, corrupt=self.corrupt,
            corrupt_examples=tuple(self.examples), outside_window=self.outside_window,
            other_versions=self.other_versions, versions=dict(self.versions),
            first_ts=self.first_ts, last_ts=self.last_ts)


def _flat_length(inputs: dict[str, Any]) -> int:
    """Return the common length of flat list columns (the server's /predict records), or -1
    when the record needs the careful path of :func:`_columns`."""
    length = -1
    for values in inputs.values():
        if type(values) is not list or (values and type(values[0]) is list):
            return -1
        if length < 0:
            length = len(values)
        elif len(values) != length:
            return -1
    return length


def _columns(inputs: dict[str, Any]) -> dict[str, list[Any]] | None:
    """Return the record's inputs as flat columns of one length, or None when they are not."""
    columns: dict[str, list[Any]] = {}
    length = -1
    for name, values in inputs.items():
        if not isinstance(values, list):
            return None
        if values and isinstance(values[0], list):
            if all(isinstance(v, list) and len(v) == 1 for v in values):
                values = [v[0] for v in values]  # a /v2 column tensor [rows, 1]
            else:
                return None  # a /v2 matrix tensor: not named columns
        if length < 0:
            length = len(values)
        elif len(values) != length:
            return None
        columns[str(name)] = values
    return columns if length > 0 else None


def _outputs(outputs: dict[str, Any], count: int) -> tuple[list[Any] | None, list[Any] | None]:
    predictions = outputs.get("predictions")
    if predictions is None:
        predictions = outputs.get("label") or outputs.get("output_label") or outputs.get("variable")
    if isinstance(predictions, list) and predictions and isinstance(predictions[0], list):
        predictions = [row[0] if isinstance(row, list) and row else row for row in predictions]
    if not isinstance(predictions, list) or len(predictions) != count:
        predictions = None
    probabilities = outputs.get("probabilities")
    if not isinstance(probabilities, list) or len(probabilities) != count:
        probabilities = None
    return predictions, probabilities

