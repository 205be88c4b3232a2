"""The async API's own pieces: the pure-Python twin's two kinds of waiter in
one queue, AsyncHold, tasks as holders, and a task whose event loop closed
while it waited. (tests/test_async.py is the behaviour suite over both
implementations; here are the cases that need a look inside, or that pin
down the shared policy of fastsem._common.)

Every wait is bounded: a coroutine runs under asyncio.wait_for, a thread is
joined with a timeout, so a bug fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from conftest import queue_waiters, wait_until

import fastsem._pyfastsem as python_impl
from fastsem._common import AsyncHold, Hold, SemaphoreClosed
from fastsem._pyfastsem import _GRANTED as GRANTED

LIMIT = 10.0  # seconds: any wait here that takes longer is a bug


def run(coro: Any) -> Any:
    """Runs coro on a fresh event loop in this thread, bounded by LIMIT."""
    return asyncio.run(asyncio.wait_for(coro, LIMIT))


async def until(predicate: Any, what: str = "condition") -> None:
    """Lets the loop run until predicate() is true; fails after LIMIT."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIMIT
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


def finish_now(awaitable: Any) -> Any:
    """Steps awaitable (a coroutine, or any object with __await__) once and
    returns its result: fails if it suspended (an await that needed the event
    loop) instead of finishing in that step."""
    steps = awaitable.__await__()  # an iterator, all the protocol asks for
    try:
        yielded = next(steps)
    except StopIteration as done:
        return done.value
    getattr(steps, "close", lambda: None)()
    pytest.fail(f"the coroutine suspended (it yielded {yielded!r})")


class LoopThread:
    """An event loop running in a thread of its own, for waiters that are
    tasks on another loop than the test's."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def submit(self, coro: Any) -> Any:
        """Starts coro as a task on the loop; returns its concurrent future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(LIMIT)
        assert not self.thread.is_alive(), "the loop's thread is stuck"
        self.loop.close()


# ---------------------------------------------------------------------------
# The twin's waiters: threads and tasks in one queue.


def test_a_task_and_a_thread_wait_in_one_queue_each_of_its_kind():
    sem = python_impl.Semaphore(0)

    async def main() -> None:
        task = asyncio.create_task(sem.async_acquire())
        await until(lambda: sem.waiting == 1, "the task to queue")
        (thread,) = queue_waiters(sem, [1])
        task_waiter, thread_waiter = sem._queue
        # A task's waiter holds its loop and no lock; a thread's the reverse.
        assert task_waiter.loop is asyncio.get_running_loop()
        assert not hasattr(task_waiter, "wakeup")
        assert thread_waiter.loop is None and thread_waiter.wakeup.locked()
        sem.release()
        assert await task is True
        assert not thread.done.is_set()
        sem.release()
        thread.join()
        assert thread.result is True

    run(main())
    assert sem.value == 0 and sem.waiting == 0


def test_threads_and_tasks_are_served_in_arrival_order(impl):
    sem = impl.Semaphore(0)
    order: list[str] = []
    lock = threading.Lock()

    def thread_acquires(name: str) -> None:
        if sem.acquire(timeout=LIMIT):
            with lock:
                order.append(name)

    async def task_acquires(name: str) -> None:
        if await sem.async_acquire(timeout=LIMIT):
            with lock:
                order.append(name)

    async def main() -> None:
        tasks, threads = [], []
        for i in range(3):
            tasks.append(asyncio.create_task(task_acquires(f"task{i}")))
            await until(lambda n=2 * i + 1: sem.waiting == n, f"task{i} to queue")
            threads.append(threading.Thread(target=thread_acquires, args=(f"thread{i}",)))
            threads[-1].start()
            await until(lambda n=2 * i + 2: sem.waiting == n, f"thread{i} to queue")
        for i in range(6):  # one permit at a time: who got it is the next in order
            sem.release()
            await until(lambda n=i + 1: len(order) == n, f"waiter {i} to be served")
        await asyncio.gather(*tasks)
        for thread in threads:
            thread.join(LIMIT)

    run(main())
    assert order == [f"{kind}{i}" for i in range(3) for kind in ("task", "thread")]


def test_an_uncontended_acquire_finishes_without_suspending(impl):
    sem = impl.Semaphore(2)
    # No event loop at all: a coroutine that needs none runs to its end in
    # one step.
    assert finish_now(sem.async_acquire()) is True
    assert finish_now(sem.async_acquire(False)) is True
    assert finish_now(sem.async_acquire(False)) is False
    sem.release(2)
    assert finish_now(sem.__aenter__()) is None
    assert sem.value == 1
    assert finish_now(sem.__aexit__(None, None, None)) is None
    assert sem.value == 2
    assert finish_now(sem.async_hold(n=2).__aenter__()) is sem
    assert sem.value == 0


