"""The measuring harness: fresh child processes, pinned threads, warm-up, adaptive repetitions.

Every measurement runs in a new ``python -I shipml/measure/_worker.py`` process. The parent only
schedules: it interleaves batch sizes (and, for comparisons, models) process by process, so a
noisy minute on the runner is shared by everything measured in it, and it stops a batch size once
every reported percentile's confidence interval is narrow enough, or its time cap is spent.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shipml.errors import ConfigError, InfrastructureError
from shipml.measure import stats

WORKER = Path(__file__).with_name("_worker.py")
#: a measuring process stops after this many timed runs, whatever its time budget
MAX_RUNS = 1_000_000
#: provider aliases accepted wherever a provider is configured
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
_GPU_HINT = "install onnxruntime-gpu (and a CUDA runtime) on a runner with a GPU"


@dataclass(frozen=True)
class HarnessSettings:
    """How to measure: provider chain, threads, warm-up and when to stop."""

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    intra_op: int = 1
    inter_op: int = 1
    warmup: int = 10
    process_time_s: float = 0.4
    min_runs: int = 200
    min_processes: int = 3
    max_time_s: float = 30.0
    ci_width: float = 0.10
    confidence: float = 0.95


@dataclass
class Measurement:
    """Everything measured for one model at one batch size, process by process."""

    batch_size: int
    groups: list[NDArray[Any]] = field(default_factory=list)
    session_create_ms: list[float] = field(default_factory=list)
    model_load_ms: list[float] = field(default_factory=list)
    first_run_ms: list[float] = field(default_factory=list)
    memory_mb: list[float] = field(default_factory=list)
    peak_rss_mb: list[float] = field(default_factory=list)
    seconds: float = 0.0
    converged: bool = False

    @property
    def runs(self) -> int:
        """Return the number of timed runs over all processes."""
        return int(sum(group.size for group in self.groups))

    def add(self, outcome: Mapping[str, Any], seconds: float) -> None:
        """Record one child's outcome (samples in ns become ms)."""
        self.groups.append(np.asarray(outcome["samples_ns"], dtype=np.float64) / 1e6)
        self.session_create_ms.append(float(outcome["session_create_ms"]))
        self.model_load_ms.append(float(outcome["model_load_ms"]))
        self.first_run_ms.append(float(outcome["first_run_ms"]))
        # What the model and its session added; not the feeds, not the sample buffers.
        model_peak = outcome.get("model_peak_rss_mb", outcome["peak_rss_mb"])
        self.memory_mb.append(max(0.0, float(model_peak) - float(outcome["base_rss_mb"])))
        self.peak_rss_mb.append(float(outcome["peak_rss_mb"]))
        self.seconds += seconds

    def merge(self, other: Measurement) -> None:
        """Append the processes of ``other`` (same model, same batch size) to this one."""
        self.groups.extend(other.groups)
        self.session_create_ms.extend(other.session_create_ms)
        self.model_load_ms.extend(other.model_load_ms)
        self.first_run_ms.extend(other.first_run_ms)
        self.memory_mb.extend(other.memory_mb)
        self.peak_rss_mb.extend(other.peak_rss_mb)
        self.seconds += other.seconds

    def percentile(self, percentile: float, confidence: float) -> stats.Interval:
        """Return a latency percentile (ms) with its confidence interval."""
        return stats.percentile_interval(self.groups, percentile, confidence,
                                          seed=int(percentile))

    def mean(self, confidence: float) -> stats.Interval:
        """Return the mean latency (ms) with its confidence interval."""
        return stats.mean_interval(self.groups, confidence)

    def widest(self, confidence: float) -> float:
        """Return the largest relative interval width over the reported percentiles."""
        return max(self.percentile(p, confidence).relative_width for p in stats.PERCENTILES)

    def pooled(self) -> NDArray[Any]:
        """Return all samples (ms) in one array."""
        return np.concatenate(self.groups) if self.groups else np.array([])


