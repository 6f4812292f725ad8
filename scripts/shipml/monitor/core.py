"""The monitor stage: production rows against the reference, drift checks, verdict, alert."""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shipml.binding import bind_model, model_classes, predict
from shipml.ci import Platform
from shipml.config import Config
from shipml.data import Table, load_table
from shipml.errors import ConfigError, InfrastructureError, ShipmlError, first_line
from shipml.junit import render_junit
from shipml.monitor import _alert, _checks, _drift, _logs
from shipml.onnx_model import OnnxModel
from shipml.results import (
    Artifact,
    Check,
    Column,
    Delta,
    Series,
    StageClock,
    StageError,
    StageResult,
    stage_status,
)
from shipml.results import (
    Table as ResultTable,
)

log = logging.getLogger("shipml.monitor")

STAGE = "monitor"
NO_MODEL = (
    "model.path is not set: monitor runs the model on the reference data; set it, e.g.\n"
    "  model:\n    path: model.onnx\n    train: data/train.csv\n    label: target"
)
NO_REFERENCE = (
    "monitor.reference: no reference data; set monitor.reference or model.train, e.g.\n"
    "  model:\n    train: data/train.csv"
)
NO_PREDICTIONS = ("{source}: the model cannot run on these rows ({reason}) and no predictions "
                  "were logged for them: prediction drift cannot be judged")
LABELS_NO_IDS = ("monitor.labels.path: labels join logged predictions by request id, and "
                 "monitor.production has no {column!r} column; add it, or leave labels unset")
ISSUE_TITLE = "shipml monitor: drift in {key}"
ALERT_CRASHED = (
    "the alerting step failed ({error}); the verdict above stands. If GitHub answered this, rerun "
    "later; otherwise rerun with --debug for the traceback and report it"
)


@dataclass(frozen=True)
class MonitorRun:
    """A finished monitor run: the result, where its files went, and what alerting did."""

    result: StageResult
    result_path: Path
    html_path: Path | None
    junit_path: Path
    alert: _alert.AlertOutcome = field(default_factory=_alert.AlertOutcome)
    #: an alerting failure (GitHub refused or unreachable): the run's exit code is its code
    alert_error: ShipmlError | None = None



@dataclass(frozen=True)
class _Inputs:
    model: OnnxModel
    reference: Table
    features: list[str]
    categorical: list[str]
    label: str | None
    task: str
    ignored: list[str]


