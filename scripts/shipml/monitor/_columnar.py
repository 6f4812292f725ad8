"""The prediction log read a block of whole lines at a time by pyarrow's JSON reader.

:func:`split_lines` cuts a log file into blocks of whole lines (``BLOCK_BYTES`` at a time, never
holding more than that and one line of at most ``monitor.logs.max_line_mb``) and reports each
longer line, read past in pieces. :func:`read_block` turns a block of the server's usual records
(named flat input columns, ``outputs.predictions`` and ``outputs.probabilities``, a string
version, request id and timestamp) into columns without a Python object per value. It reads only
what it is sure of: anything else in a block (a line that is not JSON or not a record, a ragged
request, a ``/v2`` tensor, other outputs, a value its column's kind does not take, a timestamp
that is not one) returns None, and the caller hands that block to the line reader, which says
what is wrong where. pyarrow fails a whole block on one bad line, so one corrupt line costs its
block the line reader's speed, never the other records.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from numpy.typing import NDArray

from shipml.monitor._values import Kind, conform

#: bytes read from a log file at a time; the whole lines of it are one block
BLOCK_BYTES = 16 * 2**20
#: pyarrow's own blocks within one of ours, parsed side by side by its threads
ARROW_BLOCK_BYTES = 2**20
#: output keys the line reader reads predictions from when there is no ``predictions``
_OTHER_PREDICTIONS = ("label", "output_label", "variable")
#: read as text, never inferred as a timestamp (pyarrow does that to an ISO time without ms)
_TEXTS = pa.schema([("ts", pa.string()), ("version", pa.string()), ("request_id", pa.string())])


@dataclass(frozen=True)
class Lines:
    """Whole lines of a log file, none longer than the limit; ``first`` is the first's number."""

    data: bytes | memoryview
    first: int


@dataclass(frozen=True)
class TooLong:
    """A line longer than the limit, read past unread."""

    number: int


@dataclass(frozen=True)
class Part:
    """Production rows of a run of records, in the log's order, with what was logged for them."""

    frame: pd.DataFrame
    #: the logged predictions and probabilities (None: a record lacked them or they do not fit)
    predictions: NDArray[Any] | None
    probabilities: NDArray[Any] | None
    request_ids: NDArray[Any]
    request_rows: NDArray[Any]

    def __len__(self) -> int:
        return len(self.frame)

    def take(self, positions: NDArray[Any]) -> Part:
        """Return the rows at ``positions`` (in that order) as a part of their own."""
        return Part(
            frame=self.frame.iloc[positions].reset_index(drop=True),
            predictions=self.predictions[positions] if self.predictions is not None else None,
            probabilities=(self.probabilities[positions]
                           if self.probabilities is not None else None),
            request_ids=self.request_ids[positions], request_rows=self.request_rows[positions])


@dataclass
class Block:
    """What one block of lines held: its counts and the rows kept (None when none were)."""

    lines: int
    records: int = 0
    outside_window: int = 0
    other_versions: int = 0
    versions: dict[str, int] = field(default_factory=dict)
    all_versions: set[str] = field(default_factory=set)
    #: the earliest and latest timestamp of all its records, and of the kept ones ('' for none)
    seen: tuple[str, str] = ("", "")
    kept: tuple[str, str] = ("", "")
    part: Part | None = None


def split_lines(stream: BinaryIO, limit: int) -> Iterator[Lines | TooLong]:
    """Yield the lines of ``stream`` (a file: it seeks) as blocks of whole lines, and each line
    longer than ``limit`` bytes (its newline not counted) as :class:`TooLong`, read past in
    pieces: at most ``limit`` bytes of a line and ``BLOCK_BYTES`` are held at once. A block is a
    view of what was read, not a copy: the line a read cuts short is read again with the next."""
    read_size = max(1, min(BLOCK_BYTES, limit + 1))
    pending = b""  # a line longer than one read, begun in earlier reads (at most limit bytes)
    number = 1
    skipping = False
    while True:
        chunk = stream.read(read_size)
        if not chunk:
            break
        if skipping:
            end = chunk.find(b"\n")
            if end >= 0:
                stream.seek(end + 1 - len(chunk), io.SEEK_CUR)
                skipping = False
            continue
        last = chunk.rfind(b"\n")
        if last < 0:
            if len(pending) + len(chunk) > limit:
                yield TooLong(number)
                number += 1
                pending, skipping = b"", True
            else:
                pending += chunk
            continue
        stream.seek(last + 1 - len(chunk), io.SEEK_CUR)
        lines = number
        number += chunk.count(b"\n", 0, last + 1)
        if pending:  # the end of a line longer than one read, then whole lines
            block: bytes | memoryview = pending + chunk[:last + 1]
            pending = b""
        else:
            block = memoryview(chunk)[:last + 1]
        yield from _checked(block, lines, limit)
    if pending:
        yield from _checked(pending, number, limit)


