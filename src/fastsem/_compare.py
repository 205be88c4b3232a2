"""The measurements behind ``python -m fastsem``: fastsem against its peers.

Pure standard library, no printing (``__main__`` formats the tables and draws
the plot). The same functions are imported by the pytest-benchmark suite in
``bench/``, so every figure is measured one way only.

The contenders are fastsem (C, fair; its BoundedSemaphore; C non-fair; the
pure-Python reference), threading.Semaphore and BoundedSemaphore,
multiprocessing.Semaphore (a POSIX semaphore, usable by threads too),
posix_ipc.Semaphore when that package is installed, and a bare ``_thread``
lock: the floor, what the interpreter's own lock costs.

The workloads, each run on every contender that supports it:

uncontended
    ns per ``acquire(); release()`` pair in one thread, and per ``with sem:
    pass`` block: best of several repeats of a tight loop over the bound
    methods (as timeit does, with the garbage collector off while timing; the
    loop's own cost is included). The repeats of all contenders are
    interleaved, round by round, so a slow drift of the machine (frequency,
    a neighbour) falls on every contender alike.
handoff
    Ping-pong: each of two threads releases the other's semaphore (both start
    at 0), then waits on its own. Reported: ns per handoff (a round trip is
    two), the median of interleaved repeats.
contended
    T threads on a semaphore of value V, each looping acquire / a tiny
    critical section / release for a fixed wall time. Per thread:
    acquisitions, and the wait of every acquire(). Reported: throughput,
    Jain's fairness index over the per-thread counts, the max/min count ratio,
    wait percentiles. On value 1 the critical section also checks mutual
    exclusion (a semaphore of value 1 must never let two threads in at once).

    Only a window after a warm-up counts, which begins once every thread is
    through the start gate. Leaving the gate needs the GIL, and a thread
    looping on a free semaphore gives the GIL up only when a switch interval
    (5 ms) forces it to; a forced switch that lands while it does not hold
    the permit just makes the newcomer the next one to run alone. So the
    threads join one switch interval at a time, by chance, sometimes over
    50 ms or more, and the ones already in run uncontended at many times the
    contended rate. Counted, those milliseconds dominate the per-thread
    counts (a Jain index of 0.24 for a strictly FIFO semaphore, from startup
    alone).
barging
    A thread W blocks in acquire() on a value-1 semaphore whose permit the
    main thread holds; the main thread then does ``release()`` followed at
    once by a non-blocking acquire. If that succeeds, the releasing thread
    took the permit back ahead of the queued waiter: a barge.
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
    n threads queued on a semaphore of value 0, then one ``release(n)``:
    the time of that call (in fair mode every grant is made inside it), and
    the time until the last waiter has returned from acquire(). Thread
    creation is not timed.

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
import tracemalloc
from array import array
from dataclasses import dataclass
from typing import Any, Callable

THREADS = 16
CONTENDED_SECONDS = 0.5
CONTENDED_SECONDS_QUICK = 0.1
# Run, uncounted, after the last thread is through the start gate and before
# the measured window (see the module docstring).
CONTENDED_WARMUP = 0.1
CONTENDED_WARMUP_QUICK = 0.03
# Give up waiting for every thread to pass the start gate after this long
# (and measure anyway; "all_started" says so).
START_TIMEOUT = 5.0
BARGE_TRIALS = 200
BARGE_TRIALS_QUICK = 50
# Without a way to see that a thread is queued, this long after it starts it
# is taken to be blocked in acquire().
BARGE_SETTLE_SECONDS = 0.005
# Percentiles are exact up to this many wait samples, and taken from an
# evenly strided subsample beyond it (the max is always exact).
PERCENTILE_SAMPLES = 250_000
# The wait distribution kept in the results (for the plot): these percentiles.
WAIT_PERCENTILES = (0.0, 1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0)
# A thread that has not come back this long after the stop flag is hung.
JOIN_TIMEOUT = 30.0
# Stack size of the threads queued by the release(n) workload (5,000 threads
# of the default 8 MiB would reserve 40 GiB of address space).
RELEASE_N_STACK_SIZE = 256 * 1024

# The contenders the goals name.
FASTSEM = "fastsem"
FASTSEM_BOUNDED = "fastsem (bounded)"
FASTSEM_NONFAIR = "fastsem (non-fair)"
FASTSEM_PURE = "fastsem (pure Python)"
THREADING = "threading.Semaphore"
THREADING_BOUNDED = "threading.BoundedSemaphore"
MULTIPROCESSING = "multiprocessing.Semaphore"
POSIX_IPC = "posix_ipc.Semaphore"
LOCK = "_thread.lock"
# Outside --full, the workloads that cost the most run on these only.
CORE = (FASTSEM, FASTSEM_NONFAIR, FASTSEM_PURE, THREADING, LOCK)


@dataclass(frozen=True)
class Contender:
    """One semaphore-like type under test.

    `make(value)` returns a fresh object with acquire()/release() (ValueError
    for a value it cannot have). `is_lock` marks a plain lock: value 1 only
    and no fairness promise, shown for reference (what the interpreter's own
    lock costs). `new` makes one object of value 1 with no arguments, for the
    memory and creation workloads (None: not measured). `try_acquire` takes
    a permit without blocking and says whether it did. `queued` returns how
    many threads are blocked in acquire() (None: no way to tell).
    `release_n` says whether release(n) exists and may go past the initial
    value.
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


