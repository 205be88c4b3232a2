"""The async API on both implementations: async_acquire(), `async with`,
async_hold(), with tasks of several event loops and plain threads in one FIFO
queue.

Arrival order is made known the way the thread tests make it known: each
waiter is started only once the previous one is queued (`waiting` says so).
Grant order is recorded by releasing one permit at a time and waiting for its
waiter to report. Every wait is bounded (TIMEOUT), so that a lost wake-up
fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import random
import sys
import threading
import time
from collections import Counter
from typing import Any, Callable

import pytest
from conftest import Waiter, wait_until

from fastsem import SemaphoreClosed

TIMEOUT = 10.0


def run(body: Callable[[], Any]) -> Any:
    """Runs the coroutine function body on a new event loop ("loop A") in a
    thread of its own, watched from this one: a test fails after TIMEOUT
    instead of hanging, even if its loop's thread is stuck in a wait that
    blocks it (which no timeout inside the loop could end)."""
    outcome: list[tuple[bool, Any]] = []

    async def bounded() -> Any:
        return await asyncio.wait_for(body(), TIMEOUT)

    def main() -> None:
        try:
            outcome.append((True, asyncio.run(bounded())))
        except BaseException as exc:  # raised again in the test's thread
            outcome.append((False, exc))

    thread = threading.Thread(target=main, name="loop-a", daemon=True)
    thread.start()
    thread.join(TIMEOUT + 5)
    assert not thread.is_alive(), "the test's event loop is stuck"
    returned, value = outcome[0]
    if not returned:
        raise value
    return value


async def until(predicate: Callable[[], bool], what: str = "condition") -> None:
    """wait_until() for a coroutine: polls without blocking the loop. It fails
    with an AssertionError: pytest.fail()'s exception is a BaseException,
    which asyncio does not expect from a task (it leaves the loop with it)."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.0005)


def step(coro: Any) -> tuple[str, Any]:
    """Runs a coroutine to its first suspension, inside the running loop:
    ("done", its value), ("raised", the exception) or ("suspended", None),
    in which case it is closed (GeneratorExit takes it out of the queue)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return "done", stop.value
    except BaseException as exc:
        return "raised", exc
    coro.close()
    return "suspended", None


def empty(impl, kind: str, capacity: int, **options):
    """A semaphore with no free permits that can take `capacity` releases:
    a Semaphore(0), or a BoundedSemaphore(capacity) whose permits are held."""
    if kind == "Semaphore":
        return impl.Semaphore(0, **options)
    sem = impl.BoundedSemaphore(capacity, **options)
    assert sem.drain() == capacity
    return sem


KINDS = ["Semaphore", "BoundedSemaphore"]


class LoopThread:
    """An event loop running in a thread of its own ("loop B")."""

    def __init__(self, name: str = "loop-b") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def submit(self, coro: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, function: Callable[[], Any]) -> Any:
        """Runs function in the loop's thread, between two of its steps."""

        async def call() -> Any:
            return function()

        return self.submit(call()).result(TIMEOUT)

    def stop(self) -> None:
        """Stops the loop (its tasks stay as they are) and closes it."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the loop did not stop"
        self.loop.close()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.loop.is_closed():
            return

        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.submit(cancel_the_rest()).result(TIMEOUT)
        self.stop()


class Line:
    """Waiters of every kind queued on one semaphore in a known order: "A" a
    task on the loop running the test, "B" a task on loop B (another thread),
    "T" a plain thread. Each records its name in `log` when granted."""

    def __init__(self, sem, loop_b: LoopThread) -> None:
        self.sem = sem
        self.loop_b = loop_b
        self.log: list[str] = []
        self.lock = threading.Lock()
        self.waiters: dict[str, Any] = {}

    async def _task(self, name: str, n: int) -> bool:
        got = await self.sem.async_acquire(n=n)
        with self.lock:
            self.log.append(name)
        return got

    def start(self, kind: str, name: str, n: int = 1) -> None:
        """Starts a waiter; it queues a moment later (a task of this loop
        once the loop runs it)."""
        if kind == "A":
            waiter: Any = asyncio.ensure_future(self._task(name, n))
        elif kind == "B":
            waiter = asyncio.wrap_future(self.loop_b.submit(self._task(name, n)))
        else:
            waiter = Waiter(self.sem, name=name, log=self.log, log_lock=self.lock, n=n).start()
        self.waiters[name] = waiter

    async def add(self, kind: str, name: str, n: int = 1) -> None:
        """Starts a waiter and waits until it is queued."""
        before = self.sem.waiting
        self.start(kind, name, n)
        await until(lambda: self.sem.waiting == before + 1, f"{name} to queue")

    async def result(self, name: str) -> Any:
        """How the waiter's acquire ended: True, or the exception it raised."""
        waiter = self.waiters[name]
        if isinstance(waiter, Waiter):
            await until(waiter.done.is_set, f"thread {name} to finish")
            return waiter.result
        try:
            return await asyncio.wait_for(waiter, TIMEOUT)
        except BaseException as exc:
            return exc


