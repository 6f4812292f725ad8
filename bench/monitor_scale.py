"""`shipml monitor` on 1,000,000 logged rows against a 50,000-row reference, next to deepchecks'
drift checks run directly on the same rows.

The bundled example model (11 features, one categorical) serves as the model. The reference is
50,000 rows drawn from its training data with a little noise; the production log is 1,000,000
records in the server's format (one row per request, its predictions and probabilities), a third
of them with three features shifted, written once to a temporary folder. Each contender runs as a
fresh process, timed from start to exit, with its peak resident memory (the child's ru_maxrss):

* shipml: `shipml monitor` as a user runs it: reads the JSON Lines log, checks columns, null and
  out-of-range rates, runs deepchecks' FeatureDrift and PredictionDrift (the default
  monitor.checks) with the logged predictions, writes result, HTML and JUnit.
* direct: deepchecks' FeatureDrift + PredictionDrift on the same rows, handed over as a Parquet
  file (no JSON parsing: deepchecks cannot read the log) with the model's predictions computed by
  onnxruntime. deepchecks samples 100,000 rows of each data set itself (its n_samples default),
  so neither contender is sampled by this script.

Targets (issue 21): shipml at most 1.1 times the direct run's time, with a peak of at most
1.5 GiB, on 2 cores. Each figure is that child's own (os.wait4), whichever ran first; the CPU
seconds (every thread's user and system time) are printed beside the wall time because on a
loaded machine they move less.

    python bench/monitor_scale.py [--rows 1000000] [--reference 50000] [--folder DIR]

``--folder DIR`` keeps the generated data there and reuses it on the next run (same --rows).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

LABEL = "benign"
SHIFTED = ("mean_radius", "mean_texture", "mean_area")


def prepare(folder: Path, rows: int, reference_rows: int) -> None:
    """Write the model, the reference CSV, the production Parquet and the 1M-line log."""
    import numpy as np
    import pandas as pd

    from shipml.example import example_dir
    from shipml.onnx_model import OnnxModel

    rng = np.random.default_rng(7)
    train = pd.read_csv(example_dir() / "train.csv")
    (folder / "model.onnx").write_bytes((example_dir() / "model.onnx").read_bytes())
    numeric = [c for c in train.columns if c not in (LABEL, "size_band")]

    def draw(count: int) -> pd.DataFrame:
        frame = train.sample(n=count, replace=True, random_state=int(rng.integers(1 << 31)))
        frame = frame.reset_index(drop=True)
        for name in numeric:
            frame[name] = frame[name] * rng.normal(1.0, 0.02, count)
        return frame

    draw(reference_rows).to_csv(folder / "reference.csv", index=False)
    production = draw(rows).drop(columns=[LABEL])
    third = rows // 3
    for name in SHIFTED:
        production.loc[: third - 1, name] += 3 * train[name].std()
    model = OnnxModel(folder / "model.onnx")
    features = model.bind_columns(list(production.columns), "production")
    predictions, probabilities = model.run(production[features])
    production.to_parquet(folder / "production.parquet")
    start = dt.datetime(2026, 11, 24, tzinfo=dt.timezone.utc)
    columns = {name: production[name].tolist() for name in production.columns}
    names = list(columns)
    with (folder / "predictions.jsonl").open("w", encoding="utf-8") as stream:
        for index in range(rows):
            stream.write(json.dumps({
                "model": "model", "version": "0123456789ab", "revision": "r1",
                "request_id": f"{index:032x}", "endpoint": "predict",
                "inputs": {name: [columns[name][index]] for name in names},
                "outputs": {"predictions": [int(predictions[index])],
                            "probabilities": [[round(float(p), 6) for p in probabilities[index]]]},
                "ts": (start + dt.timedelta(milliseconds=index)).isoformat(timespec="milliseconds"),
            }, separators=(",", ":")) + "\n")
    (folder / "shipml.yaml").write_text(
        "model: {path: model.onnx, label: benign, train: reference.csv}\n"
        "monitor:\n  logs: {path: predictions.jsonl}\n  alert: {issue: false}\n", encoding="utf-8")


def direct(folder: Path) -> None:
    """deepchecks' FeatureDrift and PredictionDrift on the same rows (a child process)."""
    warnings.simplefilter("ignore")
    import pandas as pd
    from deepchecks.tabular import Dataset, Suite
    from deepchecks.tabular.checks import FeatureDrift, PredictionDrift

    from shipml.onnx_model import OnnxModel

    reference = pd.read_csv(folder / "reference.csv")
    production = pd.read_parquet(folder / "production.parquet")
    production.index = production.index + len(reference)
    model = OnnxModel(folder / "model.onnx")
    features = model.bind_columns([c for c in reference.columns if c != LABEL], "reference")
    ref_pred, ref_proba = model.run(reference[features])
    prod_pred, prod_proba = model.run(production[features])
    suite = Suite("direct", FeatureDrift().add_condition_drift_score_less_than(),
                  PredictionDrift().add_condition_drift_score_less_than())
    result = suite.run(
        train_dataset=Dataset(reference[features], label=None, cat_features=["size_band"]),
        test_dataset=Dataset(production[features], label=None, cat_features=["size_band"]),
        y_pred_train=ref_pred, y_pred_test=prod_pred, y_proba_train=ref_proba,
        y_proba_test=prod_proba, model_classes=[0, 1], with_display=False)
    print("direct:", [c.category.name for r in result.results
                      for c in getattr(r, "conditions_results", [])])


