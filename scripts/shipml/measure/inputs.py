"""What a model is fed while it is timed or checked: rows of a data file, or tensors made from
its spec.

- A table (CSV/TSV/Parquet) feeds tabular models: its columns are bound to the model's inputs
  (``model.features``, one input per column, label and ignored columns dropped).
- A tensor file feeds any model with real inputs: ``.npz`` with one array per model input (first
  axis = rows), or JSON Lines with one object of named inputs per row
  (``{"input_ids": [...], "attention_mask": [...]}``).
- Synthetic tensors follow the model's input spec: axis 0 is the batch, every other dynamic axis
  needs a size from ``dims``; token-id inputs get ids below the vocabulary size read from the
  embedding they index, attention masks get ones.

Batches repeat the rows to fill themselves. Every setting arrives as :class:`InputSettings`;
:func:`input_settings` reads them from ``model:``. What describes the model's inputs (``source``,
``data``, ``dims``, ``vocab_size``) is said once in ``model.inputs`` for every stage that feeds the
model; a stage's own ``<stage>.inputs`` key of the same name wins for that stage alone, key by key
(:func:`stage_inputs`). ``seed`` and ``max_feed_mb`` are each stage's own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shipml.config import Config, key_schema
from shipml.data import load_table
from shipml.errors import ConfigError
from shipml.measure._tensors import is_tensor_file, read_tensors
from shipml.onnx_model import OnnxModel, TensorSpec, load_session

Source = Literal["data", "synthetic"]
SourceChoice = Literal["auto", "data", "synthetic"]
#: the largest size a dynamic axis may be given (the schemas say the same)
MAX_AXIS = 1_048_576
#: the default ceiling of one batch's feeds, in MiB (``<stage>.inputs.max_feed_mb``)
DEFAULT_MAX_FEED_MB = 1024
#: bytes counted for one string element, whose real size is unknown before it is made
_STRING_BYTES = 64
_MASK_WORDS = ("attention_mask", "input_mask", "mask")
_ZERO_WORDS = ("token_type_ids", "segment_ids", "position_ids")
#: where the inputs every stage shares are declared
MODEL_INPUTS: tuple[str, str] = ("model", "inputs")
NO_DATA = ("{where}: inputs.source is data but no data set is configured; set model.inputs.data "
           "({stage}.inputs.data for {stage} alone) or model.test")
DYNAMIC_AXIS = ("{where}: model input {input!r} axis {axis}{label} is dynamic and has no size; "
                "give it one, e.g.\n{snippet}")


@dataclass(frozen=True)
class DataFile:
    """A configured data file and where it was configured (``file:line key`` or the flag)."""

    path: Path
    where: str


@dataclass(frozen=True)
class InputKey:
    """One input key as a stage sees it: its value and the key that set it (or would)."""

    value: Any
    path: tuple[str, ...]


@dataclass(frozen=True)
class InputSettings:
    """Where a plan's inputs come from and how big they may get.

    ``data`` lists the candidate files in order of preference (the stage's own key, then
    ``model.inputs.data``, then ``model.test``/``model.train``); the first is used. The
    ``*_where`` texts say where a key was set, for messages; ``stage`` names the stage whose
    ``<stage>.inputs`` keys messages suggest.
    """

    stage: str = "latency"
    source: SourceChoice = "auto"
    source_where: str = "inputs.source"
    data: tuple[DataFile, ...] = ()
    dims: Mapping[str, int] = field(default_factory=dict)
    dims_where: str = "inputs.dims"
    #: the key a missing size goes in, for the snippet of the message
    dims_key: tuple[str, ...] = (*MODEL_INPUTS, "dims")
    vocab_size: int | None = None
    seed: int = 0
    max_feed_bytes: int = DEFAULT_MAX_FEED_MB * 2**20
    max_feed_where: str = "inputs.max_feed_mb"
    features: tuple[str, ...] | None = None
    #: columns of a table that are not inputs: the label and ``model.ignore_columns``
    drop_columns: tuple[str, ...] = ()
    max_rows: int = 100_000

    def preferring(self, data: DataFile) -> InputSettings:
        """Return these settings with ``data`` used first, and the data source required."""
        return replace(self, source="data", data=(data, *self.data))


class Rows(Protocol):
    """Real rows a plan feeds from (a table, or the arrays of a tensor file)."""

    @property
    def source(self) -> str:
        """Return the file the rows come from."""
        ...

    def __len__(self) -> int: ...

    def take(self, positions: NDArray[np.intp]) -> dict[str, NDArray[Any]]:
        """Return the feeds of the rows at ``positions``."""
        ...


@dataclass(frozen=True)
class TableRows:
    """Rows of a table, bound to the model's inputs."""

    frame: pd.DataFrame
    model: OnnxModel
    source: str

    def __len__(self) -> int:
        return len(self.frame)

    def take(self, positions: NDArray[np.intp]) -> dict[str, NDArray[Any]]:
        """Return the feeds of the rows at ``positions``."""
        return self.model.feeds(self.frame.iloc[positions])


