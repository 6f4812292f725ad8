"""Real tiny models for the latency and optimize tests and the bench: builders, not fixtures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

#: harness settings that keep a test run short (the gate logic is the same at any scale)
FAST: dict[str, Any] = {
    "warmup": 2, "process_time_s": 0.1, "min_processes": 2, "min_runs": 20, "max_time_s": 1.0,
    "remeasure": 0,
}
FAST_BASELINE: dict[str, Any] = {"rounds": 4, "process_time_s": 0.15, "max_time_s": 3}


def write_config(folder: Path, document: dict[str, Any]) -> Path:
    """Write ``shipml.yaml`` into ``folder`` and return its path."""
    path = folder / "shipml.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def add_redundant_work(source: Path, target: Path, matmuls: int, width: int = 64) -> None:
    """Write ``source`` plus a side branch of ``matmuls`` chained MatMuls fed by the first input:
    the same answers, more work. The branch ends in an extra output, so nothing prunes it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    first = graph.input[0].name
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((width, width)) / math.sqrt(width)).astype(np.float32)
    graph.initializer.append(numpy_helper.from_array(weight, "redundant_w"))
    graph.initializer.append(numpy_helper.from_array(np.ones((1, width), np.float32),
                                                     "redundant_row"))
    source_tensor = first
    elem = graph.input[0].type.tensor_type.elem_type
    nodes = []
    if elem == TensorProto.STRING:
        nodes.append(helper.make_node("Shape", [first], ["redundant_shape"]))
        nodes.append(helper.make_node("Cast", ["redundant_shape"], ["redundant_x"],
                                      to=TensorProto.FLOAT))
    else:
        nodes.append(helper.make_node("Cast", [first], ["redundant_x"], to=TensorProto.FLOAT))
    nodes.append(helper.make_node("ReduceSum", ["redundant_x"], ["redundant_s"], keepdims=0))
    nodes.append(helper.make_node("Mul", ["redundant_row", "redundant_s"], ["redundant_0"]))
    nodes.append(helper.make_node("MatMul", ["redundant_0", "redundant_w"], ["redundant_m"]))
    nodes.append(helper.make_node("Expand", ["redundant_m", "redundant_square"],
                                  ["redundant_h0"]))
    graph.initializer.append(numpy_helper.from_array(np.array([width, width], np.int64),
                                                     "redundant_square"))
    for index in range(matmuls):
        nodes.append(helper.make_node("MatMul", [f"redundant_h{index}", "redundant_w"],
                                      [f"redundant_h{index + 1}"]))
    nodes.append(helper.make_node("ReduceSum", [f"redundant_h{matmuls}"], ["redundant_out"],
                                  keepdims=0))
    del source_tensor
    graph.node.extend(nodes)
    graph.output.append(helper.make_tensor_value_info("redundant_out", TensorProto.FLOAT, []))
    target.write_bytes(model.SerializeToString())


def export_encoder(path: Path, *, vocab: int = 500, width: int = 64, layers: int = 2,
                   heads: int = 4) -> None:
    """Export a small transformer encoder (token ids → mean-pooled embedding) with dynamic batch
    and sequence axes."""
    import torch

    torch.manual_seed(0)

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = torch.nn.Linear(width, 3 * width)
            self.out = torch.nn.Linear(width, width)
            self.norm1 = torch.nn.LayerNorm(width)
            self.norm2 = torch.nn.LayerNorm(width)
            self.ff = torch.nn.Sequential(torch.nn.Linear(width, 4 * width), torch.nn.GELU(),
                                          torch.nn.Linear(4 * width, width))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, s, d = x.shape
            q, k, v = self.qkv(x).reshape(b, s, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)
            y = (attention @ v).transpose(1, 2).reshape(b, s, d)
            x = self.norm1(x + self.out(y))
            return self.norm2(x + self.ff(x))

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, width)
            self.position = torch.nn.Embedding(512, width)
            self.blocks = torch.nn.ModuleList([Block() for _ in range(layers)])

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
            hidden = self.embed(input_ids) + self.position(positions)
            for block in self.blocks:
                hidden = block(hidden)
            return hidden.mean(dim=1)

    model = Encoder().eval()
    example = torch.randint(0, vocab, (2, 16))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), input_names=["input_ids"],
                          output_names=["embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence_length"},
                                        "embedding": {0: "batch"}})
