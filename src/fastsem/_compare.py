"""The measurements behind ``python -m fastsem``: fastsem against threading.

Pure standard library, no printing (``__main__`` formats the table). Three
workloads, each run on every contender:

uncontended
    ns per ``acquire(); release()`` pair in one thread, best of several
    repeats of a tight loop over the bound methods (as timeit does, with the
    garbage collector off while timing; the loop's own cost is included).
contended
    16 threads on a value-1 semaphore, each looping acquire / a tiny critical
    section / release for a fixed wall time. Per thread: acquisitions, and the
    wait of every acquire(). Reported: throughput, Jain's fairness index over
    the per-thread counts, the max/min count ratio, wait percentiles. The
    critical section also checks mutual exclusion (a semaphore of value 1
    must never let two threads in at once).

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
    once by ``acquire(blocking=False)``. If that succeeds, the releasing
    thread took the permit back ahead of the queued waiter: a barge.

The interpreter's switch interval is left at its default, as a user has it.
"""

from __future__ import annotations

import _thread
import datetime
import gc
import itertools
import math
import os
import platform
import sys
import threading
import time
from array import array
from dataclasses import dataclass
from typing import Any, Callable

THREADS = 16
CONTENDED_SECONDS = 1.0
CONTENDED_SECONDS_QUICK = 0.3
# Run, uncounted, after the last thread is through the start gate and before
# the measured window (see the module docstring).
CONTENDED_WARMUP = 0.1
CONTENDED_WARMUP_QUICK = 0.05
# Give up waiting for every thread to pass the start gate after this long
# (and measure anyway; "all_started" says so).
START_TIMEOUT = 5.0
BARGE_TRIALS = 200
BARGE_TRIALS_QUICK = 50
# Without a `waiting` attribute there is no way to see that W is queued;
# this long after W starts, it is taken to be blocked in acquire().
BARGE_SETTLE_SECONDS = 0.005
# Percentiles are exact up to this many wait samples, and taken from an
# evenly strided subsample beyond it (the max is always exact).
PERCENTILE_SAMPLES = 250_000
# A thread that has not come back this long after the stop flag is hung.
JOIN_TIMEOUT = 30.0


@dataclass(frozen=True)
class Contender:
    """One semaphore-like type under test.

    `make(value)` returns a fresh object with acquire()/release(). `is_lock`
    marks a plain lock: value 1 only and no fairness promise, shown for
    reference (what the interpreter's own lock costs).
    """

    name: str
    make: Callable[[int], Any]
    is_lock: bool = False
    fair: bool | None = None  # None: makes no promise either way


def _make_lock(value: int) -> Any:
    if value != 1:
        raise ValueError("a lock has value 1 only")
    return _thread.allocate_lock()


def contenders() -> list[Contender]:
    """The contenders, fastsem's first; the C ones only if the build imports
    (and FASTSEM_NO_EXTENSIONS is not set)."""
    from . import _pyfastsem

    found: list[Contender] = []
    try:
        if os.environ.get("FASTSEM_NO_EXTENSIONS"):
            raise ImportError("FASTSEM_NO_EXTENSIONS is set")
        from . import _cfastsem
    except ImportError:
        pass
    else:
        found.append(Contender("fastsem", lambda v: _cfastsem.Semaphore(v, fair=True), fair=True))
        found.append(
            Contender(
                "fastsem (non-fair)", lambda v: _cfastsem.Semaphore(v, fair=False), fair=False
            )
        )
    found.append(
        Contender("fastsem (pure Python)", lambda v: _pyfastsem.Semaphore(v, fair=True), fair=True)
    )
    found.append(Contender("threading.Semaphore", threading.Semaphore))
    found.append(Contender("_thread.lock", _make_lock, is_lock=True))
    return found


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
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "fastsem_version": __version__,
        "fastsem_implementation": IMPLEMENTATION,
    }


# --------------------------------------------------------------------------
# Uncontended


def _time_pairs(acquire: Callable[[], Any], release: Callable[[], Any], number: int) -> int:
    """ns for `number` acquire(); release() pairs."""
    it = itertools.repeat(None, number)
    clock = time.perf_counter_ns
    t0 = clock()
    for _ in it:
        acquire()
        release()
    return clock() - t0


