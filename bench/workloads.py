"""The workloads only the benchmark suite runs: FIFO order, memory, creation
and release(n), each on a ``peers.Peer``. The others (uncontended, handoff,
contended, barging) are ``fastsem._compare``'s, shared with ``python -m
fastsem``; ``summarize`` adds the suite's figures of a contended run to
those its table shows.

fifo
    Waiters queue one at a time (each is seen queued before the next one
    starts), then the main thread releases one permit at a time and waits for
    the grantee to report. A grant is in order when it goes to the oldest
    waiter still queued.
memory
    Bytes per object, from tracemalloc, over many objects created at once.
creation
    ns to create one object (its destruction is not timed), over many.
release_n
    n threads queued on a semaphore of value 0, then one ``release(n)``: the
    time of that call (in fair mode every grant is made inside it), and the
    time until the last waiter has returned from acquire(). Thread creation
    is not timed.
"""

from __future__ import annotations

import _thread
import dataclasses
import gc
import itertools
import statistics
import threading
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any

from peers import Peer

from fastsem import _compare
from fastsem._compare import JOIN_TIMEOUT, drained, wait_queued

WAIT_PERCENTILES = (1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99)
# Stack size of the threads queued by release(n) (5,000 threads of the
# default 8 MiB would reserve 40 GiB of address space).
RELEASE_N_STACK_SIZE = 256 * 1024


@dataclass
class Contended(_compare.Contended):
    """python -m fastsem's figures of a contended run, and the suite's."""

    acquisitions: int
    max_min_ratio: float | None  # of the least even window; None: a thread never got in
    per_thread_counts: list[int]  # of the least even window
    wait_p50_ns: int
    wait_percentiles_ns: list[tuple[float, int]]


def summarize(windows: list[_compare.Window], value: int) -> Contended:
    """The figures of one configuration's windows (see _compare.summarize),
    with the per-thread counts of the least even one, and the wait
    distribution."""
    worst = min(windows, key=lambda w: _compare.jain_index(w.counts) or -1.0).counts
    waits = _compare.wait_percentiles(windows, list(WAIT_PERCENTILES))
    return Contended(
        **dataclasses.asdict(_compare.summarize(windows, value)),
        acquisitions=sum(sum(w.counts) for w in windows),
        max_min_ratio=max(worst) / min(worst) if min(worst) else None,
        per_thread_counts=worst,
        wait_p50_ns=waits[WAIT_PERCENTILES.index(50.0)],
        wait_percentiles_ns=list(zip(WAIT_PERCENTILES, waits)),
    )


