"""The stage-result contract: every stage writes ``.shipml/results/<stage>.json``.

``report`` reads nothing else. A result is a frozen dataclass; JSON is its only serialisation here,
renderers (markdown, HTML, JUnit) live with the code that needs them.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
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


@dataclass(frozen=True)
class StageResult:
    """What one stage concluded; exactly the JSON object of design.md."""

    stage: str
    status: StageStatus
    summary: str
    started_at: str
    duration_s: float
    metrics: Mapping[str, Any] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()
    artifacts: tuple[Artifact, ...] = ()

    @property
    def exit_code(self) -> int:
        """Return 0 for pass/skipped, 1 for fail, 3 for error (a stage crashing on infrastructure)."""
        return {"pass": 0, "skipped": 0, "fail": 1, "error": 3}[self.status]

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
        }

    def to_json(self) -> str:
        """Return the result as pretty, strict JSON (NaN and infinities become null)."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    def write(self, output_dir: Path) -> Path:
        """Write ``<output_dir>/results/<stage>.json`` atomically and return its path."""
        path = results_path(output_dir, self.stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{self.stage}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.to_json())
        os.replace(tmp_name, path)
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
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{source}: not a shipml stage result ({exc})") from None

    @classmethod
    def read(cls, path: Path) -> StageResult:
        """Read a result file; raise ConfigError when it is missing or not a stage result."""
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: result file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path}: a stage result must be a JSON object")
        return cls.from_dict(record, source=str(path))


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