def test_errors_are_raised_when_the_coroutine_is_awaited(impl):
    sem = impl.BoundedSemaphore(1)
    coro = sem.async_acquire(n=0)  # nothing raised yet
    with pytest.raises(ValueError, match="n must be one or more"):
        finish_now(coro)
    with pytest.raises(ValueError, match="can't specify timeout for non-blocking acquire"):
        finish_now(sem.async_acquire(False, 1.0))
    sem.close()
    with pytest.raises(SemaphoreClosed):
        finish_now(sem.async_acquire())


def test_a_release_from_another_thread_reaches_the_task_through_its_loop(impl):
    sem = impl.Semaphore(0)

    async def main() -> None:
        task = asyncio.create_task(sem.async_acquire())
        await until(lambda: sem.waiting == 1, "the task to queue")
        releaser = threading.Thread(target=sem.release)
        releaser.start()
        releaser.join(LIMIT)
        assert await task is True

    run(main())
    assert sem.value == 0


def test_tasks_of_two_loops_in_two_threads(impl):
    sem = impl.Semaphore(0)
    other = LoopThread()
    try:
        there = other.submit(sem.async_acquire())
        wait_until(lambda: sem.waiting == 1, what="the other loop's task to queue")

        async def main() -> None:
            here = asyncio.create_task(sem.async_acquire())
            await until(lambda: sem.waiting == 2, "this loop's task to queue")
            sem.release()  # to the other loop's task, the older
            assert there.result(LIMIT) is True
            assert not here.done()
            sem.release()
            assert await here is True

        run(main())
    finally:
        other.stop()
    assert sem.value == 0 and sem.waiting == 0


def test_a_timed_out_task_leaves_the_queue_no_earlier_than_its_deadline(impl):
    sem = impl.Semaphore(0)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await sem.async_acquire(timeout=0.05) is False
        # asyncio may run a timer up to its clock's resolution early: the
        # waiter must look, find time left, and wait again.
        resolution = time.get_clock_info("monotonic").resolution
        assert loop.time() - began >= 0.05 - resolution
        assert sem.waiting == 0
        assert await sem.async_acquire(timeout=-1) is False

    run(main())
    stats = sem.statistics()
    assert stats.timeouts == 2 and stats.acquisitions == 0 and stats.waiting == 0


def test_a_task_that_times_out_lets_the_next_waiter_go(impl):
    sem = impl.Semaphore(0)

    async def main() -> None:
        big = asyncio.create_task(sem.async_acquire(timeout=0.05, n=2))
        await until(lambda: sem.waiting == 1, "the big request to queue")
        small = asyncio.create_task(sem.async_acquire())
        await until(lambda: sem.waiting == 2, "the small request to queue")
        sem.release()  # one free: the head wants two, the small one waits behind it
        assert not small.done()
        assert await big is False  # its deadline passes: the small one goes
        assert await small is True

    run(main())
    assert sem.value == 0


def test_non_fair_tasks_compete_for_the_permits(impl):
    sem = impl.Semaphore(0, fair=False)

    async def main() -> None:
        tasks = [asyncio.create_task(sem.async_acquire()) for _ in range(3)]
        await until(lambda: sem.waiting == 3, "three tasks to queue")
        threading.Thread(target=sem.release, args=(3,)).start()
        assert await asyncio.gather(*tasks) == [True, True, True]

    run(main())
    assert sem.value == 0 and sem.waiting == 0


def test_close_and_resize_turn_waiting_tasks_away(impl):
    sem = impl.BoundedSemaphore(2)

    async def main() -> None:
        assert await sem.async_acquire(n=2)
        big = asyncio.create_task(sem.async_acquire(n=2))
        small = asyncio.create_task(sem.async_acquire())
        await until(lambda: sem.waiting == 2, "two tasks to queue")
        sem.resize(1)
        with pytest.raises(ValueError, match="cannot acquire 2 permits from a semaphore bounded"):
            await big
        assert sem.waiting == 1
        sem.close()
        with pytest.raises(SemaphoreClosed, match="the semaphore is closed"):
            await small

    run(main())
    assert sem.waiting == 0


# ---------------------------------------------------------------------------
# Cancellation: never a lost or duplicated permit.