@dataclass(frozen=True)
class TensorRows:
    """Rows of a tensor file: one array per model input, rows on the first axis."""

    arrays: Mapping[str, NDArray[Any]]
    source: str

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def take(self, positions: NDArray[np.intp]) -> dict[str, NDArray[Any]]:
        """Return the feeds of the rows at ``positions``."""
        return {name: array[positions] for name, array in self.arrays.items()}


@dataclass(frozen=True)
class InputPlan:
    """How to build feeds of any batch size for one model."""

    model_path: Path
    source: Source
    inputs: tuple[TensorSpec, ...]
    dims: Mapping[str, tuple[int, ...]]
    rows: Rows | None = None
    vocab: Mapping[str, int] = field(default_factory=dict)
    seed: int = 0

    @property
    def data_source(self) -> str:
        """Return the data file the rows come from, or ``""`` for synthetic tensors."""
        return self.rows.source if self.rows is not None else ""

    @property
    def table(self) -> pd.DataFrame | None:
        """Return the bound table when the rows come from one, else None."""
        return self.rows.frame if isinstance(self.rows, TableRows) else None

    @property
    def row_count(self) -> int | None:
        """Return how many real rows there are, None for synthetic tensors."""
        return len(self.rows) if self.rows is not None else None

    def feeds(self, batch_size: int, offset: int = 0) -> dict[str, NDArray[Any]]:
        """Return the input dictionary for one batch of ``batch_size`` rows."""
        if self.rows is not None:
            positions = (np.arange(batch_size) + offset) % len(self.rows)
            return self.rows.take(positions)
        rng = np.random.default_rng(self.seed + offset)
        return {spec.name: self._synthetic(spec, batch_size, rng) for spec in self.inputs}

    def feed_bytes(self, batch_size: int) -> dict[str, int]:
        """Return the bytes each input's feed takes at ``batch_size``, without building it."""
        if self.rows is not None:
            one = self.rows.take(np.zeros(1, dtype=np.intp))
            return {name: _nbytes(value) * batch_size for name, value in one.items()}
        sizes = {}
        for spec in self.inputs:
            elements = batch_size * math.prod(self.dims[spec.name][1:])
            dtype = spec.numpy_type
            sizes[spec.name] = elements * (_STRING_BYTES if dtype is np.object_
                                           else np.dtype(dtype).itemsize)
        return sizes

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


def model_input_keys() -> tuple[str, ...]:
    """Return the keys of ``model.inputs``, as the schema declares them: the ones every stage
    that feeds the model shares and a stage's ``<stage>.inputs`` may override."""
    return tuple(key_schema(MODEL_INPUTS).get("properties") or {})


def stage_inputs(config: Config, stage: str) -> dict[str, InputKey]:
    """Return the effective ``inputs`` keys of ``stage``, each with the key that set it.

    A key of ``model.inputs`` comes from ``<stage>.inputs`` where the stage sets it (a value
    other than null; ``dims`` replaces ``model.inputs.dims`` whole), else from ``model.inputs``
    (its default when unset there too). The stage's own keys (``seed``, ``max_feed_mb``) come
    from ``<stage>.inputs``. Raises nothing: the config was validated when it was loaded.
    """
    stage_cfg = config.section(stage).get("inputs") or {}
    model_cfg = config.section("model").get("inputs") or {}
    shared = model_input_keys()
    effective: dict[str, InputKey] = {}
    for key in (*shared, *(k for k in stage_cfg if k not in shared)):
        if stage_cfg.get(key) is not None or key not in shared:
            effective[key] = InputKey(stage_cfg.get(key), (stage, "inputs", key))
        else:
            effective[key] = InputKey(model_cfg.get(key), (*MODEL_INPUTS, key))
    return effective


