"""The kubernetes target's state store: one ``coordination.k8s.io/v1`` Lease, ``SERVICE-canary``.

Its ``holderIdentity``/``renewTime`` are the lock, the annotation ``shipml.dev/canary-state`` the
rollout state. It is created with POST (409: someone else holds it) and updated with PUT carrying
its ``resourceVersion`` (409: it changed under us), so two runs cannot both take it. Within one
run the heartbeat renews it from a thread of its own: each read-then-write pair holds the store's
guard, so the run's own writes never refuse each other.
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shipml.canary.engine import RolloutState
from shipml.canary.lock import Lock, may_take, refuse
from shipml.canary.targets import k8s_objects as objects
from shipml.canary.targets.k8s_objects import STATE_ANNOTATION
from shipml.canary.targets.kube_api import Conflict, KubeApi
from shipml.errors import ConfigError, InfrastructureError


@dataclass
class LeaseStore:
    """The lock and the rollout state of ``service`` in the Lease ``SERVICE-canary``."""

    api: KubeApi
    service: str
    namespace: str
    guard: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def name(self) -> str:
        """Return the Lease's name."""
        return f"{self.service}-canary"

    def _lease(self) -> dict[str, Any] | None:
        return self.api.get("Lease", self.namespace, self.name)

    def acquire(self, lock: Lock, now: float) -> None:
        """Take or renew the Lease; raise LockHeld naming a live holder, InfrastructureError when
        it changed under us three times."""
        with self.guard:
            self._acquire(lock, now)

    def _acquire(self, lock: Lock, now: float) -> None:
        for _ in range(3):
            current = self._lease()
            if current is None:
                try:
                    self.api.create(objects.lease(
                        self.service, self.namespace, _holder(lock), int(lock.lease_s),
                        _micro_time(now), None, None))
                except Conflict:
                    continue
                return
            held = _lock_of(current)
            if held is not None and not may_take(held, lock, now):
                raise refuse(self.service, held, now)
            try:
                self._put(current, holder=_holder(lock), lease_s=int(lock.lease_s),
                          renewed=_micro_time(now))
                return
            except Conflict:
                continue
        raise InfrastructureError(f"the Lease {self.namespace}/{self.name} kept changing; could "
                                  "not take it in 3 tries")

    def release(self, lock: Lock) -> None:
        """Clear the Lease's holder when it is us."""
        with self.guard:
            self._release(lock)

    def _release(self, lock: Lock) -> None:
        current = self._lease()
        held = _lock_of(current) if current is not None else None
        if current is not None and held is not None and held.host == lock.host \
                and held.pid == lock.pid:
            try:
                self._put(current, holder=None, lease_s=int(lock.lease_s), renewed=None)
            except Conflict:
                pass

    def read_state(self) -> RolloutState | None:
        """Return the state in the Lease's annotation, or None; raise ConfigError when it is not
        a rollout state."""
        current = self._lease()
        text = ((current or {}).get("metadata", {}).get("annotations") or {}).get(STATE_ANNOTATION)
        if not text:
            return None
        source = f"Lease {self.namespace}/{self.name} annotation {STATE_ANNOTATION}"
        try:
            record = json.loads(text)
        except ValueError:
            raise ConfigError(f"{source} is not JSON") from None
        return RolloutState.from_dict(record, source)

    def write_state(self, state: RolloutState) -> None:
        """Write the state into the Lease's annotation, keeping the holder; raise
        InfrastructureError when the Lease is gone."""
        with self.guard:
            self._write_state(state)

    def _write_state(self, state: RolloutState) -> None:
        for _ in range(3):
            current = self._lease()
            if current is None:
                raise InfrastructureError(f"the Lease {self.namespace}/{self.name} is gone")
            spec = current.get("spec") or {}
            try:
                self._put(current, holder=spec.get("holderIdentity"),
                          lease_s=int(spec.get("leaseDurationSeconds") or 60),
                          renewed=spec.get("renewTime"), state=state.to_dict())
                return
            except Conflict:
                continue  # changed by someone else (kubectl annotate): read it again
        raise InfrastructureError(f"the Lease {self.namespace}/{self.name} kept changing; could "
                                  "not store the rollout state in 3 tries")

    def _put(self, current: Mapping[str, Any], *, holder: str | None, lease_s: int,
             renewed: str | None, state: Mapping[str, Any] | None = None) -> None:
        if state is None:
            text = ((current.get("metadata") or {}).get("annotations") or {}).get(STATE_ANNOTATION)
            state = json.loads(text) if text else None
        version = str(current["metadata"].get("resourceVersion") or "") or None
        self.api.replace(objects.lease(self.service, self.namespace, holder, lease_s, renewed,
                                       state, version))


def _holder(lock: Lock) -> str:
    return json.dumps({"holder": lock.holder, "host": lock.host, "pid": lock.pid},
                      sort_keys=True)


def _lock_of(lease: Mapping[str, Any]) -> Lock | None:
    spec = lease.get("spec") or {}
    identity, renewed = spec.get("holderIdentity"), spec.get("renewTime")
    if not identity or not renewed:
        return None
    try:
        who = json.loads(identity)
        at = _dt.datetime.strptime(renewed, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=_dt.timezone.utc).timestamp()
    except (ValueError, TypeError):
        return None
    return Lock.from_dict({**who, "renewed_at": at,
                           "lease_s": spec.get("leaseDurationSeconds") or 0})


def _micro_time(now: float) -> str:
    return _dt.datetime.fromtimestamp(now, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