# ---------------------------------------------------------------------------
# The uncontended path: no suspension at all.


def test_uncontended_acquire_completes_without_suspending(impl):
    async def body() -> None:
        sem = impl.BoundedSemaphore(4)
        assert step(sem.async_acquire()) == ("done", True)
        assert step(sem.async_acquire(n=2)) == ("done", True)
        assert sem.value == 1
        assert step(sem.__aenter__()) == ("done", None)
        assert sem.value == 0
        assert step(sem.__aexit__(None, None, None)) == ("done", None)
        assert step(sem.async_acquire(True, 5.0)) == ("done", True)
        assert step(sem.async_acquire(False)) == ("done", False)
        assert step(sem.async_acquire(timeout=0)) == ("done", False)
        assert step(sem.async_acquire(timeout=-1)) == ("done", False)
        sem.release(4)
        hold = sem.async_hold(1.0, n=3)
        assert step(hold.__aenter__()) == ("done", sem)
        assert sem.value == 1
        assert step(hold.__aexit__(None, None, None)) == ("done", None)
        assert sem.value == 4 and sem.waiting == 0

    run(body)


def test_async_with_runs_no_other_task_in_between(impl):
    # The same, seen from the loop: a task that takes an uncontended permit
    # lets no other task run between its request and its grant.
    async def body() -> None:
        sem = impl.Semaphore(3)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        other = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        before = ticks
        async with sem:
            assert await sem.async_acquire() is True
            async with sem.async_hold(n=1):
                pass
            sem.release()
        assert ticks == before
        other.cancel()

    run(body)


# ---------------------------------------------------------------------------
# Arguments and errors: exactly those of acquire().


BAD_ACQUIRES = [
    pytest.param((False, 1.0), {}, id="timeout-with-non-blocking"),
    pytest.param((), {"blocking": False, "timeout": 0}, id="zero-timeout-non-blocking"),
    pytest.param((), {"n": 0}, id="n-zero"),
    pytest.param((False,), {"n": -3}, id="n-negative-non-blocking"),
    pytest.param((), {"n": 1.5}, id="n-float"),
    pytest.param((), {"n": "1"}, id="n-str"),
    pytest.param((), {"n": None}, id="n-none"),
    pytest.param((), {"n": 2**63}, id="n-past-long-long"),
    pytest.param((), {"n": -(2**63) - 1}, id="n-below-long-long"),
    pytest.param((), {"n": 2**62}, id="n-past-count-max"),
    pytest.param((), {"timeout": float("nan")}, id="timeout-nan"),
    pytest.param((), {"timeout": float("inf")}, id="timeout-inf"),
    pytest.param((), {"timeout": threading.TIMEOUT_MAX * 2}, id="timeout-too-large"),
    pytest.param((), {"timeout": "1"}, id="timeout-str"),
    pytest.param((True, [1]), {}, id="timeout-list"),
]


def _outcome(call: Callable[[], Any]) -> tuple[str, str]:
    try:
        return "returned", repr(call())
    except Exception as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("args", "kwargs"), BAD_ACQUIRES)
def test_argument_errors_are_those_of_acquire(impl, kind, args, kwargs):
    async def body() -> None:
        sync_sem = getattr(impl, kind)(2)
        async_sem = getattr(impl, kind)(2)
        expected = _outcome(lambda: sync_sem.acquire(*args, **kwargs))
        assert expected[0] in ("ValueError", "TypeError", "OverflowError"), expected
        # The error comes when the coroutine is awaited, not when it is made.
        coro = async_sem.async_acquire(*args, **kwargs)
        state, error = step(coro)
        assert state == "raised"
        assert (type(error).__name__, str(error)) == expected
        assert async_sem.value == 2 and async_sem.waiting == 0

    run(body)


BAD_HOLDS = [
    pytest.param({"n": 0}, id="n-zero"),
    pytest.param({"n": 1.5}, id="n-float"),
    pytest.param({"n": 2**63}, id="n-past-long-long"),
    pytest.param({"timeout": float("nan")}, id="timeout-nan"),
    pytest.param({"timeout": "1"}, id="timeout-str"),
    pytest.param({"n": 3}, id="n-past-the-bound"),
]


@pytest.mark.parametrize("kwargs", BAD_HOLDS)
def test_async_hold_errors_are_those_of_hold(impl, kwargs):
    async def body() -> None:
        sync_sem, async_sem = impl.BoundedSemaphore(2), impl.BoundedSemaphore(2)
        expected = _outcome(lambda: sync_sem.hold(**kwargs).__enter__())
        assert expected[0] in ("ValueError", "TypeError", "OverflowError"), expected
        hold = async_sem.async_hold(**kwargs)  # no error yet: it comes on entry
        state, error = step(hold.__aenter__())
        assert state == "raised"
        assert (type(error).__name__, str(error)) == expected
        assert async_sem.value == 2 and async_sem.waiting == 0

    run(body)


