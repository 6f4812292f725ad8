"""The stage registry: the one place that names shipml's stages, their order and their wiring.

``cli.py`` registers one subcommand per entry, ``config.py`` assembles the schema from each
entry's section, ``shipml run`` picks and orders stages from here, and ``report`` orders its
sections by it. A new stage is one entry here plus its package.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

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


#: every stage in pipeline order
STAGES: tuple[Stage, ...] = (
    Stage("validate", "shipml.validate.cli", gate=True, half="pull_request",
          writes=("artifacts/validate.html", "artifacts/validate.junit.xml",
                  "artifacts/validate-pytest.xml")),
    Stage("optimize", "shipml.optimize.cli", gate=True, half="pull_request", produces=("model",),
          writes=("artifacts/optimize/",)),
    Stage("latency", "shipml.latency.cli", gate=True, half="pull_request",
          consumes=(Consumes("model", ("latency", "model")),),
          writes=("artifacts/latency.html",)),
    Stage("build", "shipml.build.cli", gate=True, half="release",
          consumes=(Consumes("model", ("build", "model")),), produces=("image",),
          writes=("build/context/",)),
    Stage("sign", "shipml.sign.cli", gate=True, half="release",
          consumes=(Consumes("image", ("sign", "image")),), produces=("signature",)),
    Stage("canary", "shipml.canary.cli", gate=True, half="release",
          consumes=(Consumes("image", ("canary", "image")),)),
    Stage("serve", "shipml.serve.cli", gate=False, half="none"),
    Stage("monitor", "shipml.monitor.cli", gate=True, half="none",
          writes=("artifacts/monitor.junit.xml", "artifacts/monitor.html")),
    Stage("report", "shipml.report.cli", gate=False, half="always",
          writes=("report/report.md", "report/comment.md", "report/report.txt",
                  "report/report.html")),
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


def names() -> tuple[str, ...]:
    """Return every stage name in pipeline order."""
    return tuple(stage.name for stage in STAGES)


def pipeline() -> tuple[str, ...]:
    """Return the stages ``shipml run`` can run, in order."""
    return tuple(stage.name for stage in STAGES if stage.half != "none")


def gates() -> tuple[str, ...]:
    """Return the gate stages in pipeline order."""
    return tuple(stage.name for stage in STAGES if stage.gate)


def configured_gates(written: Iterable[str]) -> tuple[str, ...]:
    """Return the pull-request gates whose section ``shipml.yaml`` writes, in pipeline order:
    the gates every run of the pipeline must leave a result of (``shipml run`` runs them on both
    halves), so that the report calls one without a result missing."""
    chosen = set(written)
    return tuple(stage.name for stage in STAGES
                 if stage.gate and stage.half == "pull_request" and stage.name in chosen)


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
