"""ResourcePool: a fair, thread-safe pool of connections or any resource.

Design, in short:

- **Places.** A ``BoundedSemaphore(max_size)`` hands out places in FIFO
  order: a permit is the right to hold one resource (in use, or being made,
  checked, reset or closed for its holder). Idle resources hold no permit.
  A thread that got a permit takes the most recently returned idle resource
  or, if none is idle, makes one.
- **Bookkeeping.** One ``threading.Lock`` guards everything else: the idle
  stack (a deque, newest on the right, so its left end is the resource idle
  the longest), the map of checked-out resources (by ``id()``, the resource
  kept referenced so the id cannot be reused), the count of live resources
  (``_size``: idle + in use + being made, checked, reset or closed) and the
  counters of ``stats()``. ``factory``, ``check``, ``reset``, ``close`` and
  logging are never called with that lock held.
- **Permit discipline.** A returned resource goes back on the idle stack
  *before* its permit is released; a resource thrown away is closed before
  its place is freed; each successful acquire releases its permit exactly
  once (in ``release`` or ``discard``), each failed one before it raises.
- **The cap, twice.** The semaphore alone keeps the live count within
  ``max_size``. The pool checks it again, under its lock, before every
  ``factory()`` call (``_size < max_size``); a permit holder that finds no idle
  resource and no room waits on a condition for one (it happens only while
  resources taken off the idle stack by ``resize()`` or ``close()`` are
  still being closed, or while a shrink drains).
- **No background thread.** Lifetimes are enforced when resources are
  checked out and returned; leaks are reported by the next pool call.
- **Tasks.** ``async_acquire()`` is ``acquire()`` with two awaits: for a
  place, in the semaphore's one FIFO queue (``_async_acquire_into``), and
  for room, on a wake-up that ``_notify()`` sends through the task's own
  loop, where a thread waits on the condition. Everything between runs in
  the task as it runs in a thread, factory() and check() included, and the
  same handler undoes whatever a CancelledError at either await finds.
"""

from __future__ import annotations

import enum
import functools
import logging
import operator
import sys
import threading
import traceback
from collections import deque
from dataclasses import dataclass, fields
from time import monotonic
from types import TracebackType
from typing import Any, Callable, ClassVar, Generic, TypeVar

from ._common import SemaphoreClosed
from ._impl import BoundedSemaphore, c_module

__all__ = [
    "PoolClosed",
    "PoolError",
    "PoolStats",
    "PoolTimeout",
    "PoolTooBusy",
    "ResourcePool",
]

T = TypeVar("T")

logger = logging.getLogger("fastsem.pool")


class PoolError(Exception):
    """The base class of the errors a ResourcePool raises."""


class PoolTimeout(PoolError, TimeoutError):
    """acquire() or lease() got no resource within its timeout."""


class PoolClosed(PoolError):
    """The pool is closed: raised by acquire() and lease() once close() was
    called, including in threads that were waiting for a resource then."""


class PoolTooBusy(PoolError):
    """acquire() found max_waiting callers already waiting, and did not wait."""


@dataclass(frozen=True)
class PoolStats:
    """What ResourcePool.stats() returns: a frozen snapshot, as
    Semaphore.statistics() returns a SemaphoreStatistics. Read the fields as
    attributes (stats.leaks); stats["leaks"] works too."""

    size: int
    idle: int
    in_use: int
    waiting: int
    max_size: int
    min_size: int
    created: int
    closed: int
    acquired: int
    timeouts: int
    too_busy: int
    factory_errors: int
    check_failures: int
    leaks: int
    contended: int
    wait_total: float
    wait_max: float
    wait_p50: float
    wait_p99: float

    def __getitem__(self, name: str) -> int | float:
        if name not in _POOL_STATS_FIELDS:
            raise KeyError(name)
        value: int | float = getattr(self, name)
        return value


_POOL_STATS_FIELDS = frozenset(field.name for field in fields(PoolStats))


class _Default(enum.Enum):
    """The type of the "pool's default timeout" marker."""

    TIMEOUT = "the pool's timeout"

    def __repr__(self) -> str:
        return "<the pool's timeout>"


_DEFAULT = _Default.TIMEOUT


class _Slot(Generic[T]):
    """One live resource and its times (time.monotonic() seconds). A slot is
    made once per resource and reused for every checkout of it."""

    __slots__ = (
        "acquired_at",
        "checkouts",
        "closing",
        "created_at",
        "key",
        "resource",
        "returned_at",
        "stack",
    )

    def __init__(self, resource: T, now: float) -> None:
        self.resource = resource
        # The key of the maps: the pool refuses a second live resource with
        # the same id (a factory that hands out one object twice).
        self.key = id(resource)
        self.created_at = now
        self.returned_at = now
        self.acquired_at = 0.0
        self.stack: traceback.StackSummary | None = None
        self.checkouts = 0  # counts hand-outs: a lease knows its own
        self.closing = False  # close(resource) has been called, or is running


class _Checkout(Generic[T]):
    """What one acquire() on the slow path has taken so far, so that an
    exception at any point (a Ctrl-C included) undoes exactly that: each
    field is set in the same critical section as the change it stands for,
    or before a change whose undo is idempotent."""

    __slots__ = ("deadline", "dropping", "fresh", "made", "making", "popped")

    def __init__(self) -> None:
        self.deadline: float | None = None  # of a wait for room (monotonic())
        self.making = False  # a place in _size is reserved for factory()
        self.made: T | None = None  # what factory() returned, until it has a slot
        self.fresh: _Slot[T] | None = None  # its slot, not yet placed
        # Taken off the idle stack: to hand out, or being checked.
        self.popped: _Slot[T] | None = None
        self.dropping: _Slot[T] | None = None  # off the idle stack, to be closed


def _mutex() -> Any:
    """The lock of the pool's bookkeeping, taken with `with` statements (an
    exception can land right after a plain acquire() call returns, before a
    try block starts, and strand the lock; `with` leaves no such gap). The
    compiled implementation's non-fair BoundedSemaphore(1) is such a lock,
    and its `with` costs half of a threading.Lock's (docs/design.rst, "The
    pool's lock"); the pure-Python install uses a threading.Lock."""
    if c_module is None:
        return threading.Lock()
    return c_module.BoundedSemaphore(1, fair=False)


