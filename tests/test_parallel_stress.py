"""Many threads released at once by a threading.Barrier, each hammering one
object with every operation it has, then the invariants checked at the end:
permits and resources conserved, the counters exact, and no exception that
the API does not document.

Written for free-threaded builds, where the threads really run at the same
instant; on a GIL build the same tests run at smaller sizes (the GIL's
switches still interleave them, at coarser points). FASTSEM_PARALLEL_ROUNDS
sets the operations per thread (the default: 1000 without a GIL, 60 with).
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from collections import Counter
from typing import Any, Callable

import pytest
from conftest import FREE_THREADED

from fastsem import PoolClosed, PoolTimeout, PoolTooBusy, ResourcePool, SemaphoreClosed

THREADS = 8
ROUNDS = int(os.environ.get("FASTSEM_PARALLEL_ROUNDS", "1000" if FREE_THREADED else "60"))
VALUE = 4
JOIN_SECONDS = 60.0  # for all the threads together: then one is stuck

pytestmark = pytest.mark.slow


class Crew:
    """THREADS threads that start their work together on a barrier; run()
    joins them and re-raises the first unexpected exception of any."""

    def __init__(self, work: Callable[[int, random.Random], None], threads: int = THREADS) -> None:
        self.barrier = threading.Barrier(threads)
        self.errors: list[BaseException] = []
        self._work = work
        self.threads = [
            threading.Thread(target=self._run, args=(i,), name=f"crew-{i}") for i in range(threads)
        ]

    def _run(self, index: int) -> None:
        try:
            self.barrier.wait(JOIN_SECONDS)
            self._work(index, random.Random(index))
        except BaseException as exc:  # reported by run()
            self.errors.append(exc)
            self.barrier.abort()

    def run(self) -> None:
        for t in self.threads:
            t.start()
        deadline = time.monotonic() + JOIN_SECONDS
        for t in self.threads:
            t.join(max(deadline - time.monotonic(), 0))
        assert not any(t.is_alive() for t in self.threads), "a thread is stuck"
        if self.errors:
            raise self.errors[0]


class Tally:
    """Per-thread counts, summed at the end (no lock: each thread has its own)."""

    def __init__(self) -> None:
        self.by_thread: dict[int, Counter[str]] = {}

    def __call__(self, index: int) -> Counter[str]:
        return self.by_thread.setdefault(index, Counter())

    def total(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self.by_thread.values():
            total.update(counts)
        return total


def check_statistics(stats: Any) -> None:
    """What holds in any snapshot, however busy the semaphore."""
    assert stats.contended <= stats.acquisitions
    assert stats.waiting >= 0 and stats.max_waiting >= 0
    assert stats.timeouts >= 0 and stats.interrupts >= 0
    assert 0 <= stats.wait_p50 <= stats.wait_p90 <= stats.wait_p99 <= stats.wait_max
    assert stats.wait_max <= stats.wait_total or stats.contended == 0


# -- Semaphore and BoundedSemaphore ------------------------------------------


@pytest.mark.parametrize("track", [False, True], ids=["plain", "tracked"])
@pytest.mark.parametrize("fair", [True, False], ids=["fair", "nonfair"])
@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore"])
def test_semaphore_under_every_operation_at_once(impl, kind, fair, track):
    bounded = kind == "BoundedSemaphore"
    sem = getattr(impl, kind)(VALUE, fair=fair, track_holders=track)
    tally = Tally()
    bad_holders: list[str] = []

    def held_by_me_in_records() -> int:
        me = threading.get_ident()
        return sum(h.permits for h in sem.holders() if h.thread_id == me)

    def work(index: int, rng: random.Random) -> None:
        counts = tally(index)
        held = 0  # permits this thread holds now
        for _ in range(ROUNDS):
            n = rng.choice((1, 1, 1, 2, 3))
            op = rng.randrange(12)
            if held and op in (0, 3, 4, 5):
                # A thread that holds permits and waits for more can wait
                # forever (all of them held by threads doing the same).
                sem.release(held)
                held = 0
            try:
                if op == 0:
                    got = sem.acquire(n=n)
                elif op == 1:
                    got = sem.acquire(timeout=rng.choice((0.0, 0.0001, 0.001)), n=n)
                    counts["timeouts"] += not got
                elif op == 2:
                    got = sem.acquire(False, n=n)
                elif op == 3:
                    got = sem.acquire(timeout=30, n=n)
                elif op == 4:
                    with sem:
                        counts["acquired"] += 1
                    continue
                elif op == 5:
                    try:
                        with sem.hold(rng.choice((None, 0.001)), n=n):
                            counts["acquired"] += 1
                    except TimeoutError:
                        counts["timeouts"] += 1
                    continue
                elif op == 6:
                    held += sem.drain()
                    got = False
                elif op == 7:
                    check_statistics(sem.statistics())
                    got = False
                elif op == 8 and track:
                    # Each thread releases only what it took, and a release
                    # is charged to the releasing thread's own records first:
                    # its own records are its permits, exactly.
                    if held_by_me_in_records() != held:
                        bad_holders.append(f"{held_by_me_in_records()} recorded, {held} held")
                    got = False
                elif op == 9 and bounded:
                    # Lower or raise the bound for a moment: a waiter for more
                    # than a lowered bound raises ValueError (documented).
                    sem.resize(rng.randrange(max(VALUE - 2, 1), VALUE + 3))
                    got = False
                else:
                    got = False
                    _ = (sem.value, sem.waiting, repr(sem))
            except ValueError as exc:
                if not (bounded and "bounded at" in str(exc)):
                    raise  # only a lowered bound may refuse a request
                counts["refused"] += 1
                got = False
            if got:
                counts["acquired"] += 1
                held += n
            # Give back some or all of what is held, in one or two calls.
            if held and rng.random() < 0.7:
                give = rng.randint(1, held)
                sem.release(give)
                held -= give
        if held:
            sem.release(held)

    Crew(work).run()
    if bounded:
        sem.resize(VALUE)
    totals = tally.total()
    stats = sem.statistics()
    check_statistics(stats)
    assert bad_holders == []
    assert sem.value == VALUE, "permits lost or made up"
    assert sem.waiting == 0 and stats.waiting == 0
    assert stats.acquisitions == totals["acquired"]
    assert stats.timeouts == totals["timeouts"]
    assert stats.interrupts == 0
    assert stats.contended <= stats.acquisitions
    if track:
        assert sem.holders() == []


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "nonfair"])
@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore"])
def test_close_in_the_middle_of_everything(impl, kind, fair):
    # One thread closes the semaphore halfway through; from then on acquires
    # raise SemaphoreClosed (waiters included) and releases still work.
    sem = getattr(impl, kind)(VALUE, fair=fair, track_holders=True)
    tally = Tally()

    def work(index: int, rng: random.Random) -> None:
        counts = tally(index)
        held = 0
        for round_ in range(ROUNDS):
            if index == 0 and round_ == ROUNDS // 2:
                sem.close()
            n = rng.choice((1, 2))
            if held:  # never wait while holding (see the test above)
                sem.release(held)
                held = 0
            try:
                if rng.random() < 0.5:
                    got = sem.acquire(timeout=rng.choice((0.001, 30)), n=n)
                    counts["timeouts"] += not got
                else:
                    got = sem.acquire(n=n)
            except SemaphoreClosed:
                counts["closed"] += 1
                assert sem.closed
                got = False
            if got:
                counts["acquired"] += 1
                held += n
        if held:
            sem.release(held)

    Crew(work).run()
    totals = tally.total()
    stats = sem.statistics()
    assert sem.closed and totals["closed"] > 0
    assert sem.value == VALUE and sem.waiting == 0
    assert stats.acquisitions == totals["acquired"]
    assert stats.timeouts == totals["timeouts"]
    assert sem.holders() == []


# -- ResourcePool ------------------------------------------------------------


class Broken(Exception):
    """What the test's factory, check and reset raise on purpose."""


