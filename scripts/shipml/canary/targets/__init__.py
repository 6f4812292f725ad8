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
#: serve.max_connections_per_client of a revision: no limit below its own max_connections, because
#: every connection comes from a proxy's few addresses (HAProxy, a gateway, a sidecar, KServe's
#: queue-proxy) and serve's default, half of max_connections, would turn load into 503s that the
#: error-rate judge reads (the server clamps the value to its max_connections)
PER_CLIENT_BEHIND_PROXY = 100000


def serving_environment(revision: str, host: str, port: int) -> dict[str, str]:
    """Return the environment every revision's server starts with: where it listens, the revision
    it reports, and no per-client connection limit below the proxy in front."""
    return {"SHIPML_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT_BEHIND_PROXY),
            "SHIPML_REVISION": revision, "SHIPML_SERVE_HOST": host, "SHIPML_SERVE_PORT": str(port)}


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