def _multiprocessing_contender() -> Contender | None:
    try:
        import multiprocessing

        multiprocessing.Semaphore(1)  # needs a working /dev/shm
    except (ImportError, OSError):
        return None
    return Contender(MULTIPROCESSING, lambda v: multiprocessing.Semaphore(v))


def _posix_ipc_contender() -> Contender | None:
    try:
        import posix_ipc  # type: ignore[import-not-found]  # optional, never a dependency
    except ImportError:
        return None

    def make(value: int) -> Any:
        sem = posix_ipc.Semaphore(None, posix_ipc.O_CREX, initial_value=value)
        sem.unlink()  # nameless from now on; lives while this object does
        return sem

    def try_acquire(sem: Any) -> bool:
        try:
            sem.acquire(0)
        except posix_ipc.BusyError:
            return False
        return True

    try:
        make(1)
    except (OSError, posix_ipc.Error):
        return None
    return Contender(POSIX_IPC, make, try_acquire=try_acquire)


def contenders() -> list[Contender]:
    """The contenders, fastsem's first and the floor last; the C ones only if
    the build imports (and FASTSEM_NO_EXTENSIONS is not set), the optional
    peers only if they import and work here."""
    from . import _pyfastsem
    from ._impl import c_module as _cfastsem

    found: list[Contender] = []
    if _cfastsem is not None:
        found += [
            Contender(
                FASTSEM,
                lambda v: _cfastsem.Semaphore(v, fair=True),
                fair=True,
                new=_cfastsem.Semaphore,
                queued=_waiting,
                release_n=True,
            ),
            Contender(
                FASTSEM_BOUNDED,
                lambda v: _cfastsem.BoundedSemaphore(v, fair=True),
                fair=True,
                new=_cfastsem.BoundedSemaphore,
                queued=_waiting,
            ),
            Contender(
                FASTSEM_NONFAIR,
                lambda v: _cfastsem.Semaphore(v, fair=False),
                fair=False,
                queued=_waiting,
                release_n=True,
            ),
        ]
    found.append(
        Contender(
            FASTSEM_PURE,
            lambda v: _pyfastsem.Semaphore(v, fair=True),
            fair=True,
            new=_pyfastsem.Semaphore,
            queued=_waiting,
            release_n=True,
        )
    )
    found += [
        Contender(
            THREADING,
            threading.Semaphore,
            new=threading.Semaphore,
            queued=_condition_waiters,
            release_n=True,
        ),
        Contender(
            THREADING_BOUNDED,
            threading.BoundedSemaphore,
            new=threading.BoundedSemaphore,
            queued=_condition_waiters,
        ),
    ]
    for optional in (_multiprocessing_contender(), _posix_ipc_contender()):
        if optional is not None:
            found.append(optional)
    found.append(Contender(LOCK, _make_lock, is_lock=True, new=_thread.allocate_lock))
    return found


# --------------------------------------------------------------------------
# How much of everything a run measures


@dataclass(frozen=True)
class Plan:
    """The sizes of one run: --quick, the default, or --full."""

    mode: str
    uncontended_min_ns: int  # per repeat
    uncontended_repeats: int
    handoff_seconds: float  # per repeat
    handoff_repeats: int
    contended_seconds: float  # the 16-thread, value-1 run of every contender
    contended_warmup: float
    contended_rounds: int  # windows per contender and configuration, interleaved
    # Every other (threads, value) configuration, with its window.
    configs: tuple[tuple[int, int], ...]
    configs_seconds: float
    barge_trials: int
    fifo_waiters: int
    fifo_rounds: int
    memory_objects: int
    creation_objects: int
    release_ns: tuple[int, ...]
    release_repeats: tuple[int, ...]  # for each of release_ns
    # False: the heavier workloads (extra configurations, FIFO order without a
    # way to see the queue, release(n)) run on the CORE contenders only.
    everyone: bool


PLANS = {
    "quick": Plan(
        mode="quick",
        uncontended_min_ns=10_000_000,
        uncontended_repeats=3,
        handoff_seconds=0.02,
        handoff_repeats=3,
        contended_seconds=CONTENDED_SECONDS_QUICK,
        contended_warmup=CONTENDED_WARMUP_QUICK,
        contended_rounds=1,
        configs=((4, 1), (4, 2), (16, 8)),
        configs_seconds=0.06,
        barge_trials=BARGE_TRIALS_QUICK,
        fifo_waiters=25,
        fifo_rounds=2,
        memory_objects=5_000,
        creation_objects=20_000,
        release_ns=(100, 400),
        release_repeats=(1, 1),
        everyone=False,
    ),
    "default": Plan(
        mode="default",
        uncontended_min_ns=20_000_000,
        uncontended_repeats=5,
        handoff_seconds=0.025,
        handoff_repeats=7,
        contended_seconds=CONTENDED_SECONDS,
        contended_warmup=0.05,
        contended_rounds=2,
        configs=((4, 1), (4, 2), (16, 8)),
        configs_seconds=0.25,
        barge_trials=BARGE_TRIALS,
        fifo_waiters=50,
        fifo_rounds=4,
        memory_objects=20_000,
        creation_objects=200_000,
        release_ns=(100, 1000),
        release_repeats=(3, 1),
        everyone=False,
    ),
    "full": Plan(
        mode="full",
        uncontended_min_ns=100_000_000,
        uncontended_repeats=7,
        handoff_seconds=0.05,
        handoff_repeats=31,
        contended_seconds=1.0,
        contended_warmup=CONTENDED_WARMUP,
        contended_rounds=4,
        configs=((2, 1), (4, 1), (8, 1), (32, 1), (4, 2), (16, 8)),
        configs_seconds=1.0,
        barge_trials=BARGE_TRIALS,
        fifo_waiters=50,
        fifo_rounds=4,
        memory_objects=100_000,
        creation_objects=1_000_000,
        release_ns=(100, 1000, 5000),
        release_repeats=(5, 3, 3),
        everyone=True,
    ),
}


