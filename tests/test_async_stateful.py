"""Tasks and threads on one semaphore, driven by hypothesis against a model.

The state machine mixes tasks of two event loops, each running in a helper
thread, with plain threads: blocking and timed acquires of both kinds,
non-blocking attempts from a thread and from a task, releases from a thread
and from a task, cancellations of queued tasks (alone, and in the same step
of their loop as a release that may, or surely does, grant them first),
close(). The model is fair mode reduced to its rule: one FIFO queue, a
release grants the oldest requests that fit, in order, and a request that
leaves the queue (cancelled, timed out) lets the ones behind it through.
After every step the semaphore's value, its queue length, every waiter's
outcome and the statistics' counters must be the model's, for each
implementation on its own.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import IMPLEMENTATIONS
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from test_async import LoopThread

from fastsem import SemaphoreClosed

pytestmark = pytest.mark.thread_unsafe(
    reason="each example starts two loops and several threads: copies add only load"
)

TIMEOUT = 10.0
MAX_WAITERS = 6
# A timed acquire that cannot be granted: short, since the step waits for it.
SHORT = 0.02


class ThreadWaiter:
    """A thread blocked in acquire(); `outcome` says how it ended."""

    def __init__(self, sem, n: int, timeout: float) -> None:
        self.outcome: str | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(sem, n, timeout), daemon=True)
        self.thread.start()

    def _run(self, sem, n: int, timeout: float) -> None:
        try:
            self.outcome = "granted" if sem.acquire(timeout=timeout, n=n) else "timeout"
        except SemaphoreClosed:
            self.outcome = "closed"
        finally:
            self.done.set()


class TaskWaiter:
    """A task in async_acquire() on a loop running in another thread."""

    def __init__(self, loop_thread: LoopThread, sem, n: int, timeout: float | None) -> None:
        self.outcome: str | None = None
        self.done = threading.Event()
        self.loop_thread = loop_thread
        self.task: asyncio.Task[None] = loop_thread.call(
            lambda: loop_thread.loop.create_task(self._run(sem, n, timeout))
        )

    async def _run(self, sem, n: int, timeout: float | None) -> None:
        try:
            got = await sem.async_acquire(timeout=timeout, n=n)
            self.outcome = "granted" if got else "timeout"
        except SemaphoreClosed:
            self.outcome = "closed"
        except asyncio.CancelledError:
            self.outcome = "cancelled"
            raise
        finally:
            self.done.set()


@dataclass(eq=False)
class Request:
    """One blocking or timed acquire, as the model sees it: `expected` is
    None while it is queued, then how it must end."""

    waiter: Any
    n: int
    kind: str
    expected: str | None = None


@dataclass
class Model:
    value: int
    bound: int | None  # a BoundedSemaphore's, else None
    closed: bool = False
    queue: list[Request] = field(default_factory=list)
    acquisitions: int = 0
    contended: int = 0
    timeouts: int = 0
    interrupts: int = 0
    max_waiting: int = 0

    def can_take(self, n: int) -> bool:
        return not self.closed and not self.queue and self.value >= n

    def take(self, n: int) -> None:
        self.value -= n
        self.acquisitions += 1

    def enqueue(self, request: Request) -> None:
        self.queue.append(request)
        self.max_waiting = max(self.max_waiting, len(self.queue))

    def dispatch(self) -> None:
        while self.queue and self.queue[0].n <= self.value:
            request = self.queue.pop(0)
            self.take(request.n)
            self.contended += 1
            request.expected = "granted"

    def release_fits(self, n: int) -> bool:
        return self.bound is None or self.value + n <= self.bound

    def release(self, n: int) -> None:
        self.value += n
        self.dispatch()

    def leave(self, request: Request, outcome: str) -> None:
        self.queue.remove(request)
        request.expected = outcome
        self.dispatch()


class TasksAndThreads(RuleBasedStateMachine):
    impl: Any = None  # set by the subclass of each implementation

    def __init__(self) -> None:
        super().__init__()
        self.sem: Any = None
        self.model: Model | None = None
        self.requests: list[Request] = []
        self.loops = [LoopThread(f"loop-{i}") for i in range(2)]

    # -- helpers --

    def in_loop(self, index: int, function: Any) -> Any:
        """Runs function in loop `index`'s thread, between two of its steps."""
        return self.loops[index].call(function)

    def start(self, kind: str, n: int, loop: int, timeout: float | None) -> Request:
        """Starts a waiter and waits until it is queued or, if the model says
        it cannot queue, done."""
        model = self.model
        before = self.sem.waiting
        if kind == "task":
            waiter: Any = TaskWaiter(self.loops[loop], self.sem, n, timeout)
        else:
            waiter = ThreadWaiter(self.sem, n, TIMEOUT * 6 if timeout is None else timeout)
        request = Request(waiter, n, kind)
        self.requests.append(request)
        if model.closed or model.can_take(n):
            # Turned away or served at once: done without queueing.
            if model.closed:
                request.expected = "closed"
            else:
                model.take(n)
                request.expected = "granted"
            assert waiter.done.wait(TIMEOUT), f"a {kind} did not return"
        else:
            model.enqueue(request)
            if timeout is not None:
                # Nothing else happens before its deadline: it leaves the
                # queue, and since everyone ahead was there before it and
                # could not be served, nobody behind it could be either.
                assert waiter.done.wait(TIMEOUT), "a timed acquire did not return"
                model.leave(request, "timeout")
                model.timeouts += 1
                return request
            deadline = time.monotonic() + TIMEOUT
            while self.sem.waiting != before + 1 and not waiter.done.is_set():
                assert time.monotonic() < deadline, "the waiter did not queue"
                time.sleep(0.0005)
        return request

    def can_queue(self) -> bool:
        # Not once closed: every acquire then fails at once (test_async has
        # those); the steps left release, and check what was held.
        return (
            self.sem is not None and not self.model.closed and len(self.model.queue) < MAX_WAITERS
        )

    def queued(self, kind: str | None = None) -> list[Request]:
        return [r for r in self.model.queue if kind is None or r.kind == kind]

    # -- rules --

    @rule(value=st.integers(0, 3), bounded=st.booleans())
    @precondition(lambda self: self.sem is None)
    def create(self, value, bounded):
        kind = "BoundedSemaphore" if bounded else "Semaphore"
        self.sem = getattr(self.impl, kind)(value)
        self.model = Model(value, value if bounded else None)

    def _fits_the_bound(self, n: int) -> bool:
        return self.model.bound is None or n <= self.model.bound

    @rule(n=st.integers(1, 3), loop=st.integers(0, 1))
    @precondition(lambda self: self.can_queue())
    def task_acquires(self, n, loop):
        if self._fits_the_bound(n):  # past it, acquire fails at once (test_async)
            self.start("task", n, loop, None)

    @rule(n=st.integers(1, 3))
    @precondition(lambda self: self.can_queue())
    def thread_acquires(self, n):
        if self._fits_the_bound(n):
            self.start("thread", n, 0, None)

    @rule(n=st.integers(1, 3), kind=st.sampled_from(["task", "thread"]), loop=st.integers(0, 1))
    @precondition(lambda self: self.can_queue())
    def timed_acquire(self, n, kind, loop):
        if self._fits_the_bound(n):
            self.start(kind, n, loop, SHORT)

    @rule(n=st.integers(1, 3), loop=st.sampled_from([None, 0, 1]))
    @precondition(lambda self: self.sem is not None and not self.model.closed)
    def try_acquire(self, n, loop):
        if not self._fits_the_bound(n):
            return
        if loop is None:
            got = self.sem.acquire(False, n=n)
        else:
            got = self.loops[loop].submit(self.sem.async_acquire(False, n=n)).result(TIMEOUT)
        assert got is self.model.can_take(n)
        if got:
            self.model.take(n)

    @rule(n=st.integers(1, 3), loop=st.sampled_from([None, 0, 1]))
    @precondition(lambda self: self.sem is not None)
    def release(self, n, loop):
        fits = self.model.release_fits(n)
        try:
            if loop is None:
                self.sem.release(n)
            else:
                self.in_loop(loop, lambda: self.sem.release(n))
        except ValueError:
            assert not fits, "a release within the bound was refused"
            return
        assert fits, "a release past the bound was accepted"
        self.model.release(n)

    @rule(data=st.data())
    @precondition(lambda self: self.sem is not None and self.queued("task"))
    def cancel_a_queued_task(self, data):
        request = data.draw(st.sampled_from(self.queued("task")))
        waiter = request.waiter
        waiter.loop_thread.loop.call_soon_threadsafe(waiter.task.cancel)
        assert waiter.done.wait(TIMEOUT), "a cancelled task did not finish"
        self.model.leave(request, "cancelled")
        self.model.interrupts += 1

    @rule(data=st.data(), n=st.integers(1, 3))
    @precondition(lambda self: self.sem is not None and self.queued("task"))
    def release_then_cancel_before_it_runs(self, data, n):
        """The release may grant the task: its loop cannot run it before the
        cancellation, so it passes the permits on; either way the model is
        the task leaving, then the release."""
        request = data.draw(st.sampled_from(self.queued("task")))
        if not self.model.release_fits(n):
            return
        waiter = request.waiter

        def both() -> None:
            self.sem.release(n)
            waiter.task.cancel()

        waiter.loop_thread.call(both)
        assert waiter.done.wait(TIMEOUT), "a cancelled task did not finish"
        model = self.model
        model.queue.remove(request)
        request.expected = "cancelled"
        model.interrupts += 1
        model.release(n)

    @rule(extra=st.integers(0, 1))
    @precondition(
        lambda self: (
            self.sem is not None and bool(self.model.queue) and self.model.queue[0].kind == "task"
        )
    )
    def grant_the_head_task_then_cancel_it(self, extra):
        """The release grants the task at the head for certain; it is
        cancelled before its loop runs it again, so it must pass on the
        permits it never saw."""
        model = self.model
        request = model.queue[0]
        n = request.n - model.value + extra
        if not model.release_fits(n):
            n -= extra
        waiter = request.waiter

        def both() -> None:
            self.sem.release(n)
            waiter.task.cancel()

        waiter.loop_thread.call(both)
        assert waiter.done.wait(TIMEOUT), "a cancelled task did not finish"
        model.queue.remove(request)
        request.expected = "cancelled"
        model.interrupts += 1
        model.release(n)

    @rule(now=st.integers(0, 3))
    @precondition(lambda self: self.sem is not None and not self.model.closed)
    def close(self, now):
        if now:
            return  # one time in four: a closed semaphore ends most stories
        self.sem.close()
        self.model.closed = True
        for request in self.model.queue:
            request.expected = "closed"
        self.model.queue.clear()

    # -- checks --

    def settle(self) -> None:
        """Waiters whose outcome is decided report a moment later (a task
        once its loop runs it): waits for them."""
        deadline = time.monotonic() + TIMEOUT
        for request in self.requests:
            if request.expected is not None:
                while not request.waiter.done.is_set():
                    assert time.monotonic() < deadline, f"a {request.kind} did not report"
                    time.sleep(0.0005)

    @invariant()
    def the_semaphore_is_the_model(self):
        if self.sem is None:
            return
        model = self.model
        # Decided in the step itself: no wait for the waiters to report.
        assert self.sem.value == model.value
        assert self.sem.waiting == len(model.queue)
        self.settle()
        for request in self.requests:
            assert request.waiter.outcome == request.expected, (request.kind, request.n)
        stats = self.sem.statistics()
        got = (
            stats.acquisitions,
            stats.contended,
            stats.timeouts,
            stats.interrupts,
            stats.waiting,
            stats.max_waiting,
        )
        want = (
            model.acquisitions,
            model.contended,
            model.timeouts,
            model.interrupts,
            len(model.queue),
            model.max_waiting,
        )
        assert got == want, "statistics (acquisitions, contended, timeouts, interrupts, ...)"

    def teardown(self):
        try:
            if self.sem is not None:
                self.sem.close()  # turns every queued waiter away
                for request in self.requests:
                    assert request.waiter.done.wait(TIMEOUT), f"a {request.kind} is stuck"
        finally:
            for loop_thread in self.loops:
                loop_thread.__exit__()


_settings = settings(
    max_examples=int(os.environ.get("FASTSEM_HYPOTHESIS_EXAMPLES", "60")),
    stateful_step_count=25,
    deadline=None,
)

for _name in ("c", "python"):
    if IMPLEMENTATIONS[_name] is None:
        continue
    _machine = type(
        f"{_name.capitalize()}TasksAndThreads",
        (TasksAndThreads,),
        {"impl": IMPLEMENTATIONS[_name]},
    )
    _machine.TestCase.settings = _settings
    globals()[f"Test{_name.capitalize()}TasksAndThreads"] = _machine.TestCase
del _name, _machine
