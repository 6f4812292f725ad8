"""Figures of the canary's paired quality judge (issue 19), in one run:

- power and false alarms over ``--trials`` rollouts each (default 20): real models trained on one
  seeded dataset (``tests/_models.py``: a logistic regression as the stable), their predictions
  computed with onnxruntime on a fresh test set per rollout (``--test-rows`` rows drawn from the
  same distribution with another seed), judged the way a rollout judges them. The rollouts' looks
  are **simulated in-process** instead of running 80 real rollouts: each analysis of the plan adds
  the next chunk of the test set (max(probe.rows, test rows / planned analyses), as the probe
  sends it) to the cumulative record and judges it with ``shipml.paired`` at the default
  ``canary.quality`` (max_drop 0.01, confidence 0.95 split over the planned analyses); a failed
  analysis counts toward ``failure_limit`` (2), an inconclusive one holds (at most 3 × the
  planned analyses, then the step timeout rolls back), the planned passes promote. Plans: the
  default one (10% for 1m, 50% for 2m, interval 30s: 6 analyses) and the tests' (20%, 50%:
  2 analyses). Models: 3 and 2 points worse (the stable's intercept moved), two equal ones (a
  logistic regression trained on other rows of the same problem; a random forest whose answers
  differ from the stable's on a tenth of the rows), a better one (gradient boosting);
- one real rollout on the docker target (HAProxy, Prometheus, load of real rows, as the tests
  run it): time from a wrong-label canary's first traffic (a model trained on flipped labels) to
  its weight reaching 0, at ``interval: 10s`` (``--interval``).

Needs what the tests need (bash .ci/services; prometheus).

    .venv/bin/python bench/canary_quality.py [--trials 20] [--test-rows 2000] [--no-rollout]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from shipml.paired import alpha_of, judge_classification  # noqa: E402
from tests._models import (  # noqa: E402
    build_model_image,
    export_quality_classifiers,
    export_sklearn,
    quality_classification_data,
)

MAX_DROP, CONFIDENCE, FAILURE_LIMIT, PROBE_ROWS = 0.01, 0.95, 2, 50
#: planned analyses of the default plan (10%: 1m, 50%: 2m at 30s) and of the tests' (20%, 50%)
PLANS = {"default plan (6 analyses)": 6, "tests' plan (2 analyses)": 2}


def _predict(path: Path, features: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: features})[0]).ravel()


def _rollout(canary_right: np.ndarray, stable_right: np.ndarray, looks: int) -> str:
    """Return how one simulated rollout ends: ``promoted`` or ``rolled back``."""
    total = len(canary_right)
    chunk = min(total, max(PROBE_ROWS, math.ceil(total / looks)))
    alpha = alpha_of(CONFIDENCE, looks)
    sent = passes = failures = 0
    for _ in range(3 * looks):
        sent = min(total, sent + chunk)
        verdict = judge_classification(canary_right[:sent].tolist(), stable_right[:sent].tolist(),
                                       max_drop=MAX_DROP, alpha=alpha, confidence=CONFIDENCE,
                                       complete=sent >= total).verdict
        if verdict == "fail":
            failures += 1
            if failures >= FAILURE_LIMIT:
                return "rolled back"
        elif verdict == "pass":
            passes += 1
            if passes >= looks:
                return "promoted"
    return "rolled back"


def judge_figures(folder: Path, trials: int, test_rows: int) -> None:
    """Print how often each model is promoted and rolled back over ``trials`` test sets."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    models = export_quality_classifiers(folder, test_rows=test_rows)
    features, labels = quality_classification_data(test_rows=test_rows)
    train_x, train_y = features[:-test_rows], labels[:-test_rows]
    # an equal model: the same family on other rows of the same problem
    other_x, other_y = quality_classification_data(seed=99, rows=len(train_x))
    equal = LogisticRegression(max_iter=500).fit(other_x, other_y)
    models["equal"] = export_sklearn(equal, train_x, folder / "equal.onnx")
    # an equal model of another family whose answers differ on about a tenth of the rows
    forest = RandomForestClassifier(n_estimators=50, min_samples_leaf=20, random_state=0)
    models["forest"] = export_sklearn(forest.fit(train_x, train_y), train_x,
                                      folder / "forest.onnx")
    # 3 points worse on a large sample of the problem, not on one test set
    big_x, big_y = quality_classification_data(seed=7, rows=50_000)
    stable = LogisticRegression(max_iter=500).fit(train_x, train_y)
    accuracy = float((stable.predict(big_x) == big_y).mean())
    for points in (2, 3):
        worse = LogisticRegression(max_iter=500).fit(train_x, train_y)
        for shift in np.arange(0.02, 10, 0.02):
            worse.intercept_ = stable.intercept_ + shift
            if accuracy - float((worse.predict(big_x) == big_y).mean()) >= points / 100:
                break
        models[f"worse{points}"] = export_sklearn(worse, train_x, folder / f"worse{points}.onnx")
    roles = {"3 points worse": "worse3", "2 points worse": "worse2",
             "equal (retrained LR)": "equal", "equal (random forest)": "forest",
             "better (gradient boosting)": "better"}
    stable_big = _predict(models["stable"], big_x)
    print("on 50,000 rows of the problem: stable accuracy "
          f"{float((stable_big == big_y).mean()):.4f}; " + "; ".join(
              f"{name}: {float((_predict(models[role], big_x) == big_y).mean()):.4f}, answers "
              f"differ on {float((_predict(models[role], big_x) != stable_big).mean()):.1%}"
              for name, role in roles.items()))
    outcomes: dict[tuple[str, str], list[str]] = {}
    for trial in range(trials):
        test_x, test_y = quality_classification_data(seed=1000 + trial, rows=test_rows)
        stable_right = _predict(models["stable"], test_x) == test_y
        for name, role in roles.items():
            canary_right = _predict(models[role], test_x) == test_y
            for plan, looks in PLANS.items():
                outcomes.setdefault((name, plan), []).append(
                    _rollout(canary_right, stable_right, looks))
    print(f"\nquality judge over {trials} simulated rollouts each ({test_rows} test rows, "
          f"max_drop {MAX_DROP}, confidence {CONFIDENCE}, failure_limit {FAILURE_LIMIT}):")
    for (name, plan), ends in outcomes.items():
        print(f"  {name:<28} {plan:<26} rolled back {ends.count('rolled back'):>2}/{trials}, "
              f"promoted {ends.count('promoted'):>2}/{trials}")


