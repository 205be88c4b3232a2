"""The async API under the conditions a demanding user or a peer's suite
would try: cancellation at each point and by every asyncio tool, coroutines
thrown into and closed by hand, loops that stop, close, change threads or
make their own futures, debug mode, eager tasks, tasks nobody references,
and the arguments of async_acquire() against acquire()'s.

After each scenario the invariants are checked: the value and the queue back
where they must be, the counters of statistics() consistent, holders()
empty, and nothing logged by asyncio (a task destroyed while pending, an
exception nobody retrieved) nor warned where the user did nothing wrong.
Every loop runs in a thread of its own, watched from the test's thread, so
that a hang fails the test instead of the run.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import itertools
import sys
import threading
import weakref
from typing import Any, Callable

import pytest
from conftest import Waiter, _get, queue_waiters, wait_until
from test_async import TIMEOUT, LoopThread, until

from fastsem import SemaphoreClosed

# A warning the user did not cause (a coroutine never awaited, an exception
# ignored in a finalizer) fails the test it shows up in.
pytestmark = pytest.mark.filterwarnings("error")

KINDS = ["Semaphore", "BoundedSemaphore"]


class LoopRun:
    """Runs a coroutine function on a new loop in a thread of its own, as
    asyncio.run() does (the remaining tasks cancelled, async generators shut
    down; a body that returns must have left none pending), and records
    every context the loop's exception handler is given: asyncio's reports
    of a task destroyed while pending, of an exception never retrieved, of
    a callback that raised."""

    def __init__(self, debug: bool = False, loop_factory: Callable[[], Any] | None = None):
        self.debug = debug
        self.loop_factory = loop_factory or asyncio.new_event_loop
        self.reports: list[dict[str, Any]] = []
        self.pending: list[str] = []  # tasks left when the body returned

    def _report(self, loop: Any, context: dict[str, Any]) -> None:
        self.reports.append(context)

    def __call__(self, body: Callable[[], Any]) -> Any:
        outcome: list[tuple[bool, Any]] = []

        def main() -> None:
            loop = self.loop_factory()
            loop.set_exception_handler(self._report)
            loop.set_debug(self.debug)
            try:
                result = loop.run_until_complete(asyncio.wait_for(body(), TIMEOUT))
                outcome.append((True, result))
            except BaseException as exc:  # raised again in the test's thread
                outcome.append((False, exc))
            finally:
                try:
                    rest = asyncio.all_tasks(loop)
                    self.pending = [repr(task) for task in rest]
                    for task in rest:
                        task.cancel()
                    if rest:
                        loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    loop.close()

        thread = threading.Thread(target=main, name="loop-a", daemon=True)
        thread.start()
        thread.join(TIMEOUT + 5)
        assert not thread.is_alive(), "the test's event loop is stuck"
        gc.collect()  # a task dropped while pending is reported now
        assert self.reports == [], f"asyncio reported: {self.reports}"
        returned, value = outcome[0]
        if not returned:
            raise value
        assert self.pending == [], "tasks left pending"
        return value


def run(body: Callable[[], Any], **options: Any) -> Any:
    return LoopRun(**options)(body)


def settled(sem: Any, value: int) -> None:
    """The invariants once nobody waits any more and nothing is held but
    what the caller says: `value` free permits, an empty queue, counters
    that add up, and (with track_holders) no holder left."""
    assert sem.value == value
    assert sem.waiting == 0
    stats = sem.statistics()
    assert stats.waiting == 0
    assert stats.contended <= stats.acquisitions
    assert stats.timeouts >= 0 and stats.interrupts >= 0
    try:
        holders = sem.holders()
    except RuntimeError:  # not tracked
        holders = []
    assert holders == []


def make(impl: Any, kind: str, value: int, **options: Any) -> Any:
    return getattr(impl, kind)(value, **options)


async def queued(sem: Any, count: int, what: str = "the tasks to queue") -> None:
    await until(lambda: sem.waiting == count, what)


# ---------------------------------------------------------------------------
# What async_acquire() returns, and its arguments and errors against
# acquire()'s.


def test_what_async_acquire_returns_is_an_awaitable_coroutine(impl):
    sem = impl.Semaphore(1)
    coro = sem.async_acquire()
    try:
        assert inspect.isawaitable(coro)
        assert asyncio.iscoroutine(coro)
    finally:
        coro.close()  # never started: takes nothing, and no warning
    assert sem.value == 1


def c_row_falls_short(reason: str) -> list:
    """The two rows, "c" a strict xfail for `reason`: where the binding is
    known to differ from asyncio.Semaphore and the pure-Python twin."""
    return [pytest.param("c", marks=pytest.mark.xfail(strict=True, reason=reason)), "python"]


@pytest.mark.parametrize(
    "name",
    c_row_falls_short(
        "the binding's methods are built-in methods returning a Cython coroutine: "
        "inspect sees neither as a coroutine function nor a native coroutine; "
        "binding=True async def methods might fix the first, at a cost per call"
    ),
)
def test_inspect_sees_coroutine_functions_as_for_asyncio_semaphore(name):
    # Frameworks choose between awaiting a callable and running it in a
    # thread with inspect.iscoroutinefunction(); asyncio.Semaphore's
    # acquire() passes, and so does the pure-Python twin's async_acquire().
    # The C class's does not: handed to such a framework, its coroutine
    # would be made and never awaited, and Cython's coroutines do not warn.
    impl = _get(name)
    sem = impl.Semaphore(1)
    assert inspect.iscoroutinefunction(asyncio.Semaphore.acquire)
    assert inspect.iscoroutinefunction(sem.async_acquire)
    coro = sem.async_acquire()
    try:
        assert inspect.iscoroutine(coro)
    finally:
        coro.close()


def test_made_outside_a_loop_and_awaited_inside_one(impl):
    # The call does nothing but make the coroutine: the permits are taken,
    # and the loop found, when it is awaited.
    sem = impl.Semaphore(1)
    first = sem.async_acquire()
    second = sem.async_acquire(timeout=TIMEOUT)

    async def body() -> None:
        assert sem.value == 1
        assert await first is True
        waiting = asyncio.ensure_future(second)
        await queued(sem, 1)
        sem.release()
        assert await waiting is True
        sem.release()

    run(body)
    settled(sem, 1)


def test_awaited_with_no_running_loop_raises_and_takes_nothing(impl):
    # Driven by hand, outside any loop: an uncontended acquire needs no
    # loop; one that would wait has no loop to wait on.
    sem = impl.Semaphore(1)
    coro = sem.async_acquire()
    with pytest.raises(StopIteration):
        coro.send(None)
    coro = sem.async_acquire()
    with pytest.raises(RuntimeError, match="no running event loop"):
        coro.send(None)
    assert sem.value == 0 and sem.waiting == 0
    sem.release()
    settled(sem, 1)


def _outcome(call: Callable[[], Any]) -> tuple[str, str]:
    try:
        return "returned", repr(call())
    except Exception as exc:
        return type(exc).__name__, str(exc)


class _Index:
    def __index__(self) -> int:
        return 1


COUNTS = [1, 0, -1, True, 1.0, _Index(), "1", None, 2**62, 2**63, 3]
NO_WAIT = [(True, 0), (True, -1), (False, None), (True, float("nan")), (False, 0.5)]
NO_WAIT += [(True, threading.TIMEOUT_MAX * 2), (True, "1"), (True, float("-inf"))]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("state", ["open", "closed", "empty"])
def test_every_argument_error_is_that_of_acquire(impl, kind, state):
    # Each pair of arguments on a fresh semaphore, once through acquire()
    # and once through async_acquire() (and hold() against async_hold()):
    # the same outcome, exception type and message, and the same state.
    def fresh() -> Any:
        sem = make(impl, kind, 2)
        if state == "closed":
            sem.close()
        elif state == "empty":
            sem.drain()
        return sem

    async def body() -> None:
        for n, (blocking, timeout) in itertools.product(COUNTS, NO_WAIT):
            a, b = fresh(), fresh()
            sync = _outcome(lambda a=a, b=blocking, t=timeout, n=n: a.acquire(b, t, n=n))
            try:
                done = "returned", repr(await b.async_acquire(blocking, timeout, n=n))
            except Exception as exc:
                done = type(exc).__name__, str(exc)
            assert done == sync, (n, blocking, timeout)
            assert (a.value, a.waiting) == (b.value, b.waiting)
            if blocking and timeout is not None:
                a, b = fresh(), fresh()
                sync = _outcome(lambda a=a, t=timeout, n=n: a.hold(t, n=n).__enter__())
                try:
                    done = "returned", repr(await b.async_hold(timeout, n=n).__aenter__())
                except Exception as exc:
                    done = type(exc).__name__, str(exc)
                assert done[0] == sync[0] and done[1] == sync[1].replace(repr(a), repr(b))
                assert (a.value, a.waiting) == (b.value, b.waiting)

    run(body)


@pytest.mark.parametrize("kind", KINDS)
def test_async_with_on_a_closed_semaphore(impl, kind):
    sem = make(impl, kind, 1)
    sem.close()

    async def body() -> None:
        with pytest.raises(SemaphoreClosed):
            async with sem:
                raise AssertionError("entered a closed semaphore")
        with pytest.raises(SemaphoreClosed):
            async with sem.async_hold(0.5):
                raise AssertionError("entered a closed semaphore")

    run(body)
    assert sem.value == 1 and sem.waiting == 0


def test_the_largest_and_smallest_timeouts(impl):
    # threading.TIMEOUT_MAX is a wait like any other (the loop's timer far
    # off); a timeout of a nanosecond gives up at once without a grant.
    sem = impl.Semaphore(0)

    async def body() -> None:
        task = asyncio.ensure_future(sem.async_acquire(timeout=threading.TIMEOUT_MAX))
        await queued(sem, 1)
        threading.Thread(target=sem.release).start()
        assert await task is True
        assert await sem.async_acquire(timeout=1e-9) is False
        with pytest.raises(ValueError, match="n must be one or more"):
            await sem.async_acquire(timeout=threading.TIMEOUT_MAX, n=0)

    run(body)
    settled(sem, 0)
    assert sem.statistics().timeouts == 1


# ---------------------------------------------------------------------------
# Cancellation, at every point and by every tool.


def test_cancelled_before_its_first_step(impl):
    sem = impl.Semaphore(1)

    async def body() -> None:
        task = asyncio.ensure_future(sem.async_acquire())
        task.cancel()  # before the loop ever ran it
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sem.value == 1 and sem.waiting == 0

    run(body)
    settled(sem, 1)
    assert sem.statistics().acquisitions == 0


@pytest.mark.parametrize(
    "name",
    c_row_falls_short(
        "the binding's uncontended __aenter__ takes the permit when called, "
        "not when awaited (its done awaitable is what makes `async with` cheap); "
        "a task made of it and cancelled before its first step keeps the permit"
    ),
)
def test_aenter_wrapped_in_a_task_cancelled_before_its_first_step(name):
    # `async with` calls __aenter__ and awaits it in one step, so nothing
    # can come in between. A caller that wraps the call in a task (or
    # wait_for(), gather()) and cancels it before the task first runs never
    # sees a permit: asyncio.Semaphore's __aenter__, a coroutine function,
    # takes none then, and neither does the pure-Python twin's.
    impl = _get(name)
    sem = impl.Semaphore(1)

    async def body() -> None:
        task = asyncio.ensure_future(sem.__aenter__())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(body)
    assert sem.value == 1


class Thrown(Exception):
    pass


@pytest.mark.parametrize("when", ["queued", "granted"])
def test_an_exception_thrown_into_the_coroutine(impl, when):
    # coro.throw() where the task would get a CancelledError: any exception
    # takes it out of the queue, passing on what it was granted.
    sem = impl.Semaphore(0, track_holders=True)

    async def body() -> None:
        coro = sem.async_acquire(n=2)
        coro.send(None)
        assert sem.waiting == 1
        if when == "granted":
            sem.release(2)
            assert sem.value == 0 and sem.waiting == 0
        with pytest.raises(Thrown):
            coro.throw(Thrown())
        assert sem.value == (2 if when == "granted" else 0)
        assert sem.waiting == 0
        with pytest.raises(RuntimeError):
            coro.send(None)  # finished: it cannot be stepped again

    run(body)
    settled(sem, 2 if when == "granted" else 0)
    stats = sem.statistics()
    assert stats.interrupts == 1 and stats.acquisitions == 0


def test_a_coroutine_stepped_again_before_its_wake_up(impl):
    # A driver that resumes the coroutine with no wake-up (what a buggy
    # scheduler would do) gets asyncio's error, and the wait is left.
    sem = impl.Semaphore(0)

    async def body() -> None:
        coro = sem.async_acquire()
        coro.send(None)
        with pytest.raises(RuntimeError):
            coro.send(None)
        assert sem.waiting == 0
        sem.release()
        assert sem.value == 1

    run(body)
    settled(sem, 1)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_or_system_exit_thrown_into_a_waiting_coroutine(impl, exc_type):
    sem = impl.Semaphore(0)

    async def body() -> None:
        coro = sem.async_acquire()
        coro.send(None)
        with pytest.raises(exc_type):
            coro.throw(exc_type())
        assert sem.waiting == 0

    run(body)
    sem.release()
    settled(sem, 1)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_a_task_raising_keyboard_interrupt_leaves_the_others_clean(impl, exc_type):
    # A task that raises KeyboardInterrupt or SystemExit inside `async with`
    # takes the loop down with it; the semaphore's permit comes back, and
    # the task queued behind it is cancelled by the runner's clean-up and
    # leaves the queue.
    sem = impl.Semaphore(1)

    async def body() -> None:
        entered = asyncio.Event()

        async def holder() -> None:
            async with sem:
                entered.set()
                await queued(sem, 1)
                raise exc_type()

        async def behind() -> None:
            async with sem:
                raise AssertionError("served after the loop went down")

        tasks = [asyncio.ensure_future(holder())]
        await entered.wait()
        tasks.append(asyncio.ensure_future(behind()))
        await asyncio.sleep(TIMEOUT)

    with pytest.raises(exc_type):
        run(body)
    settled(sem, 1)
    assert sem.statistics().interrupts == 1


def test_asyncio_shield_keeps_the_inner_acquire(impl):
    # shield(): the outer await is cancelled, the inner acquire goes on and
    # takes the permit, which is then the inner task's to hand back.
    sem = impl.Semaphore(0)

    async def body() -> None:
        inner = asyncio.ensure_future(sem.async_acquire())
        outer = asyncio.ensure_future(asyncio.shield(inner))
        await queued(sem, 1)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        assert sem.waiting == 1  # the shielded wait still queued
        sem.release()
        assert await inner is True
        assert sem.value == 0
        sem.release()

    run(body)
    settled(sem, 1)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup is 3.11's")
def test_a_task_group_that_fails_cancels_its_queued_tasks(impl):
    sem = impl.BoundedSemaphore(2, track_holders=True)

    async def body() -> None:
        async def hold_forever() -> None:
            async with sem:
                await asyncio.sleep(TIMEOUT)

        async def fail() -> None:
            await queued(sem, 3)
            raise Thrown()

        async def in_a_group() -> None:
            async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
                for _ in range(5):
                    group.create_task(hold_forever())
                group.create_task(fail())

        with pytest.raises(BaseException) as raised:
            await in_a_group()
        assert [type(e) for e in raised.value.exceptions] == [Thrown]  # type: ignore[attr-defined]

    run(body)
    settled(sem, 2)
    stats = sem.statistics()
    assert stats.acquisitions == 2 and stats.interrupts == 3


@pytest.mark.parametrize("tool", ["wait_for", "timeout"])
def test_timeouts_racing_the_grant_lose_and_duplicate_nothing(impl, tool):
    # The grant and the timeout due in the same turn of the loop, many times
    # over: whichever wins, the permit ends either with the task (which
    # gives it back) or free, never both nor neither.
    if tool == "timeout" and sys.version_info < (3, 11):
        pytest.skip("asyncio.timeout() is 3.11's")
    sem = impl.Semaphore(0, track_holders=True)
    rounds = 60

    async def body() -> int:
        loop = asyncio.get_running_loop()
        got = 0
        for i in range(rounds):
            delay = 0.001 * (i % 3)
            loop.call_later(0.001, sem.release)
            try:
                if tool == "wait_for":
                    ok = await asyncio.wait_for(sem.async_acquire(), 0.001 + delay / 3)
                else:
                    async with asyncio.timeout(0.001 + delay / 3):  # type: ignore[attr-defined]
                        ok = await sem.async_acquire()
            except (asyncio.TimeoutError, TimeoutError):
                ok = False
            await asyncio.sleep(0.003)
            assert sem.waiting == 0
            if ok:
                got += 1
                sem.release()
            assert sem.value == 1, i
            assert sem.acquire(False)
        return got

    got = run(body)
    sem.release()  # the last round's
    settled(sem, 1)
    assert sem.statistics().acquisitions == got + rounds


def test_cancelled_inside_async_with_and_during_exit(impl):
    # Cancelled in the body: __aexit__ releases. __aexit__ itself has no
    # point at which a cancellation can land: it releases before anything
    # can suspend.
    sem = impl.BoundedSemaphore(1)

    async def body() -> None:
        entered = asyncio.Event()

        async def user() -> None:
            async with sem:
                entered.set()
                await asyncio.sleep(TIMEOUT)

        task = asyncio.ensure_future(user())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sem.value == 1

    run(body)
    settled(sem, 1)


# ---------------------------------------------------------------------------
# Loops: stopped, closed, moved between threads, of another kind, in debug
# mode, with eager tasks.


def test_a_loop_stopped_and_run_again_gets_its_grant(impl):
    sem = impl.Semaphore(0)
    loop_b = LoopThread()
    try:
        waiting = loop_b.submit(sem.async_acquire(timeout=TIMEOUT))
        wait_until(lambda: sem.waiting == 1, what="the task to queue")
        loop_b.loop.call_soon_threadsafe(loop_b.loop.stop)
        loop_b.thread.join(TIMEOUT)
        sem.release()  # sent to the stopped loop: kept for its task
        assert sem.value == 0 and sem.waiting == 0
        loop_b.thread = threading.Thread(target=loop_b.loop.run_forever, daemon=True)
        loop_b.thread.start()
        assert waiting.result(TIMEOUT) is True
    finally:
        loop_b.__exit__()
    settled(sem, 0)


def test_a_release_from_the_thread_a_loop_has_left(impl):
    # The task queued while its loop ran in thread T1; the loop now runs in
    # T2, and T1, still alive, releases. The wake-up must reach the loop as
    # from any other thread (thread-safely, waking its selector): delivered
    # as if T1 still ran the loop, it sat in the loop's ready queue while
    # the loop slept in its selector, and the task was never woken.
    sem = impl.Semaphore(0)
    loop = asyncio.new_event_loop()
    first_run = threading.Event()
    moved = threading.Event()
    released = threading.Event()

    def t1() -> None:
        loop.call_soon(first_run.set)
        loop.run_forever()  # until stopped, once the task is queued
        moved.wait(TIMEOUT)
        sem.release()
        released.set()

    one = threading.Thread(target=t1, daemon=True)
    one.start()
    first_run.wait(TIMEOUT)
    waiting = asyncio.run_coroutine_threadsafe(sem.async_acquire(), loop)
    wait_until(lambda: sem.waiting == 1, what="the task to queue")
    loop.call_soon_threadsafe(loop.stop)
    two = threading.Thread(target=loop.run_forever, daemon=True)
    wait_until(lambda: not loop.is_running(), what="the loop to stop")
    two.start()
    wait_until(loop.is_running, what="the loop to run in its new thread")
    moved.set()
    released.wait(TIMEOUT)
    try:
        assert waiting.result(2.0) is True
    finally:
        loop.call_soon_threadsafe(loop.stop)
        two.join(TIMEOUT)
        one.join(TIMEOUT)
        if not waiting.done():
            waiting.cancel()
            loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()
    settled(sem, 0)


def test_a_loop_whose_thread_exits_with_its_task_queued(impl):
    # The loop's thread stops the loop and exits, the task still queued. A
    # release sends the grant to the loop, which will never run it; once the
    # loop is closed and the task collected, the permit is passed on.
    sem = impl.Semaphore(0)
    loop_b = LoopThread()
    loop_b.submit(sem.async_acquire())
    wait_until(lambda: sem.waiting == 1, what="the task to queue")
    loop_b.loop.call_soon_threadsafe(loop_b.loop.stop)
    loop_b.thread.join(TIMEOUT)
    (thread,) = queue_waiters(sem, [1], timeout=TIMEOUT)
    sem.release()
    assert sem.waiting == 1 and not thread.done.is_set()
    for task in asyncio.all_tasks(loop_b.loop):
        task._log_destroy_pending = False  # the test drops it on purpose
    loop_b.loop.close()
    del task
    gc.collect()
    thread.join()
    assert thread.result is True
    settled(sem, 0)
    assert sem.statistics().interrupts == 1


class _OwnFuture(asyncio.Future):  # type: ignore[type-arg]
    made = 0


class _OwnFutureLoop(asyncio.SelectorEventLoop):
    """A loop that makes its own futures, as uvloop does."""

    def create_future(self) -> asyncio.Future[Any]:
        _OwnFuture.made += 1
        return _OwnFuture(loop=self)


def test_a_loop_that_makes_its_own_futures(impl):
    sem = impl.Semaphore(0)

    async def body() -> None:
        before = _OwnFuture.made
        task = asyncio.ensure_future(sem.async_acquire())
        await queued(sem, 1)
        assert _OwnFuture.made > before
        threading.Thread(target=sem.release).start()
        assert await task is True
        assert await sem.async_acquire(timeout=0.01) is False
        task = asyncio.ensure_future(sem.async_acquire())
        await queued(sem, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        sem.release()

    run(body, loop_factory=_OwnFutureLoop)
    settled(sem, 1)


def test_debug_mode_reports_nothing(impl):
    # In debug mode asyncio checks that a loop's non-thread-safe methods are
    # called from its own thread, and reports what it finds through the
    # exception handler (LoopRun fails on any report).
    sem = impl.Semaphore(0)

    async def body() -> None:
        with LoopThread() as loop_b:
            loop_b.loop.set_debug(True)
            here = asyncio.ensure_future(sem.async_acquire(timeout=TIMEOUT))
            await queued(sem, 1)
            there = asyncio.wrap_future(loop_b.submit(sem.async_acquire()))
            await queued(sem, 2)
            sem.release()  # to the task here, from its own thread
            assert await here is True
            threading.Thread(target=sem.release).start()  # to loop B's task
            assert await there is True
            again = asyncio.ensure_future(sem.async_acquire())
            await queued(sem, 1)
            loop_b.call(sem.release)  # from loop B's thread to a task here
            assert await again is True
            assert await sem.async_acquire(timeout=0.01) is False
            sem.release(3)
            async with sem:
                pass

    run(body, debug=True)
    settled(sem, 3)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12's")
def test_eager_tasks(impl):
    # An eager task runs its first step inside create_task(): an uncontended
    # acquire is done before create_task() returns, a contended one queues
    # there; both are still the task's own, and cancellation works.
    sem = impl.Semaphore(1, track_holders=True)

    async def body() -> None:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]

        async def take(n: int) -> bool:
            return await sem.async_acquire(n=n)

        # The holder is the task, but its name is not compared: 3.12's
        # create_task() names a task only after the factory returned it
        # (after an eager task's first step), and 3.13.0's renames it.
        first = loop.create_task(take(1))
        assert first.done() and first.result() is True
        assert [h.task is not None for h in sem.holders()] == [True]
        second = loop.create_task(take(1))
        assert sem.waiting == 1 and not second.done()
        third = loop.create_task(take(1))
        assert sem.waiting == 2
        third.cancel()
        threading.Thread(target=sem.release).start()
        assert await second is True
        with pytest.raises(asyncio.CancelledError):
            await third
        assert [h.task is not None for h in sem.holders()] == [True]
        sem.release()

    run(body)
    settled(sem, 1)


# ---------------------------------------------------------------------------
# Garbage collection.


def test_a_waiting_task_nobody_references_is_not_collected(impl):
    # asyncio.Semaphore keeps a waiting task alive through its queue of
    # futures, so the fire-and-forget pattern works: create_task() with the
    # task dropped, then the task waits. Here too: the semaphore's queue
    # keeps the task alive until its turn comes, and it then runs.
    sem = impl.Semaphore(0)
    ran: list[int] = []

    async def body() -> None:
        async def worker(i: int) -> None:
            async with sem:
                ran.append(i)

        for i in range(3):
            asyncio.ensure_future(worker(i))  # noqa: RUF006 (the task is not kept)
        await queued(sem, 3)
        gc.collect()
        assert sem.waiting == 3
        sem.release()
        await until(lambda: len(ran) == 3, "the dropped tasks to run")

    run(body)
    assert ran == [0, 1, 2]
    settled(sem, 1)


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "non-fair"])
def test_dropped_tasks_all_run_while_threads_compete_and_the_collector_runs(impl, fair):
    # Tasks nobody refers to, woken (non-fair: to compete, often in vain)
    # by releases from threads that barge, with collections in between:
    # each task stays alive until it is served, whatever its wake-ups.
    sem = impl.Semaphore(2, fair=fair)
    done: list[int] = []
    stop = threading.Event()

    def barger() -> None:
        while not stop.is_set():
            if sem.acquire(timeout=TIMEOUT):
                sem.release()

    async def body() -> None:
        async def worker(i: int) -> None:
            async with sem:
                await asyncio.sleep(0)
            done.append(i)

        threads = [threading.Thread(target=barger, daemon=True) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            for i in range(40):
                asyncio.ensure_future(worker(i))  # noqa: RUF006 (the task is not kept)
                if i % 8 == 0:
                    gc.collect()
                    await asyncio.sleep(0)
            while len(done) < 40:
                gc.collect()
                await asyncio.sleep(0.001)
        finally:
            stop.set()
            for thread in threads:
                thread.join(TIMEOUT)

    run(body)
    assert sorted(done) == list(range(40))
    settled(sem, 2)


def test_a_dropped_task_waiting_on_a_pool_gets_its_resource():
    # The same through ResourcePool, which waits on its semaphore (of the
    # implementation in use).
    from fastsem import ResourcePool

    pool = ResourcePool(object, max_size=1)
    used: list[object] = []

    async def body() -> None:
        async def worker() -> None:
            async with pool.async_lease() as res:
                used.append(res)

        held = await pool.async_acquire()
        asyncio.ensure_future(worker())  # noqa: RUF006 (the task is not kept)
        await until(lambda: pool.stats()["waiting"] == 1, "the task to queue")
        gc.collect()
        pool.release(held)
        await until(lambda: len(used) == 1, "the dropped task to run")

    run(body)
    assert pool.stats()["waiting"] == 0
    pool.close()


def test_a_semaphore_and_its_waiting_task_dropped_together(impl):
    # Nothing refers to the semaphore nor to its waiting task any more:
    # both may go (the task's coroutine leaves the queue on its way), with
    # no crash and no report but asyncio's of the pending task.
    ref: list[Any] = []

    async def body() -> None:
        sem = impl.Semaphore(0)
        task = asyncio.ensure_future(sem.async_acquire())
        await queued(sem, 1)
        task._log_destroy_pending = False  # dropped on purpose
        ref.append(weakref.ref(sem))
        del sem, task
        for _ in range(3):
            gc.collect()
            await asyncio.sleep(0)

    run(body)
    gc.collect()
    assert ref[0]() is None


def test_a_dropped_task_with_a_timeout_times_out(impl):
    # A timed wait is kept alive by its timer too, and ends at its deadline.
    sem = impl.Semaphore(0)
    results: list[bool] = []

    async def body() -> None:
        async def worker() -> None:
            results.append(await sem.async_acquire(timeout=0.02))

        asyncio.ensure_future(worker())  # noqa: RUF006 (dropped on purpose)
        await queued(sem, 1)
        gc.collect()
        await until(lambda: results == [False], "the dropped task to time out")

    run(body)
    settled(sem, 0)
    assert sem.statistics().timeouts == 1


# ---------------------------------------------------------------------------
# Several loops at once; close(), resize() and drain() while tasks wait;
# holders() and statistics() at the end.


def test_several_loops_with_close_resize_and_drain_while_tasks_wait(impl):
    sem = impl.BoundedSemaphore(3, track_holders=True)
    assert sem.drain() == 3
    sem.release(3)  # the drain's permits given back: its holder record goes

    async def body() -> None:
        with LoopThread() as loop_b:
            held = [await sem.async_acquire(), await sem.async_acquire(n=2)]
            assert held == [True, True] and sem.value == 0
            big = asyncio.wrap_future(loop_b.submit(sem.async_acquire(n=3)))
            await queued(sem, 1)
            small = asyncio.ensure_future(sem.async_acquire())
            await queued(sem, 2)
            thread = Waiter(sem, name="t", timeout=TIMEOUT).start()
            await queued(sem, 3)
            assert sem.drain() == 0  # fair: nothing free while they wait
            sem.resize(2)  # the big request can never fit: turned away
            with pytest.raises(ValueError, match="bounded at 2"):
                await big
            assert sem.waiting == 2
            # A task of loop B gives back ours: one permit to the lowered
            # bound, one each to the small task and the thread.
            loop_b.call(lambda: sem.release(3))
            assert await small is True
            await until(thread.done.is_set, "the thread to finish")
            assert thread.result is True
            later = asyncio.wrap_future(loop_b.submit(sem.async_acquire()))
            await queued(sem, 1)
            sem.close()
            with pytest.raises(SemaphoreClosed):
                await later
            sem.release()  # the small task's
            sem.release()  # the thread's
            assert sem.value == 2

    run(body)
    settled(sem, 2)
    stats = sem.statistics()
    assert stats.acquisitions == 4 and stats.contended == 2