def _measure(command: list[str], cwd: Path) -> tuple[float, float, float, int, str]:
    """Return the child's wall seconds, CPU seconds (user + system, every thread), its own peak
    resident MiB, exit code and output."""
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN keeps the largest child so far)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode("utf-8", errors="replace")
    return (seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, child.returncode,
            text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=50_000)
    parser.add_argument("--folder", type=Path, default=None,
                        help="keep the generated data here and reuse it when it is there")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shipml-monitor-bench-") as name:
        folder = args.folder or Path(name)
        started = time.perf_counter()
        stamp = folder / "prepared.json"
        wanted = {"rows": args.rows, "reference": args.reference}
        if not (stamp.is_file() and json.loads(stamp.read_text()) == wanted):
            folder.mkdir(parents=True, exist_ok=True)
            prepare(folder, args.rows, args.reference)
            stamp.write_text(json.dumps(wanted))
        size = (folder / "predictions.jsonl").stat().st_size / 2**20
        print(f"data: {args.rows:,} logged rows ({size:.0f} MiB of JSON Lines), "
              f"{args.reference:,} reference rows; prepared in {time.perf_counter() - started:.0f} s")
        direct_s, direct_cpu, direct_mib, direct_rc, direct_out = _measure(
            [sys.executable, __file__, "--direct", str(folder)], folder)
        shipml_s, shipml_cpu, shipml_mib, shipml_rc, shipml_out = _measure(
            [sys.executable, "-m", "shipml", "monitor", "--output-dir", str(folder / ".shipml")],
            folder)
        result = json.loads((folder / ".shipml" / "results" / "monitor.json").read_text())
        print(f"shipml monitor: {shipml_s:6.1f} s ({shipml_cpu:5.1f} s CPU), peak "
              f"{shipml_mib:6.0f} MiB, exit {shipml_rc} "
              f"({result['summary']})")
        metrics = result["metrics"]
        print(f"  of which reading the log {metrics.get('read_s')} s, deepchecks "
              f"{metrics.get('deepchecks_s')} s, predictions of the reference "
              f"{metrics.get('prediction_s')} s; {metrics.get('sampling') or 'not sampled'}")
        print(f"deepchecks direct: {direct_s:6.1f} s ({direct_cpu:5.1f} s CPU), peak "
              f"{direct_mib:6.0f} MiB (exit "
              f"{direct_rc}) — {direct_out.strip().splitlines()[-1] if direct_out else ''}")
        ratio = shipml_s / direct_s
        print(f"ratio shipml / direct: {ratio:.2f}× time, {shipml_cpu / direct_cpu:.2f}× CPU time, "
              f"{shipml_mib / direct_mib:.2f}× memory")
        print(f"targets: ≤ 1.1× time {'met' if ratio <= 1.1 else 'MISSED'}, "
              f"≤ 1536 MiB {'met' if shipml_mib <= 1536 else 'MISSED'}")
        if shipml_rc not in (0, 1):
            print(shipml_out[-2000:])


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--direct":
        direct(Path(sys.argv[2]))
    else:
        main()
