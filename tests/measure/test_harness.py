"""The harness in real measuring processes: what the memory figure counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shipml.measure.harness import Harness, HarnessSettings, Measurement
from tests._models import export_identity_sum


def measured(model: Path, time_s: float) -> Measurement:
    with Harness(HarnessSettings(warmup=2)) as harness:
        feeds = harness.save_feeds({"x": np.ones((1, 4), np.float32)})
        measurement = Measurement(1)
        outcome, seconds = harness.run_process(model, feeds, time_s=time_s, min_runs=10)
        measurement.add(outcome, seconds)
    return measurement


def test_memory_leaves_out_the_harness_sample_buffer(tmp_path: Path) -> None:
    # A model of almost no memory, timed for 4 s: its 10,000s of runs used to add their own
    # samples (36 bytes each as Python ints, 1 MiB per 30,000) to "the memory the model adds".
    model = tmp_path / "tiny.onnx"
    export_identity_sum(model)
    few, many = measured(model, 0.01), measured(model, 4.0)
    assert many.runs >= 30_000 and many.runs > 20 * few.runs
    assert many.memory_mb[0] - few.memory_mb[0] < 0.5, (few.memory_mb, many.memory_mb)


def test_memory_still_counts_what_the_model_holds(tmp_path: Path) -> None:
    model = tmp_path / "heavy.onnx"
    export_identity_sum(model, weight_mib=32)
    (memory,) = measured(model, 0.01).memory_mb
    assert memory >= 28.0


def test_min_processes_is_a_floor_even_past_the_time_cap(tmp_path: Path) -> None:
    # A loaded runner can spend the whole cap starting the first process; one process has no
    # between-process spread to put in the interval.
    from shipml.measure.harness import measure_adaptive

    model = tmp_path / "tiny.onnx"
    export_identity_sum(model)
    settings = HarnessSettings(warmup=1, process_time_s=0.01, min_processes=3, min_runs=10,
                               max_time_s=0.001)
    with Harness(settings) as harness:
        feeds = harness.save_feeds({"x": np.ones((1, 4), np.float32)})
        (measurement,) = measure_adaptive(harness, model, {1: feeds}).values()
    assert len(measurement.groups) == 3
