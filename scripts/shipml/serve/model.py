"""The served model: :class:`shipml.onnx_model.OnnxModel` with request rows and v2 tensors bound to
its inputs, and its outputs decoded, the way ``validate`` and ``latency`` do it.

Binding and decoding are ``OnnxModel``'s: the columns a request must name come from
``OnnxModel.bind_columns`` (as ``validate`` binds a data set), values are converted with the
model's input types, and labels and probabilities come out of ``OnnxModel``'s own decoding of the
probability output (ZipMap or matrix). Only the per-request path avoids pandas, which costs more
than the model on a one-row request.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shipml.errors import ConfigError, first_line
from shipml.onnx_model import OnnxModel, TensorSpec, load_session
from shipml.serve import _protocol
from shipml.serve._protocol import InferRequest, RequestError
from shipml.serve.settings import ServeSettings

log = logging.getLogger("shipml.serve")

#: runs one onnxruntime call: ``(output names or None, feeds) -> outputs``
Runner = Callable[[list[str] | None, dict[str, NDArray[Any]]], list[Any]]
NO_BATCH_AXIS = (
    "serve.batching: model output {name!r} has no batch axis (shape {shape} for 2 rows), so joined "
    "requests cannot be split back; set serve.batching.max_batch_size: 1"
)


class ModelRunError(Exception):
    """The model raised while running a request that passed every check (answered 500)."""


@dataclass(frozen=True)
class Prediction:
    """What ``/predict`` answers for a request's rows."""

    predictions: NDArray[Any]
    probabilities: NDArray[Any] | None
    classes: list[Any] | None
    #: the request's columns, for the prediction log
    inputs: dict[str, list[Any]]

    def body(self) -> dict[str, Any]:
        """Return the JSON answer: ``predictions``, and ``probabilities`` (with ``classes`` when the
        model names them) for classifiers."""
        found: dict[str, Any] = {"predictions": _protocol.json_values(self.predictions)}
        if self.probabilities is not None:
            found["probabilities"] = [_protocol.json_values(row) for row in self.probabilities]
            if self.classes is not None:
                found["classes"] = self.classes
        return found


