"""The artifact that ships: an ONNX file run by onnxruntime, usable as a scikit-learn estimator.

Two input layouts are supported: one float tensor ``[batch, n_features]`` (features taken in the
data's column order, or ``model.features``), or one ``[batch, 1]`` input per column, as skl2onnx
emits for pipelines with a ``ColumnTransformer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from shipml.errors import ConfigError, first_line

if TYPE_CHECKING:  # frames are passed in; the server binds rows without pandas
    import pandas as pd

Layout = Literal["tensor", "columns"]

_NUMPY_TYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}
ONNX_MAGIC_HINT = "an ONNX model file (for scikit-learn: skl2onnx.to_onnx(model, X).SerializeToString())"


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as onnxruntime describes it."""

    name: str
    type: str
    shape: tuple[int | str | None, ...]

    @property
    def numpy_type(self) -> Any:
        """Return the numpy dtype to feed, or raise ConfigError for unsupported tensor types."""
        try:
            return _NUMPY_TYPES[self.type]
        except KeyError:
            raise ConfigError(
                f"model input {self.name!r} has type {self.type}; supported: "
                f"{', '.join(sorted(_NUMPY_TYPES))}"
            ) from None


def load_session(path: Path, key: str = "model.path", providers: Sequence[str] | None = None,
                 options: Any = None) -> Any:
    """Return an onnxruntime InferenceSession for ``path``.

    Raises ConfigError naming ``key`` when the file is missing, is not ONNX or is truncated.
    """
    import onnxruntime as ort

    if not path.exists():
        raise ConfigError(f"{key}: model file {path} not found")
    if path.is_dir():
        raise ConfigError(f"{key}: {path} is a directory; expected {ONNX_MAGIC_HINT}")
    if path.stat().st_size == 0:
        raise ConfigError(f"{key}: model file {path} is empty; expected {ONNX_MAGIC_HINT}")
    if options is None:
        options = ort.SessionOptions()
        options.log_severity_level = 4  # a failing run is reported once, by the caller
    try:
        return ort.InferenceSession(
            str(path),
            sess_options=options,
            providers=list(providers) if providers else ["CPUExecutionProvider"],
        )
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise ConfigError(
            f"{key}: {path} is not a valid ONNX model (truncated or another format?): "
            f"{first_line(exc)}"
        ) from None


