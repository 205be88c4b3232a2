"""An exception at any point of fastsem's Python code leaves every lock free
and every permit, place and resource accounted for.

tests/injection.py raises an exception at every point where CPython can run
a signal handler (every line, and right after every call) in the pool's and
the holder tracker's code, one point per run, over scenarios that go through
every path of acquire, release, discard, lease, resize and close; after each
run the invariants below are checked, and then the pool must still work. The
semaphores under the pool are each implementation's: the exception lands in
the pool's code, the semaphore's own code is not traced.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import pytest
from injection import Injected, Injector, code_objects, every_point

import fastsem._common as common_module
import fastsem._pool as pool_module
from fastsem import PoolTimeout, ResourcePool

POOL_CODE = code_objects(pool_module)
TRACKER_CODE = code_objects(common_module.HolderTracker, common_module.Hold)


class Resource:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closes = 0
        self.healthy = True

    def __repr__(self) -> str:
        return f"<Resource {self.number}>"


class Clock:
    """The pool's monotonic(), moved by the scenario."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class World:
    """A pool and everything it ever made."""

    def __init__(self, impl: Any, **options: Any) -> None:
        self.made: list[Resource] = []
        self.held: list[Resource] = []  # what the scenario holds now
        self.leases: list[Any] = []

        def factory() -> Resource:
            resource = Resource(len(self.made))
            self.made.append(resource)
            return resource

        def close(resource: Resource) -> None:
            resource.closes += 1

        options.setdefault("close", close)
        # A regression that loses track of a place fails, not hangs.
        options.setdefault("timeout", 5)
        ResourcePool._semaphore_type = impl.BoundedSemaphore
        self.pool: ResourcePool[Resource] = ResourcePool(factory, **options)

    def acquire(self, **kwargs: Any) -> Resource:
        resource = self.pool.acquire(**kwargs)
        self.held.append(resource)
        return resource

    def release(self, resource: Resource) -> None:
        self._give_back(self.pool.release, resource)

    def discard(self, resource: Resource) -> None:
        self._give_back(self.pool.discard, resource)

    def _give_back(self, give: Callable[[Resource], None], resource: Resource) -> None:
        try:
            give(resource)
        finally:
            # Held until the pool has taken it back: if the call raised
            # before it did (on its first instruction), the caller has it.
            if id(resource) not in self.pool._in_use:
                self.held.remove(resource)

    def lease(self) -> Any:
        lease = self.pool.lease()
        self.leases.append(lease)
        return lease

    def holders(self) -> set[int]:
        """What the scenario holds, itself or through a lease. A lease holds
        its resource until its exit has given it back: an exception on the
        exit's first instruction (which no Python code can guard) leaves it
        held, as a with block's body would."""
        leased = {id(lease._slot.resource) for lease in self.leases if lease._slot is not None}
        return {id(r) for r in self.held} | leased


def check_pool(world: World, injector: Injector) -> None:
    pool = world.pool
    where = f"{injector.fired}: {injector.fired_source}"
    # The one thing no code can save: an exception the instant factory()
    # returns, before its caller has stored the result (that object never
    # reached the pool; its place is given up all the same).
    after_call = bool(injector.fired) and injector.fired.endswith("(opcode)")  # type: ignore[union-attr]
    lost = world.made[-1:] if after_call and "_factory()" in where else []
    # The same for a lease's entry, on CPython 3.10 only (later versions
    # run no signal handler as a Python function returns): the resource
    # acquire() returned is checked out, and nobody has it.
    stranded = (
        {id(slot.resource) for slot in pool._in_use.values()} - world.holders()
        if after_call and "pool.acquire(" in where
        else set()
    )
    assert len(stranded) <= 1, where
    assert pool._lock.acquire(blocking=False), f"the pool's lock is held after {where}"
    try:
        idle = [slot.resource for slot in pool._idle]
        in_use = [slot.resource for slot in pool._in_use.values()]
        alive = [r for r in world.made if r.closes == 0 and id(r) in pool._live]
        assert all(r.closes <= 1 for r in world.made), f"closed twice after {where}"
        assert len(idle) == len({id(r) for r in idle}), f"idle twice after {where}"
        assert not {id(r) for r in idle} & {id(r) for r in in_use}, where
        # Nothing is in flight now: every live resource is idle or in use,
        # and every resource not closed is live.
        assert sorted(map(id, idle + in_use)) == sorted(map(id, alive)), where
        unclosed = [r for r in world.made if r.closes == 0 and id(r) not in pool._live]
        assert unclosed == lost, where
        assert pool._size == len(alive), f"size {pool._size} != {len(alive)} after {where}"
        # A place per checked-out resource; the in-use map is what the
        # caller holds, except a resource whose release() raised after
        # taking it back (then it is idle or closed, and not held).
        assert {id(r) for r in in_use} <= world.holders() | stranded, where
        assert pool._sem.value == pool.max_size - len(in_use), (
            f"{pool._sem.value} free places, {len(in_use)} in use after {where}"
        )
        assert not pool._waiters and not pool._room_waiters, where
        assert pool._sem.waiting == 0, where
    finally:
        pool._lock.release()
    # And the pool still works: everything back, every place usable, a
    # shrink and a growth, close.
    for slot in list(pool._in_use.values()):
        pool.release(slot.resource)
    taken = [pool.acquire(timeout=1) for _ in range(pool.max_size)]
    for resource in taken:
        pool.release(resource)
    pool.resize(max_size=1)
    pool.resize(max_size=3, min_size=1)
    assert pool.stats()["size"] == 1, where
    assert pool.close(timeout=1), f"resources left alive after {where}"
    assert all(r.closes == 1 for r in world.made if r not in lost), where
    assert pool._size == 0 and pool._sem.value == pool.max_size, where