def test_a_task_cancelled_while_queued_takes_nothing(impl):
    sem = impl.Semaphore(0)

    async def main() -> None:
        task = asyncio.create_task(sem.async_acquire())
        await until(lambda: sem.waiting == 1, "the task to queue")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sem.waiting == 0
        sem.release()
        assert sem.value == 1

    run(main())
    stats = sem.statistics()
    assert stats.interrupts == 1 and stats.acquisitions == 0


@pytest.mark.parametrize("releaser", ["loop", "thread"])
def test_a_task_cancelled_after_its_grant_passes_the_permits_on(impl, releaser):
    # Granted but not yet resumed, the task never saw the permits: its
    # cancellation must hand them to the next waiter, a thread here. Released
    # in the loop's own thread, the task's future is completed at once and
    # the cancellation reaches the task as it resumes; released from another
    # thread, the news is still in the loop's queue when the cancellation
    # comes (this task does not yield in between).
    sem = impl.Semaphore(0)

    async def main() -> None:
        task = asyncio.create_task(sem.async_acquire())
        await until(lambda: sem.waiting == 1, "the task to queue")
        (thread,) = queue_waiters(sem, [1])
        waiter = sem._queue[0] if impl is python_impl else None
        if releaser == "loop":
            sem.release()
        else:
            other = threading.Thread(target=sem.release)
            other.start()
            other.join(LIMIT)
        if waiter is not None:  # the twin: the state is the one meant
            assert waiter.state == GRANTED and waiter.future.done() == (releaser == "loop")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        thread.join()
        assert thread.result is True

    run(main())
    assert sem.value == 0 and sem.waiting == 0
    stats = sem.statistics()
    assert stats.acquisitions == 1 and stats.interrupts == 1


def test_a_coroutine_closed_while_queued_leaves_the_queue(impl):
    # What happens when a queued task is garbage-collected: its coroutine is
    # closed, and GeneratorExit reaches the await.
    sem = impl.Semaphore(0)

    async def main() -> None:
        coro = sem.async_acquire()
        coro.send(None)  # queued, suspended at its await
        assert sem.waiting == 1
        coro.close()
        assert sem.waiting == 0

    run(main())
    sem.release()
    assert sem.value == 1
    assert sem.statistics().interrupts == 1


# ---------------------------------------------------------------------------
# A task whose event loop was closed while it waited.


def queue_on_a_closed_loop(sem: Any, n: int = 1) -> tuple[asyncio.AbstractEventLoop, Any]:
    """A task queued in sem.async_acquire(n=n) on a loop that is then closed,
    with the task still pending: whatever is sent to it never arrives."""
    loop = asyncio.new_event_loop()
    before = sem.waiting
    task = loop.create_task(sem.async_acquire(n=n))
    while sem.waiting == before:
        loop.run_until_complete(asyncio.sleep(0.001))
    loop.close()
    return loop, task


def forget(task: Any) -> None:
    """Closes a pending task's coroutine (what the garbage collector would
    do), so that it ends without a "Task was destroyed" warning."""
    task._log_destroy_pending = False
    task.get_coro().close()


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "non-fair"])
def test_a_grant_that_cannot_reach_its_closed_loop_passes_on(impl, fair):
    sem = impl.Semaphore(0, fair=fair)
    _, task = queue_on_a_closed_loop(sem)
    (thread,) = queue_waiters(sem, [1])
    sem.release()  # the task's grant (fair) or wake-up (non-fair) fails: on to the thread
    thread.join()
    assert thread.result is True
    assert sem.value == 0 and sem.waiting == 0
    stats = sem.statistics()
    assert stats.acquisitions == 1 and stats.interrupts == 1
    forget(task)
    assert sem.value == 0 and sem.statistics().interrupts == 1


def test_a_grant_lost_with_its_loop_passes_on_when_the_task_is_collected(impl):
    # The grant was sent while the loop was still open, and the loop closed
    # before it ran the wake-up: the task can never resume. When it is
    # garbage-collected, its coroutine is closed, and the permits go on.
    sem = impl.Semaphore(0)
    loop = asyncio.new_event_loop()
    task = loop.create_task(sem.async_acquire())
    while sem.waiting == 0:
        loop.run_until_complete(asyncio.sleep(0.001))
    (thread,) = queue_waiters(sem, [1])
    sem.release()  # to the task, through its loop, which never runs again
    loop.close()
    assert sem.waiting == 1 and not thread.done.is_set()
    task._log_destroy_pending = False
    del task
    gc.collect()
    thread.join()
    assert thread.result is True
    assert sem.value == 0 and sem.waiting == 0
    stats = sem.statistics()
    assert stats.acquisitions == 1 and stats.interrupts == 1


