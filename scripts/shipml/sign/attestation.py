"""shipml's gates attestation: the predicate that says what the gates concluded.

Predicate type ``https://shipml.dev/attestation/gates/v1``. Its predicate::

    {"verdict": "pass" | "fail",          # pass: at least one gate, every one passed
     "model": {"path": "model.onnx", "sha256": "…"} | null,
     "gates": [{"stage": "validate", "status": "pass", "summary": "…", "started_at": "…",
                "checks": [{"name": "…", "status": "pass", "observed": 0.91, "threshold": 0.8}],
                "models": [{"path": "…", "sha256": "…"}]}],     # models the stage handed on
     "source": {"repository": "…", "revision": "…", "run": "…"},
     "producer": {"name": "shipml", "version": "0.1.0"}}

Built from ``.shipml/results/<stage>.json`` (:func:`gates_predicate`) and judged by
:func:`judge_predicate`; both are pure functions over data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shipml import __version__
from shipml.results import Check, StageResult

PREDICATE_TYPE = "https://shipml.dev/attestation/gates/v1"


def gates_predicate(results: Iterable[StageResult], *, model: Path | None = None,
                    model_label: str = "", source: Mapping[str, str] | None = None
                    ) -> dict[str, Any]:
    """Return the predicate for ``results`` (the gates' stage results, in pipeline order) and
    the shipped ``model`` file (its sha256 when it exists)."""
    gates = [_gate(result) for result in results]
    verdict = "pass" if gates and all(gate["status"] == "pass" for gate in gates) else "fail"
    model_record = None
    if model is not None and model.is_file():
        model_record = {"path": model_label or model.name, "sha256": file_sha256(model)}
    return {
        "verdict": verdict,
        "model": model_record,
        "gates": gates,
        "source": {key: value for key, value in (source or {}).items() if value},
        "producer": {"name": "shipml", "version": __version__},
    }


def judge_predicate(predicate: Any, *, required: Sequence[str] = (),
                    model_sha256: str = "") -> list[Check]:
    """Return the checks of ``--require-gates`` over a gates predicate: every attested gate
    passed, each ``required`` gate is among them, and (with ``model_sha256``) the attested
    model is that file."""
    if not isinstance(predicate, Mapping) or not isinstance(predicate.get("gates"), list):
        return [Check("the attestation carries shipml's gate results", "fail",
                      detail="its predicate has no 'gates' list")]
    gates = [gate for gate in predicate["gates"] if isinstance(gate, Mapping)]
    checks: list[Check] = []
    if not gates:
        checks.append(Check("the attestation records at least one gate", "fail",
                            detail="it records none: run the gates before shipml sign"))
    for gate in gates:
        stage, status = str(gate.get("stage")), str(gate.get("status"))
        failed = [str(check.get("name")) for check in gate.get("checks") or []
                  if isinstance(check, Mapping) and check.get("status") in ("fail", "error")]
        detail = "" if status == "pass" else (
            f"the attestation says gate {stage} {status}ed" if status == "fail" else
            f"the attestation says gate {stage} ended with status {status}")
        if failed:
            detail += ": " + "; ".join(failed[:5]) + (" …" if len(failed) > 5 else "")
        checks.append(Check(f"gate {stage} passed", "pass" if status == "pass" else "fail",
                            observed=status, threshold="pass", detail=detail))
    present = {str(gate.get("stage")) for gate in gates}
    for stage in required:
        if stage not in present:
            checks.append(Check(f"gate {stage} passed", "fail", observed="missing",
                                threshold="pass",
                                detail=f"the attestation does not record gate {stage}"))
    if model_sha256:
        model = predicate.get("model")
        attested = str(model.get("sha256")) if isinstance(model, Mapping) else ""
        checks.append(Check(
            "the attestation is for this model", "pass" if attested == model_sha256 else "fail",
            observed=attested or None, threshold=model_sha256,
            detail="" if attested == model_sha256 else
            f"the attested model's sha256 is {attested or 'missing'}, the given model's is "
            f"{model_sha256}"))
    return checks


def file_sha256(path: Path) -> str:
    """Return the hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _gate(result: StageResult) -> dict[str, Any]:
    record: dict[str, Any] = {
        "stage": result.stage,
        "status": result.status,
        "summary": result.summary,
        "started_at": result.started_at,
        "checks": [{"name": check.name, "status": check.status, "observed": check.observed,
                    "threshold": check.threshold} for check in result.checks],
    }
    models = [{"path": item.path, "sha256": item.sha256} for item in result.handoff
              if item.kind == "model" and item.sha256]
    if models:
        record["models"] = models
    return record