# --------------------------------------------------------------------------
# Machine description


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


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
    time less this process's own (Linux only; None elsewhere)."""

    def __init__(self) -> None:
        self.busy0 = _cpu_busy_seconds()
        self.own0 = time.process_time()
        self.wall0 = time.perf_counter()

    def read(self) -> dict[str, Any]:
        busy1 = _cpu_busy_seconds()
        wall = time.perf_counter() - self.wall0
        if self.busy0 is None or busy1 is None:
            return {"other_cpu_seconds": None, "other_cpu_share": None}
        others = max(0.0, (busy1 - self.busy0) - (time.process_time() - self.own0))
        cpus = os.cpu_count() or 1
        return {
            "other_cpu_seconds": round(others, 3),
            "other_cpu_share": round(others / (wall * cpus), 4) if wall > 0 else None,
        }


def machine_info() -> dict[str, Any]:
    from . import IMPLEMENTATION, __version__

    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on macOS
        usable = os.cpu_count()
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
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
        "load_average": _load_average(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "fastsem_version": __version__,
        "fastsem_implementation": IMPLEMENTATION,
    }


# --------------------------------------------------------------------------
# Uncontended


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


UNCONTENDED_KINDS = ("pair", "with")


def _timer(c: Contender, kind: str) -> Callable[[int], int]:
    """A function of `number` that times that many pairs (or blocks)."""
    sem = c.make(1)
    if kind == "pair":
        return functools.partial(pair_loop, sem.acquire, sem.release)
    if kind == "with":
        if not hasattr(sem, "__enter__"):
            raise TypeError(f"{c.name} is not a context manager")
        return functools.partial(with_loop, sem)
    raise ValueError(kind)


def _calibrate(timer: Callable[[int], int], min_ns: int) -> tuple[int, int]:
    """As timeit.autorange: grows `number` until one run takes min_ns.
    Returns (number, ns of the last run)."""
    number = 1000
    while True:
        elapsed = timer(number)
        if elapsed >= min_ns:
            return number, elapsed
        number = max(number * 2, int(number * min_ns * 1.2 / max(elapsed, 1)))


def _gc_off() -> bool:
    was = gc.isenabled()
    gc.disable()
    return was


def measure_uncontended_all(
    found: list[Contender],
    kind: str = "pair",
    *,
    min_ns: int = 30_000_000,
    repeats: int = 5,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any] | None]:
    """ns per acquire/release pair (kind "pair") or per ``with`` block (kind
    "with") of each contender in one thread: the best of `repeats` timed
    loops, the loops of all contenders interleaved round by round."""
    timers: list[Callable[[int], int] | None] = []
    for c in found:
        try:
            timers.append(_timer(c, kind))
        except (TypeError, ValueError):
            timers.append(None)
    numbers: list[int] = []
    runs: list[list[int]] = [[] for _ in found]
    was_enabled = _gc_off()
    try:
        for c, timer, ns_runs in zip(found, timers, runs):
            if progress is not None:
                progress(f"uncontended {kind}: {c.name} (calibrating)")
            if timer is None:
                numbers.append(0)
                continue
            number, elapsed = _calibrate(timer, min_ns)
            numbers.append(number)
            ns_runs.append(elapsed)
        for r in range(1, repeats):
            if progress is not None:
                progress(f"uncontended {kind}: round {r + 1}/{repeats}")
            for timer, number, ns_runs in zip(timers, numbers, runs):
                if timer is not None:
                    ns_runs.append(timer(number))
    finally:
        if was_enabled:
            gc.enable()
    results: list[dict[str, Any] | None] = []
    for timer, number, ns_runs in zip(timers, numbers, runs):
        if timer is None:
            results.append(None)
            continue
        per = sorted(ns / number for ns in ns_runs)
        results.append(
            {
                "ns": per[0],
                "ns_median": statistics.median(per),
                "number": number,
                "repeats": len(per),
            }
        )
    return results


def measure_uncontended(
    c: Contender, kind: str = "pair", *, min_ns: int = 30_000_000, repeats: int = 5
) -> dict[str, Any] | None:
    """measure_uncontended_all for one contender."""
    return measure_uncontended_all([c], kind, min_ns=min_ns, repeats=repeats)[0]


# --------------------------------------------------------------------------
# Handoff ping-pong