class Resources:
    """The factory, check, reset and close of a pool under test, counting
    what they did (under their own lock: several threads call them)."""

    def __init__(self, seed: int) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._ids = itertools.count()
        self.made: set[int] = set()
        self.closed: Counter[int] = Counter()
        self.factory_errors = 0
        self.check_failures = 0
        self.in_use: set[int] = set()
        self.double_checkouts: list[int] = []

    def _roll(self) -> float:
        with self._lock:
            return self._rng.random()

    def factory(self) -> list[int]:
        if self._roll() < 0.05:
            with self._lock:
                self.factory_errors += 1
            raise Broken("factory")
        with self._lock:
            resource = [next(self._ids)]
            self.made.add(resource[0])
        return resource

    def check(self, resource: list[int]) -> bool:
        roll = self._roll()
        if roll < 0.05:
            with self._lock:
                self.check_failures += 1
            raise Broken("check")
        if roll < 0.1:
            with self._lock:
                self.check_failures += 1
            return False
        return True

    def reset(self, resource: list[int]) -> None:
        if self._roll() < 0.05:
            raise Broken("reset")

    def close(self, resource: list[int]) -> None:
        with self._lock:
            self.closed[resource[0]] += 1

    def take(self, resource: list[int]) -> None:
        with self._lock:
            if resource[0] in self.in_use:
                self.double_checkouts.append(resource[0])
            self.in_use.add(resource[0])

    def give(self, resource: list[int]) -> None:
        with self._lock:
            self.in_use.discard(resource[0])


