"""The measurements behind ``python -m fastsem``, which prints them; the
benchmark suite in the repository's ``bench/`` runs them on more contenders
and configurations.

uncontended
    ns per ``acquire(); release()`` and per ``with sem: pass`` in one thread:
    the best of several timed loops (gc off, as timeit; the loop's own cost
    included), the contenders' loops interleaved round by round, so that a
    slow drift of the machine falls on all of them alike.
handoff
    Two threads each release the other's semaphore (both start at 0), then
    wait on their own: ns per handoff, the median of repeats.
contended
    T threads on value V loop acquire / a tiny critical section / release:
    throughput, Jain's index of the per-thread counts, the wait of every
    acquire(); on value 1 the critical section checks mutual exclusion. Only
    a window after a warm-up counts, once every thread is through the start
    gate: with a GIL, threads leave the gate one switch interval at a time,
    and those already through run uncontended at many times the contended
    rate, which would make even a strictly FIFO semaphore look unfair.
barging
    A thread is queued in acquire() on a value-1 semaphore whose permit is
    held; another releases it and at once tries a non-blocking acquire. If
    that succeeds, it barged ahead of the queued waiter.
"""

from __future__ import annotations

import _thread
import datetime
import functools
import gc
import itertools
import math
import os
import platform
import statistics
import sys
import sysconfig
import threading
import time
from array import array
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

THREADS = 16  # the contended configuration: 16 threads on value 1
JOIN_TIMEOUT = 30.0  # a thread not back this long after the stop flag is hung
SETTLE_SECONDS = 0.005  # a thread we cannot see queued is taken to be by then
WAIT_PERCENTILES = (1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99)  # kept for the plot
PERCENTILE_SAMPLES = 250_000  # beyond this, percentiles of a strided subsample
FASTSEM, FASTSEM_NONFAIR = "fastsem", "fastsem (non-fair)"
FASTSEM_PURE, THREADING, LOCK = "fastsem (pure Python)", "threading.Semaphore", "_thread.lock"


@dataclass(frozen=True)
class Contender:
    """`make(value)`: a fresh object with acquire()/release() (ValueError for a
    value it cannot have). `is_lock`: value 1 only, no fairness promise.
    `queued(sem)`: how many threads wait in acquire() (None: cannot tell)."""

    name: str
    make: Callable[[int], Any]
    is_lock: bool = False
    fair: bool | None = None  # None: makes no promise either way
    queued: Callable[[Any], int] | None = None
    try_acquire: Callable[[Any], bool] = lambda sem: bool(sem.acquire(False))


def waiting(sem: Any) -> int:
    return int(sem.waiting)


def condition_waiters(sem: Any) -> int:
    return len(sem._cond._waiters)  # threading's semaphores wait on a Condition


def fastsem_contender(name: str, cls: Any, fair: bool = True) -> Contender:
    return Contender(name, functools.partial(cls, fair=fair), fair=fair, queued=waiting)


def make_lock(value: int) -> Any:
    if value != 1:
        raise ValueError("a lock has value 1 only")
    return _thread.allocate_lock()


def contenders() -> list[Contender]:
    """fastsem's (the C ones if the extension is in use), the floor last."""
    from . import _pyfastsem
    from ._impl import c_module as c

    found = []
    if c is not None:
        found += [fastsem_contender(FASTSEM, c.Semaphore)]
        found += [fastsem_contender(FASTSEM_NONFAIR, c.Semaphore, fair=False)]
    return [
        *found,
        fastsem_contender(FASTSEM_PURE, _pyfastsem.Semaphore),
        Contender(THREADING, threading.Semaphore, queued=condition_waiters),
        Contender(LOCK, make_lock, is_lock=True),
    ]


@dataclass(frozen=True)
class Plan:
    mode: str
    loop_ns: int  # the shortest timed loop, uncontended
    loop_repeats: int
    handoff_seconds: float  # one repeat
    handoff_repeats: int
    contended_seconds: float  # measured, per contender
    warmup: float  # before each contended window
    rounds: int  # windows per contender, interleaved
    barge_trials: int


