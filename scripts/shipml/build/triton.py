"""``runtime: triton``: the model repository Triton Inference Server loads, with a
``config.pbtxt`` for its onnxruntime backend generated from the ONNX model's inputs and outputs.

Triton's rules (model_config.proto, "Model Configuration" in Triton's documentation): the
repository holds ``<name>/config.pbtxt`` and ``<name>/1/model.onnx``; with ``max_batch_size`` above
0 every input and output has a first, batch axis that ``dims`` leaves out, and a tensor that is
only that axis is written ``dims: [ 1 ]`` with ``reshape: { shape: [ ] }``; a dynamic axis is -1.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shipml.errors import ConfigError

#: ONNX element type (TensorProto.DataType name) to Triton's DataType
TRITON_TYPES = {
    "FLOAT": "TYPE_FP32", "DOUBLE": "TYPE_FP64", "FLOAT16": "TYPE_FP16", "BFLOAT16": "TYPE_BF16",
    "INT8": "TYPE_INT8", "INT16": "TYPE_INT16", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64",
    "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16", "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64", "BOOL": "TYPE_BOOL", "STRING": "TYPE_STRING",
}
NOT_A_TENSOR = (
    "{model}: {role} {name!r} is a {kind}, not a tensor; Triton's onnxruntime backend serves "
    "tensors only. Export the model without ZipMap (skl2onnx: options={{'zipmap': False}}) or use "
    "build.runtime: builtin"
)


@dataclass(frozen=True)
class Tensor:
    """An input or output of the model: name, ONNX element type and shape (None: dynamic)."""

    name: str
    elem_type: str
    shape: tuple[int | None, ...]


@dataclass(frozen=True)
class TritonTensor:
    """A tensor as config.pbtxt declares it."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    reshape: bool = False


def read_signature(model: Path) -> tuple[list[Tensor], list[Tensor]]:
    """Return the model's inputs (initializers excluded) and outputs.

    Raises ConfigError for an input or output that is not a tensor (a ZipMap's sequence of
    maps) or has no known rank, and for a file that is not an ONNX model.
    """
    import onnx

    try:
        graph = onnx.load(str(model), load_external_data=False).graph
    except Exception as exc:  # onnx raises DecodeError and others for a file that is not a model
        raise ConfigError(f"{model}: not an ONNX model ({exc})") from None
    initializers = {item.name for item in graph.initializer}
    inputs = [_tensor(model, "input", value) for value in graph.input if value.name not in initializers]
    outputs = [_tensor(model, "output", value) for value in graph.output]
    return inputs, outputs


def _tensor(model: Path, role: str, value: object) -> Tensor:
    import onnx

    kind = value.type.WhichOneof("value")  # type: ignore[attr-defined]
    name = str(value.name)  # type: ignore[attr-defined]
    if kind != "tensor_type":
        readable = {"sequence_type": "sequence", "map_type": "map"}.get(str(kind), str(kind))
        raise ConfigError(NOT_A_TENSOR.format(model=model, role=role, name=name, kind=readable))
    tensor_type = value.type.tensor_type  # type: ignore[attr-defined]
    elem = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
    if not tensor_type.HasField("shape"):
        raise ConfigError(f"{model}: {role} {name!r} has no known rank; Triton needs the number "
                          "of axes of every input and output")
    shape = tuple(int(dim.dim_value) if dim.HasField("dim_value") else None
                  for dim in tensor_type.shape.dim)
    return Tensor(name=name, elem_type=elem, shape=shape)


def triton_name(stem: str) -> str:
    """Return a Triton model name (the repository folder) made from a file stem."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip(".") or "model"


def batchable(tensors: Sequence[Tensor]) -> bool:
    """Return whether every tensor has a dynamic first axis that Triton can batch along."""
    return bool(tensors) and all(t.shape and t.shape[0] is None for t in tensors)


def triton_tensors(tensors: Sequence[Tensor], batching: bool, model: Path) -> list[TritonTensor]:
    """Return ``tensors`` as config.pbtxt declares them (batch axis left out when batching).

    Raises ConfigError for an element type Triton does not have.
    """
    declared = []
    for tensor in tensors:
        data_type = TRITON_TYPES.get(tensor.elem_type)
        if data_type is None:
            raise ConfigError(f"{model}: {tensor.name!r} has element type {tensor.elem_type}, "
                              f"which Triton has no DataType for; valid: {', '.join(TRITON_TYPES)}")
        shape = tensor.shape[1:] if batching else tensor.shape
        dims = tuple(-1 if dim is None else dim for dim in shape)
        if batching and not dims:
            declared.append(TritonTensor(tensor.name, data_type, (1,), reshape=True))
        else:
            declared.append(TritonTensor(tensor.name, data_type, dims))
    return declared


def pbtxt_string(text: str) -> str:
    """Return ``text`` as a protobuf text-format string literal (quotes included)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