def resolve_providers(provider: str, where: str) -> tuple[str, ...]:
    """Return the onnxruntime provider chain for ``provider`` (an alias or a full name).

    Raises ConfigError naming the providers this onnxruntime offers when it is unknown or absent.
    """
    import onnxruntime as ort

    available = list(ort.get_available_providers())
    wanted = PROVIDER_ALIASES.get(provider.strip().lower(), provider.strip())
    if wanted not in available:
        known = wanted in PROVIDER_ALIASES.values()
        hint = f"; {_GPU_HINT}" if wanted == "CUDAExecutionProvider" else ""
        what = ("is not available in this onnxruntime" if known
                else "is not an onnxruntime execution provider")
        aliases = ", ".join(f"{alias}" for alias, full in PROVIDER_ALIASES.items()
                            if full in available)
        raise ConfigError(
            f"{where}: provider {provider!r} ({wanted}) {what}; available here: "
            f"{', '.join(available)} (aliases: {aliases}){hint}"
        )
    chain = [wanted]
    if wanted != "CPUExecutionProvider":
        chain.append("CPUExecutionProvider")  # nodes the accelerator lacks still run
    return tuple(chain)


class Harness:
    """Runs measuring children; holds the scratch folder for their specs and feeds."""

    def __init__(self, settings: HarnessSettings, workdir: Path | None = None) -> None:
        self.settings = settings
        self._tmp = tempfile.TemporaryDirectory(prefix="shipml-measure-", dir=workdir)
        self.workdir = Path(self._tmp.name)
        self._count = 0

    def close(self) -> None:
        """Remove the scratch folder."""
        self._tmp.cleanup()

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save_feeds(self, feeds: Mapping[str, NDArray[Any]]) -> Path:
        """Write feeds for the children and return the file."""
        self._count += 1
        path = self.workdir / f"feeds-{self._count}.pkl"
        with open(path, "wb") as handle:
            pickle.dump(dict(feeds), handle, protocol=pickle.HIGHEST_PROTOCOL)
        return path

    def run_process(self, model: Path, feeds: Path, *, time_s: float | None = None,
                    min_runs: int = 10, label: str = "") -> tuple[dict[str, Any], float]:
        """Measure ``model`` alone in one fresh process; return its outcome and wall seconds.

        Raises ConfigError when onnxruntime rejects the model or its inputs, InfrastructureError
        when the child dies without an answer.
        """
        outcomes, seconds = self.run_models([model], feeds, time_s=time_s, min_runs=min_runs,
                                            labels=[label])
        return outcomes[0], seconds

    def run_models(self, models: Sequence[Path], feeds: Path, *, time_s: float | None = None,
                   min_runs: int = 10, labels: Sequence[str] = ()
                   ) -> tuple[list[dict[str, Any]], float]:
        """Measure ``models`` in one fresh process, run by run in turn; return one outcome per
        model and the wall seconds. Raises like :meth:`run_process`."""
        settings = self.settings
        self._count += 1
        spec_path = self.workdir / f"spec-{self._count}.json"
        result_path = self.workdir / f"result-{self._count}.json"
        budget = settings.process_time_s if time_s is None else time_s
        hard_time_s = max(budget * 4, budget + 5.0)
        spec = {
            "models": [str(model.resolve()) for model in models], "feeds": str(feeds),
            "result": str(result_path), "providers": list(settings.providers),
            "intra_op": settings.intra_op, "inter_op": settings.inter_op,
            "warmup": settings.warmup, "time_s": budget,
            "hard_time_s": hard_time_s, "min_runs": min_runs, "max_runs": MAX_RUNS,
        }
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        started = time.perf_counter()
        env = dict(os.environ)
        # Keep math libraries from spawning threads beyond the pinned onnxruntime ones.
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(variable, str(settings.intra_op))
        names = ", ".join(str(model) for model in models)
        try:
            completed = subprocess.run(
                [sys.executable, "-I", str(WORKER), str(spec_path)], capture_output=True,
                text=True, env=env, timeout=hard_time_s * len(models) + 120, check=False,
            )
        except subprocess.TimeoutExpired:
            raise InfrastructureError(
                f"the measuring process for {names} did not finish within "
                f"{hard_time_s * len(models) + 120:.0f} s; the runner may be overloaded"
            ) from None
        seconds = time.perf_counter() - started
        if not result_path.exists():
            tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
            raise InfrastructureError(
                f"the measuring process for {names} exited with code {completed.returncode} "
                f"without a result: {' | '.join(tail) or 'no output'}"
            )
        outcome: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
        if "error" in outcome:
            where = ", ".join(label for label in labels if label) or names
            raise ConfigError(
                f"{where}: onnxruntime could not run {names} on the benchmark inputs: "
                f"{outcome['error']}"
            )
        return list(outcome["models"]), seconds


