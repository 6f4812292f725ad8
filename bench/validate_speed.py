"""`shipml validate` against deepchecks run directly with a model object, same suites, 50,000 rows.

Each contender runs as a fresh process, timed from start to exit (interpreter, imports, reading
the CSVs, the suite), in one run side by side; prints the wall times and their ratios
(target: shipml / direct <= 0.6).

* shipml: `shipml validate` as a user runs it. Predictions are computed once with batched
  onnxruntime calls and handed to deepchecks, and the suite's checks are spread over the CPU
  cores (`validate.workers: auto`).
* shipml, serial: the same with `validate.workers: 1`, to show what each part gives.
* direct: a script that reads the CSVs, builds deepchecks Datasets and runs the same checks with
  the ONNX model object (deepchecks calls it, caching predictions per run), one after the other.

    python bench/validate_speed.py [--rows 50000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SUITES = ["data_integrity", "train_test_validation", "model_evaluation"]


def direct(folder: Path) -> None:
    """Run the suites with deepchecks itself on the case in ``folder`` (a child process)."""
    warnings.simplefilter("ignore")
    import deepchecks.tabular.suites as suites
    import pandas as pd
    from deepchecks.core.check_result import CheckFailure
    from deepchecks.tabular import Dataset, Suite

    from shipml.onnx_model import OnnxModel

    checks = [check for name in SUITES for check in getattr(suites, name)().checks.values()
              if type(check).__name__ != "ModelInferenceTime"]  # shipml leaves it out too
    unique: list[object] = []
    for check in checks:
        if not any(type(seen) is type(check) for seen in unique):
            unique.append(check)
    train = Dataset(pd.read_csv(folder / "train.csv"), label="churned", cat_features=["plan"],
                    label_type="binary")
    test = Dataset(pd.read_csv(folder / "test.csv"), label="churned", cat_features=["plan"],
                   label_type="binary")
    result = Suite("direct", *unique).run(train_dataset=train, test_dataset=test,
                                          model=OnnxModel(folder / "model.onnx"),
                                          with_display=False)
    failures = sum(isinstance(item, CheckFailure) for item in result.results)
    print(f"  direct: {len(result.results)} results, {failures} did not apply", file=sys.stderr)


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {completed.returncode}:\n"
                         f"{completed.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--direct", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.direct:
        direct(Path(args.direct))
        return

    warnings.simplefilter("ignore")
    from sklearn.linear_model import LogisticRegression

    from tests.conftest import make_case, tabular_frame

    folder = Path(tempfile.mkdtemp(prefix="shipml-bench-"))
    frame = tabular_frame(args.rows, seed=11)
    split = int(args.rows * 0.7)
    case = make_case(folder, frame[:split], frame[split:], LogisticRegression(max_iter=500),
                     ["plan"])
    shipml = [sys.executable, "-m", "shipml", "validate", "--config", str(case.config)]

    case.write_config({"suites": SUITES, "html": False})
    parallel_s = _timed([*shipml, "--output-dir", str(folder / "parallel")])
    case.write_config({"suites": SUITES, "html": False, "workers": 1})
    serial_s = _timed([*shipml, "--output-dir", str(folder / "serial")])
    direct_s = _timed([sys.executable, __file__, "--direct", str(folder)])

    print(f"rows: {args.rows} ({split} train / {args.rows - split} test), "
          f"suites: {', '.join(SUITES)}; each a fresh process, wall time")
    print(f"shipml validate (workers: auto):          {parallel_s:6.1f} s")
    print(f"shipml validate (workers: 1):             {serial_s:6.1f} s")
    print(f"deepchecks direct, ONNX estimator object: {direct_s:6.1f} s")
    print(f"ratio shipml / direct:                    {parallel_s / direct_s:6.2f} (target <= 0.6)")
    print(f"ratio shipml serial / direct:             {serial_s / direct_s:6.2f} "
          f"(predictions computed once, checks one after the other)")


if __name__ == "__main__":
    main()
