"""Real tiny models and configs for the measuring tests (latency, optimize, measure) and the
bench: builders, not fixtures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
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


def export_identity_sum(path: Path, *, width: int = 4, weight_mib: float = 0.0) -> None:
    """Write a tiny model, ``y = sum(x @ W)`` over a float input ``[batch, width]``: a few
    microseconds a run. ``weight_mib`` makes ``W`` that large (a model that holds memory)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    columns = max(1, int(weight_mib * 2**20 / 4 / width))
    weight = np.full((width, columns), 0.5, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]),
         helper.make_node("ReduceSum", ["h"], ["y"], keepdims=0)],
        "identity_sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def export_failing_at_run_time(path: Path) -> None:
    """Write a model that loads but cannot run: it reshapes ``[batch, 4]`` to a fixed ``[3, 5]``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])], "failing",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5])],
        [numpy_helper.from_array(np.array([3, 5], dtype=np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def export_scaled_logistic(folder: Path) -> Path:
    """Export a StandardScaler + LogisticRegression pipeline as a user would (``zipmap: False``,
    ``target_opset=17``) with its data; skl2onnx writes the default-domain opset import twice.
    Returns the model's path; ``train.csv`` and ``test.csv`` sit beside it (label ``y``)."""
    import warnings

    import pandas as pd
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(11)
    features = rng.standard_normal((600, 6)).astype(np.float32)
    target = (features[:, 0] + 0.5 * features[:, 1] > 0).astype(int)
    pipeline = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())])
    pipeline.fit(features[:400], target[:400])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_model = to_onnx(pipeline, features[:1], options={"zipmap": False},
                             target_opset=17)
    path = folder / "model.onnx"
    path.write_bytes(onnx_model.SerializeToString())
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(6)])
    frame["y"] = target
    frame[:400].to_csv(folder / "train.csv", index=False)
    frame[400:].to_csv(folder / "test.csv", index=False)
    return path


def token_rows(rows: int, sequence: int, *, vocab: int = 500, seed: int = 0) -> np.ndarray:
    """Return ``rows`` × ``sequence`` token ids below ``vocab`` (int64), as real inputs."""
    return np.random.default_rng(seed).integers(0, vocab, size=(rows, sequence), dtype=np.int64)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write one JSON object per line to ``path`` and return it."""
    import json

    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny transformer encoder with dynamic batch and sequence axes (vocabulary 500)."""
    path = tmp_path_factory.mktemp("encoder") / "encoder.onnx"
    export_encoder(path)
    return path
