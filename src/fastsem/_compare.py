"""The measurements behind ``python -m fastsem``: fastsem beside threading.

Standard library only, and no printing (``__main__`` draws the table). The
benchmark suite in the repository's ``bench/`` runs these same functions and
adds the peers and the workloads that have no place in the package.

The contenders: fastsem (C, fair; its BoundedSemaphore; C, non-fair; the
pure-Python reference), threading.Semaphore and BoundedSemaphore,
multiprocessing.Semaphore (a POSIX semaphore, usable by threads too) and a
bare ``_thread`` lock: the floor, what the interpreter's own lock costs.

The workloads, each on every contender that supports it:

uncontended
    ns per ``acquire(); release()`` pair in one thread, and per ``with sem:
    pass`` block: the best of several timed loops over the bound methods (the
    garbage collector off, as timeit does; the loop's own cost included). The
    loops of all contenders are interleaved round by round, so that a slow
    drift of the machine (frequency, a neighbour) falls on all of them alike.
handoff
    Ping-pong: each of two threads releases the other's semaphore (both start
    at 0), then waits on its own. ns per handoff (a round trip is two), the
    median of repeats interleaved as above.
contended
    T threads on a semaphore of value V loop acquire / a tiny critical
    section / release for a fixed time: throughput, Jain's fairness index of
    the per-thread counts, the wait of every acquire(). On value 1 the
    critical section also checks mutual exclusion.

    Only a window after a warm-up counts, which begins once every thread is
    through the start gate. Leaving the gate needs the GIL, and a thread
    looping on a free semaphore gives the GIL up only when a switch interval
    forces it to; so the threads join one switch interval at a time, by
    chance, and the ones already in run uncontended at many times the
    contended rate. Counted, those milliseconds would dominate the per-thread
    counts and make even a strictly FIFO semaphore look unfair.
barging
    A thread blocks in acquire() on a value-1 semaphore whose permit the main
    thread holds; the main thread then calls release() and at once a
    non-blocking acquire. If that succeeds, the releasing thread took the
    permit back ahead of the queued waiter: a barge.

The interpreter's switch interval is left at its default, as a user has it.
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
import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

THREADS = 16
# Give up waiting for every thread to pass the start gate after this long
# (and measure anyway; `all_started` says so).
START_TIMEOUT = 5.0
# A thread that has not come back this long after the stop flag is hung.
JOIN_TIMEOUT = 30.0
# Without a way to see that a thread is queued, this long after it starts it
# is taken to be blocked in acquire().
SETTLE_SECONDS = 0.005
# Percentiles are exact up to this many wait samples, and taken from an
# evenly strided subsample beyond it (the max is always exact).
PERCENTILE_SAMPLES = 250_000
# The wait distribution kept in the results (for the plot): these percentiles.
WAIT_PERCENTILES = (0.0, 1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0)

FASTSEM = "fastsem"
FASTSEM_BOUNDED = "fastsem (bounded)"
FASTSEM_NONFAIR = "fastsem (non-fair)"
FASTSEM_PURE = "fastsem (pure Python)"
THREADING = "threading.Semaphore"
THREADING_BOUNDED = "threading.BoundedSemaphore"
MULTIPROCESSING = "multiprocessing.Semaphore"
LOCK = "_thread.lock"
# Outside a full run, the other thread counts run on these only.
CORE = (FASTSEM, FASTSEM_NONFAIR, FASTSEM_PURE, THREADING, LOCK)


@dataclass(frozen=True)
class Contender:
    """One semaphore-like type under test.

    `make(value)` returns a fresh object with acquire()/release() (ValueError
    for a value it cannot have). `is_lock` marks a plain lock: value 1 only
    and no fairness promise. `new` makes one object of value 1 with no
    arguments (None: not made in bulk). `try_acquire` takes a permit without
    blocking and says whether it did. `queued` returns how many threads are
    blocked in acquire() (None: no way to tell). `release_n` says whether
    release(n) exists and may go past the initial value.
    """

    name: str
    make: Callable[[int], Any]
    is_lock: bool = False
    fair: bool | None = None  # None: makes no promise either way
    new: Callable[[], Any] | None = None
    try_acquire: Callable[[Any], bool] = lambda sem: bool(sem.acquire(False))
    queued: Callable[[Any], int] | None = None
    release_n: bool = False


def _make_lock(value: int) -> Any:
    if value != 1:
        raise ValueError("a lock has value 1 only")
    return _thread.allocate_lock()


def _waiting(sem: Any) -> int:
    return int(sem.waiting)


def _condition_waiters(sem: Any) -> int:
    # threading.Semaphore waits on a Condition; a thread in its wait() is in
    # the Condition's waiter deque (CPython 3.9 to 3.14).
    return len(sem._cond._waiters)


def contenders() -> list[Contender]:
    """fastsem's first, the floor last; the C ones only if the build imports
    (and FASTSEM_NO_EXTENSIONS is not set), multiprocessing only if it works
    here (it needs /dev/shm)."""
    from . import _pyfastsem
    from ._impl import c_module as c

    def fastsem(name: str, cls: Any, fair: bool, bulk: bool, release_n: bool) -> Contender:
        return Contender(
            name,
            lambda v: cls(v, fair=fair),
            fair=fair,
            new=cls if bulk else None,  # one object per type is enough
            queued=_waiting,
            release_n=release_n,
        )

    def stdlib(name: str, cls: Any, release_n: bool) -> Contender:
        return Contender(name, cls, new=cls, queued=_condition_waiters, release_n=release_n)

    found: list[Contender] = []
    if c is not None:
        found += [
            fastsem(FASTSEM, c.Semaphore, fair=True, bulk=True, release_n=True),
            fastsem(FASTSEM_BOUNDED, c.BoundedSemaphore, fair=True, bulk=True, release_n=False),
            fastsem(FASTSEM_NONFAIR, c.Semaphore, fair=False, bulk=False, release_n=True),
        ]
    found += [
        fastsem(FASTSEM_PURE, _pyfastsem.Semaphore, fair=True, bulk=True, release_n=True),
        stdlib(THREADING, threading.Semaphore, release_n=True),
        stdlib(THREADING_BOUNDED, threading.BoundedSemaphore, release_n=False),
    ]
    try:
        import multiprocessing

        multiprocessing.Semaphore(1)
        found.append(Contender(MULTIPROCESSING, lambda v: multiprocessing.Semaphore(v)))
    except (ImportError, OSError):
        pass
    found.append(Contender(LOCK, _make_lock, is_lock=True, new=_thread.allocate_lock))
    return found


# --------------------------------------------------------------------------
# How much a run measures


@dataclass(frozen=True)
class Plan:
    """The sizes of one run (a row of PLANS)."""

    mode: str
    loop_ns: int  # the shortest timed loop of the uncontended workload
    loop_repeats: int
    handoff_seconds: float  # one repeat
    handoff_repeats: int
    contended_seconds: float  # 16 threads on value 1, every contender, all rounds
    warmup: float  # before each contended window
    rounds: int  # windows per contender and configuration, interleaved
    configs: tuple[tuple[int, int], ...]  # the other (threads, value) runs
    configs_seconds: float
    barge_trials: int
    everyone: bool  # the other configurations on every contender, not only CORE


_SOME = ((4, 1), (4, 2), (16, 8))
_MORE = ((2, 1), (4, 1), (8, 1), (32, 1), (4, 2), (16, 8))
# The columns: mode; uncontended loop ns, repeats; handoff seconds, repeats;
# 16 threads on value 1: seconds, warm-up, rounds; the other configurations,
# their seconds; barging trials; everyone. "smoke" proves that everything
# runs (the tests, the benchmark suite's CI run): its figures mean nothing.
# fmt: off
PLANS = {p.mode: p for p in [
    Plan("smoke",     1_000_000, 2, 0.002, 2,   0.02, 0.01, 1, _SOME, 0.02, 3,   False),
    Plan("quick",    10_000_000, 3, 0.02,  3,   0.1,  0.03, 1, _SOME, 0.06, 50,  False),
    Plan("default",  20_000_000, 5, 0.025, 7,   0.5,  0.05, 2, _SOME, 0.25, 200, False),
    Plan("full",    100_000_000, 7, 0.05,  31,  1.0,  0.1,  4, _MORE, 1.0,  200, True),
]}
# fmt: on


# --------------------------------------------------------------------------
# Results


@dataclass
class Uncontended:
    ns: float  # per pair (or block), the best loop
    ns_median: float
    number: int  # pairs per loop
    repeats: int


@dataclass
class Handoff:
    ns: float  # per handoff, the median of the repeats
    ns_best: float
    ns_runs: list[float]
    round_trips: int  # per repeat


@dataclass
class Window:
    """The raw figures of one contended window."""

    threads: int
    value: int
    seconds: float
    counts: list[int]  # acquisitions per thread
    waits: array[int]  # ns, one per acquisition
    all_started: bool
    start_spread_ms: float | None
    exclusion_violations: int | None  # None: not checked (value > 1)
    shared_counter_ok: bool | None


@dataclass
class Contended:
    threads: int
    value: int
    rounds: int
    seconds: float  # measured, all rounds
    acquisitions: int
    ops_per_s: float | None
    jain: float | None  # of the least even round
    max_min_ratio: float | None
    starved_threads: int
    per_thread_counts: list[int]  # of the least even round
    wait_p50_ns: int | None
    wait_p99_ns: int | None
    wait_max_ns: int | None
    wait_percentiles_ns: list[tuple[float, int]]
    all_started: bool
    start_spread_ms: float | None
    exclusion_violations: int | None
    shared_counter_ok: bool | None


@dataclass
class Barging:
    barges: int
    trials: int


@dataclass
class Row:
    """Every figure of one contender (None: not measured)."""

    name: str
    is_lock: bool
    fair: bool | None
    pair: Uncontended | None = None
    with_block: Uncontended | None = None
    handoff: Handoff | None = None
    contended: dict[str, Contended] = field(default_factory=dict)  # by config_key()
    barging: Barging | None = None


@dataclass
class Run:
    """One run: `dataclasses.asdict()` of it is what --json writes."""

    machine: dict[str, Any]
    plan: Plan
    contenders: list[Row]
    total_seconds: float
    noise: dict[str, float | None]


def config_key(threads: int, value: int) -> str:
    """The key of a contended configuration in Row.contended: "t16_v1"."""
    return f"t{threads}_v{value}"


# --------------------------------------------------------------------------
# The machine


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _cpu_busy_seconds() -> float | None:
    """CPU time spent busy by the whole machine so far (Linux), else None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
        # cpu user nice system idle iowait irq softirq steal ...
        busy = sum(int(x) for x in fields[1:4]) + sum(int(x) for x in fields[6:9])
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class NoiseMeter:
    """How much CPU other processes took while we measured: the machine's busy
    time less this process's own (Linux only; None elsewhere). A busy
    neighbour disturbs the threaded figures most."""

    def __init__(self) -> None:
        self.busy0 = _cpu_busy_seconds()
        self.own0 = time.process_time()
        self.wall0 = time.perf_counter()

    def read(self) -> dict[str, float | None]:
        busy1 = _cpu_busy_seconds()
        wall = time.perf_counter() - self.wall0
        if self.busy0 is None or busy1 is None or wall <= 0:
            return {"other_cpu_seconds": None, "other_cpu_share": None}
        others = max(0.0, (busy1 - self.busy0) - (time.process_time() - self.own0))
        return {
            "other_cpu_seconds": round(others, 3),
            "other_cpu_share": round(others / (wall * (os.cpu_count() or 1)), 4),
        }


