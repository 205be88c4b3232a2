"""The pure-Python implementation: the reference model of the C core.

It is the fallback when the extension cannot be imported (or when
FASTSEM_NO_EXTENSIONS=1 is set), and the model the C version is tested
against: tests/test_stateful.py drives both with the same operations. It
follows csrc/fastsem_core.c step by step: one mutex guards the count and a
FIFO of waiter nodes (_Waiter), and each waiter sleeps on a lock of its own,
which a release unlocks once it has handed the waiter its permits (fair
mode) or so that it competes for them (non-fair mode). The steps are the
core's: _dispatch is state_dispatch, _put state_put_locked, _enqueue
enqueue_locked, _grant the grant with stats_contended, _wait fs_sem_wait
(sleep, then look: _rejoin, _finish, _compete, _time_out, _mark_if_starving)
and _cancel fs_sem_cancel; _WaitStats is fs_stats, made at the first wait.
What the core adds for speed has no counterpart here: the lock-free permit
word, spinning, wake-ups sent after the mutex is released, the relay.

A task (async_acquire) waits as the core's notified waiter does: its
_Waiter, in the same queue, holds the task's event loop instead of a lock,
and signal() sends the news through that loop (call_soon_threadsafe), after
which the task looks under the mutex as a thread does (_async_wait: the
binding's loop over fs_sem_poll). A wake-up the loop refuses, because it is
closed, gives the waiter up as _cancel would (_abandon, the core's
waiter_abandon): its permits pass on.

A bad argument raises what the C version raises, of the same type. The
words are the same where the binding chooses them, and the twin's own where
the C version's come from Cython's or CPython's argument conversion.

One difference the C version does not have: an exception raised by a signal
handler between two bytecodes *inside* a critical section here could leave
the state half-updated (as with threading.Semaphore). The blocking waits,
where Ctrl-C normally lands, are safe, and the main thread's steps out every
10 ms, as the C binding's does, so that a handler that is due runs even when
its signal did not cut the wait short (threading.Semaphore's waits until the
lock's wait ends).

The method docstrings are the C version's, word for word (a test checks).
"""

from __future__ import annotations

import copy
import math
import operator
import os
import sys
import threading
from _thread import LockType
from _thread import allocate_lock as _allocate_lock
from _thread import get_ident as _get_ident
from collections import deque
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from time import monotonic as _monotonic
from time import monotonic_ns as _monotonic_ns
from typing import Any

from fastsem._common import (
    COUNT_MAX,
    HIST_BUCKETS,
    AsyncHold,
    Hold,
    Holder,
    HolderTracker,
    SemaphoreClosed,
    SemaphoreStatistics,
    histogram_bucket,
    make_statistics,
)

_TIMEOUT_MAX = threading.TIMEOUT_MAX
# How often the main thread's wait steps out to let due signal handlers run
# (the C binding's period): see _Waiter.sleep.
_SIGNAL_LOOK = 0.01
# The counts the C binding converts (to a C long long): past them it raises
# OverflowError, so the twin does too.
_LONG_LONG_MIN, _LONG_LONG_MAX = -(2**63), 2**63 - 1
# Non-fair mode: a head that loses a competition after this long in the queue
# gets the next permits handed over (FS_STARVE_NS in the C core).
_STARVE_NS = 1_000_000
# Waiter states, as in the C core.
_WAITING, _GRANTED, _CLOSED, _REJECTED, _DONE, _ABANDONED = range(6)

# Bumped in every fork child; a semaphore from an older generation renews its
# mutex and drops the waiters of threads that do not exist in the child.
_fork_generation = 0
# Held while a semaphore renews its mutex in a fork child, so that threads
# making its first use there at the same instant install one new mutex, not
# one each (each would then be alone in "the" critical section). Itself made
# fresh in every child: a parent thread may have held it at the fork.
_renewing = _allocate_lock()


def _after_fork_in_child() -> None:
    global _fork_generation, _renewing
    _fork_generation += 1
    _renewing = _allocate_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _running_loop() -> Any:
    """The running event loop of the calling task, for a task that must wait.
    asyncio is imported here, not with fastsem: whoever runs a task has
    imported it already, and nobody else pays for it."""
    from asyncio import get_running_loop

    return get_running_loop()


def _as_count(n: object) -> int:
    """A permit count: an int or an object with __index__ (TypeError for 1.5)."""
    count = n if type(n) is int else operator.index(n)  # type: ignore[arg-type]
    if count > _LONG_LONG_MAX:
        raise _too_many()
    if count < _LONG_LONG_MIN:
        raise OverflowError("count out of range: below -2**63")
    return count


def _too_many() -> OverflowError:
    return OverflowError(f"a semaphore counts at most {COUNT_MAX} permits")


