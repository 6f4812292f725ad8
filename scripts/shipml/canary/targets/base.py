"""The three parts of a target (state store, workload, router) and the environment every
revision's server starts with: the interfaces the docker and kubernetes targets implement, below
the factory in ``shipml.canary.targets`` that picks one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shipml.canary.engine import Revision, RolloutState
from shipml.canary.lock import Lock

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


class StateStore(Protocol):
    """The service's rollout lock and rollout state, kept on the target."""

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


class Router(Protocol):
    """One traffic method: how a share of the requests reaches the canary."""

    def set_weight(self, stable: Revision | None, canary: Revision | None, weight: int) -> None:
        """Send ``weight`` percent of the traffic to ``canary``, the rest to ``stable``, and
        return once that split serves."""
        ...

    def weights(self) -> dict[str, int]:
        """Return the weight each revision gets now, by revision, as the router has it."""
        ...


class Workload(Protocol):
    """The revisions of a service: which runs, starting and removing them."""

    def describe(self) -> str:
        """Return how messages name the target (engine or cluster, and the service)."""
        ...

    def resolve(self, image: str) -> Revision:
        """Return the revision ``image`` would run as; raise ConfigError when the image does not
        exist."""
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

    def promote(self, canary: Revision) -> None:
        """Make ``canary`` the stable with all traffic, without dropping requests; remove the
        old stable."""
        ...

    def rollback(self, canary: Revision) -> None:
        """Send every request to the stable and remove ``canary``."""
        ...

    def endpoints(self) -> dict[str, str]:
        """Return the base URL of each running revision, by revision (what the probe calls)."""
        ...

    def check_shadow(self, by: str) -> None:
        """Raise ConfigError when a shadow step's mirror ``by`` (``server``: the stable's own
        server; ``mesh``) cannot run here: before anything of the rollout starts."""
        ...

    def set_shadow(self, canary: Revision | None, sample: float, by: str) -> None:
        """Mirror ``sample`` of the stable's live ``/predict`` requests to ``canary`` (None:
        mirror nothing), ``by`` the stable's server or the mesh. Raises ConfigError when the
        stable cannot mirror."""
        ...


@dataclass(frozen=True)
class Target:
    """A place a service runs: its state store, its workload and its traffic router."""

    service: str
    store: StateStore
    workload: Workload
    router: Router

    def describe(self) -> str:
        """Return how messages name the target."""
        return self.workload.describe()