class OnnxModel:
    """An ONNX model behind ``predict``/``predict_proba`` on pandas DataFrames."""

    def __init__(self, path: Path, *, key: str = "model.path", features: Sequence[str] | None = None,
                 batch_size: int = 8192, session: Any = None) -> None:
        self.path = path
        self.key = key
        self.session = session if session is not None else load_session(path, key)
        self.inputs = [
            TensorSpec(item.name, item.type, tuple(item.shape)) for item in self.session.get_inputs()
        ]
        self.outputs = [
            TensorSpec(item.name, item.type, tuple(item.shape)) for item in self.session.get_outputs()
        ]
        self.batch_size = batch_size
        self.layout: Layout = self._layout()
        self.features: list[str] | None = list(features) if features else None
        self._classes: NDArray[Any] | None = None
        self._label_output, self._proba_output = self._classifier_outputs()

    @property
    def classes_(self) -> NDArray[Any]:
        """Return the class labels in probability-column order, once a prediction revealed them.

        Raises AttributeError before that (so ``hasattr(model, "classes_")`` is honest).
        """
        if self._classes is None:
            raise AttributeError("classes_ is known after the first prediction")
        return self._classes

    @classes_.setter
    def classes_(self, value: NDArray[Any]) -> None:
        self._classes = value

    # -- description -------------------------------------------------------------------------

    @property
    def is_classifier(self) -> bool:
        """Return True when the model emits class probabilities."""
        return self._proba_output is not None

    @property
    def input_names(self) -> list[str]:
        """Return the model's input names in graph order."""
        return [spec.name for spec in self.inputs]

    def n_tensor_features(self) -> int | None:
        """Return the fixed feature width of a single-tensor model, None when dynamic."""
        width = self.inputs[0].shape[1] if len(self.inputs[0].shape) > 1 else None
        return width if isinstance(width, int) else None

    def _layout(self) -> Layout:
        if len(self.inputs) == 1 and len(self.inputs[0].shape) == 2:
            width = self.inputs[0].shape[1]
            if not (isinstance(width, int) and width == 1) or self.inputs[0].type != "tensor(string)":
                return "tensor"
        return "columns"

    def _classifier_outputs(self) -> tuple[str | None, str | None]:
        label = proba = None
        for spec in self.outputs:
            if spec.type.startswith("seq(map("):
                proba = spec.name
            elif "prob" in spec.name.lower() and spec.type in ("tensor(float)", "tensor(double)"):
                proba = spec.name
        if proba is not None:
            label = next((spec.name for spec in self.outputs if spec.name != proba), None)
        return label, proba

    # -- feeding ---------------------------------------------------------------------------------

    def bind_columns(self, columns: Sequence[str], source: str,
                     reference: Sequence[str] | None = None) -> list[str]:
        """Return the data columns the model reads, in order; check they exist in ``columns``.

        ``reference``: the feature columns of another data set the model reads (train's, when
        ``source`` is the test set), used to name the columns ``source`` lacks. Raises
        ConfigError naming the missing columns, or the model's inputs and the data's columns
        when they do not match.
        """
        available = list(columns)
        if self.layout == "columns":
            missing = [name for name in self.input_names if name not in available]
            if missing:
                raise ConfigError(
                    f"{self.path}: model inputs {missing} are not columns of {source}; "
                    f"model inputs: {self.input_names}; data columns: {available}"
                )
            return self.input_names
        chosen = self.features if self.features is not None else available
        missing = [name for name in chosen if name not in available]
        if missing:
            raise ConfigError(
                f"{source}: feature columns {missing} are missing; the model reads {chosen} "
                f"(model.features); data columns: {available}"
            )
        width = self.n_tensor_features()
        lacking = [name for name in reference or () if name not in available]
        # Some of the reference's columns present, some not: those are what the data lacks. None
        # present: another table altogether, which the width message below describes better.
        if lacking and len(lacking) < len(reference or ()) and \
                (width is None or width != len(chosen)):
            raise ConfigError(
                f"{source}: feature columns {lacking} are missing; the model reads "
                f"{list(reference or ())}; data columns: {available}"
            )
        if width is not None and width != len(chosen):
            raise ConfigError(
                f"{self.path}: model input {self.inputs[0].name!r} takes {width} features but "
                f"{source} has {len(chosen)} feature columns {chosen}; list the model's columns "
                f"in order under model.features"
            )
        return chosen

    def feeds(self, frame: pd.DataFrame) -> dict[str, NDArray[Any]]:
        """Return the onnxruntime input dictionary for the rows of ``frame``."""
        if self.layout == "tensor":
            spec = self.inputs[0]
            columns = self.features if self.features is not None else list(frame.columns)
            values = frame[columns].to_numpy()
            return {spec.name: _as_type(values, spec)}
        feeds = {}
        for spec in self.inputs:
            column = frame[spec.name].to_numpy().reshape(-1, 1)
            feeds[spec.name] = _as_type(column, spec)
        return feeds

    # -- predicting ------------------------------------------------------------------------------

    def run(self, frame: pd.DataFrame) -> tuple[NDArray[Any], NDArray[Any] | None]:
        """Return ``(predictions, probabilities or None)`` for every row, in batches."""
        predictions: list[NDArray[Any]] = []
        probabilities: list[NDArray[Any]] = []
        for start in range(0, len(frame), self.batch_size):
            batch = frame.iloc[start : start + self.batch_size]
            outputs = self.session.run(None, self.feeds(batch))
            labels, proba = self.decode(outputs, len(batch))
            predictions.append(labels)
            if proba is not None:
                probabilities.append(proba)
        if not predictions:
            return np.array([]), None
        pred = np.concatenate(predictions)
        proba_all = np.concatenate(probabilities) if probabilities else None
        return pred, proba_all

    def decode(self, outputs: Sequence[Any], rows: int) -> tuple[NDArray[Any], NDArray[Any] | None]:
        """Return ``(predictions, probabilities or None)`` from one ``session.run`` of ``rows``
        rows (all outputs, in the model's order): the one place outputs become labels or values.

        A classifier's labels come from its label output, else from the most probable class;
        probabilities are one column per class in ``classes_`` order (a ZipMap is unpacked).
        """
        if self._proba_output is None:
            return np.asarray(outputs[0]).reshape(rows, -1)[:, 0], None
        named = dict(zip((spec.name for spec in self.outputs), outputs, strict=True))
        proba = self.proba_matrix(named[self._proba_output])
        if self._label_output is not None:
            return np.asarray(named[self._label_output]).reshape(-1), proba
        return self.classes_[np.argmax(proba, axis=1)], proba

    def proba_matrix(self, raw: Any) -> NDArray[Any]:
        """Return a probability output as a matrix, one column per class (ZipMap unpacked, a
        single column of P(1) widened to two)."""
        if isinstance(raw, list):  # ZipMap: one {class: probability} dict per row
            keys = sorted(raw[0].keys()) if raw else []
            if self._classes is None:
                self._classes = np.array(keys)
            return np.array([[row[key] for key in keys] for row in raw], dtype=np.float64)
        matrix = np.asarray(raw, dtype=np.float64)
        if matrix.ndim == 1:
            matrix = np.column_stack([1 - matrix, matrix])
        if self._classes is None:
            self._classes = np.arange(matrix.shape[1])
        return matrix

    def __getstate__(self) -> dict[str, Any]:
        # An onnxruntime session cannot be pickled; workers (joblib, multiprocessing) reload it.
        state = dict(self.__dict__)
        state["session"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.session = load_session(self.path, self.key)

    def fit(self, frame: pd.DataFrame, labels: Any = None) -> OnnxModel:
        """Return self: the artifact is already trained (present so scikit-learn tools accept it)."""
        return self

    def predict(self, frame: pd.DataFrame) -> NDArray[Any]:
        """Return predicted labels (classifiers) or values (regressors) for ``frame``."""
        return self.run(frame)[0]

    def predict_proba(self, frame: pd.DataFrame) -> NDArray[Any]:
        """Return class probabilities, one column per class in ``classes_`` order.

        Raises ConfigError for a model without a probability output.
        """
        proba = self.run(frame)[1]
        if proba is None:
            raise ConfigError(f"{self.path}: the model has no probability output")
        return proba


def _as_type(values: NDArray[Any], spec: TensorSpec) -> NDArray[Any]:
    dtype = spec.numpy_type
    if dtype is np.object_:
        return np.array([["" if _is_missing(v) else str(v) for v in row] for row in values],
                        dtype=object)
    try:
        return values.astype(dtype)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"data for model input {spec.name!r} cannot be converted to {spec.type}: {exc}"
        ) from None


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