def _check_count(n: int) -> None:
    if n < 1:
        raise ValueError("n must be one or more")


def _deadline(timeout: object) -> float:
    """The monotonic deadline timeout seconds from now. A timeout is what the
    C version converts to a double (PyFloat_AsDouble): a float's own value,
    else __float__, else __index__; never a string, which float() parses."""
    if isinstance(timeout, float):
        seconds = float.__float__(timeout)  # not a subclass's __float__
    elif hasattr(type(timeout), "__float__"):
        seconds = float(timeout)  # type: ignore[arg-type]
    elif hasattr(type(timeout), "__index__"):
        seconds = float(operator.index(timeout))  # type: ignore[arg-type]
    else:
        raise TypeError(f"timeout must be a number, not {type(timeout).__name__}")
    if math.isnan(seconds):
        raise ValueError("Invalid value NaN (not a number)")
    if seconds > _TIMEOUT_MAX:
        raise OverflowError("timeout value is too large")
    # threading.Semaphore treats a negative timeout as an immediate attempt.
    return _monotonic() + max(seconds, 0.0)


class _Waiter:
    """One blocked acquire: what it wants and how to wake it. Two kinds share
    the one queue: a thread's waiter sleeps on a lock of its own; a task's
    (async_acquire) holds its event loop instead, and is woken by wake()
    run in that loop, which completes the future the task awaits."""

    __slots__ = (
        "fork_generation",
        "future",
        "loop",
        "queued_at",
        "signalled",
        "starving",
        "state",
        "waited",
        "wakeup",
        "want",
    )

    def __init__(self, want: int, loop: Any = None) -> None:
        self.want = want
        self.state = _WAITING
        self.loop = loop  # a task's event loop; None for a thread
        if loop is None:
            self.wakeup = _allocate_lock()
            self.wakeup.acquire()  # held until a release signals this waiter
        self.future: Any = None  # a task's: what it awaits now, made in its loop
        self.signalled = False
        self.starving = False  # non-fair: lost a competition after _STARVE_NS
        self.fork_generation = _fork_generation
        self.queued_at = _monotonic_ns()
        self.waited = 0  # queued_at to the grant, once granted

    def signal(self) -> bool:
        """Under the mutex: wakes the waiter to look. A task's news goes
        through its loop: at once if this is the loop's own thread (the task
        cannot be running: this thread is running the signaller), else with
        call_soon_threadsafe. Returns False if it cannot be delivered: the
        task's loop is closed, so the task will never look again and the
        caller must take it out (what it was granted passes on)."""
        if not self.signalled:
            self.signalled = True
            if self.loop is None:
                self.wakeup.release()
            elif sys.modules["asyncio"]._get_running_loop() is self.loop:
                self.wake()  # completing a future runs nothing: it schedules
            else:
                try:
                    self.loop.call_soon_threadsafe(self.wake)
                except RuntimeError:  # "Event loop is closed"
                    return False
        return True

    def wake(self) -> None:
        """A task's waiter, in its loop's thread (from signal(), or the timer
        of a timeout): resumes the task, which then looks under the mutex. A
        future already done (cancelled, or woken by an earlier call) is left
        alone; a wake-up meant for an earlier future that reaches a later one
        only makes the task look once more."""
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)

    def sleep(self, deadline: float | None) -> bool:
        """Blocks, without the mutex, until signalled or until the deadline;
        returns whether it was signalled.

        The main thread, where signal handlers run, steps out of the lock's
        wait every _SIGNAL_LOOK seconds, as the C binding does: a signal
        interrupts that wait only if it lands in this thread while it
        sleeps, and one that landed in another thread, or just before the
        wait began, would have its handler (Ctrl-C's KeyboardInterrupt) run
        only when the wait ends. Back in Python between two waits, a due
        handler runs, and what it raises leaves the queue (_wait)."""
        if _get_ident() != threading.main_thread().ident:
            if deadline is None:
                return self.wakeup.acquire()
            remaining = deadline - _monotonic()
            return remaining > 0 and self.wakeup.acquire(True, remaining)
        while True:
            look = _SIGNAL_LOOK
            if deadline is not None:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    return False
                look = min(look, remaining)
            if self.wakeup.acquire(True, look):
                return True

    def take_signal(self, woke: bool) -> bool:
        """Under the mutex, after sleep() returned woke: whether a signal came
        since the waiter last looked. Either way its wake-up lock is held
        again, ready for the next sleep (a signal that came after the sleep
        gave up left it free)."""
        if not self.signalled:
            return False
        if not woke:
            self.wakeup.acquire()
        self.signalled = False
        return True


