"""Dockerfiles and Triton configurations from the jinja2 templates in ``templates/``: pure
functions from the settings to the text, which tests read directly."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import jinja2

from shipml.build.triton import TritonTensor, pbtxt_string
from shipml.errors import ConfigError

#: an image reference: [registry[:port]/]path[:tag][@digest], nothing a Dockerfile line could hide
_IMAGE_REF = re.compile(
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?"
)
_URL = re.compile(r"https?://[^\s\"'\\$`]+")
#: a wheel of a commit between tags carries a local version: shipml-1.2.1.dev3+g1a2b3c4-py3-…
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


@dataclass(frozen=True)
class BuiltinImage:
    """What the built-in server's Dockerfile is rendered from."""

    base_image: str
    model_file: str
    wheel: str
    port: int = 8080
    user: int = 10001
    pip_index_url: str = "https://pypi.org/simple"
    ca_bundle: bool = False


@dataclass(frozen=True)
class TritonImage:
    """What the Triton Dockerfile is rendered from."""

    base_image: str


@dataclass(frozen=True)
class TritonConfig:
    """What ``config.pbtxt`` is rendered from."""

    name: str
    source: str
    max_batch_size: int
    inputs: Sequence[TritonTensor]
    outputs: Sequence[TritonTensor]
    instances: int = 1
    kind: str = "KIND_CPU"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("shipml.build", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    environment.filters["pbtxt"] = pbtxt_string
    return environment


def check_image_reference(value: str, where: str) -> str:
    """Return ``value`` when it is an image reference (``python:3.11-slim``,
    ``127.0.0.1:5000/base@sha256:…``); raise ConfigError naming ``where`` otherwise."""
    if not _IMAGE_REF.fullmatch(value):
        raise ConfigError(f"{where}: {value!r} is not an image reference such as "
                          "python:3.11-slim or registry.example.com/team/base:1.0 (lower-case "
                          "repository, no spaces)")
    return value


def render_builtin(image: BuiltinImage) -> str:
    """Return the Dockerfile of the built-in server image.

    Raises ConfigError for a base image, index URL or file name that is not one (each value
    ends up in a Dockerfile line, so nothing else may pass)."""
    check_image_reference(image.base_image, "build.base_image")
    if not _URL.fullmatch(image.pip_index_url):
        raise ConfigError(f"build.pip_index_url: {image.pip_index_url!r} is not an http(s) URL")
    for name in (image.model_file, image.wheel):
        if not _FILE_NAME.fullmatch(name):
            raise ConfigError(f"{name!r} is not a plain file name")
    return _environment().get_template("builtin.Dockerfile.j2").render(
        base_image=image.base_image, model_file=image.model_file, wheel=image.wheel,
        port=int(image.port), user=int(image.user), pip_index_url=image.pip_index_url,
        ca_bundle=image.ca_bundle)


def render_triton(image: TritonImage) -> str:
    """Return the Dockerfile of the Triton image; ConfigError for a bad base image."""
    check_image_reference(image.base_image, "build.triton.base_image")
    return _environment().get_template("triton.Dockerfile.j2").render(base_image=image.base_image)


def render_triton_config(config: TritonConfig) -> str:
    """Return the ``config.pbtxt`` of the model for Triton's onnxruntime backend."""
    return _environment().get_template("config.pbtxt.j2").render(
        name=config.name, source=config.source, max_batch_size=int(config.max_batch_size),
        inputs=config.inputs, outputs=config.outputs, instances=int(config.instances),
        kind=config.kind)
