"""fastsem.ResourcePool: every rule it promises, with real threads.

Each test runs twice, on a pool built on the C and on the pure-Python
BoundedSemaphore (the autouse fixture below sets the class the pool uses).
Lifetimes and leaks are tested on a fake clock (the pool's `monotonic`), so
that no test depends on how fast the machine is; no test asserts a duration.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import wait_until

import fastsem
import fastsem._pool as pool_module
from fastsem import (
    PoolClosed,
    PoolError,
    PoolTimeout,
    PoolTooBusy,
    ResourcePool,
)

SECONDS = float(os.environ.get("FASTSEM_STRESS_SECONDS", "1.0"))


@pytest.fixture(autouse=True)
def _semaphore_implementation(impl: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pool of the test is built on `impl`'s BoundedSemaphore."""
    monkeypatch.setattr(ResourcePool, "_semaphore_type", impl.BoundedSemaphore)


class FakeClock:
    """Stands in for the pool's time.monotonic(); moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(pool_module, "monotonic", fake)
    return fake


class Res:
    """A resource that knows how often it was closed and who holds it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = 0
        self.owner: object = None

    def __repr__(self) -> str:
        return f"<Res {self.n}>"


class Tracker:
    """factory and close for a pool: records every resource made, how many
    are alive at once, and fails on demand."""

    def __init__(self, fail: Callable[[], bool] | None = None) -> None:
        self.lock = threading.Lock()
        self.made: list[Res] = []
        self.alive = 0
        self.max_alive = 0
        self.fail = fail
        self.calls = 0

    def factory(self) -> Res:
        with self.lock:
            self.calls += 1
            if self.fail is not None and self.fail():
                raise RuntimeError("factory failed")
            res = Res(len(self.made))
            self.made.append(res)
            self.alive += 1
            self.max_alive = max(self.max_alive, self.alive)
            return res

    def close(self, res: Res) -> None:
        with self.lock:
            res.closed += 1
            self.alive -= 1


def make_pool(
    max_size: int = 2, tracker: Tracker | None = None, **kwargs: Any
) -> ResourcePool[Res]:
    tracker = tracker if tracker is not None else Tracker()
    return ResourcePool(tracker.factory, max_size, close=tracker.close, **kwargs)


class Acquirer:
    """A thread running pool.acquire(**kwargs); keeps the result or error.
    With give_back, it releases the resource at once and logs its name."""

    def __init__(
        self,
        pool: ResourcePool[Any],
        name: object = None,
        log: list[object] | None = None,
        give_back: bool = False,
        **kwargs: Any,
    ) -> None:
        self.pool = pool
        self.name = name
        self.log = log
        self.give_back = give_back
        self.kwargs = kwargs
        self.result: Any = None
        self.error: BaseException | None = None
        self.then: Callable[[Acquirer], None] | None = None  # runs after acquire
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self.pool.acquire(**self.kwargs)
            if self.log is not None:
                self.log.append(self.name)  # list.append is atomic
            if self.give_back:
                self.pool.release(self.result)
            elif self.then is not None:
                self.then(self)
        except BaseException as exc:
            self.error = exc
        self.done.set()

    def start(self) -> Acquirer:
        self.thread.start()
        return self

    def join(self, timeout: float = 10.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"acquirer {self.name} is stuck"


def waiting(pool: ResourcePool[Any]) -> int:
    return pool.stats()["waiting"]


def queue_acquirers(pool: ResourcePool[Any], count: int, **kwargs: Any) -> list[Acquirer]:
    """Starts acquirers one by one, each after the previous one is queued, so
    that their arrival order is known."""
    started = []
    for i in range(count):
        before = waiting(pool)
        started.append(Acquirer(pool, name=i, **kwargs).start())
        wait_until(lambda b=before: waiting(pool) == b + 1, what=f"acquirer {i} to queue")
    return started


# -- API surface ---------------------------------------------------------------


def test_exceptions() -> None:
    assert issubclass(PoolError, Exception)
    assert issubclass(PoolTimeout, PoolError) and issubclass(PoolTimeout, TimeoutError)
    assert issubclass(PoolClosed, PoolError)
    assert issubclass(PoolTooBusy, PoolError)
    for name in ["ResourcePool", "PoolError", "PoolTimeout", "PoolClosed", "PoolTooBusy"]:
        assert name in fastsem.__all__
        assert getattr(fastsem, name) is getattr(pool_module, name)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_size": 0}, ValueError),
        ({"max_size": 1.5}, TypeError),
        ({"min_size": 3}, ValueError),
        ({"min_size": -1}, ValueError),
        ({"max_waiting": -1}, ValueError),
        ({"max_lifetime": 0}, ValueError),
        ({"max_idle": -1.0}, ValueError),
        ({"leak_timeout": 0}, ValueError),
        ({"timeout": float("nan")}, ValueError),
        ({"timeout": "1"}, TypeError),
        ({"check": 3}, TypeError),
    ],
)
def test_arguments_are_checked(kwargs: dict[str, Any], error: type[Exception]) -> None:
    args: dict[str, Any] = {"max_size": 2, **kwargs}
    with pytest.raises(error):
        ResourcePool(object, **args)


