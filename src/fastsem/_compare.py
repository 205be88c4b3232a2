"""The workloads ``python -m fastsem`` shows (the ``measure_*`` functions and
``contended_window``), with the figures its table needs; the benchmark suite
in the repository's ``bench/`` runs them on more contenders and
configurations, and derives its further figures from the same windows. The
contenders' runs are interleaved round by round, so that a slow drift of the
machine falls on all of them alike.
"""

from __future__ import annotations

import _thread
import functools
import gc
import itertools
import math
import operator
import os
import platform
import statistics
import sys
import sysconfig
import threading
import time
from array import array
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

THREADS = 16  # the contended configuration: 16 threads on value 1
JOIN_TIMEOUT = 30.0  # a thread not back this long after the stop flag is hung
SETTLE_SECONDS = 0.005  # a thread we cannot see queued is taken to be by then
PERCENTILE_SAMPLES = 250_000  # beyond this, percentiles of a strided subsample
FASTSEM, FASTSEM_NONFAIR = "fastsem", "fastsem (non-fair)"
FASTSEM_PURE, THREADING, LOCK = "fastsem (pure Python)", "threading.Semaphore", "_thread.lock"


@dataclass(frozen=True)
class Contender:
    """`make(value)`: a fresh object with acquire()/release(). `is_lock`: value
    1 only, no fairness promise. `queued(sem)`: how many threads wait in
    acquire() (None: cannot tell)."""

    name: str
    make: Callable[[int], Any]
    is_lock: bool = False
    fair: bool | None = None  # None: makes no promise either way
    queued: Callable[[Any], int] | None = None
    try_acquire: Callable[[Any], bool] = lambda sem: bool(sem.acquire(False))


def contenders() -> list[Contender]:
    """fastsem's (the C ones if the extension is in use), the floor last."""
    from . import _pyfastsem
    from ._impl import c_module as c

    def ours(name: str, cls: Any, fair: bool = True) -> Contender:
        make = functools.partial(cls, fair=fair)
        return Contender(name, make, fair=fair, queued=operator.attrgetter("waiting"))

    compiled = [ours(FASTSEM, c.Semaphore), ours(FASTSEM_NONFAIR, c.Semaphore, False)] if c else []
    return [
        *compiled,
        ours(FASTSEM_PURE, _pyfastsem.Semaphore),
        # threading's semaphores wait on a Condition.
        Contender(THREADING, threading.Semaphore, queued=lambda s: len(s._cond._waiters)),
        Contender(LOCK, lambda value: _thread.allocate_lock(), is_lock=True),
    ]


@dataclass(frozen=True)
class Plan:
    mode: str
    loop_seconds: float  # the shortest timed loop, uncontended
    loop_repeats: int
    handoff_seconds: float  # the shortest timed run
    handoff_repeats: int
    contended_seconds: float  # measured, per contender
    warmup: float  # before each contended window
    rounds: int  # windows per contender, interleaved
    barge_trials: int


PLANS = {
    p.mode: p
    for p in [
        Plan("quick", 0.01, 3, 0.02, 3, 0.2, 0.03, 1, 50),
        Plan("default", 0.02, 5, 0.025, 7, 1.0, 0.05, 2, 200),
        Plan("full", 0.1, 7, 0.05, 31, 2.0, 0.1, 4, 200),
    ]
}


@dataclass
class Contended:
    threads: int
    value: int
    ops_per_s: float
    jain: float | None  # of the least even window
    wait_p99_ns: int
    wait_max_ns: int
    exclusive: bool | None  # mutual exclusion held (None: not checked, value > 1)


@dataclass
class Row:
    name: str
    is_lock: bool
    fair: bool | None
    pair_ns: float | None
    with_ns: float | None  # None: not a context manager
    handoff_ns: float | None
    contended: Contended
    barges: int  # of plan.barge_trials


@dataclass
class Run:
    """`dataclasses.asdict()` of it is what --json writes."""

    machine: dict[str, Any]
    plan: Plan
    contenders: list[Row]
    total_seconds: float


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
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fastsem_version": __version__,
        "fastsem_implementation": IMPLEMENTATION,
    }


