"""The stage-result contract: every stage writes ``.shipml/results/<stage>.json``.

``report`` reads nothing else. A result is a frozen dataclass; JSON is its only serialisation here,
renderers (markdown, HTML, JUnit) live with the code that needs them.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from shipml.errors import ConfigError

StageStatus = Literal["pass", "fail", "error", "skipped"]
CheckStatus = Literal["pass", "warn", "fail", "error"]
FailOn = Literal["fail", "warn", "never"]

STAGE_STATUSES: tuple[StageStatus, ...] = ("pass", "fail", "error", "skipped")
CHECK_STATUSES: tuple[CheckStatus, ...] = ("pass", "warn", "fail", "error")
FAIL_ON_CHOICES: tuple[FailOn, ...] = ("fail", "warn", "never")

Scalar = float | int | str | bool | None


@dataclass(frozen=True)
class Check:
    """One judged condition: its sentence-like name, verdict, observed value and threshold."""

    name: str
    status: CheckStatus
    observed: Scalar = None
    threshold: Scalar = None
    detail: str = ""
    group: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping of this check."""
        record: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "observed": _json_scalar(self.observed),
            "threshold": _json_scalar(self.threshold),
            "detail": self.detail,
        }
        if self.group:
            record["group"] = self.group
        return record


@dataclass(frozen=True)
class Artifact:
    """A file a stage produced, by display name and path."""

    name: str
    path: str

    def to_dict(self) -> dict[str, str]:
        """Return the JSON-ready mapping of this artifact."""
        return {"name": self.name, "path": self.path}


#: why a stage stopped without judging: ``cancelled`` by SIGTERM or SIGINT; ``missing`` is the
#: report's own word for a configured gate that left no result (no stage writes it)
ErrorKind = Literal["config", "infrastructure", "internal", "cancelled", "missing"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("config", "infrastructure", "internal", "cancelled",
                                      "missing")
#: the exit code each error kind ends a command with (``cancelled``: 128 + the signal's number,
#: as a shell reports a command a signal stopped: 130 for SIGINT, 143 for SIGTERM)
ERROR_EXIT_CODES: Mapping[str, int] = {"config": 2, "infrastructure": 3, "internal": 3,
                                       "cancelled": 143, "missing": 3}
#: the exit code of a command stopped by each signal it handles
CANCEL_EXIT_CODES: Mapping[str, int] = {"SIGINT": 130, "SIGTERM": 143}
SeriesKind = Literal["line", "bar"]


@dataclass(frozen=True)
class StageError:
    """Why a stage stopped without judging the model: the kind, the exit code and the message."""

    kind: ErrorKind
    exit_code: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping of this error."""
        return {"kind": self.kind, "exit_code": self.exit_code, "message": self.message}


@dataclass(frozen=True)
class Handoff:
    """What a stage hands to the next: a model file (``path`` + ``sha256``) or an image
    (``ref`` + ``digest``). The next stage reads this, never the producer's metrics."""

    kind: str
    path: str = ""
    sha256: str = ""
    ref: str = ""
    digest: str = ""

    def to_dict(self) -> dict[str, str]:
        """Return the JSON-ready mapping, empty fields left out."""
        record = {"kind": self.kind, "path": self.path, "sha256": self.sha256, "ref": self.ref,
                  "digest": self.digest}
        return {key: value for key, value in record.items() if value or key == "kind"}

    @property
    def pushed(self) -> bool:
        """Return True for an image in a registry: build hands on ``REPOSITORY@sha256:…`` for an
        image it pushed, ``REPOSITORY:TAG`` and the local image id for one it only built."""
        return "@" in self.ref

    @property
    def repository(self) -> str:
        """Return an image's ``REGISTRY/REPOSITORY``, without tag or digest ('' for a model)."""
        name = self.ref.split("@", 1)[0]
        head, _, last = name.rpartition("/")
        return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]

    @property
    def argument(self) -> str:
        """Return what names this hand-off to the stage that reads it, the one rule every stage
        and ``shipml run`` follow: a model's file (its ``sha256`` is beside it in the result);
        an image pinned to its digest: as pushed, ``REPOSITORY@sha256:<manifest digest>``, or,
        built but not pushed, its local image id, which the engine runs and which no later tag
        can move. '' when it names nothing: a model file that is gone, an image without a
        reference."""
        if self.path:
            return self.path if Path(self.path).is_file() else ""
        if self.pushed or not self.ref:
            return self.ref
        return self.digest or self.ref