def make_pool(impl: Any, resources: Resources, **kwargs: Any) -> ResourcePool[list[int]]:
    class Pool(ResourcePool):  # type: ignore[type-arg]
        # The places are counted by this implementation's BoundedSemaphore
        # (a subclass, not a monkeypatch: the test may run in several
        # threads at once under pytest-run-parallel).
        _semaphore_type = impl.BoundedSemaphore

    return Pool(
        resources.factory,
        VALUE,
        min_size=1,
        close=resources.close,
        check=resources.check,
        reset=resources.reset,
        **kwargs,
    )


def silence_pool_log() -> Callable[[], None]:
    # reset() and close() failures are logged as warnings by design; the
    # test counts them itself. A filter on the logger (not its level, which
    # another test may set) keeps them out of the output.
    import logging

    logger = logging.getLogger("fastsem.pool")

    def drop(record: logging.LogRecord) -> bool:
        return False

    logger.addFilter(drop)
    return lambda: logger.removeFilter(drop)


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "nonfair"])
def test_pool_under_every_operation_at_once(impl, fair):
    resources = Resources(seed=1)
    pool = make_pool(impl, resources, fair=fair, max_waiting=THREADS - 2, timeout=30)
    tally = Tally()
    unsilence = silence_pool_log()

    def use(counts: Counter[str], resource: list[int], rng: random.Random) -> None:
        resources.take(resource)
        counts["acquired"] += 1
        sum(range(rng.randrange(30)))  # a little work while holding it
        resources.give(resource)

    def work(index: int, rng: random.Random) -> None:
        counts = tally(index)
        for _ in range(ROUNDS):
            op = rng.randrange(10)
            try:
                if op <= 2:
                    resource = pool.acquire(rng.choice((0.0, 0.001, 30)))
                    use(counts, resource, rng)
                    if rng.random() < 0.15:
                        pool.discard(resource)
                    else:
                        pool.release(resource)
                elif op <= 4:
                    with pool.lease(rng.choice((None, 0.001))) as resource:
                        use(counts, resource, rng)
                elif op == 5:
                    new_max = rng.randrange(2, VALUE + 3)
                    pool.resize(max_size=new_max, min_size=rng.randrange(0, 2))
                elif op == 6:
                    stats = pool.stats()
                    assert stats.in_use <= stats.size and stats.idle <= stats.size
                else:
                    _ = (pool.stats().size, repr(pool), pool.max_size, pool.min_size)
            except PoolTimeout:
                counts["timeouts"] += 1
            except PoolTooBusy:
                counts["too_busy"] += 1
            except Broken as exc:
                if str(exc) != "factory":
                    raise  # check() and reset() failures are the pool's to handle

    try:
        Crew(work).run()
        for _ in range(100):  # its min_size may meet a factory error: again
            try:
                pool.resize(max_size=VALUE, min_size=1)
                break
            except Broken:
                pass
        totals = tally.total()
        stats = pool.stats()
        assert resources.double_checkouts == [], "one resource handed to two callers"
        assert stats.in_use == 0 and stats.waiting == 0
        assert stats.size == stats.idle <= VALUE
        assert pool._sem.value == VALUE, "places lost or made up"
        assert stats.acquired == totals["acquired"]
        assert stats.timeouts == totals["timeouts"]
        assert stats.too_busy == totals["too_busy"]
        assert stats.factory_errors == resources.factory_errors
        assert stats.check_failures == resources.check_failures
        assert stats.created == len(resources.made)
        assert stats.closed == sum(resources.closed.values())
        assert stats.created - stats.closed == stats.size
        assert pool.close(timeout=10)
        assert sorted(resources.closed) == sorted(resources.made)
        assert set(resources.closed.values()) <= {1}, "a resource closed twice"
    finally:
        pool.close()
        unsilence()


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "nonfair"])
def test_pool_closed_in_the_middle_of_everything(impl, fair):
    resources = Resources(seed=2)
    pool = make_pool(impl, resources, fair=fair, timeout=30)
    tally = Tally()
    unsilence = silence_pool_log()

    def work(index: int, rng: random.Random) -> None:
        counts = tally(index)
        for round_ in range(ROUNDS):
            if index == 0 and round_ == ROUNDS // 2:
                pool.close()
            try:
                if rng.random() < 0.5:
                    resource = pool.acquire(rng.choice((0.001, 30)))
                    resources.take(resource)
                    resources.give(resource)
                    counts["acquired"] += 1
                    if rng.random() < 0.2:
                        pool.discard(resource)
                    else:
                        pool.release(resource)
                else:
                    with pool.lease() as resource:
                        counts["acquired"] += 1
            except PoolTimeout:
                counts["timeouts"] += 1
            except PoolClosed:
                counts["closed"] += 1
                assert pool.closed
            except Broken as exc:
                if str(exc) != "factory":
                    raise

    try:
        Crew(work).run()
        totals = tally.total()
        assert pool.close(timeout=10), "resources left alive after close"
        stats = pool.stats()
        assert totals["closed"] > 0
        assert resources.double_checkouts == []
        assert stats.size == stats.idle == stats.in_use == stats.waiting == 0
        assert stats.acquired == totals["acquired"]
        assert stats.timeouts == totals["timeouts"]
        assert sorted(resources.closed) == sorted(resources.made)
        assert set(resources.closed.values()) <= {1}, "a resource closed twice"
    finally:
        unsilence()


def test_the_crew_really_starts_together():
    # The barrier releases every thread at once: all of them are past it
    # before any has finished a long first step.
    inside = threading.Event()
    arrived: list[int] = []
    lock = threading.Lock()

    def work(index: int, rng: random.Random) -> None:
        with lock:
            arrived.append(index)
            if len(arrived) == THREADS:
                inside.set()
        assert inside.wait(30)

    Crew(work).run()
    assert sorted(arrived) == list(range(THREADS))


def test_an_unexpected_exception_in_one_thread_fails_the_run():
    def work(index: int, rng: random.Random) -> None:
        if index == 3:
            raise KeyError("unexpected")

    with pytest.raises(KeyError):
        Crew(work).run()