def run_monitor(config: Config, output_dir: Path, platform: Platform, token: str, *,
                now: _dt.datetime | None = None) -> MonitorRun:
    """Judge production against the reference, write the result, HTML and JUnit, then alert.

    Raises ConfigError for bad configuration or input (no logs in the window, a missing
    reference, logs of another model, too many corrupt lines). Alerting errors are returned in
    the run, after the result is written.
    """
    clock = StageClock()
    section = config.section(STAGE)
    moment = now or _dt.datetime.now(_dt.timezone.utc)
    # deepchecks' import (seconds of Python) runs beside the reading of the log (pyarrow's
    # threads, without the GIL), so the log costs little more than the import alone
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shipml-monitor-plan") as pool:
        planned = pool.submit(_drift.build, config)
        try:
            inputs = _load_inputs(config)
            # a mistake in monitor.checks stops the reading: it is said first, as ever
            production = _production(config, section, moment, inputs,
                                     cancelled=lambda: planned.done()
                                     and planned.exception() is not None)
        except BaseException:
            planned.result()
            raise
        drift_plan = planned.result()
    checks: list[Check] = []
    checks += _checks.judge_columns(
        list(production.frame.columns), inputs.features, production.source,
        max_missing=section["columns"]["max_missing"], max_new=section["columns"]["max_new"],
        new_severity=section["columns"]["new_severity"],
        ignored=[c for c in (inputs.label, *inputs.ignored) if c])
    rows = len(production.frame)
    volume = _checks.judge_volume(rows, section["min_records"], production.source)
    checks.append(volume)
    if production.lines:
        checks.append(_checks.judge_corrupt(production.lines, production.corrupt,
                                            section["logs"]["max_corrupt_rate"],
                                            production.corrupt_examples))
    key = section["key"] or _default_key(inputs.model.path)
    metrics: dict[str, Any] = _base_metrics(production, inputs, config, section, moment)
    artifacts_dir = output_dir / "artifacts"
    if volume.status == "error":
        result = StageResult(
            stage=STAGE, status="error", summary=volume.detail, started_at=clock.started_at,
            duration_s=clock.elapsed(), metrics=metrics, checks=tuple(checks),
            error=StageError(kind="config", exit_code=2, message=volume.detail))
        return _finish(result, output_dir, artifacts_dir, section, [], checks, key)

    started = time.perf_counter()
    reference_frame = inputs.reference.frame
    reference_outputs = predict(inputs.model, reference_frame, inputs.features,
                                inputs.reference.source)
    classes = _classes(inputs, reference_outputs)
    production_outputs = _production_outputs(inputs, production, classes)
    metrics["prediction_s"] = round(time.perf_counter() - started, 3)
    frame = production.frame
    if section["labels"]["path"]:
        frame, performance = _performance(config, section, inputs, production, production_outputs,
                                          classes)
        checks.append(performance)
        metrics["labelled_rows"] = int(frame[inputs.label or "label"].notna().sum())
    stats = _checks.measure_columns(reference_frame, frame, inputs.features, inputs.categorical,
                                    section["out_of_range"]["margin"])
    checks += _checks.judge_null_rates(stats, section["null_rate"]["max_increase"],
                                       section["null_rate"]["severity"])
    checks += _checks.judge_out_of_range(stats, section["out_of_range"]["max_rate"],
                                         section["out_of_range"]["severity"])
    started = time.perf_counter()
    drift = _drift.run(
        drift_plan, reference_frame, frame, features=inputs.features,
        categorical=inputs.categorical, label=inputs.label,
        reference_outputs=reference_outputs, production_outputs=production_outputs,
        classes=classes, task=inputs.task)
    metrics["deepchecks_s"] = round(time.perf_counter() - started, 3)
    drifted = _drift.drifted_columns(drift, drift_plan, inputs.categorical)
    metrics.update(drifted_features=drifted, not_run=drift.not_run,
                   prediction_drift=drift.prediction_score[0] if drift.prediction_score else None)
    drift_checks = drift.checks
    all_checks = [*drift_checks, *checks]
    status = stage_status(all_checks, section["fail_on"])
    summary = _summary(status, drifted, len(inputs.features), drift, rows, all_checks)
    if production.sampled_from:
        summary += f"; {production.sampling}"
    result = StageResult(
        stage=STAGE, status=status, summary=summary, started_at=clock.started_at,
        duration_s=clock.elapsed(), metrics=metrics, checks=tuple(all_checks),
        tables=(_column_table(stats, drift, drifted),),
        series=_series(drift),
        deltas=_deltas(reference_outputs, production_outputs, classes))
    run = _finish(result, output_dir, artifacts_dir, section, drift_checks, checks, key)
    return _alerting(run, config, section, platform, token, key, inputs, output_dir, moment)


def _finish(result: StageResult, output_dir: Path, artifacts_dir: Path, section: dict[str, Any],
            drift_checks: Sequence[Check], data_checks: Sequence[Check], key: str) -> MonitorRun:
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    junit_path = artifacts_dir / "monitor.junit.xml"
    html_path = artifacts_dir / "monitor.html" if section["html"] else None
    artifacts = [Artifact(name="monitor.junit.xml", path=str(junit_path))]
    if html_path is not None:
        artifacts.append(Artifact(name="monitor.html", path=str(html_path)))
    result = StageResult(**{**_fields(result), "artifacts": tuple(artifacts),
                            "duration_s": result.duration_s})
    junit_path.write_text(render_junit(result, [("shipml.monitor.drift", drift_checks),
                                                ("shipml.monitor.data", data_checks)]),
                          encoding="utf-8")
    if html_path is not None:
        html_path.write_text(_templates(html=True).get_template("monitor.html.j2").render(
            result=result, metrics=result.metrics, key=key), encoding="utf-8")
    return MonitorRun(result=result, result_path=result.write(output_dir), html_path=html_path,
                      junit_path=junit_path)