#: what build hands on as ``digest`` for an image it built but did not push: the engine's image id
_LOCAL_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


def is_local_image_id(text: str) -> bool:
    """Return True when ``text`` is a bare image id (``sha256:<64 hex>``): an image in the local
    engine only, which no registry holds, so nothing can sign or verify it there."""
    return _LOCAL_IMAGE_ID.fullmatch(text.strip()) is not None


@dataclass(frozen=True)
class Handed:
    """A hand-off found under an output folder, and the stage that left it."""

    stage: str
    handoff: Handoff

    @property
    def source(self) -> str:
        """Return where it was read, for messages: ``the build hand-off``."""
        return f"the {self.stage} hand-off"


def handed_on(output_dir: Path, kind: str, ran: Mapping[str, int] | None = None) -> Handed | None:
    """Return the latest hand-off of ``kind`` (``model``, ``image``) that a passing stage left
    under ``output_dir``: the stages the registry says produce it are read latest first, and a
    result that did not pass hands nothing on. With ``ran`` (``shipml run``'s exit code per
    stage of this run), only a stage that ran and passed in it counts. Returns None when none
    did; raises ConfigError when a producer's result is not a stage result."""
    from shipml import stages

    for producer in reversed(stages.producers(kind)):
        if ran is not None and ran.get(producer) != 0:
            continue
        path = results_path(output_dir, producer)
        if not path.is_file():
            continue
        result = StageResult.read(path)
        handoff = result.handed(kind)
        if result.status == "pass" and handoff is not None:
            return Handed(producer, handoff)
    return None


@dataclass(frozen=True)
class Column:
    """A column of a :class:`Table`: the row key it shows, its heading and unit."""

    key: str
    label: str
    unit: str = ""

    def to_dict(self) -> dict[str, str]:
        """Return the JSON-ready mapping of this column."""
        return {"key": self.key, "label": self.label, "unit": self.unit}


