"""shipml serve's own cost, on the bundled example model (a scikit-learn pipeline, 11 inputs):

- server overhead: p50 over HTTP (wrk, 1 connection, loopback, one row per request) minus the p50
  of a bare in-process ``session.run`` on the same row (measured by ``shipml.measure``'s harness:
  fresh processes, pinned threads). Target ≤ 1 ms; KServe's xgbserver was measured at 0.95 ms.
  Also the in-process cost of shipml's own row binding and decoding (no HTTP), to show where the
  overhead goes;
- dynamic batching on vs off at 32 connections: requests/s ratio, on the example model (where
  HTTP and JSON cost more than onnxruntime) and on a generated 8-layer MLP (512 wide) where
  onnxruntime's time dominates, which is where batching pays;
- start to ready in a fresh process: from ``Popen`` to the first 200 of /v2/health/ready (target
  ≤ 1 s outside a container).

Rounds alternate the contenders so both see the same machine; figures are medians over rounds.
Usage: python bench/serve_overhead.py [--rounds 3] [--seconds 5] [--starts 5]

With ``--baseline REF`` it measures only what a change to the server can move, the working tree
and ``git archive REF scripts`` alternating in each round, side by side with their ratio:
the server's CPU time per request (user + system, from /proc: what the machine's other load
moves least), p50/p99 of ``/predict`` and ``/v2/models/model/infer`` at 1 connection,
requests/s at 1 and 32 connections.
Usage: python bench/serve_overhead.py --baseline HEAD [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import example_rows, example_v2_body, source_env, start_shipml, wrk

from shipml.example import example_dir


def in_process_p50_ms() -> float:
    """Return the p50 (ms) of a bare ``session.run`` on one example row, from fresh processes."""
    from shipml.measure.harness import Harness, HarnessSettings, measure_adaptive
    from shipml.onnx_model import OnnxModel

    model_path = Path(example_dir()) / "model.onnx"
    model = OnnxModel(model_path)
    import pandas as pd

    feeds = model.feeds(pd.DataFrame(example_rows(1)))
    settings = HarnessSettings(process_time_s=0.5, min_processes=3, max_time_s=6, min_runs=500)
    with Harness(settings) as harness:
        measured = measure_adaptive(harness, model_path, {1: harness.save_feeds(feeds)})
    return measured[1].percentile(50, 0.95).estimate


def binding_p50_ms(runs: int = 3000) -> float:
    """Return the p50 (ms) of ``ServedModel.predict`` on one row: binding, session.run, decoding."""
    from shipml.serve.model import ServedModel
    from shipml.serve.settings import ServeSettings

    served = ServedModel(ServeSettings(model_path=Path(example_dir()) / "model.onnx", name="m"))
    rows = example_rows(1)
    for _ in range(200):
        served.predict(rows)
    samples = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        served.predict(rows)
        samples.append(time.perf_counter_ns() - started)
    return statistics.median(samples) / 1e6


def mlp_model(path: Path, width: int = 512, layers: int = 8) -> dict[str, Any]:
    """Write an MLP (``layers`` dense ReLU layers of ``width``, one output) where onnxruntime's
    time dominates a one-row request; return a one-row v2 request for it."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights, current = [], [], "X"
    for index in range(layers):
        weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        weights.append(numpy_helper.from_array(weight, f"w{index}"))
        nodes.append(helper.make_node("MatMul", [current, f"w{index}"], [f"m{index}"]))
        nodes.append(helper.make_node("Relu", [f"m{index}"], [f"h{index}"]))
        current = f"h{index}"
    weights.append(numpy_helper.from_array(np.ones((width, 1), np.float32), "out"))
    nodes.append(helper.make_node("MatMul", [current, "out"], ["Y"]))
    graph = helper.make_graph(nodes, "mlp",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, width])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
                              weights)
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
                     .SerializeToString())
    row = rng.standard_normal(width).round(4).tolist()
    return {"inputs": [{"name": "X", "shape": [1, width], "datatype": "FP32", "data": row}]}


def start_to_ready_s() -> tuple[float, float]:
    """Return (wall seconds from Popen to ready, the server's own start-to-ready seconds)."""
    server, url = start_shipml()
    wall = server.wait_ready(f"{url}/v2/health/ready")
    own = server.events("ready")[0]["start_to_ready_ms"] / 1000
    server.stop()
    return wall, own