def _fields(result: StageResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in result.__dataclass_fields__}


# --- inputs --------------------------------------------------------------------------------------


def _load_inputs(config: Config) -> _Inputs:
    model_section = config.section("model")
    section = config.section(STAGE)
    if not model_section.get("path"):
        raise ConfigError(NO_MODEL)
    model_path = config.resolve_path(model_section["path"], "model", "path")
    model = OnnxModel(model_path, key=config.where("model", "path"),
                      features=model_section.get("features"))
    if section["reference"]:
        reference = load_table(config.resolve_path(section["reference"], STAGE, "reference"),
                               config.where(STAGE, "reference"))
    elif model_section.get("train"):
        reference = load_table(config.resolve_path(model_section["train"], "model", "train"),
                               config.where("model", "train"))
    else:
        raise ConfigError(NO_REFERENCE)
    label = model_section.get("label") or None
    ignored = list(model_section.get("ignore_columns") or [])
    binding = bind_model(model, reference, label=label, ignore_columns=ignored,
                         categorical=model_section.get("categorical_features"),
                         task=model_section.get("task") or "auto",
                         where=lambda key: config.where("model", key))
    return _Inputs(model=model, reference=reference, features=binding.features,
                   categorical=binding.categorical, label=label, task=binding.task,
                   ignored=ignored)


def _production(config: Config, section: dict[str, Any], now: _dt.datetime,
                inputs: _Inputs, *, cancelled: Callable[[], bool] = lambda: False
                ) -> _logs.Production:
    logs = section["logs"]
    if logs["path"] and section["production"]:
        raise ConfigError(_logs.BOTH_INPUTS.format(logs=config.where(STAGE, "logs", "path"),
                                                   production=config.where(STAGE, "production")))
    expected = _expected_kinds(inputs)
    if section["production"]:
        key = config.where(STAGE, "production")
        table = load_table(config.resolve_path(section["production"], STAGE, "production"), key)
        frame = _logs.conform_table(table.frame, expected, key, table.source,
                                    inputs.reference.source)
        return _logs.sample_table(_logs.Production(frame=frame, source=table.source),
                                  section["max_rows"], section["random_state"])
    if not logs["path"]:
        raise ConfigError(_logs.NO_INPUT)
    key = config.where(STAGE, "logs", "path")
    window = _logs.Window(
        since=_logs.parse_time(logs["since"], config.where(STAGE, "logs", "since"), now)
        if logs["since"] else None,
        until=_logs.parse_time(logs["until"], config.where(STAGE, "logs", "until"), now)
        if logs["until"] else None)
    files = _logs.find_log_files(config.resolve_path(logs["path"], STAGE, "logs", "path"), key)
    started = time.perf_counter()
    production = _logs.read_logs(files, key, window, version=logs["version"],
                                 max_corrupt_rate=logs["max_corrupt_rate"],
                                 max_line_bytes=int(logs["max_line_mb"] * 2**20),
                                 expected=expected, reference=inputs.reference.source,
                                 max_rows=section["max_rows"], seed=section["random_state"],
                                 cancelled=cancelled)
    seconds = time.perf_counter() - started
    log.info("monitor: %d rows from %d records in %d files (%d corrupt lines skipped) in %.1f s%s",
             len(production.frame), production.records, len(files), production.corrupt,
             seconds, f"; {production.sampling}" if production.sampled_from else "")
    return replace(production, read_s=round(seconds, 3))


def _expected_kinds(inputs: _Inputs) -> dict[str, _logs.Kind]:
    """Return the kind of each feature as the reference has it: numbers where its column is
    numeric (and the model does not read the feature as text), text otherwise."""
    text_inputs = ({spec.name for spec in inputs.model.inputs if spec.type == "tensor(string)"}
                   if inputs.model.layout == "columns" else set())
    frame = inputs.reference.frame
    return {name: "number" if pd.api.types.is_numeric_dtype(frame[name])
            and name not in text_inputs else "text"
            for name in inputs.features if name in frame.columns}