def measure_uncontended(c: Contender, *, quick: bool = False) -> dict[str, Any]:
    """Best-of-repeats ns per acquire/release pair, in one thread."""
    sem = c.make(1)
    acquire, release = sem.acquire, sem.release
    min_ns = 20_000_000 if quick else 100_000_000  # per repeat
    repeats = 3 if quick else 5
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        # Calibrate as timeit.autorange does: grow until a run is long enough.
        number = 1000
        while True:
            elapsed = _time_pairs(acquire, release, number)
            if elapsed >= min_ns:
                break
            number = max(number * 2, int(number * min_ns * 1.2 / max(elapsed, 1)))
        runs = [elapsed] + [_time_pairs(acquire, release, number) for _ in range(repeats - 1)]
    finally:
        if gc_was_enabled:
            gc.enable()
    best = min(runs)
    return {
        "ns_per_pair": best / number,
        "ns_per_pair_median": sorted(runs)[len(runs) // 2] / number,
        "number": number,
        "repeats": repeats,
    }


# --------------------------------------------------------------------------
# Contended


def _percentile(sorted_values: Any, p: float) -> int:
    """Nearest-rank percentile of an ascending sequence."""
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


def measure_contended(
    c: Contender,
    *,
    threads: int = THREADS,
    seconds: float = CONTENDED_SECONDS,
    warmup: float = CONTENDED_WARMUP,
) -> dict[str, Any]:
    """`threads` threads loop acquire / critical section / release on value 1;
    the figures cover `seconds` of it, `warmup` seconds after the last thread
    came through the start gate."""
    sem = c.make(1)
    gate = threading.Event()
    running = [True]
    inside = [0]  # threads between acquire() and release(); must stay <= 1
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

    window_s = (t_end - t_begin) / 1e9
    counts = [e - b for b, e in zip(begin, end)]
    total = sum(counts)
    all_acquisitions = sum(len(w) for w in waits)
    in_window = array("q")
    for w, b, e in zip(waits, begin, end):
        in_window.extend(w[b:e])
    del waits
    n_samples = len(in_window)
    max_wait = max(in_window) if n_samples else None
    stride = max(1, -(-n_samples // PERCENTILE_SAMPLES))
    ordered = sorted(in_window[::stride])
    del in_window
    lowest, highest = min(counts), max(counts)
    return {
        "threads": threads,
        "all_started": all_started,
        "start_spread_ms": ((max(through_gate) - t_gate) / 1e6 if all_started else None),
        "warmup_s": warmup,
        "seconds": window_s,
        "acquisitions": total,
        "ops_per_s": total / window_s if window_s > 0 else None,
        "per_thread_counts": counts,
        "jain": jain_index(counts),
        "max_min_ratio": highest / lowest if lowest else None,
        "starved_threads": sum(1 for x in counts if x == 0),
        "wait_ns": {
            "p50": _percentile(ordered, 50) if ordered else None,
            "p99": _percentile(ordered, 99) if ordered else None,
            "max": max_wait,
        },
        "percentile_stride": stride,
        "exclusion_violations": violations[0],
        "shared_counter_ok": shared[0] == 2 * all_acquisitions,
    }


# --------------------------------------------------------------------------
# Barging


def _wait_queued(sem: Any, waiter_started: threading.Event) -> None:
    """Returns once the waiter thread is (taken to be) blocked in acquire()."""
    if not waiter_started.wait(10.0):
        raise RuntimeError("the waiter thread did not start")
    if hasattr(sem, "waiting"):
        deadline = time.monotonic() + 10.0
        while sem.waiting < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the waiter never queued")
            time.sleep(0.0001)
    else:
        time.sleep(BARGE_SETTLE_SECONDS)


def measure_barging(c: Contender, *, trials: int = BARGE_TRIALS) -> dict[str, Any]:
    """Counts trials where release(); acquire(blocking=False) took the permit
    back from under a thread already queued in acquire()."""
    barges = 0
    for _ in range(trials):
        sem = c.make(1)
        sem.acquire()
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
            _wait_queued(sem, started)
            sem.release()
            got = sem.acquire(blocking=False)
            if got:
                barges += 1
                sem.release()  # now W proceeds
        finally:
            w.join(10.0)
        if w.is_alive():
            raise RuntimeError(f"{c.name}: the queued waiter never got the permit")
        if errors:
            raise RuntimeError(f"{c.name}: the waiter failed: {errors[0]!r}") from errors[0]
    return {"barges": barges, "trials": trials}


# --------------------------------------------------------------------------


def run(quick: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Runs every workload on every contender; returns a JSON-serialisable dict.

    `progress`, if given, is called with a short line before each step.
    """
    seconds = CONTENDED_SECONDS_QUICK if quick else CONTENDED_SECONDS
    warmup = CONTENDED_WARMUP_QUICK if quick else CONTENDED_WARMUP
    trials = BARGE_TRIALS_QUICK if quick else BARGE_TRIALS
    found = contenders()
    results: list[dict[str, Any]] = [
        {"name": c.name, "is_lock": c.is_lock, "fair": c.fair} for c in found
    ]
    steps: list[tuple[str, Callable[[Contender], dict[str, Any]]]] = [
        ("uncontended", lambda c: measure_uncontended(c, quick=quick)),
        ("contended", lambda c: measure_contended(c, seconds=seconds, warmup=warmup)),
        ("barging", lambda c: measure_barging(c, trials=trials)),
    ]
    total = len(steps) * len(found)
    done = 0
    t0 = time.perf_counter()
    for workload, measure in steps:
        for c, row in zip(found, results):
            done += 1
            if progress is not None:
                progress(f"[{done}/{total}] {workload}: {c.name}")
            row[workload] = measure(c)
            gc.collect()
    return {
        "machine": machine_info(),
        "settings": {
            "quick": quick,
            "threads": THREADS,
            "contended_seconds": seconds,
            "contended_warmup_seconds": warmup,
            "barge_trials": trials,
            "baseline": "threading.Semaphore",
        },
        "contenders": results,
        "total_seconds": time.perf_counter() - t0,
    }