def _cpu_seconds(pid: int) -> float:
    """Return the CPU seconds (user + system) process ``pid`` has used: less moved by other load
    on the machine than latency is."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare(baseline: str, rounds: int, seconds: float) -> int:
    """Print the HTTP figures of the working tree and of ``baseline`` side by side; return 0."""
    row_body = {"rows": example_rows(1)}
    v2_body = example_v2_body(1)
    names = ("now", f"baseline {baseline}")
    figures: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    with tempfile.TemporaryDirectory() as scratch:
        envs = {names[0]: source_env(None, Path(scratch)),
                names[1]: source_env(baseline, Path(scratch))}
        for round_index in range(rounds):
            # alternate who goes first, so neither always meets a warmer machine
            order = names if round_index % 2 == 0 else names[::-1]
            for name in order:
                server, url = start_shipml(env=envs[name])
                pid = server.process.pid
                try:
                    cpu = _cpu_seconds(pid)
                    predict = wrk(f"{url}/predict", row_body, connections=1, seconds=seconds)
                    cpu, predict_cpu = _cpu_seconds(pid), _cpu_seconds(pid) - cpu
                    infer = wrk(f"{url}/v2/models/model/infer", v2_body, connections=1,
                                seconds=seconds)
                    cpu, infer_cpu = _cpu_seconds(pid), _cpu_seconds(pid) - cpu
                    loaded = wrk(f"{url}/predict", row_body, connections=32, seconds=seconds,
                                 threads=2)
                    loaded_cpu = _cpu_seconds(pid) - cpu
                finally:
                    server.stop()
                for label, value in (("predict_c1_cpu_us_per_request",
                                      predict_cpu / predict["requests"] * 1e6),
                                     ("infer_c1_cpu_us_per_request",
                                      infer_cpu / infer["requests"] * 1e6),
                                     ("predict_c32_cpu_us_per_request",
                                      loaded_cpu / loaded["requests"] * 1e6),
                                     ("predict_c1_p50_ms", predict["p50_ms"]),
                                     ("predict_c1_p99_ms", predict["p99_ms"]),
                                     ("predict_c1_rps", predict["rps"]),
                                     ("infer_c1_p50_ms", infer["p50_ms"]),
                                     ("infer_c1_p99_ms", infer["p99_ms"]),
                                     ("predict_c32_rps", loaded["rps"]),
                                     ("predict_c32_p50_ms", loaded["p50_ms"]),
                                     ("errors", predict["errors"] + predict["non2xx"]
                                      + infer["errors"] + infer["non2xx"]
                                      + loaded["errors"] + loaded["non2xx"])):
                    figures[name].setdefault(label, []).append(value)
    median = {name: {label: statistics.median(values) for label, values in found.items()}
              for name, found in figures.items()}
    width = max(len(label) for label in median[names[0]])
    print(f"{'':{width}}  {names[0]:>12}  {names[1]:>20}  {'now/baseline':>12}")
    for label, value in median[names[0]].items():
        base = median[names[1]][label]
        ratio = f"{value / base:.3f}" if base else "-"
        print(f"{label:{width}}  {value:>12.4g}  {base:>20.4g}  {ratio:>12}")
    print(f"(medians over {rounds} rounds of {seconds:g} s, alternating; cpu count "
          f"{os.cpu_count()})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--baseline", help="git ref to compare the HTTP figures with")
    args = parser.parse_args()
    if args.baseline:
        return compare(args.baseline, args.rounds, args.seconds)
    row_body = {"rows": example_rows(1)}
    v2_body = example_v2_body(1)

    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    for _ in range(args.rounds):
        add("in_process_p50_ms", in_process_p50_ms())
        add("binding_p50_ms", binding_p50_ms())
        server, url = start_shipml()
        try:
            predict = wrk(f"{url}/predict", row_body, connections=1, seconds=args.seconds)
            infer = wrk(f"{url}/v2/models/model/infer", v2_body, connections=1,
                        seconds=args.seconds)
        finally:
            server.stop()
        add("predict_p50_ms", predict["p50_ms"])
        add("predict_p99_ms", predict["p99_ms"])
        add("predict_c1_rps", predict["rps"])
        add("infer_p50_ms", infer["p50_ms"])
        for batching, flags in (("off", ()), ("on", ("--max-batch-size", "32",
                                                     "--max-delay-ms", "2"))):
            server, url = start_shipml(*flags)
            try:
                loaded = wrk(f"{url}/predict", row_body, connections=32, seconds=args.seconds,
                             threads=2)
            finally:
                server.stop()
            add(f"batching_{batching}_c32_rps", loaded["rps"])
            add(f"batching_{batching}_c32_p50_ms", loaded["p50_ms"])
            add(f"batching_{batching}_errors", loaded["errors"] + loaded["non2xx"])
    with tempfile.TemporaryDirectory() as folder:
        mlp = Path(folder) / "mlp.onnx"
        mlp_body = mlp_model(mlp)
        for _ in range(args.rounds):
            for batching, flags in (("off", ()), ("on", ("--max-batch-size", "32",
                                                         "--max-delay-ms", "2"))):
                server, url = start_shipml(*flags, model=mlp)
                try:
                    loaded = wrk(f"{url}/v2/models/mlp/infer", mlp_body, connections=32,
                                 seconds=args.seconds, threads=2)
                finally:
                    server.stop()
                add(f"mlp_batching_{batching}_c32_rps", loaded["rps"])
                add(f"mlp_batching_{batching}_c32_p50_ms", loaded["p50_ms"])
    for _ in range(args.starts):
        wall, own = start_to_ready_s()
        add("start_to_ready_wall_s", wall)
        add("start_to_ready_server_s", own)

    median = {name: statistics.median(values) for name, values in figures.items()}
    report: dict[str, Any] = dict(sorted(median.items()))
    report["overhead_predict_p50_ms"] = median["predict_p50_ms"] - median["in_process_p50_ms"]
    report["overhead_infer_p50_ms"] = median["infer_p50_ms"] - median["in_process_p50_ms"]
    report["batching_rps_ratio_on_over_off"] = (median["batching_on_c32_rps"]
                                                / median["batching_off_c32_rps"])
    report["mlp_batching_rps_ratio_on_over_off"] = (median["mlp_batching_on_c32_rps"]
                                                    / median["mlp_batching_off_c32_rps"])
    width = max(len(name) for name in report)
    for name, value in report.items():
        print(f"{name:<{width}}  {value:.4g}")
    print(f"(medians over {args.rounds} rounds, {args.starts} starts; overhead target <= 1 ms, "
          "start to ready target <= 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
