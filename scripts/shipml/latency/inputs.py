"""What the model is fed while it is timed or checked: real rows, or tensors made from its spec.

Real rows come from the data set (``latency.inputs.data``, else ``model.test``, else
``model.train``), repeated to fill a batch. Synthetic tensors follow the model's input spec: axis 0
is the batch, every other dynamic axis needs a size from ``latency.inputs.dims``; token-id inputs
get ids below the vocabulary size read from the embedding they index, attention masks get ones.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shipml.config import Config
from shipml.data import load_table
from shipml.errors import ConfigError
from shipml.onnx_model import OnnxModel, TensorSpec, load_session

log = logging.getLogger("shipml.latency")

Source = Literal["data", "synthetic"]
_MASK_WORDS = ("attention_mask", "input_mask", "mask")
_ZERO_WORDS = ("token_type_ids", "segment_ids", "position_ids")


@dataclass(frozen=True)
class InputPlan:
    """How to build feeds of any batch size for one model."""

    model_path: Path
    source: Source
    inputs: tuple[TensorSpec, ...]
    dims: Mapping[str, tuple[int, ...]]
    rows: pd.DataFrame | None = None
    data_source: str = ""
    vocab: Mapping[str, int] = field(default_factory=dict)
    seed: int = 0
    _model: OnnxModel | None = None

    def feeds(self, batch_size: int, offset: int = 0) -> dict[str, NDArray[Any]]:
        """Return the input dictionary for one batch of ``batch_size`` rows."""
        if self.source == "data":
            assert self.rows is not None and self._model is not None
            positions = (np.arange(batch_size) + offset) % len(self.rows)
            return self._model.feeds(self.rows.iloc[positions])
        rng = np.random.default_rng(self.seed + offset)
        return {spec.name: self._synthetic(spec, batch_size, rng) for spec in self.inputs}

    def describe(self) -> dict[str, Any]:
        """Return the inputs as JSON-ready data: name, type, shape with ``batch`` on axis 0."""
        return {
            "source": self.source,
            "data": self.data_source or None,
            "tensors": [
                {"name": spec.name, "type": spec.type,
                 "shape": ["batch", *self.dims[spec.name][1:]]}
                for spec in self.inputs
            ],
        }

    def signature(self) -> list[tuple[str, str, tuple[Any, ...]]]:
        """Return ``(name, type, shape)`` of each input, for comparing two models."""
        return [(spec.name, spec.type, spec.shape) for spec in self.inputs]

    def _synthetic(self, spec: TensorSpec, batch_size: int, rng: np.random.Generator) -> Any:
        shape = (batch_size, *self.dims[spec.name][1:])
        dtype = spec.numpy_type
        lowered = spec.name.lower()
        if dtype is np.object_:
            return np.full(shape, "a", dtype=object)
        if dtype is np.bool_:
            return rng.random(shape) < 0.5
        if np.issubdtype(dtype, np.integer):
            if any(word in lowered for word in _MASK_WORDS):
                return np.ones(shape, dtype=dtype)
            if any(word == lowered for word in _ZERO_WORDS):
                return np.zeros(shape, dtype=dtype)
            high = self.vocab.get(spec.name, 10)
            return rng.integers(0, high, size=shape).astype(dtype)
        return rng.standard_normal(shape).astype(dtype)


def model_inputs(path: Path, key: str) -> tuple[TensorSpec, ...]:
    """Return the model's inputs as onnxruntime reports them; ConfigError for a bad file."""
    session = load_session(path, key)
    return tuple(TensorSpec(item.name, item.type, tuple(item.shape))
                 for item in session.get_inputs())


def resolve_dims(inputs: Sequence[TensorSpec], dims: Mapping[str, int], where: str,
                 batch_sizes: Sequence[int] = ()) -> dict[str, tuple[int, ...]]:
    """Return each input's shape with every non-batch axis fixed (axis 0 is set to 1).

    A dynamic axis takes its size from ``dims`` by symbol (``sequence_length``) or by
    ``input.axis``. Raises ConfigError naming the input and axis when no size is given, or when a
    fixed batch axis cannot take a requested batch size.
    """
    resolved: dict[str, tuple[int, ...]] = {}
    for spec in inputs:
        shape: list[int] = []
        for axis, size in enumerate(spec.shape):
            if axis == 0:
                if isinstance(size, int) and size > 0:
                    wrong = [b for b in batch_sizes if b != size]
                    if wrong:
                        raise ConfigError(
                            f"model input {spec.name!r} has a fixed batch axis of size {size}; "
                            f"batch sizes {wrong} cannot be fed to it (latency.batch_sizes: "
                            f"[{size}])"
                        )
                shape.append(1)
                continue
            if isinstance(size, int) and size > 0:
                shape.append(size)
                continue
            symbol = size if isinstance(size, str) and size else None
            given = dims.get(symbol) if symbol else None
            if given is None:
                given = dims.get(f"{spec.name}.{axis}")
            if given is None:
                name = symbol or f"{spec.name}.{axis}"
                label = f" ({symbol!r})" if symbol else ""
                raise ConfigError(
                    f"{where}: model input {spec.name!r} axis {axis}{label} is dynamic and has "
                    f"no size; give it one, e.g.\n  latency:\n    inputs:\n      dims:\n"
                    f"        {name}: 128"
                )
            shape.append(int(given))
        resolved[spec.name] = tuple(shape)
    return resolved


