"""The optimize stage: transform, check parity on real rows, time the survivors, keep one."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shipml.ci import Platform
from shipml.config import Config
from shipml.data import load_table
from shipml.errors import ConfigError, first_line
from shipml.measure import stats
from shipml.measure.harness import Harness, HarnessSettings, interleave, resolve_providers
from shipml.measure.inputs import DataFile, InputPlan, build_input_plan, input_settings
from shipml.optimize import _parity, _transforms
from shipml.results import (
    Artifact,
    Check,
    Column,
    Handoff,
    StageClock,
    StageResult,
    Table,
    stage_status,
)

log = logging.getLogger("shipml.optimize")

STAGE = "optimize"
NO_MODEL = (
    "no model to optimize: set model.path (or optimize.model, or --model), e.g.\n"
    "  model:\n    path: model.onnx"
)
OUTPUT_IS_ORIGINAL = (
    "optimize.output {output} is the model being optimized ({model_key}); the original stays "
    "as it is, so write the kept model elsewhere, e.g.\n"
    "  optimize:\n    output: dist/model.optimized.onnx"
)
#: confidence of the interval that must lie below 1 for a candidate to displace the original
TIMING_CONFIDENCE = 0.95


@dataclass(frozen=True)
class OptimizeRun:
    """A finished optimize stage: its result, the kept model and the result file."""

    result: StageResult
    result_path: Path
    model_path: Path
    chosen: str


def run_optimize(config: Config, output_dir: Path, platform: Platform) -> OptimizeRun:
    """Apply the configured transforms, check each one's parity, keep one and write the result.

    Returns the run (status pass or fail). Raises ConfigError for bad configuration or input
    (a missing model, calibration or parity data whose columns do not fit the model, ...).
    """
    clock = StageClock()
    section = config.section(STAGE)
    model_cfg = config.section("model")
    original, model_key = _original(config, section)
    output = _output(config, section, output_dir, original, model_key)
    candidates = list(section["candidates"])
    pick = section["pick"]
    if pick not in ("fastest", "none") and pick not in candidates:
        raise ConfigError(
            f"{config.where(STAGE, 'pick')}: pick is {pick!r}, which is not among the "
            f"candidates {candidates}; add it to optimize.candidates or pick fastest"
        )
    parity_cfg = section["parity"]
    parity_plan = _plan(config, original, model_key, parity_cfg.get("data"),
                        (STAGE, "parity", "data"), ("test", "train"), _parity.BATCH)
    calibration_plan: InputPlan | None = None
    static_cfg = section["static_int8"]
    if "static_int8" in candidates:
        calibration_plan = _plan(config, original, model_key, static_cfg.get("data"),
                                 (STAGE, "static_int8", "data"), ("train", "test"),
                                 _transforms.CALIBRATION_BATCH)
    kind: _parity.Kind = (parity_cfg["kind"] if parity_cfg["kind"] != "auto"
                          else _parity.infer_kind(parity_plan, original, model_cfg["task"]))
    rows = _parity_rows(parity_plan, int(parity_cfg["rows"]), kind)
    truth = _truth(parity_plan, model_cfg, rows, kind)
    features = model_cfg.get("features")
    try:
        reference = _parity.answers(original, parity_plan, rows, kind, features)
    except ConfigError:
        raise
    except Exception as exc:  # onnxruntime's own types: the model cannot run on these inputs
        raise ConfigError(
            f"{model_key}: onnxruntime could not run {original} on the parity inputs "
            f"({parity_plan.data_source or 'synthetic tensors'}): {first_line(exc)}"
        ) from None

    work = output_dir / "artifacts" / "optimize"
    work.mkdir(parents=True, exist_ok=True)
    checks: list[Check] = []
    records: dict[str, dict[str, Any]] = {}
    holding: list[str] = []
    source = original
    for name in candidates:
        target = work / f"model.{name}.onnx"
        record: dict[str, Any] = {"path": str(target)}
        records[name] = record
        try:
            if source == original:  # once, and only when a transform is tried
                source = _transforms.normalized(original, work / "model.source.onnx")
            _transforms.apply(name, source, target, section[name] if name in section else {},
                              calibration_plan, int(static_cfg["rows"]))
            answered = _parity.answers(target, parity_plan, rows, kind, features)
        except ConfigError:
            raise
        except Exception as exc:  # a transform that cannot apply is an ERROR record
            detail = first_line(exc)
            checks.append(Check(name=f"{name} transform applies to the model", status="error",
                                detail=f"{type(exc).__name__}: {detail}", group=f"parity:{name}"))
            record.update({"error": detail, "holds_parity": False})
            log.info("optimize: %s: ERROR — %s", name, detail)
            continue
        figures = _parity.measure(reference, answered, truth)
        candidate_checks = _parity.judge(name, figures, parity_cfg, rows)
        checks.extend(candidate_checks)
        holds = all(check.status == "pass" for check in candidate_checks)
        record.update({"size_bytes": target.stat().st_size, "parity": figures,
                       "holds_parity": holds})
        for check in candidate_checks:
            log.info("optimize: %s: %s — %s", check.name, check.status.upper(), check.detail)
        if holds:
            holding.append(name)

    timing: dict[str, Any] = {}
    chosen = "original"
    if pick == "fastest" and holding:
        timing = _time(config, original, model_key, [work / f"model.{n}.onnx" for n in holding],
                       ["original", *holding], section["timing"])
        # A candidate displaces the original only when it is faster beyond noise: the whole
        # interval of its p50 ratio to the original lies below 1.
        faster = [name for name in holding if timing["ratio_to_original"][name][2] < 1.0]
        if faster:
            chosen = min(faster, key=lambda name: timing["p50_ms"][name])
        for name in holding:
            records[name]["p50_ms"] = timing["p50_ms"][name]
            records[name]["speedup"] = timing["speedup"][name]
    elif pick not in ("fastest", "none") and pick in holding:
        chosen = pick
    chosen_path = original if chosen == "original" else work / f"model.{chosen}.onnx"
    shutil.copyfile(chosen_path, output)
    log.info("optimize: keeping %s → %s", chosen, output)

    metrics: dict[str, Any] = {
        "original": {"path": str(original), "size_bytes": original.stat().st_size},
        "candidates": records,
        "parity_kind": kind,
        "parity_rows": rows,
        "parity_source": parity_plan.source,
        "pick": pick,
        "chosen": chosen,
        "output": str(output),
        "timing": timing,
    }
    if timing:
        metrics["original"]["p50_ms"] = timing["p50_ms"]["original"]
    status = stage_status(checks, section["fail_on"])
    result = StageResult(
        stage=STAGE, status=status, summary=summary(chosen, records, checks, timing),
        started_at=clock.started_at, duration_s=clock.elapsed(), metrics=metrics,
        checks=tuple(checks),
        artifacts=(Artifact(name=output.name, path=str(output)),),
        handoff=(Handoff(kind="model", path=str(output), sha256=_sha256(output)),),
        tables=(candidates_table(metrics),),
    )
    result_path = result.write(output_dir)
    return OptimizeRun(result=result, result_path=result_path, model_path=output, chosen=chosen)


def _original(config: Config, section: Mapping[str, Any]) -> tuple[Path, str]:
    if section.get("model"):
        return (config.resolve_path(section["model"], STAGE, "model"),
                config.where(STAGE, "model"))
    model = config.section("model")
    if not model.get("path"):
        raise ConfigError(NO_MODEL)
    return config.resolve_path(model["path"], "model", "path"), config.where("model", "path")


def _output(config: Config, section: Mapping[str, Any], output_dir: Path, original: Path,
            model_key: str) -> Path:
    """Return where the kept model goes; ConfigError, before any work, when that is the original
    itself or a place no file can be written."""
    where = config.where(STAGE, "output")
    if not section.get("output"):
        output = output_dir / "artifacts" / "model.optimized.onnx"
        where = f"--output-dir {output_dir}"
    else:
        output = config.resolve_path(section["output"], STAGE, "output")
    if _same_file(output, original):
        raise ConfigError(f"{where}: " + OUTPUT_IS_ORIGINAL.format(output=output,
                                                                    model_key=model_key))
    if output.is_dir():
        raise ConfigError(f"{where}: {output} is a directory; give the path of a file, e.g. "
                          f"dist/model.optimized.onnx")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot create the folder of {output}: "
                          f"{exc.strerror or first_line(exc)}") from None
    return output


def _same_file(first: Path, second: Path) -> bool:
    if first.resolve() == second.resolve():
        return True
    try:
        return os.path.samefile(first, second)  # hard links, bind mounts
    except OSError:
        return False


def _plan(config: Config, original: Path, model_key: str, value: str | None,
          key: tuple[str, ...], prefer: Sequence[str], batch: int) -> InputPlan:
    settings = input_settings(config, STAGE, prefer=prefer)
    if value:
        settings = settings.preferring(DataFile(config.resolve_path(value, *key),
                                                config.where(*key)))
    return build_input_plan(original, settings, key=model_key, batch_sizes=[batch])


def _parity_rows(plan: InputPlan, wanted: int, kind: _parity.Kind) -> int:
    if plan.row_count is not None:
        return min(wanted, plan.row_count)
    # Synthetic tensors: enough rows to see a difference, few enough for a big encoder.
    return min(wanted, 64) if kind == "embedding" else wanted


def _truth(plan: InputPlan, model_cfg: Mapping[str, Any], rows: int, kind: _parity.Kind
           ) -> NDArray[Any] | None:
    label = model_cfg.get("label")
    if kind != "classification" or not label or plan.table is None:
        return None
    table = load_table(Path(plan.data_source), "model.label")
    if label not in table.frame.columns:
        return None
    return np.asarray(table.frame[label].to_numpy()[:rows])


def _time(config: Config, original: Path, model_key: str, candidates: list[Path],
          names: list[str], timing_cfg: Mapping[str, Any]) -> dict[str, Any]:
    threads = timing_cfg["threads"]
    settings = HarnessSettings(
        providers=resolve_providers(timing_cfg["provider"],
                                    config.where(STAGE, "timing", "provider")),
        intra_op=int(threads["intra_op"]), inter_op=int(threads["inter_op"]),
        warmup=int(timing_cfg["warmup"]), process_time_s=float(timing_cfg["process_time_s"]),
        confidence=TIMING_CONFIDENCE,
    )
    batch = int(timing_cfg["batch_size"])
    plan = build_input_plan(original, input_settings(config, STAGE), key=model_key,
                            batch_sizes=[batch])
    with Harness(settings) as harness:
        feeds = harness.save_feeds(plan.feeds(batch))
        measured = interleave(harness, [original, *candidates], feeds, int(timing_cfg["rounds"]),
                              time_s=float(timing_cfg["process_time_s"]), labels=names)
    p50 = {name: float(np.median(m.pooled())) for name, m in zip(names, measured, strict=True)}
    speedup = {name: p50["original"] / p50[name] for name in names}
    ratios = {}
    for name, measurement in zip(names[1:], measured[1:], strict=True):
        ratio = stats.ratio_of_medians(measured[0].groups, measurement.groups,
                                       TIMING_CONFIDENCE)
        ratios[name] = [round(ratio.estimate, 4), round(ratio.low, 4), round(ratio.high, 4)]
    log.info("optimize: p50 at batch %d: %s", batch,
             ", ".join(f"{name} {value:.4g} ms" for name, value in p50.items()))
    return {"batch_size": batch, "rounds": int(timing_cfg["rounds"]),
            "p50_ms": {k: round(v, 6) for k, v in p50.items()},
            "speedup": {k: round(v, 4) for k, v in speedup.items()},
            "ratio_to_original": ratios}


def candidates_table(metrics: Mapping[str, Any]) -> Table:
    """Return the table of the original and each candidate: size, parity, p50 and speed-up."""
    columns = (Column("candidate", "candidate"), Column("size_kib", "size", "KiB"),
               Column("parity", "parity"), Column("p50_ms", "p50", "ms"),
               Column("speedup", "speed-up", "×"))
    original = metrics["original"]
    rows: list[dict[str, Any]] = [{
        "candidate": "original" + (" (kept)" if metrics["chosen"] == "original" else ""),
        "size_kib": round(original["size_bytes"] / 1024, 1), "parity": "",
        "p50_ms": original.get("p50_ms"), "speedup": 1.0 if original.get("p50_ms") else None,
    }]
    for name, record in metrics["candidates"].items():
        if record.get("error"):
            parity = f"error: {record['error']}"
        else:
            parity = "holds" if record.get("holds_parity") else "broken"
        size = record.get("size_bytes")
        rows.append({
            "candidate": name + (" (kept)" if name == metrics["chosen"] else ""),
            "size_kib": round(size / 1024, 1) if size else None, "parity": parity,
            "p50_ms": record.get("p50_ms"), "speedup": record.get("speedup"),
        })
    return Table(title="Optimization candidates", columns=columns, rows=tuple(rows))


def summary(chosen: str, records: Mapping[str, Mapping[str, Any]], checks: Sequence[Check],
            timing: Mapping[str, Any]) -> str:
    """Return the one-line summary: how many candidates hold parity, which one was kept, and
    which could not be applied (errors) apart from which broke parity (failed checks)."""
    held = [name for name, record in records.items() if record.get("holds_parity")]
    text = f"{len(held)}/{len(records)} candidates hold parity"
    if chosen != "original" and timing:
        text += f"; kept {chosen} ({timing['speedup'][chosen]:.2f}× faster at p50)"
    elif chosen != "original":
        text += f"; kept {chosen}"
    elif timing:
        text += "; kept the original (no candidate was faster beyond noise)"
    else:
        text += "; kept the original"
    errored = [name for name, record in records.items() if record.get("error")]
    broken = sorted({c.group.split(":", 1)[1] for c in checks
                     if c.status == "fail" and ":" in c.group} - set(errored))
    notes = []
    if errored:
        notes.append(f"could not apply: {', '.join(errored)}")
    if broken:
        notes.append(f"broke parity: {', '.join(broken)}")
    if notes:
        text += f" ({'; '.join(notes)})"
    return text


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
