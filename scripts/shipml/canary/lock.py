"""One rollout per service at a time: a lock with a lease, kept on the target.

The holder renews the lease while it works, every third of it, from a thread of its own
(:class:`Heartbeat`): a long wait for a revision to become ready or a slow analysis round never
lets the lease run out under a live holder. A second run finds the lock held and fails fast,
naming the holder; a holder that stopped renewing (killed, its runner gone) is taken over once
its lease expires, or at once when it ran on this very host and its process is gone.
The targets store :class:`Lock` records with an atomic create and a compare-and-swap update;
the rules of who may take a lock are the pure functions here.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from shipml.ci import repository_url
from shipml.errors import ConfigError, InfrastructureError, first_line

HELD = ("another shipml canary holds the rollout of {service}: {holder}, lease renewed "
        "{age:.0f}s ago, expires in {left:.0f}s. Wait for it to finish, or if it died, run again "
        "after the lease (canary.lease) expires")


LOST = ("the rollout lock of {service} could not be renewed for {age:.0f}s, longer than its "
        "lease ({lease:.0f}s): another run may hold it now, so this one stops without touching the "
        "target again. Last error: {error}")


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


class Renews(Protocol):
    """What the heartbeat needs of a state store: taking or renewing the lock."""

    def acquire(self, lock: Lock, now: float) -> None:
        """Take or renew ``lock``; raise LockHeld when a live holder has it."""


class Heartbeat:
    """Renew ``lock`` on ``store`` every ``lease_s / 3`` seconds from a thread of its own, from
    ``with`` until its end; :meth:`check` raises once the lock is lost.

    The store is used from this thread and the caller's at once: its methods serialise their
    read-then-write pairs (the Lease's resourceVersion would refuse one of two interleaved PUTs).
    """

    def __init__(self, store: Renews, lock: Lock, service: str,
                 now: Callable[[], float]) -> None:
        self.store, self.lock, self.service, self.now = store, lock, service, now
        self.renewed_at = now()
        self.error: Exception | None = None
        self.lost: LockHeld | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"shipml-lease-{service}",
                                        daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.lock.lease_s / 3):
            self.renew()
            if self.lost is not None:
                return

    def renew(self) -> None:
        """Renew the lock once; keep what went wrong for :meth:`check`."""
        at = self.now()
        try:
            self.store.acquire(replace(self.lock, renewed_at=at), at)
        except LockHeld as exc:
            self.lost = exc
        except Exception as exc:  # kept for check(); the next beat tries again
            self.error = exc
        else:
            self.renewed_at, self.error = at, None

    def check(self) -> None:
        """Raise LockHeld when another run took the lock, InfrastructureError when it could not
        be renewed for longer than its lease; before the target is touched again."""
        if self.lost is not None:
            raise self.lost
        age = self.now() - self.renewed_at
        if self.error is not None and age > self.lock.lease_s:
            raise InfrastructureError(LOST.format(service=self.service, age=age,
                                                  lease=self.lock.lease_s,
                                                  error=first_line(self.error)))
