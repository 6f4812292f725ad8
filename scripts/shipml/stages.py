"""The stage registry: the one place that names shipml's stages, their order and their wiring.

``cli.py`` registers one subcommand per entry, ``config.py`` assembles the schema from each
entry's section (and takes the defaults the registry decides, :func:`registry_defaults`),
``shipml run`` picks and orders stages from here, hands each what an earlier one produced
(:func:`shipml.results.handed_on`), runs each as its :class:`DryRun` says under act and sets the
step outputs its :class:`RunOutput` rows name, and ``report`` orders its sections by it. A new
stage is one entry here plus its package: no other module names a stage.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

#: which half of the pipeline a stage belongs to: ``always`` runs last in both (report),
#: ``none`` is never run by ``shipml run`` (serve)
Half = Literal["pull_request", "release", "always", "none"]


@dataclass(frozen=True)
class Consumes:
    """A hand-off a stage reads: of ``kind``, into the config ``key`` that names it, unless the
    user set that key (or its flag or variable) themselves."""

    kind: str
    key: tuple[str, ...]


@dataclass(frozen=True)
class DryRun:
    """What a stage does in shipml's dry run under act, where nothing leaves the machine: each
    rule that applies either adds flags or skips the stage with its sentence (``shipml run``
    says "dry run under act: " before it). The keys are read as the stage reads them: flag row's
    ``SHIPML_*`` variable, then ``shipml.yaml``."""

    #: a boolean key that, when true, skips the stage, saying ``refused``
    refused_when: tuple[str, ...] = ()
    refused: str = ""
    #: the key of the image the stage writes to a registry (unset: the image hand-off it
    #: consumes); when that image is not on a loopback registry the stage runs with
    #: ``off_loopback_flags``, or, without any, is skipped; either way saying ``off_loopback``
    #: with ``{image}`` filled in
    registry_image: tuple[str, ...] = ()
    off_loopback_flags: tuple[str, ...] = ()
    off_loopback: str = ""
    #: the key naming the target it rolls out to: any other type than ``local_target``, or
    #: ``DOCKER_HOST`` naming another engine than the local one, skips the stage
    target: tuple[str, ...] = ()
    local_target: str = ""
    #: flags it always runs with under act
    flags: tuple[str, ...] = ()


#: what fills a step output of ``shipml run``: the repository or the digest of the image the
#: stage handed on, the phase its rollout ended in (release half only), a file it wrote
OutputSource = Literal["image-repository", "image-digest", "rollout", "file"]


@dataclass(frozen=True)
class RunOutput:
    """A step output of ``shipml run`` (the all-in-one action) that a stage's result fills."""

    name: str
    source: OutputSource
    #: with ``file``: the path under the output folder, set when it exists
    file: str = ""


@dataclass(frozen=True)
class Stage:
    """One stage: its command module, its config section and what it hands to the next."""

    name: str
    #: module with ``register(subparsers, common)`` for the subcommand
    module: str
    #: a gate leaves a result, an ``error`` one when it stops early
    gate: bool
    #: which half of the pipeline ``shipml run`` runs it in
    half: Half
    #: hand-offs it reads from an earlier stage's result (``model``, ``image``)
    consumes: tuple[Consumes, ...] = ()
    #: hand-off kinds it writes for later stages
    produces: tuple[str, ...] = ()
    #: whether ``shipml.yaml`` has a section of this name (``schema/<name>.json``)
    section: bool = True
    #: what it writes under the output folder besides its result (``results/<name>.json``, for
    #: a gate), as paths relative to that folder; a folder ends in ``/``. The harness checks
    #: each before the stage's work (:func:`shipml.cli.check_stage_files`)
    writes: tuple[str, ...] = ()
    #: a pull-request gate ``shipml run`` runs when ``shipml.yaml`` writes none
    fallback: bool = False
    #: a release stage that runs on every release; the others (the rollout) only when their
    #: section is written and the run rolls out
    backbone: bool = False
    #: how it runs in the dry run under act (None: as it is)
    dry_run: DryRun | None = None
    #: the step outputs of ``shipml run`` its result fills
    outputs: tuple[RunOutput, ...] = ()


#: every stage in pipeline order
STAGES: tuple[Stage, ...] = (
    Stage("validate", "shipml.validate.cli", gate=True, half="pull_request", fallback=True,
          writes=("artifacts/validate.html", "artifacts/validate.junit.xml",
                  "artifacts/validate-pytest.xml")),
    Stage("optimize", "shipml.optimize.cli", gate=True, half="pull_request", produces=("model",),
          writes=("artifacts/optimize/",)),
    Stage("latency", "shipml.latency.cli", gate=True, half="pull_request",
          consumes=(Consumes("model", ("latency", "model")),),
          writes=("artifacts/latency.html",)),
    Stage("build", "shipml.build.cli", gate=True, half="release", backbone=True,
          consumes=(Consumes("model", ("build", "model")),), produces=("image",),
          writes=("build/context/",),
          dry_run=DryRun(registry_image=("build", "image"), off_loopback_flags=("--no-push",),
                         off_loopback="would push {image}; building it without pushing"),
          outputs=(RunOutput("image", "image-repository"), RunOutput("digest", "image-digest"))),
    Stage("sign", "shipml.sign.cli", gate=True, half="release", backbone=True,
          consumes=(Consumes("image", ("sign", "image")),), produces=("signature",),
          dry_run=DryRun(refused_when=("sign", "keyless"),
                         refused="keyless signing would use the workflow's identity and the "
                                 "public transparency log; not signed",
                         registry_image=("sign", "image"),
                         off_loopback="would sign {image}; only an image on a loopback "
                                      "registry is signed",
                         flags=("--no-tlog",))),
    Stage("canary", "shipml.canary.cli", gate=True, half="release",
          consumes=(Consumes("image", ("canary", "image")),),
          dry_run=DryRun(target=("canary", "target", "type"), local_target="docker"),
          outputs=(RunOutput("rollout", "rollout"),)),
    Stage("serve", "shipml.serve.cli", gate=False, half="none"),
    Stage("monitor", "shipml.monitor.cli", gate=True, half="none",
          writes=("artifacts/monitor.junit.xml", "artifacts/monitor.html")),
    Stage("report", "shipml.report.cli", gate=False, half="always",
          writes=("report/report.md", "report/comment.md", "report/report.txt",
                  "report/report.html"),
          outputs=(RunOutput("report", "file", "report/report.md"),)),
)