def test_factory_must_be_callable() -> None:
    with pytest.raises(TypeError):
        ResourcePool(3, 2)  # type: ignore[arg-type]


def test_repr_name_and_properties() -> None:
    pool = make_pool(3, name="db", min_size=1)
    assert pool.name == "db" and pool.max_size == 3 and pool.min_size == 1
    assert "'db'" in repr(pool) and "size=1/3" in repr(pool)
    assert not pool.closed
    pool.close()
    assert pool.closed and "closed" in repr(pool)


def test_stats_has_every_field() -> None:
    pool = make_pool(2)
    assert {field.name for field in dataclasses.fields(pool.stats())} == {
        "size", "idle", "in_use", "waiting", "max_size", "min_size", "created", "closed",
        "acquired", "timeouts", "too_busy", "factory_errors", "check_failures", "leaks",
        "contended", "wait_total", "wait_max", "wait_p50", "wait_p99",
    }  # fmt: skip
    a = pool.acquire()
    b = pool.acquire()
    pool.release(a)
    stats = pool.stats()
    assert (stats["size"], stats["idle"], stats["in_use"]) == (2, 1, 1)
    assert (stats["created"], stats["acquired"], stats["closed"]) == (2, 2, 0)
    assert (stats["max_size"], stats["min_size"], stats["waiting"]) == (2, 0, 0)
    pool.release(b)


def test_stats_count_waits() -> None:
    pool = make_pool(1)
    held = pool.acquire()
    (waiter,) = queue_acquirers(pool, 1, give_back=True)
    pool.release(held)
    waiter.join()
    stats = pool.stats()
    assert stats["contended"] == 1
    assert stats["wait_max"] > 0 and stats["wait_total"] >= stats["wait_max"]
    assert 0 < stats["wait_p50"] <= stats["wait_p99"] <= stats["wait_max"]


# -- the cap and reuse ---------------------------------------------------------


def test_idle_resources_are_reused_most_recent_first() -> None:
    tracker = Tracker()
    pool = make_pool(3, tracker)
    a, b, c = pool.acquire(), pool.acquire(), pool.acquire()
    assert tracker.calls == 3
    pool.release(a)
    pool.release(c)
    assert pool.acquire() is c
    assert pool.acquire() is a
    assert tracker.calls == 3  # factory() only when nothing was idle
    pool.release(b)


def test_factory_runs_only_when_the_cap_allows() -> None:
    tracker = Tracker()
    pool = make_pool(2, tracker)
    held = [pool.acquire(), pool.acquire()]
    with pytest.raises(PoolTimeout):
        pool.acquire(timeout=0)
    with pytest.raises(PoolTimeout):
        pool.acquire(timeout=0.01)
    assert tracker.calls == 2
    assert pool.stats()["timeouts"] == 2
    for r in held:
        pool.release(r)


def test_threads_never_exceed_max_size() -> None:
    tracker = Tracker()
    pool = make_pool(3, tracker)
    errors: list[str] = []
    guard = threading.Lock()

    def work() -> None:
        for _ in range(300):
            with pool.lease(timeout=30) as res:
                with guard:
                    if res.owner is not None:
                        errors.append(f"{res} handed to two threads")
                    res.owner = threading.get_ident()
                time.sleep(0)
                with guard:
                    res.owner = None

    threads = [threading.Thread(target=work, daemon=True) for _ in range(12)]
    for t in threads:
        t.start()
    assert not join_all(threads, 60), "a thread is stuck"
    assert not errors
    assert tracker.max_alive <= 3
    assert pool.stats()["size"] <= 3


# -- factory failures ----------------------------------------------------------


def test_factory_error_reaches_the_caller_and_frees_the_place() -> None:
    failures = iter([True, True, True])
    tracker = Tracker(fail=lambda: next(failures, False))
    pool = make_pool(1, tracker)
    for _ in range(3):
        with pytest.raises(RuntimeError, match="factory failed"):
            pool.acquire(timeout=0)
    stats = pool.stats()
    assert (stats["factory_errors"], stats["size"]) == (3, 0)
    res = pool.acquire(timeout=0)  # the place is free: no wait, no timeout
    assert tracker.made == [res] and tracker.calls == 4
    pool.release(res)


