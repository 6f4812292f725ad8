"""Stage results of whole pipelines, as the stages write them (the contract of design.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipml.results import Artifact, Check, Column, Delta, Series, StageResult, Table

STARTED = "2026-11-24T08:00:00+00:00"


def _distribution(scale: float) -> list[list[float]]:
    quantiles = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0]
    return [[round(scale * (1 + 2 * q ** 3), 4), q] for q in quantiles]


def validate(passing: bool = True) -> StageResult:
    checks = (
        Check("accuracy on the test set is at least 0.9", "pass" if passing else "fail",
              0.94 if passing else 0.81, 0.9, "", "model_evaluation"),
        Check("share of missing values per column is at most 5%", "pass", 0.0, 0.05,
              "", "data_integrity"),
        Check("label drift score is below 0.2", "warn" if passing else "pass", 0.19, 0.2,
              "close to the limit", "train_test_validation"),
        Check("test_model_is_monotonic_in_income passes", "pass", None, None, "", "pytest"),
    )
    return StageResult("validate", "pass" if passing else "fail",
                       "4 checks: 3 pass, 1 warn" if passing else "4 checks: 1 failed",
                       STARTED, 21.4, {"suites": ["model_evaluation"]}, checks,
                       (Artifact("validate.html", ".shipml/artifacts/validate.html"),))


def optimize() -> StageResult:
    # What optimize writes once it states its figures as a table and deltas (its metrics stay
    # for machines): the candidates it tried and what the kept one changed.
    checks = (Check("dynamic_int8 agrees with the original on at least 99% of labels", "pass",
                    0.998, 0.99, "1000 rows"),)
    metrics = {"chosen": "dynamic_int8"}
    table = Table(
        title="Candidates", columns=(Column("candidate", "candidate"),
                                     Column("parity", "holds parity"),
                                     Column("size_kib", "size", "KiB"),
                                     Column("p50_ms", "p50", "ms"),
                                     Column("speedup", "speed-up", "×")),
        rows=({"candidate": "original", "parity": None, "size_kib": 4300.8, "p50_ms": 0.41,
               "speedup": 1.0},
              {"candidate": "dynamic_int8 (kept)", "parity": "yes", "size_kib": 1126.4,
               "p50_ms": 0.22, "speedup": 1.86}))
    deltas = (Delta("model size", 4.2, 1.1, "MB"),)
    return StageResult("optimize", "pass", "kept dynamic_int8: 3.8x smaller, parity held",
                       STARTED, 8.2, metrics, checks, tables=(table,), deltas=deltas)


def latency(passing: bool = True) -> StageResult:
    """A latency result built by latency's own figure functions, as ``shipml latency`` writes it."""
    from shipml.latency import core
    from shipml.latency._judge import BatchFigures
    from shipml.measure.stats import Interval

    p95 = 4.1 if passing else 31.0
    checks = (
        Check("p95 latency at batch 1 is below 20 ms", "pass" if passing else "fail", p95, 20,
              "95% CI 3.9–4.3 ms" if passing else "95% CI 29.5–32.8 ms"),
        Check("p95 latency at batch 8 is below 60 ms", "pass", 18.2, 60, ""),
        Check("latency at batch 1 is no more than 10% slower than the baseline",
              "pass" if passing else "fail", 1.03 if passing else 1.42, 1.1,
              "ratio of medians, 95% CI"),
    )

    def figures(batch: int, p50: float, p95: float, p99: float, rps: float) -> BatchFigures:
        exact = {50: p50, 90: p95 * 0.95, 95: p95, 99: p99}
        return BatchFigures(batch, {p: Interval(v, v * 0.97, v * 1.03) for p, v in exact.items()},
                            Interval(p50, p50, p50), Interval(rps, rps, rps), 12.0, 80.0, 3.0,
                            1.0, 5.0, 2000, 3, 4.0, True)

    per_batch = {1: figures(1, 3.2, p95, p95 * 1.2, 310.0), 8: figures(8, 14.0, 18.2, 21.0, 560.0)}
    distribution = {"1": _distribution(3.0 if passing else 12.0), "8": _distribution(13.0)}
    regression: dict[str, Any] = {"1": {"ratio": 1.03 if passing else 1.42,
                                        "ci_low": 0.99 if passing else 1.35,
                                        "ci_high": 1.06 if passing else 1.5, "tolerance": 0.1,
                                        "baseline_p50_ms": 3.1,
                                        "candidate_p50_ms": 3.2 if passing else 4.4}}
    metrics: dict[str, Any] = {"batches": {str(b): f.to_metrics() for b, f in per_batch.items()},
                               "distribution": distribution, "regression": regression,
                               "p95_ms": p95}
    return StageResult("latency", "pass" if passing else "fail",
                       f"p95 {p95} ms at batch 1", STARTED, 64.0, metrics, checks,
                       (Artifact("latency.html", ".shipml/artifacts/latency.html"),),
                       tables=(core.figures_table(per_batch),),
                       series=core.distribution_series(distribution),
                       deltas=core.regression_deltas(regression, per_batch))