@pytest.mark.parametrize("kwargs", [{}, {"blocking": False}, {"timeout": 5}])
def test_more_than_the_bound_fails_at_once(impl, kwargs):
    async def body() -> None:
        sem = impl.BoundedSemaphore(3)
        expected = _outcome(lambda: sem.acquire(n=4, **kwargs))
        assert expected[0] == "ValueError" and "bounded at 3" in expected[1]
        state, error = step(sem.async_acquire(n=4, **kwargs))
        assert (state, type(error).__name__, str(error)) == ("raised", *expected)
        assert sem.value == 3 and sem.waiting == 0

    run(body)


def test_a_closed_semaphore_refuses_every_async_entry(impl):
    async def body() -> None:
        sem = impl.Semaphore(2)
        sem.close()
        for coro in (
            sem.async_acquire(),
            sem.async_acquire(False),
            sem.async_acquire(timeout=1),
            sem.__aenter__(),
            sem.async_hold(1.0).__aenter__(),
        ):
            state, error = step(coro)
            assert state == "raised" and type(error) is SemaphoreClosed
        assert sem.value == 2

    run(body)


def test_the_count_and_timeout_conversions_are_acquires(impl):
    class Two:
        def __index__(self) -> int:
            return 2

    async def body() -> None:
        sem = impl.Semaphore(3)
        assert await sem.async_acquire(n=Two()) is True
        assert await sem.async_acquire(True, 1, n=True) is True
        assert await sem.async_acquire(blocking=0) is False
        sem.release(3)
        assert await sem.async_acquire(timeout=threading.TIMEOUT_MAX, n=3) is True

    run(body)


# ---------------------------------------------------------------------------
# One FIFO queue for tasks of several loops and threads.


ARRIVALS = "ATBAABTTBABT"


@pytest.mark.parametrize("kind", KINDS)
def test_grants_follow_arrival_order_across_loops_and_threads(impl, kind):
    async def body() -> None:
        sem = empty(impl, kind, len(ARRIVALS))
        with LoopThread() as loop_b:
            line = Line(sem, loop_b)
            names = [f"{k}{i}" for i, k in enumerate(ARRIVALS)]
            for name in names:
                await line.add(name[0], name)
            for granted in range(1, len(names) + 1):
                sem.release()
                await until(lambda g=granted: len(line.log) == g, f"grant {granted}")
                assert sem.waiting == len(names) - granted
            assert line.log == names
            for name in names:
                assert await line.result(name) is True
        assert sem.value == 0 and sem.waiting == 0

    run(body)


def test_release_n_grants_the_n_oldest_whatever_their_kind(impl):
    async def body() -> None:
        sem = impl.Semaphore(0)
        with LoopThread() as loop_b:
            line = Line(sem, loop_b)
            names = [f"{k}{i}" for i, k in enumerate(ARRIVALS)]
            for name in names:
                await line.add(name[0], name)
            sem.release(5)
            # Decided inside release(): the five oldest left the queue.
            assert sem.waiting == len(names) - 5 and sem.value == 0
            await until(lambda: len(line.log) == 5, "the five grants")
            assert sorted(line.log) == sorted(names[:5])
            sem.release(len(names) - 5)
            for name in names:
                assert await line.result(name) is True
        assert sem.value == 0 and sem.waiting == 0

    run(body)


@pytest.mark.parametrize("head", ["A", "B", "T"])
def test_a_multi_permit_head_holds_back_every_kind_behind_it(impl, head):
    async def body() -> None:
        sem = impl.Semaphore(0)
        others = [k for k in "ABT" if k != head]
        with LoopThread() as loop_b:
            line = Line(sem, loop_b)
            await line.add(head, "head", n=3)
            await line.add(others[0], "second", n=1)
            await line.add(others[1], "third", n=2)
            sem.release(2)
            # Enough for both that wait behind the head, but the head is owed
            # the permits: nobody is granted.
            assert sem.waiting == 3 and sem.value == 2
            assert line.log == []
            sem.release()
            assert sem.waiting == 2 and sem.value == 0
            await until(lambda: line.log == ["head"], "the head's grant")
            sem.release(3)
            assert sem.waiting == 0 and sem.value == 0
            for name in ("head", "second", "third"):
                assert await line.result(name) is True
            assert line.log[0] == "head" and sorted(line.log[1:]) == ["second", "third"]

    run(body)