def test_factory_error_leaves_no_waiter_stuck() -> None:
    entered, go = threading.Event(), threading.Event()
    calls = []

    def factory() -> object:
        calls.append(1)
        if len(calls) == 1:
            entered.set()
            go.wait(10)
            raise RuntimeError("factory failed")
        return object()

    pool = ResourcePool(factory, 1)
    first = Acquirer(pool, name="first").start()
    assert entered.wait(10)
    (second,) = queue_acquirers(pool, 1, timeout=10)
    go.set()
    first.join()
    second.join()
    assert isinstance(first.error, RuntimeError)
    assert second.error is None and second.result is not None


# -- check and reset -----------------------------------------------------------


def test_check_failure_closes_and_takes_another() -> None:
    tracker = Tracker()
    bad: set[int] = set()
    checked: list[int] = []

    def check(res: Res) -> bool:
        checked.append(res.n)
        if res.n == 99:
            raise OSError("connection lost")
        return res.n not in bad

    pool = make_pool(3, tracker, check=check)
    a, b = pool.acquire(), pool.acquire()
    assert checked == []  # new resources are not checked
    pool.release(a)
    pool.release(b)
    bad.add(b.n)
    assert pool.acquire() is a  # b (on top) failed its check, a passed
    assert b.closed == 1 and a.closed == 0
    assert checked == [b.n, a.n]
    stats = pool.stats()
    assert (stats["check_failures"], stats["size"], stats["closed"]) == (1, 1, 1)
    a.n = 99  # now check() raises for it
    pool.release(a)
    c = pool.acquire(timeout=0)  # a is thrown away, c made: no wait needed
    assert a.closed == 1 and c is not a
    assert pool.stats()["check_failures"] == 2
    pool.release(c)


def test_check_failures_stay_within_the_same_acquire() -> None:
    tracker = Tracker()
    pool = make_pool(3, tracker, check=lambda res: False)
    held = [pool.acquire() for _ in range(3)]
    for r in held:
        pool.release(r)
    fresh = pool.acquire(timeout=0)  # all three idle ones fail: a new one
    assert all(r.closed == 1 for r in held)
    assert fresh not in held and pool.stats()["check_failures"] == 3
    assert pool.stats()["size"] == 1
    pool.release(fresh)


def test_reset_runs_on_release_and_a_failure_discards(caplog: pytest.LogCaptureFixture) -> None:
    tracker = Tracker()
    reset_calls: list[Res] = []

    def reset(res: Res) -> None:
        reset_calls.append(res)
        if res.n == 0:
            raise RuntimeError("cannot reset")

    pool = make_pool(1, tracker, reset=reset)
    r0 = pool.acquire()
    with caplog.at_level(logging.WARNING, logger="fastsem.pool"):
        pool.release(r0)  # reset raises: not given to the caller
    assert reset_calls == [r0] and r0.closed == 1
    assert "reset() raised" in caplog.text
    r1 = pool.acquire(timeout=0)  # the place was freed
    assert r1 is not r0
    pool.release(r1)
    assert reset_calls == [r0, r1] and r1.closed == 0
    assert pool.acquire(timeout=0) is r1


# -- lifetimes -------------------------------------------------------------------


def test_max_lifetime_closes_old_resources_on_checkout(clock: FakeClock) -> None:
    tracker = Tracker()
    pool = make_pool(2, tracker, max_lifetime=10)
    a = pool.acquire()
    pool.release(a)
    clock.advance(9)
    assert pool.acquire() is a
    pool.release(a)
    clock.advance(2)  # a is now 11 s old
    b = pool.acquire()
    assert b is not a and a.closed == 1
    pool.release(b)


def test_max_lifetime_closes_on_return_and_keeps_min_size(clock: FakeClock) -> None:
    tracker = Tracker()
    pool = make_pool(3, tracker, min_size=1, max_lifetime=10)
    (first,) = tracker.made
    a = pool.acquire()
    assert a is first
    extra = pool.acquire()
    clock.advance(11)
    pool.release(extra)  # expired, and 1 is still alive: just closed
    assert extra.closed == 1 and pool.stats()["size"] == 1
    pool.release(a)  # expired, the last one: closed and replaced
    assert a.closed == 1
    stats = pool.stats()
    assert (stats["size"], stats["idle"], stats["created"]) == (1, 1, 3)
    replacement = pool.acquire()
    assert replacement not in (a, extra)
    pool.release(replacement)


