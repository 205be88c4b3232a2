"""What both implementations share: the exception for a closed semaphore,
the statistics snapshot and its histogram arithmetic, hold()'s context
manager, and holder tracking. Policy lives here, in Python; the counting is
the core's."""

from __future__ import annotations

import itertools
import sys
import threading
import traceback
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

__all__ = [
    "COUNT_MAX",
    "HIST_BUCKETS",
    "AsyncHold",
    "Hold",
    "Holder",
    "HolderTracker",
    "SemaphoreClosed",
    "SemaphoreStatistics",
    "histogram_bucket",
    "make_statistics",
]

# The largest count a semaphore holds: the C core keeps two flags beside the
# count in one 64-bit word. The pure-Python version keeps the same limit.
COUNT_MAX = 2**62 - 1


class SemaphoreClosed(RuntimeError):
    """Raised by acquire() (and hold(), and `with`, and their async twins) on
    a closed semaphore, including in threads and tasks that were waiting when
    it was closed."""


# The wait-time histogram, the same in C (csrc/fastsem_core.h) and Python:
# bucket 0 holds waits under 2**10 ns (about 1 us); then each doubling,
# 2**k .. 2**(k+1) ns for k >= 10, is split into HIST_SUBBUCKETS equal parts,
# for HIST_OCTAVES doublings (to 2**45 ns, about 9.8 hours; longer waits land
# in the last bucket).
HIST_SUBBUCKETS = 4
HIST_OCTAVES = 35
HIST_FIRST_OCTAVE = 10
HIST_BUCKETS = 1 + HIST_SUBBUCKETS * HIST_OCTAVES


def histogram_bucket(waited_ns: int) -> int:
    if waited_ns < 1 << HIST_FIRST_OCTAVE:
        return 0
    top = waited_ns.bit_length() - 1
    octave = top - HIST_FIRST_OCTAVE
    if octave >= HIST_OCTAVES:
        return HIST_BUCKETS - 1
    sub = ((waited_ns - (1 << top)) * HIST_SUBBUCKETS) >> top
    return 1 + octave * HIST_SUBBUCKETS + sub


