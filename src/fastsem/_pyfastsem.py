"""The pure-Python implementation: the same semantics as the C core.

It is the fallback when the extension cannot be imported (or when
FASTSEM_NO_EXTENSIONS=1 is set) and the reference model the C version is
tested against. The design follows csrc/fastsem_core.c: one mutex guards the
count and a FIFO of waiter nodes; each waiter blocks on a lock of its own that
a release unlocks, handing it the permits directly in fair mode.

One difference the C version does not have: an exception raised by a signal
handler between two bytecodes *inside* a critical section here could leave the
state half-updated (as with threading.Semaphore). The blocking waits, where
Ctrl-C normally lands, are safe.
"""

from __future__ import annotations

import math
import operator
import os
import threading
from _thread import LockType
from _thread import allocate_lock as _allocate_lock
from collections import deque
from time import monotonic as _monotonic
from typing import Any

_TIMEOUT_MAX = threading.TIMEOUT_MAX
_COUNT_MAX = 2**63 - 1  # the C core's range (long long), kept the same here
_WAITING, _GRANTED, _DONE = 0, 1, 2

# Bumped in every fork child; a semaphore from an older generation renews its
# mutex and drops the waiters of threads that do not exist in the child.
_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _as_count(n: object) -> int:
    count = n if type(n) is int else operator.index(n)  # type: ignore[arg-type]  # TypeError for 1.5
    if not -_COUNT_MAX - 1 <= count <= _COUNT_MAX:
        raise OverflowError("Python int too large to convert to C long long")
    return count


def _check_count(n: int) -> None:
    if n < 1:
        raise ValueError("n must be one or more")


def _deadline(timeout: object) -> float:
    # As C's PyFloat_AsDouble: numbers only (float("1") would take a string).
    if hasattr(type(timeout), "__float__"):
        seconds = float(timeout)  # type: ignore[arg-type]
    elif hasattr(type(timeout), "__index__"):
        seconds = float(operator.index(timeout))  # type: ignore[arg-type]
    else:
        raise TypeError(f"must be real number, not {type(timeout).__name__}")
    if math.isnan(seconds):
        raise ValueError("Invalid value NaN (not a number)")
    if seconds > _TIMEOUT_MAX:
        raise OverflowError("timeout value is too large")
    # threading.Semaphore treats a negative timeout as an immediate attempt.
    return _monotonic() + max(seconds, 0.0)


class _Waiter:
    """One blocked acquire: what it wants and its own wake-up lock."""

    __slots__ = ("fork_generation", "signalled", "state", "wakeup", "want")

    def __init__(self, want: int) -> None:
        self.want = want
        self.state = _WAITING
        self.wakeup = _allocate_lock()
        self.wakeup.acquire()  # held until a release signals this waiter
        self.signalled = False
        self.fork_generation = _fork_generation

    def signal(self) -> None:
        if not self.signalled:
            self.signalled = True
            self.wakeup.release()


