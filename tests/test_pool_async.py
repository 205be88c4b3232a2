"""fastsem.ResourcePool from asyncio tasks: async_acquire() and async_lease().

Each test runs on a pool built on the C and on the pure-Python
BoundedSemaphore (test_pool's autouse fixture, imported below). Tasks wait
for a place in the semaphore's one FIFO queue, the threads' queue, so the
tests mix the two and check the order; cancellation may land at any await,
and whatever lands, the pool's invariants hold afterwards: no place and no
resource lost or handed out twice.

A test that needs a task queued waits until stats()["waiting"] shows it,
never sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable
from typing import Any, Callable, TypeVar

import injection
import pytest
from injection import Injector, every_point
from test_exception_safety import POOL_CODE, World, check_pool
from test_pool import (
    SECONDS,
    Acquirer,
    Res,
    Tracker,
    _semaphore_implementation,  # noqa: F401  # autouse: the pool's semaphore is impl's
    join_all,
    make_pool,
    queue_acquirers,
    waiting,
)

from fastsem import PoolClosed, PoolTimeout, PoolTooBusy, ResourcePool

R = TypeVar("R")

PATIENCE = 30.0  # a test stuck this long has failed


def run(coro: Awaitable[R]) -> R:
    """Runs coro in a new event loop; a hang fails the test instead."""

    async def bounded() -> R:
        return await asyncio.wait_for(coro, PATIENCE)

    return asyncio.run(bounded())


async def until(predicate: Callable[[], bool], what: str = "condition") -> None:
    """Polls predicate, yielding to the loop, until true (or fails the test:
    with an AssertionError, an Exception, as a task's failure should be;
    pytest.fail() raises a BaseException, which asyncio does not expect
    from a task)."""
    deadline = time.monotonic() + 10.0
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.0005)


def places_free(pool: ResourcePool[Any]) -> int:
    """The pool's free places: its semaphore's value."""
    return int(pool._sem.value)


def check_idle_invariants(pool: ResourcePool[Any], tracker: Tracker) -> None:
    """Nothing checked out, nobody waiting, every place free, every live
    resource idle; then close() closes each resource exactly once."""
    stats = pool.stats()
    assert stats.in_use == 0 and stats.waiting == 0
    assert places_free(pool) == pool.max_size
    assert stats.size == stats.idle == tracker.alive
    assert tracker.max_alive <= pool.max_size
    assert pool.close(timeout=10) is True
    assert all(r.closed == 1 for r in tracker.made)
    assert tracker.alive == 0


# -- the API ---------------------------------------------------------------------


def test_async_acquire_and_release() -> None:
    tracker = Tracker()
    pool = make_pool(2, tracker)

    async def main() -> None:
        a = await pool.async_acquire()
        b = await pool.async_acquire(timeout=1)
        assert a is not b and pool.stats().in_use == 2
        pool.release(a)
        assert await pool.async_acquire() is a  # the idle one is reused
        pool.release(a)
        pool.discard(b)

    run(main())
    assert tracker.made[1].closed == 1
    check_idle_invariants(pool, tracker)


def test_async_lease() -> None:
    tracker = Tracker()
    pool = make_pool(1, tracker)

    async def main() -> None:
        lease = pool.async_lease(timeout=1)
        async with lease as res:
            assert isinstance(res, Res) and pool.stats().in_use == 1
        assert pool.stats().in_use == 0
        with pytest.raises(RuntimeError, match="async_lease"):
            async with lease:
                pass
        with pytest.raises(KeyError):
            async with pool.async_lease():
                raise KeyError("the block raises")
        assert pool.stats().in_use == 0
        async with pool.async_lease() as res:
            pool.discard(res)  # given back by the block: the exit has nothing to do
        assert tracker.made[0].closed == 1

    run(main())
    check_idle_invariants(pool, tracker)


@pytest.mark.parametrize(
    ("timeout", "error"),
    [("1", TypeError), (float("nan"), ValueError), (1e300, OverflowError)],
)
def test_bad_timeouts_raise_as_acquire_does(timeout: Any, error: type[Exception]) -> None:
    pool = make_pool(1)
    with pytest.raises(error):
        pool.acquire(timeout=timeout)

    async def main() -> None:
        with pytest.raises(error):
            await pool.async_acquire(timeout=timeout)
        with pytest.raises(error):
            pool.async_lease(timeout=timeout)

    run(main())
    assert pool.stats().in_use == 0


def test_timeout_raises_pool_timeout_and_takes_nothing() -> None:
    tracker = Tracker()
    pool = make_pool(1, tracker, timeout=0.05)

    async def main() -> None:
        held = await pool.async_acquire()
        for timeout in (0, -1):  # no wait at all
            with pytest.raises(PoolTimeout):
                await pool.async_acquire(timeout=timeout)
        with pytest.raises(PoolTimeout):
            await pool.async_acquire()  # the pool's timeout
        with pytest.raises(PoolTimeout):
            async with pool.async_lease(timeout=0.01):
                pytest.fail("the block ran")
        assert pool.stats().timeouts == 4 and pool.stats().waiting == 0
        pool.release(held)

    run(main())
    check_idle_invariants(pool, tracker)


def test_max_waiting_counts_tasks() -> None:
    pool = make_pool(1, max_waiting=1)

    async def main() -> None:
        held = await pool.async_acquire()
        first = asyncio.ensure_future(pool.async_acquire())
        await until(lambda: waiting(pool) == 1, "the task to queue")
        with pytest.raises(PoolTooBusy):
            await pool.async_acquire()
        with pytest.raises(PoolTooBusy):
            pool.acquire()  # a thread is refused as well
        pool.release(held)
        pool.release(await first)

    run(main())
    assert pool.stats().too_busy == 2


def test_a_waiting_task_does_not_block_its_loop() -> None:
    pool = make_pool(1)

    async def main() -> None:
        held = await pool.async_acquire()
        waiter = asyncio.ensure_future(pool.async_acquire())
        await until(lambda: waiting(pool) == 1, "the task to queue")
        ticks = 0
        for _ in range(20):  # the loop runs other tasks meanwhile
            await asyncio.sleep(0)
            ticks += 1
        assert ticks == 20 and not waiter.done()
        pool.release(held)
        pool.release(await waiter)

    run(main())


# -- cancellation ----------------------------------------------------------------


def test_cancelled_while_queued_leaves_the_line() -> None:
    tracker = Tracker()
    pool = make_pool(1, tracker)

    async def main() -> None:
        held = await pool.async_acquire()
        task = asyncio.ensure_future(pool.async_acquire())
        await until(lambda: waiting(pool) == 1, "the task to queue")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert waiting(pool) == 0
        pool.release(held)
        assert places_free(pool) == 1
        # The place is there for the next caller, a thread as well.
        res = await asyncio.get_running_loop().run_in_executor(None, pool.acquire, 1)
        pool.release(res)

    run(main())
    check_idle_invariants(pool, tracker)


def test_wait_for_and_timeout_around_async_acquire() -> None:
    pool = make_pool(1)

    async def main() -> None:
        held = await pool.async_acquire()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pool.async_acquire(), 0.02)
        assert waiting(pool) == 0
        pool.release(held)
        assert places_free(pool) == 1

    run(main())


@pytest.mark.parametrize("next_kind", ["task", "thread"])
def test_cancelled_after_the_grant_passes_the_place_on(next_kind: str) -> None:
    """The place is granted to a queued task, and the task is cancelled
    before it runs again: it holds nothing, and the place goes to the next
    in line."""
    tracker = Tracker()
    pool = make_pool(1, tracker)

    async def main() -> None:
        held = await pool.async_acquire()
        first = asyncio.ensure_future(pool.async_acquire())
        await until(lambda: waiting(pool) == 1, "the first task to queue")
        if next_kind == "task":
            second: Any = asyncio.ensure_future(pool.async_acquire())
        else:
            second = Acquirer(pool, name="thread").start()
        await until(lambda: waiting(pool) == 2, "the second waiter to queue")
        # The grant and the cancellation in one step of the loop: the first
        # task cannot run in between.
        pool.release(held)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        if next_kind == "task":
            res = await second
        else:
            await asyncio.get_running_loop().run_in_executor(None, second.join)
            assert second.error is None
            res = second.result
        assert isinstance(res, Res) and pool.stats().in_use == 1
        pool.release(res)

    run(main())
    assert pool.stats().acquired == 2  # held, then the second waiter's
    check_idle_invariants(pool, tracker)


def test_cancelled_during_the_lease_block_returns_the_resource() -> None:
    tracker = Tracker()
    pool = make_pool(1, tracker)
    entered = []

    async def user() -> None:
        async with pool.async_lease() as res:
            entered.append(res)
            await asyncio.sleep(PATIENCE)

    async def main() -> None:
        task = asyncio.ensure_future(user())
        await until(lambda: bool(entered), "the block to start")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    check_idle_invariants(pool, tracker)


def test_a_dropped_coroutine_leaves_the_line() -> None:
    """A coroutine closed while it waits (its task garbage-collected, its
    loop gone) gives up its place in line, as a cancelled one."""
    pool = make_pool(1)
    held = pool.acquire()

    async def main() -> None:
        coro = pool.async_acquire()
        coro.send(None)  # runs up to its first suspension: in the line
        assert waiting(pool) == 1
        # Not cancelled: closed, as the collector closes the coroutine of a
        # task dropped while pending.
        coro.close()

    run(main())
    assert waiting(pool) == 0
    pool.release(held)
    assert places_free(pool) == 1


# -- waiting for room ----------------------------------------------------------------


class SlowClose:
    """close() for a pool that blocks on its first call until let go."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.closing = threading.Event()
        self.go_on = threading.Event()
        self.first = True

    def __call__(self, res: Res) -> None:
        if self.first:
            self.first = False
            self.closing.set()
            self.go_on.wait(PATIENCE)
        self.tracker.close(res)