def _classes(inputs: _Inputs,
             reference_outputs: tuple[NDArray[Any], NDArray[Any] | None]) -> list[Any] | None:
    predictions, probabilities = reference_outputs
    if probabilities is None:
        return None
    frame = inputs.reference.frame
    observed = [frame[inputs.label]] if inputs.label in frame.columns else []
    return model_classes(inputs.model, probabilities.shape[1], [*observed, predictions])


def _production_outputs(inputs: _Inputs, production: _logs.Production,
                        classes: list[Any] | None) -> tuple[NDArray[Any], NDArray[Any] | None]:
    logged_proba = production.probabilities
    if classes is not None and logged_proba is not None and logged_proba.shape[1] != len(classes):
        logged_proba = None
    if production.predictions is not None and (classes is None or logged_proba is not None):
        return production.predictions, logged_proba
    missing = [name for name in inputs.features if name not in production.frame.columns]
    if missing:
        log.warning(NO_PREDICTIONS.format(source=production.source,
                                          reason=f"it lacks {', '.join(missing)}"))
        empty = np.full(len(production.frame), np.nan)
        return (production.predictions if production.predictions is not None else empty), None
    return predict(inputs.model, production.frame, inputs.features, production.source)


def _performance(config: Config, section: dict[str, Any], inputs: _Inputs,
                 production: _logs.Production,
                 outputs: tuple[NDArray[Any], NDArray[Any] | None],
                 classes: list[Any] | None) -> tuple[pd.DataFrame, Check]:
    """Join the late labels by request id (and row) and judge performance against them."""
    labels = section["labels"]
    key = config.where(STAGE, "labels", "path")
    path = config.resolve_path(labels["path"], STAGE, "labels", "path")
    table = _read_labels(path, key)
    id_column = labels["id_column"]
    label_column = labels["label_column"] or (inputs.label if inputs.label in table.columns
                                              else "label")
    for wanted in (id_column, label_column):
        if wanted not in table.columns:
            raise ConfigError(f"{key}: {path} has no column {wanted!r} (columns: "
                              f"{', '.join(map(str, table.columns))}); set "
                              f"monitor.labels.id_column / label_column")
    frame = production.frame.copy()
    if production.request_ids is not None:
        ids = production.request_ids
        positions = production.request_rows
    elif id_column in frame.columns:
        ids = frame[id_column].astype(str).to_numpy()
        positions = np.zeros(len(frame), dtype=np.int64)
    else:
        raise ConfigError(LABELS_NO_IDS.format(column=id_column))
    rows = table["row"].fillna(0).astype(int) if "row" in table.columns else 0
    lookup = pd.Series(table[label_column].to_numpy(),
                       index=pd.MultiIndex.from_arrays([table[id_column].astype(str),
                                                        pd.Series(rows, index=table.index)
                                                        if not isinstance(rows, int)
                                                        else np.zeros(len(table), dtype=int)]))
    lookup = lookup[~lookup.index.duplicated(keep="last")]
    joined = lookup.reindex(pd.MultiIndex.from_arrays([ids.astype(str), positions]))
    target = inputs.label or "label"
    frame[target] = joined.to_numpy()
    mask = frame[target].notna().to_numpy()
    metric = _checks.choose_metric(labels["metric"], inputs.task, outputs[1] is not None)
    truth = frame[target].to_numpy()[mask]
    production_score = (_checks.score(metric, truth, np.asarray(outputs[0])[mask],
                                      outputs[1][mask] if outputs[1] is not None else None,
                                      classes) if mask.any() else float("nan"))
    reference_score = _reference_score(config, inputs, metric, classes)
    return frame, _checks.judge_performance(metric, production_score, reference_score,
                                            int(mask.sum()), labels["max_drop"],
                                            labels["min_rows"])


