"""Reading the prediction log alone: `read_logs` of this tree next to that of an earlier commit,
on the same JSON Lines file, runs interleaved in one process.

The log holds ``--rows`` records in the server's format (the bundled example's eleven features,
one of them text, one row per request, predictions and probabilities). This tree's reader is
given the kinds of the columns as ``shipml monitor`` gives them (ten number columns, one text), so
the figure includes checking the values against the reference's types. The earlier reader is
``scripts/shipml/monitor/_logs.py`` as ``git show REV:`` prints it. Each contender reads the file
``--repeats`` times, alternating which goes first; the medians and their ratio are printed.

    python bench/monitor_read.py [--rows 300000] [--against 7d95dea] [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import inspect
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

NUMBERS = ("mean_radius", "mean_texture", "mean_perimeter", "mean_area", "mean_smoothness",
           "mean_compactness", "mean_concavity", "mean_concave_points", "mean_symmetry",
           "mean_fractal_dimension")
LOG_PATH = "scripts/shipml/monitor/_logs.py"


def write_log(path: Path, rows: int) -> None:
    """Write ``rows`` one-row records the way the server logs them."""
    rng = random.Random(7)
    start = dt.datetime(2026, 11, 24, tzinfo=dt.timezone.utc)
    with path.open("w", encoding="utf-8") as stream:
        for index in range(rows):
            inputs: dict[str, list[Any]] = {"size_band": [rng.choice(("S", "M", "L"))]}
            inputs.update({name: [round(rng.uniform(0, 100), 4)] for name in NUMBERS})
            positive = round(rng.random(), 6)
            stream.write(json.dumps({
                "model": "model", "version": "0123456789ab", "revision": "r1",
                "request_id": f"{index:032x}", "endpoint": "predict", "inputs": inputs,
                "outputs": {"predictions": [int(positive >= 0.5)],
                            "probabilities": [[round(1 - positive, 6), positive]]},
                "ts": (start + dt.timedelta(milliseconds=index)).isoformat(timespec="milliseconds"),
            }, separators=(",", ":")) + "\n")


def earlier_reader(revision: str) -> types.ModuleType:
    """Return ``_logs.py`` of ``revision`` as a module of its own."""
    source = subprocess.run(["git", "show", f"{revision}:{LOG_PATH}"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType(f"shipml.monitor._logs_{revision}")
    module.__file__ = f"{revision}:{LOG_PATH}"
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def read(module: types.ModuleType, path: Path) -> tuple[float, int]:
    """Return the seconds ``module.read_logs`` takes on ``path``, and the rows it read."""
    accepted = inspect.signature(module.read_logs).parameters
    extra: dict[str, Any] = {}
    if "expected" in accepted:
        extra["expected"] = {"size_band": "text", **{name: "number" for name in NUMBERS}}
        extra["reference"] = "reference.csv"
    gc.collect()
    started = time.perf_counter()
    production = module.read_logs([path], "monitor.logs.path", module.Window(), version=None,
                                  max_corrupt_rate=0.01, **extra)
    seconds = time.perf_counter() - started
    return seconds, len(production.frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--against", default="7d95dea", help="the earlier commit")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from shipml.monitor import _logs as current

    earlier = earlier_reader(args.against)
    with tempfile.TemporaryDirectory(prefix="shipml-monitor-read-") as name:
        path = Path(name) / "predictions.jsonl"
        write_log(path, args.rows)
        size = path.stat().st_size / 2**20
        print(f"log: {args.rows:,} records, {size:.0f} MiB")
        times: dict[str, list[float]] = {"this tree": [], args.against: []}
        for repeat in range(args.repeats):
            order = [("this tree", current), (args.against, earlier)]
            for label, module in order if repeat % 2 == 0 else reversed(order):
                seconds, rows = read(module, path)
                assert rows == args.rows, (label, rows)
                times[label].append(seconds)
        now = statistics.median(times["this tree"])
        before = statistics.median(times[args.against])
        for label, values in times.items():
            median = statistics.median(values)
            print(f"{label:>10}: median {median:5.2f} s ({args.rows / median / 1e3:4.0f}k "
                  f"records/s, {size / median:5.1f} MiB/s) over {len(values)} reads")
        print(f"ratio this tree / {args.against}: {now / before:.2f}x time")


if __name__ == "__main__":
    main()