def _join_all(pool: list[threading.Thread], name: str, timeout: float = JOIN_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    for t in pool:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = sum(t.is_alive() for t in pool)
    if hung:
        raise RuntimeError(
            f"{name}: {hung} of {len(pool)} threads did not finish in {timeout:.0f} s"
        )


def _drained(c: Contender) -> Any:
    """A fresh object of value 0 (made with value 1, which every contender
    accepts, and acquired once)."""
    sem = c.make(1)
    sem.acquire()
    return sem


def handoff_run(c: Contender, rounds: int) -> int:
    """ns for `rounds` round trips of the ping-pong (2 handoffs each)."""
    mine, theirs = _drained(c), _drained(c)
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
        threading.Thread(target=f, daemon=True, name=f"fastsem-handoff-{i}")
        for i, f in enumerate((pinger, ponger))
    ]
    for t in pool:
        t.start()
    _join_all(pool, c.name)
    if errors:
        raise RuntimeError(f"{c.name}: a ping-pong thread failed: {errors[0]!r}") from errors[0]
    return elapsed[0]


def _handoff_rounds(c: Contender, seconds: float) -> int:
    """Round trips that take about `seconds` at the fastest rate seen in a
    few short runs (after a warm-up run)."""
    handoff_run(c, 50)
    rounds = 200
    ns = min(handoff_run(c, rounds) for _ in range(3))
    return max(100, int(rounds * seconds * 1e9 / max(ns, 1)))


