"""Shared fixtures: real tiny models trained with fixed seeds and exported to ONNX."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tests._services import start_services


@pytest.fixture(scope="session")
def services() -> None:
    """The Docker Engine, the local registries and the test images, from ``bash .ci/services``
    (run once per session); a test that asks for them fails with the command when they cannot
    be started, it is never skipped."""
    start_services()


@pytest.fixture(autouse=True)
def _isolated_ci_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests run as 'local' unless they set a platform: strip CI variables of the outer run."""
    for name in list(os.environ):
        if name.startswith(("GITHUB_", "SHIPML_", "INPUT_", "RUNNER_")) or name in (
            "CI", "ACT", "JENKINS_URL", "JENKINS_HOME", "CHANGE_ID", "BUILD_URL",
        ):
            monkeypatch.delenv(name, raising=False)
    yield


@dataclass(frozen=True)
class Case:
    """A model with its train/test CSVs and a shipml.yaml, all in one folder."""

    folder: Path
    model: Path
    train: Path
    test: Path
    label: str

    @property
    def config(self) -> Path:
        return self.folder / "shipml.yaml"

    def write_config(self, validate: dict[str, Any] | None = None, **model: Any) -> Path:
        """Write shipml.yaml for this case and return its path."""
        document: dict[str, Any] = {
            "model": {"path": self.model.name, "label": self.label, "train": self.train.name,
                      "test": self.test.name, **model},
        }
        if validate is not None:
            document["validate"] = validate
        self.config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return self.config


def tabular_frame(rows: int, seed: int, *, leak: bool = False) -> pd.DataFrame:
    """Return a binary-classification table with numeric and categorical features."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.normal(40, 10, rows).round(1),
        "income": rng.lognormal(10, 0.5, rows).round(2),
        "score": rng.normal(0, 1, rows),
        "tenure": rng.integers(0, 20, rows).astype(float),
        "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2]),
    })
    logit = (0.08 * (frame["age"] - 40) + 1.2 * frame["score"] - 0.1 * frame["tenure"]
             + frame["plan"].map({"basic": -0.5, "plus": 0.3, "pro": 1.0}) + 0.5)
    frame["churned"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    if leak:
        # A column written after the fact: it is the label with a little noise.
        frame["refund_issued"] = frame["churned"] + rng.normal(0, 0.05, rows)
    return frame


def export_pipeline(estimator: Any, frame: pd.DataFrame, path: Path, *,
                    categorical: list[str], zipmap: bool = False) -> None:
    """Fit a ColumnTransformer pipeline and write it to ``path`` as ONNX (one input per column)."""
    from skl2onnx import to_onnx
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    label = frame.columns[-1]
    features = frame.drop(columns=[label])
    numeric = [c for c in features.columns if c not in categorical]
    pipeline = Pipeline([
        ("prep", ColumnTransformer([
            ("num", StandardScaler(), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
        ])),
        ("model", estimator),
    ])
    pipeline.fit(features, frame[label])
    is_classifier = hasattr(estimator, "predict_proba")
    options = {"zipmap": zipmap} if is_classifier else None
    sample = features[:1].astype({name: np.float32 for name in numeric})
    onnx_model = to_onnx(pipeline, sample, options=options,
                         target_opset={"": 17, "ai.onnx.ml": 3})
    path.write_bytes(onnx_model.SerializeToString())


def make_case(folder: Path, train: pd.DataFrame, test: pd.DataFrame, estimator: Any,
              categorical: list[str], *, fit_on: pd.DataFrame | None = None,
              zipmap: bool = False) -> Case:
    """Train ``estimator`` on ``fit_on`` (default ``train``), export it and write the CSVs."""
    folder.mkdir(parents=True, exist_ok=True)
    label = str(train.columns[-1])
    model = folder / "model.onnx"
    export_pipeline(estimator, fit_on if fit_on is not None else train, model,
                    categorical=categorical, zipmap=zipmap)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    return Case(folder=folder, model=model, train=folder / "train.csv",
                test=folder / "test.csv", label=label)


@pytest.fixture(scope="session")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the bundled scikit-learn example (model.onnx, train.csv, test.csv)."""
    from shipml.example import example_dir

    folder = tmp_path_factory.mktemp("example")
    for name in ("model.onnx", "train.csv", "test.csv"):
        shutil.copy(Path(example_dir()) / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def binary_case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """A sound logistic-regression churn model with a categorical column (ZipMap output)."""
    from sklearn.linear_model import LogisticRegression

    frame = tabular_frame(1600, seed=1)
    return make_case(tmp_path_factory.mktemp("binary"), frame[:1100], frame[1100:],
                     LogisticRegression(max_iter=500), ["plan"], zipmap=True)


@pytest.fixture(scope="session")
def leaky_case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """A model trained with a column that leaks the label."""
    from sklearn.ensemble import RandomForestClassifier

    frame = tabular_frame(1600, seed=2, leak=True)
    frame = frame[[c for c in frame.columns if c != "churned"] + ["churned"]]
    return make_case(tmp_path_factory.mktemp("leaky"), frame[:1100], frame[1100:],
                     RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0),
                     ["plan"])