def plain_scenario(world: World) -> None:
    pool = world.pool
    first = world.acquire()
    second = world.acquire()
    with pytest.raises(PoolTimeout):
        pool.acquire(timeout=0)
    with pytest.raises(PoolTimeout):
        pool.acquire(timeout=0.001)  # the queued wait
    world.release(first)
    again = world.acquire()  # the idle one, on the fast path
    world.discard(second)
    with world.lease() as leased:
        assert leased is not again
    world.release(again)


def full_scenario(world: World, clock: Clock) -> None:
    pool = world.pool
    first = world.acquire()
    world.release(first)  # reset() runs
    clock.now += 100  # first has outlived max_lifetime
    second = world.acquire()  # closes first, makes one, tops min_size up
    third = world.acquire()
    with pytest.raises(PoolTimeout):
        pool.acquire(timeout=0.001)  # counted in max_waiting while it waits
    world.release(second)
    third.healthy = False
    world.release(third)
    fourth = world.acquire()  # check() fails on third: closed, another taken
    world.discard(fourth)
    with world.lease() as leased:
        pool.stats()
        assert leased.healthy


@pytest.fixture(autouse=True)
def _restore_semaphore_type():
    saved = ResourcePool._semaphore_type
    yield
    ResourcePool._semaphore_type = saved


@pytest.mark.slow
def test_pool_survives_an_exception_at_every_point_plain(impl):
    points = every_point(
        POOL_CODE,
        lambda: World(impl, max_size=2),
        plain_scenario,
        check_pool,
    )
    assert points > 100


@pytest.mark.slow
def test_pool_survives_an_exception_at_every_point_with_every_option(impl, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(pool_module, "monotonic", clock)

    def make() -> World:
        clock.now = 1000.0
        return World(
            impl,
            max_size=2,
            min_size=1,
            check=lambda r: r.healthy,
            reset=lambda r: None,
            max_lifetime=50,
            max_idle=500,
            max_waiting=1,
            leak_timeout=10_000,
        )

    points = every_point(POOL_CODE, make, lambda world: full_scenario(world, clock), check_pool)
    assert points > 200


class Tracked:
    """A tracked semaphore and what the scenario knows it holds."""

    def __init__(self, impl: Any) -> None:
        self.sem = impl.BoundedSemaphore(4, track_holders=True)
        self.held = 0


def tracked_scenario(state: Tracked) -> None:
    sem = state.sem
    with sem.hold(n=2):
        sem.holders()
    with sem:
        pass
    sem.acquire(n=3)
    state.held += 3
    sem.release(2)
    state.held -= 2
    state.held += sem.drain()
    sem.release(state.held)
    state.held = 0


def check_tracked(state: Tracked, injector: Injector) -> None:
    sem = state.sem
    where = f"{injector.fired}: {injector.fired_source}"
    records = sum(holder.permits for holder in sem.holders())
    # The records and the permits agree: whatever the interrupted call did,
    # it did all of it or none of it.
    assert sem.value + records == 4, f"value {sem.value}, records {records} after {where}"
    tracker = getattr(sem, "_tracker", None)  # the C one keeps it to itself
    if tracker is not None:
        assert tracker.lock.acquire(blocking=False), f"tracker lock held after {where}"
        tracker.lock.release()
    # Give back what is held, by the records: the semaphore is whole again.
    if records:
        sem.release(records)
    assert sem.value == 4 and sem.holders() == [], where


@pytest.mark.slow
def test_holder_tracking_survives_an_exception_at_every_point(impl):
    points = every_point(TRACKER_CODE, lambda: Tracked(impl), tracked_scenario, check_tracked)
    assert points > 20


def test_injection_finds_a_lock_left_held():
    """The method itself can fail: the pattern the pool used to have (take
    the lock, then enter try) is caught at the point between the two."""

    class Fragile:
        def __init__(self) -> None:
            self.lock = threading.Lock()

        def work(self) -> None:
            lock = self.lock
            lock.acquire()
            try:
                pass
            finally:
                lock.release()

    codes = code_objects(Fragile)

    def check(fragile: Fragile, injector: Injector) -> None:
        assert fragile.lock.acquire(blocking=False), injector.fired
        fragile.lock.release()

    with pytest.raises(AssertionError, match="work"):
        every_point(codes, Fragile, lambda fragile: fragile.work(), check)


def test_injected_is_not_an_exception():
    assert not issubclass(Injected, Exception)