def input_settings(config: Config, stage: str, *, prefer: Sequence[str] = ("test", "train")
                   ) -> InputSettings:
    """Return the input settings of ``stage``: the keys :func:`stage_inputs` resolves
    (``<stage>.inputs`` over ``model.inputs``), then the data sets of ``model:`` in the order
    ``prefer`` names them (``test``, ``train``)."""
    inputs = stage_inputs(config, stage)
    model_cfg = config.section("model")
    files: list[DataFile] = []
    data = inputs["data"]
    if data.value:
        files.append(DataFile(config.resolve_path(data.value, *data.path),
                              config.where(*data.path)))
    for name in prefer:
        if model_cfg.get(name):
            files.append(DataFile(config.resolve_path(model_cfg[name], "model", name),
                                  config.where("model", name)))
    drop = tuple(str(c) for c in [model_cfg.get("label"), *(model_cfg.get("ignore_columns") or [])]
                 if c)
    dims, vocab = inputs["dims"], inputs["vocab_size"].value
    seed, max_feed = inputs.get("seed"), inputs.get("max_feed_mb")
    return InputSettings(
        stage=stage, source=inputs["source"].value or "auto",
        source_where=config.where(*inputs["source"].path), data=tuple(files),
        dims={str(k): int(v) for k, v in (dims.value or {}).items()},
        dims_where=config.where(*dims.path), dims_key=dims.path,
        vocab_size=int(vocab) if vocab else None,
        seed=int(seed.value) if seed and seed.value is not None else 0,
        max_feed_bytes=int(max_feed.value if max_feed and max_feed.value is not None
                           else DEFAULT_MAX_FEED_MB) * 2**20,
        max_feed_where=config.where(stage, "inputs", "max_feed_mb"),
        features=tuple(model_cfg["features"]) if model_cfg.get("features") else None,
        drop_columns=drop,
    )


def model_inputs(path: Path, key: str) -> tuple[TensorSpec, ...]:
    """Return the model's inputs as onnxruntime reports them; ConfigError for a bad file."""
    session = load_session(path, key)
    return tuple(TensorSpec(item.name, item.type, tuple(item.shape))
                 for item in session.get_inputs())


def build_input_plan(model_path: Path, settings: InputSettings, *, key: str = "model.path",
                     batch_sizes: Sequence[int] = ()) -> InputPlan:
    """Return the input plan for ``model_path``.

    Source ``auto`` feeds the first data file when it is a tensor file or the model is tabular,
    synthetic tensors otherwise. Raises ConfigError for a bad model file, unreadable data, data
    that does not fit the model's inputs (naming the file and the input), a dynamic axis without
    a size, or feeds of a batch larger than ``settings.max_feed_bytes``.
    """
    inputs = model_inputs(model_path, key)
    for spec in inputs:  # an unsupported input type is an error before any work
        _ = spec.numpy_type
    choice = settings.source
    data = settings.data[0] if settings.data else None
    if choice == "auto":
        choice = "data" if data and (is_tensor_file(data.path) or _tabular(inputs)) \
            else "synthetic"
    if choice == "data":
        if data is None:
            raise ConfigError(NO_DATA.format(where=settings.source_where, stage=settings.stage))
        if is_tensor_file(data.path):
            plan = _tensor_plan(model_path, data, inputs, settings)
        else:
            plan = _table_plan(model_path, key, data, inputs, settings)
    else:
        plan = _synthetic_plan(model_path, inputs, settings, batch_sizes)
    _check_feed_size(plan, batch_sizes or (1,), settings,
                     data.where if plan.rows is not None and data else settings.dims_where)
    return plan