def file_version(path: Path) -> str:
    """Return the first 12 hex digits of the file's sha256: the default ``version`` label."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


class ServedModel:
    """One model behind the server: metadata, ``/predict`` rows and v2 tensors, decoded outputs."""

    def __init__(self, settings: ServeSettings) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.intra_op
        options.inter_op_num_threads = settings.inter_op
        # A failing request is logged once, by the server, with its request id.
        options.log_severity_level = 4
        if settings.inter_op > 1:
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        key = "serve.model"
        session = load_session(settings.model_path, key, options=options)
        self.settings = settings
        self.name = settings.name
        self.version = settings.version or file_version(settings.model_path)
        self.onnx = OnnxModel(settings.model_path, key=key, features=settings.features,
                              session=session)
        for spec in self.onnx.inputs:
            spec.numpy_type  # noqa: B018 - an input type the server cannot feed fails at start
        self.session = session
        self.columns = self._columns()
        self.output_names = [spec.name for spec in self.onnx.outputs]
        self._runner: Runner = self._run_direct
        self._observe: Callable[[float, int], None] = lambda seconds, rows: None

    # -- setup -------------------------------------------------------------------------------

    def _columns(self) -> list[str] | None:
        """Return the columns a ``/predict`` row names, bound as ``validate`` binds a data set;
        None for a single-tensor model whose columns nobody named (rows are then lists)."""
        if self.onnx.layout == "columns":
            return self.onnx.bind_columns(self.onnx.input_names, "the model's inputs")
        names = self.settings.features
        if not names:
            return None
        try:
            return self.onnx.bind_columns(list(names), self.settings.features_source)
        except ConfigError as exc:
            log.warning("serve: /predict takes rows as lists: %s", exc.message)
            return None

    def use_runner(self, runner: Runner) -> None:
        """Route every onnxruntime call through ``runner`` (the dynamic batcher)."""
        self._runner = runner

    def observe_inference(self, observer: Callable[[float, int], None]) -> None:
        """Call ``observer(seconds, rows)`` after every direct onnxruntime call."""
        self._observe = observer

    def _run_direct(self, names: list[str] | None, feeds: dict[str, NDArray[Any]]) -> list[Any]:
        started = time.perf_counter()
        outputs: list[Any] = self.session.run(names, feeds)
        rows = next(iter(feeds.values())).shape[0] if feeds else 0
        self._observe(time.perf_counter() - started, rows)
        return outputs

    def example_feeds(self, rows: int) -> dict[str, NDArray[Any]]:
        """Return ``rows`` rows of zeros (empty strings for text) for every input: the warm-up."""
        feeds = {}
        for spec in self.onnx.inputs:
            shape = [rows, *(dim if isinstance(dim, int) and dim > 0 else 1 for dim in spec.shape[1:])]
            dtype = spec.numpy_type
            feeds[spec.name] = (np.full(shape, "", dtype=object) if dtype is np.object_
                                else np.zeros(shape, dtype=dtype))
        return feeds

    def warm_up(self) -> float:
        """Run one inference on example rows; return its seconds. With batching, also check every
        output has a batch axis. Raises ConfigError when the model cannot run on them."""
        started = time.perf_counter()
        try:
            outputs = self.session.run(None, self.example_feeds(1))
            self.onnx.decode(outputs, 1)
            if self.settings.batching:
                for spec, value in zip(self.onnx.outputs, self.session.run(None, self.example_feeds(2)),
                                       strict=True):
                    if _rows(value) != 2:
                        shape = list(np.shape(value)) if not isinstance(value, list) else len(value)
                        raise ConfigError(NO_BATCH_AXIS.format(name=spec.name, shape=shape))
        except ConfigError:
            raise
        except Exception as exc:  # onnxruntime's own exception types
            raise ConfigError(f"serve.model: {self.settings.model_path}: the warm-up inference "
                              f"failed: {first_line(exc)}") from None
        return time.perf_counter() - started

    # -- metadata ----------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """Return the v2 model metadata: name, versions, platform, inputs and outputs."""
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "onnxruntime_onnx",
            "inputs": [_tensor_metadata(spec) for spec in self.onnx.inputs],
            "outputs": [_tensor_metadata(spec) for spec in self.onnx.outputs],
            "parameters": {"columns": self.columns} if self.columns else {},
        }

    # -- /predict ----------------------------------------------------------------------------

    def predict(self, rows: Sequence[Any]) -> Prediction:
        """Return labels (classifiers) or values (regressors), with probabilities, for ``rows``.

        Raises RequestError 4xx for rows the model cannot take, ModelRunError when the model
        raises on rows that passed every check.
        """
        inputs, feeds = self._row_feeds(rows)
        outputs = self._run(None, feeds)
        predictions, probabilities = self.onnx.decode(outputs, len(rows))
        classes = None
        if probabilities is not None and self._zipmap():
            classes = self.onnx.classes_.tolist()
        return Prediction(predictions=predictions, probabilities=probabilities, classes=classes,
                          inputs=inputs)

    def _row_feeds(self, rows: Sequence[Any]) -> tuple[dict[str, list[Any]], dict[str, NDArray[Any]]]:
        if self.columns is None:
            return self._list_feeds(rows)
        values = _protocol.column_values(rows, self.columns, "rows")
        if self.onnx.layout == "columns":
            specs = {spec.name: spec for spec in self.onnx.inputs}
            fields = {name: f"rows[].{name}" for name in self.columns}
            feeds = {name: _protocol.column_array(values[name], specs[name], fields[name])
                     for name in self.columns}
            _protocol.check_axes(feeds, self.onnx.inputs, fields)
            return values, feeds
        spec = self.onnx.inputs[0]
        for name in self.columns:  # names the offending column, not the tensor
            _protocol.convert(values[name], spec, f"rows[].{name}")
        matrix = [[row[name] for name in self.columns] for row in rows]
        return values, {spec.name: _protocol.convert(matrix, spec, "rows")}

    def _list_feeds(self, rows: Sequence[Any]) -> tuple[dict[str, list[Any]], dict[str, NDArray[Any]]]:
        spec = self.onnx.inputs[0]
        width = self.onnx.n_tensor_features()
        for index, row in enumerate(rows):
            if not isinstance(row, list) or (width is not None and len(row) != width):
                wanted = f"{width} numbers" if width is not None else "a list of numbers"
                raise RequestError(422, f"rows[{index}] must be a list of {wanted}: this model takes "
                                        f"one tensor and its columns are not named (set "
                                        f"model.features to send objects)", f"rows[{index}]", wanted)
        array = _protocol.convert(list(rows), spec, "rows")
        if array.ndim != 2:
            raise RequestError(422, "rows must be lists of equal length", "rows",
                               "a list of equal-length lists")
        inputs = {f"{index}": array[:, index].tolist() for index in range(array.shape[1])}
        return inputs, {spec.name: array}

    def _zipmap(self) -> bool:
        return any(spec.type.startswith("seq(map(") for spec in self.onnx.outputs)

    # -- /v2/models/{name}/infer -------------------------------------------------------------

    def infer(self, request: InferRequest) -> list[dict[str, Any]]:
        """Return the v2 output tensors for a parsed request; a ZipMap output comes back as its
        probability matrix (FP64, one column per class). Raises ModelRunError when the model
        raises."""
        outputs = self._run(None, request.feeds)
        named = dict(zip(self.output_names, outputs, strict=True))
        chosen = request.outputs or self.output_names
        tensors = []
        for name in chosen:
            value = named[name]
            if isinstance(value, list):
                value = self.onnx.proba_matrix(value)
            tensors.append(_protocol.output_tensor(name, np.asarray(value)))
        return tensors

    def _run(self, names: list[str] | None, feeds: dict[str, NDArray[Any]]) -> list[Any]:
        try:
            return self._runner(names, feeds)
        except RequestError:
            raise
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelRunError(f"{type(exc).__name__}: {first_line(exc)}") from exc


def _rows(value: Any) -> int | None:
    if isinstance(value, list):
        return len(value)
    shape = np.shape(value)
    return int(shape[0]) if shape else None


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": _protocol.V2_DATATYPES.get(spec.type, spec.type),
            "shape": _protocol.v2_shape(spec)}
