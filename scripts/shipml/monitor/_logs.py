"""Production rows from the server's prediction log (JSON Lines), or from a plain table.

A log record (see :mod:`shipml.serve._predlog`) holds one request: ``inputs`` as named columns
(``{"mean_radius": [14.2, 9.8]}``; ``/v2`` records name the tensor instead), ``outputs``
(``predictions`` and ``probabilities``, or ``/v2`` tensors), ``version``, ``request_id`` and
``ts``. A file is read in blocks of whole lines: pyarrow's JSON reader turns a block of the
server's usual records into columns (:mod:`shipml.monitor._columnar`); a block that holds
anything else is read line by line, and each line that cannot be read is skipped and counted;
too many of them make the input unusable. A line longer than ``monitor.logs.max_line_mb`` is such
a line: it is read past in pieces of that size, never held whole. Past ``monitor.max_rows`` rows,
a seeded uniform sample of that many is kept (:class:`_Sample`), and the result says so.

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
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shipml.errors import ConfigError
from shipml.monitor._columnar import Block, Lines, Part, TooLong, read_block, split_lines
from shipml.monitor._values import NON_FINITE, Kind, conform

__all__ = ["NON_FINITE", "Cancelled", "Kind", "Production", "Window", "conform", "conform_table",
           "find_log_files", "parse_time", "read_logs", "sample_table", "wrong_type"]

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
#: rows the line reader gathers in Python lists before they become a DataFrame chunk
CHUNK_ROWS = 65536
#: corrupt lines quoted in messages
EXAMPLES = 3
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_GLOB = re.compile(r"[*?\[]")
#: how the result says that the rows were sampled
SAMPLED = "sampled {kept:,} of {read:,} rows (uniform, seeded by monitor.random_state)"


class Cancelled(Exception):
    """The caller stopped the reading (``read_logs``' ``cancelled`` said so)."""


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
    #: the rows read before a sample of monitor.max_rows was drawn (0: not sampled)
    sampled_from: int = 0
    #: seconds reading took (None: not timed)
    read_s: float | None = None

    @property
    def sampling(self) -> str:
        """Return how the rows were sampled ("sampled 1,000,000 of 3,412,007 rows …"), or ''."""
        return SAMPLED.format(kept=len(self.frame), read=self.sampled_from) \
            if self.sampled_from else ""


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
              expected: Mapping[str, Kind] | None = None, reference: str = "",
              max_rows: int | None = None, seed: int = 0,
              cancelled: Callable[[], bool] = lambda: False) -> Production:
    """Read the prediction records of ``files`` within ``window`` (and of ``version``).

    A line longer than ``max_line_bytes`` is corrupt. ``expected`` gives the kind of each column
    the reference (``reference``, its name) has: a number column gets its non-finite strings as
    floats. Past ``max_rows`` rows a uniform sample of that many, drawn with ``seed``, is kept
    (``sampled_from`` says of how many). ``cancelled`` is asked before each block: True stops
    the reading with :class:`Cancelled`. Returns the rows with their logged outputs. Raises
    ConfigError when no record is left, when the share of corrupt lines is over
    ``max_corrupt_rate``, or when a column holds a value its kind does not take (naming the file
    and line).
    """
    reader = _Reader(window, version, max_line_bytes, key, expected or {}, reference,
                     _Sample(max_rows, seed), cancelled)
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


def sample_table(production: Production, max_rows: int, seed: int) -> Production:
    """Return ``production`` (a table of rows) with a uniform sample of ``max_rows`` of its rows,
    in their order, drawn with ``seed``, when it has more; else ``production`` itself."""
    rows = len(production.frame)
    if rows <= max_rows:
        return production
    chosen = np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))
    return replace(production, frame=production.frame.iloc[chosen].reset_index(drop=True),
                   sampled_from=rows)