def _read_labels(path: Path, key: str) -> pd.DataFrame:
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        if not path.is_file():
            raise ConfigError(f"{key}: labels file {path} not found")
        try:
            return pd.read_json(path, lines=True, dtype=False)
        except ValueError as exc:
            raise ConfigError(f"{key}: cannot read {path}: {first_line(exc)}") from None
    return load_table(path, key).frame


def _reference_score(config: Config, inputs: _Inputs, metric: _checks.Metric,
                     classes: list[Any] | None) -> float:
    model_section = config.section("model")
    table = inputs.reference
    if model_section.get("test"):
        table = load_table(config.resolve_path(model_section["test"], "model", "test"),
                           config.where("model", "test"))
    if not inputs.label or inputs.label not in table.frame.columns:
        raise ConfigError("monitor.labels: the reference performance needs model.label and its "
                          "column in model.test (or the reference data)")
    frame = table.frame[table.frame[inputs.label].notna()]
    predictions, probabilities = predict(inputs.model, frame, inputs.features, table.source)
    return _checks.score(metric, frame[inputs.label].to_numpy(), predictions, probabilities,
                         classes)


# --- figures -------------------------------------------------------------------------------------


def _base_metrics(production: _logs.Production, inputs: _Inputs, config: Config,
                  section: dict[str, Any], now: _dt.datetime) -> dict[str, Any]:
    logs = section["logs"]
    window = (f"{production.first_ts or '?'} to {production.last_ts or '?'}"
              if production.lines else "(a table: no timestamps)")
    return {
        "rows": len(production.frame),
        # "sampled 1,000,000 of 3,412,007 rows (…)" past monitor.max_rows, else None
        "sampling": production.sampling or None,
        "rows_read": production.sampled_from or len(production.frame),
        "read_s": production.read_s,
        "source": production.source,
        "files": list(production.files),
        "log_lines": production.lines,
        "records": production.records,
        "corrupt_lines": production.corrupt,
        "outside_window": production.outside_window,
        "other_versions": production.other_versions,
        "versions": production.versions,
        "window": window,
        "since": logs["since"], "until": logs["until"],
        "reference": inputs.reference.source,
        "reference_rows": len(inputs.reference.frame),
        "features": len(inputs.features),
        "categorical_features": inputs.categorical,
        "task": inputs.task,
        "checked_at": now.isoformat(timespec="seconds"),
    }


def _column_table(stats: Sequence[_checks.ColumnStats], drift: _drift.DriftOutcome,
                  drifted: Sequence[str]) -> ResultTable:
    rows = []
    by_name = {column.name: column for column in stats}
    names = list(dict.fromkeys([*drift.feature_scores, *by_name]))
    for name in names:
        score, method = drift.feature_scores.get(name, (None, ""))
        column = by_name.get(name)
        rows.append({
            "feature": name,
            "drift": round(score, 4) if score is not None else None,
            "method": method,
            "drifted": name in drifted,
            "null_reference": round(column.reference_null_rate, 4) if column else None,
            "null_production": round(column.production_null_rate, 4) if column else None,
            "out_of_range": round(column.out_of_range_rate, 4) if column else None,
        })
    rows.sort(key=lambda row: -(row["drift"] or 0.0))  # type: ignore[operator]
    return ResultTable(
        title="Drift per feature",
        columns=(Column("feature", "feature"), Column("drift", "drift score"),
                 Column("method", "method"), Column("drifted", "drifted"),
                 Column("null_reference", "null rate, reference"),
                 Column("null_production", "null rate, production"),
                 Column("out_of_range", "out of range")),
        rows=tuple(rows))


def _series(drift: _drift.DriftOutcome) -> tuple[Series, ...]:
    if not drift.feature_scores:
        return ()
    ordered = sorted(drift.feature_scores.items(), key=lambda item: -item[1][0])[:20]
    return (Series(title="Drift score per feature", x_label="feature", y_label="drift score",
                   categories=tuple(name for name, _ in ordered),
                   values=tuple(round(score, 4) for _, (score, _m) in ordered), kind="bar"),)