def room_starved_pool(tracker: Tracker, closer: SlowClose) -> tuple[ResourcePool[Res], Any]:
    """A pool of 2 with a free place but no room: of its two resources, one
    is idle-trimmed by a shrink whose close() is still running (it counts
    until it is closed) while a grow has given its place back. Returns the
    pool and the thread running the shrink."""
    pool = ResourcePool(tracker.factory, 2, close=closer)
    a, b = pool.acquire(), pool.acquire()
    pool.release(a)
    pool.release(b)
    shrink = threading.Thread(target=pool.resize, args=(1,), daemon=True)
    shrink.start()
    assert closer.closing.wait(PATIENCE)
    pool.resize(2)
    return pool, shrink


def test_a_task_waiting_for_room_is_woken_when_there_is_room() -> None:
    tracker = Tracker()
    closer = SlowClose(tracker)
    pool, shrink = room_starved_pool(tracker, closer)

    async def main() -> None:
        first = await pool.async_acquire()  # the one idle resource
        second = asyncio.ensure_future(pool.async_acquire())
        await until(lambda: waiting(pool) == 1, "the task to wait for room")
        assert not second.done() and pool.stats().size == 2
        closer.go_on.set()  # the trimmed resource is closed: room for one
        res = await second
        assert res is tracker.made[2]
        pool.release(first)
        pool.release(res)

    run(main())
    shrink.join(PATIENCE)
    check_idle_invariants(pool, tracker)


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_a_task_waiting_for_room_that_gives_up_holds_nothing(how: str) -> None:
    tracker = Tracker()
    closer = SlowClose(tracker)
    pool, shrink = room_starved_pool(tracker, closer)

    async def main() -> None:
        first = await pool.async_acquire()
        if how == "cancel":
            second = asyncio.ensure_future(pool.async_acquire())
            await until(lambda: waiting(pool) == 1, "the task to wait for room")
            second.cancel()
            with pytest.raises(asyncio.CancelledError):
                await second
        else:
            # The place is free at once: the time runs out waiting for room.
            with pytest.raises(PoolTimeout, match="in time"):
                await pool.async_acquire(timeout=0.05)
        assert waiting(pool) == 0 and places_free(pool) == 1
        assert not pool._task_room_waiters
        closer.go_on.set()
        pool.release(first)

    run(main())
    shrink.join(PATIENCE)
    check_idle_invariants(pool, tracker)