def measure_handoff_all(
    found: list[Contender],
    *,
    seconds: float = 0.03,
    repeats: int = 11,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """ns per handoff in the ping-pong, each contender: the median of
    `repeats` runs of about `seconds`, interleaved round by round."""
    rounds = []
    for c in found:
        if progress is not None:
            progress(f"handoff: {c.name} (calibrating)")
        rounds.append(_handoff_rounds(c, seconds))
    runs: list[list[float]] = [[] for _ in found]
    for r in range(repeats):
        if progress is not None:
            progress(f"handoff: round {r + 1}/{repeats}")
        for c, n, per in zip(found, rounds, runs):
            per.append(handoff_run(c, n) / (2 * n))
    return [
        {
            "ns_per_handoff": statistics.median(per),
            "ns_per_handoff_best": min(per),
            "ns_per_handoff_runs": per,
            "round_trips": n,
        }
        for n, per in zip(rounds, runs)
    ]


def measure_handoff(c: Contender, *, seconds: float = 0.03, repeats: int = 11) -> dict[str, Any]:
    """measure_handoff_all for one contender."""
    return measure_handoff_all([c], seconds=seconds, repeats=repeats)[0]


# --------------------------------------------------------------------------
# Contended


def _percentile(sorted_values: Any, p: float) -> int:
    """Nearest-rank percentile of an ascending sequence (p 0: the minimum)."""
    n = len(sorted_values)
    rank = max(1, math.ceil(p / 100.0 * n))
    return int(sorted_values[min(rank, n) - 1])


def jain_index(counts: list[int]) -> float | None:
    """(sum x)^2 / (n * sum x^2): 1.0 for a perfectly even share, 1/n worst."""
    total = sum(counts)
    squares = sum(x * x for x in counts)
    if not counts or squares == 0:
        return None
    return total * total / (len(counts) * squares)


def config_key(threads: int, value: int) -> str:
    """The key of a contended configuration in the results: "t16_v1"."""
    return f"t{threads}_v{value}"


def contended_window(
    c: Contender,
    *,
    threads: int = THREADS,
    value: int = 1,
    seconds: float = CONTENDED_SECONDS,
    warmup: float = CONTENDED_WARMUP,
) -> dict[str, Any]:
    """One run of the contended loop: `threads` threads loop acquire /
    critical section / release on a semaphore of `value`; the raw figures of
    `seconds` of it, `warmup` seconds after the last thread came through the
    start gate (summarize_contended() turns runs into the reported figures)."""
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
        deadline = time.monotonic() + JOIN_TIMEOUT
        for t in started:
            t.join(max(0.0, deadline - time.monotonic()))
        hung = sum(t.is_alive() for t in started)
    if hung:
        raise RuntimeError(
            f"{c.name}: {hung} of {threads} threads did not stop "
            f"within {JOIN_TIMEOUT:.0f} s of the stop flag"
        )
    if errors:
        raise RuntimeError(f"{c.name}: a worker thread failed: {errors[0]!r}") from errors[0]

    all_acquisitions = sum(len(w) for w in waits)
    in_window = array("q")
    for w, b, e in zip(waits, begin, end):
        in_window.extend(w[b:e])
    # Several threads at once in the "critical section" of a semaphore of
    # value > 1 race on the checking counters themselves: no check there.
    exclusive = value == 1
    return {
        "threads": threads,
        "value": value,
        "warmup_s": warmup,
        "all_started": all_started,
        "start_spread_ms": ((max(through_gate) - t_gate) / 1e6 if all_started else None),
        "seconds": (t_end - t_begin) / 1e9,
        "counts": [e - b for b, e in zip(begin, end)],
        "waits": in_window,
        "exclusion_violations": violations[0] if exclusive else None,
        "shared_counter_ok": shared[0] == 2 * all_acquisitions if exclusive else None,
    }


def summarize_contended(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """The reported figures of one or more contended_window() runs of one
    configuration: throughput over all of them, the fairness figures of the
    least fair one, the wait percentiles over every acquisition."""
    first = windows[0]
    window_s = sum(w["seconds"] for w in windows)
    total = sum(sum(w["counts"]) for w in windows)
    jains = [jain_index(w["counts"]) for w in windows]
    scores = [-1.0 if j is None else j for j in jains]
    worst = scores.index(min(scores))
    ratios = [max(w["counts"]) / min(w["counts"]) if min(w["counts"]) else None for w in windows]
    samples = array("q")
    for w in windows:
        samples.extend(w["waits"])
    n_samples = len(samples)
    max_wait = max(samples) if n_samples else None
    stride = max(1, -(-n_samples // PERCENTILE_SAMPLES))
    ordered = sorted(samples[::stride])
    del samples
    violations = [w["exclusion_violations"] for w in windows]
    checks = [w["shared_counter_ok"] for w in windows]
    spreads = [w["start_spread_ms"] for w in windows]
    return {
        "threads": first["threads"],
        "value": first["value"],
        "rounds": len(windows),
        "all_started": all(w["all_started"] for w in windows),
        "start_spread_ms": None if None in spreads else max(spreads),
        "warmup_s": first["warmup_s"],
        "seconds": window_s,
        "acquisitions": total,
        "ops_per_s": total / window_s if window_s > 0 else None,
        "ops_per_s_rounds": [
            sum(w["counts"]) / w["seconds"] if w["seconds"] > 0 else None for w in windows
        ],
        "per_thread_counts": windows[worst]["counts"],
        "jain": jains[worst],
        "jain_rounds": jains,
        "max_min_ratio": None if None in ratios else max(r for r in ratios if r is not None),
        "starved_threads": max(sum(1 for x in w["counts"] if x == 0) for w in windows),
        "wait_ns": {
            "p50": _percentile(ordered, 50) if ordered else None,
            "p99": _percentile(ordered, 99) if ordered else None,
            "max": max_wait,
        },
        "wait_percentiles_ns": (
            [[p, max_wait if p == 100 else _percentile(ordered, p)] for p in WAIT_PERCENTILES]
            if ordered
            else []
        ),
        "percentile_stride": stride,
        "exclusion_violations": None if None in violations else sum(violations),
        "shared_counter_ok": None if None in checks else all(checks),
    }


def measure_contended(
    c: Contender,
    *,
    threads: int = THREADS,
    value: int = 1,
    seconds: float = CONTENDED_SECONDS,
    warmup: float = CONTENDED_WARMUP,
    rounds: int = 1,
) -> dict[str, Any]:
    """`threads` threads loop acquire / critical section / release on a
    semaphore of `value`: `rounds` runs measured over `seconds` in all (see
    contended_window() and summarize_contended())."""
    return summarize_contended(
        [
            contended_window(
                c, threads=threads, value=value, seconds=seconds / rounds, warmup=warmup
            )
            for _ in range(rounds)
        ]
    )


# --------------------------------------------------------------------------
# Barging and FIFO order


def _wait_queued(c: Contender, sem: Any, count: int, started: threading.Event | None) -> None:
    """Returns once `count` threads are (taken to be) blocked in acquire();
    `started`, if given, is set by the last of them just before it calls."""
    if started is not None and not started.wait(10.0):
        raise RuntimeError(f"{c.name}: the waiter thread did not start")
    if c.queued is not None:
        deadline = time.monotonic() + 10.0
        while c.queued(sem) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{c.name}: the waiter never queued")
            time.sleep(0.0001)
    else:
        time.sleep(BARGE_SETTLE_SECONDS)


def measure_barging(c: Contender, *, trials: int = BARGE_TRIALS) -> dict[str, Any]:
    """Counts trials where release() then a non-blocking acquire took the
    permit back from under a thread already queued in acquire()."""
    barges = 0
    for _ in range(trials):
        sem = _drained(c)
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
            _wait_queued(c, sem, 1, started)
            sem.release()
            if c.try_acquire(sem):
                barges += 1
                sem.release()  # now W proceeds
        finally:
            w.join(10.0)
        if w.is_alive():
            raise RuntimeError(f"{c.name}: the queued waiter never got the permit")
        if errors:
            raise RuntimeError(f"{c.name}: the waiter failed: {errors[0]!r}") from errors[0]
    return {"barges": barges, "trials": trials}


def measure_fifo(c: Contender, *, waiters: int = 50, rounds: int = 4) -> dict[str, Any]:
    """Grants in arrival order, out of waiters * rounds."""
    in_order = grants = 0
    for _ in range(rounds):
        sem = _drained(c)
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
                _wait_queued(c, sem, i + 1, started)
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
            _join_all(pool, c.name, 10.0)
    return {
        "grants": grants,
        "in_order": in_order,
        "fraction": in_order / grants if grants else None,
    }


# --------------------------------------------------------------------------
# Memory and creation


def measure_memory(c: Contender, *, objects: int = 100_000) -> dict[str, Any] | None:
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
    return {"bytes_per_object": (after - before) / objects, "objects": objects}


def measure_creation(
    c: Contender, *, objects: int = 1_000_000, batch: int = 10_000
) -> dict[str, Any] | None:
    """ns to create one object, over `objects` made `batch` at a time (their
    destruction between batches is not timed)."""
    if c.new is None:
        return None
    new = c.new
    clock = time.perf_counter_ns
    total_ns = 0
    made = 0
    was_enabled = _gc_off()
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
    return {"ns_per_object": total_ns / objects, "objects": objects, "seconds": total_ns / 1e9}


# --------------------------------------------------------------------------
# release(n) of n queued waiters


def release_n_run(c: Contender, n: int) -> dict[str, Any]:
    """n threads queued on a semaphore of value 0, then one release(n)."""
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
        _wait_queued(c, sem, n, None)
        t0 = clock()
        sem.release(n)
        t1 = clock()
        released = True
        _join_all(pool, c.name, JOIN_TIMEOUT * 4)
    finally:
        threading.stack_size(old_size)
        if not released:
            sem.release(n)
            _join_all(pool, c.name, JOIN_TIMEOUT)
    if errors:
        raise RuntimeError(f"{c.name}: a waiter failed: {errors[0]!r}") from errors[0]
    return {"release_ns": t1 - t0, "all_returned_ns": max(stamps) - t0}


def measure_release_n(c: Contender, *, n: int, repeats: int = 1) -> dict[str, Any]:
    """release_n_run, the median of `repeats`."""
    runs = [release_n_run(c, n) for _ in range(repeats)]
    gc.collect()
    release = statistics.median(r["release_ns"] for r in runs)
    returned = statistics.median(r["all_returned_ns"] for r in runs)
    return {
        "n": n,
        "repeats": repeats,
        "release_ns": release,
        "release_ns_per_waiter": release / n,
        "all_returned_ns": returned,
        "all_returned_ns_per_waiter": returned / n,
    }


# --------------------------------------------------------------------------
# Goals (issue 3): each a ratio measured side by side in one run


def _row(result: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((r for r in result["contenders"] if r["name"] == name), None)


def _get(row: dict[str, Any] | None, *path: str) -> Any:
    value: Any = row
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return float(a) / float(b)
    return None


def _goal(
    gid: str,
    text: str,
    ratio: float | None,
    op: str,
    target: float,
    detail: str,
    unit: str = "x",
) -> dict[str, Any]:
    met = None
    if ratio is not None:
        met = ratio <= target if op == "<=" else ratio >= target
    return {
        "id": gid,
        "goal": text,
        "ratio": ratio,
        "op": op,
        "target": target,
        "unit": unit,
        "met": met,
        "detail": detail,
    }


def _fmt(x: Any, unit: str = "") -> str:
    if not isinstance(x, (int, float)):
        return "-"
    if unit == "ns":
        if x >= 1e6:
            return f"{x / 1e6:.2f} ms"
        if x >= 1e4:
            return f"{x / 1e3:.1f} us"
        return f"{x:.1f} ns" if x < 100 else f"{x:,.0f} ns"
    if unit == "ops":
        return f"{x:,.0f}/s"
    if unit == "B":
        return f"{x:,.0f} B"
    return f"{x:.3g}"


def _count(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else "-"


def evaluate_goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of issue 3 with its measured ratio and whether it is met (None
    when a figure it needs was not measured in this run)."""
    c, cb = _row(result, FASTSEM), _row(result, FASTSEM_BOUNDED)
    nf, py = _row(result, FASTSEM_NONFAIR), _row(result, FASTSEM_PURE)
    thr, lock = _row(result, THREADING), _row(result, LOCK)
    goals = []

    for gid, row, label in (("1a", c, "Semaphore"), ("1b", cb, "BoundedSemaphore")):
        a, b = _get(row, "uncontended", "ns_per_pair"), _get(lock, "uncontended", "ns_per_pair")
        goals.append(
            _goal(
                gid,
                f"uncontended acquire()+release(): fastsem.{label} / _thread lock",
                _ratio(a, b),
                "<=",
                0.55,
                f"{_fmt(a, 'ns')} / {_fmt(b, 'ns')}",
            )
        )
    for gid, row, label in (("1c", c, "Semaphore"), ("1d", cb, "BoundedSemaphore")):
        a, b = _get(row, "with_block", "ns_per_block"), _get(lock, "with_block", "ns_per_block")
        goals.append(
            _goal(
                gid,
                f"`with sem: pass`: fastsem.{label} / _thread lock",
                _ratio(a, b),
                "<=",
                1.0,
                f"{_fmt(a, 'ns')} / {_fmt(b, 'ns')}",
            )
        )
    a, b = _get(c, "handoff", "ns_per_handoff"), _get(lock, "handoff", "ns_per_handoff")
    goals.append(
        _goal(
            "2",
            "handoff ping-pong between 2 threads: fastsem / _thread locks",
            _ratio(a, b),
            "<=",
            1.15,
            f"{_fmt(a, 'ns')} / {_fmt(b, 'ns')} per handoff",
        )
    )

    for t in (4, 16):
        k1, kh = config_key(t, 1), config_key(t, t // 2)
        run_c = _get(c, "contended_runs", k1)
        run_py = _get(py, "contended_runs", k1)
        run_thr = _get(thr, "contended_runs", k1)
        a, b = _get(run_c, "ops_per_s"), _get(run_py, "ops_per_s")
        goals.append(
            _goal(
                f"3a T={t}",
                f"fair, {t} threads, value 1: throughput, fastsem / pure-Python FIFO",
                _ratio(a, b),
                ">=",
                1.5,
                f"{_fmt(a, 'ops')} / {_fmt(b, 'ops')}",
            )
        )
        jain = _get(run_c, "jain")
        goals.append(
            _goal(
                f"3b T={t}",
                f"fair, {t} threads, value 1: Jain's index of fastsem",
                jain,
                ">=",
                0.99,
                f"{_fmt(jain)}",
                unit="index",
            )
        )
        mm = _get(run_c, "max_min_ratio")
        goals.append(
            _goal(
                f"3c T={t}",
                f"fair, {t} threads, value 1: max/min per-thread count of fastsem",
                mm,
                "<=",
                1.1,
                f"{_fmt(mm)}",
            )
        )
        a, b = _get(run_c, "wait_ns", "p99"), _get(run_py, "wait_ns", "p99")
        goals.append(
            _goal(
                f"3d T={t}",
                f"fair, {t} threads, value 1: p99 wait, fastsem / pure-Python FIFO",
                _ratio(a, b),
                "<=",
                1.0,
                f"{_fmt(a, 'ns')} / {_fmt(b, 'ns')}",
            )
        )
        a, b = _get(run_c, "wait_ns", "max"), _get(run_thr, "wait_ns", "max")
        goals.append(
            _goal(
                f"3e T={t}",
                f"fair, {t} threads, value 1: max wait, fastsem / threading.Semaphore",
                _ratio(a, b),
                "<=",
                0.1,
                f"{_fmt(a, 'ns')} / {_fmt(b, 'ns')}",
            )
        )
        a = _get(c, "contended_runs", kh, "ops_per_s")
        b = _get(py, "contended_runs", kh, "ops_per_s")
        goals.append(
            _goal(
                f"3f T={t}",
                f"fair, {t} threads, value {t // 2}: throughput, fastsem / pure-Python FIFO",
                _ratio(a, b),
                ">=",
                1.5,
                f"{_fmt(a, 'ops')} / {_fmt(b, 'ops')}",
            )
        )
    for t in (4, 16):
        k1 = config_key(t, 1)
        a = _get(nf, "contended_runs", k1, "ops_per_s")
        b = _get(thr, "contended_runs", k1, "ops_per_s")
        goals.append(
            _goal(
                f"4 T={t}",
                f"non-fair, {t} threads, value 1: throughput, fastsem / threading.Semaphore",
                _ratio(a, b),
                ">=",
                1.5,
                f"{_fmt(a, 'ops')} / {_fmt(b, 'ops')}",
            )
        )

    fifo = _get(c, "fifo")
    goals.append(
        _goal(
            "5a",
            "strict FIFO: share of fastsem's grants in arrival order",
            _get(fifo, "fraction"),
            ">=",
            1.0,
            f"{_get(fifo, 'in_order')}/{_get(fifo, 'grants')} in order" if fifo else "-",
            unit="fraction",
        )
    )
    bar = _get(c, "barging")
    goals.append(
        _goal(
            "5b",
            "strict FIFO: a releasing thread barges ahead of a queued waiter (fastsem)",
            _get(bar, "barges"),
            "<=",
            0,
            f"{_get(bar, 'barges')}/{_get(bar, 'trials')} trials" if bar else "-",
            unit="count",
        )
    )

    a, b = _get(c, "memory", "bytes_per_object"), _get(thr, "memory", "bytes_per_object")
    goals.append(
        _goal(
            "6a",
            "memory per object (tracemalloc): fastsem / threading.Semaphore",
            _ratio(a, b),
            "<=",
            0.25,
            f"{_fmt(a, 'B')} / {_fmt(b, 'B')} over {_count(_get(c, 'memory', 'objects'))}",
        )
    )
    a, b = _get(c, "creation", "ns_per_object"), _get(thr, "creation", "ns_per_object")
    goals.append(
        _goal(
            "6b",
            "creation time: fastsem / threading.Semaphore",
            _ratio(a, b),
            "<=",
            0.2,
            f"{_fmt(a, 'ns')} / {_fmt(b, 'ns')} each over {_count(_get(c, 'creation', 'objects'))}",
        )
    )

    scaling = _get(c, "release_n") or {}
    sizes = sorted(int(k) for k in scaling)
    per_waiter = {n: scaling[str(n)]["release_ns_per_waiter"] for n in sizes}
    growth = _ratio(per_waiter[sizes[-1]], per_waiter[sizes[0]]) if len(sizes) > 1 else None
    goals.append(
        _goal(
            "7",
            "release(n) of n queued waiters is O(n): fastsem's cost per waiter, "
            + (f"n={sizes[-1]:,} / n={sizes[0]:,}" if len(sizes) > 1 else "largest n / smallest"),
            growth,
            "<=",
            2.0,
            ", ".join(f"n={n:,}: {_fmt(per_waiter[n], 'ns')}/waiter" for n in sizes) or "-",
        )
    )
    return goals


# --------------------------------------------------------------------------


def _plan_for(quick: bool, full: bool) -> Plan:
    if quick and full:
        raise ValueError("quick or full, not both")
    return PLANS["quick" if quick else "full" if full else "default"]


def run(
    quick: bool = False,
    progress: Callable[[str], None] | None = None,
    *,
    full: bool = False,
) -> dict[str, Any]:
    """Runs every workload on every contender; returns a JSON-serialisable dict.

    `progress`, if given, is called with a short line before each step.
    """
    plan = _plan_for(quick, full)
    found = contenders()
    results: list[dict[str, Any]] = [
        {"name": c.name, "is_lock": c.is_lock, "fair": c.fair} for c in found
    ]
    core = [c.name in CORE or plan.everyone for c in found]

    def accepts(c: Contender, value: int) -> bool:
        return not (c.is_lock and value != 1)

    # (label, how many progress steps, function doing them)
    steps: list[tuple[int, Callable[[Callable[[str], None]], None]]] = []

    def uncontended(kind: str, key: str, per: str) -> Callable[[Callable[[str], None]], None]:
        def step(say: Callable[[str], None]) -> None:
            figures = measure_uncontended_all(
                found,
                kind,
                min_ns=plan.uncontended_min_ns,
                repeats=plan.uncontended_repeats,
                progress=say,
            )
            for row, f in zip(results, figures):
                row[key] = (
                    None
                    if f is None
                    else {
                        per: f["ns"],
                        per + "_median": f["ns_median"],
                        "number": f["number"],
                        "repeats": f["repeats"],
                    }
                )

        return step

    steps.append(
        (
            len(found) + plan.uncontended_repeats - 1,
            uncontended("pair", "uncontended", "ns_per_pair"),
        )
    )
    steps.append(
        (
            len(found) + plan.uncontended_repeats - 1,
            uncontended("with", "with_block", "ns_per_block"),
        )
    )

    def handoff(say: Callable[[str], None]) -> None:
        figures = measure_handoff_all(
            found, seconds=plan.handoff_seconds, repeats=plan.handoff_repeats, progress=say
        )
        for row, f in zip(results, figures):
            row["handoff"] = f

    steps.append((len(found) + plan.handoff_repeats, handoff))

    # Contended: (16, 1) for every contender, then the other configurations;
    # each in `contended_rounds` windows, the contenders interleaved round by round.
    for row in results:
        row["contended_runs"] = {}
    k = plan.contended_rounds
    configs = [(THREADS, 1, plan.contended_seconds, list(range(len(found))))]
    for threads, value in plan.configs:
        who = [i for i, c in enumerate(found) if core[i] and accepts(c, value)]
        configs.append((threads, value, plan.configs_seconds, who))
    for threads, value, seconds, who in configs:

        def contended(
            say: Callable[[str], None],
            threads: int = threads,
            value: int = value,
            seconds: float = seconds,
            who: list[int] = who,
        ) -> None:
            windows: dict[int, list[dict[str, Any]]] = {i: [] for i in who}
            for r in range(k):
                for i in who:
                    c = found[i]
                    say(f"contended, {threads} threads, value {value}, round {r + 1}/{k}: {c.name}")
                    windows[i].append(
                        contended_window(
                            c,
                            threads=threads,
                            value=value,
                            seconds=seconds / k,
                            warmup=plan.contended_warmup,
                        )
                    )
                    gc.collect()
            for i in who:
                figures = summarize_contended(windows.pop(i))
                results[i]["contended_runs"][config_key(threads, value)] = figures
                if (threads, value) == (THREADS, 1):
                    results[i]["contended"] = figures

        steps.append((k * len(who), contended))

    def per_contender(
        label: str, key: str, measure: Callable[[Contender], Any], only: Callable[[int], bool]
    ) -> None:
        for i, c in enumerate(found):
            if not only(i):
                results[i][key] = None
                continue

            def step(say: Callable[[str], None], i: int = i, c: Contender = c) -> None:
                say(f"{label}: {c.name}")
                results[i][key] = measure(c)
                gc.collect()

            steps.append((1, step))

    per_contender(
        "barging",
        "barging",
        lambda c: measure_barging(c, trials=plan.barge_trials),
        lambda i: True,
    )
    per_contender(
        "FIFO order",
        "fifo",
        lambda c: measure_fifo(c, waiters=plan.fifo_waiters, rounds=plan.fifo_rounds),
        lambda i: plan.everyone or found[i].queued is not None,
    )
    per_contender(
        "memory",
        "memory",
        lambda c: measure_memory(c, objects=plan.memory_objects),
        lambda i: found[i].new is not None,
    )
    per_contender(
        "creation",
        "creation",
        lambda c: measure_creation(c, objects=plan.creation_objects),
        lambda i: found[i].new is not None,
    )

    def release_n(c: Contender) -> dict[str, Any]:
        return {
            str(n): measure_release_n(c, n=n, repeats=r)
            for n, r in zip(plan.release_ns, plan.release_repeats)
        }

    per_contender(
        f"release(n), n = {', '.join(f'{n:,}' for n in plan.release_ns)}",
        "release_n",
        release_n,
        lambda i: core[i] and found[i].release_n and found[i].queued is not None,
    )

    total = sum(n for n, _ in steps)
    done = [0]
    t0 = time.perf_counter()
    noise = NoiseMeter()

    def say(text: str) -> None:
        done[0] += 1
        if progress is not None:
            elapsed = time.perf_counter() - t0
            progress(f"[{min(done[0], total)}/{total}] {elapsed:4.0f} s  {text}")

    for _, step in steps:
        step(say)

    result = {
        "machine": machine_info(),
        "settings": {
            "mode": plan.mode,
            "quick": plan.mode == "quick",
            "full": plan.mode == "full",
            "threads": THREADS,
            "contended_seconds": plan.contended_seconds,
            "contended_warmup_seconds": plan.contended_warmup,
            "contended_rounds": plan.contended_rounds,
            "barge_trials": plan.barge_trials,
            "plan": {k: v for k, v in plan.__dict__.items()},
            "baseline": THREADING,
            "floor": LOCK,
        },
        "contenders": results,
        "total_seconds": time.perf_counter() - t0,
        # CPU time other processes took during the run: a busy neighbour
        # disturbs the threaded figures most.
        "noise": noise.read(),
    }
    result["goals"] = evaluate_goals(result)
    return result