def resolve_dims(inputs: Sequence[TensorSpec], dims: Mapping[str, int], where: str,
                 batch_sizes: Sequence[int] = (), *,
                 key: Sequence[str] = (*MODEL_INPUTS, "dims")) -> dict[str, tuple[int, ...]]:
    """Return each input's shape with every non-batch axis fixed (axis 0 is set to 1).

    A dynamic axis takes its size from ``dims`` by symbol (``sequence_length``) or by
    ``input.axis``. Raises ConfigError naming the input and axis when no size is given (with a
    snippet that gives it one under ``key``) or it is above :data:`MAX_AXIS`, or when a fixed
    batch axis cannot take a requested batch size.
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
                            f"batch sizes {wrong} cannot be fed to it: measure batch size "
                            f"{size} only"
                        )
                shape.append(1)
                continue
            if isinstance(size, int) and size > 0:
                shape.append(size)
                continue
            symbol = size if isinstance(size, str) and size else None
            name = symbol if symbol and symbol in dims else f"{spec.name}.{axis}"
            given = dims.get(name)
            if given is None:
                name = symbol or f"{spec.name}.{axis}"
                label = f" ({symbol!r})" if symbol else ""
                raise ConfigError(DYNAMIC_AXIS.format(
                    where=where, input=spec.name, axis=axis, label=label,
                    snippet=_yaml_snippet((*key, name), "128")))
            if not 1 <= int(given) <= MAX_AXIS:
                raise ConfigError(f"{where}: {name} is {given}; a dimension is between 1 and "
                                  f"{MAX_AXIS}")
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


def _synthetic_plan(model_path: Path, inputs: tuple[TensorSpec, ...], settings: InputSettings,
                    batch_sizes: Sequence[int]) -> InputPlan:
    dims = resolve_dims(inputs, settings.dims, settings.dims_where, batch_sizes,
                        key=settings.dims_key)
    vocab = token_vocab(model_path)
    if settings.vocab_size:
        vocab = {spec.name: settings.vocab_size for spec in inputs
                 if np.issubdtype(spec.numpy_type, np.integer)}
    return InputPlan(model_path=model_path, source="synthetic", inputs=inputs, dims=dims,
                     vocab=vocab, seed=settings.seed)


def _tensor_plan(model_path: Path, data: DataFile, inputs: tuple[TensorSpec, ...],
                 settings: InputSettings) -> InputPlan:
    arrays = read_tensors(data.path, data.where, inputs, settings.max_rows)
    dims = {spec.name: (1, *arrays[spec.name].shape[1:]) for spec in inputs}
    return InputPlan(model_path=model_path, source="data", inputs=inputs, dims=dims,
                     rows=TensorRows(arrays, str(data.path)), seed=settings.seed)


def _table_plan(model_path: Path, key: str, data: DataFile, inputs: tuple[TensorSpec, ...],
                settings: InputSettings) -> InputPlan:
    table = load_table(data.path, data.where)
    model = OnnxModel(model_path, key=key, features=settings.features)
    drop = [c for c in settings.drop_columns
            if c in table.frame.columns and c not in model.input_names]
    frame = table.frame.drop(columns=drop)
    try:
        try:
            columns = model.bind_columns(list(frame.columns), table.source)
        except ConfigError:
            # Name what is missing when another data set shows the columns the model reads.
            reference = _reference_columns(settings, data)
            if reference is None:
                raise
            model.bind_columns(list(frame.columns), table.source, reference=reference)
            raise
    except ConfigError as exc:
        raise ConfigError(f"{data.where}: {exc.message}") from None
    frame = frame[columns].iloc[:settings.max_rows].reset_index(drop=True)
    model.feeds(frame.iloc[:1])  # a type that cannot be converted fails here, not in a child
    dims = {spec.name: (1, *[int(s) if isinstance(s, int) and s > 0 else 1
                             for s in spec.shape[1:]]) for spec in inputs}
    return InputPlan(model_path=model_path, source="data", inputs=inputs, dims=dims,
                     rows=TableRows(frame, model, str(data.path)), seed=settings.seed)


def _reference_columns(settings: InputSettings, data: DataFile) -> list[str] | None:
    for other in settings.data:
        if other.path == data.path or is_tensor_file(other.path) or not other.path.is_file():
            continue
        try:
            header = _header(other.path)
        except Exception:  # only a hint for a message: an unreadable file gives none
            return None
        return [c for c in header if c not in settings.drop_columns]
    return None


def _header(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return [str(name) for name in pq.read_schema(path).names]
    return [str(c) for c in pd.read_csv(path, nrows=0, sep="\t" if suffix == ".tsv" else ",")]


def _check_feed_size(plan: InputPlan, batch_sizes: Sequence[int], settings: InputSettings,
                     where: str) -> None:
    batch = max(batch_sizes)
    sizes = plan.feed_bytes(batch)
    total = sum(sizes.values())
    if total <= settings.max_feed_bytes:
        return
    largest = max(sizes, key=lambda name: sizes[name])
    spec = next(s for s in plan.inputs if s.name == largest)
    shape = ", ".join(str(d) for d in (batch, *plan.dims[largest][1:]))
    raise ConfigError(
        f"{where}: a batch of {batch} would feed {_mib(total)} MiB (input {largest!r} "
        f"[{shape}] {spec.type}), more than {settings.stage}.inputs.max_feed_mb allows "
        f"({_mib(settings.max_feed_bytes)} MiB); use smaller dims or batch sizes, or raise "
        f"{settings.stage}.inputs.max_feed_mb"
    )


def _yaml_snippet(path: Sequence[str], value: str) -> str:
    """Return the YAML that sets ``path`` to ``value``, one key a line, indented from 2."""
    lines = [f"{'  ' * (depth + 1)}{part}:" for depth, part in enumerate(path)]
    return "\n".join(lines) + f" {value}"


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f}" if size >= 2**20 else f"{size / 2**20:.2f}"


def _nbytes(value: NDArray[Any]) -> int:
    if value.dtype == np.object_:
        return int(value.size) * _STRING_BYTES
    return int(value.nbytes)


def _tabular(inputs: Sequence[TensorSpec]) -> bool:
    # Rows of a table feed 2-D inputs: [batch, features] or one [batch, 1] input per column.
    return all(len(spec.shape) == 2 for spec in inputs)
