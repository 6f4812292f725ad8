"""Harness overhead: shipml's p50 over a bare ``session.run`` loop's p50 on a tiny model.

The tiny model is the bundled scikit-learn example (about 20 µs a run), where any overhead of the
harness would show most. Each round runs ``shipml latency`` once and a bare loop (a fresh
process: load, warm up, time ``session.run`` with ``perf_counter_ns``, same pinned threads) once,
alternately, so both see the same machine. Prints the ratio of the two medians over the rounds
(target ≤ 1.05).
Usage: python bench/latency_overhead.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from shipml.cli import main
from shipml.example import example_dir

BARE_LOOP = r"""
import sys, time, pickle
import numpy as np, onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
feeds = pickle.load(open(sys.argv[2], "rb"))
for _ in range(10):
    session.run(None, feeds)
samples = []
end = time.perf_counter() + float(sys.argv[3])
while time.perf_counter() < end:
    t0 = time.perf_counter_ns()
    session.run(None, feeds)
    samples.append(time.perf_counter_ns() - t0)
print(np.median(samples) / 1e6)
"""


def main_bench() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in ("model.onnx", "test.csv"):
            shutil.copy(Path(example_dir()) / name, folder / name)
        (folder / "shipml.yaml").write_text(yaml.safe_dump({
            "model": {"path": "model.onnx", "label": "benign", "test": "test.csv"},
            "latency": {"max_time_s": 3},
        }))
        # The bare loop feeds exactly what shipml feeds: the first test row.
        from shipml.config import load_config
        from shipml.measure.inputs import build_input_plan, input_settings

        config = load_config(folder / "shipml.yaml")
        plan = build_input_plan(folder / "model.onnx", input_settings(config, "latency"))
        import pickle

        with open(folder / "feeds.pkl", "wb") as handle:
            pickle.dump(plan.feeds(1), handle)
        shipml_p50, bare_p50 = [], []
        for index in range(args.rounds):
            with contextlib.redirect_stdout(io.StringIO()):
                code = main(["latency", "--config", str(folder / "shipml.yaml"),
                             "--output-dir", str(folder / "out")])
            assert code == 0, code
            result = json.loads((folder / "out" / "results" / "latency.json").read_text())
            shipml_p50.append(result["metrics"]["p50_ms"])
            bare = subprocess.run(
                [sys.executable, "-c", BARE_LOOP, str(folder / "model.onnx"),
                 str(folder / "feeds.pkl"), "3"],
                capture_output=True, text=True, check=True)
            bare_p50.append(float(bare.stdout.strip()))
            print(f"  round {index + 1}: shipml p50 {shipml_p50[-1] * 1000:.2f} µs, "
                  f"bare loop p50 {bare_p50[-1] * 1000:.2f} µs", flush=True)
        ratio = statistics.median(shipml_p50) / statistics.median(bare_p50)
        print(f"harness overhead: shipml p50 / bare session.run p50 = {ratio:.3f} "
              f"(target ≤ 1.05; medians over {args.rounds} alternating rounds)")


if __name__ == "__main__":
    main_bench()
