"""The measuring child: ``python -I shipml/measure/_worker.py SPEC.json``.

One fresh process per measurement, so that no run inherits another's warm caches, allocator state
or JIT-ed kernels. The spec names the model, the pickled feeds, the provider, the thread counts and
how long to measure; the child writes its timings as JSON to the spec's ``result`` path. Only the
call to ``session.run`` sits between the two ``perf_counter_ns`` readings.

Memory is what the model and its session add: the peak resident size reached by session creation,
the first run and the warm-up, over the resident size once the feeds are loaded. The harness's own
buffers (the feeds, the samples of a million runs) are not the model's and are left out.

Run as a file with ``-I``: it imports nothing from shipml.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import sys
import time
from array import array
from pathlib import Path
from typing import Any


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the model(s), warm up, time ``session.run`` and return timings and memory figures.

    With several models (a comparison), runs alternate model by model (A, B, A, B, ...), so that
    whatever slows the machine for a moment slows every model alike.
    """
    import onnxruntime as ort

    with open(spec["feeds"], "rb") as handle:
        feeds = pickle.load(handle)  # written by the parent process, never user input
    gc.collect()
    # The baseline: interpreter, onnxruntime and the feeds. Reset the high-water mark so that
    # loading the feeds (briefly twice their size) does not count as the model's.
    base_rss = _rss_mb()
    _reset_peak()
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(spec["intra_op"])
    options.inter_op_num_threads = int(spec["inter_op"])
    options.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if spec["inter_op"] > 1
                              else ort.ExecutionMode.ORT_SEQUENTIAL)
    options.log_severity_level = 3
    models: list[dict[str, Any]] = []
    runs = []
    for path in spec["models"]:
        started = time.perf_counter_ns()
        model_bytes = Path(path).read_bytes()
        load_ns = time.perf_counter_ns() - started
        started = time.perf_counter_ns()
        session = ort.InferenceSession(model_bytes, sess_options=options,
                                       providers=list(spec["providers"]))
        session_ns = time.perf_counter_ns() - started
        del model_bytes
        runs.append(session.run)
        models.append({"model_load_ms": load_ns / 1e6, "session_create_ms": session_ns / 1e6,
                       "providers": session.get_providers()})

    for run, record in zip(runs, models, strict=True):
        started = time.perf_counter_ns()
        run(None, feeds)
        record["first_run_ms"] = (time.perf_counter_ns() - started) / 1e6
    for _ in range(int(spec["warmup"])):
        for run in runs:
            run(None, feeds)
    # The model's peak, read before the timing loop grows the sample buffers.
    model_peak = _peak_rss_mb()

    min_runs = int(spec["min_runs"])
    budget_ns = int(float(spec["time_s"]) * 1e9)
    hard_ns = int(float(spec["hard_time_s"]) * 1e9)
    max_runs = int(spec["max_runs"])
    samples = [array("q") for _ in runs]  # 8 bytes a run, not a Python int
    clock = time.perf_counter_ns
    gc.disable()
    try:
        if len(runs) == 1:
            run, append = runs[0], samples[0].append
            began = clock()
            while True:
                before = clock()
                run(None, feeds)
                after = clock()
                append(after - before)
                spent = after - began
                count = len(samples[0])
                if count >= max_runs or (spent >= budget_ns and count >= min_runs) \
                        or spent >= hard_ns:
                    break
        else:
            pairs = list(zip(runs, [bucket.append for bucket in samples], strict=True))
            began = clock()
            while True:
                for run, append in pairs:
                    before = clock()
                    run(None, feeds)
                    append(clock() - before)
                spent = clock() - began
                count = len(samples[0])
                if count >= max_runs or (spent >= budget_ns and count >= min_runs) \
                        or spent >= hard_ns:
                    break
    finally:
        gc.enable()
    peak = _peak_rss_mb()
    for record, bucket in zip(models, samples, strict=True):
        record["samples_ns"] = bucket.tolist()
        record["base_rss_mb"] = base_rss
        record["model_peak_rss_mb"] = model_peak
        record["peak_rss_mb"] = peak
    return {"models": models, "pid": os.getpid()}


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            resident_pages = int(handle.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        return _peak_rss_mb()


def _reset_peak() -> None:
    # Linux: writing 5 to clear_refs resets VmHWM to the current resident size.
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    # VmHWM is this process image's own peak; ru_maxrss would carry over the peak of the parent
    # that forked us (Linux keeps it across exec), which is often far larger.
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def main(argv: list[str]) -> int:
    """Run the spec at ``argv[0]``; return 0, or 1 with the error written to the result file."""
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        outcome = measure(spec)
    except Exception as exc:  # reported to the parent, which turns it into a precise error
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        outcome = {"error": f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"}
    Path(spec["result"]).write_text(json.dumps(outcome), encoding="utf-8")
    return 1 if "error" in outcome else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