def _complete_in_python(step: Callable[..., object], *args: Any) -> None:
    """The pure-Python install's _complete() (see _cfastsem's): the same
    runs, at most 16, but in Python code, where an exception can still
    escape the handler on this function's first instruction or at its
    loop's back edge."""
    runs = 0
    last: BaseException | None = None
    while True:
        try:
            step(*args)
        except BaseException as exc:
            last = exc
            runs += 1
            if runs < 16:
                continue
            raise
        break
    if last is not None:
        raise last


# Runs a handler's step (an undo, a return's completion) to its end, even
# when another exception cuts it short: step(*args) again until one run
# returns, then the last exception is raised, if any. Compiled, it leaves no
# point between the handler and the step where a signal handler could run.
_complete: Callable[..., None] = _complete_in_python if c_module is None else c_module._complete


def _seconds(value: object, what: str, *, positive: bool) -> float | None:
    if value is None:
        return None
    kind = type(value)
    if not (hasattr(kind, "__float__") or hasattr(kind, "__index__")):
        raise TypeError(f"{what} must be a number or None, not {kind.__name__}")
    seconds = float(value)  # type: ignore[arg-type]
    if seconds != seconds:
        raise ValueError(f"{what} must not be NaN")
    if positive and seconds <= 0:
        raise ValueError(f"{what} must be > 0 or None")
    return seconds


def _timeout(value: object) -> float | None:
    """A timeout, checked as Semaphore.acquire() checks it: TypeError for a
    non-number, ValueError for NaN, OverflowError past threading.TIMEOUT_MAX;
    0 or less means no wait."""
    seconds = _seconds(value, "timeout", positive=False)
    if seconds is not None and seconds > threading.TIMEOUT_MAX:
        raise OverflowError("timeout value is too large")
    return seconds


