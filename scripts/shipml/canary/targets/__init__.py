"""Targets: where the service runs and how traffic is split, chosen by ``canary.target.type``
(``docker`` with an HAProxy router, ``kubernetes`` with one of four traffic methods).

A target is three parts, each behind a small interface of its own (Flagger's cut: a canary
controller per workload kind, a router per mesh from ``router.Factory``, the state apart):

- a :class:`StateStore`: the rollout's lock and state, kept where the service is, so that the
  next job finds them (docker: a lock container and a file in the router container; kubernetes:
  a Lease);
- a :class:`Workload`: the revisions that run (start the first, start a canary beside the stable,
  promote it, remove it);
- a :class:`Router`: one per traffic method, chosen by a factory, that splits the traffic.

Every operation is idempotent: the runner applies a decision, then stores the state; a run killed
between the two applies the same decision again when it resumes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipml.canary.targets.base import (
    PER_CLIENT_BEHIND_PROXY,
    Router,
    StateStore,
    Target,
    Workload,
    serving_environment,
)
from shipml.errors import ConfigError, did_you_mean

__all__ = ["PER_CLIENT_BEHIND_PROXY", "TARGET_TYPES", "Router", "StateStore", "Target",
           "Workload", "build_target", "check_type", "serving_environment"]

TARGET_TYPES = ("docker", "kubernetes")


def check_type(name: str, where: str) -> str:
    """Return ``name`` when it is a target type; raise ConfigError listing the valid ones."""
    if name not in TARGET_TYPES:
        raise ConfigError(f"{where}: unknown target {name!r}; valid: {', '.join(TARGET_TYPES)}"
                          f"{did_you_mean(name, TARGET_TYPES)}")
    return name


def build_target(kind: str, service: str, settings: Mapping[str, Any], where: Any) -> Target:
    """Return the target of type ``kind`` for ``service`` from its settings section; raise
    ConfigError for a bad setting and InfrastructureError when its engine or cluster does not
    answer."""
    if kind == "docker":
        from shipml.canary.targets import docker

        return docker.from_settings(service, settings, where)
    from shipml.canary.targets import kubernetes

    return kubernetes.from_settings(service, settings, where)