class Semaphore:
    """Semaphore(value=1, *, fair=True)

    A counting semaphore, a drop-in for threading.Semaphore that is FIFO-fair.

    It manages a count of free permits: acquire() takes permits, waiting in
    line while there are not enough; release() gives them back. In fair mode
    (the default) permits go to waiting threads strictly in the order they
    called acquire(), a release hands them straight to the oldest waiter, and
    no thread takes a permit while an earlier one is still waiting. With
    fair=False an arriving acquire() may take free permits ahead of waiting
    threads (barging), which gives more throughput under contention.

    value is the initial count and defaults to 1; a negative value raises
    ValueError.
    """

    __slots__ = (
        "__weakref__",
        "_count",
        "_fair",
        "_fork_generation",
        "_initialized",
        "_max_value",
        "_mutex",
        "_queue",
    )

    def __init__(self, value: int = 1, *, fair: bool = True) -> None:
        self._configure(value, -1, fair)

    def _configure(self, value: object, max_value: int, fair: object) -> None:
        count = _as_count(value)
        if count < 0:
            raise ValueError("semaphore initial value must be >= 0")
        if getattr(self, "_initialized", False):
            raise RuntimeError(f"{type(self).__name__}.__init__() called twice")
        self._mutex = _allocate_lock()
        self._count = count
        self._max_value = max_value
        self._fair = bool(fair)
        self._queue: deque[_Waiter] = deque()
        self._fork_generation = _fork_generation
        self._initialized = True

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def __repr__(self) -> str:
        cls = type(self)
        module = "fastsem" if cls.__module__ == __name__ else cls.__module__
        return f"<{module}.{cls.__qualname__} at {id(self):#x}: value={self._count}>"

    def _lock(self) -> LockType:
        if self._fork_generation != _fork_generation:
            # First use in a fork child: the mutex may have been held by a
            # thread of the parent, and the queued waiters' threads are gone.
            self._mutex = _allocate_lock()
            self._queue = deque()
            self._fork_generation = _fork_generation
        return self._mutex

    def _can_take_now(self, n: int) -> bool:
        return self._count >= n and (not self._fair or not self._queue)

    def _dispatch(self) -> None:
        """Serves the queue after the count grew or a waiter left."""
        queue = self._queue
        if self._fair:
            while queue and queue[0].want <= self._count:
                waiter = queue.popleft()
                self._count -= waiter.want
                waiter.state = _GRANTED
                waiter.signal()
        else:
            left = self._count
            for waiter in queue:
                if waiter.want > left:
                    break
                left -= waiter.want
                waiter.signal()

    def _raise_bad_count(self, n: int) -> None:
        _check_count(n)
        if n > self._max_value >= 0:
            raise ValueError(
                f"cannot acquire {n} permits from a semaphore bounded at {self._max_value}"
            )

    def acquire(self, blocking: bool = True, timeout: float | None = None, *, n: int = 1) -> bool:
        """Acquire n permits (default 1).

        With blocking true (the default) and no timeout, wait in line until n
        permits are granted, then return True. With a timeout, wait at most
        that many seconds and return False if the permits were not granted by
        then. With blocking false, take the permits only if that needs no wait
        and, in fair mode, nobody is queued ahead; return whether they were
        taken. A wait interrupted by an exception (KeyboardInterrupt from
        Ctrl-C) leaves the queue and takes nothing.
        """
        n = _as_count(n)
        deadline = None
        if timeout is not None:
            if not blocking:
                raise ValueError("can't specify timeout for non-blocking acquire")
            deadline = _deadline(timeout)
        if n < 1 or n > self._max_value >= 0:
            self._raise_bad_count(n)
        with self._lock():
            if self._can_take_now(n):
                self._count -= n
                return True
            if not blocking:
                return False
            waiter = _Waiter(n)
            self._queue.append(waiter)
        return self._wait(waiter, deadline)

    def _wait(self, waiter: _Waiter, deadline: float | None) -> bool:
        try:
            while True:
                if deadline is None:
                    woken = waiter.wakeup.acquire()
                else:
                    remaining = deadline - _monotonic()
                    woken = remaining > 0 and waiter.wakeup.acquire(True, remaining)
                with self._lock():
                    if waiter.fork_generation != self._fork_generation:
                        # A fork child dropped the queue we were in (we were
                        # paused in a signal handler that forked): rejoin.
                        if waiter.state == _GRANTED or self._can_take_now(waiter.want):
                            if waiter.state != _GRANTED:
                                self._count -= waiter.want
                            waiter.state = _DONE
                            return True
                        waiter.__init__(waiter.want)  # type: ignore[misc]
                        self._queue.append(waiter)
                        continue
                    if waiter.signalled:
                        if not woken:  # signalled after the wait gave up
                            waiter.wakeup.acquire()
                        waiter.signalled = False
                    if waiter.state == _GRANTED:
                        waiter.state = _DONE
                        return True
                    if not self._fair and waiter.want <= self._count:
                        # Non-fair: a woken waiter competes for free permits.
                        self._count -= waiter.want
                        self._queue.remove(waiter)
                        waiter.state = _DONE
                        self._dispatch()
                        return True
                    if deadline is not None and _monotonic() >= deadline:
                        self._queue.remove(waiter)
                        waiter.state = _DONE
                        self._dispatch()  # whoever it held back may go now
                        return False
        except BaseException:
            self._cancel(waiter)
            raise

    def _cancel(self, waiter: _Waiter) -> None:
        """Takes the waiter out for good; permits granted meanwhile go on."""
        with self._lock():
            if waiter.state == _GRANTED:
                # Held permits go back; an over-release accepted while they
                # were held ends here (never more than the bound).
                self._count += waiter.want
                if self._max_value >= 0:
                    self._count = min(self._count, self._max_value)
            elif waiter.state == _WAITING and waiter in self._queue:
                self._queue.remove(waiter)
            if waiter.state != _DONE:
                waiter.state = _DONE
                self._dispatch()

    def release(self, n: int = 1) -> None:
        """Release n permits (default 1), waking waiters in the order they came.

        A BoundedSemaphore raises ValueError if its value would pass its
        initial value; nothing is released then.
        """
        n = _as_count(n)
        _check_count(n)
        with self._lock():
            if self._max_value >= 0 and n > self._max_value - self._count:
                raise ValueError("Semaphore released too many times")
            if n > _COUNT_MAX - self._count:
                raise OverflowError("semaphore value would overflow")
            self._count += n
            self._dispatch()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.release()

    @property
    def value(self) -> int:
        """Permits free now (a snapshot)."""
        with self._lock():
            return self._count

    @property
    def _value(self) -> int:
        # threading.Semaphore's attribute, which some code reads.
        return self.value

    @property
    def waiting(self) -> int:
        """Threads queued in acquire() now (a snapshot)."""
        with self._lock():
            return len(self._queue)

    @property
    def fair(self) -> bool:
        """True if permits are granted strictly in arrival order."""
        return self._fair


class BoundedSemaphore(Semaphore):
    """BoundedSemaphore(value=1, *, fair=True)

    A Semaphore whose value may never exceed its initial value: a release()
    past it raises ValueError and changes nothing. It guards resources of
    limited capacity, where an extra release is a bug.
    """

    __slots__ = ()

    def __init__(self, value: int = 1, *, fair: bool = True) -> None:
        self._configure(value, _as_count(value), fair)

    def __repr__(self) -> str:
        cls = type(self)
        module = "fastsem" if cls.__module__ == __name__ else cls.__module__
        return (
            f"<{module}.{cls.__qualname__} at {id(self):#x}: value={self.value}/{self._max_value}>"
        )

    @property
    def max_value(self) -> int:
        """The bound: the initial value."""
        return self._max_value