def test_max_idle_closes_long_idle_resources_above_min_size(clock: FakeClock) -> None:
    tracker = Tracker()
    pool = make_pool(3, tracker, min_size=1, max_idle=5)
    (r0,) = tracker.made
    a, b, c = pool.acquire(), pool.acquire(), pool.acquire()
    assert a is r0
    pool.release(c)
    pool.release(b)
    pool.release(a)  # idle, oldest first: c, b, a
    clock.advance(4)
    assert pool.acquire() is a  # nothing idle too long yet
    pool.release(a)
    clock.advance(2)  # c and b idle 6 s; a just returned
    assert pool.acquire() is a
    assert (c.closed, b.closed) == (1, 1)
    pool.release(a)
    clock.advance(6)  # a idle 6 s too, but it is the min_size one
    assert pool.acquire() is a and a.closed == 0
    pool.release(a)


def test_min_size_is_made_at_creation() -> None:
    tracker = Tracker()
    pool = make_pool(4, tracker, min_size=2)
    assert tracker.calls == 2
    stats = pool.stats()
    assert (stats["size"], stats["idle"], stats["created"]) == (2, 2, 2)


def test_factory_error_at_creation_is_raised_and_cleans_up() -> None:
    failures = iter([False, True])
    tracker = Tracker(fail=lambda: next(failures, False))
    with pytest.raises(RuntimeError):
        make_pool(4, tracker, min_size=2)
    assert len(tracker.made) == 1 and tracker.made[0].closed == 1


# -- max_waiting -------------------------------------------------------------------


def test_max_waiting_refuses_at_once() -> None:
    pool = make_pool(1, max_waiting=2)
    held = pool.acquire()
    waiters = queue_acquirers(pool, 2, timeout=30, give_back=True)
    with pytest.raises(PoolTooBusy):
        pool.acquire(timeout=30)  # would wait 30 s (PoolTimeout) if it queued
    assert pool.stats()["too_busy"] == 1
    pool.release(held)
    for w in waiters:
        w.join()
        assert w.error is None
    pool.release(pool.acquire(timeout=0))


def test_max_waiting_zero_never_queues() -> None:
    pool = make_pool(1, max_waiting=0)
    held = pool.acquire(timeout=5)  # a free place: no waiting involved
    with pytest.raises(PoolTooBusy):
        pool.acquire(timeout=30)
    pool.release(held)


# -- leaks -------------------------------------------------------------------------


def take_and_keep(pool: ResourcePool[Res]) -> Res:
    return pool.acquire()


