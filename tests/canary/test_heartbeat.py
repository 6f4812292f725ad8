"""The rollout lock stays held while its holder lives, whatever the holder waits for: the
heartbeat renews it from a thread of its own during a long wait for the canary to become ready,
and a holder that lost its lock stops before it touches the target again.

A store in memory keeps the lock by the same rules (``may_take``) as the real ones; the
kubernetes Lease under the heartbeat and the run's own writes at once is tested against the real
API server in tests/canary/k8s/test_replicas.py."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import pytest

from shipml.canary import core, engine
from shipml.canary.engine import Revision, RolloutState
from shipml.canary.lock import Heartbeat, Lock, LockHeld, may_take, refuse
from shipml.canary.plan import Plan, Step
from shipml.canary.targets import Target
from shipml.errors import InfrastructureError

STABLE, CANARY = Revision("img@sha256:" + "a" * 64, "svc-a"), Revision("img@sha256:" + "b" * 64,
                                                                       "svc-b")
LEASE_S = 1.0


class MemoryStore:
    """The lock and the state in memory, taken by the rules every store follows."""

    def __init__(self) -> None:
        self.lock: Lock | None = None
        self.state: RolloutState | None = None
        self.renewals = 0
        self.fail_with: Exception | None = None

    def acquire(self, lock: Lock, now: float) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        if self.lock is not None and not may_take(self.lock, lock, now):
            raise refuse("svc", self.lock, now)
        self.lock, self.renewals = lock, self.renewals + 1

    def release(self, lock: Lock) -> None:
        if self.lock is not None and (self.lock.host, self.lock.pid) == (lock.host, lock.pid):
            self.lock = None

    def read_state(self) -> RolloutState | None:
        return self.state

    def write_state(self, state: RolloutState) -> None:
        self.state = state


class SlowWorkload:
    """A workload whose canary takes ``ready_s`` to become ready; while it waits, it asks
    whether another live run could take the lock, and records the answer."""

    def __init__(self, store: MemoryStore, ready_s: float) -> None:
        self.store, self.ready_s = store, ready_s
        self.another_run_could_take: bool | None = None

    def describe(self) -> str:
        return "memory"

    def resolve(self, image: str) -> Revision:
        return CANARY

    def stable(self) -> Revision | None:
        return STABLE

    def deploy_canary(self, revision: Revision) -> None:
        time.sleep(self.ready_s)
        held = self.store.lock
        # another shipml canary of this host whose process lives (our parent stands in for it)
        another = Lock("another run", socket.gethostname(), os.getppid(), time.time(), LEASE_S)
        self.another_run_could_take = held is None or may_take(held, another, time.time())
        raise _Stop

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the rollout touched the workload: {name}")


class Router:
    def __init__(self) -> None:
        self.moves: list[int] = []

    def set_weight(self, stable: Revision | None, canary: Revision | None, weight: int) -> None:
        self.moves.append(weight)

    def weights(self) -> dict[str, int]:
        return {}


class _Stop(Exception):
    pass


def _runner(store: MemoryStore, workload: Any, router: Router) -> core.Runner:
    plan = Plan((Step(10, 0.0), Step(100, 0.0)), 0.05, 1, 0, "hold", 10.0, 0.05)
    settings = core.Settings(service="svc", plan=plan, specs=(), target_type="docker", target={},
                             prometheus={}, probe={}, probe_rows=(), lease_s=LEASE_S,
                             sample_window_s=0.05)
    return core.Runner(settings=settings, target=Target("svc", store, workload, router),  # type: ignore[arg-type]
                       providers={}, lines=[], rounds=[])


def test_a_wait_three_leases_long_keeps_the_lock_from_another_live_run() -> None:
    store = MemoryStore()
    workload = SlowWorkload(store, ready_s=3 * LEASE_S)
    with pytest.raises(_Stop):
        core.roll_out(_runner(store, workload, Router()), "img:v2")
    # renewed every third of the lease: the first take and nine beats in three leases (four
    # at least, however loaded the machine: a lease is lost only after three missed beats)
    assert store.renewals >= 1 + 4
    assert workload.another_run_could_take is False
    assert store.lock is None  # released when the run ended, by an exception or not


def test_without_the_heartbeat_the_same_wait_would_lose_the_lock() -> None:
    # the rule the heartbeat defends against: a lock renewed once, then a wait of three leases
    taken = Lock("me", socket.gethostname(), os.getpid(), 0.0, LEASE_S)
    another = Lock("another run", socket.gethostname(), os.getppid(), 0.0, LEASE_S)
    assert not may_take(taken, another, 0.0) and may_take(taken, another, 3 * LEASE_S)


def test_a_holder_that_lost_its_lock_never_touches_the_target_again() -> None:
    store, router = MemoryStore(), Router()
    runner = _runner(store, SlowWorkload(store, 0.0), router)
    with core.held(runner):
        # another run took it (its lease must have run out: a process paused for minutes)
        store.lock = Lock("job 8 (pid 1)", "elsewhere", 1, time.time() + 60, 60.0)
        _wait_for(lambda: runner.heartbeat is not None and runner.heartbeat.lost is not None)
        state = engine.begin(runner.settings.plan, "svc", CANARY, STABLE, time.time())
        with pytest.raises(LockHeld, match=r"holds the rollout of svc: job 8 \(pid 1\)"):
            runner.apply(state)
    assert router.moves == [] and store.state is None
    assert store.lock is not None and store.lock.holder == "job 8 (pid 1)"  # theirs, untouched


class TakenDuringPromote(SlowWorkload):
    """A promote during which another run takes the lock (this one paused past its lease)."""

    runner: core.Runner

    def promote(self, canary: Revision) -> None:
        self.store.lock = Lock("job 9 (pid 1)", "elsewhere", 1, time.time() + 60, 60.0)
        _wait_for(lambda: self.runner.heartbeat is not None
                  and self.runner.heartbeat.lost is not None)


def test_a_lock_lost_during_a_long_promote_leaves_the_other_runs_state_alone() -> None:
    store, router = MemoryStore(), Router()
    workload = TakenDuringPromote(store, 0.0)
    runner = workload.runner = _runner(store, workload, router)
    theirs = engine.begin(runner.settings.plan, "svc", CANARY, STABLE, time.time()).state
    store.state = theirs
    with core.held(runner), pytest.raises(LockHeld, match=r"job 9 \(pid 1\)"):
        runner.apply(engine.command(runner.settings.plan, theirs, "promote", time.time()))
    assert store.state is theirs


def test_a_renewal_that_fails_for_less_than_a_lease_is_tried_again() -> None:
    store = MemoryStore()
    lock = Lock("me", socket.gethostname(), os.getpid(), time.time(), LEASE_S)
    store.acquire(lock, time.time())
    beat = Heartbeat(store, lock, "svc", time.time)
    with beat:
        store.fail_with = InfrastructureError("the API server answered 503")
        _wait_for(lambda: beat.error is not None)
        beat.check()  # under a lease since the last renewal: not lost yet
        store.fail_with = None
        _wait_for(lambda: beat.error is None)
        beat.check()
        store.fail_with = InfrastructureError("the API server answered 503")
        time.sleep(LEASE_S * 1.5)
        with pytest.raises(InfrastructureError) as error:
            beat.check()
    assert "could not be renewed for" in error.value.message
    assert error.value.message.endswith("Last error: the API server answered 503")


def _wait_for(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the heartbeat never got there"
        time.sleep(0.01)


def test_the_heartbeat_thread_ends_with_the_block() -> None:
    store = MemoryStore()
    runner = _runner(store, SlowWorkload(store, 0.0), Router())
    before = threading.active_count()
    with core.held(runner):
        assert threading.active_count() == before + 1
    assert threading.active_count() == before and runner.heartbeat is None