def _deltas(reference: tuple[NDArray[Any], NDArray[Any] | None],
            production: tuple[NDArray[Any], NDArray[Any] | None],
            classes: list[Any] | None) -> tuple[Delta, ...]:
    if reference[1] is not None and production[1] is not None and classes:
        return (Delta(name=f"share predicted {classes[-1]}",
                      baseline=float(np.mean(reference[1][:, -1] >= 0.5)) if len(classes) == 2
                      else float(np.mean(np.argmax(reference[1], axis=1) == len(classes) - 1)),
                      candidate=float(np.mean(np.argmax(production[1], axis=1)
                                              == len(classes) - 1)),
                      higher_is_better=True),)
    try:
        base = float(np.mean(np.asarray(reference[0], dtype=float)))
        now = float(np.mean(np.asarray(production[0], dtype=float)))
    except (TypeError, ValueError):
        return ()
    if not (np.isfinite(base) and np.isfinite(now)):
        return ()
    return (Delta(name="mean prediction", baseline=base, candidate=now, higher_is_better=True),)


def _summary(status: str, drifted: Sequence[str], features: int, drift: _drift.DriftOutcome,
             rows: int, checks: Sequence[Check]) -> str:
    parts = []
    if drifted:
        shown = ", ".join(drifted[:6]) + (", …" if len(drifted) > 6 else "")
        parts.append(f"drift in {len(drifted)} of {features} features ({shown})")
    failed_groups = sorted({check.group or check.name for check in checks
                            if check.status in ("fail", "error")})
    if drift.prediction_score is not None and "PredictionDrift" in failed_groups:
        parts.append(f"prediction drift {drift.prediction_score[0]:.2f}")
    others = [group for group in failed_groups
              if group not in ("FeatureDrift", "PredictionDrift")]
    if others:
        parts.append("failed: " + ", ".join(others))
    if not parts:
        if status == "fail":
            return f"{sum(c.status == 'warn' for c in checks)} checks warned on {rows} rows"
        return f"no drift in {features} features and the predictions over {rows} rows"
    return "; ".join(parts) + f" ({rows} rows)"


# --- alerting ------------------------------------------------------------------------------------


def _alerting(run: MonitorRun, config: Config, section: dict[str, Any], platform: Platform,
              token: str, key: str, inputs: _Inputs, output_dir: Path,
              now: _dt.datetime) -> MonitorRun:
    alert = section["alert"]
    dispatch_section = alert["dispatch"]
    event_type = dispatch_section["event_type"]
    if not alert["issue"] and not event_type:
        return run
    result = run.result
    drifted = result.status == "fail"
    repository = alert["repository"] or platform.repository() or ""
    dispatch_target = ((dispatch_section["repository"] or repository, event_type)
                       if event_type else None)
    outcome = _alert.AlertOutcome()
    # Whatever the alerting step hits, the verdict stands: the failure goes beside it.
    try:
        message = _message(result, key, alert, platform, inputs, drifted)
        if platform.name in ("act", "local"):
            outcome = _alert.dry_run(output_dir / "monitor" / "alert.json", platform.name,
                                     repository, message, drifted, dispatch_target,
                                     alert["on_clear"])
            return _with_alert(run, outcome, None)
        if not token:
            raise ConfigError(_alert.NO_TOKEN)
        if not repository:
            raise ConfigError(_alert.NO_REPOSITORY)
        if dispatch_target is not None and not dispatch_target[0]:
            raise ConfigError(_alert.NO_REPOSITORY)
        from shipml.github import GitHubClient

        client = GitHubClient(token, platform.api_url(), permission="issues: write")
        issue = (_alert.find_issue(client, repository, key, alert["labels"])
                 if alert["issue"] else None)
        decision = _alert.decide(issue, drifted, on_clear=alert["on_clear"],
                                 dispatch_on=dispatch_section["on"] if event_type else None)
        if not alert["issue"]:
            decision = _alert.Decision((), dispatch=decision.dispatch)
        _alert.apply(client, repository, message, decision, issue, dispatch_target, outcome)
    except ShipmlError as exc:
        error = exc
    except Exception as exc:  # a bug or a garbled answer must not cost the verdict
        log.debug("monitor: the alerting step failed", exc_info=True)
        text = f"{type(exc).__name__}: {first_line(exc)}"
        error = InfrastructureError(ALERT_CRASHED.format(
            error=text.replace(token, "***") if token else text))
    else:
        return _with_alert(run, outcome, None)
    platform.annotate("error", f"shipml monitor could not alert: {error.message}",
                      title="shipml monitor")
    return _with_alert(run, outcome, error)