@pytest.mark.parametrize("head", ["A", "T"])
@pytest.mark.parametrize(("fair", "overtakes"), [(True, False), (False, True)])
def test_non_blocking_async_acquire_overtakes_only_in_non_fair_mode(impl, head, fair, overtakes):
    async def body() -> None:
        sem = impl.Semaphore(0, fair=fair)
        with LoopThread() as loop_b:
            line = Line(sem, loop_b)
            await line.add(head, "head", n=2)
            sem.release()  # one free permit: not enough for the head
            assert await sem.async_acquire(blocking=False) is overtakes
            assert await sem.async_acquire(timeout=0) is False
            assert sem.waiting == 1
            sem.release(1 if not overtakes else 2)
            assert await line.result("head") is True
        assert sem.value == 0

    run(body)


def test_non_fair_mode_lets_a_running_task_barge(impl):
    # The head was woken to compete, but a task that asks before it runs
    # takes the permit: barging, which fair mode forbids (the control row).
    async def body() -> None:
        for fair in (False, True):
            sem = impl.Semaphore(0, fair=fair)
            waiter = asyncio.ensure_future(sem.async_acquire(timeout=TIMEOUT))
            await until(lambda s=sem: s.waiting == 1, "the waiter to queue")
            sem.release()
            barged = await sem.async_acquire(blocking=False)
            assert barged is not fair
            if barged:
                assert sem.waiting == 1
                sem.release()
            assert await asyncio.wait_for(waiter, TIMEOUT) is True
            assert sem.value == 0 and sem.waiting == 0

    run(body)


def test_a_waiting_task_never_blocks_its_loop(impl):
    # On a loop in a thread of its own, watched from this one: a wait that
    # held the loop's thread fails the test (a timeout here) instead of
    # hanging it.
    sem = impl.Semaphore(0)
    spun = threading.Event()

    async def body() -> bool:
        waiter = asyncio.ensure_future(sem.async_acquire())
        for _ in range(100):  # the loop keeps turning while the task waits
            await asyncio.sleep(0)
        assert sem.waiting == 1 and not waiter.done()
        spun.set()
        return await waiter

    with LoopThread() as loop_b:
        future = loop_b.submit(body())
        assert spun.wait(TIMEOUT), "the loop stopped turning"
        sem.release()
        assert future.result(TIMEOUT) is True
    assert sem.value == 0 and sem.waiting == 0


def test_a_task_on_another_loop_is_woken_by_a_release_here(impl):
    sem = impl.Semaphore(0)
    with LoopThread() as loop_b:
        future = loop_b.submit(sem.async_acquire(n=2))
        wait_until(lambda: sem.waiting == 1, what="the task to queue")

        async def release_in_a_task() -> None:
            sem.release(2)

        run(release_in_a_task)
        assert future.result(TIMEOUT) is True
    assert sem.value == 0 and sem.waiting == 0


# ---------------------------------------------------------------------------
# Cancellation at every point.


@pytest.mark.parametrize("behind", ["A", "B", "T", None])
def test_cancelled_while_queued_takes_nothing(impl, behind):
    async def body() -> None:
        sem = impl.Semaphore(0)
        with LoopThread() as loop_b:
            line = Line(sem, loop_b)
            victim = asyncio.ensure_future(sem.async_acquire(n=2))
            await until(lambda: sem.waiting == 1, "the victim to queue")
            if behind:
                await line.add(behind, "behind", n=1)
            sem.release()  # not enough for the victim at the head
            assert sem.value == 1
            victim.cancel()
            with pytest.raises(asyncio.CancelledError):
                await victim
            assert victim.cancelled()
            if behind:
                # The head left: the permit it held back goes to the next.
                assert await line.result("behind") is True
                assert sem.value == 0
            else:
                assert sem.value == 1
            assert sem.waiting == 0
            stats = sem.statistics()
            assert stats.interrupts == 1 and stats.waiting == 0

    run(body)


@pytest.mark.parametrize("releaser", ["this-loop", "another-thread"])
@pytest.mark.parametrize("behind", ["A", "B", "T", None])
def test_cancelled_after_the_grant_passes_the_permits_on(impl, releaser, behind):
    async def body() -> None:
        sem = impl.Semaphore(0)
        with LoopThread() as loop_b:
            line = Line(sem, loop_b)
            victim = asyncio.ensure_future(sem.async_acquire(n=2))
            await until(lambda: sem.waiting == 1, "the victim to queue")
            if behind:
                await line.add(behind, "behind1", n=1)
                await line.add(behind, "behind2", n=1)
            # Granted, but the victim's await has not returned: this loop
            # does not run it before the cancellation.
            if releaser == "this-loop":
                sem.release(2)
            else:
                thread = threading.Thread(target=sem.release, args=(2,))
                thread.start()
                thread.join(TIMEOUT)
                assert not thread.is_alive()
            assert sem.waiting == (2 if behind else 0) and sem.value == 0
            victim.cancel()
            with pytest.raises(asyncio.CancelledError):
                await victim
            assert victim.cancelled()
            if behind:
                assert await line.result("behind1") is True
                assert await line.result("behind2") is True
                assert sem.value == 0
            else:
                assert sem.value == 2
            assert sem.waiting == 0
            stats = sem.statistics()
            assert stats.interrupts == 1
            # The permits the victim never saw were no acquisition of its own.
            assert stats.acquisitions == (2 if behind else 0)

    run(body)