def machine_info() -> dict[str, Any]:
    from . import IMPLEMENTATION, __version__

    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on macOS
        usable = os.cpu_count()
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_build": sys.version,
        "gil_enabled": bool(is_gil_enabled()) if is_gil_enabled else True,
        "switch_interval_s": sys.getswitchinterval(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "load_average": load,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "fastsem_version": __version__,
        "fastsem_implementation": IMPLEMENTATION,
    }


# --------------------------------------------------------------------------
# Uncontended

Say = Optional[Callable[[str], None]]


def pair_loop(acquire: Callable[[], Any], release: Callable[[], Any], number: int) -> int:
    """ns for `number` acquire(); release() pairs."""
    it = itertools.repeat(None, number)
    clock = time.perf_counter_ns
    t0 = clock()
    for _ in it:
        acquire()
        release()
    return clock() - t0


def with_loop(sem: Any, number: int) -> int:
    """ns for `number` ``with sem: pass`` blocks."""
    it = itertools.repeat(None, number)
    clock = time.perf_counter_ns
    t0 = clock()
    for _ in it:
        with sem:
            pass
    return clock() - t0


def _timer(c: Contender, kind: str) -> Callable[[int], int] | None:
    """A function of `number` that times that many pairs ("pair") or blocks
    ("with"); None if the contender is not a context manager."""
    sem = c.make(1)
    if kind == "pair":
        return functools.partial(pair_loop, sem.acquire, sem.release)
    return functools.partial(with_loop, sem) if hasattr(sem, "__enter__") else None


