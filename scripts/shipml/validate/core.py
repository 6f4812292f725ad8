"""The validate stage: load once, predict once, run deepchecks and the model tests, judge."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipml.ci import Platform
from shipml.config import Config
from shipml.junit import render_junit
from shipml.results import (
    Artifact,
    Check,
    StageClock,
    StageResult,
    count_by_status,
    stage_status,
)
from shipml.validate import _deepchecks
from shipml.validate._baseline import compare_with_baseline
from shipml.validate._inputs import load_inputs
from shipml.validate._parallel import start_workers
from shipml.validate._pytest import model_test_env, run_model_tests

log = logging.getLogger("shipml.validate")

STAGE = "validate"


@dataclass(frozen=True)
class ValidateRun:
    """A finished validation: the stage result and where its files went."""

    result: StageResult
    result_path: Path
    html_path: Path | None
    junit_path: Path
    #: the config line of each explicit check, by check class name (for annotations)
    check_lines: Mapping[str, int] = field(default_factory=dict)


def run_validate(config: Config, output_dir: Path, platform: Platform) -> ValidateRun:
    """Run the validation gate and write its result, HTML report and JUnit XML.

    Returns the run (status pass or fail). Raises ConfigError for bad configuration or input.
    """
    clock = StageClock()
    section = config.section("validate")
    artifacts_dir = output_dir / "artifacts"
    workers = section["workers"] if section["workers"] != "auto" else _usable_cpus()
    # The process workers fork from imports deepchecks while this one builds the plan, loads the
    # data and runs predictions.
    start_workers(int(workers))
    # Build the plan first: a typo in a check name should fail before minutes of predictions.
    plan = _deepchecks.build_plan(config)
    inputs = load_inputs(config, batch_size=section["batch_size"])
    log.info("validate: %s model, %d train rows, %d test rows, %d features (%d categorical); "
             "predictions in %.2f s", inputs.task, len(inputs.train.frame),
             len(inputs.test.frame), len(inputs.features), len(inputs.categorical),
             inputs.prediction_seconds)
    # Before deepchecks' minutes: a baseline that cannot be read is bad input, said at once.
    comparison = compare_with_baseline(config, inputs, section["batch_size"])
    baseline_checks = [comparison.check()] if comparison is not None else []

    importance = None
    importance_seconds = 0.0
    if section["feature_importance"] == "permutation" and plan.suite is not None:
        started = time.perf_counter()
        importance = _deepchecks.permutation_importance(
            inputs, rows=section["feature_importance_rows"], seed=section["random_state"])
        importance_seconds = time.perf_counter() - started

    started = time.perf_counter()
    outcome = _deepchecks.run_plan(plan, inputs, feature_importance=importance,
                                   with_display=section["html"], workers=int(workers))
    deepchecks_seconds = time.perf_counter() - started

    html_path: Path | None = None
    artifacts = []
    if section["html"] and _deepchecks.save_html(outcome, artifacts_dir / "validate.html"):
        html_path = artifacts_dir / "validate.html"
        artifacts.append(Artifact(name="validate.html", path=str(html_path)))

    pytest_checks: list[Check] = []
    if section["pytest"]:
        raw_paths = section["pytest"]
        raw_list = [raw_paths] if isinstance(raw_paths, str) else list(raw_paths)
        paths = [config.resolve_path(p, "validate", "pytest") for p in raw_list]
        model_section = config.section("model")
        env = model_test_env(
            os.environ, config.file, inputs.model.path,
            config.resolve_path(model_section["train"], "model", "train"),
            config.resolve_path(model_section["test"], "model", "test"),
        )
        pytest_junit = artifacts_dir / "validate-pytest.xml"
        tests = run_model_tests(paths, section["pytest_args"], where=config.where(
            "validate", "pytest"), cwd=config.base_dir, junit_path=pytest_junit, environ=env)
        pytest_checks = tests.checks

    checks = tuple(outcome.checks + pytest_checks + baseline_checks)
    status = stage_status(checks, section["fail_on"])
    counts = count_by_status(checks)
    metrics: dict[str, Any] = {
        "task": inputs.task,
        "rows_train": len(inputs.train.frame),
        "rows_test": len(inputs.test.frame),
        "features": len(inputs.features),
        "categorical_features": inputs.categorical,
        "classes": inputs.classes,
        "conditions": counts,
        "pytest": count_by_status(pytest_checks),
        "not_run": outcome.not_run,
        "display_only": outcome.display_only,
        "prediction_s": round(inputs.prediction_seconds, 3),
        "feature_importance_s": round(importance_seconds, 3),
        "deepchecks_s": round(deepchecks_seconds, 3),
        "workers": int(workers),
    }
    deltas = []
    if comparison is not None:
        metrics["baseline"] = comparison.to_metrics()
        delta = comparison.delta()
        deltas = [delta] if delta is not None else []
    summary = _summary(checks, counts)
    if comparison is not None:
        summary += f"; {baseline_checks[0].observed}"
    junit_path = artifacts_dir / "validate.junit.xml"
    artifacts.append(Artifact(name="validate.junit.xml", path=str(junit_path)))
    result = StageResult(
        stage=STAGE, status=status, summary=summary, started_at=clock.started_at,
        duration_s=clock.elapsed(), metrics=metrics, checks=checks, artifacts=tuple(artifacts),
        deltas=tuple(deltas),
    )
    junit_path.parent.mkdir(parents=True, exist_ok=True)
    junit_path.write_text(render_junit(result, [
        ("shipml.validate.deepchecks", outcome.checks), ("shipml.validate.pytest", pytest_checks),
        ("shipml.validate.baseline", baseline_checks),
    ]), encoding="utf-8")
    result_path = result.write(output_dir)
    # The command's conclusion annotates the checks that did not pass (shipml._stage).
    return ValidateRun(result=result, result_path=result_path, html_path=html_path,
                       junit_path=junit_path, check_lines=plan.config_lines)


def _summary(checks: tuple[Check, ...], counts: dict[str, int]) -> str:
    if not checks:
        return "no conditions to judge"
    failed = sorted({check.group or check.name for check in checks
                     if check.status in ("fail", "error")})
    text = f"{counts['pass']}/{len(checks)} conditions passed"
    extra = []
    if counts["fail"]:
        extra.append(f"{counts['fail']} failed")
    if counts["error"]:
        extra.append(f"{counts['error']} errored")
    if counts["warn"]:
        extra.append(f"{counts['warn']} warned")
    if extra:
        text += ", " + ", ".join(extra)
    if failed:
        shown = ", ".join(failed[:5]) + (", …" if len(failed) > 5 else "")
        text += f" ({shown})"
    return text


def _usable_cpus() -> int:
    """Return the CPU cores this process may run on (its affinity, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1