def _with_alert(run: MonitorRun, outcome: _alert.AlertOutcome,
                error: ShipmlError | None) -> MonitorRun:
    metrics = dict(run.result.metrics)
    metrics["alert"] = {"issue": outcome.issue_number, "issue_url": outcome.issue_url,
                        "actions": list(outcome.actions), "dispatched": outcome.dispatched,
                        "dry_run": outcome.dry_run_path,
                        "error": error.message if error is not None else None,
                        "error_exit_code": error.exit_code if error is not None else None}
    result = StageResult(**{**_fields(run.result), "metrics": metrics})
    return MonitorRun(result=result, result_path=result.write(run.result_path.parent.parent),
                      html_path=run.html_path, junit_path=run.junit_path, alert=outcome,
                      alert_error=error)


def _message(result: StageResult, key: str, alert: dict[str, Any], platform: Platform,
             inputs: _Inputs, drifted: bool) -> _alert.Message:
    from shipml.report.render import render_stage_summary

    metrics = result.metrics
    failures = [check for check in result.checks if check.status in ("fail", "error")]
    versions = ", ".join(sorted(v for v in (metrics.get("versions") or {}) if v))
    context = {
        "marker": _alert.issue_marker(key),
        "state": _alert.state_line("drift" if drifted else "clear"),
        "key": key, "drifted": drifted, "summary": result.summary,
        "rows": metrics.get("rows"), "source": metrics.get("source"),
        "sampling": metrics.get("sampling"),
        "window": metrics.get("window"), "versions": versions,
        "reference": metrics.get("reference"), "reference_rows": metrics.get("reference_rows"),
        "run_url": platform.run_url() or "", "checked_at": metrics.get("checked_at"),
        "drifted_features": metrics.get("drifted_features") or [],
        "failures": failures[:50], "on_clear": alert["on_clear"],
        "section": render_stage_summary(result, limit=40000),
    }
    templates = _templates(html=False)
    body = _alert.fit_body(templates.get_template("issue.md.j2").render(**context))
    payload = _alert.build_payload({
        "model": key, "version": versions,
        "drifted_features": list(metrics.get("drifted_features") or []),
        "failed_checks": [check.name for check in failures][:_alert.MAX_PAYLOAD_CHECKS],
        "issue": "", "run": platform.run_url() or "", "records": metrics.get("rows"),
        "window": {"since": metrics.get("since"), "until": metrics.get("until")},
    }, alert["dispatch"]["payload"])
    del inputs
    return _alert.Message(
        key=key, title=ISSUE_TITLE.format(key=key), body=body,
        back_comment=templates.get_template("back.md.j2").render(**context),
        cleared_comment=templates.get_template("cleared.md.j2").render(**context),
        labels=tuple(alert["labels"]), payload=payload)


def _templates(*, html: bool) -> jinja2.Environment:
    environment = jinja2.Environment(loader=jinja2.PackageLoader("shipml.monitor", "templates"),
                                     autoescape=html, trim_blocks=True, lstrip_blocks=True,
                                     keep_trailing_newline=True)
    environment.filters["oneline"] = lambda text: " ".join(str(text).split())[:300]
    return environment


def _default_key(model_path: Path) -> str:
    import re

    stem = re.sub(r"[^A-Za-z0-9._-]", "-", model_path.stem)[:100]
    return stem or "model"