def test_leak_is_reported_once_with_the_acquiring_stack(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    pool = make_pool(2, leak_timeout=5)
    with caplog.at_level(logging.WARNING, logger="fastsem.pool"):
        kept = take_and_keep(pool)
        clock.advance(4)
        assert pool.stats()["leaks"] == 0
        clock.advance(2)
        assert pool.stats()["leaks"] == 1
        assert pool.stats()["leaks"] == 1  # once per lease
    (record,) = [r for r in caplog.records if r.name == "fastsem.pool"]
    message = record.getMessage()
    assert "take_and_keep" in message and "leak_timeout" in message
    assert "test_leak_is_reported_once_with_the_acquiring_stack" in message
    assert pool.stats()["in_use"] == 1  # not taken away
    pool.release(kept)
    assert pool.stats()["leaks"] == 1


def test_leak_is_reported_by_the_next_acquire_or_its_release(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    pool = make_pool(3, leak_timeout=5)
    with caplog.at_level(logging.WARNING, logger="fastsem.pool"):
        first = pool.acquire()
        clock.advance(6)
        second = pool.acquire()  # reports `first`
        assert len(caplog.records) == 1
        clock.advance(6)
        pool.release(second)  # reports `second`, being returned late
        assert len(caplog.records) == 2
        pool.release(first)  # already reported
        third = pool.acquire()
        clock.advance(1)
        pool.release(third)  # in time
        assert pool.stats()["leaks"] == 2 and len(caplog.records) == 2
        fourth = pool.acquire()
        clock.advance(6)
        pool.discard(fourth)  # thrown away late: reported too
    assert pool.stats()["leaks"] == 3 and len(caplog.records) == 3


# -- release and discard -------------------------------------------------------------


def test_release_or_discard_of_a_stranger_raises_and_changes_nothing() -> None:
    pool = make_pool(2)
    other = make_pool(2)
    res = pool.acquire()
    foreign = other.acquire()
    before = pool.stats()
    for bad in [object(), foreign, None]:
        with pytest.raises(ValueError):
            pool.release(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            pool.discard(bad)  # type: ignore[arg-type]
    assert pool.stats() == before
    pool.release(res)
    after = pool.stats()
    with pytest.raises(ValueError):
        pool.release(res)  # twice
    with pytest.raises(ValueError):
        pool.discard(res)
    assert pool.stats() == after
    assert res.closed == 0
    other.release(foreign)


def test_discard_closes_and_frees_the_place() -> None:
    tracker = Tracker()
    pool = make_pool(1, tracker)
    res = pool.acquire()
    pool.discard(res)
    assert res.closed == 1 and pool.stats()["size"] == 0
    with pytest.raises(ValueError):
        pool.discard(res)
    fresh = pool.acquire(timeout=0)
    assert fresh is not res
    pool.release(fresh)


def test_discard_keeps_min_size() -> None:
    tracker = Tracker()
    pool = make_pool(2, tracker, min_size=1)
    res = pool.acquire()
    pool.discard(res)
    stats = pool.stats()
    assert (stats["size"], stats["idle"], stats["created"]) == (1, 1, 2)


def test_close_callback_errors_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    def close(res: object) -> None:
        raise OSError("already gone")

    pool = ResourcePool(object, 1, close=close)
    res = pool.acquire()
    with caplog.at_level(logging.WARNING, logger="fastsem.pool"):
        pool.discard(res)
    assert "close() raised" in caplog.text
    assert pool.stats()["size"] == 0
    pool.release(pool.acquire(timeout=0))


# -- lease and timeouts ----------------------------------------------------------


def test_lease_releases_even_when_the_block_raises() -> None:
    pool = make_pool(1)
    with pool.lease() as res:
        assert pool.stats()["in_use"] == 1
    assert pool.stats()["idle"] == 1
    seen = []

    def fails_inside() -> None:
        with pool.lease() as again:
            seen.append(again)
            raise KeyError("boom")

    with pytest.raises(KeyError):
        fails_inside()
    assert seen == [res]
    assert pool.stats()["idle"] == 1 and pool.stats()["in_use"] == 0
    with pool.lease() as broken:
        pool.discard(broken)  # nothing left to give back on exit
    assert broken.closed == 1 and pool.stats()["size"] == 0


def test_lease_times_out() -> None:
    pool = make_pool(1)
    held = pool.acquire()
    with pytest.raises(PoolTimeout), pool.lease(timeout=0.01):
        pass
    pool.release(held)


def test_timeout_left_out_means_the_pools_none_means_forever() -> None:
    pool = make_pool(1, timeout=0.01)
    held = pool.acquire()
    with pytest.raises(PoolTimeout):
        pool.acquire()  # the pool's 0.01 s
    (patient,) = queue_acquirers(pool, 1, timeout=None)
    assert not patient.done.wait(0.1)  # ten times the pool's timeout
    pool.release(held)
    patient.join()
    assert patient.error is None and patient.result is held


def test_a_timed_out_waiter_takes_nothing() -> None:
    tracker = Tracker()
    pool = make_pool(1, tracker)
    held = pool.acquire()
    with pytest.raises(PoolTimeout):
        pool.acquire(timeout=0.01)
    pool.release(held)
    assert pool.acquire(timeout=0) is held
    assert tracker.calls == 1
    pool.release(held)


# -- fairness --------------------------------------------------------------------


def test_checkout_order_is_arrival_order() -> None:
    # Twelve callers queue one by one behind a held resource. Each, once
    # served, logs its number, returns the resource and at once asks again,
    # with a queue still in front of it: in a fair pool that second request
    # must not overtake anyone, so the first twelve checkouts are 0..11 in
    # order. (A non-fair pool lets the returning thread barge in.)
    pool = make_pool(1)
    held = pool.acquire()
    log: list[object] = []

    def twice(me: Acquirer) -> None:
        res = me.result
        pool.release(res)
        res = pool.acquire(timeout=30)
        log.append(me.name)
        pool.release(res)

    waiters = queue_acquirers(pool, 12, log=log, timeout=30)
    for w in waiters:
        w.then = twice
    pool.release(held)
    for w in waiters:
        w.join()
        assert w.error is None
    assert log[:12] == list(range(12))
    assert sorted(log[12:]) == list(range(12))


def test_non_fair_pool_serves_everyone() -> None:
    tracker = Tracker()
    pool = make_pool(2, tracker, fair=False)
    done = []

    def work() -> None:
        for _ in range(200):
            with pool.lease(timeout=30):
                pass
        done.append(1)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    assert not join_all(threads, 60), "a thread is stuck"
    assert len(done) == 8 and tracker.max_alive <= 2


# -- close -----------------------------------------------------------------------


def test_close_wakes_waiters_and_refuses_new_acquires() -> None:
    tracker = Tracker()
    pool = make_pool(2, tracker)
    held, other = pool.acquire(), pool.acquire()
    waiters = queue_acquirers(pool, 3, timeout=None)
    assert pool.close() is False  # `held` and `other` still out
    for w in waiters:
        w.join()
        assert isinstance(w.error, PoolClosed)
    with pytest.raises(PoolClosed):
        pool.acquire(timeout=0)
    with pytest.raises(PoolClosed), pool.lease():
        pass
    with pytest.raises(PoolClosed):
        pool.resize(max_size=5)
    assert held.closed == 0 and other.closed == 0
    pool.release(held)  # closed when returned
    pool.discard(other)
    assert held.closed == 1 and other.closed == 1
    assert all(r.closed == 1 for r in tracker.made)
    assert pool.close() is True  # idempotent
    stats = pool.stats()
    assert stats["size"] == 0 and stats["closed"] == stats["created"]


def test_close_closes_idle_resources_now() -> None:
    tracker = Tracker()
    pool = make_pool(3, tracker, min_size=3)
    assert pool.close() is True
    assert [r.closed for r in tracker.made] == [1, 1, 1]


def test_close_with_timeout_waits_for_resources_in_use() -> None:
    tracker = Tracker()
    pool = make_pool(2, tracker)
    res = pool.acquire()

    def give_back_after_close() -> None:
        wait_until(lambda: pool.closed, what="close()")
        pool.release(res)

    helper = threading.Thread(target=give_back_after_close, daemon=True)
    helper.start()
    assert pool.close(timeout=30) is True
    helper.join(10)
    assert res.closed == 1


def test_close_with_timeout_gives_up() -> None:
    pool = make_pool(1)
    res = pool.acquire()
    assert pool.close(timeout=0.01) is False
    pool.release(res)
    assert res.closed == 1 and pool.close(timeout=0.01) is True


def test_a_resource_being_made_during_close_is_closed() -> None:
    entered, go = threading.Event(), threading.Event()
    tracker = Tracker()

    def factory() -> Res:
        entered.set()
        go.wait(10)
        return tracker.factory()

    pool = ResourcePool(factory, 1, close=tracker.close)
    maker = Acquirer(pool, name="maker").start()
    assert entered.wait(10)
    assert pool.close() is False
    go.set()
    maker.join()
    assert isinstance(maker.error, PoolClosed)
    assert [r.closed for r in tracker.made] == [1]
    assert pool.close(timeout=10) is True


def test_context_manager_closes() -> None:
    tracker = Tracker()
    with make_pool(2, tracker) as pool, pool.lease():
        pass
    assert pool.closed and [r.closed for r in tracker.made] == [1]


# -- resize ----------------------------------------------------------------------


def test_growing_wakes_waiters_in_order() -> None:
    pool = make_pool(1)
    held = pool.acquire()
    waiters = queue_acquirers(pool, 3, timeout=30)
    pool.resize(max_size=2)
    waiters[0].join()
    assert waiters[0].error is None
    assert not waiters[1].done.is_set() and not waiters[2].done.is_set()
    pool.resize(max_size=3)
    waiters[1].join()
    assert not waiters[2].done.is_set()
    assert pool.max_size == 3 and pool.stats()["max_size"] == 3
    pool.release(held)
    waiters[2].join()
    assert all(w.error is None for w in waiters)
    assert len({id(w.result) for w in waiters}) == 3


def test_shrinking_closes_idle_now_and_drains_in_use() -> None:
    tracker = Tracker()
    pool = make_pool(4, tracker)
    a, b, c, d = (pool.acquire() for _ in range(4))
    pool.release(c)
    pool.release(d)
    pool.resize(max_size=2)
    assert (c.closed, d.closed) == (1, 1)  # idle ones: closed now
    assert pool.stats()["size"] == 2
    pool.resize(max_size=1)
    assert pool.stats()["size"] == 2  # both in use: they drain
    pool.release(a)
    assert a.closed == 1 and pool.stats()["size"] == 1
    pool.release(b)
    assert b.closed == 0 and pool.stats()["idle"] == 1
    assert pool.acquire(timeout=0) is b
    with pytest.raises(PoolTimeout):
        pool.acquire(timeout=0)
    pool.release(b)
    assert tracker.max_alive <= 4


def test_shrinking_never_lets_a_resource_be_made_past_the_bound() -> None:
    # A resource that resize() takes off the idle stack counts until its
    # close() returns: nobody makes a new one in its place before.
    tracker = Tracker()
    closing, finish = threading.Event(), threading.Event()
    alive_when_made: list[int] = []

    def factory() -> Res:
        res = tracker.factory()
        alive_when_made.append(tracker.alive)
        return res

    def slow_close(res: Res) -> None:
        if res.n == 2:  # c, below
            closing.set()
            finish.wait(10)
        tracker.close(res)

    pool = ResourcePool(factory, 3, close=slow_close)
    a, b, c = pool.acquire(), pool.acquire(), pool.acquire()
    pool.release(c)
    pool.release(b)  # idle, oldest first: c, b
    shrinker = threading.Thread(target=pool.resize, kwargs={"max_size": 2}, daemon=True)
    shrinker.start()
    assert closing.wait(10)  # c is being closed, and counted
    assert pool.acquire(timeout=0) is b
    pool.release(a)  # 3 alive (c, b, a) > 2: a is closed, its place freed
    assert a.closed == 1
    (maker,) = queue_acquirers(pool, 1, timeout=30)  # waits for c to be closed
    assert alive_when_made == [1, 2, 3]
    finish.set()
    maker.join()
    shrinker.join(10)
    assert maker.error is None and alive_when_made == [1, 2, 3, 2]
    pool.release(b)
    pool.release(maker.result)


def test_resize_min_size_makes_resources_now_and_checks_arguments() -> None:
    tracker = Tracker()
    pool = make_pool(4, tracker)
    pool.resize(min_size=3)
    assert pool.min_size == 3 and pool.stats()["idle"] == 3
    for bad in [{"max_size": 0}, {"min_size": 5}, {"min_size": -1}, {"max_size": 2}]:
        with pytest.raises(ValueError):
            pool.resize(**bad)
    assert (pool.max_size, pool.min_size) == (4, 3)


# -- stress ----------------------------------------------------------------------


def run_workers(
    pool: ResourcePool[Res], threads: int, seconds: float, rng_seed: int, stop_early: bool = False
) -> tuple[list[str], list[threading.Thread]]:
    """threads workers for `seconds`, each looping: acquire with a random
    timeout (or lease), use the resource alone, release or discard it."""
    violations: list[str] = []
    guard = threading.Lock()
    stop = threading.Event()
    timeouts = (0, 0.0002, 0.002, 0.02, None, None)

    def worker(index: int) -> None:
        rng = random.Random(rng_seed * 1000 + index)
        while not stop.is_set():
            timeout = rng.choice(timeouts)
            try:
                if rng.random() < 0.2:
                    with pool.lease(timeout=timeout) as res:
                        use(res, rng)
                    continue
                res = pool.acquire(timeout=timeout)
            except (PoolTimeout, RuntimeError):
                continue
            except PoolClosed:
                return
            use(res, rng)
            if rng.random() < 0.1:
                pool.discard(res)
            else:
                pool.release(res)

    def use(res: Res, rng: random.Random) -> None:
        with guard:
            if res.owner is not None:
                violations.append(f"{res} held by two threads")
            if res.closed:
                violations.append(f"{res} handed out after it was closed")
            res.owner = threading.get_ident()
        if rng.random() < 0.3:
            time.sleep(rng.choice((0, 0.0001, 0.0005)))
        with guard:
            res.owner = None

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in workers:
        t.start()
    if not stop_early:
        time.sleep(seconds)
        stop.set()
    return violations, workers


def join_all(threads: list[threading.Thread], timeout: float = 30.0) -> list[threading.Thread]:
    """Joins every thread within one overall timeout; returns those still alive."""
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [t for t in threads if t.is_alive()]


def flaky_tracker(seed: int, p: float = 0.1) -> Tracker:
    rng = random.Random(seed)
    return Tracker(fail=lambda: rng.random() < p)  # called under the tracker's lock


@pytest.mark.slow
@pytest.mark.parametrize("fair", [True, False], ids=["fair", "nonfair"])
def test_stress_invariants(fair: bool) -> None:
    max_size = 4
    tracker = flaky_tracker(1)
    check_rng = random.Random(2)
    check_lock = threading.Lock()

    def check(res: Res) -> bool:
        with check_lock:
            return check_rng.random() >= 0.1

    pool = make_pool(max_size, tracker, min_size=1, check=check, fair=fair)
    violations, workers = run_workers(pool, 32, SECONDS, rng_seed=3)
    assert not join_all(workers), "a waiter is stuck"
    assert not violations, violations[:5]
    assert tracker.max_alive <= max_size
    stats = pool.stats()
    assert stats["in_use"] == 0 and stats["waiting"] == 0
    assert stats["size"] == stats["idle"] == tracker.alive
    assert stats["factory_errors"] > 0 and stats["check_failures"] > 0
    assert pool.close(timeout=10) is True
    assert tracker.made and all(r.closed == 1 for r in tracker.made)
    assert tracker.alive == 0
    stats = pool.stats()
    assert stats["created"] == stats["closed"] == len(tracker.made)


@pytest.mark.slow
def test_stress_close_while_busy() -> None:
    max_size = 4
    tracker = flaky_tracker(4)
    pool = make_pool(max_size, tracker, min_size=2)
    violations, workers = run_workers(pool, 32, SECONDS, rng_seed=5, stop_early=True)
    time.sleep(SECONDS / 2)
    wait_until(lambda: waiting(pool) > 0, what="workers queued at the pool")  # busy
    pool.close()
    assert not join_all(workers), "a waiter is stuck after close()"
    assert not violations, violations[:5]
    assert pool.close(timeout=10) is True
    assert tracker.max_alive <= max_size
    assert all(r.closed == 1 for r in tracker.made) and tracker.alive == 0


@pytest.mark.slow
def test_stress_resize_while_busy() -> None:
    tracker = flaky_tracker(6, p=0.02)
    pool = make_pool(3, tracker)
    violations, workers = run_workers(pool, 16, SECONDS, rng_seed=7, stop_early=True)
    rng = random.Random(8)
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        pool.resize(max_size=rng.randint(1, 5))
        time.sleep(0.002)
    pool.resize(max_size=2)
    # Workers stop at close(); until then each returned resource past the
    # bound is closed, so at most 5 ever lived, and the pool drains to the
    # new bound while they work, and stays within it.
    wait_until(lambda: pool.stats()["size"] <= 2, what="the pool to drain to max_size=2")
    for _ in range(100):
        assert pool.stats()["size"] <= 2
        time.sleep(0.001)
    pool.close()
    assert not join_all(workers), "a waiter is stuck"
    assert not violations, violations[:5]
    assert tracker.max_alive <= 5
    assert pool.close(timeout=10) is True
    assert all(r.closed == 1 for r in tracker.made)


def test_shrink_then_drain_leaves_at_most_the_new_bound() -> None:
    tracker = Tracker()
    pool = make_pool(6, tracker)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(200):
                with pool.lease(timeout=30):
                    time.sleep(0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(10)]
    for t in threads:
        t.start()
    pool.resize(max_size=2)
    assert not join_all(threads, 60), "a thread is stuck"
    assert not errors
    stats = pool.stats()
    assert stats["size"] <= 2 and stats["in_use"] == 0
    assert tracker.alive == stats["size"]


# -- a real resource: sqlite3 --------------------------------------------------------


def test_sqlite_connections_shared_by_threads(tmp_path: Path) -> None:
    path = tmp_path / "pool.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE rows (thread INTEGER, n INTEGER, PRIMARY KEY (thread, n))")
    setup.close()
    opened: list[sqlite3.Connection] = []

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=60, check_same_thread=False)
        opened.append(conn)
        return conn

    def alive(conn: sqlite3.Connection) -> bool:
        conn.execute("SELECT 1").fetchone()
        return True

    threads_n, rows_n = 12, 40
    errors: list[BaseException] = []
    with ResourcePool(
        connect,
        4,
        min_size=1,
        close=sqlite3.Connection.close,
        check=alive,
        reset=sqlite3.Connection.rollback,
        name="sqlite",
    ) as pool:

        def writer(thread: int) -> None:
            try:
                for n in range(rows_n):
                    with pool.lease(timeout=60) as conn:
                        conn.execute("INSERT INTO rows VALUES (?, ?)", (thread, n))
                        conn.commit()
            except BaseException as exc:
                errors.append(exc)

        workers = [
            threading.Thread(target=writer, args=(i,), daemon=True) for i in range(threads_n)
        ]
        for t in workers:
            t.start()
        assert not join_all(workers, 120), "a writer is stuck"
        assert not errors, errors[:3]
        assert len(opened) <= 4
    assert pool.close(timeout=10) is True
    for conn in opened:  # every connection was closed by the pool
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    with sqlite3.connect(path) as check_db:
        rows = set(check_db.execute("SELECT thread, n FROM rows"))
    check_db.close()
    assert rows == {(t, n) for t in range(threads_n) for n in range(rows_n)}