# -- close ---------------------------------------------------------------------------


def test_close_wakes_waiting_tasks_with_pool_closed() -> None:
    tracker = Tracker()
    pool = make_pool(1, tracker)

    async def main() -> None:
        held = await pool.async_acquire()
        tasks = [asyncio.ensure_future(pool.async_acquire()) for _ in range(3)]
        await until(lambda: waiting(pool) == 3, "the tasks to queue")
        pool.close()
        for task in tasks:
            with pytest.raises(PoolClosed):
                await task
        with pytest.raises(PoolClosed):
            await pool.async_acquire()
        with pytest.raises(PoolClosed):
            async with pool.async_lease():
                pytest.fail("the block ran")
        pool.release(held)  # still works: the resource is closed

    run(main())
    assert pool.stats().size == 0 and tracker.alive == 0


# -- tasks and threads in one line ----------------------------------------------------


def test_tasks_and_threads_are_served_in_arrival_order() -> None:
    """Tasks of a loop in another thread and plain threads queue one by one,
    alternating; each takes the resource, logs itself and gives it back.
    The log is the arrival order."""
    pool = make_pool(1)
    log: list[object] = []
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()

    async def task_acquirer(name: str) -> None:
        res = await pool.async_acquire()
        log.append(name)
        pool.release(res)

    try:
        held = pool.acquire()
        futures = []
        threads = []
        expected = []
        for i in range(8):
            before = waiting(pool)
            if i % 2:
                name = f"thread {i}"
                threads.append(Acquirer(pool, name=name, log=log, give_back=True).start())
            else:
                name = f"task {i}"
                futures.append(asyncio.run_coroutine_threadsafe(task_acquirer(name), loop))
            expected.append(name)
            deadline = time.monotonic() + 10
            while waiting(pool) != before + 1:
                assert time.monotonic() < deadline, f"{name} never queued"
                time.sleep(0.0005)
        pool.release(held)
        for f in futures:
            f.result(PATIENCE)
        for t in threads:
            t.join()
        assert log == expected
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(PATIENCE)
        loop.close()


