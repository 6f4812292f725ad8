"""The docker target's state store, kept on the engine: the lock is a container that never runs,
named after the service (creating a name is atomic, so two runs cannot both take it), holding
``/shipml/lock.json``; the rollout state is ``/shipml/state.json`` in the router container. The
heartbeat renews the lock from a thread of its own; each method holds the store's guard."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shipml.canary.engine import RolloutState
from shipml.canary.lock import Lock, may_take, refuse
from shipml.canary.targets._docker import LABEL, container, read_file, remove, router_name, write_file
from shipml.errors import InfrastructureError, first_line


@dataclass
class DockerStore:
    """The lock and the rollout state of ``service`` on the engine behind ``client``;
    ``router_image`` returns the image id the lock container is made of."""

    client: Any
    service: str
    router_image: Callable[[], str]
    guard: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def lock_name(self) -> str:
        """Return the lock container's name."""
        return f"{self.service}-canary-lock"

    def acquire(self, lock: Lock, now: float) -> None:
        """Take the lock container's name, or take over an expired or dead holder's; raise
        LockHeld naming a live holder, InfrastructureError when the engine refuses."""
        with self.guard:
            self._acquire(lock, now)

    def _acquire(self, lock: Lock, now: float) -> None:
        import docker

        for _ in range(3):
            existing = container(self.client, self.lock_name)
            if existing is None:
                try:
                    created = self.client.containers.create(
                        self.router_image(), command=["true"], name=self.lock_name,
                        labels={LABEL: self.service, f"{LABEL}.role": "lock"})
                except docker.errors.APIError as exc:
                    if getattr(exc, "status_code", None) == 409:
                        continue  # someone else created it first: read theirs
                    raise InfrastructureError(f"cannot create the lock {self.lock_name}: "
                                              f"{first_line(exc)}") from None
                write_file(created, "lock.json", lock.to_dict())
                return
            held = Lock.from_dict(read_file(existing, "lock.json") or {})
            if held is not None and not may_take(held, lock, now):
                raise refuse(self.service, held, now)
            if held is not None and held.host == lock.host and held.pid == lock.pid:
                write_file(existing, "lock.json", lock.to_dict())
                return
            remove(existing)
        raise InfrastructureError(f"could not take the lock {self.lock_name} after 3 tries")

    def release(self, lock: Lock) -> None:
        """Remove the lock container when it is ours."""
        with self.guard:
            self._release(lock)

    def _release(self, lock: Lock) -> None:
        existing = container(self.client, self.lock_name)
        if existing is None:
            return
        held = Lock.from_dict(read_file(existing, "lock.json") or {})
        if held is not None and held.host == lock.host and held.pid == lock.pid:
            remove(existing)

    def read_state(self) -> RolloutState | None:
        """Return the state in the router container, or None; raise ConfigError when it is not
        a rollout state."""
        name = router_name(self.service)
        router = container(self.client, name)
        record = read_file(router, "state.json") if router is not None else None
        return RolloutState.from_dict(record, f"{name}:/shipml/state.json") if record else None

    def write_state(self, state: RolloutState) -> None:
        """Write the state into the router container; raise InfrastructureError when it is
        gone."""
        with self.guard:
            self._write_state(state)

    def _write_state(self, state: RolloutState) -> None:
        name = router_name(self.service)
        router = container(self.client, name)
        if router is None:
            raise InfrastructureError(f"the router container {name} is gone; the rollout state "
                                      "cannot be stored")
        write_file(router, "state.json", state.to_dict())