class _WaitStats:
    """The counters of waits, as the C core's fs_stats: made at the first
    wait, so that a semaphore that never waits stays small. Acquisitions,
    waiting or not, are the semaphore's own counter (_acquisitions), as the
    core keeps uncontended ones beside its fs_stats."""

    __slots__ = (
        "contended",
        "histogram",
        "interrupts",
        "max_waiting",
        "timeouts",
        "wait_max_ns",
        "wait_total_ns",
    )

    def __init__(self) -> None:
        self.contended = 0  # acquisitions that had to queue
        self.timeouts = 0  # waits that gave up at their deadline
        self.interrupts = 0  # waits abandoned by an exception (_cancel)
        self.max_waiting = 0  # the longest the queue has been
        self.wait_total_ns = 0  # summed over contended acquisitions
        self.wait_max_ns = 0
        self.histogram = [0] * HIST_BUCKETS  # of contended waits: histogram_bucket()

    def copy(self) -> _WaitStats:
        other = copy.copy(self)
        other.histogram = self.histogram.copy()
        return other

    def count_wait(self, waited_ns: int) -> None:
        """A queued waiter was granted its permits after waited_ns (the core's
        stats_contended)."""
        self.contended += 1
        self.wait_total_ns += waited_ns
        if waited_ns > self.wait_max_ns:
            self.wait_max_ns = waited_ns
        self.histogram[histogram_bucket(waited_ns)] += 1

    def uncount_wait(self, waited_ns: int) -> bool:
        """Takes back a wait counted by count_wait() (the core's stats_uncount)
        and returns True, unless the counters were reset since, which leaves
        nothing to take back. The longest wait stays: the one before it is
        not kept."""
        bucket = histogram_bucket(waited_ns)
        if self.contended == 0 or self.histogram[bucket] == 0 or self.wait_total_ns < waited_ns:
            return False
        self.contended -= 1
        self.wait_total_ns -= waited_ns
        self.histogram[bucket] -= 1
        return True


def _state(sem: object, name: str) -> Any:
    """sem's attribute, or the error of a semaphore whose __init__ has not
    run (the C version's too). Not on the hot paths: they read their first
    slot in a try block instead."""
    try:
        return getattr(sem, name)
    except AttributeError:
        raise _not_initialised(sem) from None


def _not_initialised(sem: object) -> RuntimeError:
    return RuntimeError(
        f"this {type(sem).__name__} is not initialised: its __init__() was not called"
    )