def measure_uncontended(
    found: list[Contender], kind: str, *, min_ns: int, repeats: int, say: Say = None
) -> list[Uncontended | None]:
    """Each contender's ns per pair (kind "pair") or ``with`` block (kind
    "with"), the best of `repeats` loops of at least `min_ns`, the loops of
    all contenders interleaved round by round."""
    timers = [_timer(c, kind) for c in found]
    numbers = [0] * len(found)
    runs: list[list[int]] = [[] for _ in found]
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i, (c, timer) in enumerate(zip(found, timers)):
            if say is not None:
                say(f"uncontended {kind}: {c.name} (calibrating)")
            # As timeit.autorange: grow the loop until one run takes min_ns.
            number = 1000
            while timer is not None:
                elapsed = timer(number)
                if elapsed >= min_ns:
                    numbers[i] = number
                    runs[i].append(elapsed)
                    break
                number = max(number * 2, int(number * min_ns * 1.2 / max(elapsed, 1)))
        for r in range(1, repeats):
            if say is not None:
                say(f"uncontended {kind}: round {r + 1}/{repeats}")
            for timer, number, ns_runs in zip(timers, numbers, runs):
                if timer is not None:
                    ns_runs.append(timer(number))
    finally:
        if was_enabled:
            gc.enable()
    results: list[Uncontended | None] = []
    for number, ns_runs in zip(numbers, runs):
        per = sorted(ns / number for ns in ns_runs)
        results.append(
            Uncontended(per[0], statistics.median(per), number, len(per)) if per else None
        )
    return results