def _modified(path: Path) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(path.stat().st_mtime, tz=_dt.timezone.utc)


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
    """Reads log files block by block: pyarrow's JSON reader for blocks of the server's usual
    records, the line reader for any other block (it says which line is wrong and why)."""

    def __init__(self, window: Window, version: str | None, max_line_bytes: int, key: str,
                 expected: Mapping[str, Kind], reference: str, sample: _Sample,
                 cancelled: Callable[[], bool]) -> None:
        self.cancelled = cancelled
        self.window = window
        self.version = version
        self.max_line_bytes = max_line_bytes
        self.key = key
        self.expected = expected
        self.reference = reference
        self.sample = sample
        self.lines = self.records = self.rows = 0
        self.corrupt = self.outside_window = self.other_versions = 0
        self.examples: list[str] = []
        self.versions: dict[str, int] = {}
        self.all_versions: set[str] = set()
        self.first_seen = self.last_seen = ""
        self.first_ts = self.last_ts = ""
        self.has_predictions = True
        self.has_probabilities = True
        # the line reader's rows not yet a part, gathered in Python lists
        self._columns: dict[str, list[Any]] = {}
        self._chunk_rows = 0
        self._predictions: list[Any] = []
        self._probabilities: list[Any] = []
        self._chunk_predictions = self._chunk_probabilities = True
        self._request_ids: list[str] = []
        self._request_rows: list[int] = []
        #: where each row of the chunk comes from: its file and line
        self._chunk_lines: list[int] = []
        self._path = Path()

    def read(self, path: Path) -> None:
        """Read the records of ``path`` into the sample, corrupt lines counted."""
        too_long = TOO_LONG.format(limit=self.max_line_bytes / 2**20)
        with path.open("rb") as stream:
            for lines in split_lines(stream, self.max_line_bytes):
                if self.cancelled():
                    raise Cancelled(path)
                if isinstance(lines, TooLong):
                    self.lines += 1
                    self._corrupt(path, lines.number, too_long)
                    continue
                block = read_block(lines.data, since=self.window.since, until=self.window.until,
                                   version=self.version, expected=self.expected)
                if block is None:
                    self._by_line(path, lines)
                else:
                    self._count(block)

    def _corrupt(self, path: Path, number: int, problem: str) -> None:
        self.corrupt += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(f"{path}:{number}: {problem}")

    def _count(self, block: Block) -> None:
        self.lines += block.lines
        self.records += block.records
        self.outside_window += block.outside_window
        self.other_versions += block.other_versions
        self.all_versions |= block.all_versions
        for name, count in block.versions.items():
            self.versions[name] = self.versions.get(name, 0) + count
        self._seen(*block.seen)
        self._kept(*block.kept)
        if block.part is not None:
            self._keep(block.part)

    def _seen(self, first: str, last: str) -> None:
        if first:
            self.first_seen = min(self.first_seen, first) if self.first_seen else first
            self.last_seen = max(self.last_seen, last)

    def _kept(self, first: str, last: str) -> None:
        if first:
            self.first_ts = min(self.first_ts, first) if self.first_ts else first
            self.last_ts = max(self.last_ts, last)

    def _keep(self, part: Part) -> None:
        self.rows += len(part)
        self.has_predictions = self.has_predictions and part.predictions is not None
        self.has_probabilities = self.has_probabilities and part.probabilities is not None
        self.sample.add(part)

    def _by_line(self, path: Path, lines: Lines) -> None:
        """Read a block line by line: the rows of its records, its corrupt lines said."""
        self._path = path
        data = bytes(lines.data)
        pieces = data.split(b"\n")
        if data.endswith(b"\n"):
            pieces.pop()
        for offset, line in enumerate(pieces):
            if not line.strip():
                continue
            self.lines += 1
            problem = self._record(line, lines.first + offset)
            if problem:
                self._corrupt(path, lines.first + offset, problem)
        self.flush()

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
        self._seen(stamp, stamp)
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
        self._kept(stamp, stamp)
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
            self._chunk_predictions = False
        elif self._chunk_predictions:
            self._predictions.extend(predictions)
        if probabilities is None:
            self._chunk_probabilities = False
        elif self._chunk_probabilities:
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
        if self._chunk_rows >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        """Turn the rows the line reader gathered into a part, each column as its kind takes it.

        Raises ConfigError naming the file, line and column of a value its kind does not take."""
        if self._chunk_rows:
            chunk = pd.DataFrame(self._columns)
            for name, kind in self.expected.items():
                if name not in chunk.columns:
                    continue
                column, bad = conform(chunk[name], kind)
                if bad >= 0:
                    raise ConfigError(wrong_type(self.key, f"{self._path}:{self._chunk_lines[bad]}",
                                                 name, chunk[name].iloc[bad], kind,
                                                 self.reference))
                if column is not chunk[name]:
                    chunk[name] = column
            self._keep(Part(
                frame=chunk,
                predictions=_logged(self._predictions) if self._chunk_predictions else None,
                probabilities=(_probabilities(self._probabilities)
                               if self._chunk_probabilities else None),
                request_ids=np.asarray(self._request_ids, dtype=object),
                request_rows=np.asarray(self._request_rows, dtype=np.int64)))
        self._columns = {}
        self._chunk_rows = 0
        self._chunk_lines = []
        self._predictions, self._probabilities = [], []
        self._chunk_predictions = self._chunk_probabilities = True
        self._request_ids, self._request_rows = [], []

    def result(self, source: str, files: tuple[str, ...]) -> Production:
        """Return the rows read (the sample of them past max_rows) and what was counted."""
        self.flush()
        parts = self.sample.parts()
        frame = _concat([part.frame for part in parts])
        predictions = None
        if self.has_predictions:
            arrays = [part.predictions for part in parts if part.predictions is not None]
            if all(array.dtype.kind in "iufb" for array in arrays):
                predictions = np.concatenate(arrays)
            else:  # text, or a regressor's non-finite strings among numbers
                predictions = _numbers(np.concatenate(
                    [array.astype(object) for array in arrays]).tolist())
        probabilities = None
        if self.has_probabilities:
            matrices = [part.probabilities for part in parts if part.probabilities is not None]
            if len({matrix.shape[1] for matrix in matrices}) == 1:
                probabilities = np.concatenate(matrices)
        return Production(
            frame=frame, source=source, predictions=predictions, probabilities=probabilities,
            request_ids=np.concatenate([part.request_ids for part in parts]),
            request_rows=np.concatenate([part.request_rows for part in parts]),
            files=files, lines=self.lines, records=self.records, corrupt=self.corrupt,
            corrupt_examples=tuple(self.examples), outside_window=self.outside_window,
            other_versions=self.other_versions, versions=dict(self.versions),
            first_ts=self.first_ts, last_ts=self.last_ts,
            sampled_from=self.rows if self.sample.sampled else 0)


