"""The latency stage: measure, judge the budgets and the regression, write the result."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from shipml.baseline import resolve_baseline
from shipml.ci import Platform
from shipml.config import Config
from shipml.errors import ConfigError
from shipml.latency import _judge
from shipml.latency._baseline import compare_inputs
from shipml.latency._html import render_html
from shipml.measure import stats
from shipml.measure.harness import (
    Harness,
    HarnessSettings,
    Measurement,
    interleave,
    measure_adaptive,
    measure_more,
    resolve_providers,
)
from shipml.measure.inputs import build_input_plan, input_settings, model_inputs
from shipml.results import (
    Artifact,
    Check,
    Column,
    Delta,
    Series,
    StageClock,
    StageResult,
    Table,
    stage_status,
)

log = logging.getLogger("shipml.latency")

STAGE = "latency"
NO_MODEL = (
    "no model to measure: set model.path (or latency.model, or --model), e.g.\n"
    "  model:\n    path: model.onnx"
)


@dataclass(frozen=True)
class LatencyRun:
    """A finished latency stage: its result and where its files went."""

    result: StageResult
    result_path: Path
    html_path: Path | None


def settings_from(section: Mapping[str, Any], providers: tuple[str, ...]) -> HarnessSettings:
    """Return the harness settings the ``latency:`` section describes."""
    threads = section.get("threads") or {}
    return HarnessSettings(
        providers=providers,
        intra_op=int(threads.get("intra_op", 1)),
        inter_op=int(threads.get("inter_op", 1)),
        warmup=int(section["warmup"]),
        process_time_s=float(section["process_time_s"]),
        min_runs=int(section["min_runs"]),
        min_processes=int(section["min_processes"]),
        max_time_s=float(section["max_time_s"]),
        ci_width=float(section["ci_width"]),
        confidence=float(section["confidence"]),
    )


def candidate_path(config: Config) -> Path:
    """Return the model the latency stage measures; ConfigError when none is configured."""
    section = config.section(STAGE)
    if section.get("model"):
        return config.resolve_path(section["model"], STAGE, "model")
    model = config.section("model")
    if not model.get("path"):
        raise ConfigError(NO_MODEL)
    return config.resolve_path(model["path"], "model", "path")


def run_latency(config: Config, output_dir: Path, platform: Platform) -> LatencyRun:
    """Measure the model, judge budgets and regression, write the result and the HTML page.

    Returns the run (status pass or fail). Raises ConfigError for bad configuration or input,
    InfrastructureError when a measuring process dies.
    """
    clock = StageClock()
    section = config.section(STAGE)
    model_path = candidate_path(config)
    model_key = config.where(STAGE, "model") if section.get("model") else \
        config.where("model", "path")
    providers = resolve_providers(section["provider"], config.where(STAGE, "provider"))
    batch_sizes = [int(b) for b in section["batch_sizes"]]
    budgets = _budgets(config, batch_sizes)
    plan = build_input_plan(model_path, input_settings(config, STAGE), key=model_key,
                            batch_sizes=batch_sizes)
    settings = settings_from(section, providers)
    baseline_cfg = section["baseline"]
    regression_batches = [int(b) for b in (baseline_cfg.get("batch_sizes") or batch_sizes[:1])]

    with Harness(settings) as harness:
        baseline = resolve_baseline(config, STAGE, model_path, harness.workdir)
        if baseline is not None:
            baseline_inputs = model_inputs(baseline[0], config.where(STAGE, "baseline"))
            compare_inputs(baseline_inputs, plan.inputs, baseline[1], str(model_path),
                           config.where(STAGE, "baseline"))
        feeds = {batch: harness.save_feeds(plan.feeds(batch)) for batch in batch_sizes}
        log.info("latency: %s on %s, threads intra %d inter %d, batch sizes %s, %s inputs",
                 model_path, providers[0], settings.intra_op, settings.inter_op, batch_sizes,
                 plan.source)
        measurements = measure_adaptive(harness, model_path, feeds, label=model_key)
        checks: list[Check] = []
        figures: dict[int, _judge.BatchFigures] = {}
        for batch in batch_sizes:
            figures[batch], batch_checks = _judge_budgets(
                harness, model_path, feeds[batch], measurements[batch], budgets.get(batch, {}),
                section, label=model_key)
            checks.extend(batch_checks)
        regression: dict[str, Any] = {}
        if baseline is not None:
            for batch in regression_batches:
                batch_feeds = feeds.get(batch) or harness.save_feeds(plan.feeds(batch))
                check, record = _regression(harness, baseline, model_path, batch, batch_feeds,
                                            baseline_cfg, settings.confidence)
                checks.append(check)
                regression[str(batch)] = record

    metrics: dict[str, Any] = {
        "model": str(model_path),
        "provider": providers[0],
        "threads": {"intra_op": settings.intra_op, "inter_op": settings.inter_op},
        "confidence": settings.confidence,
        "ci_width": settings.ci_width,
        "inputs": plan.describe(),
        "batches": {str(b): figures[b].to_metrics() for b in batch_sizes},
        "distribution": {str(b): stats.cdf_points(measurements[b].pooled())
                         for b in batch_sizes},
        "regression": regression,
    }
    first = figures[batch_sizes[0]]
    for percentile in stats.PERCENTILES:  # headline figures of the first batch size
        metrics[f"p{percentile}_ms"] = round(first.percentiles[percentile].estimate, 6)
    metrics["throughput_rps"] = round(first.throughput.estimate, 3)

    status = stage_status(checks, section["fail_on"])
    summary = _summary(first, checks, regression)
    artifacts: list[Artifact] = []
    html_path: Path | None = None
    if section["html"]:
        html_path = output_dir / "artifacts" / "latency.html"
        artifacts.append(Artifact(name="latency.html", path=str(html_path)))
    result = StageResult(
        stage=STAGE, status=status, summary=summary, started_at=clock.started_at,
        duration_s=clock.elapsed(), metrics=metrics, checks=tuple(checks),
        artifacts=tuple(artifacts), tables=(figures_table(figures),),
        series=distribution_series(metrics["distribution"]),
        deltas=regression_deltas(regression, figures),
    )
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_html(result), encoding="utf-8")
    result_path = result.write(output_dir)
    return LatencyRun(result=result, result_path=result_path, html_path=html_path)


def figures_table(figures: Mapping[int, _judge.BatchFigures]) -> Table:
    """Return the table of figures per batch size: p50, p95, p99 and throughput."""
    columns = (Column("batch", "batch"), Column("p50_ms", "p50", "ms"),
               Column("p95_ms", "p95", "ms"), Column("p99_ms", "p99", "ms"),
               Column("throughput_rps", "throughput", "rows/s"))
    rows = tuple({"batch": batch,
                  **{f"p{p}_ms": round(figures[batch].percentiles[p].estimate, 6)
                     for p in (50, 95, 99)},
                  "throughput_rps": round(figures[batch].throughput.estimate, 3)}
                 for batch in sorted(figures))
    return Table(title="Latency per batch size", columns=columns, rows=rows)


def distribution_series(distribution: Mapping[str, list[list[float]]]) -> tuple[Series, ...]:
    """Return one chart per batch size: latency (ms) at each percentile of its CDF."""
    charts = []
    for batch, points in sorted(distribution.items(), key=lambda item: int(item[0])):
        pairs = sorted((float(quantile), float(ms)) for ms, quantile in points)
        if len(pairs) < 2:
            continue
        charts.append(Series(
            title=f"Latency distribution, batch {batch}", x_label="percentile", y_label="ms",
            categories=tuple(f"p{_percentile_label(q)}" for q, _ in pairs),
            values=tuple(float(f"{ms:.6g}") for _, ms in pairs)))
    return tuple(charts)


def regression_deltas(regression: Mapping[str, Mapping[str, Any]],
                      figures: Mapping[int, _judge.BatchFigures]) -> tuple[Delta, ...]:
    """Return the p50 of baseline and candidate per compared batch size, with the interval of
    their ratio (candidate/baseline).

    One figure is shown once: where the figures table has the batch, the candidate's p50 is that
    table's, and the baseline's is it over the interleaved ratio of medians (interleaved runs
    time both slower or faster alike, so their own p50s differ from the table's while their
    ratio holds)."""
    deltas = []
    for batch, record in sorted(regression.items(), key=lambda item: int(item[0])):
        candidate = float(record["candidate_p50_ms"])
        baseline = float(record["baseline_p50_ms"])
        measured = figures.get(int(batch))
        if measured is not None and float(record["ratio"]) > 0:
            candidate = round(measured.percentiles[50].estimate, 6)
            baseline = round(candidate / float(record["ratio"]), 6)
        deltas.append(Delta(name=f"p50 latency at batch {batch}", baseline=baseline,
                            candidate=candidate, unit="ms", higher_is_better=False,
                            interval=(float(record["ci_low"]), float(record["ci_high"]))))
    return tuple(deltas)


def _percentile_label(quantile: float) -> str:
    value = quantile * 100
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:g}"


def _budgets(config: Config, batch_sizes: list[int]) -> dict[int, dict[str, float]]:
    raw = config.section(STAGE).get("budgets") or {}
    budgets: dict[int, dict[str, float]] = {}
    for key, limits in raw.items():
        batch = int(key)
        if batch not in batch_sizes:
            raise ConfigError(
                f"{config.where(STAGE, 'budgets', key)}: a budget for batch {batch}, which is not "
                f"measured; latency.batch_sizes is {batch_sizes}: add {batch} to it"
            )
        budgets[batch] = {name: float(value) for name, value in limits.items()}
    return budgets


def _judge_budgets(harness: Harness, model: Path, feeds: Path, measurement: Measurement,
                   limits: Mapping[str, float], section: Mapping[str, Any], *, label: str
                   ) -> tuple[_judge.BatchFigures, list[Check]]:
    confidence = float(section["confidence"])
    policy = cast(_judge.Policy, section["policy"])
    figures = _judge.summarize(measurement, confidence)
    remeasured = 0
    while True:
        verdicts = {key: _judge.budget_verdict(key, limit, figures)
                    for key, limit in limits.items()}
        undecided = [key for key, verdict in verdicts.items() if verdict == "inconclusive"]
        if not undecided or remeasured >= int(section["remeasure"]):
            break
        remeasured += 1
        log.info("latency: batch %d: %s inconclusive, measuring again (%d/%d)",
                 measurement.batch_size, ", ".join(undecided), remeasured, section["remeasure"])
        measure_more(harness, model, feeds, measurement, harness.settings.min_processes,
                     label=label)
        figures = _judge.summarize(measurement, confidence)
    checks = []
    for key, limit in limits.items():
        check = _judge.budget_check(key, limit, figures, verdicts[key], policy,
                                    remeasured=remeasured, confidence=confidence)
        log.info("latency: %s: %s — %s", check.name, check.status.upper(), check.detail)
        checks.append(check)
    return figures, checks


def _regression(harness: Harness, baseline: tuple[Path, str], candidate: Path, batch: int,
                feeds: Path, baseline_cfg: Mapping[str, Any], confidence: float
                ) -> tuple[Check, dict[str, Any]]:
    rounds = int(baseline_cfg["rounds"])
    tolerance = float(baseline_cfg["tolerance"])
    limit = 1.0 + tolerance
    time_s = float(baseline_cfg["process_time_s"])
    labels = ["latency.baseline", "the candidate"]
    mode = str(baseline_cfg["interleave"])
    started = time.perf_counter()
    base, cand = interleave(harness, [baseline[0], candidate], feeds, rounds, time_s=time_s,
                            labels=labels, mode=mode)
    ratio = stats.ratio_of_medians(base.groups, cand.groups, confidence)
    # An interval that straddles the limit is undecided: buy more rounds (two at a time, so
    # the AB/BA order stays balanced) until it decides or the time cap is spent.
    while ratio.low <= limit < ratio.high and \
            time.perf_counter() - started < float(baseline_cfg["max_time_s"]):
        more_base, more_cand = interleave(harness, [baseline[0], candidate], feeds, 2,
                                          time_s=time_s, labels=labels, mode=mode)
        base.merge(more_base)
        cand.merge(more_cand)
        ratio = stats.ratio_of_medians(base.groups, cand.groups, confidence)
    rounds = len(base.groups)
    base_p50 = float(np.median(base.pooled()))
    cand_p50 = float(np.median(cand.pooled()))
    check = _judge.regression_check(batch, ratio, tolerance, rounds=rounds,
                                    baseline_p50=base_p50, candidate_p50=cand_p50,
                                    baseline=baseline[1], confidence=confidence)
    log.info("latency: %s: %s — %s", check.name, check.status.upper(), check.detail)
    round_ratios = [float(np.median(c) / np.median(b))
                    for b, c in zip(base.groups, cand.groups, strict=True)]
    record = {
        "baseline": baseline[1], "ratio": round(ratio.estimate, 5),
        "ci_low": round(ratio.low, 5), "ci_high": round(ratio.high, 5),
        "tolerance": tolerance, "rounds": rounds, "interleave": mode, "runs_each": base.runs,
        "seconds": round(time.perf_counter() - started, 3),
        "baseline_p50_ms": round(base_p50, 6), "candidate_p50_ms": round(cand_p50, 6),
        "round_ratios": [round(value, 5) for value in round_ratios],
        "baseline_distribution": stats.cdf_points(base.pooled()),
        "candidate_distribution": stats.cdf_points(cand.pooled()),
    }
    return check, record


def _summary(first: _judge.BatchFigures, checks: list[Check], regression: Mapping[str, Any]
             ) -> str:
    p50, p95 = first.percentiles[50].estimate, first.percentiles[95].estimate
    text = f"batch {first.batch_size}: p50 {p50:.3g} ms, p95 {p95:.3g} ms"
    budget = [c for c in checks if c.group == "budget"]
    if budget:
        passed = sum(c.status == "pass" for c in budget)
        text += f"; {passed}/{len(budget)} budgets met"
    for batch, record in regression.items():
        text += f"; {record['ratio']:.2f}× baseline at batch {batch}"
    failed = [c.name for c in checks if c.status in ("fail", "error")]
    if failed:
        text += f" (failed: {'; '.join(failed[:3])})"
    return text