def test_cancelled_inside_async_with_releases(impl):
    async def body() -> None:
        sem = impl.Semaphore(1)
        entered = asyncio.Event()

        async def holder() -> None:
            async with sem:
                entered.set()
                await asyncio.sleep(3600)

        task = asyncio.ensure_future(holder())
        await asyncio.wait_for(entered.wait(), TIMEOUT)
        assert sem.value == 0
        behind = asyncio.ensure_future(sem.async_acquire())
        await until(lambda: sem.waiting == 1, "a waiter behind")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.wait_for(behind, TIMEOUT) is True
        sem.release()
        assert sem.value == 1 and sem.waiting == 0

    run(body)


def test_async_with_releases_when_the_body_raises(impl):
    async def body() -> None:
        sem = impl.Semaphore(2)

        async def failing() -> None:
            async with sem:
                assert sem.value == 1
                raise KeyError

        with pytest.raises(KeyError):
            await failing()
        assert sem.value == 2

    run(body)


def test_async_with_enters_with_none_and_exits_through_release(impl):
    calls: list[int] = []

    class Counting(impl.BoundedSemaphore):
        def release(self, n: int = 1) -> None:
            calls.append(n)
            super().release(n)

    async def body() -> None:
        sem = Counting(3)
        async with sem as entered:
            assert entered is None
            assert sem.value == 2
        async with sem.async_hold(n=2) as held:
            assert held is sem
            assert sem.value == 1
        assert calls == [1, 2]
        assert sem.value == 3

    run(body)


def test_a_coroutine_closed_while_queued_leaves_the_queue(impl):
    async def body() -> None:
        sem = impl.Semaphore(0)
        coro = sem.async_acquire()
        coro.send(None)  # suspended in the queue, with no task around it
        assert sem.waiting == 1
        coro.close()
        assert sem.waiting == 0
        sem.release()
        assert sem.value == 1
        # Granted, then closed before it resumed: the permit comes back.
        coro = sem.async_acquire(n=2)
        coro.send(None)
        sem.release()
        assert sem.waiting == 0 and sem.value == 0
        coro.close()
        assert sem.value == 2 and sem.waiting == 0

    run(body)


def test_wait_for_around_async_acquire(impl):
    async def body() -> None:
        sem = impl.Semaphore(0)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(sem.async_acquire(), 0.02)
        assert sem.waiting == 0 and sem.value == 0
        assert sem.statistics().interrupts == 1
        sem.release()
        assert sem.value == 1  # nobody took it on the way out
        sem.acquire()
        timer = threading.Timer(0.02, sem.release)
        timer.start()
        assert await asyncio.wait_for(sem.async_acquire(), TIMEOUT) is True
        timer.join(TIMEOUT)
        assert sem.value == 0 and sem.waiting == 0

    run(body)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout() is 3.11's")
def test_asyncio_timeout_around_async_acquire(impl):
    async def body() -> None:
        sem = impl.Semaphore(1)
        sem.acquire()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await sem.async_acquire()
        assert sem.waiting == 0 and sem.value == 0
        assert sem.statistics().interrupts == 1
        # A timed-out head lets the one behind it through. The deadline is
        # set once both are queued, so that no timing decides the order.
        scopes = []

        async def head() -> bool:
            async with asyncio.timeout(None) as scope:
                scopes.append(scope)
                return await sem.async_acquire(n=2)

        victim = asyncio.ensure_future(head())
        await until(lambda: sem.waiting == 1, "the head to queue")
        behind = Waiter(sem, name="behind", timeout=TIMEOUT).start()
        await until(lambda: sem.waiting == 2, "the thread to queue")
        sem.release()  # one permit: not enough for the head
        assert sem.value == 1
        scopes[0].reschedule(asyncio.get_running_loop().time())
        with pytest.raises(TimeoutError):
            await victim
        await until(behind.done.is_set, "the thread behind")
        assert behind.result is True
        assert sem.value == 0 and sem.waiting == 0

    run(body)


# ---------------------------------------------------------------------------
# Timeouts.


def test_a_timeout_returns_false(impl):
    async def body() -> None:
        sem = impl.Semaphore(0)
        start = time.monotonic()
        assert await sem.async_acquire(timeout=0.05) is False
        assert time.monotonic() - start >= 0.045
        assert sem.waiting == 0 and sem.value == 0
        stats = sem.statistics()
        assert stats.timeouts == 1 and stats.interrupts == 0
        assert stats.contended == 0 and stats.acquisitions == 0
        # Nothing taken on the way out: a release is free for the next.
        sem.release()
        assert await sem.async_acquire(timeout=0.05) is True

    run(body)


class Interrupted(Exception):
    """Stands for a signal handler's exception (a Ctrl-C)."""


