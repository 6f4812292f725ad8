"""The bundled example: a scikit-learn pipeline on the breast-cancer data set, exported to ONNX.

``model.onnx``, ``train.csv``, ``test.csv`` and ``shipml.yaml`` are committed; ``python -m
shipml.example`` rebuilds them (it needs scikit-learn and skl2onnx).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

FILES = ("model.onnx", "train.csv", "test.csv", "shipml.yaml")


def example_dir() -> Path:
    """Return the folder of the bundled example inside the installed package."""
    return Path(str(resources.files("shipml") / "example"))