def _caller_stack() -> traceback.StackSummary:
    """The stack of the code that called into the pool, innermost frame last,
    with the pool's own frames left out. Source lines are looked up only when
    the stack is formatted (at a leak report)."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    stack = traceback.StackSummary.extract(
        traceback.walk_stack(frame), limit=32, lookup_lines=False
    )
    stack.reverse()
    return stack


def _wake_task(loop: Any, woken: Any) -> None:
    """Wakes a task waiting for room in the pool, from any thread: through
    its own loop. A loop closed meanwhile cannot be woken (its task is gone
    with it, and gives its place back when its coroutine is closed)."""
    try:
        loop.call_soon_threadsafe(_set_done, woken)
    except RuntimeError:
        pass


def _set_done(woken: Any) -> None:
    if not woken.done():
        woken.set_result(None)


class ResourcePool(Generic[T]):
    """A fair, thread-safe pool of resources (connections, sessions, clients...).

    At most max_size resources exist at once: idle, in use, and being made
    together. Callers waiting for a resource are served in the order they
    called acquire() (fair=False lets an arriving caller take a free place
    ahead of them: several times the checkouts per second when the pool is
    saturated, with longer worst-case waits). An idle resource is reused,
    the most recently returned first; factory() is called only when none
    is idle and the cap allows.

    factory() makes a resource. close(res), when given, closes one the pool
    throws away (a resource is otherwise just dropped). check(res), when
    given, runs on an idle resource before it is handed out: if it returns
    false or raises, the resource is closed and another is taken or made.
    reset(res), when given, runs when a resource is returned; if it raises,
    the resource is closed.

    timeout is the default of acquire() and lease(), in seconds; None means
    wait as long as it takes. max_lifetime and max_idle (seconds) close a
    resource older than that, or idle longer, instead of reusing it: when it
    is checked out or returned (there is no background thread). Expired
    resources are replaced to keep min_size alive; idle ones are closed only
    while more than min_size are alive. min_size resources are made when the
    pool is created (a factory error is raised from the constructor then).

    max_waiting: when that many callers already wait, acquire() raises
    PoolTooBusy at once. leak_timeout (seconds): a resource held longer is
    reported once through the logger "fastsem.pool" with the stack where it
    was acquired, and counted in stats()["leaks"]; the report is made by the
    next call of acquire(), release(), discard() or stats() after the time
    has passed, at the latest when the resource is returned. name appears in
    repr() and in log messages.

    The pool is a context manager: leaving the block calls close().

    asyncio tasks use async_acquire() and async_lease(): they wait in the
    same line as the threads, without blocking their loop.
    """

    # What counts the places: the implementation fastsem._impl chose (the
    # tests build pools on each implementation by setting this).
    _semaphore_type: ClassVar[type[BoundedSemaphore]] = BoundedSemaphore

    def __init__(
        self,
        factory: Callable[[], T],
        max_size: int,
        *,
        min_size: int = 0,
        timeout: float | None = None,
        close: Callable[[T], object] | None = None,
        check: Callable[[T], object] | None = None,
        reset: Callable[[T], object] | None = None,
        max_lifetime: float | None = None,
        max_idle: float | None = None,
        max_waiting: int | None = None,
        leak_timeout: float | None = None,
        fair: bool = True,
        name: str | None = None,
    ) -> None:
        if not callable(factory):
            raise TypeError("factory must be callable")
        for what, func in (("close", close), ("check", check), ("reset", reset)):
            if func is not None and not callable(func):
                raise TypeError(f"{what} must be callable or None")
        max_size = operator.index(max_size)
        min_size = operator.index(min_size)
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        if not 0 <= min_size <= max_size:
            raise ValueError("min_size must be >= 0 and <= max_size")
        if max_waiting is not None:
            max_waiting = operator.index(max_waiting)
            if max_waiting < 0:
                raise ValueError("max_waiting must be >= 0 or None")
        self._factory = factory
        self._close_func = close
        self._check = check
        self._reset = reset
        self._timeout = _timeout(timeout)
        self._max_lifetime = _seconds(max_lifetime, "max_lifetime", positive=True)
        self._max_idle = _seconds(max_idle, "max_idle", positive=True)
        self._leak_timeout = _seconds(leak_timeout, "leak_timeout", positive=True)
        self._max_waiting = max_waiting
        self._name = name if name is not None else f"ResourcePool-{id(self):#x}"
        # Checkout and return of an idle resource skip all the optional work
        # when none of it was asked for: one lock round trip each.
        plain = max_lifetime is None and max_idle is None and leak_timeout is None
        self._plain_checkout = plain and check is None
        self._plain_return = plain and reset is None

        self._sem = self._semaphore_type(max_size, fair=fair)
        self._lock = _mutex()
        self._cond = threading.Condition(self._lock)
        self._idle: deque[_Slot[T]] = deque()
        self._in_use: dict[int, _Slot[T]] = {}
        # The checked-out resources not yet reported as leaks, oldest first.
        self._unreported: dict[int, _Slot[T]] = {}
        self._size = 0
        self._max_size = max_size
        self._min_size = min_size
        self._closed = False
        # Every live resource (idle, in use, being checked or closed) by key.
        self._live: dict[int, _Slot[T]] = {}
        # Callers waiting for a place (max_waiting counts these), and permit
        # holders waiting for room to make a resource, each by a token of its
        # call: adding and discarding a token are idempotent, so an exception
        # at any point leaves the count right.
        self._waiters: set[int] = set()
        self._room_waiters: set[int] = set()
        # The tasks among the room waiters: token -> what wakes the task
        # (a thread waits on _cond instead; a task must not block its loop).
        self._task_room_waiters: dict[int, Callable[[], None]] = {}
        self._close_waiters = 0  # close(timeout) callers
        self._created = 0
        self._closed_count = 0
        self._acquired = 0
        self._timeouts = 0
        self._too_busy = 0
        self._factory_errors = 0
        self._check_failures = 0
        self._leaks = 0
        try:
            self._top_up(raise_errors=True)
        except BaseException:
            self.close()
            raise

    # -- properties --

    @property
    def name(self) -> str:
        """The name given at construction (or one made from the id)."""
        return self._name

    @property
    def max_size(self) -> int:
        """The most resources that may exist at once (see resize())."""
        return self._max_size

    @property
    def min_size(self) -> int:
        """The fewest resources the pool keeps alive (see resize())."""
        return self._min_size

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return self._closed

    def __repr__(self) -> str:
        # A snapshot without the lock: repr() must work where the lock is
        # held (a debugger, a failing assertion inside the pool's own code).
        size, idle, closed = self._size, len(self._idle), self._closed
        state = "closed" if closed else f"size={size}/{self._max_size}, idle={idle}"
        return f"<fastsem.ResourcePool {self._name!r}: {state}>"

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("cannot pickle 'ResourcePool' object")

    # -- acquire --
    #
    # Exception safety. An exception may arrive at any point of these paths:
    # a Ctrl-C where the interpreter runs signal handlers (after a call
    # returns, at a loop's back edge), or one raised by factory(), check(),
    # reset() or close(). Whatever the point, the pool's lock ends up free,
    # the caller's place (permit) is either the caller's or freed, and every
    # resource is idle, checked out, or closed with its place in _size given
    # up. The means: the place is taken and freed through a receipt the
    # semaphore fills in compiled code (_acquire_into, _release_from); state
    # changes inside the lock are single statements that call nothing, and
    # a call's progress is noted before a change whose undo is idempotent
    # (a slot's presence in the idle stack, the in-use map or _live says
    # where it is); each public method ends in one handler that undoes (an
    # acquire) or completes (a release or discard) from what it finds.
    #
    # A second exception may land in that handler (a signal storm lands two
    # Ctrl-Cs microseconds apart): the handler's step (_undo,
    # _finish_return, a lease's _give_back_unentered) runs through
    # _complete(), which runs it again until one run gets to the end; the
    # steps are idempotent for that.
    #
    # And no loop runs directly inside a with block of the lock: CPython's
    # compiler may leave a copy of a loop's back edge outside the with
    # statement's entry in the exception table, and 3.13 runs signal
    # handlers at a back edge before it jumps, so a Ctrl-C there would leave
    # the block without releasing the lock. Such loops are methods of their
    # own (_undo_slots, _take_leaks, _trim_idle), called with the lock held;
    # tests/test_hardening.py checks the compiled code for such gaps.

    def acquire(self, timeout: float | _Default | None = _DEFAULT) -> T:
        """acquire(timeout=<the pool's timeout>)

        Check out a resource and return it; give it back with release(), or
        throw it away with discard().

        Waits in line (FIFO) for a place, at most timeout seconds: left out,
        the pool's timeout; None, as long as it takes; 0 or less, not at all.
        Raises PoolTimeout when the time passes, PoolTooBusy when max_waiting
        callers already wait, PoolClosed if the pool is or gets closed, and
        whatever factory() raises if making a resource fails (its place is
        freed at once). A bad timeout raises TypeError, ValueError (NaN) or
        OverflowError (past threading.TIMEOUT_MAX), as Semaphore.acquire().
        If acquire() raises, for whatever reason (Ctrl-C included), the
        caller holds nothing.
        """
        if timeout is not _DEFAULT:
            timeout = _timeout(timeout)
        place: list[int] = []  # the semaphore notes the granted place here
        slot: _Slot[T] | None = None
        checkout: _Checkout[T] | None = None
        try:
            try:
                self._sem._acquire_into(place, False)
            except SemaphoreClosed:
                raise PoolClosed(f"pool {self._name!r} is closed") from None
            deadline = None
            if not place:
                deadline = self._wait_for_place(timeout, place)
            if self._plain_checkout:
                # The fast path: an idle resource, one lock round trip.
                with self._lock:
                    idle = self._idle
                    if idle and not self._closed:
                        slot = idle[-1]
                        del idle[-1]
                        self._in_use[slot.key] = slot
                        slot.checkouts += 1
                        self._acquired += 1
                        return slot.resource
            checkout = _Checkout()
            slot = self._checkout(checkout, timeout, deadline)
            if self._size < self._min_size:
                self._top_up(raise_errors=False)  # expired or failed ones were closed
            if self._leak_timeout is not None:
                self._report_leaks(monotonic())
            return slot.resource
        except BaseException:
            _complete(self._undo, place, slot, checkout)
            raise

    async def async_acquire(self, timeout: float | _Default | None = _DEFAULT) -> T:
        """async_acquire(timeout=<the pool's timeout>)

        acquire() for a task of an asyncio event loop: the task waits for a
        place in the same line as the threads calling acquire() (FIFO across
        both), without blocking its loop; the resource is given back with
        release() or discard(), as acquire()'s. Arguments, errors and
        defaults are acquire()'s: PoolTimeout, PoolTooBusy, PoolClosed, and
        what factory() raises.

        factory(), check() and close() stay synchronous: they run in the task,
        on the loop's thread, as acquire() runs them in the calling thread
        (a slow factory holds up the loop while it runs).

        A task cancelled while it waits (CancelledError, asyncio.timeout(),
        wait_for()) leaves the line and holds nothing; cancelled after its
        place was granted, it gives the place back. If async_acquire()
        raises, for whatever reason, the caller holds nothing.
        """
        if timeout is not _DEFAULT:
            timeout = _timeout(timeout)
        place: list[int] = []  # the semaphore notes the granted place here
        slot: _Slot[T] | None = None
        checkout: _Checkout[T] | None = None
        try:
            try:
                self._sem._acquire_into(place, False)
            except SemaphoreClosed:
                raise PoolClosed(f"pool {self._name!r} is closed") from None
            deadline = None
            if not place:
                deadline = await self._async_wait_for_place(timeout, place)
            if self._plain_checkout:
                # The fast path, acquire()'s: an idle resource, one lock round trip.
                with self._lock:
                    idle = self._idle
                    if idle and not self._closed:
                        slot = idle[-1]
                        del idle[-1]
                        self._in_use[slot.key] = slot
                        slot.checkouts += 1
                        self._acquired += 1
                        return slot.resource
            checkout = _Checkout()
            slot = await self._async_checkout(checkout, timeout, deadline)
            if self._size < self._min_size:
                self._top_up(raise_errors=False)  # expired or failed ones were closed
            if self._leak_timeout is not None:
                self._report_leaks(monotonic())
            return slot.resource
        except BaseException:
            # CancelledError and GeneratorExit (the task dropped) land here
            # too, at the awaits: the same undo as acquire()'s, run to its end.
            _complete(self._undo, place, slot, checkout)
            raise

    async def _async_wait_for_place(
        self, timeout: float | _Default | None, place: list[int]
    ) -> float | None:
        """_wait_for_place() for a task: queues for a permit in the
        semaphore's one FIFO, through its _async_acquire_into()."""
        timeout, deadline, counted = self._join_waiters(timeout, place)
        try:
            await self._sem._async_acquire_into(place, True, timeout)
        except SemaphoreClosed:
            raise PoolClosed(f"pool {self._name!r} is closed") from None
        finally:
            if counted:
                with self._lock:
                    self._waiters.discard(id(place))
        return self._placed_by(timeout, deadline, place)

    async def _async_checkout(
        self, checkout: _Checkout[T], timeout: float | _Default | None, deadline: float | None
    ) -> _Slot[T]:
        """_checkout() for a task: where a thread waits on the condition for
        room, the task registers a wake-up that _notify() calls (under the
        lock, so none is missed) and awaits it with the lock free."""
        import asyncio  # not at module level: importing fastsem must not import asyncio

        stack = _caller_stack() if self._leak_timeout is not None else None
        loop = asyncio.get_running_loop()
        token = id(checkout)
        checkout.deadline = deadline
        wait: list[Any] = [None, None]  # the wake-up to await, and for how long at most

        def task_wait() -> None:
            # With the lock held: the deadline's checks are _wait_for_room()'s.
            if checkout.deadline is None:
                limit = self._timeout if timeout is _DEFAULT else timeout
                if limit is not None:
                    checkout.deadline = monotonic() + float(limit)
            remaining = None if checkout.deadline is None else checkout.deadline - monotonic()
            if remaining is not None and remaining <= 0:
                self._timeouts += 1
                raise PoolTimeout(f"no resource free in pool {self._name!r} in time")
            woken = loop.create_future()
            self._room_waiters.add(token)
            self._task_room_waiters[token] = functools.partial(_wake_task, loop, woken)
            wait[0], wait[1] = woken, remaining

        while True:
            slot = self._checkout_step(checkout, timeout, stack, task_wait)
            if slot is not None:
                return slot
            woken, wait[0] = wait[0], None
            if woken is None:
                continue
            try:
                await asyncio.wait((woken,), timeout=wait[1])
            finally:
                with self._lock:
                    self._room_waiters.discard(token)
                    self._task_room_waiters.pop(token, None)

    def _undo(self, place: list[int], slot: _Slot[T] | None, checkout: _Checkout[T] | None) -> None:
        """An acquire() (or a top-up) is raising: whatever it took goes
        back. A resource it handed out, made, or took off the idle stack
        untouched, goes back on the stack; one being checked (check() may
        have been cut short), or being closed, is closed; a place reserved
        for factory() is given up; then the place is freed."""
        to_drop: list[_Slot[T]] = []
        with self._lock:
            self._waiters.discard(id(place))
            if checkout is not None:
                self._room_waiters.discard(id(checkout))
                self._task_room_waiters.pop(id(checkout), None)
                if checkout.dropping is not None and self._is_loose(checkout.dropping):
                    to_drop.append(checkout.dropping)
                fresh = checkout.fresh
                if fresh is None and checkout.made is not None:
                    # Kept: a second run of this undo must find the slot that
                    # says whether the resource was closed already.
                    fresh = checkout.fresh = _Slot(checkout.made, 0.0)
                if fresh is not None and fresh.key not in self._live:
                    to_drop.append(fresh)  # made, never placed: closed, not counted
                if checkout.making:
                    checkout.making = False  # factory() raised, or had not been placed
                    self._size -= 1
                    self._notify()
            self._undo_slots(slot, checkout, to_drop)
        self._drop_all(to_drop)
        if place:
            self._sem._release_from(place)

    def _undo_slots(
        self, slot: _Slot[T] | None, checkout: _Checkout[T] | None, to_drop: list[_Slot[T]]
    ) -> None:
        # With the lock held: _undo()'s loop, in a function of its own (no
        # loop inside a with block of the lock: see "Exception safety").
        for held in (slot,) if checkout is None else (slot, checkout.popped, checkout.fresh):
            if held is None:
                continue
            if self._in_use.get(held.key) is held:
                # Handed out, but the caller never got it.
                del self._in_use[held.key]
                self._unreported.pop(held.key, None)
                self._acquired -= 1
                self._put_back(held, to_drop)
            elif self._is_loose(held):
                if checkout is not None and held is checkout.popped and self._check:
                    to_drop.append(held)
                else:
                    self._put_back(held, to_drop)

    def _is_loose(self, slot: _Slot[T]) -> bool:
        # With the lock held: alive, but neither idle nor checked out (in
        # the hands of a call that is raising).
        return (
            self._live.get(slot.key) is slot
            and self._in_use.get(slot.key) is not slot
            and not any(idle is slot for idle in self._idle)
        )

    def _put_back(self, slot: _Slot[T], to_drop: list[_Slot[T]]) -> None:
        # With the lock held: a loose slot goes back on the idle stack (the
        # newest end), or is closed if the pool is closed or shrinking.
        if self._closed or self._size > self._max_size or slot.closing:
            to_drop.append(slot)
        else:
            self._idle.append(slot)
            self._notify()

    def _join_waiters(
        self, timeout: float | _Default | None, place: list[int]
    ) -> tuple[float | None, float | None, bool]:
        """Before a wait for a place (a thread's or a task's): the timeout
        resolved, refused at once if not positive, and with max_waiting the
        caller counted among the waiters under id(place). Returns the
        timeout, the deadline it sets (None for no limit) and whether the
        caller was counted."""
        if timeout is _DEFAULT:
            timeout = self._timeout
        if timeout is not None and timeout <= 0:
            with self._lock:
                self._timeouts += 1
            raise PoolTimeout(f"no resource free in pool {self._name!r}")
        deadline = None if timeout is None else monotonic() + timeout
        counted = self._max_waiting is not None
        if counted:
            with self._lock:
                if self._closed:
                    raise PoolClosed(f"pool {self._name!r} is closed")
                if len(self._waiters) >= self._max_waiting:  # type: ignore[operator]
                    self._too_busy += 1
                    raise PoolTooBusy(
                        f"{len(self._waiters)} callers already wait for pool {self._name!r}"
                        f" (max_waiting={self._max_waiting})"
                    )
                self._waiters.add(id(place))
        return timeout, deadline, counted

    def _placed_by(
        self, timeout: float | None, deadline: float | None, place: list[int]
    ) -> float | None:
        """After a wait for a place: PoolTimeout if none came, else the
        deadline, for the rest of the acquire."""
        if not place:
            with self._lock:
                self._timeouts += 1
            raise PoolTimeout(f"no resource free in pool {self._name!r} within {timeout} s")
        return deadline

    def _wait_for_place(self, timeout: float | _Default | None, place: list[int]) -> float | None:
        """Queues for a permit (the fast attempt failed); place is filled in
        when it is granted. Returns the deadline (None for no limit) or
        raises."""
        timeout, deadline, counted = self._join_waiters(timeout, place)
        try:
            self._sem._acquire_into(place, True, timeout)
        except SemaphoreClosed:
            raise PoolClosed(f"pool {self._name!r} is closed") from None
        finally:
            if counted:
                with self._lock:
                    self._waiters.discard(id(place))
        return self._placed_by(timeout, deadline, place)

    def _checkout(
        self, checkout: _Checkout[T], timeout: float | _Default | None, deadline: float | None
    ) -> _Slot[T]:
        """Gets a resource for a caller that holds a place: an idle one
        (after the expiry rules and check()), or a new one. What it holds
        is in `checkout`; if it raises, acquire() undoes that."""
        stack = _caller_stack() if self._leak_timeout is not None else None
        checkout.deadline = deadline
        while True:
            slot = self._checkout_step(checkout, timeout, stack)
            if slot is not None:
                return slot

    def _checkout_step(
        self,
        checkout: _Checkout[T],
        timeout: float | _Default | None,
        stack: traceback.StackSummary | None,
        task_wait: Callable[[], None] | None = None,
    ) -> _Slot[T] | None:
        """One round of a checkout (acquire()'s and async_acquire()'s): returns
        the slot handed out, or None to go round again. When no resource is
        idle and there is no room to make one, a thread waits for room on the
        condition (until checkout.deadline); a task's task_wait() arranges for
        it to be woken; either raises PoolTimeout once the time is up. Both
        are called with the lock held, so that no notification is missed."""
        if checkout.dropping is not None:
            self._drop(checkout.dropping)  # the place is freed even if close() raises
            checkout.dropping = None
        with self._lock:
            if self._closed:
                raise PoolClosed(f"pool {self._name!r} is closed")
            idle = self._idle
            if idle:
                now = monotonic()
                oldest = idle[0]
                if (
                    self._max_idle is not None
                    and self._size > self._min_size
                    and now - oldest.returned_at > self._max_idle
                ):
                    checkout.dropping = oldest
                    del idle[0]
                else:
                    slot = idle[-1]
                    checkout.popped = slot
                    del idle[-1]
                    if (
                        self._max_lifetime is not None
                        and now - slot.created_at > self._max_lifetime
                    ):
                        checkout.dropping = slot
                        checkout.popped = None
                    elif self._check is None:
                        self._hand_out(slot, now, stack)
                        return slot
            elif self._size < self._max_size:
                checkout.making = True
                self._size += 1
            elif task_wait is None:
                checkout.deadline = self._wait_for_room(timeout, checkout.deadline, id(checkout))
                return None
            else:
                task_wait()
                return None
        if checkout.dropping is not None:
            return None  # expired: closed at the top of the next round
        popped = checkout.popped
        if popped is not None:
            if self._passes_check(popped):
                with self._lock:
                    if not self._closed:
                        self._hand_out(popped, monotonic(), stack)
                        return popped
                return None  # closed meanwhile: the handler closes it, the next round raises
            checkout.dropping = popped
            checkout.popped = None
            return None
        fresh = self._make(checkout)  # into the place reserved above
        with self._lock:
            if not self._closed:
                self._hand_out(fresh, fresh.created_at, stack)
                return fresh
        return None  # closed meanwhile: the handler closes it, the next round raises

    def _make(self, checkout: _Checkout[T]) -> _Slot[T]:
        """Calls factory() for the place reserved in _size (checkout.making)
        and registers the new resource as live; it is then loose until the
        caller places it. What it holds is in `checkout`: if it raises,
        _undo() closes what was made (unless the pool already holds that
        object: PoolError) and gives the reservation up."""
        try:
            checkout.made = self._factory()
        except BaseException:
            with self._lock:
                self._factory_errors += 1
            raise
        resource = checkout.made
        fresh = checkout.fresh = _Slot(resource, monotonic())
        with self._lock:
            self._created += 1
            if fresh.key in self._live:
                # Not ours to close: it is in the pool already.
                checkout.fresh = checkout.made = None
                raise PoolError(
                    f"factory() of pool {self._name!r} returned {resource!r}, an object"
                    " the pool already holds; each resource must be a distinct object"
                )
            self._live[fresh.key] = fresh
            checkout.making = False
        return fresh

    def _hand_out(self, slot: _Slot[T], now: float, stack: traceback.StackSummary | None) -> None:
        # With the lock held.
        self._in_use[slot.key] = slot
        slot.checkouts += 1
        self._acquired += 1
        if self._leak_timeout is not None:
            slot.acquired_at = now
            slot.stack = stack
            self._unreported[slot.key] = slot

    def _wait_for_room(
        self, timeout: float | _Default | None, deadline: float | None, token: int
    ) -> float | None:
        """With the lock held: waits until a resource is idle or there is room
        to make one. Returns the deadline; raises PoolTimeout."""
        if deadline is None:
            if timeout is _DEFAULT:
                timeout = self._timeout
            if timeout is not None:
                deadline = monotonic() + float(timeout)
        remaining = None if deadline is None else deadline - monotonic()
        if remaining is not None and remaining <= 0:
            self._timeouts += 1
            raise PoolTimeout(f"no resource free in pool {self._name!r} in time")
        self._room_waiters.add(token)
        try:
            self._cond.wait(remaining)
        finally:
            self._room_waiters.discard(token)
        return deadline

    def _passes_check(self, slot: _Slot[T]) -> bool:
        assert self._check is not None
        try:
            ok = bool(self._check(slot.resource))
        except Exception:
            logger.debug("pool %r: check() raised", self._name, exc_info=True)
            ok = False
        if not ok:
            with self._lock:
                self._check_failures += 1
        return ok

    # -- release and discard --

    def release(self, resource: T) -> None:
        """release(resource)

        Give a resource back to the pool.

        reset(resource) runs first when given (if it raises, the resource is
        closed instead); an expired resource, or one returned to a closed
        pool, is closed. Raises ValueError, and changes nothing, if resource
        is not checked out from this pool (never was, or was already given
        back). Once it has taken the resource back, release() finishes even
        if interrupted (the resource is then closed, unless it was already
        idle again) and only then lets the exception through.
        """
        self._give_back(resource, None)

    def _give_back(
        self, resource: T, lease: tuple[_Slot[T], int] | None, *, discard: bool = False
    ) -> None:
        """release(), discard(), or the exit of a lease: then only the
        lease's own checkout of the slot is given back (None if the block
        did it)."""
        place = [1]  # the checkout's place, until the semaphore has it back
        looked = False  # whether it is decided what this call gives back
        taken: _Slot[T] | None = None  # out of the in-use map
        try:
            with self._lock:
                if lease is None:
                    key = id(resource)
                    found = self._in_use.get(key)
                    if found is None or found.resource is not resource:
                        looked = True
                        raise ValueError(
                            f"{resource!r} is not checked out from pool {self._name!r}"
                        )
                else:
                    found, checkout_number = lease
                    if (
                        self._in_use.get(found.key) is not found
                        or found.checkouts != checkout_number
                    ):
                        return  # the block released or discarded it itself
                looked = True
                taken = found
                del self._in_use[found.key]
                plain = (
                    not discard
                    and self._plain_return
                    and not self._closed
                    and self._size <= self._max_size
                )
                if plain:
                    self._idle.append(found)  # first the resource,
                    if self._room_waiters or self._close_waiters:
                        self._notify()
            if plain:
                self._sem._release_from(place)  # then the place
                return
            if discard:
                self._report_leaks(monotonic(), returning=found)
                self._drop(found)
                self._sem._release_from(place)
            else:
                self._return(found, place)
        except BaseException:
            if taken is not None:
                _complete(self._finish_return, taken, place)
            elif not looked:
                self._give_back(resource, lease, discard=discard)  # interrupted before it looked
            raise
        if discard and self._size < self._min_size:
            self._top_up(raise_errors=False)

    def _finish_return(self, slot: _Slot[T], place: list[int]) -> None:
        """A release or discard is raising after it took the slot out of the
        in-use map: the resource is closed unless it is idle again (reset()
        may have been interrupted), then the place is freed."""
        with self._lock:
            loose = self._is_loose(slot)
        if loose:
            self._drop(slot)
        if place:
            self._sem._release_from(place)

    def _return(self, slot: _Slot[T], place: list[int]) -> None:
        """The slow part of release(): the slot is already out of the in-use
        map; it goes back on the idle stack or is closed, then the place is
        freed."""
        now = monotonic()
        self._report_leaks(now, returning=slot)
        keep = not self._closed and (
            self._max_lifetime is None or now - slot.created_at <= self._max_lifetime
        )
        if keep and self._reset is not None:
            try:
                self._reset(slot.resource)
            except Exception:
                logger.warning(
                    "pool %r: reset() raised; the resource is closed",
                    self._name,
                    exc_info=True,
                )
                keep = False
        placed = False
        if keep:
            with self._lock:
                if not self._closed and self._size <= self._max_size:
                    slot.returned_at = monotonic()
                    self._idle.append(slot)  # first the resource,
                    self._notify()
                    placed = True
        if not placed:
            self._drop(slot)
        self._sem._release_from(place)  # then the place
        if not placed and self._size < self._min_size:
            self._top_up(raise_errors=False)

    def discard(self, resource: T) -> None:
        """discard(resource)

        Throw a checked-out resource away (it is broken): close it and free
        its place. Raises ValueError, and changes nothing, if resource is not
        checked out from this pool. If fewer than min_size resources are left,
        a new one is made (a factory error is logged, not raised).
        """
        self._give_back(resource, None, discard=True)

    def _drop(self, slot: _Slot[T]) -> None:
        """Closes a resource the caller took out of the pool's structures, then
        frees its place in _size. The lock must not be held. Idempotent: a
        resource is closed once, and its place freed once, however often
        this runs (an interrupted caller's handler may run it again)."""
        try:
            if self._close_func is not None and not slot.closing:
                slot.closing = True
                try:
                    self._close_func(slot.resource)
                except Exception:
                    logger.warning("pool %r: close() raised", self._name, exc_info=True)
        finally:
            with self._lock:
                if self._live.get(slot.key) is slot:
                    del self._live[slot.key]
                    self._size -= 1
                    self._closed_count += 1
                    self._notify()

    def _drop_all(self, slots: list[_Slot[T]]) -> None:
        """Drops every slot, even when dropping one raises (the first
        exception is raised at the end)."""
        error: BaseException | None = None
        for slot in slots:
            try:
                self._drop(slot)
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error

    def _notify(self) -> None:
        # With the lock held: wake whoever waits for room or for close().
        if self._room_waiters or self._close_waiters:
            self._cond.notify_all()
            for wake in self._task_room_waiters.values():
                wake()

    def _top_up(self, *, raise_errors: bool) -> None:
        """Makes idle resources while fewer than min_size are alive."""
        while True:
            checkout: _Checkout[T] = _Checkout()
            try:
                with self._lock:
                    if self._closed or self._size >= min(self._min_size, self._max_size):
                        return
                    checkout.making = True
                    self._size += 1
                made = self._make(checkout)
                with self._lock:
                    if self._closed:
                        raise PoolClosed(f"pool {self._name!r} is closed")
                    self._idle.append(made)
                    self._notify()
            except BaseException as exc:
                _complete(self._undo, [], None, checkout)
                if isinstance(exc, PoolClosed):
                    return
                if raise_errors or not isinstance(exc, Exception):
                    raise
                logger.warning(
                    "pool %r: factory() raised while keeping min_size=%d",
                    self._name,
                    self._min_size,
                    exc_info=True,
                )
                return

    # -- lease --

    def lease(self, timeout: float | _Default | None = _DEFAULT) -> _Lease[T]:
        """lease(timeout=<the pool's timeout>)

        Return a context manager: acquire(timeout) on entry, giving the
        resource to the ``as`` target, and release() on exit, even when the
        block raises. If the block releases or discards the resource itself,
        the exit has nothing to give back. A lease serves one ``with`` block:
        entering it again (nested, or from another thread) raises
        RuntimeError; call lease() for each block.
        """
        if timeout is not _DEFAULT:
            timeout = _timeout(timeout)
        return _Lease(self, timeout)

    def async_lease(self, timeout: float | _Default | None = _DEFAULT) -> _AsyncLease[T]:
        """async_lease(timeout=<the pool's timeout>)

        lease() for a task: ``async with pool.async_lease() as res:`` awaits
        async_acquire(timeout) on entry and calls release() on exit, even
        when the block raises or the task is cancelled. As a lease, it
        serves one ``async with`` block.
        """
        if timeout is not _DEFAULT:
            timeout = _timeout(timeout)
        return _AsyncLease(self, timeout)

    # -- leaks --

    def _report_leaks(self, now: float, returning: _Slot[T] | None = None) -> None:
        """Reports, once each, the leases older than leak_timeout (and the one
        being returned, if it was held longer)."""
        limit = self._leak_timeout
        if limit is None:
            return
        found: list[tuple[_Slot[T], float]] = []
        with self._lock:
            unreported = self._unreported
            if returning is not None:
                key = id(returning.resource)
                if unreported.pop(key, None) is not None and now - returning.acquired_at > limit:
                    found.append((returning, now - returning.acquired_at))
            self._take_leaks(now, limit, found)
            self._leaks += len(found)
        for slot, held in found:
            stack = "".join(slot.stack.format()) if slot.stack is not None else "(unknown)\n"
            logger.warning(
                "pool %r: %r has been checked out for %.3f s, longer than leak_timeout=%s s;"
                " it was acquired at:\n%s",
                self._name,
                slot.resource,
                held,
                limit,
                stack.rstrip("\n"),
            )

    def _take_leaks(self, now: float, limit: float, found: list[tuple[_Slot[T], float]]) -> None:
        # With the lock held: moves the checkouts older than limit from
        # _unreported to found, oldest first (a loop of its own: see
        # "Exception safety").
        unreported = self._unreported
        while unreported:
            slot = next(iter(unreported.values()))
            if now - slot.acquired_at <= limit:
                break
            del unreported[id(slot.resource)]
            found.append((slot, now - slot.acquired_at))

    # -- resize, stats, close --

    def resize(self, max_size: int | None = None, min_size: int | None = None) -> None:
        """Change max_size and/or min_size now (None keeps the current value).

        Growing lets waiters in, in order. Shrinking closes idle resources now
        (those idle the longest first) and lets in-use ones drain: they are
        closed when returned, until no more than max_size are alive. Raising
        min_size makes the missing resources now (a factory error is raised).
        Raises ValueError for max_size < 1 or min_size outside 0..max_size,
        and PoolClosed on a closed pool.
        """
        trimmed: list[_Slot[T]] = []
        with self._lock:
            if self._closed:
                raise PoolClosed(f"pool {self._name!r} is closed")
            new_max = self._max_size if max_size is None else operator.index(max_size)
            new_min = self._min_size if min_size is None else operator.index(min_size)
            if new_max < 1:
                raise ValueError("max_size must be >= 1")
            if not 0 <= new_min <= new_max:
                raise ValueError("min_size must be >= 0 and <= max_size")
            old_max, old_min = self._max_size, self._min_size
            self._max_size, self._min_size = new_max, new_min
            if new_max != old_max:
                # Under the pool lock so that concurrent resizes keep the
                # semaphore's bound and _max_size in step; it never blocks.
                try:
                    self._sem.resize(new_max)
                except BaseException:
                    if self._sem.max_value != new_max:  # it did not happen
                        self._max_size, self._min_size = old_max, old_min
                    raise
        try:
            with self._lock:
                self._trim_idle(trimmed)
                self._notify()
        finally:
            self._drop_all(trimmed)
        self._top_up(raise_errors=True)

    def _trim_idle(self, trimmed: list[_Slot[T]]) -> None:
        # With the lock held: takes idle resources, those idle the longest
        # first, into trimmed until the rest fit max_size (a loop of its
        # own: see "Exception safety").
        idle = self._idle
        while self._size - len(trimmed) > self._max_size and idle:
            slot = idle[0]
            del idle[0]
            trimmed.append(slot)

    def stats(self) -> PoolStats:
        """Return a snapshot of the pool, a PoolStats (a frozen dataclass):

        size (resources alive: idle, in use, being made, checked, reset or
        closed), idle, in_use, waiting (callers waiting for a place now),
        max_size, min_size; counters since creation: created, closed
        (resources closed or dropped), acquired, timeouts, too_busy
        (PoolTooBusy raised), factory_errors, check_failures, leaks; and the
        waits for a place, from the pool's semaphore statistics: contended
        (acquires that had to queue) and, of those, wait_total, wait_max,
        wait_p50 and wait_p99 in seconds (the percentiles are upper bounds
        within 25%, from a log-scale histogram).
        """
        self._report_leaks(monotonic())
        sem_stats = self._sem.statistics()
        with self._lock:
            return PoolStats(
                size=self._size,
                idle=len(self._idle),
                in_use=len(self._in_use),
                waiting=sem_stats.waiting + len(self._room_waiters),
                max_size=self._max_size,
                min_size=self._min_size,
                created=self._created,
                closed=self._closed_count,
                acquired=self._acquired,
                timeouts=self._timeouts,
                too_busy=self._too_busy,
                factory_errors=self._factory_errors,
                check_failures=self._check_failures,
                leaks=self._leaks,
                contended=sem_stats.contended,
                wait_total=sem_stats.wait_total,
                wait_max=sem_stats.wait_max,
                wait_p50=sem_stats.wait_p50,
                wait_p99=sem_stats.wait_p99,
            )

    def close(self, timeout: float | None = None) -> bool:
        """Close the pool. New acquires, and callers waiting now, raise
        PoolClosed at once; idle resources are closed now; resources in use
        are closed when they are returned (release() and discard() still
        work). With a timeout, wait up to that many seconds for them to come
        back and be closed. Return True if no resource is left alive. Closing
        again only waits (if asked), and closes what an interrupted close()
        left.
        """
        wait_for = _timeout(timeout)
        idle: list[_Slot[T]] = []
        try:
            with self._lock:
                self._closed = True
                idle = list(self._idle)
                self._idle.clear()
                self._unreported.clear()
                self._notify()
            self._sem.close()  # idempotent
        finally:
            self._drop_all(idle)
        with self._lock:
            if wait_for is not None and self._size:
                deadline = monotonic() + wait_for
                self._close_waiters += 1
                try:
                    while self._size:
                        remaining = deadline - monotonic()
                        if remaining <= 0:
                            break
                        self._cond.wait(remaining)
                finally:
                    self._close_waiters -= 1
            return self._size == 0

    def __enter__(self) -> ResourcePool[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _LeaseState(Generic[T]):
    """What a lease, sync or async, keeps between its entry and its exit."""

    __slots__ = ("_checkout", "_pool", "_slot", "_ticket", "_timeout")

    def __init__(self, pool: ResourcePool[T], timeout: float | _Default | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._slot: _Slot[T] | None = None
        self._checkout = 0
        # Popped by the one entry allowed: list.pop() is atomic, so of two
        # threads entering at once exactly one gets it.
        self._ticket = [True]

    def _give_back_unentered(self, resource: T, noted: list[tuple[_Slot[T], int]]) -> None:
        # Idempotent: the checkout is noted (one list append) before it is
        # given back, so a second run gives back that checkout or nothing,
        # never a later one of the same resource by another thread.
        pool = self._pool
        if not noted:
            with pool._lock:
                slot = pool._in_use.get(id(resource))
                if slot is None:
                    return
                noted.append((slot, slot.checkouts))
        pool._give_back(resource, noted[0])


class _Lease(_LeaseState[T]):
    """What ResourcePool.lease() returns: one checkout for one with block.

    It remembers which checkout of the resource was its own, so that its
    exit gives back that one only (never a later checkout of the same
    resource by someone else, when the block gave it back itself), and it
    refuses a second entry."""

    __slots__ = ()

    def __enter__(self) -> T:
        try:
            self._ticket.pop()
        except IndexError:
            raise RuntimeError(
                "this lease was entered already: call pool.lease() for each with block"
            ) from None
        pool = self._pool
        resource = pool.acquire(self._timeout)
        try:
            # A dict read is atomic, also on free-threaded builds.
            slot = pool._in_use.get(id(resource))
        except BaseException:
            # A Ctrl-C right here: the block never runs, the resource goes
            # back (to the end, even if another exception cuts that short).
            _complete(self._give_back_unentered, resource, [])
            raise
        if slot is not None:
            self._checkout = slot.checkouts
        self._slot = slot
        return resource

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        slot = self._slot
        if slot is not None:
            self._pool._give_back(slot.resource, (slot, self._checkout))
            self._slot = None


class _AsyncLease(_LeaseState[T]):
    """What ResourcePool.async_lease() returns: _Lease's rules for one
    ``async with`` block."""

    __slots__ = ()

    async def __aenter__(self) -> T:
        try:
            self._ticket.pop()
        except IndexError:
            raise RuntimeError(
                "this lease was entered already: call pool.async_lease() for each async with block"
            ) from None
        pool = self._pool
        resource = await pool.async_acquire(self._timeout)
        try:
            slot = pool._in_use.get(id(resource))
        except BaseException:
            # A Ctrl-C right here: the block never runs, the resource goes
            # back (to the end, even if another exception cuts that short).
            _complete(self._give_back_unentered, resource, [])
            raise
        if slot is not None:
            self._checkout = slot.checkouts
        self._slot = slot
        return resource

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        slot = self._slot
        if slot is not None:
            self._pool._give_back(slot.resource, (slot, self._checkout))
            self._slot = None