def join_all(pool: list[threading.Thread], name: str, timeout: float = JOIN_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    for t in pool:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = sum(t.is_alive() for t in pool)
    if hung:
        raise RuntimeError(f"{name}: {hung} of {len(pool)} threads did not finish in {timeout} s")


def started_and_queued(c: Peer, sem: Any, count: int, started: threading.Event) -> None:
    """Returns once the thread that sets `started` just before it calls
    acquire() has started, and `count` threads are (taken to be) queued."""
    if not started.wait(10.0):
        raise RuntimeError(f"{c.name}: the waiter thread did not start")
    wait_queued(c, sem, count)


@dataclass
class Fifo:
    grants: int
    in_order: int


@dataclass
class Memory:
    bytes_per_object: float
    objects: int


@dataclass
class Creation:
    ns_per_object: float
    objects: int


@dataclass
class ReleaseN:
    n: int
    repeats: int
    release_ns: float  # the median of the repeats
    all_returned_ns: float
    release_ns_per_waiter: float
    all_returned_ns_per_waiter: float


def measure_fifo(c: Peer, *, waiters: int, rounds: int) -> Fifo:
    """Grants in arrival order, out of waiters * rounds."""
    in_order = grants = 0
    for _ in range(rounds):
        sem = drained(c)
        order: list[int] = []
        granted = _thread.allocate_lock()
        granted.acquire()  # released by each grantee, taken by the main thread
        errors: list[BaseException] = []

        def waiter(
            i: int,
            started: threading.Event,
            sem: Any = sem,
            order: list[int] = order,
            granted: Any = granted,
            errors: list[BaseException] = errors,
        ) -> None:
            started.set()
            try:
                sem.acquire()  # kept: the main thread releases one permit per grant
                order.append(i)
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                granted.release()

        pool = []
        try:
            for i in range(waiters):
                started = threading.Event()
                t = threading.Thread(
                    target=waiter, args=(i, started), daemon=True, name=f"fastsem-fifo-{i}"
                )
                t.start()
                pool.append(t)
                started_and_queued(c, sem, i + 1, started)
            queue = list(range(waiters))
            for _ in range(waiters):
                sem.release()
                if not granted.acquire(timeout=10.0):
                    raise RuntimeError(f"{c.name}: a release granted nobody")
                if errors:
                    raise RuntimeError(f"{c.name}: a waiter failed: {errors[0]!r}") from errors[0]
                who = order[-1]
                in_order += who == queue[0]
                queue.remove(who)
                grants += 1
        finally:
            for _ in range(len(pool) - len(order)):
                try:
                    sem.release()  # whatever happened, let the rest go
                except ValueError:  # a bounded one, already full
                    break
            join_all(pool, c.name, 10.0)
    return Fifo(grants, in_order)


def measure_memory(c: Peer, *, objects: int) -> Memory | None:
    """Bytes per object that tracemalloc sees, over `objects` made at once."""
    if c.new is None:
        return None
    new = c.new
    keep: list[Any] = [None] * objects  # the list itself is not counted
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(objects):
            keep[i] = new()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        if not was_tracing:
            tracemalloc.stop()
    del keep
    return Memory((after - before) / objects, objects)


def measure_creation(c: Peer, *, objects: int, batch: int = 10_000) -> Creation | None:
    """ns to create one object, over `objects` made `batch` at a time (their
    destruction between batches is not timed)."""
    if c.new is None:
        return None
    new = c.new
    clock = time.perf_counter_ns
    total_ns = made = 0
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        while made < objects:
            n = min(batch, objects - made)
            t0 = clock()
            keep = [new() for _ in itertools.repeat(None, n)]
            total_ns += clock() - t0
            made += n
            del keep
    finally:
        if was_enabled:
            gc.enable()
    return Creation(total_ns / objects, objects)


def release_n_run(c: Peer, n: int) -> tuple[int, int]:
    """n threads queued on a semaphore of value 0, then one release(n): ns of
    that call, and ns until the last waiter returned."""
    if not c.release_n or c.queued is None:
        raise ValueError(f"{c.name} has no release(n), or no way to see its queue")
    sem = c.make(0)
    clock = time.perf_counter_ns
    stamps = [0] * n
    errors: list[BaseException] = []

    def waiter(i: int) -> None:
        try:
            sem.acquire()
            stamps[i] = clock()
        except BaseException as exc:  # reported below
            errors.append(exc)

    old_size = threading.stack_size(RELEASE_N_STACK_SIZE)
    pool = []
    released = False
    try:
        for i in range(n):
            t = threading.Thread(target=waiter, args=(i,), daemon=True, name=f"fastsem-rel-{i}")
            t.start()
            pool.append(t)
        threading.stack_size(old_size)
        wait_queued(c, sem, n)
        t0 = clock()
        sem.release(n)
        t1 = clock()
        released = True
        join_all(pool, c.name, JOIN_TIMEOUT * 4)
    finally:
        threading.stack_size(old_size)
        if not released:
            sem.release(n)
            join_all(pool, c.name, JOIN_TIMEOUT)
    if errors:
        raise RuntimeError(f"{c.name}: a waiter failed: {errors[0]!r}") from errors[0]
    return t1 - t0, max(stamps) - t0


def measure_release_n(c: Peer, *, n: int, repeats: int) -> ReleaseN:
    """release_n_run, the median of `repeats`."""
    runs = [release_n_run(c, n) for _ in range(repeats)]
    gc.collect()
    release = statistics.median(r for r, _ in runs)
    returned = statistics.median(a for _, a in runs)
    return ReleaseN(n, repeats, release, returned, release / n, returned / n)