#: commands that are not stages, in the order ``--help`` lists them after the stages
COMMANDS: tuple[str, ...] = (
    "shipml.commands.run",
    "shipml.commands.init",
    "shipml.commands.demo",
    "shipml.commands.schema",
)

#: config sections that belong to no stage: read by every stage
SHARED_SECTIONS: tuple[str, ...] = ("model",)
#: the key that names the repository's default branch where the CI does not (a push to it is a
#: release; build's tag rules read it too)
DEFAULT_BRANCH_KEY: tuple[str, ...] = ("build", "default_branch")
#: the key that lists the gates an attestation carries: its default is :func:`pull_request_gates`
ATTESTED_GATES_KEY: tuple[str, ...] = ("sign", "gates")


def names() -> tuple[str, ...]:
    """Return every stage name in pipeline order."""
    return tuple(stage.name for stage in STAGES)


def pipeline() -> tuple[str, ...]:
    """Return the stages ``shipml run`` can run, in order."""
    return tuple(stage.name for stage in STAGES if stage.half != "none")


def gates() -> tuple[str, ...]:
    """Return the gate stages in pipeline order."""
    return tuple(stage.name for stage in STAGES if stage.gate)


def pull_request_gates() -> tuple[str, ...]:
    """Return the gates of the pull-request half in pipeline order: what a change must pass
    before it merges, and what a signed image's attestation carries by default."""
    return tuple(stage.name for stage in STAGES if stage.gate and stage.half == "pull_request")


def fallback_gates() -> tuple[str, ...]:
    """Return the gates ``shipml run`` runs when ``shipml.yaml`` writes no gate's section."""
    return tuple(stage.name for stage in STAGES if stage.fallback)


def release_stages(written: Iterable[str], rollout: bool = True) -> tuple[str, ...]:
    """Return the release stages a release runs, in order: the backbone (build, sign) always,
    the others (the rollout) when their section is in ``written`` and ``rollout`` is True."""
    chosen = set(written)
    return tuple(stage.name for stage in STAGES if stage.half == "release"
                 and (stage.backbone or (rollout and stage.name in chosen)))


def deferred_rollouts(written: Iterable[str]) -> tuple[str, ...]:
    """Return the rollout stages whose section is in ``written``: those a release run with
    ``--no-rollout`` leaves to a later job."""
    chosen = set(written)
    return tuple(stage.name for stage in STAGES if stage.half == "release"
                 and not stage.backbone and stage.name in chosen)


def closing() -> tuple[str, ...]:
    """Return the stages that run last in every run, even after a stage stopped the rest
    (report)."""
    return tuple(stage.name for stage in STAGES if stage.half == "always")


def producers(kind: str) -> tuple[str, ...]:
    """Return the stages that hand on a ``kind`` (``model``, ``image``), in pipeline order."""
    return tuple(stage.name for stage in STAGES if kind in stage.produces)


def registry_defaults() -> dict[tuple[str, ...], Any]:
    """Return the config defaults the registry decides, by key path: the gates an attestation
    carries (``sign.gates``) are the pull-request half's."""
    return {ATTESTED_GATES_KEY: list(pull_request_gates())}


def configured_gates(written: Iterable[str]) -> tuple[str, ...]:
    """Return the pull-request gates whose section ``shipml.yaml`` writes, in pipeline order:
    the gates every run of the pipeline must leave a result of (``shipml run`` runs them on both
    halves), so that the report calls one without a result missing."""
    chosen = set(written)
    return tuple(name for name in pull_request_gates() if name in chosen)


def files(name: str) -> tuple[str, ...]:
    """Return what command ``name`` writes under the output folder, relative to it: its result
    (a gate), then what its entry declares; () for a command that is no stage."""
    stage = get(name)
    if stage is None:
        return ()
    return ((f"results/{stage.name}.json",) if stage.gate else ()) + stage.writes


def get(name: str) -> Stage | None:
    """Return the stage called ``name``, or None."""
    return next((stage for stage in STAGES if stage.name == name), None)


def sections() -> tuple[str, ...]:
    """Return the config sections in schema order: shared ones, then one per stage."""
    return (*SHARED_SECTIONS, *(stage.name for stage in STAGES if stage.section))


def rank(name: str) -> int:
    """Return the position of stage ``name`` in the pipeline; unknown stages sort last."""
    order = names()
    return order.index(name) if name in order else len(order)