def _bucket_upper_ns(index: int) -> int:
    if index == 0:
        return 1 << HIST_FIRST_OCTAVE
    octave, sub = divmod(index - 1, HIST_SUBBUCKETS)
    top = octave + HIST_FIRST_OCTAVE
    return (1 << top) + (sub + 1) * ((1 << top) // HIST_SUBBUCKETS)


@dataclass(frozen=True)
class SemaphoreStatistics:
    """A snapshot of a semaphore's counters since creation or the last
    reset_statistics(). Times are in seconds; the wait times are those of
    contended acquisitions (the ones that had to queue), each from joining
    the queue to the grant of the permits, and the percentiles
    come from a log-scale histogram (4 buckets per doubling), so they are
    upper bounds within 25%, never above wait_max."""

    acquisitions: int  # successful acquires, waiting or not
    contended: int  # of those, the ones that had to queue
    timeouts: int  # acquires that gave up at their timeout
    # waits abandoned by an exception (Ctrl-C, a task's cancellation), or by
    # a task whose event loop closed; close() is not one
    interrupts: int
    waiting: int  # threads and tasks queued now
    max_waiting: int  # the longest the queue has been
    wait_total: float
    wait_max: float
    wait_p50: float
    wait_p90: float
    wait_p99: float


def make_statistics(
    acquisitions: int,
    contended: int,
    timeouts: int,
    interrupts: int,
    waiting: int,
    max_waiting: int,
    wait_total_ns: int,
    wait_max_ns: int,
    histogram: Sequence[int],
) -> SemaphoreStatistics:
    total = sum(histogram)

    def percentile(p: float) -> float:
        if total == 0:
            return 0.0
        rank = max(1, -(-total * p // 100))  # nearest rank, rounded up
        seen = 0
        for index, count in enumerate(histogram):
            seen += count
            if seen >= rank:
                return min(_bucket_upper_ns(index), wait_max_ns) / 1e9
        return wait_max_ns / 1e9

    return SemaphoreStatistics(
        acquisitions=acquisitions,
        contended=contended,
        timeouts=timeouts,
        interrupts=interrupts,
        waiting=waiting,
        max_waiting=max_waiting,
        wait_total=wait_total_ns / 1e9,
        wait_max=wait_max_ns / 1e9,
        wait_p50=percentile(50),
        wait_p90=percentile(90),
        wait_p99=percentile(99),
    )


def _not_granted(n: int, timeout: object) -> TimeoutError:
    return TimeoutError(
        f"could not acquire {n} permit{'s' if n != 1 else ''} within {timeout} seconds"
    )


class Hold:
    """What sem.hold() returns: acquires on entry or raises TimeoutError,
    releases on exit even when the block raises.

    Entry takes the permits through the semaphore's own acquire path (never
    an acquire() a subclass overrides, as threading's `with` does) and notes
    them in a receipt before returning, so that an exception arriving just
    after the permits were taken (a Ctrl-C) gives them back instead of
    stranding them. Exit calls release(), overridable, as threading's `with`.
    The object holds no state between entry and exit: one Hold may be
    entered by several threads at once."""

    __slots__ = ("_n", "_sem", "_timeout")

    def __init__(self, sem: Any, timeout: float | None, n: int) -> None:
        self._sem = sem
        self._timeout = timeout
        self._n = n

    def __enter__(self) -> Any:
        sem = self._sem
        receipt: list[int] = []
        try:
            sem._acquire_into(receipt, True, self._timeout, self._n)
        except BaseException:
            if receipt:
                sem._release_from(receipt)
            raise
        if not receipt:
            raise _not_granted(self._n, self._timeout)
        return sem

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._sem.release(self._n)


class AsyncHold:
    """What sem.async_hold() returns: Hold for a task (`async with`).

    Entry awaits the semaphore's own asynchronous acquire path, which notes
    the permits in the receipt in the step that finds them granted. A
    cancellation that comes before that step is the acquire's to handle (it
    passes on a grant its task never saw); an exception that comes after it,
    on the way out (a KeyboardInterrupt from a signal handler), gives back
    what the receipt holds instead of stranding it. Like Hold, it holds no
    state between entry and exit: one AsyncHold may be entered by several
    tasks at once."""

    __slots__ = ("_n", "_sem", "_timeout")

    def __init__(self, sem: Any, timeout: float | None, n: int) -> None:
        self._sem = sem
        self._timeout = timeout
        self._n = n

    async def __aenter__(self) -> Any:
        sem = self._sem
        receipt: list[int] = []
        try:
            await sem._async_acquire_into(receipt, True, self._timeout, self._n)
        except BaseException:
            if receipt:
                sem._release_from(receipt)
            raise
        if not receipt:
            raise _not_granted(self._n, self._timeout)
        return sem

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._sem.release(self._n)


@dataclass(frozen=True)
class Holder:
    """Who holds permits, as recorded with track_holders=True: a thread, or
    a task (each task is a holder of its own, in its loop's thread)."""

    thread_id: int
    thread_name: str
    permits: int
    # Where each still-held acquisition was made, oldest first: the formatted
    # stack of the acquire() call (innermost frame last).
    acquired_at: tuple[str, ...]
    # The task's name for an asyncio task's permits; None for a thread's own.
    task: str | None = None


def _current_task() -> Any:
    """The asyncio task running in this thread now, or None. asyncio is never
    imported for this: if nobody has imported it, no task runs."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or asyncio._get_running_loop() is None:
        return None
    return asyncio.current_task()


class HolderTracker:
    """Records which thread or task holds how many permits and where it took
    them. A task is a holder of its own, apart from its loop's thread and
    from the other tasks of that loop.

    Permits are not owned: any thread or task may release them. A release is
    charged to the releaser's own acquisitions first (newest first), then to
    the others' acquisitions, oldest first.

    The semaphores use it in three steps, so that an exception at any point
    (a Ctrl-C, a RecursionError) never leaves the records and the permits
    disagreeing: record() describes an acquisition before the permits are
    taken (no state changes); the caller stores the record under a fresh key
    once they are taken, with one dict store; a release computes its charge()
    (no state changes) under the tracker's lock, releases the permits, then
    applies the charge. In the C implementation the stores run in compiled
    code, where no signal handler can interrupt them.
    """

    __slots__ = ("keys", "lock", "records")

    def __init__(self) -> None:
        # Serialises charge-and-apply between releasers; stores of new
        # records need no lock (one dict store each).
        self.lock = threading.Lock()
        self.keys = itertools.count()
        # key -> [thread id, thread name, permits, stack text, task, task
        # name], keys in acquisition order. task is a weak reference to the
        # asyncio task (None for a thread): it names the holder without
        # keeping a finished task alive, and a task made later at the same
        # address is never taken for it (a dead reference equals only
        # itself).
        self.records: dict[int, list[Any]] = {}

    def record(self, n: int) -> list[Any]:
        """A record of an acquisition of n permits by this thread or task, here."""
        # Drop the frames of fastsem itself: the caller's acquire() is last.
        frame = sys._getframe(1)
        while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
            "fastsem."
        ):
            frame = frame.f_back
        where = "".join(traceback.format_stack(frame, limit=12))
        task = _current_task()
        if task is None:
            return [threading.get_ident(), threading.current_thread().name, n, where, None, None]
        ref = weakref.ref(task)
        # holders() groups by the reference: its hash is taken now, while the
        # task lives (a dead reference cannot compute it).
        hash(ref)
        return [
            threading.get_ident(), threading.current_thread().name, n, where, ref, task.get_name()
        ]  # fmt: skip

    def charge(self, n: int) -> tuple[dict[int, list[Any]], list[int]]:
        """What releasing n permits from this thread or task does to the
        records, computed, not applied: the records that shrink (key -> new
        record) and the keys of those that go. The caller holds the lock."""
        me = threading.get_ident()
        task = _current_task()
        mine = None if task is None else weakref.ref(task)
        records = self.records.copy()
        order = [
            key
            for key, record in reversed(records.items())
            if record[0] == me and record[4] == mine
        ]
        order += [
            key for key, record in records.items() if not (record[0] == me and record[4] == mine)
        ]
        shrunk: dict[int, list[Any]] = {}
        gone: list[int] = []
        for key in order:
            if n == 0:
                break
            record = records[key]
            taken = min(n, record[2])
            n -= taken
            if taken == record[2]:
                gone.append(key)
            else:
                shrunk[key] = [*record[:2], record[2] - taken, *record[3:]]
        return shrunk, gone

    def holders(self) -> list[Holder]:
        by_holder: dict[tuple[int, Any], tuple[list[Any], list[list[Any]]]] = {}
        for record in self.records.copy().values():
            ident, _, permits, where, task, _ = record
            by_holder.setdefault((ident, task), (record, []))[1].append([permits, where])
        return [
            Holder(
                thread_id=first[0],
                thread_name=first[1],
                permits=sum(permits for permits, _ in records),
                acquired_at=tuple(where for _, where in records),
                task=first[5],
            )
            for first, records in by_holder.values()
        ]