class _Stamped(io.TextIOBase):
    """stdout that keeps each line with the time it was printed."""

    def __init__(self, target: Any) -> None:
        self.target, self.lines, self._part = target, [], ""

    def write(self, text: str) -> int:
        self.target.write(text)
        self._part += text
        while "\n" in self._part:
            line, self._part = self._part.split("\n", 1)
            self.lines.append((time.time(), line))
        return len(text)

    def flush(self) -> None:
        self.target.flush()


def rollout_figure(folder: Path, interval: float, test_rows: int) -> None:
    """Roll a wrong-label canary out on the docker target; print first traffic → weight 0."""
    import docker
    import pandas as pd
    import yaml

    from shipml.cli import main
    from tests.canary import conftest

    client = docker.from_env(timeout=600)
    models = export_quality_classifiers(folder, test_rows=test_rows)
    repository = f"shipml-bench/quality-{conftest.SESSION}"
    images = {role: build_model_image(folder, models[role], repository, role,
                                      train=folder / "train.csv", test=folder / "test.csv",
                                      label="y", base_image=conftest.BASE_IMAGE)
              for role in ("stable", "shifted")}
    service_folder = folder / "service"
    service_folder.mkdir()
    service = conftest.new_service(service_folder)
    try:
        def config(image: str) -> Path:
            path = service.config(image, interval=f"{interval:g}s", window=f"{interval:g}s",
                                  step_timeout=f"{interval * 6:g}s", lease=f"{interval * 4:g}s")
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
            document["model"] = {"path": "model.onnx", "train": str(folder / "train.csv"),
                                 "test": str(folder / "test.csv"), "label": "y"}
            document["canary"].pop("probe")
            path.write_text(yaml.safe_dump(document), encoding="utf-8")
            return path

        output = ["--output-dir", str(service.folder / ".shipml")]
        main(["canary", "--config", str(config(images["stable"])), *output])
        rows = list(pd.read_csv(folder / "test.csv").drop(columns=["y"]).head(40)
                    .to_dict(orient="records"))
        stamped = _Stamped(sys.stdout)
        with conftest.Load(f"http://127.0.0.1:{service.port}", rows):
            sys.stdout = stamped
            try:
                main(["canary", "--config", str(config(images["shifted"])), *output])
            finally:
                sys.stdout = stamped.target
        result = json.loads((service.folder / ".shipml/results/canary.json").read_text())
        started = next(at for at, line in stamped.lines if ": start " in line)
        ended = next(at for at, line in stamped.lines if "roll back to weight 0" in line)
        print(f"\nwrong-label canary at interval {interval:g}s: {result['metrics']['phase']}, "
              f"first traffic → weight 0 in {ended - started:.1f} s "
              f"({result['metrics']['analyses']} analyses; {result['summary'][:160]})")
    finally:
        conftest.end_service(client, service)
        conftest.remove_images(client, images)
        client.close()


def main_bench() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--test-rows", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--no-rollout", action="store_true", help="only the simulated rollouts")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        judge_figures(Path(folder), options.trials, options.test_rows)
    if not options.no_rollout:
        with tempfile.TemporaryDirectory() as folder:
            rollout_figure(Path(folder), options.interval, options.test_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main_bench())