class _Sample:
    """A uniform sample of at most ``limit`` rows of the parts added, in their order: each row
    draws a key from a generator seeded with ``seed`` and the ``limit`` rows with the smallest
    keys are kept (a bottom-k sample: every set of ``limit`` rows is equally likely). Memory
    holds at most twice ``limit`` rows between trims."""

    def __init__(self, limit: int | None, seed: int) -> None:
        self.limit = limit
        self._random = np.random.default_rng(seed)
        self._parts: list[tuple[Part, NDArray[Any]]] = []
        self._held = 0
        self._threshold = 1.0
        self.sampled = False

    def add(self, part: Part) -> None:
        """Add ``part``'s rows; trim to the smallest keys when more than twice limit are held."""
        if self.limit is None:
            self._parts.append((part, np.empty(0)))
            return
        keys = self._random.random(len(part))
        if self.sampled:
            chosen = np.flatnonzero(keys < self._threshold)
            part, keys = part.take(chosen), keys[chosen]
        self._parts.append((part, keys))
        self._held += len(part)
        if self._held > 2 * self.limit:
            self._trim()

    def _trim(self) -> None:
        assert self.limit is not None
        keys = np.concatenate([part_keys for _, part_keys in self._parts])
        if len(keys) <= self.limit:
            return
        self._threshold = float(np.partition(keys, self.limit)[self.limit])
        trimmed = []
        for part, part_keys in self._parts:
            chosen = np.flatnonzero(part_keys < self._threshold)
            trimmed.append((part.take(chosen), part_keys[chosen]))
        self._parts = [(part, part_keys) for part, part_keys in trimmed if len(part)]
        self._held = sum(len(part) for part, _ in self._parts)
        self.sampled = True

    def parts(self) -> list[Part]:
        """Return the sampled parts (every part when no more than limit rows were added)."""
        if self.limit is not None and self._held > self.limit:
            self._trim()
        return [part for part, _ in self._parts]


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Return the frames one after the other, column by column (pd.concat of many frames spends
    longer merging its blocks); a column a frame lacks is null in its rows."""
    if len(frames) == 1:
        return frames[0]
    names = list(dict.fromkeys(name for frame in frames for name in frame.columns))
    columns: dict[str, NDArray[Any]] = {}
    for name in names:
        present = [frame[name].to_numpy() for frame in frames if name in frame.columns]
        numbers = all(values.dtype.kind in "iuf" for values in present)
        columns[name] = np.concatenate([
            frame[name].to_numpy() if name in frame.columns
            else np.full(len(frame), np.nan if numbers else None,
                         dtype=np.float64 if numbers else object)
            for frame in frames])
    return pd.DataFrame(columns, copy=False)


def _logged(values: list[Any]) -> NDArray[Any]:
    """Return one chunk's logged predictions: numbers as numbers, anything else as objects."""
    array = np.asarray(values)
    return array if array.dtype.kind in "iufb" else np.array(values, dtype=object)


def _probabilities(rows: list[Any]) -> NDArray[Any] | None:
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except (ValueError, TypeError):  # rows with different numbers of classes: not usable
        return None
    return matrix if matrix.ndim == 2 else None


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