def measure_adaptive(harness: Harness, model: Path, feeds: Mapping[int, Path], *,
                     label: str = "") -> dict[int, Measurement]:
    """Measure every batch size in ``feeds`` until its intervals are narrow or its cap is hit.

    Batch sizes take turns process by process. Returns one measurement per batch size.
    """
    measurements = {batch: Measurement(batch) for batch in feeds}
    pending = list(feeds)
    while pending:
        for batch in list(pending):
            measurement = measurements[batch]
            outcome, seconds = harness.run_process(model, feeds[batch], label=label)
            measurement.add(outcome, seconds)
            if _settled(measurement, harness.settings):
                pending.remove(batch)
    return measurements


def measure_more(harness: Harness, model: Path, feeds: Path, measurement: Measurement,
                 processes: int, *, label: str = "") -> None:
    """Add ``processes`` more processes to ``measurement`` (to settle an inconclusive verdict)."""
    for _ in range(processes):
        outcome, seconds = harness.run_process(model, feeds, label=label)
        measurement.add(outcome, seconds)
    measurement.converged = (
        measurement.widest(harness.settings.confidence) <= harness.settings.ci_width)


def interleave(harness: Harness, models: Sequence[Path], feeds: Path, rounds: int, *,
               time_s: float | None = None, labels: Sequence[str] = (),
               mode: str = "runs") -> list[Measurement]:
    """Measure several models interleaved, ``rounds`` times each; return one measurement per
    model, with ``groups[i]`` from round ``i``.

    ``mode="runs"``: each round is one fresh process in which the models take turns run by run
    (A, B, A, B, ...), so a noisy moment hits them alike. ``mode="processes"``: each round runs
    every model in its own fresh process, back to back. Either way the order flips every round
    (AB, then BA), so neither model always goes first.
    """
    measurements = [Measurement(0) for _ in models]
    for round_index in range(rounds):
        order = list(range(len(models)))
        if round_index % 2 == 1:
            order.reverse()
        if mode == "processes":
            for position in order:
                label = labels[position] if position < len(labels) else ""
                outcome, seconds = harness.run_process(models[position], feeds, time_s=time_s,
                                                       label=label)
                measurements[position].add(outcome, seconds)
            continue
        outcomes, seconds = harness.run_models(
            [models[i] for i in order], feeds, time_s=time_s,
            labels=[labels[i] if i < len(labels) else "" for i in order])
        for position, outcome in zip(order, outcomes, strict=True):
            measurements[position].add(outcome, seconds / len(models))
    return measurements


def _settled(measurement: Measurement, settings: HarnessSettings) -> bool:
    # min_processes is a floor even past the time cap: one process has no between-process
    # spread, and a loaded runner can spend the whole cap starting the first one.
    if len(measurement.groups) < settings.min_processes:
        return False
    if measurement.seconds >= settings.max_time_s:
        measurement.converged = measurement.widest(settings.confidence) <= settings.ci_width
        return True
    if measurement.runs < settings.min_runs:
        return False
    measurement.converged = measurement.widest(settings.confidence) <= settings.ci_width
    return measurement.converged