def token_vocab(path: Path) -> dict[str, int]:
    """Return, for each integer input that indexes an embedding table, the table's row count."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # an unreadable file was already reported by load_session
        return {}
    tables = {init.name: int(init.dims[0]) for init in graph.initializer if init.dims}
    aliases = {graph_input.name: graph_input.name for graph_input in graph.input}
    for node in graph.node:  # follow Cast/Identity/Unsqueeze from an input to its Gather
        if node.op_type in ("Cast", "Identity", "Unsqueeze", "Reshape") and node.input \
                and node.input[0] in aliases:
            for output in node.output:
                aliases[output] = aliases[node.input[0]]
    found: dict[str, int] = {}
    for node in graph.node:
        if node.op_type == "Gather" and len(node.input) >= 2 and node.input[1] in aliases \
                and node.input[0] in tables:
            name = aliases[node.input[1]]
            found[name] = min(found.get(name, tables[node.input[0]]), tables[node.input[0]])
    return found


def build_input_plan(config: Config, model_path: Path, *, key: str = "model.path",
                     section: str = "latency", batch_sizes: Sequence[int] = (),
                     force_source: Source | None = None) -> InputPlan:
    """Return the input plan for ``model_path`` from ``<section>.inputs`` and ``model:``.

    Raises ConfigError for a bad model file, unreadable data, data columns that do not match the
    model's inputs, or a dynamic axis without a size.
    """
    inputs_cfg = config.section(section).get("inputs") or {}
    model_cfg = config.section("model")
    inputs = model_inputs(model_path, key)
    source_choice = force_source or inputs_cfg.get("source", "auto")
    data_value = inputs_cfg.get("data")
    data_key: tuple[str, ...] = (section, "inputs", "data")
    if not data_value:
        for name in ("test", "train"):
            if model_cfg.get(name):
                data_value, data_key = model_cfg[name], ("model", name)
                break
    if source_choice == "auto":
        source_choice = "data" if data_value and _tabular(inputs) else "synthetic"
    seed = int(inputs_cfg.get("seed", 0))
    if source_choice == "data":
        if not data_value:
            raise ConfigError(
                f"{config.where(section, 'inputs', 'source')}: inputs.source is data but no data "
                f"set is configured; set {section}.inputs.data or model.test"
            )
        data_path = config.resolve_path(data_value, *data_key)
        return data_plan(model_path, key, data_path, ".".join(data_key), model_cfg, inputs,
                         seed=seed)
    dims = resolve_dims(inputs, inputs_cfg.get("dims") or {},
                        config.where(section, "inputs", "dims"), batch_sizes)
    vocab = token_vocab(model_path)
    configured_vocab = inputs_cfg.get("vocab_size")
    if configured_vocab:
        vocab = {spec.name: int(configured_vocab) for spec in inputs
                 if np.issubdtype(spec.numpy_type, np.integer)}
    return InputPlan(model_path=model_path, source="synthetic", inputs=inputs, dims=dims,
                     vocab=vocab, seed=seed)


def data_plan(model_path: Path, key: str, data_path: Path, data_key: str,
              model_cfg: Mapping[str, Any], inputs: tuple[TensorSpec, ...] | None = None, *,
              seed: int = 0, max_rows: int = 100_000) -> InputPlan:
    """Return a plan feeding rows of ``data_path`` to the model.

    Raises ConfigError naming ``data_key`` when the data cannot be read or its columns do not
    match the model's inputs (both lists are shown).
    """
    table = load_table(data_path, data_key)
    model = OnnxModel(model_path, key=key, features=model_cfg.get("features"))
    drop = [c for c in [model_cfg.get("label"), *(model_cfg.get("ignore_columns") or [])]
            if c and c in table.frame.columns and c not in model.input_names]
    frame = table.frame.drop(columns=drop)
    try:
        columns = model.bind_columns(list(frame.columns), table.source)
    except ConfigError as exc:
        raise ConfigError(f"{data_key}: {exc.message}") from None
    frame = frame[columns].iloc[:max_rows].reset_index(drop=True)
    model.feeds(frame.iloc[:1])  # a type that cannot be converted fails here, not in a child
    specs = inputs if inputs is not None else tuple(model.inputs)
    dims = {spec.name: (1, *[int(s) if isinstance(s, int) and s > 0 else 1
                             for s in spec.shape[1:]]) for spec in specs}
    return InputPlan(model_path=model_path, source="data", inputs=specs, dims=dims, rows=frame,
                     data_source=str(data_path), seed=seed, _model=model)


def _tabular(inputs: Sequence[TensorSpec]) -> bool:
    # Rows of a table feed 2-D inputs: [batch, features] or one [batch, 1] input per column.
    return all(len(spec.shape) == 2 for spec in inputs)
