"""Rebuild the bundled example (deterministic: fixed seeds)."""

from __future__ import annotations

import sys
from pathlib import Path

from shipml.example import example_dir


def build(target: Path) -> None:
    """Train the example pipeline and write the model, its data and a config into ``target``."""
    import pandas as pd
    from skl2onnx import to_onnx
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.rename(columns=lambda name: name.replace(" ", "_"))
    frame = frame.rename(columns={"target": "benign"})
    # One categorical column, as real tabular data has: the tumour size band.
    frame.insert(0, "size_band", pd.cut(frame["mean_radius"], [0, 12, 16, 100],
                                        labels=["small", "medium", "large"]).astype(str))
    numeric = [c for c in frame.columns if c not in ("benign", "size_band")][:10]
    frame = frame[["size_band", *numeric, "benign"]]
    train, test = train_test_split(frame, test_size=0.3, random_state=7, stratify=frame["benign"])
    features = train.drop(columns=["benign"])
    pipeline = Pipeline([
        ("prep", ColumnTransformer([
            ("num", StandardScaler(), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["size_band"]),
        ])),
        ("clf", LogisticRegression(max_iter=1000, C=0.5)),
    ])
    pipeline.fit(features, train["benign"])
    onnx_model = to_onnx(pipeline, features[:1], options={"zipmap": False},
                         target_opset={"": 17, "ai.onnx.ml": 3})
    target.mkdir(parents=True, exist_ok=True)
    (target / "model.onnx").write_bytes(onnx_model.SerializeToString())
    train.to_csv(target / "train.csv", index=False, float_format="%.6g")
    test.to_csv(target / "test.csv", index=False, float_format="%.6g")


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else example_dir())