@pytest.fixture(scope="session")
def drift_case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """A sound model whose test data has a drifted feature (income tripled)."""
    from sklearn.linear_model import LogisticRegression

    frame = tabular_frame(1600, seed=3)
    test = frame[1100:].copy()
    test["income"] = test["income"] * 3.0
    return make_case(tmp_path_factory.mktemp("drift"), frame[:1100], test,
                     LogisticRegression(max_iter=500), ["plan"])


@pytest.fixture(scope="session")
def weak_case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """A model trained on shuffled labels: much worse than a simple baseline."""
    from sklearn.ensemble import GradientBoostingClassifier

    frame = tabular_frame(1600, seed=4)
    shuffled = frame[:1100].copy()
    shuffled["churned"] = np.random.default_rng(0).permutation(shuffled["churned"].to_numpy())
    return make_case(tmp_path_factory.mktemp("weak"), frame[:1100], frame[1100:],
                     GradientBoostingClassifier(n_estimators=30, random_state=0), ["plan"],
                     fit_on=shuffled)


@pytest.fixture(scope="session")
def multiclass_case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """A random forest on three classes, exported with a single float tensor input."""
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    features, labels = make_classification(n_samples=2400, n_features=6, n_informative=4,
                                           n_classes=3, random_state=5)
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(6)])
    frame["species"] = np.array(["setosa", "versicolor", "virginica"])[labels]
    folder = tmp_path_factory.mktemp("multiclass")
    train, test = frame[:1600], frame[1600:]
    forest = RandomForestClassifier(n_estimators=30, max_depth=4, random_state=0)
    forest.fit(train.drop(columns=["species"]).to_numpy(np.float32), train["species"])
    onnx_model = to_onnx(forest, train.drop(columns=["species"]).to_numpy(np.float32)[:1],
                         options={"zipmap": False}, target_opset={"": 17, "ai.onnx.ml": 3})
    (folder / "model.onnx").write_bytes(onnx_model.SerializeToString())
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    return Case(folder=folder, model=folder / "model.onnx", train=folder / "train.csv",
                test=folder / "test.csv", label="species")


@pytest.fixture(scope="session")
def regression_case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """A gradient-boosting regressor pipeline with a categorical column."""
    from sklearn.ensemble import GradientBoostingRegressor

    rng = np.random.default_rng(6)
    rows = 3000
    frame = pd.DataFrame({
        "rooms": rng.integers(1, 7, rows).astype(float),
        "area": rng.normal(80, 25, rows).round(1),
        "age": rng.uniform(0, 60, rows).round(0),
        "district": rng.choice(["north", "south", "centre"], rows),
    })
    frame["price"] = (2.0 * frame["area"] + 15 * frame["rooms"] - 0.8 * frame["age"]
                      + frame["district"].map({"north": 0, "south": -20, "centre": 40})
                      + rng.normal(0, 10, rows))
    return make_case(tmp_path_factory.mktemp("regression"), frame[:2000], frame[2000:],
                     GradientBoostingRegressor(n_estimators=150, max_depth=2, random_state=0),
                     ["district"])