class Semaphore:
    """Semaphore(value=1, *, fair=True, track_holders=False)

    A counting semaphore, a drop-in for threading.Semaphore that is FIFO-fair.

    It manages a count of free permits: acquire() takes permits, waiting in
    line while there are not enough; release() gives them back. Tasks of any
    asyncio event loop wait in the same line, through async_acquire(),
    async with and async_hold(), without blocking their loop. In fair mode
    (the default) permits go to waiting threads and tasks strictly in the
    order they asked, a release hands them straight to the oldest waiter,
    and nobody takes a permit while an earlier waiter is still waiting. With
    fair=False an arriving acquire may take free permits ahead of waiters
    (barging), which gives more throughput under contention; a waiter passed
    over after waiting a millisecond gets the next permits.

    value is the initial count and defaults to 1; a negative value raises
    ValueError. With track_holders=True the semaphore records which thread
    or task holds how many permits and where it acquired them (see
    holders()).
    """

    __slots__ = (
        "__weakref__",
        "_acquisitions",
        "_closed",
        "_count",
        "_debt",
        "_fair",
        "_fork_generation",
        "_initialized",
        "_max_value",
        "_mutex",
        "_queue",
        "_stats",
        "_tracker",
    )

    def __init__(self, value: int = 1, *, fair: bool = True, track_holders: bool = False) -> None:
        self._configure(value, False, fair, track_holders)

    def _configure(self, value: object, bounded: bool, fair: object, track: object) -> None:
        # Every argument is converted and checked once, before any state is
        # set: a conversion that raises leaves the object as it was.
        count = _as_count(value)
        is_fair = bool(fair)
        tracker = HolderTracker() if track else None
        if count < 0:
            raise ValueError("semaphore initial value must be >= 0")
        if getattr(self, "_initialized", False):
            raise RuntimeError(f"{type(self).__name__}.__init__() called twice")
        if count > COUNT_MAX:
            raise _too_many()
        self._mutex = _allocate_lock()
        self._count = count
        self._max_value = count if bounded else -1
        self._fair = is_fair
        self._closed = False
        self._debt = 0  # permits a lowered bound still takes from releases
        self._queue: deque[_Waiter] = deque()
        self._fork_generation = _fork_generation
        self._acquisitions = 0
        self._stats: _WaitStats | None = None  # made at the first wait
        self._tracker = tracker
        self._initialized = True

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def __repr__(self) -> str:
        cls = type(self)
        module = "fastsem" if cls.__module__ == __name__ else cls.__module__
        if not getattr(self, "_initialized", False):
            return f"<{module}.{cls.__qualname__} at {id(self):#x}: uninitialised>"
        return f"<{module}.{cls.__qualname__} at {id(self):#x}: value={self.value}>"

    def _lock(self) -> LockType:
        try:
            generation = self._fork_generation
        except AttributeError:  # __init__ has not run
            raise _not_initialised(self) from None
        if generation != _fork_generation:
            # First use in a fork child: the mutex may have been held by a
            # thread of the parent, and the queued waiters' threads are gone.
            with _renewing:
                if self._fork_generation != _fork_generation:
                    self._mutex = _allocate_lock()
                    self._queue = deque()
                    self._fork_generation = _fork_generation  # last: the renewal is done
        return self._mutex

    # -- the grant policy and the statistics (the caller holds the mutex) --

    def _head_owns_free_permits(self) -> bool:
        """Whether free permits belong to the queue's head, so that nobody
        else takes them while it waits: in fair mode, and in non-fair mode
        while the head is starving."""
        queue = self._queue
        return bool(queue) and (self._fair or queue[0].starving)

    def _can_take_now(self, n: int) -> bool:
        return self._count >= n and not self._head_owns_free_permits()

    def _dispatch(self) -> None:
        """Serves the queue after the count grew or a waiter left."""
        queue = self._queue
        while True:
            # Fair mode hands the permits over to the head; non-fair mode only
            # to a starving head.
            while self._head_owns_free_permits() and queue[0].want <= self._count:
                waiter = queue.popleft()
                self._grant(waiter)
                if not waiter.signal():
                    self._abandon(waiter)  # the permits are free again: go on
            if not queue or self._head_owns_free_permits() or queue[0].want > self._count:
                return
            # Non-fair: one competitor at a time, as the C core: the head (a
            # no-op if it is already woken); each that takes its permits, or
            # leaves, dispatches again. Signalling every waiter that fit made
            # release(n) quadratic (docs/design.rst, "The relay").
            if queue[0].signal():
                return
            self._abandon(queue.popleft())  # the next head competes instead

    def _abandon(self, waiter: _Waiter) -> None:
        """A task's waiter that signal() could not reach (its loop is closed),
        out of the queue already, with an outcome (a grant, a close, a lowered
        bound) it will never see: it is taken out as _cancel would, an
        interrupted wait, and what it was granted goes back to the count, for
        the caller to pass on (the core's waiter_abandon)."""
        if waiter.state == _GRANTED:
            self._put(waiter.want)
            self._ungrant(waiter)
        waiter.state = _ABANDONED
        self._wait_stats().interrupts += 1

    def _put(self, n: int) -> None:
        """Gives n permits back: a lowered bound's debt first, and never more
        than the bound (an over-release may have been accepted while these
        permits were held by a waiter that now passes them on)."""
        paid = min(n, self._debt)
        self._debt -= paid
        cap = self._max_value if self._max_value >= 0 else COUNT_MAX
        self._count = min(self._count + n - paid, cap)

    def _wait_stats(self) -> _WaitStats:
        """The counters of waits, made now if this is the first (the core's
        state_stats)."""
        if self._stats is None:
            self._stats = _WaitStats()
        return self._stats

    def _grant(self, waiter: _Waiter) -> None:
        """Gives the waiter its permits from the count; its wait is counted
        now, at the grant, as the C core does."""
        self._count -= waiter.want
        waiter.state = _GRANTED
        waiter.waited = max(_monotonic_ns() - waiter.queued_at, 0)
        self._acquisitions += 1
        self._wait_stats().count_wait(waiter.waited)

    def _ungrant(self, waiter: _Waiter) -> None:
        """A grant its waiter gave back unused was no acquisition (unless the
        counters were reset meanwhile)."""
        if self._stats is not None and self._stats.uncount_wait(waiter.waited):
            self._acquisitions -= 1

    def _enqueue(self, waiter: _Waiter) -> _Waiter:
        """Puts the waiter at the tail of the queue (the core's enqueue_locked)."""
        queue = self._queue
        queue.append(waiter)
        stats = self._wait_stats()
        if len(queue) > stats.max_waiting:
            stats.max_waiting = len(queue)
        return waiter

    def _check_request(self, n: int) -> None:
        _check_count(n)
        if n > self._max_value >= 0:
            raise ValueError(
                f"cannot acquire {n} permits from a semaphore bounded at {self._max_value}"
            )
        if n > COUNT_MAX:
            raise _too_many()

    # -- the API --

    def acquire(self, blocking: bool = True, timeout: float | None = None, *, n: int = 1) -> bool:
        """Acquire n permits (default 1).

        With blocking true (the default) and no timeout, wait in line until n
        permits are granted, then return True. With a timeout, wait at most
        that many seconds and return False if the permits were not granted by
        then. With blocking false, take the permits only if that needs no wait
        and, in fair mode, nobody is queued ahead; return whether they were
        taken. A wait interrupted by an exception (KeyboardInterrupt from
        Ctrl-C) leaves the queue and takes nothing. On a closed semaphore,
        raise SemaphoreClosed.
        """
        return self._acquire_into(None, blocking, timeout, n)

    def _acquire_into(
        self, receipt: list[int] | None, blocking: bool = True, timeout: object = None, n: int = 1
    ) -> bool:
        # acquire() for fastsem's own callers (hold(), the pool) too: the
        # count is appended to receipt in the critical section that takes
        # the permits (or right after the grant), so that the caller can tell
        # whether it holds them when an exception arrives on the way out.
        # Never an acquire() that a subclass overrides.
        n = _as_count(n)
        deadline = None
        if timeout is not None:
            if not blocking:
                raise ValueError("can't specify timeout for non-blocking acquire")
            deadline = _deadline(timeout)
        elif not blocking:
            # Its truth is taken before any other check, as the C version
            # takes it: a __bool__ that raises does so first.
            blocking = False
        try:
            tracker = self._tracker
        except AttributeError:  # __init__ has not run
            raise _not_initialised(self) from None
        record = tracker.record(n) if tracker is not None else None
        with self._lock():
            self._check_request(n)
            if self._closed:
                raise SemaphoreClosed("the semaphore is closed")
            if self._can_take_now(n):
                self._count -= n
                self._acquisitions += 1
                waiter = None
                if receipt is not None:
                    receipt.append(n)
            elif not blocking:
                return False
            else:
                waiter = self._enqueue(_Waiter(n))
        if waiter is not None:
            if not self._wait(waiter, deadline):
                return False
            if receipt is not None:
                receipt.append(n)
        if record is not None:
            tracker.records[next(tracker.keys)] = record  # type: ignore[union-attr]
        return True

    def _release_from(self, receipt: list[int]) -> None:
        # Releases the last count in receipt and removes it in the critical
        # section that gives the permits back.
        self._release_noting(receipt[-1], receipt)

    def _wait(self, waiter: _Waiter, deadline: float | None) -> bool:
        """Waits in the queue until the waiter's outcome is decided, as the
        core's fs_sem_wait: it sleeps on its own wake-up lock, then looks
        under the mutex (acquire() looked before it queued). Returns True once
        granted, False at the deadline; raises if turned away. An exception
        raised while it waits (KeyboardInterrupt) takes it out of the queue,
        passing on any permits granted meanwhile."""
        try:
            while True:
                woke = waiter.sleep(deadline)
                with self._lock():
                    if self._was_dropped(waiter) and self._rejoin(waiter):
                        continue
                    competed = waiter.take_signal(woke)
                    if waiter.state != _WAITING:  # decided by a release, close or resize
                        return self._finish(waiter)
                    if self._compete(waiter):
                        return self._finish(waiter)
                    if deadline is not None and _monotonic() >= deadline:
                        self._time_out(waiter)
                        return False
                    if competed:
                        self._mark_if_starving(waiter)
        except BaseException:
            self._cancel(waiter)
            raise

    async def async_acquire(
        self, blocking: bool = True, timeout: float | None = None, *, n: int = 1
    ) -> bool:
        """Acquire n permits (default 1) from an asyncio task: as acquire(),
        but waiting suspends the task, not its thread, in the same FIFO queue
        as threads.

        Returns True, or False if the permits were not granted within timeout
        seconds (or at once, with blocking false). An uncontended acquire
        completes without suspending. Cancelled while it waits, the task
        leaves the queue; cancelled after the grant but before it resumed, it
        passes the permits on; either way it takes nothing and CancelledError
        propagates. The arguments and errors are acquire()'s, raised when the
        call is awaited.
        """
        return await self._async_acquire_into(None, blocking, timeout, n)

    async def _async_acquire_into(
        self, receipt: list[int] | None, blocking: bool = True, timeout: object = None, n: int = 1
    ) -> bool:
        # _acquire_into for a task: the same checks in the same order, the
        # same critical section when the permits are free (no suspension),
        # and the same queue when they are not, with a waiter of the task's
        # kind; the count goes to receipt in the critical section that finds
        # the permits granted.
        n = _as_count(n)
        deadline = None
        if timeout is not None:
            if not blocking:
                raise ValueError("can't specify timeout for non-blocking acquire")
            deadline = _deadline(timeout)
        elif not blocking:
            blocking = False
        try:
            tracker = self._tracker
        except AttributeError:  # __init__ has not run
            raise _not_initialised(self) from None
        record = tracker.record(n) if tracker is not None else None
        with self._lock():
            self._check_request(n)
            if self._closed:
                raise SemaphoreClosed("the semaphore is closed")
            if self._can_take_now(n):
                self._count -= n
                self._acquisitions += 1
                waiter = None
                if receipt is not None:
                    receipt.append(n)
            elif not blocking:
                return False
            else:
                waiter = self._enqueue(_Waiter(n, _running_loop()))
        if waiter is not None and not await self._async_wait(waiter, deadline, receipt):
            return False
        if record is not None:
            tracker.records[next(tracker.keys)] = record  # type: ignore[union-attr]
        return True

    async def _async_wait(
        self, waiter: _Waiter, deadline: float | None, receipt: list[int] | None
    ) -> bool:
        """_wait for a task: each round makes a fresh future in the task's
        loop, looks under the mutex as _wait does after a sleep, and, if
        nothing is decided, awaits the future, which wake() completes when a
        release, close or resize signals the waiter, or when the deadline's
        timer fires. The future is installed in the same critical section as
        the look, so a signal after the look completes the very future the
        task is about to await. An exception raised while it awaits
        (CancelledError; GeneratorExit when the coroutine is closed) takes it
        out of the queue, passing on any permits granted meanwhile: granted
        but not yet resumed, the caller never saw them."""
        loop = waiter.loop
        try:
            while True:
                future = loop.create_future()
                with self._lock():
                    if self._was_dropped(waiter):
                        self._rejoin(waiter)
                    waiter.future = future
                    competed, waiter.signalled = waiter.signalled, False
                    if waiter.state != _WAITING or self._compete(waiter):
                        self._finish(waiter)  # raises if turned away
                        if receipt is not None:
                            receipt.append(waiter.want)
                        return True
                    if deadline is not None:
                        remaining = deadline - _monotonic()
                        if remaining <= 0:
                            self._time_out(waiter)
                            return False
                    if competed:
                        self._mark_if_starving(waiter)
                # A timer may fire a little early (asyncio runs those due
                # within its clock's resolution): the look then finds time
                # left and arms another.
                timer = loop.call_later(remaining, waiter.wake) if deadline is not None else None
                try:
                    await future
                finally:
                    if timer is not None:
                        timer.cancel()
        except BaseException:
            self._cancel(waiter)
            raise

    # -- the steps of a wait (the caller holds the mutex, but in _cancel) --

    def _was_dropped(self, waiter: _Waiter) -> bool:
        """Whether a fork child dropped the queue the waiter was in, while it
        still waited (the forking thread itself was waiting: it forked from a
        signal handler). The core's waiter_was_dropped."""
        return waiter.fork_generation != self._fork_generation and waiter.state == _WAITING

    def _rejoin(self, waiter: _Waiter) -> bool:
        """A dropped waiter takes its permits now if it may, or joins this
        process's queue again as a new waiter (a signal the parent had pending
        for it will never come); returns True if it is queued again."""
        if self._closed:
            waiter.state = _CLOSED
        elif self._can_take_now(waiter.want):
            self._grant(waiter)
        else:
            waiter.__init__(waiter.want, waiter.loop)  # type: ignore[misc]
            self._enqueue(waiter)
            return True
        return False

    def _compete(self, waiter: _Waiter) -> bool:
        """Non-fair: a waiter that looks takes free permits if its request
        fits, unless a starving head (not itself) owns them, and leaves the
        queue; returns True if it took them."""
        if self._fair or waiter.want > self._count:
            return False
        if self._queue[0] is not waiter and self._head_owns_free_permits():
            return False
        self._queue.remove(waiter)
        self._grant(waiter)
        self._dispatch()  # others may fit in what is left
        return True

    def _time_out(self, waiter: _Waiter) -> None:
        """The deadline passed before a grant: the waiter leaves the queue."""
        self._queue.remove(waiter)
        waiter.state = _DONE
        self._wait_stats().timeouts += 1
        self._dispatch()  # whoever it held back may go now

    def _mark_if_starving(self, waiter: _Waiter) -> None:
        """Non-fair: a head woken to compete that lost after _STARVE_NS in
        the queue is starving, so the next permits are handed to it."""
        if not self._fair and self._queue[0] is waiter and not waiter.starving:
            waiter.starving = _monotonic_ns() - waiter.queued_at >= _STARVE_NS

    def _finish(self, waiter: _Waiter) -> bool:
        """The waiter's outcome is decided: it is done, and returns True if
        granted or raises if turned away (the core's waiter_outcome)."""
        state, waiter.state = waiter.state, _DONE
        if state == _GRANTED:
            return True
        if state == _CLOSED:
            raise SemaphoreClosed("the semaphore is closed")
        if state == _ABANDONED:
            # Only if the loop was not closed after all (a loop whose
            # call_soon_threadsafe refused for another reason) does the task
            # ever look again.
            raise RuntimeError(
                "the grant could not be delivered to this task's event loop; "
                "the permits were passed on"
            )
        raise ValueError(  # _REJECTED: a lowered bound
            f"cannot acquire {waiter.want} permits from a semaphore bounded at {self._max_value}"
        )

    def _cancel(self, waiter: _Waiter) -> None:
        """Takes the waiter out for good after an exception in its wait;
        permits granted meanwhile go on, as a release would pass them (the
        core's fs_sem_cancel)."""
        with self._lock():
            if waiter.state == _GRANTED:
                self._put(waiter.want)
                self._ungrant(waiter)
            elif waiter.state == _WAITING and waiter in self._queue:
                self._queue.remove(waiter)
            if waiter.state != _DONE and waiter.state != _ABANDONED:
                waiter.state = _DONE
                self._wait_stats().interrupts += 1
                self._dispatch()

    def release(self, n: int = 1) -> None:
        """Release n permits (default 1), waking waiters in the order they came.

        A BoundedSemaphore raises ValueError if its value would pass its
        initial value; nothing is released then.
        """
        n = _as_count(n)
        try:
            tracker = self._tracker
        except AttributeError:  # __init__ has not run
            raise _not_initialised(self) from None
        if tracker is None and n >= 1:
            self._release(n, None)
        else:
            self._release_noting(n, None)

    def _release_noting(self, n: int, receipt: list[int] | None) -> None:
        tracker = self._tracker
        _check_count(n)
        if tracker is None:
            self._release(n, receipt)
            return
        # Charge computed first, applied once the permits are back (see
        # HolderTracker).
        with tracker.lock:
            shrunk, gone = tracker.charge(n)
            self._release(n, receipt)
            tracker.records.update(shrunk)
            for key in gone:
                tracker.records.pop(key, None)

    def _release(self, n: int, receipt: list[int] | None) -> None:
        with self._lock():
            if self._max_value >= 0 and n > self._max_value - self._count + self._debt:
                raise ValueError("Semaphore released too many times")
            if n > COUNT_MAX - self._count:
                raise _too_many()
            self._put(n)
            self._dispatch()
            if receipt is not None:
                receipt.pop()

    def __enter__(self) -> bool:
        # As threading's: `with` never calls an acquire() a subclass
        # overrides, and ends in release(), which it may override.
        return self._acquire_into(None)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.release()

    async def __aenter__(self) -> None:
        # As asyncio.Semaphore's: `async with sem:` binds nothing. As __enter__,
        # never an async_acquire() a subclass overrides.
        await self._async_acquire_into(None)

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.release()

    def hold(
        self, timeout: float | None = None, *, n: int = 1
    ) -> AbstractContextManager[Semaphore]:
        """Return a context manager that acquires n permits on entry, or raises
        TimeoutError if they are not granted within timeout seconds (None:
        wait as long as it takes), and releases them on exit, even when the
        block raises.
        """
        return Hold(self, timeout, n)

    def async_hold(
        self, timeout: float | None = None, *, n: int = 1
    ) -> AbstractAsyncContextManager[Semaphore]:
        """Return an async context manager that acquires n permits on entry,
        or raises TimeoutError if they are not granted within timeout seconds
        (None: wait as long as it takes), and releases them on exit, even
        when the block raises: hold() for asyncio tasks.
        """
        return AsyncHold(self, timeout, n)

    def close(self) -> None:
        """Close the semaphore: every thread waiting in acquire(), every task
        waiting in async_acquire(), and every later acquire, raises
        SemaphoreClosed at once. Permits already granted stay granted, and
        release() still works, so that held permits can be given back.
        Closing twice does nothing more.
        """
        with self._lock():
            self._closed = True
            while self._queue:
                waiter = self._queue.popleft()
                waiter.state = _CLOSED
                if not waiter.signal():
                    self._abandon(waiter)

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return _state(self, "_closed")  # type: ignore[no-any-return]

    def drain(self) -> int:
        """Take all free permits now and return how many. Permits owed to a
        queued waiter are never taken: in fair mode, while anyone is queued,
        none are free for the taking (the free ones are the head waiter's);
        likewise in non-fair mode while a starving waiter heads the queue.
        """
        tracker = _state(self, "_tracker")
        record = tracker.record(0) if tracker is not None else None
        with self._lock():
            if self._head_owns_free_permits():
                return 0
            taken, self._count = self._count, 0
        if taken and record is not None:
            record[2] = taken
            tracker.records[next(tracker.keys)] = record
        return taken

    def statistics(self) -> SemaphoreStatistics:
        """Return a SemaphoreStatistics snapshot: acquisitions, contended
        acquisitions, timeouts, interrupts, threads and tasks waiting now and
        at most, and the total, maximum and p50/p90/p99 wait times in
        seconds."""
        with self._lock():
            stats = self._stats.copy() if self._stats is not None else _WaitStats()
            acquisitions, waiting = self._acquisitions, len(self._queue)
        return make_statistics(
            acquisitions, stats.contended, stats.timeouts, stats.interrupts,
            waiting, stats.max_waiting, stats.wait_total_ns, stats.wait_max_ns,
            stats.histogram,
        )  # fmt: skip

    def reset_statistics(self) -> None:
        """Set every counter of statistics() back to zero."""
        with self._lock():
            self._acquisitions = 0
            self._stats = None

    def holders(self) -> list[Holder]:
        """Return who holds permits now, as a list of Holder records (thread or
        task, permits, where they were acquired). Needs track_holders=True."""
        tracker = _state(self, "_tracker")
        if tracker is None:
            raise RuntimeError("holders() needs Semaphore(..., track_holders=True)")
        return tracker.holders()  # type: ignore[no-any-return]

    @property
    def value(self) -> int:
        """Permits free now (a snapshot)."""
        # Read without the mutex, as the C version reads its permit word: a
        # signal handler (or a __del__) that looks at the semaphore while its
        # own thread is inside one of the critical sections here must not
        # wait for the mutex that thread holds. One attribute read is atomic,
        # with the GIL or without.
        return _state(self, "_count")  # type: ignore[no-any-return]

    @property
    def _value(self) -> int:
        # threading.Semaphore's attribute, which some code reads.
        return self.value

    @property
    def waiting(self) -> int:
        """Threads queued in acquire() and tasks in async_acquire() now (a
        snapshot)."""
        # Without the mutex, as value. In a fork child that has not used the
        # semaphore yet, the queue is still the parent's: its threads do not
        # exist here, and _lock() drops them at the first use.
        queue = _state(self, "_queue")
        return len(queue) if self._fork_generation == _fork_generation else 0

    @property
    def fair(self) -> bool:
        """True if permits are granted strictly in arrival order."""
        return _state(self, "_fair")  # type: ignore[no-any-return]


