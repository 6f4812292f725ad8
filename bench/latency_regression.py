"""Regression gate: false alarms against itself and power against a 15% slower artifact.

Prints, measured side by side in one run on this machine:
  - false alarms: failed checks out of N (default 20) of the transformer against itself
    (target ≤ 1), and the slowest check's wall time (target ≤ 30 s);
  - power: detected regressions out of N against the same graph plus redundant work that makes
    it about 15% slower (target ≥ N - 1); the true slowdown is measured first, interleaved, with
    ten times the rounds of a check.

Each check is one full ``shipml latency`` run with the default regression settings.
Usage: python bench/latency_regression.py [--checks 20] [--interleave runs|processes]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shipml.cli import main  # noqa: E402
from shipml.measure import stats  # noqa: E402
from shipml.measure.harness import Harness, HarnessSettings, interleave  # noqa: E402
from shipml.measure.inputs import InputPlan, model_inputs, resolve_dims, token_vocab  # noqa: E402
from tests._models import add_redundant_work, export_encoder, write_config  # noqa: E402

SEQUENCE = 128
TARGET_SLOWDOWN = 1.15


def true_ratio(baseline: Path, candidate: Path, rounds: int = 30) -> float:
    """Return candidate/baseline median from a long interleaved measurement."""
    inputs = model_inputs(baseline, "baseline")
    plan = InputPlan(model_path=baseline, source="synthetic", inputs=inputs,
                     dims=resolve_dims(inputs, {"sequence_length": SEQUENCE}, "bench"),
                     vocab=token_vocab(baseline))
    with Harness(HarnessSettings()) as harness:
        feeds = harness.save_feeds(plan.feeds(1))
        base, cand = interleave(harness, [baseline, candidate], feeds, rounds, time_s=0.5)
    return stats.ratio_of_medians(base.groups, cand.groups, 0.95).estimate


def calibrated_slower(model: Path, folder: Path) -> tuple[Path, float]:
    """Return a copy of ``model`` with redundant work tuned to about 15% slower, and its ratio
    (each try measured with 20 interleaved rounds; the cost grows linearly with the MatMuls)."""
    matmuls = 20
    target = folder / "slower.onnx"
    best: tuple[float, int] = (float("inf"), matmuls)
    for _ in range(5):
        add_redundant_work(model, target, matmuls=matmuls)
        ratio = true_ratio(model, target, rounds=20)
        if abs(ratio - TARGET_SLOWDOWN) < abs(best[0] - TARGET_SLOWDOWN):
            best = (ratio, matmuls)
        if abs(ratio - TARGET_SLOWDOWN) <= 0.01:
            break
        matmuls = max(1, round(matmuls * (TARGET_SLOWDOWN - 1) / max(ratio - 1, 0.005)))
    add_redundant_work(model, target, matmuls=best[1])
    return target, true_ratio(model, target)


def check(folder: Path, candidate: Path, baseline: Path, interleave: str
          ) -> tuple[bool, float, dict[str, float]]:
    """Run one ``shipml latency`` regression check; return (failed, seconds, figures)."""
    write_config(folder, {
        "model": {"path": str(candidate)},
        "latency": {"inputs": {"dims": {"sequence_length": SEQUENCE}},
                    "max_time_s": 0.5, "min_processes": 1, "min_runs": 1,
                    "baseline": {"path": str(baseline), "interleave": interleave}},
    })
    started = time.perf_counter()
    code = main(["latency", "--config", str(folder / "shipml.yaml"),
                 "--output-dir", str(folder / "out")])
    seconds = time.perf_counter() - started
    result = json.loads((folder / "out" / "results" / "latency.json").read_text())
    figures = result["metrics"]["regression"]["1"]
    return code == 1, seconds, {k: figures[k] for k in ("ratio", "ci_low", "ci_high")}


def main_bench() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=20)
    parser.add_argument("--interleave", choices=["runs", "processes"], default="runs",
                        help="latency.baseline.interleave (default: runs, shipml's default)")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = folder / "encoder.onnx"
        export_encoder(model, width=256)
        slower, slowdown = calibrated_slower(model, folder)
        print(f"model: transformer encoder, width 256, 2 layers, sequence {SEQUENCE}, batch 1; "
              f"slower artifact measured at {slowdown:.3f}× (30 interleaved rounds)", flush=True)
        runs = {"self": [], "slower": []}
        # Alternate the two kinds of check so that both see the same machine over time.
        for index in range(args.checks):
            for kind, candidate in (("self", model), ("slower", slower)):
                failed, seconds, figures = check(folder, candidate, model, args.interleave)
                runs[kind].append((failed, seconds, figures))
                print(f"  {kind:6} #{index + 1:2}: {'FAIL' if failed else 'pass'} "
                      f"ratio {figures['ratio']:.3f} [{figures['ci_low']:.3f}, "
                      f"{figures['ci_high']:.3f}] in {seconds:.1f} s", flush=True)
        false_alarms = sum(failed for failed, _, _ in runs["self"])
        detected = sum(failed for failed, _, _ in runs["slower"])
        slowest = max(seconds for _, seconds, _ in runs["self"] + runs["slower"])
        widths = sorted(f["ci_high"] - f["ci_low"] for _, _, f in runs["self"])
        print(f"interleave: {args.interleave}; median width of the self-check intervals "
              f"{widths[len(widths) // 2]:.3f}")
        print(f"false alarms: {false_alarms}/{args.checks} self-checks failed (target ≤ 1)")
        print(f"power: {detected}/{args.checks} checks detected the {slowdown:.3f}× artifact "
              f"(target ≥ {args.checks - 1})")
        print(f"slowest check: {slowest:.1f} s (target ≤ 30 s)")


if __name__ == "__main__":
    main_bench()