PLANS = {
    p.mode: p
    for p in [
        Plan("quick", 10_000_000, 3, 0.02, 3, 0.2, 0.03, 1, 50),
        Plan("default", 20_000_000, 5, 0.025, 7, 1.0, 0.05, 2, 200),
        Plan("full", 100_000_000, 7, 0.05, 31, 2.0, 0.1, 4, 200),
    ]
}


@dataclass
class Uncontended:
    ns: float  # per pair (or block), the best loop
    ns_median: float
    number: int  # pairs per loop


@dataclass
class Handoff:
    ns: float  # the median of the repeats
    ns_best: float
    round_trips: int  # per repeat


@dataclass
class Contended:
    threads: int
    value: int
    seconds: float  # measured, all rounds
    acquisitions: int
    ops_per_s: float
    jain: float | None  # of the least even round
    max_min_ratio: float | None  # None: a thread never got in
    per_thread_counts: list[int]  # of the least even round
    wait_p50_ns: int
    wait_p99_ns: int
    wait_max_ns: int
    wait_percentiles_ns: list[tuple[float, int]]
    exclusion_violations: int | None  # None: not checked (value > 1)
    shared_counter_ok: bool | None


@dataclass
class Barging:
    barges: int
    trials: int


@dataclass
class Row:
    name: str
    is_lock: bool
    fair: bool | None
    pair: Uncontended | None
    with_block: Uncontended | None  # None: not a context manager
    handoff: Handoff
    contended: dict[str, Contended]  # by config_key(); here only THREADS on value 1
    barging: Barging


@dataclass
class Run:
    """`dataclasses.asdict()` of it is what --json writes."""

    machine: dict[str, Any]
    plan: Plan
    contenders: list[Row]
    total_seconds: float


def config_key(threads: int, value: int) -> str:
    return f"t{threads}_v{value}"


def machine_info() -> dict[str, Any]:
    from . import IMPLEMENTATION, __version__

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": getattr(sys, "_is_gil_enabled", lambda: True)(),
        "platform": platform.platform(),
        "cpu_count": cpus or 1,
        # Of the minute before the run: how busy other processes kept the CPUs.
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "fastsem_version": __version__,
        "fastsem_implementation": IMPLEMENTATION,
    }


Say = Optional[Callable[[str], None]]


