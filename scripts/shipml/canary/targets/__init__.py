"""Targets: where the service runs and how traffic is split, behind one interface chosen by
``canary.target.type`` (``docker`` with an HAProxy router, ``kubernetes`` with one of four
traffic methods). A target also keeps the rollout's state and lock, so that the next job finds
them where the service is.

Every operation is idempotent: the runner applies a decision, then stores the state; a run killed
between the two applies the same decision again when it resumes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from shipml.canary.engine import Revision, RolloutState
from shipml.canary.lock import Lock
from shipml.errors import ConfigError, did_you_mean

TARGET_TYPES = ("docker", "kubernetes")


class Target(Protocol):
    """A place a service runs, with weighted traffic between a stable and a canary revision."""

    service: str

    def describe(self) -> str:
        """Return how messages name the target (engine or cluster, and the service)."""
        ...

    def resolve(self, image: str) -> Revision:
        """Return the revision ``image`` would run as; raise ConfigError when the image does not
        exist."""
        ...

    def acquire(self, lock: Lock, now: float) -> None:
        """Take the service's rollout lock (or renew ours); raise LockHeld naming a live holder."""
        ...

    def release(self, lock: Lock) -> None:
        """Give the lock back when we hold it."""
        ...

    def read_state(self) -> RolloutState | None:
        """Return the stored rollout state, or None when no rollout was ever stored."""
        ...

    def write_state(self, state: RolloutState) -> None:
        """Store the rollout state on the target."""
        ...

    def stable(self) -> Revision | None:
        """Return the revision that serves the traffic now, or None before the first deploy."""
        ...

    def first_deploy(self, revision: Revision) -> None:
        """Deploy the service's first revision with all traffic, once it is healthy."""
        ...

    def deploy_canary(self, revision: Revision) -> None:
        """Start ``revision`` beside the stable at weight 0 and wait until it is healthy; raise
        InfrastructureError when it does not become ready."""
        ...

    def set_weight(self, weight: int) -> None:
        """Send ``weight`` percent of the traffic to the canary, the rest to the stable."""
        ...

    def promote(self) -> None:
        """Make the canary the stable with all traffic, without dropping requests; remove the
        old stable."""
        ...

    def rollback(self) -> None:
        """Send every request to the stable and remove the canary."""
        ...

    def endpoints(self) -> dict[str, str]:
        """Return the base URL of each running revision, by revision (what the probe calls)."""
        ...


def check_type(name: str, where: str) -> str:
    """Return ``name`` when it is a target type; raise ConfigError listing the valid ones."""
    if name not in TARGET_TYPES:
        raise ConfigError(f"{where}: unknown target {name!r}; valid: {', '.join(TARGET_TYPES)}"
                          f"{did_you_mean(name, TARGET_TYPES)}")
    return name


def build_target(kind: str, service: str, settings: Mapping[str, Any], where: Any) -> Target:
    """Return the target of type ``kind`` for ``service`` from its settings section."""
    if kind == "docker":
        from shipml.canary.targets.docker import DockerTarget

        return DockerTarget.from_settings(service, settings, where)
    from shipml.canary.targets.kubernetes import KubernetesTarget

    return KubernetesTarget.from_settings(service, settings, where)
