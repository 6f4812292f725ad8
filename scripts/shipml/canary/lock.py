"""One rollout per service at a time: a lock with a lease, kept on the target.

The holder renews the lease while it works. A second run finds the lock held and fails fast,
naming the holder; a holder that stopped renewing (killed, its runner gone) is taken over once
its lease expires, or at once when it ran on this very host and its process is gone.
The targets store :class:`Lock` records with an atomic create and a compare-and-swap update;
the rules of who may take a lock are the pure functions here.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shipml.ci import repository_url
from shipml.errors import ConfigError

HELD = ("another shipml canary holds the rollout of {service}: {holder}, lease renewed "
        "{age:.0f}s ago, expires in {left:.0f}s. Wait for it to finish, or if it died, run again "
        "after the lease (canary.lease) expires")


class LockHeld(ConfigError):
    """The service's rollout lock is held by a live holder (exit 2: run again later)."""


@dataclass(frozen=True)
class Lock:
    """Who holds a service's rollout: a description a person can act on, the host and pid that
    tell whether the holder still runs here, when the lease was renewed and for how long."""

    holder: str
    host: str
    pid: int
    renewed_at: float
    lease_s: float

    def expired(self, now: float) -> bool:
        """Return whether the lease ran out at ``now``."""
        return now - self.renewed_at > self.lease_s

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping stored on the target."""
        return {"holder": self.holder, "host": self.host, "pid": self.pid,
                "renewed_at": self.renewed_at, "lease_s": self.lease_s}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Lock | None:
        """Return the lock in ``record``, or None when it is not one (a broken record is a free
        lock: it cannot name a holder that could still renew it)."""
        try:
            return cls(holder=str(record["holder"]), host=str(record["host"]),
                       pid=int(record["pid"]), renewed_at=float(record["renewed_at"]),
                       lease_s=float(record["lease_s"]))
        except (KeyError, TypeError, ValueError):
            return None


def me(lease_s: float, now: float, environ: Mapping[str, str] | None = None) -> Lock:
    """Return the lock this process would hold: its CI run (GitHub Actions, Jenkins) or user,
    host and pid."""
    env = os.environ if environ is None else environ
    host = socket.gethostname()
    if env.get("GITHUB_RUN_ID"):
        repository = repository_url(env)
        where = (f"GitHub Actions run {repository}/actions/runs/{env['GITHUB_RUN_ID']}"
                 if repository else f"GitHub Actions run {env['GITHUB_RUN_ID']}")
    elif env.get("BUILD_URL"):
        where = f"Jenkins build {env['BUILD_URL']}"
    else:
        where = f"{env.get('USER') or env.get('LOGNAME') or 'someone'} on {host}"
    return Lock(holder=f"{where} (pid {os.getpid()})", host=host, pid=os.getpid(),
                renewed_at=now, lease_s=lease_s)


def may_take(existing: Lock | None, mine: Lock, now: float) -> bool:
    """Return whether ``mine`` may take a lock currently recorded as ``existing``: free, ours,
    expired, or held by a process of this host that no longer runs."""
    if existing is None or existing.expired(now):
        return True
    if existing.host == mine.host and existing.pid == mine.pid:
        return True
    return existing.host == mine.host and not _alive(existing.pid)


def refuse(service: str, existing: Lock, now: float) -> LockHeld:
    """Return the error that names the holder of ``service``'s lock."""
    age = now - existing.renewed_at
    return LockHeld(HELD.format(service=service, holder=existing.holder, age=age,
                                left=max(0.0, existing.lease_s - age)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