def build() -> StageResult:
    return StageResult("build", "pass", "pushed 127.0.0.1:5000/models/churn@sha256:3f1a…",
                       STARTED, 95.0, {"digest": "sha256:3f1a"},
                       (Check("image size is below 800 MB", "pass", 412.0, 800, ""),))


def sign() -> StageResult:
    return StageResult("sign", "pass", "signed and attested", STARTED, 3.0, {},
                       (Check("signature verifies against the public key", "pass"),))


def canary(passing: bool = True, skipped: bool = False) -> StageResult:
    # A canary result in the shape shipml canary writes (steps table; weight, error rate, p95 series).
    if skipped:
        return StageResult("canary", "skipped", "waiting for merge to main", STARTED, 0.0)
    steps: list[dict[str, Any]] = [
        {"weight": 10, "error_rate": 0.001, "p95_ms": 12.0, "status": "pass"},
        {"weight": 50, "error_rate": 0.002 if passing else 0.04, "p95_ms": 13.5,
         "status": "pass" if passing else "fail"}]
    if passing:
        steps.append({"weight": 100, "error_rate": 0.0015, "p95_ms": 12.8, "status": "pass"})
    checks = tuple(
        Check(f"error rate at {step['weight']}% traffic is below 1%", step["status"],
              step["error_rate"], 0.01, "")
        for step in steps)
    labels = tuple(f"{i}: {s['weight']}%" for i, s in enumerate(steps, 1))
    table = Table(
        title="Promotion steps",
        columns=(Column("step", "step"), Column("weight", "traffic weight", "%"),
                 Column("error_rate_pct", "error rate", "%"), Column("p95_ms", "p95", "ms"),
                 Column("status", "status")),
        rows=tuple({"step": i, "weight": s["weight"], "error_rate_pct": s["error_rate"] * 100,
                    "p95_ms": s["p95_ms"], "status": s["status"]}
                   for i, s in enumerate(steps, 1)))
    series = (
        Series("Canary traffic weight per step", "step", "weight %", labels,
               tuple(float(s["weight"]) for s in steps), "bar"),
        Series("Canary error rate per step", "step", "error rate %", labels,
               tuple(round(s["error_rate"] * 100, 4) for s in steps)),
        Series("Canary p95 latency per step", "step", "p95 ms", labels,
               tuple(float(s["p95_ms"]) for s in steps)),
    )
    return StageResult("canary", "pass" if passing else "fail",
                       "promoted to 100%" if passing else "rolled back at 50%: error rate 4%",
                       STARTED, 900.0, {"steps": steps}, checks, tables=(table,), series=series)


def passing() -> list[StageResult]:
    return [validate(), optimize(), latency(), build(), sign(), canary()]


def failing() -> list[StageResult]:
    return [validate(False), optimize(), latency(False), build(), sign(), canary(False)]


def partial() -> list[StageResult]:
    return [validate(), optimize(), latency(), canary(skipped=True)]


def big_failing(count: int = 200) -> list[StageResult]:
    checks = tuple(
        Check(f"feature_{index:03d} has no more than 1% out-of-range values in production data",
              "fail" if index % 2 == 0 else "pass", 0.05 + index / 1000, 0.01,
              "values outside the training range: " + ", ".join(str(v) for v in range(40)),
              f"group_{index % 7}")
        for index in range(count))
    result = StageResult("validate", "fail", f"{count} checks: {count // 2} failed", STARTED,
                         120.0, {}, checks)
    return [result, latency()]


def write(results: list[StageResult], output_dir: Path) -> Path:
    for result in results:
        result.write(output_dir)
    return output_dir