def time_runs(
    timers: list[Callable[[int], float] | None],
    *,
    min_seconds: float,
    repeats: int,
    figure: Callable[[list[float]], float] = min,
) -> list[float | None]:
    """ns per operation of each `timer(number)` (seconds for `number`
    operations; None: skipped): `figure` of `repeats` runs of `min_seconds`
    or more, interleaved; the first round finds the number, as timeit does."""
    numbers, runs = [100] * len(timers), [[] for _ in timers]  # type: list[int], list[list[float]]
    for r in range(repeats):
        for i, timer in enumerate(timers):
            while timer:
                seconds = timer(numbers[i])
                if r or seconds >= min_seconds:
                    runs[i].append(seconds * 1e9 / numbers[i])
                    break
                grow = min_seconds * 1.2 / max(seconds, 1e-9)
                numbers[i] = max(2 * numbers[i], int(numbers[i] * grow))
    return [figure(ns) if ns else None for ns in runs]


def pair_loop(acquire: Callable[[], Any], release: Callable[[], Any], number: int) -> float:
    t0 = time.perf_counter()
    for _ in itertools.repeat(None, number):
        acquire()
        release()
    return time.perf_counter() - t0


def with_loop(sem: Any, number: int) -> float:
    t0 = time.perf_counter()
    for _ in itertools.repeat(None, number):
        with sem:
            pass
    return time.perf_counter() - t0


def measure_uncontended(
    found: list[Contender], kind: str, *, min_seconds: float, repeats: int
) -> list[float | None]:
    """ns per ``acquire(); release()`` (kind "pair") or ``with sem: pass``
    ("with"; None: not a context manager) in one thread: the best loop over
    bound methods, gc off (as timeit; the loop's own cost included)."""
    timers: list[Any] = [
        functools.partial(pair_loop, s.acquire, s.release) if kind == "pair"
        else functools.partial(with_loop, s) if hasattr(s, "__enter__") else None
        for s in (c.make(1) for c in found)
    ]  # fmt: skip
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        return time_runs(timers, min_seconds=min_seconds, repeats=repeats)
    finally:
        if gc_was_on:
            gc.enable()


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
    if any(t.is_alive() for t in pool) or errors:
        failure = f"a thread failed: {errors[0]!r}" if errors else f"threads hung for {timeout} s"
        raise RuntimeError(f"{name}: {failure}") from (errors[0] if errors else None)


def drained(c: Contender) -> Any:
    """A fresh object of value 0 (made with 1, which all accept, and acquired)."""
    sem = c.make(1)
    sem.acquire()
    return sem


def handoff_loop(c: Contender, round_trips: int) -> float:
    """Seconds of `round_trips` handoffs (half the time of as many round trips)."""
    mine, theirs, ready = drained(c), drained(c), threading.Barrier(2)
    elapsed: list[int] = []

    def player(first: Callable[[], Any], then: Callable[[], Any]) -> None:
        ready.wait()  # bound methods: no attribute lookups in the loop
        t0 = time.perf_counter_ns()
        for _ in itertools.repeat(None, round_trips):
            first()
            then()
        elapsed.append(time.perf_counter_ns() - t0)

    pinger = functools.partial(player, theirs.release, mine.acquire)
    run_threads(c.name, [pinger, functools.partial(player, theirs.acquire, mine.release)])
    return max(elapsed) / 2e9


def measure_handoff(found: list[Contender], *, seconds: float, repeats: int) -> list[float | None]:
    """ns per handoff: two threads each release the other's semaphore (both
    start at 0), then wait on their own; the median of runs of `seconds`."""
    timers: list[Any] = [functools.partial(handoff_loop, c) for c in found]
    return time_runs(timers, min_seconds=seconds, repeats=repeats, figure=statistics.median)


def jain_index(counts: list[int]) -> float | None:
    """(sum x)^2 / (n * sum x^2): 1.0 for a perfectly even share, 1/n worst."""
    squares = sum(x * x for x in counts)
    return sum(counts) ** 2 / (len(counts) * squares) if squares else None


class Window(NamedTuple):
    seconds: float
    counts: list[int]  # acquisitions per thread
    waits: array[int]  # ns, one per acquisition
    exclusive: bool  # never two threads inside at once, no lost update