def test_an_exception_in_the_timers_cancel_strands_no_permit(impl):
    """A timed wait cancels its timer when it wakes; an exception raised in
    that Python call (a signal handler runs there) must find the grant still
    the waiter's to pass on, never taken and lost."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        schedule = loop.call_later
        raised: list[bool] = []

        class Handle:
            def __init__(self, handle: asyncio.TimerHandle) -> None:
                self.handle = handle

            def cancel(self) -> None:
                self.handle.cancel()
                if not raised:
                    raised.append(True)
                    raise Interrupted("inside TimerHandle.cancel()")

        def call_later(delay: float, callback: Any, *args: Any) -> Any:
            handle = schedule(delay, callback, *args)
            owner = type(getattr(callback, "__self__", None)).__module__
            return Handle(handle) if owner.startswith("fastsem.") else handle  # the waiter's

        loop.call_later = call_later  # type: ignore[method-assign]
        try:
            sem = impl.Semaphore(0)
            waiter = asyncio.ensure_future(sem.async_acquire(timeout=TIMEOUT))
            await until(lambda: sem.waiting == 1, "the waiter to queue")
        finally:
            del loop.call_later  # type: ignore[method-assign]
        sem.release()  # granted; the task has not resumed yet
        with pytest.raises(Interrupted):
            await waiter
        assert raised
        # The grant went back: nobody holds it, nobody waits.
        assert sem.value == 1 and sem.waiting == 0

    run(body)


def test_a_grant_before_the_deadline_returns_true(impl):
    async def body() -> None:
        sem = impl.Semaphore(0)
        waiter = asyncio.ensure_future(sem.async_acquire(timeout=TIMEOUT, n=2))
        await until(lambda: sem.waiting == 1, "the waiter to queue")
        releaser = threading.Thread(target=sem.release, args=(2,))
        releaser.start()
        assert await asyncio.wait_for(waiter, TIMEOUT) is True
        releaser.join(TIMEOUT)
        assert sem.value == 0
        assert sem.statistics().contended == 1

    run(body)


@pytest.mark.parametrize("behind", ["A", "B", "T"])
def test_a_timed_out_head_lets_the_next_one_through(impl, behind):
    # The one behind must queue before the head's deadline, whatever the
    # machine's load: a task of this loop queues in the same turn of the loop
    # as the head, and the others while this loop is held, which holds the
    # head's timer too.
    async def body() -> None:
        sem = impl.Semaphore(1)
        with LoopThread() as loop_b:
            line = Line(sem, loop_b)
            head = asyncio.ensure_future(sem.async_acquire(timeout=0.1, n=2))
            if behind == "A":
                line.start(behind, "behind")
                await until(lambda: sem.waiting == 2, "both to queue")
            else:
                await until(lambda: sem.waiting == 1, "the head to queue")
                line.start(behind, "behind")
                wait_until(lambda: sem.waiting == 2, what="the one behind to queue")
            assert not head.done()
            assert await asyncio.wait_for(head, TIMEOUT) is False
            assert await line.result("behind") is True
            assert sem.value == 0 and sem.waiting == 0

    run(body)


def test_async_hold_raises_timeout_error_like_hold(impl):
    async def body() -> None:
        sem = impl.Semaphore(1)
        sem.acquire()
        with pytest.raises(TimeoutError) as sync_error, sem.hold(timeout=0.02, n=2):
            raise AssertionError("the block must not run")  # pragma: no cover
        start = time.monotonic()
        with pytest.raises(TimeoutError) as async_error:
            async with sem.async_hold(timeout=0.02, n=2):
                raise AssertionError("the block must not run")  # pragma: no cover
        assert time.monotonic() - start >= 0.015
        assert str(async_error.value) == str(sync_error.value)
        assert "within 0.02 seconds" in str(async_error.value)
        assert sem.value == 0 and sem.waiting == 0
        sem.release()
        assert sem.value == 1  # nothing was released by the failed holds

    run(body)


def test_async_hold_cancelled_while_waiting_holds_nothing(impl):
    async def body() -> None:
        sem = impl.Semaphore(0)

        async def holder() -> None:
            async with sem.async_hold(timeout=TIMEOUT, n=2):
                raise AssertionError("the block must not run")  # pragma: no cover

        task = asyncio.ensure_future(holder())
        await until(lambda: sem.waiting == 1, "the hold to queue")
        sem.release(2)  # granted; cancelled before it resumes
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sem.value == 2 and sem.waiting == 0

    run(body)


# ---------------------------------------------------------------------------
# close(), resize(), closed loops, statistics, holders.


def test_close_wakes_every_waiting_task_and_thread(impl):
    async def body() -> None:
        sem = impl.Semaphore(1)
        sem.acquire()
        with LoopThread() as loop_b:
            line = Line(sem, loop_b)
            for name in ("A0", "T1", "B2", "A3", "B4"):
                await line.add(name[0], name)
            sem.close()
            assert sem.waiting == 0
            for name in line.waiters:
                assert type(await line.result(name)) is SemaphoreClosed
            assert line.log == []
        sem.release()  # what was held can still be given back
        assert sem.value == 1

    run(body)


def test_resize_below_a_queued_task_rejects_it_as_a_thread(impl):
    async def body() -> None:
        sem = impl.BoundedSemaphore(4)
        sem.acquire(n=4)
        with LoopThread() as loop_b:
            line = Line(sem, loop_b)
            await line.add("A", "A", n=3)
            await line.add("T", "T", n=3)
            await line.add("B", "B", n=3)
            await line.add("A", "small", n=1)
            sem.resize(2)
            assert sem.waiting == 1
            errors = [await line.result(name) for name in ("A", "T", "B")]
            assert all(type(e) is ValueError for e in errors)
            assert len({str(e) for e in errors}) == 1
            assert "bounded at 2" in str(errors[0])
            sem.release(3)  # the lowered bound absorbs two of them
            assert await line.result("small") is True

    run(body)


def test_a_closed_loop_passes_its_grant_on(impl):
    sem = impl.Semaphore(0)
    loop_b = LoopThread()
    lost = loop_b.submit(sem.async_acquire(n=2))
    wait_until(lambda: sem.waiting == 1, what="the task to queue")
    loop_b.stop()  # closed with its task still queued
    assert sem.waiting == 1
    waiters = [Waiter(sem, name=i, timeout=TIMEOUT).start() for i in range(2)]
    wait_until(lambda: sem.waiting == 3, what="the threads to queue")
    sem.release(2)  # granted to the task, which its loop cannot deliver
    for w in waiters:
        w.join()
        assert w.result is True
    assert sem.value == 0 and sem.waiting == 0
    # The abandoned coroutine, collected, gives back nothing it never had.
    del lost
    gc.collect()
    assert sem.value == 0 and sem.waiting == 0
    sem.release()
    assert sem.value == 1


def test_a_closed_loop_grant_with_nobody_behind_goes_back(impl):
    sem = impl.BoundedSemaphore(1)
    sem.acquire()
    loop_b = LoopThread()
    lost = loop_b.submit(sem.async_acquire())
    wait_until(lambda: sem.waiting == 1, what="the task to queue")
    loop_b.stop()
    sem.release()
    assert sem.value == 1 and sem.waiting == 0
    del lost  # collected now, while the test's log capture sees asyncio's complaint
    gc.collect()
    assert sem.value == 1 and sem.waiting == 0
    assert sem.acquire(timeout=0) is True


def test_waiting_and_statistics_count_tasks(impl):
    async def body() -> None:
        sem = impl.Semaphore(0)
        with LoopThread() as loop_b:
            line = Line(sem, loop_b)
            for name in ("A0", "B1", "T2", "A3"):
                await line.add(name[0], name)
            assert sem.waiting == 4
            stats = sem.statistics()
            assert stats.waiting == 4 and stats.max_waiting == 4
            assert await sem.async_acquire(timeout=0.01) is False  # the fifth
            line.waiters["A3"].cancel()
            assert isinstance(await line.result("A3"), asyncio.CancelledError)
            assert sem.waiting == 3 and sem.statistics().waiting == 3
            sem.release(3)
            for name in ("A0", "B1", "T2"):
                assert await line.result(name) is True
        stats = sem.statistics()
        assert stats.waiting == 0 and stats.max_waiting == 5
        assert stats.acquisitions == 3 and stats.contended == 3
        assert stats.interrupts == 1 and stats.timeouts == 1

    run(body)


def test_holders_name_the_task(impl):
    sem = impl.Semaphore(5, track_holders=True)
    other = threading.Thread(target=sem.acquire, name="plain-thread")
    other.start()
    other.join(TIMEOUT)

    async def worker() -> None:
        await sem.async_acquire(n=2)
        by_task = {h.task: h for h in sem.holders()}
        assert by_task["worker"].permits == 2
        assert by_task["worker"].thread_id == threading.get_ident()
        assert by_task[None].thread_name == "plain-thread"
        sem.release()  # charged to this task's own acquisition first
        assert {h.task: h.permits for h in sem.holders()} == {"worker": 1, None: 1}

    async def body() -> None:
        task = asyncio.get_running_loop().create_task(worker(), name="worker")
        await asyncio.wait_for(task, TIMEOUT)
        # Another task releases: charged to the others, oldest first.
        sem.release()
        assert {h.task: h.permits for h in sem.holders()} == {"worker": 1}

    run(body)


# ---------------------------------------------------------------------------
# Many loops, threads, cancellations and timeouts at once.


class Occupancy:
    """Counts the permits held inside critical sections: never more than the
    semaphore has, or a permit was duplicated."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.inside = 0
        self.peak = 0
        self.lock = threading.Lock()

    def enter(self, n: int) -> None:
        with self.lock:
            self.inside += n
            self.peak = max(self.peak, self.inside)
            assert self.inside <= self.capacity, "more permits held than exist"

    def leave(self, n: int) -> None:
        with self.lock:
            self.inside -= n