def test_threads_queued_behind_a_task_are_served_after_it() -> None:
    pool = make_pool(1)
    log: list[object] = []

    async def main() -> None:
        held = await pool.async_acquire()
        task = asyncio.ensure_future(pool.async_acquire())
        await until(lambda: waiting(pool) == 1, "the task to queue")
        threads = await asyncio.get_running_loop().run_in_executor(
            None, lambda: queue_acquirers(pool, 2, log=log, give_back=True)
        )
        pool.release(held)
        res = await task
        log.append("task")  # the threads still wait: the place is the task's
        pool.release(res)
        for t in threads:
            await asyncio.get_running_loop().run_in_executor(None, t.join)

    run(main())
    assert log == ["task", 0, 1]


# -- random cancellations --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fair", [True, False], ids=["fair", "nonfair"])
def test_invariants_after_random_cancellations(fair: bool) -> None:
    """Tasks on one loop and threads beside them share a pool of 3: tasks
    acquire with random timeouts, are cancelled at random moments (while
    queued, just granted, or holding), lease or acquire and release or
    discard; threads do the same without the cancellations. Each holder
    checks that it holds its resource alone. Afterwards nothing is in use
    or waiting, every place is free and every resource closes once."""
    max_size = 3
    tracker = Tracker()
    pool = make_pool(max_size, tracker, min_size=1, fair=fair)
    violations: list[str] = []
    guard = threading.Lock()
    stop = threading.Event()
    outcomes = {"granted": 0, "cancelled": 0, "timeout": 0}

    def hold(res: Res, who: object) -> None:
        with guard:
            if res.owner is not None:
                violations.append(f"{res} held by {res.owner} and {who}")
            if res.closed:
                violations.append(f"{res} handed out after it was closed")
            res.owner = who

    def let_go(res: Res) -> None:
        with guard:
            res.owner = None

    async def worker(index: int, rng: random.Random) -> None:
        me = f"task {index}"
        timeouts = (0, 0.0005, 0.005, None, None)
        while not stop.is_set():
            timeout = rng.choice(timeouts)
            try:
                if rng.random() < 0.3:
                    async with pool.async_lease(timeout=timeout) as res:
                        hold(res, me)
                        try:
                            await asyncio.sleep(rng.choice((0, 0, 0.0002)))
                        finally:
                            let_go(res)
                    continue
                res = await pool.async_acquire(timeout=timeout)
            except PoolTimeout:
                outcomes["timeout"] += 1
                continue
            outcomes["granted"] += 1
            hold(res, me)
            try:
                await asyncio.sleep(rng.choice((0, 0, 0.0002)))
            finally:
                let_go(res)
                if rng.random() < 0.1:
                    pool.discard(res)
                else:
                    pool.release(res)

    async def canceller(tasks: list[asyncio.Task[None]], rng: random.Random) -> None:
        while not stop.is_set():
            await asyncio.sleep(rng.choice((0, 0, 0.0001, 0.001)))
            i = rng.randrange(len(tasks))
            tasks[i].cancel()

    def thread_worker(index: int) -> None:
        rng = random.Random(1000 + index)
        while not stop.is_set():
            try:
                res = pool.acquire(timeout=rng.choice((0, 0.001, 0.01, None)))
            except PoolTimeout:
                continue
            hold(res, f"thread {index}")
            time.sleep(rng.choice((0, 0.0001)))
            let_go(res)
            pool.release(res)

    async def main() -> None:
        rng = random.Random(7)
        tasks = [asyncio.ensure_future(keep_going(i, random.Random(i))) for i in range(12)]
        cancel = asyncio.ensure_future(canceller(tasks, rng))
        await asyncio.sleep(SECONDS)
        stop.set()
        await asyncio.gather(*tasks, cancel)

    async def keep_going(index: int, rng: random.Random) -> None:
        # A cancelled worker counts it and starts over, until told to stop.
        while not stop.is_set():
            try:
                await worker(index, rng)
            except asyncio.CancelledError:
                outcomes["cancelled"] += 1
                task = asyncio.current_task()
                if task is not None and hasattr(task, "uncancel"):
                    task.uncancel()

    threads = [threading.Thread(target=thread_worker, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    try:
        run(main())
    finally:
        stop.set()
        assert not join_all(threads), "a thread is stuck"
    assert not violations, violations[:5]
    assert outcomes["granted"] and outcomes["cancelled"] and outcomes["timeout"], outcomes
    check_idle_invariants(pool, tracker)


# -- an exception at every point -------------------------------------------------------


class AwaitAwareInjector(Injector):
    """tests/injection.py's Injector, less one point CPython never offers: a
    coroutine resuming at an await. sys.settrace (3.9-3.11) reports a 'call'
    event each time a coroutine frame is resumed, but no signal handler runs
    there: 3.9 and 3.10 skip the check before YIELD_FROM, 3.11 checks at
    RESUME only on entry and after a plain yield. (An exception raised there
    would leave the awaited coroutine suspended, still queued in the
    semaphore until it is collected.) sys.monitoring's PY_START, used from
    3.12 on, fires on entry only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._started: set[Any] = set()  # the frames seen: a later 'call' resumes one

    def _global(self, frame: Any, event: str, arg: object) -> Any:
        if event == "call" and frame.f_code in self.codes and frame in self._started:
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
            return self._local
        self._started.add(frame)
        return super()._global(frame, event, arg)


def async_scenario(world: World) -> None:
    """plain_scenario of test_exception_safety.py, from a task: the fast path,
    a queued wait, PoolTimeout both ways, release, discard and a lease."""
    pool = world.pool

    async def acquire(**kwargs: Any) -> Any:
        resource = await pool.async_acquire(**kwargs)
        world.held.append(resource)
        return resource

    async def main() -> None:
        first = await acquire()
        second = await acquire()
        with pytest.raises(PoolTimeout):
            await pool.async_acquire(timeout=0)
        with pytest.raises(PoolTimeout):
            await pool.async_acquire(timeout=0.001)  # the queued wait
        world.release(first)
        again = await acquire()  # the idle one, on the fast path
        world.discard(second)
        lease = pool.async_lease()
        world.leases.append(lease)
        async with lease as leased:
            assert leased is not again
        world.release(again)

    asyncio.run(main())


@pytest.mark.slow
@pytest.mark.thread_unsafe(reason="injects exceptions through sys.monitoring: one tool per process")
# An exception right after a coroutine function returns its coroutine, before
# the await, leaves that coroutine never started: CPython warns, and that is
# all (it holds nothing).
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_async_pool_survives_an_exception_at_every_point(
    impl: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As test_exception_safety.py's pool tests, through async_acquire() and
    async_lease(): the exception lands in the pool's code (between its
    awaits too), the semaphore's is not traced."""
    monkeypatch.setattr(injection, "Injector", AwaitAwareInjector)

    def check(world: World, injector: Any) -> None:
        assert not world.pool._task_room_waiters, injector.fired
        check_pool(world, injector)

    points = every_point(POOL_CODE, lambda: World(impl, max_size=2), async_scenario, check)
    assert points > 100