def test_permits_given_back_by_a_dead_grant_serve_everyone_they_fit(impl):
    sem = impl.Semaphore(0)
    _, task = queue_on_a_closed_loop(sem, n=2)
    threads = queue_waiters(sem, [1, 1])
    sem.release(2)
    for thread in threads:
        thread.join()
        assert thread.result is True
    assert sem.value == 0 and sem.waiting == 0
    forget(task)


def test_resize_and_close_with_a_closed_loop(impl):
    sem = impl.BoundedSemaphore(2)
    sem.acquire(n=2)
    _, big = queue_on_a_closed_loop(sem, n=2)
    _, small = queue_on_a_closed_loop(sem, n=1)
    # Each of the three outcomes below cannot reach its task: the wait was
    # abandoned, an interrupt, as a cancelled one is.
    sem.resize(1)  # turns the big request away: nothing raised here
    assert sem.waiting == 1 and sem.statistics().interrupts == 1
    sem.resize(2)
    sem.release()  # granted to the small request, which cannot take it: back
    assert sem.value == 1 and sem.waiting == 0
    assert sem.statistics().interrupts == 2
    sem.acquire()
    _, last = queue_on_a_closed_loop(sem)
    sem.close()  # nothing raised here
    assert sem.waiting == 0 and sem.statistics().interrupts == 3
    sem.release(2)
    assert sem.value == 2
    for task in (big, small, last):
        forget(task)
    stats = sem.statistics()
    assert sem.value == 2 and stats.interrupts == 3 and stats.acquisitions == 2


class _RefusingLoop(asyncio.SelectorEventLoop):
    """A running loop whose call_soon_threadsafe fails as a closed loop's does,
    when told to."""

    refuse = False

    def call_soon_threadsafe(self, *args: Any, **kwargs: Any) -> Any:
        if self.refuse:
            raise RuntimeError("refused")
        return super().call_soon_threadsafe(*args, **kwargs)


def test_a_task_that_looks_after_its_grant_was_abandoned_is_told(impl):
    # The grant could not be sent, so it went on; if the task looks anyway
    # (its timer woke it), it learns that it has nothing.
    sem = impl.Semaphore(0)
    loop = _RefusingLoop()
    try:

        async def main() -> None:
            task = asyncio.create_task(sem.async_acquire(timeout=0.2))
            await until(lambda: sem.waiting == 1, "the task to queue")
            loop.refuse = True
            releaser = threading.Thread(target=sem.release)
            releaser.start()
            releaser.join(LIMIT)
            assert sem.value == 1 and sem.waiting == 0  # passed on: nobody else waits
            loop.refuse = False
            with pytest.raises(RuntimeError, match="could not be delivered"):
                await task

        loop.run_until_complete(asyncio.wait_for(main(), LIMIT))
    finally:
        loop.close()
    stats = sem.statistics()
    assert stats.interrupts == 1 and stats.acquisitions == 0 and stats.timeouts == 0


# ---------------------------------------------------------------------------
# AsyncHold, shared by both implementations.


def test_async_hold_takes_and_gives_back_n(impl):
    sem = impl.Semaphore(3)

    async def main() -> None:
        hold = sem.async_hold(n=2)
        assert type(hold) is AsyncHold
        async with hold as entered:
            assert entered is sem
            assert sem.value == 1
        assert sem.value == 3

        async def fails_inside() -> None:
            async with sem.async_hold(1.0, n=3):
                assert sem.value == 0
                raise KeyError

        with pytest.raises(KeyError):
            await fails_inside()
        assert sem.value == 3

    run(main())


def test_async_hold_times_out_as_hold_does(impl):
    sem = impl.Semaphore(0)
    with pytest.raises(TimeoutError) as sync_error:
        sem.hold(0.01, n=2).__enter__()

    async def main() -> None:
        with pytest.raises(TimeoutError) as async_error:
            async with sem.async_hold(0.01, n=2):
                pytest.fail("entered without the permits")
        assert str(async_error.value) == str(sync_error.value)
        assert str(sync_error.value) == "could not acquire 2 permits within 0.01 seconds"

    run(main())
    assert sem.value == 0 and sem.waiting == 0


def test_one_async_hold_entered_by_several_tasks(impl):
    sem = impl.Semaphore(1)
    hold = sem.async_hold()
    inside: list[int] = []

    async def worker(i: int) -> None:
        async with hold:
            inside.append(i)
            assert len(inside) == 1
            await asyncio.sleep(0)
            inside.remove(i)

    async def main() -> None:
        await asyncio.gather(*(worker(i) for i in range(5)))

    run(main())
    assert sem.value == 1