def test_several_loops_in_several_threads(impl):
    sem = impl.BoundedSemaphore(2)
    room = Occupancy(2)
    rounds = 60

    async def worker() -> int:
        for _ in range(rounds):
            async with sem:
                room.enter(1)
                await asyncio.sleep(0)
                room.leave(1)
        return rounds

    async def loop_main() -> int:
        return sum(await asyncio.gather(*(worker() for _ in range(4))))

    def thread_main() -> None:
        for _ in range(rounds):
            with sem:
                room.enter(1)
                time.sleep(0)
                room.leave(1)

    loops = [LoopThread(f"loop-{i}") for i in range(3)]
    try:
        futures = [lt.submit(loop_main()) for lt in loops]
        threads = [threading.Thread(target=thread_main) for _ in range(2)]
        for t in threads:
            t.start()
        assert run(loop_main) == 4 * rounds
        assert [f.result(TIMEOUT) for f in futures] == [4 * rounds] * 3
        for t in threads:
            t.join(TIMEOUT)
            assert not t.is_alive()
    finally:
        for lt in loops:
            lt.__exit__()
    assert sem.value == 2 and sem.waiting == 0 and room.inside == 0
    assert sem.statistics().acquisitions == (4 * 4 + 2) * rounds


@pytest.mark.thread_unsafe(reason="starts loops and threads of its own: copies add only load")
@pytest.mark.parametrize("fair", [True, False])
def test_random_cancellations_and_timeouts_lose_no_permit(impl, fair):
    capacity = 3
    sem = impl.BoundedSemaphore(capacity, fair=fair)
    room = Occupancy(capacity)
    tally: Counter[str] = Counter()
    tally_lock = threading.Lock()
    seed = random.randrange(2**32)
    tasks_per_loop, rounds = 8, 200

    def count(what: str) -> None:
        with tally_lock:
            tally[what] += 1

    async def holding(n: int, pause: float) -> None:
        room.enter(n)
        try:
            await asyncio.sleep(pause)
        finally:
            room.leave(n)
            sem.release(n)

    async def victim(n: int, rng: random.Random) -> None:
        if await sem.async_acquire(n=n):
            await holding(n, rng.random() * 0.001)

    async def task_main(rng: random.Random) -> None:
        for _ in range(rounds):
            n = rng.choice((1, 1, 1, 2))
            op = rng.randrange(6)
            if op == 0:
                async with sem:
                    room.enter(1)
                    await asyncio.sleep(rng.random() * 0.0005)
                    room.leave(1)
            elif op == 1:
                if await sem.async_acquire(timeout=rng.random() * 0.002, n=n):
                    await holding(n, 0)
                else:
                    count("timeout")
            elif op == 2:
                try:
                    got = await asyncio.wait_for(sem.async_acquire(n=n), rng.random() * 0.002)
                except asyncio.TimeoutError:
                    count("wait_for")
                else:
                    assert got is True
                    await holding(n, 0)
            elif op in (3, 4):
                # Cancelled while queued, after its grant, or while holding.
                task = asyncio.ensure_future(victim(n, rng))
                for _ in range(rng.randrange(4)):
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    count("cancelled")
            else:
                try:
                    async with sem.async_hold(rng.random() * 0.002, n=n):
                        room.enter(n)
                        room.leave(n)
                except TimeoutError:
                    count("hold timeout")

    async def loop_main(base: int) -> None:
        await asyncio.gather(
            *(task_main(random.Random(seed + base + i)) for i in range(tasks_per_loop))
        )

    stop = threading.Event()

    def thread_main(rng: random.Random) -> None:
        while not stop.is_set():
            n = rng.choice((1, 2))
            if sem.acquire(timeout=rng.random() * 0.002, n=n):
                room.enter(n)
                room.leave(n)
                sem.release(n)
            else:
                count("thread timeout")

    threads = [
        threading.Thread(target=thread_main, args=(random.Random(seed - i),)) for i in range(2)
    ]
    with LoopThread() as loop_b:
        for t in threads:
            t.start()
        try:
            other = loop_b.submit(loop_main(1000))
            run(lambda: loop_main(0))
            other.result(TIMEOUT)
        finally:
            stop.set()
            for t in threads:
                t.join(TIMEOUT)
        assert not any(t.is_alive() for t in threads), f"a thread is stuck (seed {seed})"
    assert (sem.value, sem.waiting, room.inside) == (capacity, 0, 0), f"seed {seed}: {tally}"
    assert sem.statistics().waiting == 0
    # The mix did what it says: thousands of cancellations and timeouts.
    assert tally["cancelled"] >= 500 and sum(tally.values()) >= 1000, tally