class BoundedSemaphore(Semaphore):
    """BoundedSemaphore(value=1, *, fair=True, track_holders=False)

    A Semaphore whose value may never exceed its bound, initially its initial
    value: a release() past it raises ValueError and changes nothing. It
    guards resources of limited capacity, where an extra release is a bug.
    resize() moves the bound at run time.
    """

    __slots__ = ()

    def __init__(self, value: int = 1, *, fair: bool = True, track_holders: bool = False) -> None:
        self._configure(value, True, fair, track_holders)

    def __repr__(self) -> str:
        cls = type(self)
        module = "fastsem" if cls.__module__ == __name__ else cls.__module__
        if not getattr(self, "_initialized", False):
            return f"<{module}.{cls.__qualname__} at {id(self):#x}: uninitialised>"
        return (
            f"<{module}.{cls.__qualname__} at {id(self):#x}: value={self.value}/{self.max_value}>"
        )

    def resize(self, new_max: int) -> None:
        """Move the bound to new_max. Raising it adds the difference as free
        permits and wakes waiters in order. Lowering it takes free permits away
        now, and absorbs later releases until the permits out fit the new
        bound; queued requests for more than new_max raise ValueError. A bound
        below 0 is a ValueError.
        """
        bound = _as_count(new_max)
        if not getattr(self, "_initialized", False):
            raise _not_initialised(self)
        if bound < 0:
            raise ValueError("the bound must be >= 0")
        if bound > COUNT_MAX:
            raise _too_many()
        with self._lock():
            old, self._max_value = self._max_value, bound
            if bound >= old:
                self._put(bound - old)
            else:
                taken = min(old - bound, self._count)
                self._count -= taken
                self._debt += old - bound - taken
                for waiter in [w for w in self._queue if w.want > bound]:
                    self._queue.remove(waiter)
                    waiter.state = _REJECTED
                    if not waiter.signal():
                        self._abandon(waiter)
            self._dispatch()

    @property
    def max_value(self) -> int:
        """The bound: the initial value, unless resize() moved it."""
        return _state(self, "_max_value")  # type: ignore[no-any-return]
