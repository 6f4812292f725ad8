"""``shipml build``: the thin handler over :mod:`shipml.build.core`."""

from __future__ import annotations

import argparse
from typing import Any

from shipml import cli as _cli
from shipml._stage import MODEL, Option, add_command, conclude, stage_config

#: the keys ``shipml build`` takes from flags and ``SHIPML_*`` variables (action inputs)
OPTIONS = (
    MODEL,
    Option("--candidate", ("build", "model"), "SHIPML_CANDIDATE",
           "the ONNX file to serve when it is not model.path, e.g. optimize's output", "PATH"),
    Option("--image", ("build", "image"), "SHIPML_IMAGE",
           "registry and repository, no tag, e.g. ghcr.io/acme/churn-model", "REPOSITORY",
           pipeline_input="image"),
    Option("--runtime", ("build", "runtime"), "SHIPML_RUNTIME", "builtin or triton", "RUNTIME"),
    Option("--dockerfile", ("build", "dockerfile"), "SHIPML_DOCKERFILE",
           "your own Dockerfile instead of shipml's templates", "PATH"),
    Option("--context", ("build", "context"), "SHIPML_CONTEXT",
           "build context of your own Dockerfile", "DIR"),
    Option("--allow-outside-repository", ("build", "allow_outside_repository"),
           "SHIPML_ALLOW_OUTSIDE_REPOSITORY",
           "build a Dockerfile or context outside the repository's working tree"),
    Option("--base-image", ("build", "base_image"), "SHIPML_BASE_IMAGE",
           "image the built-in server is installed on", "IMAGE"),
    Option("--push", ("build", "push"), "SHIPML_PUSH", "push the tags to the registry"),
    Option("--default-branch", ("build", "default_branch"), "SHIPML_DEFAULT_BRANCH",
           "branch that gets the latest tag", "BRANCH"),
)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``build`` subcommand."""
    add_command(
        subparsers, common, "build", OPTIONS, run_cli,
        summary="build the serving image, tag it by rules, push it; the digest is the result",
        description="Render a Dockerfile (the built-in server or Triton) or take yours, build "
                    "it through the Docker Engine, label and tag it, push it. Registry "
                    "credentials: docker login, or SHIPML_REGISTRY_USERNAME and "
                    "SHIPML_REGISTRY_PASSWORD. Exit 0 built, 2 bad input (a failing build step "
                    "among them), 3 engine or registry unreachable.",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Load the configuration, build and push, publish outputs; return the exit code."""
    from shipml.build.core import run_build
    from shipml.ci import detect

    platform = detect()
    config = stage_config(args, OPTIONS)
    run = run_build(config, _cli.output_dir(args), platform)
    return conclude(run.result, run.result_path, platform, outputs=run.outputs,
                    files=[("dockerfile", run.dockerfile)], config=config)