def pair_loop(acquire: Callable[[], Any], release: Callable[[], Any], number: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in itertools.repeat(None, number):
        acquire()
        release()
    return time.perf_counter_ns() - t0


def with_loop(sem: Any, number: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in itertools.repeat(None, number):
        with sem:
            pass
    return time.perf_counter_ns() - t0


def measure_uncontended(
    found: list[Contender], kind: str, *, min_ns: int, repeats: int, say: Say = None
) -> list[Uncontended | None]:
    """ns per pair (kind "pair") or ``with`` block ("with"; None: not a
    context manager) of each contender, in loops of at least `min_ns`."""
    timers: list[Callable[[int], int] | None] = []
    for sem in (c.make(1) for c in found):
        if kind == "pair":
            timers.append(functools.partial(pair_loop, sem.acquire, sem.release))
        else:
            timers.append(functools.partial(with_loop, sem) if hasattr(sem, "__enter__") else None)
    numbers, runs = [1000] * len(found), [[] for _ in found]  # type: list[int], list[list[float]]
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            if say:
                say(f"uncontended {kind}: round {r + 1}/{repeats}")
            for i, timer in enumerate(timers):
                while timer:  # the first round grows each loop to min_ns, as timeit does
                    ns = timer(numbers[i])
                    if r or ns >= min_ns:
                        runs[i].append(ns / numbers[i])
                        break
                    numbers[i] = max(2 * numbers[i], int(numbers[i] * min_ns * 1.2 / (ns + 1)))
    finally:
        if gc_was_on:
            gc.enable()
    return [
        Uncontended(min(ns), statistics.median(ns), n) if ns else None
        for n, ns in zip(numbers, runs)
    ]


def run_threads(name: str, targets: list[Callable[[], Any]], timeout: float = JOIN_TIMEOUT) -> None:
    """Runs each target in a thread and waits for them all: a thread still
    running after `timeout`, or the first exception of one, is raised here."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], Any]) -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=guarded, args=(t,), daemon=True) for t in targets]
    for t in pool:
        t.start()
    deadline = time.monotonic() + timeout
    for t in pool:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in pool):
        raise RuntimeError(f"{name}: threads still running after {timeout} s")
    if errors:
        raise RuntimeError(f"{name}: a thread failed: {errors[0]!r}") from errors[0]


def drained(c: Contender) -> Any:
    """A fresh object of value 0 (made with 1, which all accept, and acquired)."""
    sem = c.make(1)
    sem.acquire()
    return sem


def handoff_run(c: Contender, round_trips: int) -> int:
    """ns for `round_trips` round trips of the ping-pong (2 handoffs each)."""
    mine, theirs, ready, elapsed = drained(c), drained(c), threading.Barrier(2), [0]

    def pinger() -> None:
        wake, wait = theirs.release, mine.acquire  # no attribute lookups in the loop
        ready.wait()
        t0 = time.perf_counter_ns()
        for _ in itertools.repeat(None, round_trips):
            wake()
            wait()
        elapsed[0] = time.perf_counter_ns() - t0

    def ponger() -> None:
        wait, wake = theirs.acquire, mine.release
        ready.wait()
        for _ in itertools.repeat(None, round_trips):
            wait()
            wake()

    run_threads(c.name, [pinger, ponger])
    return elapsed[0]


def measure_handoff(
    found: list[Contender], *, seconds: float, repeats: int, say: Say = None
) -> list[Handoff]:
    """ns per handoff of each contender: the median of `repeats` runs of
    about `seconds`, interleaved round by round."""
    sizes = []
    for c in found:  # a warm-up, then the best rate of three short runs
        handoff_run(c, 50)
        ns = min(handoff_run(c, 200) for _ in range(3))
        sizes.append(max(100, int(200 * seconds * 1e9 / ns)))
    runs: list[list[float]] = [[] for _ in found]
    for r in range(repeats):
        if say:
            say(f"handoff: round {r + 1}/{repeats}")
        for c, n, per in zip(found, sizes, runs):
            per.append(handoff_run(c, n) / (2 * n))
    return [Handoff(statistics.median(per), min(per), n) for n, per in zip(sizes, runs)]


def jain_index(counts: list[int]) -> float | None:
    """(sum x)^2 / (n * sum x^2): 1.0 for a perfectly even share, 1/n worst."""
    squares = sum(x * x for x in counts)
    return sum(counts) ** 2 / (len(counts) * squares) if squares else None


class Window(NamedTuple):
    seconds: float
    counts: list[int]  # acquisitions per thread
    waits: array[int]  # ns, one per acquisition
    violations: int  # times two threads were inside at once
    exact: bool  # the guarded counter lost no update


def contended_window(
    c: Contender, threads: int, value: int, seconds: float, warmup: float
) -> Window:
    """`seconds` of the contended loop, `warmup` seconds after every thread
    came through the start gate (or after 5 s)."""
    sem, gate, running, passed = c.make(value), threading.Event(), [True], []
    inside, shared, violations = [0], [0], [0]  # the critical section's checks
    waits = [array("q") for _ in range(threads)]  # one sample per acquisition
    marks: list[tuple[int, list[int]]] = []

    def worker(record: Callable[[int], None]) -> None:
        acquire, release, clock = sem.acquire, sem.release, time.perf_counter_ns
        gate.wait()
        passed.append(True)
        while running[0]:
            t0 = clock()
            acquire()
            t1 = clock()
            inside[0] += 1
            if inside[0] != 1:
                violations[0] += 1
            shared[0] += 1
            shared[0] += 1
            inside[0] -= 1
            release()
            record(t1 - t0)

    def conductor() -> None:
        try:
            gate.set()
            give_up = time.monotonic() + 5.0
            while len(passed) < threads and running[0] and time.monotonic() < give_up:
                time.sleep(0.001)
            for pause in (warmup, seconds):
                time.sleep(pause)
                marks.append((time.perf_counter_ns(), [len(w) for w in waits]))
        finally:
            running[0] = False

    run_threads(c.name, [*(functools.partial(worker, w.append) for w in waits), conductor])
    (t0, begin), (t1, end) = marks
    in_window = array("q")
    for w, b, e in zip(waits, begin, end):
        in_window.extend(w[b:e])
    counts = [e - b for b, e in zip(begin, end)]
    exact = shared[0] == 2 * sum(map(len, waits))
    return Window((t1 - t0) / 1e9, counts, in_window, violations[0], exact)


def summarize(windows: list[Window], value: int) -> Contended:
    """Throughput over the windows of one configuration, the fairness of the
    least fair one, the waits of every acquisition."""
    worst = min(windows, key=lambda w: jain_index(w.counts) or -1.0).counts
    ratios = [max(w.counts) / min(w.counts) if min(w.counts) else math.inf for w in windows]
    samples = array("q", itertools.chain.from_iterable(w.waits for w in windows))
    ordered = sorted(samples[:: max(1, -(-len(samples) // PERCENTILE_SAMPLES))]) or [0]

    def pick(p: float) -> int:  # nearest rank
        return ordered[min(max(1, math.ceil(p / 100 * len(ordered))), len(ordered)) - 1]

    exclusive = value == 1  # on value > 1 the checking counters themselves race
    seconds, total = sum(w.seconds for w in windows), sum(sum(w.counts) for w in windows)
    return Contended(
        len(worst), value, seconds, total, total / seconds, jain_index(worst),
        max(ratios) if max(ratios) < math.inf else None, worst,
        pick(50), pick(99), max(samples, default=0), [(p, pick(p)) for p in WAIT_PERCENTILES],
        sum(w.violations for w in windows) if exclusive else None,
        all(w.exact for w in windows) if exclusive else None,
    )  # fmt: skip


def wait_queued(c: Contender, sem: Any, count: int) -> None:
    """Returns once `count` threads are (taken to be) blocked in acquire()."""
    deadline = time.monotonic() + 10.0
    while c.queued is not None and c.queued(sem) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{c.name}: the waiter never queued")
        time.sleep(0.0001)
    if c.queued is None:
        time.sleep(SETTLE_SECONDS)


def measure_barging(c: Contender, *, trials: int) -> Barging:
    barges = 0
    for _ in range(trials):
        sem = drained(c)

        def waiter(sem: Any = sem) -> None:
            sem.acquire()
            sem.release()

        def releaser(sem: Any = sem) -> None:
            nonlocal barges
            wait_queued(c, sem, 1)
            sem.release()
            if c.try_acquire(sem):
                barges += 1
                sem.release()  # now the waiter proceeds

        run_threads(c.name, [waiter, releaser], 10.0)
    return Barging(barges, trials)


def run(plan: Plan, progress: Say = None) -> Run:
    """Every workload on every contender, as `plan` sizes them; `progress`,
    if given, is called with a short line before each step."""
    found, t0, step = contenders(), time.perf_counter(), itertools.count(1)
    steps = 2 * plan.loop_repeats + plan.handoff_repeats + (plan.rounds + 1) * len(found)
    machine = machine_info()

    def say(text: str) -> None:
        if progress:
            progress(f"[{next(step)}/{steps}] {time.perf_counter() - t0:4.0f} s  {text}")

    pairs, blocks = (
        measure_uncontended(found, kind, min_ns=plan.loop_ns, repeats=plan.loop_repeats, say=say)
        for kind in ("pair", "with")
    )
    handoffs = measure_handoff(
        found, seconds=plan.handoff_seconds, repeats=plan.handoff_repeats, say=say
    )
    windows: list[list[Window]] = [[] for _ in found]
    for r in range(plan.rounds):
        for c, ws in zip(found, windows):
            say(f"contended, {THREADS} threads, round {r + 1}/{plan.rounds}: {c.name}")
            seconds = plan.contended_seconds / plan.rounds
            ws.append(contended_window(c, THREADS, 1, seconds, plan.warmup))
            gc.collect()
    rows = []
    for c, pair, block, handoff, ws in zip(found, pairs, blocks, handoffs, windows):
        say(f"barging: {c.name}")
        barging = measure_barging(c, trials=plan.barge_trials)
        contended = {config_key(THREADS, 1): summarize(ws, 1)}
        rows.append(Row(c.name, c.is_lock, c.fair, pair, block, handoff, contended, barging))
    return Run(machine, plan, rows, time.perf_counter() - t0)
