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
    """Write a small transformer encoder (token ids → mean-pooled embedding) with dynamic batch
    and sequence axes, built node by node with ``onnx.helper`` (opset 17) and seeded weights: the
    graph a PyTorch export of such an encoder gives, without PyTorch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    head_width = width // heads
    initializers: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def constant(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(value, name))
        return name

    def linear(prefix: str, source: str, fan_in: int, fan_out: int) -> str:
        # PyTorch's nn.Linear initialisation: uniform in ±1/sqrt(fan_in)
        bound = 1.0 / math.sqrt(fan_in)
        weight = constant(f"{prefix}.weight",
                          rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32))
        bias = constant(f"{prefix}.bias", rng.uniform(-bound, bound, fan_out).astype(np.float32))
        nodes.append(helper.make_node("MatMul", [source, weight], [f"{prefix}.matmul"]))
        nodes.append(helper.make_node("Add", [f"{prefix}.matmul", bias], [prefix]))
        return prefix

    def layer_norm(prefix: str, source: str) -> str:
        scale = constant(f"{prefix}.weight", np.ones(width, dtype=np.float32))
        bias = constant(f"{prefix}.bias", np.zeros(width, dtype=np.float32))
        nodes.append(helper.make_node("LayerNormalization", [source, scale, bias], [prefix],
                                      axis=-1, epsilon=1e-5))
        return prefix

    constant("heads_shape", np.array([0, 0, 3, heads, head_width], dtype=np.int64))
    constant("merged_shape", np.array([0, 0, width], dtype=np.int64))
    constant("scale", np.array(1.0 / math.sqrt(head_width), dtype=np.float32))
    constant("sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    constant("one", np.array(1.0, dtype=np.float32))
    constant("half", np.array(0.5, dtype=np.float32))
    constant("zero", np.array([0], dtype=np.int64))
    for index in range(3):
        constant(f"index{index}", np.array(index, dtype=np.int64))
    embed = constant("embed.weight", rng.standard_normal((vocab, width)).astype(np.float32))
    position = constant("position.weight", rng.standard_normal((512, width)).astype(np.float32))
    nodes += [
        helper.make_node("Gather", [embed, "input_ids"], ["tokens"]),
        helper.make_node("Shape", ["input_ids"], ["sequence_length"], start=1, end=2),
        helper.make_node("Slice", [position, "zero", "sequence_length", "zero"], ["positions"]),
        helper.make_node("Add", ["tokens", "positions"], ["hidden0"]),
    ]
    hidden = "hidden0"
    for layer in range(layers):
        p = f"blocks.{layer}"
        qkv = linear(f"{p}.qkv", hidden, width, 3 * width)
        nodes += [
            helper.make_node("Reshape", [qkv, "heads_shape"], [f"{p}.split"]),
            helper.make_node("Transpose", [f"{p}.split"], [f"{p}.qkv_t"], perm=[2, 0, 3, 1, 4]),
            *(helper.make_node("Gather", [f"{p}.qkv_t", f"index{i}"], [f"{p}.{name}"], axis=0)
              for i, name in enumerate("qkv")),
            helper.make_node("Transpose", [f"{p}.k"], [f"{p}.k_t"], perm=[0, 1, 3, 2]),
            helper.make_node("MatMul", [f"{p}.q", f"{p}.k_t"], [f"{p}.scores_raw"]),
            helper.make_node("Mul", [f"{p}.scores_raw", "scale"], [f"{p}.scores"]),
            helper.make_node("Softmax", [f"{p}.scores"], [f"{p}.attention"], axis=-1),
            helper.make_node("MatMul", [f"{p}.attention", f"{p}.v"], [f"{p}.heads"]),
            helper.make_node("Transpose", [f"{p}.heads"], [f"{p}.heads_t"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"{p}.heads_t", "merged_shape"], [f"{p}.merged"]),
        ]
        attended = linear(f"{p}.out", f"{p}.merged", width, width)
        nodes.append(helper.make_node("Add", [hidden, attended], [f"{p}.residual1"]))
        normed = layer_norm(f"{p}.norm1", f"{p}.residual1")
        up = linear(f"{p}.ff.0", normed, width, 4 * width)
        nodes += [  # GELU as PyTorch exports it at opset 17: 0.5 · x · (1 + erf(x / √2))
            helper.make_node("Div", [up, "sqrt2"], [f"{p}.gelu.scaled"]),
            helper.make_node("Erf", [f"{p}.gelu.scaled"], [f"{p}.gelu.erf"]),
            helper.make_node("Add", [f"{p}.gelu.erf", "one"], [f"{p}.gelu.plus"]),
            helper.make_node("Mul", [up, f"{p}.gelu.plus"], [f"{p}.gelu.product"]),
            helper.make_node("Mul", [f"{p}.gelu.product", "half"], [f"{p}.gelu"]),
        ]
        down = linear(f"{p}.ff.2", f"{p}.gelu", 4 * width, width)
        nodes.append(helper.make_node("Add", [normed, down], [f"{p}.residual2"]))
        hidden = layer_norm(f"{p}.norm2", f"{p}.residual2")
    nodes.append(helper.make_node("ReduceMean", [hidden], ["embedding"], axes=[1], keepdims=0))
    graph = helper.make_graph(
        nodes, "encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64,
                                       ["batch", "sequence_length"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", width])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="shipml-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


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


def export_sklearn(model: Any, sample: np.ndarray, path: Path, *, doc: str = "") -> Path:
    """Export a fitted scikit-learn model with ``skl2onnx.to_onnx`` as a user would (one ``X``
    input, ``zipmap: False`` for classifiers); ``doc`` changes the file's bytes, not its
    answers."""
    import warnings

    from skl2onnx import to_onnx

    options = {"zipmap": False} if hasattr(model, "predict_proba") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = to_onnx(model, sample[:1], options=options, target_opset=17)
    if doc:
        exported.doc_string = doc
    path.write_bytes(exported.SerializeToString())
    return path


def quality_classification_data(seed: int = 3, rows: int = 8000, test_rows: int = 2000
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Return features (float32, six columns) and binary labels of a mostly linear problem with
    a small curve in it (a boosted model learns it, a logistic regression does not)."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((rows, 6)).astype(np.float32)
    logit = 8 * (features[:, 0] + 0.8 * features[:, 1] - 0.6 * features[:, 2]
                 + 0.4 * features[:, 3] + 0.4 * (features[:, 0] ** 2 - 1))
    labels = (logit + rng.logistic(size=rows) > 0).astype(int)
    return features, labels


def export_quality_classifiers(folder: Path, *, test_rows: int = 2000) -> dict[str, Path]:
    """Write ``train.csv`` and ``test.csv`` (columns f0-f5, label ``y``; ``test_rows`` test rows)
    of one seeded dataset into ``folder`` and export real models trained on it; return their
    paths by role:

    - ``stable``: a logistic regression (test accuracy about 0.92);
    - ``better``: a gradient-boosted model retrained on the same rows (about 0.94), whose answers
      differ from the stable's on about 7% of the test rows;
    - ``worse``: the stable with its intercept moved until it is 2-3 points less accurate;
    - ``shifted``: a logistic regression trained on the labels flipped;
    - ``repackaged``: the stable exported again (other bytes, the same answers).
    """
    import pandas as pd
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    features, labels = quality_classification_data(test_rows=test_rows)
    train_x, train_y = features[:-test_rows], labels[:-test_rows]
    test_x, test_y = features[-test_rows:], labels[-test_rows:]
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(6)])
    frame["y"] = labels
    frame[:-test_rows].to_csv(folder / "train.csv", index=False)
    frame[-test_rows:].to_csv(folder / "test.csv", index=False)
    stable = LogisticRegression(max_iter=500).fit(train_x, train_y)
    paths = {"stable": export_sklearn(stable, test_x, folder / "stable.onnx"),
             "repackaged": export_sklearn(stable, test_x, folder / "repackaged.onnx",
                                           doc="re-exported")}
    better = GradientBoostingClassifier(random_state=0, n_estimators=150, max_depth=3)
    paths["better"] = export_sklearn(better.fit(train_x, train_y), test_x, folder / "better.onnx")
    accuracy = float((stable.predict(test_x) == test_y).mean())
    worse = LogisticRegression(max_iter=500).fit(train_x, train_y)
    for shift in np.arange(0.05, 10, 0.05):
        worse.intercept_ = stable.intercept_ + shift
        if accuracy - float((worse.predict(test_x) == test_y).mean()) >= 0.025:
            break
    paths["worse"] = export_sklearn(worse, test_x, folder / "worse.onnx")
    shifted = LogisticRegression(max_iter=500).fit(train_x, 1 - train_y)
    paths["shifted"] = export_sklearn(shifted, test_x, folder / "shifted.onnx")
    return paths


def export_quality_regressors(folder: Path, *, test_rows: int = 2000) -> dict[str, Path]:
    """Write ``train.csv`` and ``test.csv`` (columns f0-f3, label ``y``) of a seeded regression
    problem into ``folder``; return the paths of a linear regression (``stable``) and of the
    same model with its intercept moved until its mean absolute error is 20% higher
    (``worse``)."""
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(5)
    rows = test_rows * 2
    features = rng.standard_normal((rows, 4)).astype(np.float32)
    target = features @ np.array([3.0, -2.0, 1.0, 0.5]) + rng.normal(0, 1.0, rows)
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(4)])
    frame["y"] = target
    frame[:-test_rows].to_csv(folder / "train.csv", index=False)
    frame[-test_rows:].to_csv(folder / "test.csv", index=False)
    test_x, test_y = features[-test_rows:], target[-test_rows:]
    stable = LinearRegression().fit(features[:-test_rows], target[:-test_rows])
    error = float(np.abs(stable.predict(test_x) - test_y).mean())
    worse = LinearRegression().fit(features[:-test_rows], target[:-test_rows])
    for shift in np.arange(0.01, 5, 0.01):
        worse.intercept_ = stable.intercept_ + shift
        if float(np.abs(worse.predict(test_x) - test_y).mean()) >= 1.2 * error:
            break
    return {"stable": export_sklearn(stable, test_x, folder / "stable.onnx"),
            "worse": export_sklearn(worse, test_x, folder / "worse.onnx")}


def export_base_branch_classifiers(folder: Path) -> dict[str, Path]:
    """Write ``train.csv`` and ``test.csv`` (six numeric columns f0..f5, label ``y``, 3000 rows
    each) and three classifiers trained on them as a user exports one (``skl2onnx.to_onnx`` on
    a numpy array: one ``X`` input, ``zipmap: False``): ``base.onnx`` (logistic regression,
    about 0.92 test accuracy), ``worse.onnx`` (logistic regression trained while f3 was drowned
    in noise: about 3 points less accurate) and ``retrained.onnx`` (an MLP: as accurate, other
    bytes, answers that differ on about 1% of the rows). Returns the three paths by name."""
    import warnings

    import pandas as pd
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(21)
    rows = 6000
    features = rng.standard_normal((rows, 6)).astype(np.float32)
    weights = np.array([1.5, -1.0, 0.8, 0.6, 0.0, 0.0])
    target = ((features @ weights + rng.normal(0, 0.5, rows)) > 0).astype(int)
    train_x, train_y = features[:3000], target[:3000]
    drowned = train_x.copy()
    drowned[:, 3] += np.random.default_rng(5).normal(0, 2.0, 3000).astype(np.float32)
    models = {
        "base": LogisticRegression().fit(train_x, train_y),
        "worse": LogisticRegression().fit(drowned, train_y),
        "retrained": MLPClassifier(hidden_layer_sizes=(16,), max_iter=600,
                                   random_state=0).fit(train_x, train_y),
    }
    paths = {}
    for name, model in models.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_model = to_onnx(model, train_x[:1], options={"zipmap": False},
                                 target_opset={"": 17, "ai.onnx.ml": 3})
        paths[name] = folder / f"{name}.onnx"
        paths[name].write_bytes(onnx_model.SerializeToString())
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(6)])
    frame["y"] = target
    frame[:3000].to_csv(folder / "train.csv", index=False)
    frame[3000:].to_csv(folder / "test.csv", index=False)
    return paths


def build_model_image(folder: Path, model: Path, repository: str, tag: str, *, train: Path,
                      test: Path, label: str, base_image: str) -> str:
    """Build ``model`` into ``repository:tag`` with ``shipml build`` from the config a user
    writes (``model: {path, train, test, label}``, no ``features``); return the image's tag.

    Raises AssertionError when the build fails.
    """
    from shipml.cli import main

    config = folder / f"build-{tag}.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"path": str(model), "train": str(train), "test": str(test), "label": label},
        "build": {"image": repository, "base_image": base_image, "push": False,
                  "tags": [{"type": "raw", "value": tag}]}}), encoding="utf-8")
    assert main(["build", "--config", str(config), "--output-dir",
                 str(folder / f".shipml-{tag}")]) == 0, f"shipml build of {model.name} failed"
    return f"{repository}:{tag}"