def _checked(data: bytes | memoryview, first: int, limit: int) -> Iterator[Lines | TooLong]:
    """Yield ``data`` (whole lines) as blocks around its lines longer than ``limit``."""
    if len(data) <= limit + 1:
        yield Lines(data, first)
        return
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    if not len(ends) or ends[-1] != len(data) - 1:
        ends = np.append(ends, len(data))  # the file's last line, without a newline
    starts = np.concatenate(([0], ends[:-1] + 1))
    start = line = 0
    for index in np.flatnonzero(ends - starts > limit).tolist():
        if starts[index] > start:
            yield Lines(data[start:int(starts[index])], first + line)
        yield TooLong(first + index)
        start, line = int(ends[index]) + 1, index + 1
    if start < len(data):
        yield Lines(data[start:], first + line)


def _parse(data: bytes | memoryview) -> pa.Table:
    buffer = pa.py_buffer(data)
    parse = pj.ParseOptions(explicit_schema=_TEXTS)
    try:
        return pj.read_json(pa.BufferReader(buffer), parse_options=parse,
                            read_options=pj.ReadOptions(block_size=ARROW_BLOCK_BYTES))
    except pa.ArrowInvalid as exc:
        if "straddl" not in str(exc):
            raise
    # a line longer than pyarrow's block: the block in one piece
    return pj.read_json(pa.BufferReader(buffer), parse_options=parse,
                        read_options=pj.ReadOptions(block_size=len(data) + 1, use_threads=False))


def _flat(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind)
                or pa.types.is_boolean(kind) or pa.types.is_string(kind)
                or pa.types.is_large_string(kind) or pa.types.is_null(kind))


