"""Production rows from the server's prediction log (JSON Lines), or from a plain table.

A log record (see :mod:`shipml.serve._predlog`) holds one request: ``inputs`` as named columns
(``{"mean_radius": [14.2, 9.8]}``; ``/v2`` records name the tensor instead), ``outputs``
(``predictions`` and ``probabilities``, or ``/v2`` tensors), ``version``, ``request_id`` and
``ts``. Lines are read one at a time and gathered in column chunks, so a million records take
what their values take, not a million dictionaries. A line that cannot be read is skipped and
counted; too many of them make the input unusable. A line longer than ``monitor.logs.max_line_mb``
is such a line: it is read past in pieces of that size, never held whole.

A float JSON has no number for is written as the string ``"NaN"``, ``"Infinity"`` or
``"-Infinity"`` (proto3's JSON mapping); logs written before that hold bare ``NaN`` (Python's
json), which are read too. In a column the reference has as numbers those strings are the floats;
anything else there that is not a number (text, an object, a list) means these rows are not the
model's inputs as the reference has them: a bad input, named by file, line and column.
"""

from __future__ import annotations

import datetime as _dt
import glob
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shipml.errors import ConfigError

_loads: Callable[[bytes], Any]
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
TOO_LONG = "longer than monitor.logs.max_line_mb ({limit:g} MiB), skipped unread"
WRONG_TYPE = (
    "{key}: {place}: {column} holds {kind} {value} where the reference ({reference}) has "
    "{expected}: {valid}. These rows are not the model's inputs as the reference has them; point "
    "monitor at the right logs or table (monitor.logs.path, monitor.production) or reference "
    "(monitor.reference, model.train)"
)
#: what each kind of column takes, as WRONG_TYPE says it
VALID = {
    "number": 'a number, null, or the string "NaN", "Infinity" or "-Infinity"',
    "text": "text, a number, a boolean or null, never an object or a list",
}
BAD_TIME = ("{key}: {value!r} is neither an ISO-8601 time (2026-11-24T08:00:00Z) nor a duration "
            "back from now (30m, 24h, 7d)")
#: rows gathered in Python lists before they become a DataFrame chunk
CHUNK_ROWS = 65536
#: corrupt lines quoted in messages
EXAMPLES = 3
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_GLOB = re.compile(r"[*?\[]")
#: the strings the prediction log writes for non-finite floats (proto3's JSON mapping)
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
#: what a column holds, as the reference has it
Kind = Literal["number", "text"]
_CONTAINERS = (dict, list, tuple, np.ndarray)


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
              max_corrupt_rate: float, max_line_bytes: int = 64 * 2**20,
              expected: Mapping[str, Kind] | None = None, reference: str = "") -> Production:
    """Read the prediction records of ``files`` within ``window`` (and of ``version``).

    A line longer than ``max_line_bytes`` is corrupt. ``expected`` gives the kind of each column
    the reference (``reference``, its name) has: a number column gets its non-finite strings as
    floats. Returns the rows with their logged outputs. Raises ConfigError when no record is
    left, when the share of corrupt lines is over ``max_corrupt_rate``, or when a column holds a
    value its kind does not take (naming the file and line).
    """
    reader = _Reader(window, version, max_line_bytes, key, expected or {}, reference)
    for path in files:
        if window.since is not None and _modified(path) < window.since:
            continue  # written before the window opened: every record in it is older
        reader.read(path)
    reader.flush()
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


def conform(values: pd.Series, kind: Kind, *, numbers_as_text: bool = False
            ) -> tuple[pd.Series, int]:
    """Return ``values`` as a column of ``kind`` takes them (a number column as floats, the
    non-finite strings and booleans included), and the position of the first value it does not
    take (-1 when there is none). ``numbers_as_text``: text that reads as a number is one (a
    CSV column with one cell of text is read as text throughout)."""
    dtype_kind = values.dtype.kind
    if kind == "text":
        if dtype_kind != "O":
            return values, -1
        for position, value in enumerate(values.to_numpy()):
            if isinstance(value, _CONTAINERS):
                return values, position
        return values, -1
    if dtype_kind in "iuf":
        return values, -1
    if dtype_kind == "b":
        return values.astype(np.float64), -1
    numbers = np.empty(len(values), dtype=np.float64)
    for position, value in enumerate(values.to_numpy(dtype=object)):
        if value is None:
            numbers[position] = math.nan
        elif type(value) is str:
            number = NON_FINITE.get(value)
            if number is None and numbers_as_text:
                try:
                    number = float(value)
                except ValueError:
                    pass
            if number is None:
                return values, position
            numbers[position] = number
        elif isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
            try:
                numbers[position] = float(value)
            except OverflowError:  # an integer past float's range: as far out as a float goes
                numbers[position] = math.inf if value > 0 else -math.inf
        elif value is pd.NA or value is pd.NaT:
            numbers[position] = math.nan
        else:
            return values, position
    return pd.Series(numbers, index=values.index, name=values.name), -1


def wrong_type(key: str, place: str, column: str, value: Any, kind: Kind, reference: str) -> str:
    """Return the WRONG_TYPE message for ``value`` found at ``place`` in ``column``."""
    shown = json.dumps(value.tolist() if isinstance(value, np.ndarray) else value, default=str)
    return WRONG_TYPE.format(
        key=key, place=place, column=column, kind=_kind_of(value),
        value=shown if len(shown) <= 60 else shown[:57] + "...", reference=reference or "?",
        expected="numbers" if kind == "number" else "text", valid=VALID[kind])