def test_async_hold_cancelled_while_waiting_holds_nothing(impl):
    sem = impl.Semaphore(0)

    async def main() -> None:
        async def enter() -> None:
            async with sem.async_hold():
                pytest.fail("entered without the permits")

        task = asyncio.create_task(enter())
        await until(lambda: sem.waiting == 1, "the task to queue")
        sem.release()
        task.cancel()  # granted, not resumed: the acquire passes it on
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert sem.value == 1 and sem.waiting == 0


class _ReceiptThenRaise:
    """A stand-in semaphore whose acquire takes the permits, notes them in the
    receipt, then raises (an exception on the way out of the acquire)."""

    def __init__(self) -> None:
        self.released: list[int] = []

    async def _async_acquire_into(self, receipt: list[int], *args: Any) -> bool:
        receipt.append(args[-1])
        raise KeyboardInterrupt

    def _acquire_into(self, receipt: list[int], *args: Any) -> bool:
        receipt.append(args[-1])
        raise KeyboardInterrupt

    def _release_from(self, receipt: list[int]) -> None:
        self.released.append(receipt.pop())


@pytest.mark.parametrize("kind", [Hold, AsyncHold])
def test_a_hold_gives_back_what_its_receipt_holds_when_entry_raises(kind):
    sem = _ReceiptThenRaise()
    hold = kind(sem, None, 3)
    enter = hold.__enter__ if kind is Hold else lambda: finish_now(hold.__aenter__())
    with pytest.raises(KeyboardInterrupt):
        enter()
    assert sem.released == [3]


def test_async_with_calls_a_subclass_release(impl):
    released: list[int] = []

    class Counting(impl.Semaphore):
        def release(self, n: int = 1) -> None:
            released.append(n)
            super().release(n)

    sem = Counting(1)

    async def main() -> None:
        async with sem:
            assert sem.value == 0

    run(main())
    assert released == [1] and sem.value == 1


# ---------------------------------------------------------------------------
# Holders: a task is a holder of its own.


def test_each_task_is_its_own_holder(impl):
    sem = impl.Semaphore(10, track_holders=True)

    async def take(n: int) -> None:
        assert await sem.async_acquire(n=n)

    async def main() -> None:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        await asyncio.create_task(take(1), name="first")
        await asyncio.create_task(take(2), name="second")
        sem.acquire(n=3)  # in main's own task

    run(main())
    sem.acquire(n=4)  # a plain thread: no task
    me = threading.get_ident()
    holders = {holder.task: holder for holder in sem.holders()}
    assert {task: holder.permits for task, holder in holders.items()} == {
        "first": 1,
        "second": 2,
        "main": 3,
        None: 4,
    }
    assert all(holder.thread_id == me for holder in holders.values())
    assert all(holder.thread_name == threading.current_thread().name for holder in holders.values())
    assert "take" in holders["first"].acquired_at[0]


def test_a_release_in_a_task_is_charged_to_that_task_first(impl):
    # Every acquisition here is made in one thread: only the task tells the
    # holders apart.
    sem = impl.Semaphore(10, track_holders=True)
    sem.acquire()  # the thread's own, outside any task: the oldest

    async def newer() -> None:
        assert await sem.async_acquire(n=3)
        # Its own 3 first, then the others' oldest first: the thread's, not
        # the newest ("older"'s), as it would be if the thread's rule ignored
        # tasks.
        sem.release(4)

    async def main() -> None:
        await asyncio.create_task(sem.async_acquire(n=2), name="older")
        await asyncio.create_task(newer(), name="newer")

    run(main())
    assert {holder.task: holder.permits for holder in sem.holders()} == {"older": 2}
    sem.acquire()
    sem.release()  # from the thread: its own first
    assert {holder.task: holder.permits for holder in sem.holders()} == {"older": 2}
    sem.release()  # nothing of its own: the oldest
    assert {holder.task: holder.permits for holder in sem.holders()} == {"older": 1}


def test_holders_need_no_asyncio(impl):
    # Tracking holders must not import asyncio to find out that no task runs.
    code = (
        "import sys, fastsem._impl as i\n"
        f"m = i.python_module if {impl is python_impl} else i.c_module\n"
        "s = m.Semaphore(2, track_holders=True)\n"
        "s.acquire(); s.release(); s.holders()\n"
        "with s.hold(): pass\n"
        "assert 'asyncio' not in sys.modules, 'asyncio was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