def contended_window(
    c: Contender, threads: int, value: int, seconds: float, warmup: float
) -> Window:
    """`threads` threads on value `value` loop acquire / a tiny critical
    section (which checks mutual exclusion) / release; `seconds` of it count,
    from `warmup` after every thread came through the start gate (or 5 s).
    With a GIL, threads leave the gate one switch interval at a time, and
    those already through run uncontended at many times the contended rate,
    which would make even a strictly FIFO semaphore look unfair."""
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
    exclusive = not violations[0] and shared[0] == 2 * sum(map(len, waits))
    return Window((t1 - t0) / 1e9, [e - b for b, e in zip(begin, end)], in_window, exclusive)


def wait_percentiles(windows: list[Window], ps: list[float]) -> list[int]:
    """The waits of every acquisition at percentiles `ps` (nearest rank)."""
    samples = array("q", itertools.chain.from_iterable(w.waits for w in windows))
    ordered = sorted(samples[:: max(1, -(-len(samples) // PERCENTILE_SAMPLES))]) or [0]
    return [ordered[min(max(1, math.ceil(p / 100 * len(ordered))), len(ordered)) - 1] for p in ps]


def summarize(windows: list[Window], value: int) -> Contended:
    """Throughput over one configuration's windows, the fairness of the least
    even one, the waits of every acquisition (the max exact)."""
    total, (p99,) = sum(sum(w.counts) for w in windows), wait_percentiles(windows, [99])
    jains = [jain_index(w.counts) for w in windows]
    return Contended(
        len(windows[0].counts), value, total / sum(w.seconds for w in windows),
        None if None in jains else min(j for j in jains if j is not None), p99,
        max(max(w.waits, default=0) for w in windows),
        all(w.exclusive for w in windows) if value == 1 else None,  # value > 1: the checks race
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


def measure_barging(c: Contender, *, trials: int) -> int:
    """How often of `trials` a thread that released a value-1 semaphore, with
    another queued in acquire(), took the permit back by a non-blocking
    acquire(): barged ahead of the queued waiter."""
    barges = 0

    def waiter(sem: Any) -> None:
        sem.acquire()
        sem.release()

    for _ in range(trials):
        sem = drained(c)

        def releaser(sem: Any = sem) -> None:
            nonlocal barges
            wait_queued(c, sem, 1)
            sem.release()
            if c.try_acquire(sem):
                barges += 1
                sem.release()  # now the waiter proceeds

        run_threads(c.name, [functools.partial(waiter, sem), releaser], 10.0)
    return barges


def run(plan: Plan, progress: Callable[[str], None] = lambda text: None) -> Run:
    """Every workload on every contender, as `plan` sizes them; `progress` is
    called with a short line before each step."""
    found, t0, step = contenders(), time.perf_counter(), itertools.count(1)
    steps, machine = 3 + (plan.rounds + 1) * len(found), machine_info()

    def say(text: str) -> None:
        progress(f"[{next(step)}/{steps}] {time.perf_counter() - t0:4.0f} s  {text}")

    loops = []
    for kind in ("pair", "with"):
        say(f"uncontended: {kind}, {plan.loop_repeats} rounds")
        loops.append(
            measure_uncontended(
                found, kind, min_seconds=plan.loop_seconds, repeats=plan.loop_repeats
            )
        )
    say(f"handoff, {plan.handoff_repeats} rounds")
    handoffs = measure_handoff(found, seconds=plan.handoff_seconds, repeats=plan.handoff_repeats)
    windows: list[list[Window]] = [[] for _ in found]
    for r in range(plan.rounds):
        for c, ws in zip(found, windows):
            say(f"contended, {THREADS} threads, round {r + 1}/{plan.rounds}: {c.name}")
            seconds = plan.contended_seconds / plan.rounds
            ws.append(contended_window(c, THREADS, 1, seconds, plan.warmup))
            gc.collect()
    rows = []
    for c, pair, block, handoff, ws in zip(found, *loops, handoffs, windows):
        say(f"barging: {c.name}")
        barges = measure_barging(c, trials=plan.barge_trials)
        rows.append(Row(c.name, c.is_lock, c.fair, pair, block, handoff, summarize(ws, 1), barges))
    return Run(machine, plan, rows, time.perf_counter() - t0)
