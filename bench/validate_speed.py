"""`shipml validate` against deepchecks run directly with a model object, same suites, 50,000 rows.

Prints wall times measured side by side in one run and their ratio (target: shipml / direct <= 0.6).
shipml computes every prediction once with batched onnxruntime calls and hands them to deepchecks;
run directly, deepchecks calls the model object itself, check by check, and computes permutation
feature importance through it.

    python bench/validate_speed.py [--rows 50000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SUITES = ["data_integrity", "train_test_validation", "model_evaluation"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    from sklearn.linear_model import LogisticRegression

    from shipml.ci import LocalPlatform
    from shipml.config import load_config
    from shipml.onnx_model import OnnxModel
    from shipml.validate.core import run_validate
    from tests.conftest import make_case, tabular_frame

    folder = Path(tempfile.mkdtemp(prefix="shipml-bench-"))
    frame = tabular_frame(args.rows, seed=11)
    split = int(args.rows * 0.7)
    case = make_case(folder, frame[:split], frame[split:], LogisticRegression(max_iter=500),
                     ["plan"])
    case.write_config({"suites": SUITES, "html": False})

    started = time.perf_counter()
    run = run_validate(load_config(case.config), folder / "out", LocalPlatform({}))
    shipml_seconds = time.perf_counter() - started

    import deepchecks.tabular.suites as suites
    import pandas as pd
    from deepchecks.tabular import Dataset, Suite

    def direct(model: object) -> float:
        checks = [check for name in SUITES for check in getattr(suites, name)().checks.values()
                  if type(check).__name__ != "ModelInferenceTime"]
        unique = []
        for check in checks:
            if not any(type(seen) is type(check) for seen in unique):
                unique.append(check)
        train = Dataset(pd.read_csv(case.train), label="churned", cat_features=["plan"],
                        label_type="binary")
        test = Dataset(pd.read_csv(case.test), label="churned", cat_features=["plan"],
                       label_type="binary")
        begin = time.perf_counter()
        result = Suite("direct", *unique).run(train_dataset=train, test_dataset=test, model=model,
                                              with_display=False)
        elapsed = time.perf_counter() - begin
        from deepchecks.core.check_result import CheckFailure
        for item in result.results:
            if isinstance(item, CheckFailure):
                print(f"  direct: {item.get_header()} did not run: {str(item.exception)[:100]}")
        return elapsed

    onnx_estimator = OnnxModel(case.model)
    direct_seconds = direct(onnx_estimator)

    print(f"rows: {args.rows} ({split} train / {args.rows - split} test), suites: {', '.join(SUITES)}")
    print(f"shipml validate:                         {shipml_seconds:8.1f} s "
          f"(status {run.result.status}, predictions {run.result.metrics['prediction_s']} s, "
          f"importance {run.result.metrics['feature_importance_s']} s, "
          f"deepchecks {run.result.metrics['deepchecks_s']} s)")
    print(f"deepchecks direct, ONNX estimator object: {direct_seconds:8.1f} s")
    print(f"ratio shipml / direct:                   {shipml_seconds / direct_seconds:8.2f} "
          f"(target <= 0.6)")


if __name__ == "__main__":
    main()