# --------------------------------------------------------------------------
# Handoff ping-pong


def join_all(pool: list[threading.Thread], name: str, timeout: float = JOIN_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    for t in pool:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = sum(t.is_alive() for t in pool)
    if hung:
        raise RuntimeError(
            f"{name}: {hung} of {len(pool)} threads did not finish in {timeout:.0f} s"
        )


def drained(c: Contender) -> Any:
    """A fresh object of value 0 (made with value 1, which every contender
    accepts, and acquired once)."""
    sem = c.make(1)
    sem.acquire()
    return sem


def handoff_run(c: Contender, rounds: int) -> int:
    """ns for `rounds` round trips of the ping-pong (2 handoffs each)."""
    mine, theirs = drained(c), drained(c)
    ready = threading.Barrier(2)
    elapsed = [0]
    errors: list[BaseException] = []

    def pinger() -> None:
        wake, wait = theirs.release, mine.acquire
        clock = time.perf_counter_ns
        try:
            ready.wait()
            t0 = clock()
            for _ in itertools.repeat(None, rounds):
                wake()
                wait()
            elapsed[0] = clock() - t0
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    def ponger() -> None:
        wait, wake = theirs.acquire, mine.release
        try:
            ready.wait()
            for _ in itertools.repeat(None, rounds):
                wait()
                wake()
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    pool = [
        threading.Thread(target=f, daemon=True, name="fastsem-handoff") for f in (pinger, ponger)
    ]
    for t in pool:
        t.start()
    join_all(pool, c.name)
    if errors:
        raise RuntimeError(f"{c.name}: a ping-pong thread failed: {errors[0]!r}") from errors[0]
    return elapsed[0]


def measure_handoff(
    found: list[Contender], *, seconds: float, repeats: int, say: Say = None
) -> list[Handoff]:
    """Each contender's ns per handoff: the median of `repeats` runs of about
    `seconds`, interleaved round by round."""
    rounds = []
    for c in found:
        if say is not None:
            say(f"handoff: {c.name} (calibrating)")
        # Round trips that take about `seconds` at the fastest rate seen in a
        # few short runs, after a warm-up run.
        handoff_run(c, 50)
        ns = min(handoff_run(c, 200) for _ in range(3))
        rounds.append(max(100, int(200 * seconds * 1e9 / max(ns, 1))))
    runs: list[list[float]] = [[] for _ in found]
    for r in range(repeats):
        if say is not None:
            say(f"handoff: round {r + 1}/{repeats}")
        for c, n, per in zip(found, rounds, runs):
            per.append(handoff_run(c, n) / (2 * n))
    return [Handoff(statistics.median(per), min(per), per, n) for n, per in zip(rounds, runs)]


# --------------------------------------------------------------------------
# Contended


def _percentile(sorted_values: Any, p: float) -> int:
    """Nearest-rank percentile of an ascending sequence (p 0: the minimum)."""
    n = len(sorted_values)
    rank = max(1, math.ceil(p / 100.0 * n))
    return int(sorted_values[min(rank, n) - 1])


def jain_index(counts: list[int]) -> float | None:
    """(sum x)^2 / (n * sum x^2): 1.0 for a perfectly even share, 1/n worst."""
    squares = sum(x * x for x in counts)
    if not counts or squares == 0:
        return None
    return sum(counts) ** 2 / (len(counts) * squares)


def contended_window(
    c: Contender, *, threads: int, value: int, seconds: float, warmup: float
) -> Window:
    """One run of the contended loop: the raw figures of `seconds` of it,
    `warmup` seconds after the last thread came through the start gate."""
    sem = c.make(value)
    gate = threading.Event()
    running = [True]
    inside = [0]  # threads between acquire() and release(); must stay <= 1 on value 1
    shared = [0]  # the work the critical section guards
    violations = [0]
    # One wait sample per acquisition, so len() is the thread's count so far.
    waits = [array("q") for _ in range(threads)]
    through_gate = [0] * threads  # perf_counter_ns when each left the gate
    errors: list[BaseException] = []

    def worker(idx: int, samples: array[int]) -> None:
        acquire, release = sem.acquire, sem.release
        clock = time.perf_counter_ns
        record = samples.append
        try:
            gate.wait()
            through_gate[idx] = clock()
            while True:
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
                if not running[0]:
                    break
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
            running[0] = False

    pool = [
        threading.Thread(target=worker, args=(i, w), daemon=True, name=f"fastsem-compare-{i}")
        for i, w in enumerate(waits)
    ]
    started = []
    try:
        for t in pool:
            t.start()
            started.append(t)
        t_gate = time.perf_counter_ns()
        gate.set()
        give_up = time.monotonic() + START_TIMEOUT
        while not all(through_gate) and time.monotonic() < give_up:
            time.sleep(0.001)
        all_started = all(through_gate)
        time.sleep(warmup)
        begin = [len(w) for w in waits]
        t_begin = time.perf_counter_ns()
        time.sleep(seconds)
        end = [len(w) for w in waits]
        t_end = time.perf_counter_ns()
    finally:
        running[0] = False
        gate.set()
        join_all(started, f"{c.name}, after the stop flag")
    if errors:
        raise RuntimeError(f"{c.name}: a worker thread failed: {errors[0]!r}") from errors[0]

    in_window = array("q")
    for w, b, e in zip(waits, begin, end):
        in_window.extend(w[b:e])
    # Several threads at once in the "critical section" of a semaphore of
    # value > 1 race on the checking counters themselves: no check there.
    exclusive = value == 1
    return Window(
        threads=threads,
        value=value,
        seconds=(t_end - t_begin) / 1e9,
        counts=[e - b for b, e in zip(begin, end)],
        waits=in_window,
        all_started=all_started,
        start_spread_ms=(max(through_gate) - t_gate) / 1e6 if all_started else None,
        exclusion_violations=violations[0] if exclusive else None,
        shared_counter_ok=shared[0] == 2 * sum(len(w) for w in waits) if exclusive else None,
    )


def summarize(windows: list[Window]) -> Contended:
    """The figures of one or more windows of one configuration: throughput
    over all of them, the fairness of the least fair one, the wait
    percentiles over every acquisition."""
    seconds = sum(w.seconds for w in windows)
    total = sum(sum(w.counts) for w in windows)
    jains = [jain_index(w.counts) for w in windows]
    scores = [-1.0 if j is None else j for j in jains]
    worst = scores.index(min(scores))
    ratios = [max(w.counts) / min(w.counts) if min(w.counts) else None for w in windows]
    samples = array("q")
    for w in windows:
        samples.extend(w.waits)
    max_wait = max(samples) if samples else None
    stride = max(1, -(-len(samples) // PERCENTILE_SAMPLES))
    ordered = sorted(samples[::stride])
    del samples
    violations = [w.exclusion_violations for w in windows]
    checks = [w.shared_counter_ok for w in windows]
    spreads = [w.start_spread_ms for w in windows]
    return Contended(
        threads=windows[0].threads,
        value=windows[0].value,
        rounds=len(windows),
        seconds=seconds,
        acquisitions=total,
        ops_per_s=total / seconds if seconds > 0 else None,
        jain=jains[worst],
        max_min_ratio=None if None in ratios else max(r for r in ratios if r is not None),
        starved_threads=max(sum(1 for x in w.counts if x == 0) for w in windows),
        per_thread_counts=windows[worst].counts,
        wait_p50_ns=_percentile(ordered, 50) if ordered else None,
        wait_p99_ns=_percentile(ordered, 99) if ordered else None,
        wait_max_ns=max_wait,
        wait_percentiles_ns=[
            (p, max_wait if p == 100 and max_wait is not None else _percentile(ordered, p))
            for p in (WAIT_PERCENTILES if ordered else ())
        ],
        all_started=all(w.all_started for w in windows),
        start_spread_ms=None if None in spreads else max(s for s in spreads if s is not None),
        exclusion_violations=None if None in violations else sum(v or 0 for v in violations),
        shared_counter_ok=None if None in checks else all(checks),
    )


# --------------------------------------------------------------------------
# Barging


def wait_queued(c: Contender, sem: Any, count: int, started: threading.Event | None) -> None:
    """Returns once `count` threads are (taken to be) blocked in acquire();
    `started`, if given, is set by the last of them just before it calls."""
    if started is not None and not started.wait(10.0):
        raise RuntimeError(f"{c.name}: the waiter thread did not start")
    if c.queued is None:
        time.sleep(SETTLE_SECONDS)
        return
    deadline = time.monotonic() + 10.0
    while c.queued(sem) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{c.name}: the waiter never queued")
        time.sleep(0.0001)


def measure_barging(c: Contender, *, trials: int) -> Barging:
    """Counts trials where release() then a non-blocking acquire took the
    permit back from under a thread already queued in acquire()."""
    barges = 0
    for _ in range(trials):
        sem = drained(c)
        started = threading.Event()
        errors: list[BaseException] = []

        def waiter(sem: Any, started: threading.Event, errors: list[BaseException]) -> None:
            started.set()
            try:
                sem.acquire()
                sem.release()
            except BaseException as exc:  # reported below
                errors.append(exc)

        w = threading.Thread(
            target=waiter, args=(sem, started, errors), daemon=True, name="fastsem-barge"
        )
        w.start()
        try:
            wait_queued(c, sem, 1, started)
            sem.release()
            if c.try_acquire(sem):
                barges += 1
                sem.release()  # now the waiter proceeds
        finally:
            w.join(10.0)
        if w.is_alive():
            raise RuntimeError(f"{c.name}: the queued waiter never got the permit")
        if errors:
            raise RuntimeError(f"{c.name}: the waiter failed: {errors[0]!r}") from errors[0]
    return Barging(barges, trials)


# --------------------------------------------------------------------------


def run(plan: Plan, progress: Say = None) -> Run:
    """Every workload on every contender, as `plan` sizes them. `progress`,
    if given, is called with a short line before each step."""
    found = contenders()
    rows = [Row(c.name, c.is_lock, c.fair) for c in found]
    # (threads, value, seconds, the contenders that run it)
    configs = [(THREADS, 1, plan.contended_seconds, found)]
    for threads, value in plan.configs:
        who = [
            c for c in found if (plan.everyone or c.name in CORE) and not (c.is_lock and value != 1)
        ]
        configs.append((threads, value, plan.configs_seconds, who))
    total = (
        2 * (len(found) + plan.loop_repeats - 1)
        + len(found)
        + plan.handoff_repeats
        + sum(plan.rounds * len(who) for *_, who in configs)
        + len(found)
    )
    done = [0]
    t0 = time.perf_counter()
    noise = NoiseMeter()

    def say(text: str) -> None:
        done[0] += 1
        if progress is not None:
            progress(f"[{min(done[0], total)}/{total}] {time.perf_counter() - t0:4.0f} s  {text}")

    for kind in ("pair", "with"):
        figures = measure_uncontended(
            found, kind, min_ns=plan.loop_ns, repeats=plan.loop_repeats, say=say
        )
        for row, f in zip(rows, figures):
            setattr(row, "pair" if kind == "pair" else "with_block", f)
    handoffs = measure_handoff(
        found, seconds=plan.handoff_seconds, repeats=plan.handoff_repeats, say=say
    )
    for row, h in zip(rows, handoffs):
        row.handoff = h
    by_name = {row.name: row for row in rows}
    for threads, value, seconds, who in configs:
        windows: dict[str, list[Window]] = {c.name: [] for c in who}
        for r in range(plan.rounds):
            for c in who:
                say(f"contended, {threads} threads, value {value}, {r + 1}/{plan.rounds}: {c.name}")
                windows[c.name].append(
                    contended_window(
                        c,
                        threads=threads,
                        value=value,
                        seconds=seconds / plan.rounds,
                        warmup=plan.warmup,
                    )
                )
                gc.collect()
        for name, ws in windows.items():
            by_name[name].contended[config_key(threads, value)] = summarize(ws)
        del windows
    for c, row in zip(found, rows):
        say(f"barging: {c.name}")
        row.barging = measure_barging(c, trials=plan.barge_trials)
    return Run(machine_info(), plan, rows, time.perf_counter() - t0, noise.read())