@dataclass(frozen=True)
class Table:
    """Figures a stage wants shown as a table (rows keyed by the columns' keys)."""

    title: str
    columns: tuple[Column, ...]
    rows: tuple[Mapping[str, Scalar], ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping of this table."""
        return {"title": self.title, "columns": [c.to_dict() for c in self.columns],
                "rows": [{k: _json_scalar(v) for k, v in row.items()} for row in self.rows]}


@dataclass(frozen=True)
class Series:
    """Figures a stage wants shown as a chart: categories on x, one value each on y."""

    title: str
    x_label: str
    y_label: str
    categories: tuple[str, ...]
    values: tuple[float, ...]
    kind: SeriesKind = "line"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping of this series."""
        return {"title": self.title, "x_label": self.x_label, "y_label": self.y_label,
                "kind": self.kind, "categories": list(self.categories),
                "values": [_json_scalar(v) for v in self.values]}


@dataclass(frozen=True)
class Delta:
    """A figure of this change against its baseline (``interval``: a confidence interval of
    the ratio candidate/baseline, when measured; a change whose interval holds 1 is noise;
    ``note``: the comparison in the stage's own words, e.g. its test and interval)."""

    name: str
    baseline: float
    candidate: float
    unit: str = ""
    higher_is_better: bool = False
    interval: tuple[float, float] | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping of this delta."""
        return {"name": self.name, "baseline": _json_scalar(self.baseline),
                "candidate": _json_scalar(self.candidate), "unit": self.unit,
                "higher_is_better": self.higher_is_better,
                "interval": [_json_scalar(v) for v in self.interval] if self.interval else None,
                "note": self.note}


@dataclass(frozen=True)
class StageResult:
    """What one stage concluded; the JSON object of design.md.

    Beyond design.md's fields: ``error`` (why a stage stopped, only with status ``error``),
    ``handoff`` (what the next stage reads), and ``tables``/``series``/``deltas``: figures the
    report renders without knowing the stage.
    """

    stage: str
    status: StageStatus
    summary: str
    started_at: str
    duration_s: float
    metrics: Mapping[str, Any] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    error: StageError | None = None
    handoff: tuple[Handoff, ...] = ()
    tables: tuple[Table, ...] = ()
    series: tuple[Series, ...] = ()
    deltas: tuple[Delta, ...] = ()

    @property
    def exit_code(self) -> int:
        """Return 0 for pass/skipped, 1 for fail, the error's code (3 when unknown) for error."""
        if self.status == "error":
            return self.error.exit_code if self.error is not None else 3
        return {"pass": 0, "skipped": 0, "fail": 1}[self.status]

    def handed(self, kind: str) -> Handoff | None:
        """Return the hand-off of ``kind`` this stage produced, or None."""
        return next((item for item in self.handoff if item.kind == kind), None)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping, keys in the contract's order."""
        return {
            "stage": self.stage,
            "status": self.status,
            "summary": self.summary,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "metrics": _json_clean(dict(self.metrics)),
            "checks": [check.to_dict() for check in self.checks],
            "artifacts": [artifact.to_dict() for artifact in self.artifacts],
            "error": self.error.to_dict() if self.error is not None else None,
            "handoff": [item.to_dict() for item in self.handoff],
            "tables": [table.to_dict() for table in self.tables],
            "series": [series.to_dict() for series in self.series],
            "deltas": [delta.to_dict() for delta in self.deltas],
        }

    def to_json(self) -> str:
        """Return the result as pretty, strict JSON (NaN and infinities become null)."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    def write(self, output_dir: Path) -> Path:
        """Write ``<output_dir>/results/<stage>.json`` atomically and return its path."""
        path = results_path(output_dir, self.stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{self.stage}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self.to_json())
            os.replace(tmp_name, path)
        except BaseException:
            # a result that could not be written leaves nothing behind (no .tmp files)
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], *, source: str = "<result>") -> StageResult:
        """Build a result from its JSON mapping; raise ConfigError naming the bad field."""
        try:
            stage = _require(record, "stage", str, source)
            status = _require(record, "status", str, source)
            if status not in STAGE_STATUSES:
                raise ConfigError(
                    f"{source}: field 'status' is {status!r}; valid: {', '.join(STAGE_STATUSES)}"
                )
            checks = []
            for index, item in enumerate(record.get("checks") or []):
                check_status = _require(item, "status", str, f"{source}: checks[{index}]")
                if check_status not in CHECK_STATUSES:
                    raise ConfigError(
                        f"{source}: checks[{index}].status is {check_status!r}; "
                        f"valid: {', '.join(CHECK_STATUSES)}"
                    )
                checks.append(
                    Check(
                        name=_require(item, "name", str, f"{source}: checks[{index}]"),
                        status=cast(CheckStatus, check_status),
                        observed=item.get("observed"),
                        threshold=item.get("threshold"),
                        detail=str(item.get("detail") or ""),
                        group=str(item.get("group") or ""),
                    )
                )
            artifacts = tuple(
                Artifact(name=str(item["name"]), path=str(item["path"]))
                for item in record.get("artifacts") or []
            )
            return cls(
                stage=stage,
                status=cast(StageStatus, status),
                summary=str(record.get("summary") or ""),
                started_at=str(record.get("started_at") or ""),
                duration_s=float(record.get("duration_s") or 0.0),
                metrics=dict(record.get("metrics") or {}),
                checks=tuple(checks),
                artifacts=artifacts,
                error=_read_error(record.get("error"), source),
                handoff=tuple(Handoff(**{k: str(v) for k, v in item.items() if k in _HANDOFF})
                              for item in record.get("handoff") or []),
                tables=tuple(_read_table(item) for item in record.get("tables") or []),
                series=tuple(_read_series(item) for item in record.get("series") or []),
                deltas=tuple(_read_delta(item) for item in record.get("deltas") or []),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{source}: not a shipml stage result ({exc})") from None

    @classmethod
    def read(cls, path: Path) -> StageResult:
        """Read a result file; raise ConfigError when it is missing or not a stage result."""
        try:
            if path.stat().st_size > MAX_RESULT_BYTES:
                raise ConfigError(f"{path}: {path.stat().st_size} bytes is more than a stage "
                                  f"result may hold ({MAX_RESULT_BYTES // 2**20} MiB)")
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: result file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        except RecursionError:
            raise ConfigError(f"{path}: not a shipml stage result (nested too deeply)") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path}: a stage result must be a JSON object")
        return cls.from_dict(record, source=str(path))


#: a result larger than this is not one a stage wrote
MAX_RESULT_BYTES = 64 * 2**20
_HANDOFF = ("kind", "path", "sha256", "ref", "digest")


def _read_error(record: Any, source: str) -> StageError | None:
    if record is None:
        return None
    kind = str(record["kind"])
    if kind not in ERROR_KINDS:
        raise ConfigError(f"{source}: error.kind is {kind!r}; valid: {', '.join(ERROR_KINDS)}")
    return StageError(kind=kind, exit_code=int(record["exit_code"]),
                      message=str(record.get("message") or ""))


def _read_table(record: Mapping[str, Any]) -> Table:
    columns = tuple(Column(key=str(c["key"]), label=str(c.get("label") or c["key"]),
                           unit=str(c.get("unit") or "")) for c in record["columns"])
    rows = tuple({str(k): _scalar(v) for k, v in row.items()} for row in record.get("rows") or [])
    return Table(title=str(record.get("title") or ""), columns=columns, rows=rows)


def _read_series(record: Mapping[str, Any]) -> Series:
    kind = str(record.get("kind") or "line")
    if kind not in ("line", "bar"):
        raise ValueError(f"series kind {kind!r} is not line or bar")
    categories = tuple(str(c) for c in record["categories"])
    # a point without a value (a canary step that ended before its first analysis) is written
    # as null, as every non-finite figure is
    values = tuple(_figure(v) for v in record["values"])
    if len(categories) != len(values):
        raise ValueError(f"series {record.get('title')!r} has {len(categories)} categories "
                         f"and {len(values)} values")
    return Series(title=str(record.get("title") or ""), x_label=str(record.get("x_label") or ""),
                  y_label=str(record.get("y_label") or ""), categories=categories,
                  values=values, kind=cast(SeriesKind, kind))


def _read_delta(record: Mapping[str, Any]) -> Delta:
    interval = record.get("interval")
    return Delta(name=str(record["name"]), baseline=_figure(record["baseline"]),
                 candidate=_figure(record["candidate"]), unit=str(record.get("unit") or ""),
                 higher_is_better=bool(record.get("higher_is_better", False)),
                 interval=(_figure(interval[0]), _figure(interval[1])) if interval else None,
                 note=str(record.get("note") or ""))


def _figure(value: Any) -> float:
    """Return a written figure as a float: null (how every non-finite figure is written) is NaN."""
    return math.nan if value is None else float(value)


def _scalar(value: Any) -> Scalar:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"a table cell must be a number, text, boolean or null, not {type(value).__name__}")


def results_path(output_dir: Path, stage: str) -> Path:
    """Return where the result of ``stage`` lives under ``output_dir``."""
    return output_dir / "results" / f"{stage}.json"


def read_all(output_dir: Path) -> list[StageResult]:
    """Return every stage result under ``output_dir/results``, sorted by file name."""
    folder = output_dir / "results"
    if not folder.is_dir():
        return []
    return [StageResult.read(path) for path in sorted(folder.glob("*.json"))]


def stage_status(checks: Sequence[Check], fail_on: FailOn = "fail") -> StageStatus:
    """Decide a stage's status from its check records.

    A check that could not be judged (``error``) fails the gate like a failed one: an unverified
    model does not ship. ``fail_on="warn"`` fails on warnings too; ``fail_on="never"`` reports but
    never fails. Stage status ``error`` is kept for a stage that could not run at all.
    """
    statuses = {check.status for check in checks}
    if fail_on == "never":
        return "pass"
    if statuses & {"fail", "error"} or (fail_on == "warn" and "warn" in statuses):
        return "fail"
    return "pass"


def count_by_status(checks: Iterable[Check]) -> dict[str, int]:
    """Return how many checks ended in each status, every status present."""
    counts: dict[str, int] = {status: 0 for status in CHECK_STATUSES}
    for check in checks:
        counts[check.status] += 1
    return counts


class StageClock:
    """Measures a stage: ``started_at`` in UTC ISO-8601 and the elapsed seconds."""

    def __init__(self) -> None:
        self.started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        """Return seconds since the clock started."""
        return time.perf_counter() - self._start


def _require(record: Mapping[str, Any], key: str, kind: type, source: str) -> Any:
    if key not in record:
        raise ConfigError(f"{source}: missing field {key!r}")
    value = record[key]
    if not isinstance(value, kind):
        raise ConfigError(f"{source}: field {key!r} must be a {kind.__name__}")
    return value


def _json_scalar(value: Scalar) -> Scalar:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return cast(Scalar, value.item())  # type: ignore[union-attr]
    return value


def _json_clean(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _json_clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_clean(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):
        return _json_clean(value.tolist())
    return value