def _numeric(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def _is_list_of(kind: pa.DataType, test: Any) -> bool:
    return bool(pa.types.is_list(kind) and test(kind.value_type))


def _texts(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    """Return the string column ``name`` with '' for null, or None when it is of another type."""
    if name not in table.column_names:
        return pa.chunked_array([pa.array([""] * table.num_rows, pa.string())])
    column = table.column(name)
    if pa.types.is_null(column.type):
        column = column.cast(pa.string())
    elif not pa.types.is_string(column.type):
        return None
    return pc.fill_null(column, "")


def _span(stamps: pa.ChunkedArray) -> tuple[str, str]:
    stamps = stamps.filter(pc.not_equal(stamps, ""))
    if not len(stamps):
        return "", ""
    extremes = pc.min_max(stamps)
    return str(extremes["min"].as_py()), str(extremes["max"].as_py())


def _lengths(column: pa.ChunkedArray) -> NDArray[Any]:
    """Return each list's length, -1 for a null list."""
    return np.asarray(pc.fill_null(pc.list_value_length(column), -1).to_numpy(), dtype=np.int64)


def read_block(data: bytes | memoryview, *, since: Any, until: Any, version: str | None,
               expected: Mapping[str, Kind]) -> Block | None:
    """Return what the block of lines ``data`` holds: records, window and version counts, and
    the rows of the records in the window ``[since, until]`` (aware datetimes or None) and of
    ``version`` (None: any), each column of ``expected`` as its kind takes it. Returns None when
    the block holds anything but the server's usual records, or a value its column's kind does
    not take: the line reader reads that block. Never raises for what the block holds."""
    try:
        table = _parse(data)
    except pa.ArrowException:
        return None
    records = table.num_rows
    if records == 0:  # blank lines only
        return Block(lines=0)
    if "inputs" not in table.column_names:
        return None
    inputs = table.column("inputs")
    if not pa.types.is_struct(inputs.type) or inputs.null_count or not inputs.type.num_fields:
        return None
    names = [inputs.type.field(i).name for i in range(inputs.type.num_fields)]
    if len(set(names)) != len(names) or not all(
            _is_list_of(inputs.type.field(i).type, _flat) for i in range(len(names))):
        return None  # a /v2 tensor, a value that is not a list, a repeated name
    columns = inputs.flatten()
    lengths = [_lengths(column) for column in columns]
    counts = np.maximum.reduce(lengths) if len(lengths) > 1 else lengths[0]
    if (counts <= 0).any() or any(((length >= 0) & (length != counts)).any()
                                  for length in lengths):
        return None  # an empty or ragged request: a corrupt line, said by the line reader
    stamps, versions, request_ids = (_texts(table, "ts"), _texts(table, "version"),
                                     _texts(table, "request_id"))
    if stamps is None or versions is None or request_ids is None:
        return None
    block = Block(lines=records, records=records, seen=_span(stamps))
    kept = np.ones(records, dtype=bool)
    if since is not None or until is not None:
        moments = pd.to_datetime(pd.Series(stamps.to_numpy(), dtype=object), utc=True,
                                 format="ISO8601", errors="coerce")
        if moments.isna().any():
            return None  # a timestamp that is not one: the line reader names it
        if since is not None:
            kept &= (moments >= since).to_numpy()
        if until is not None:
            kept &= (moments <= until).to_numpy()
        block.outside_window = int(records - kept.sum())
    version_texts = versions.to_numpy(zero_copy_only=False)
    block.all_versions = set(pd.unique(version_texts[kept]).tolist())
    if version is not None:
        other = kept & (version_texts != version)
        block.other_versions = int(other.sum())
        kept &= ~other
    if not kept.any():
        return block
    counted = pd.Series(version_texts[kept]).value_counts(sort=False)
    block.versions = {str(name): int(count) for name, count in counted.items()}
    if not kept.all():
        mask = pa.array(kept)
        table = table.filter(mask)
        stamps, request_ids = stamps.filter(mask), request_ids.filter(mask)
        columns = [column.filter(mask) for column in columns]
        lengths = [length[kept] for length in lengths]
        counts = counts[kept]
    block.kept = _span(stamps)
    frame = _frame(names, columns, lengths, counts, expected)
    if frame is None:
        return None
    outputs = _outputs(table, counts)
    if outputs is None:
        return None
    ids = request_ids.to_numpy(zero_copy_only=False)
    if (counts == 1).all():
        rows = np.zeros(len(counts), dtype=np.int64)
    else:
        ids = np.repeat(ids, counts)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        rows = np.arange(len(ids), dtype=np.int64) - starts
    block.part = Part(frame=frame, predictions=outputs[0], probabilities=outputs[1],
                      request_ids=ids, request_rows=rows)
    return block


def _frame(names: list[str], columns: list[pa.ChunkedArray], lengths: list[NDArray[Any]],
           counts: NDArray[Any], expected: Mapping[str, Kind]) -> pd.DataFrame | None:
    """Return the rows as a frame, each column of ``expected`` as its kind takes it, or None
    when a value is one its kind does not take."""
    total = int(counts.sum())
    values: dict[str, Any] = {}
    for name, column, length in zip(names, columns, lengths, strict=True):
        flat = pc.list_flatten(column).to_pandas().to_numpy()
        if len(flat) != total:  # records without this column: theirs rows hold nulls
            present = np.repeat(length >= 0, counts)
            padded = np.full(total, np.nan if flat.dtype.kind in "fiu" else None,
                             dtype=np.float64 if flat.dtype.kind in "fiu" else object)
            padded[present] = flat
            flat = padded
        values[name] = flat
    frame = pd.DataFrame(values, copy=False)
    for name, kind in expected.items():
        # a text column takes any value a flat list holds; a number column is conformed
        if kind != "number" or name not in values:
            continue
        column, bad = conform(frame[name], kind)
        if bad >= 0:
            return None
        if column is not frame[name]:
            frame[name] = column
    return frame


def _outputs(table: pa.Table, counts: NDArray[Any]
             ) -> tuple[NDArray[Any] | None, NDArray[Any] | None] | None:
    """Return the logged predictions and probabilities (None for what is not there in full),
    or None when they are logged in a shape the line reader reads."""
    if "outputs" not in table.column_names:
        return None, None
    outputs = table.column("outputs")
    if not pa.types.is_struct(outputs.type):
        return None, None
    fields = {outputs.type.field(i).name: i for i in range(outputs.type.num_fields)}
    if any(name in fields for name in _OTHER_PREDICTIONS):
        return None
    parts = outputs.flatten()
    predictions = probabilities = None
    if "predictions" in fields:
        column = parts[fields["predictions"]]
        if pa.types.is_list(column.type) and not _flat(column.type.value_type):
            return None  # a /v2 tensor [[p], [p]]: the line reader takes its first values
        if _is_list_of(column.type, _flat) and (_lengths(column) == counts).all():
            predictions = pc.list_flatten(column).to_pandas().to_numpy()
            if predictions.dtype.kind not in "iufb":
                predictions = predictions.astype(object)
    if "probabilities" in fields:
        column = parts[fields["probabilities"]]
        if _is_list_of(column.type, lambda inner: pa.types.is_list(inner)):
            if not _numeric(column.type.value_type.value_type) \
                    and not pa.types.is_null(column.type.value_type.value_type):
                return None  # text like "NaN" among them: the line reader reads it
            if (_lengths(column) == counts).all():
                rows = pc.list_flatten(column)
                widths = _lengths(rows)
                if len(widths) and (widths == widths[0]).all() and widths[0] > 0:
                    flat = pc.list_flatten(rows).to_numpy()
                    probabilities = np.asarray(flat, dtype=np.float64).reshape(-1, int(widths[0]))
    return predictions, probabilities