def conform_table(frame: pd.DataFrame, expected: Mapping[str, Kind], key: str, source: str,
                  reference: str) -> pd.DataFrame:
    """Return ``frame`` (a table of production rows) with each column of ``expected`` as its
    kind takes it. Raises ConfigError naming the column and row of the first value it does not
    take."""
    for name, kind in expected.items():
        if name not in frame.columns:
            continue
        column, bad = conform(frame[name], kind, numbers_as_text=True)
        if bad >= 0:
            raise ConfigError(wrong_type(key, f"{source} row {bad + 1}", name,
                                         frame[name].iloc[bad], kind, reference))
        if column is not frame[name]:
            frame = frame.assign(**{name: column})
    return frame


def _kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "a list"
    if isinstance(value, str):
        return "the text"
    if isinstance(value, (bool, np.bool_)):
        return "a boolean"
    return f"a {type(value).__name__}"


class _Reader:
    """Gathers records line by line into column chunks."""

    def __init__(self, window: Window, version: str | None, max_line_bytes: int, key: str,
                 expected: Mapping[str, Kind], reference: str) -> None:
        self.window = window
        self.version = version
        self.max_line_bytes = max_line_bytes
        self.key = key
        self.expected = expected
        self.reference = reference
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
        #: where each row of the chunk comes from: its line, and the file of each run of rows
        self._chunk_lines: list[int] = []
        self._chunk_files: list[tuple[int, Path]] = []

    def read(self, path: Path) -> None:
        # Binary lines of at most `limit` bytes: a longer one is never held whole in memory.
        limit = self.max_line_bytes + 1
        too_long = TOO_LONG.format(limit=self.max_line_bytes / 2**20)
        self._chunk_files.append((self._chunk_rows, path))
        with path.open("rb") as stream:
            readline = stream.readline
            number = 0
            while True:
                line = readline(limit)
                if not line:
                    break
                number += 1
                problem = ""
                if len(line) == limit and line[-1:] != b"\n":
                    while line and line[-1:] != b"\n":
                        line = readline(limit)
                    problem = too_long
                elif not line.strip():
                    continue
                self.lines += 1
                problem = problem or self._record(line, number)
                if problem:
                    self.corrupt += 1
                    if len(self.examples) < EXAMPLES:
                        self.examples.append(f"{path}:{number}: {problem}")

    def _record(self, line: bytes, number: int) -> str:
        try:
            record = _loads(line)
        except ValueError:  # orjson's JSONDecodeError is a ValueError
            try:  # bare NaN and Infinity, as Python's json wrote them into older logs
                record = json.loads(line.decode("utf-8", errors="replace"))
            except json.JSONDecodeError as exc:
                return f"not JSON ({exc.msg})"
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
        self._add(columns, count, predictions, probabilities, str(record.get("request_id") or ""),
                  number)
        return ""

    def _add(self, columns: dict[str, list[Any]], count: int, predictions: list[Any] | None,
             probabilities: list[Any] | None, request_id: str, number: int) -> None:
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
            self._chunk_lines.append(number)
        else:
            self._request_ids.extend([request_id] * count)
            self._request_rows.extend(range(count))
            self._chunk_lines.extend([number] * count)
        self._chunk_rows += count
        self.rows += count
        if self._chunk_rows >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        """Turn the rows gathered so far into a chunk, each column as its kind takes it.

        Raises ConfigError naming the file, line and column of a value its kind does not take."""
        if self._chunk_rows:
            chunk = pd.DataFrame(self._columns)
            for name, kind in self.expected.items():
                if name not in chunk.columns:
                    continue
                column, bad = conform(chunk[name], kind)
                if bad >= 0:
                    raise ConfigError(wrong_type(self.key, self._place(bad), name,
                                                 chunk[name].iloc[bad], kind, self.reference))
                if column is not chunk[name]:
                    chunk[name] = column
            self._chunks.append(chunk)
        self._columns = {}
        self._chunk_rows = 0
        self._chunk_lines = []
        self._chunk_files = self._chunk_files[-1:]
        if self._chunk_files:
            self._chunk_files[0] = (0, self._chunk_files[0][1])

    def _place(self, row: int) -> str:
        path = next(path for start, path in reversed(self._chunk_files) if start <= row)
        return f"{path}:{self._chunk_lines[row]}"

    def result(self, source: str, files: tuple[str, ...]) -> Production:
        self.flush()
        frame = pd.concat(self._chunks, ignore_index=True, sort=False, copy=False) \
            if len(self._chunks) > 1 else self._chunks[0]
        self._chunks = []
        predictions = _numbers(self._predictions) if self._has_predictions else None
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


def _numbers(values: list[Any]) -> NDArray[Any]:
    """Return logged predictions as an array, a regressor's non-finite strings as floats."""
    array = np.asarray(values)
    if array.dtype.kind in "OU" and any(type(v) is str and v in NON_FINITE for v in values):
        column, bad = conform(pd.Series(values, dtype=object), "number")
        if bad < 0:
            return np.asarray(column.to_numpy(), dtype=np.float64)
    return array


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

