"""Async semaphores side by side: fastsem's async API against the others.

    python bench/async_bench.py [--quick] [--json FILE]

Sets fastsem.Semaphore's async API (the compiled one, and the pure-Python
twin for reference) beside asyncio.Semaphore, aiologic's Semaphore (the one
other semaphore that threads and tasks share) and anyio's CapacityLimiter,
on asyncio's default event loop. aiologic and anyio come with the ``bench``
extra; without one, its column is left out and a note says so. A workload a
peer cannot run shows as "-": asyncio's and anyio's objects belong to one
loop, so threads cannot use them, and a CapacityLimiter's tokens are
borrowed and given back by one task, so it has no semaphore at value 0 to
hand back and forth.

The workloads, each on every peer that can run it, in one run:

async with
    ns per ``async with sem: pass`` in one task, uncontended: the best of
    several timed loops, the peers' loops interleaved round by round. Beside
    it, for reference, the same peers' plain ``with sem: pass`` in a thread.
task-to-task handoff
    Ping-pong between two tasks of one loop on two semaphores at value 0:
    each releases the other's and waits on its own, so a round trip is two
    handoffs. ns per handoff, the median of repeats.
thread-to-task and task-to-thread handoff
    The same ping-pong between a task and a plain thread. Each side stamps
    (time.perf_counter_ns, one clock for every thread) just before it
    releases and just after its acquire returns, so each handoff is timed on
    its own: from the release by one side to the return of the other's
    acquire. The median and p99 of every handoff of the repeats.
64 tasks + 4 threads, value 4
    64 tasks of one loop and 4 threads loop acquire / hold / release for a
    fixed window: a task holds its permit across one pass of its loop
    (``await asyncio.sleep(0)``), a thread spins a few microseconds. Every
    acquire is timed from the call to the return. Figures over the grants of
    the window after a warm-up: throughput, Jain's index of the 68 workers'
    counts, the wait (p99, max) of tasks and of threads, and how many held a
    permit at once at most (4 for a correct semaphore).
FIFO across tasks and threads
    The 4 permits held, 16 waiters (32 in the default run) queue one by one,
    tasks and threads alternating, each only once the previous is seen
    queued; then the permits come back one at a time, each once the previous
    grantee has logged itself. How many grants went to the oldest waiter
    still waiting.

Prints one table, a column per peer, each figure with its ratio to the peer
the goal names (asyncio.Semaphore or aiologic), then fastsem's async goals
(the ones bench/goals.py judges) and whether they are met; ``--json FILE``
writes every figure. Progress goes to stderr.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import statistics
import sys
import threading
import time
from array import array
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Callable

import report

from fastsem import _compare, _impl, _pyfastsem

FASTSEM = "fastsem.Semaphore"
FASTSEM_PURE = "fastsem.Semaphore (pure Python)"
ASYNCIO = "asyncio.Semaphore"
AIOLOGIC = "aiologic.Semaphore"
ANYIO = "anyio.CapacityLimiter"
TOOL = "bench/async_bench.py"  # what the JSON says it comes from (goals.py reads it)

# The contended configuration, the same in every plan (goals.py names it).
TASKS, THREADS, VALUE = 64, 4, 4
CONTENDED = f"{TASKS} tasks + {THREADS} threads, value {VALUE}"
PATIENCE = 30.0  # how long anything that should take milliseconds may take


# --------------------------------------------------------------------------
# The peers


@dataclass
class Peer:
    """One semaphore type under test.

    `make(value)` returns a new one; it is called inside the running loop
    (asyncio's and anyio's objects belong to it). `acquire(sem)` is the
    awaitable a task waits on; `thread_acquire(sem)` blocks a plain thread
    (None: threads cannot use it); `handoff`: it can start at 0 and be
    released by anyone, so the ping-pongs run on it. `queued(sem)` says how
    many wait (tasks and threads). `sync_with`: a thread may use it in a
    plain ``with`` block.
    """

    name: str
    header: str  # the column heading; "\\n" between its two lines
    make: Callable[[int], Any]
    acquire: Callable[[Any], Awaitable[Any]]
    thread_acquire: Callable[[Any], Any] | None = None
    handoff: bool = True
    queued: Callable[[Any], int] | None = None
    sync_with: bool = False


def _fastsem_peer(name: str, header: str, module: Any) -> Peer | str:
    """fastsem's Semaphore of `module`, or why it cannot run here."""
    if module is None:
        return "the compiled module is not in use (FASTSEM_NO_EXTENSIONS, or no build)"
    return Peer(
        name,
        header,
        module.Semaphore,
        lambda sem: sem.async_acquire(),
        thread_acquire=lambda sem: sem.acquire(),
        queued=lambda sem: int(sem.waiting),
        sync_with=True,
    )


def _aiologic_peer() -> Peer | str:
    try:
        import aiologic
    except ImportError:
        return "not installed (pip install aiologic)"
    return Peer(
        AIOLOGIC,
        "aiologic\n",
        aiologic.Semaphore,
        lambda sem: sem.async_acquire(),
        thread_acquire=lambda sem: sem.green_acquire(),
        queued=lambda sem: int(sem.waiting),
        sync_with=True,
    )


def _anyio_peer() -> Peer | str:
    try:
        import anyio
    except ImportError:
        return "not installed (pip install anyio)"
    return Peer(ANYIO, "anyio\nCapacityLimiter", anyio.CapacityLimiter,
                lambda sem: sem.acquire(), handoff=False)  # fmt: skip


def peers() -> tuple[list[Peer], dict[str, str]]:
    """The peers that work here, and {name: why not} for those left out."""
    found: list[Peer] = []
    missing: dict[str, str] = {}
    candidates: list[tuple[str, Peer | str]] = [
        (FASTSEM, _fastsem_peer(FASTSEM, "fastsem\n", _impl.c_module)),
        (FASTSEM_PURE, _fastsem_peer(FASTSEM_PURE, "fastsem\npure Python", _pyfastsem)),
        (ASYNCIO, Peer(ASYNCIO, "asyncio\n", asyncio.Semaphore, lambda sem: sem.acquire())),
        (AIOLOGIC, _aiologic_peer()),
        (ANYIO, _anyio_peer()),
    ]
    for name, peer in candidates:
        if isinstance(peer, str):
            missing[name] = peer
        else:
            found.append(peer)
    return found, missing


# --------------------------------------------------------------------------
# How much a run measures


@dataclass(frozen=True)
class Plan:
    mode: str
    loop_seconds: float  # the shortest timed loop, uncontended
    loop_repeats: int
    handoff_seconds: float  # the shortest timed task-to-task run
    handoff_repeats: int
    thread_rounds: int  # round trips of a thread-task run, after the warm-up
    thread_repeats: int
    contended_seconds: float  # the window, per peer
    warmup: float  # before the window
    hold_ns: int  # how long a thread holds its permit (spinning)
    fifo_waiters: int


# "smoke" proves that everything runs (bench/test_async_bench.py): its
# figures mean nothing.
# fmt: off
PLANS = {p.mode: p for p in [
    Plan("smoke",   0.002, 2, 0.005, 1,   200, 1, 0.05, 0.02, 2_000,  8),
    Plan("quick",   0.02,  3, 0.03,  3,  2_000, 3, 0.5,  0.1,  2_000, 16),
    Plan("default", 0.1,   5, 0.1,   7, 10_000, 5, 2.0,  0.2,  2_000, 32),
]}
# fmt: on
THREAD_WARMUP = 50  # round trips before the stamps count


# --------------------------------------------------------------------------
# Results


@dataclass
class Handoff:
    ns: float  # per handoff, the median of the repeats
    ns_runs: list[float]


@dataclass
class OneWay:
    ns: float  # the median of every handoff in that direction
    p99_ns: float
    samples: int


@dataclass
class ThreadHandoff:
    thread_to_task: OneWay
    task_to_thread: OneWay
    round_trip_ns: float  # the median of the repeats' mean round trips


@dataclass
class Contended:
    tasks: int
    threads: int
    value: int
    seconds: float  # the window
    acquisitions: int  # in the window
    ops_per_s: float | None
    jain: float | None  # of the counts of all the workers, tasks and threads
    jain_tasks: float | None  # of the tasks' counts only
    jain_threads: float | None  # of the threads' counts only
    per_task_mean: float | None  # grants per task in the window
    per_thread_mean: float | None
    task_wait_p50_ns: int | None
    task_wait_p99_ns: int | None
    task_wait_max_ns: int | None
    thread_wait_p50_ns: int | None
    thread_wait_p99_ns: int | None
    thread_wait_max_ns: int | None
    wait_p99_ns: int | None  # tasks and threads together
    wait_max_ns: int | None
    max_holders: int  # the most permits held at once: never more than value
    per_worker_counts: list[int]  # the tasks', then the threads'


@dataclass
class Fifo:
    grants: int
    in_order: int  # grants to the oldest waiter still waiting
    order: list[int]  # the arrival numbers in grant order (even: tasks)


@dataclass
class Row:
    name: str
    header: str  # the column heading, "\\n" between its two lines
    async_with_ns: float | None = None
    sync_with_ns: float | None = None  # plain `with sem: pass` in a thread
    task_handoff: Handoff | None = None
    thread_handoff: ThreadHandoff | None = None
    contended: Contended | None = None
    fifo: Fifo | None = None


@dataclass
class Run:
    """One run: dataclasses.asdict() of it is what --json writes."""

    tool: str
    machine: dict[str, Any]
    plan: Plan
    contenders: list[Row]
    skipped: dict[str, str]  # peer: why it is not in the run
    goals: list[report.GoalResult]
    total_seconds: float
    noise: dict[str, float | None]
    # What any thread-to-task handoff costs here at least: a thread, awake,
    # resolves a waiting task's future through loop.call_soon_threadsafe,
    # which must wake the loop's thread from its poll, and the task resumes.
    floor: OneWay | None = None


# --------------------------------------------------------------------------
# Uncontended


async def _async_with_loop(sem: Any, number: int) -> float:
    t0 = time.perf_counter()
    for _ in itertools.repeat(None, number):
        async with sem:
            pass
    return time.perf_counter() - t0


def measure_uncontended(
    loop: asyncio.AbstractEventLoop, found: list[Peer], plan: Plan
) -> tuple[list[float | None], list[float | None]]:
    """ns per `async with sem: pass` of each peer, and per plain `with sem:
    pass` of those a thread can use that way; every loop interleaved with
    the others, gc off (as timeit)."""
    sems = [loop.run_until_complete(_made(p, 1)) for p in found]
    timers: list[Callable[[int], float] | None] = [
        (lambda n, s=s: loop.run_until_complete(_async_with_loop(s, n))) for s in sems
    ]
    timers += [
        (lambda n, s=s: _compare.with_loop(s, n)) if p.sync_with else None
        for p, s in zip(found, sems)
    ]
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        figures = _compare.time_runs(
            timers, min_seconds=plan.loop_seconds, repeats=plan.loop_repeats
        )
    finally:
        if gc_was_on:
            gc.enable()
    return figures[: len(found)], figures[len(found) :]


async def _made(peer: Peer, value: int) -> Any:
    return peer.make(value)


# --------------------------------------------------------------------------
# Task-to-task handoff


async def _task_handoff(peer: Peer, round_trips: int) -> float:
    """Seconds of `round_trips` handoffs (half the time of as many round
    trips) between two tasks of this loop."""
    mine, theirs = peer.make(0), peer.make(0)
    acquire = peer.acquire
    elapsed: list[int] = []

    async def pinger() -> None:
        t0 = time.perf_counter_ns()
        for _ in itertools.repeat(None, round_trips):
            theirs.release()
            await acquire(mine)
        elapsed.append(time.perf_counter_ns() - t0)

    async def ponger() -> None:
        t0 = time.perf_counter_ns()
        for _ in itertools.repeat(None, round_trips):
            await acquire(theirs)
            mine.release()
        elapsed.append(time.perf_counter_ns() - t0)

    both = asyncio.gather(ponger(), pinger())
    await asyncio.wait_for(both, PATIENCE)
    return max(elapsed) / 2e9


def measure_task_handoff(
    loop: asyncio.AbstractEventLoop, found: list[Peer], plan: Plan
) -> list[Handoff | None]:
    """ns per handoff between two tasks: the median of the repeats."""
    runs: list[list[float]] = [[] for _ in found]

    def timer(i: int, peer: Peer) -> Callable[[int], float]:
        def run(number: int) -> float:
            seconds = loop.run_until_complete(_task_handoff(peer, number))
            runs[i].append(seconds * 1e9 / number)
            return seconds

        return run

    timers: list[Callable[[int], float] | None] = [
        timer(i, p) if p.handoff else None for i, p in enumerate(found)
    ]
    figures = _compare.time_runs(
        timers, min_seconds=plan.handoff_seconds, repeats=plan.handoff_repeats,
        figure=statistics.median,
    )  # fmt: skip
    return [
        None if ns is None else Handoff(ns, runs[i][-plan.handoff_repeats :])
        for i, ns in enumerate(figures)
    ]


# --------------------------------------------------------------------------
# Thread-to-task and task-to-thread handoff


async def _thread_handoff(peer: Peer, rounds: int) -> tuple[array[int], array[int], float]:
    """One ping-pong of `rounds` round trips (after a warm-up) between this
    task and a plain thread: the thread-to-task handoffs (ns), the
    task-to-thread ones, and the mean round trip (ns)."""
    assert peer.thread_acquire is not None
    ping, pong = peer.make(0), peer.make(0)  # the task waits on ping, the thread on pong
    total = THREAD_WARMUP + rounds
    clock = time.perf_counter_ns
    task_released, task_got = array("q", [0]) * total, array("q", [0]) * total
    thread_released, thread_got = array("q", [0]) * total, array("q", [0]) * total
    errors: list[BaseException] = []
    thread_acquire = peer.thread_acquire

    def thread_side() -> None:
        try:
            for i in range(total):
                thread_acquire(pong)
                thread_got[i] = clock()
                thread_released[i] = clock()
                ping.release()
        except BaseException as exc:  # reported by the task side, which it wakes
            errors.append(exc)
            ping.release()

    thread = threading.Thread(target=thread_side, daemon=True)
    thread.start()
    acquire = peer.acquire
    t0 = 0
    try:
        for i in range(total):
            if i == THREAD_WARMUP:
                t0 = clock()
            task_released[i] = clock()
            pong.release()
            await acquire(ping)
            task_got[i] = clock()
            if errors:
                break
        elapsed = clock() - t0
    finally:
        thread.join(PATIENCE)
    if errors or thread.is_alive():
        raise RuntimeError(f"{peer.name}: the thread side failed: {errors[:1]!r}")
    to_task = array("q", (task_got[i] - thread_released[i] for i in range(THREAD_WARMUP, total)))
    to_thread = array("q", (thread_got[i] - task_released[i] for i in range(THREAD_WARMUP, total)))
    return to_task, to_thread, elapsed / rounds


def _one_way(samples: array[int]) -> OneWay:
    ordered = sorted(samples)
    median, p99 = (float(report.percentile(ordered, p)) for p in (50, 99))
    return OneWay(median, p99, len(ordered))


async def _wake_floor(rounds: int) -> array[int]:
    """The floor of a thread-to-task handoff: a thread resolves the task's
    future with loop.call_soon_threadsafe, and the task resumes (ns, each
    round trip's thread-to-task half). The thread waits for its turn awake,
    looking at a flag between sleep(0)s (which let go of the GIL), as a
    semaphore's waiter that spins before it sleeps would: a thread that
    slept would add the wake-up of an idle CPU that no semaphore here pays."""
    loop = asyncio.get_running_loop()
    turn = [False]
    box: list[Any] = [None, 0]
    clock = time.perf_counter_ns
    total = THREAD_WARMUP + rounds
    samples = array("q", [0]) * total
    stop = [False]

    def thread_side() -> None:
        for _ in range(total):
            while not turn[0]:
                if stop[0]:
                    return
                time.sleep(0)
            turn[0] = False
            future = box[0]
            box[1] = clock()
            loop.call_soon_threadsafe(future.set_result, None)

    thread = threading.Thread(target=thread_side, daemon=True)
    thread.start()
    try:
        for i in range(total):
            box[0] = loop.create_future()
            turn[0] = True
            await asyncio.wait_for(box[0], PATIENCE)
            samples[i] = clock() - box[1]
    finally:
        stop[0] = True
        thread.join(PATIENCE)
    return samples[THREAD_WARMUP:]


def measure_thread_handoff(
    loop: asyncio.AbstractEventLoop, found: list[Peer], plan: Plan, say: Callable[[str], None]
) -> list[ThreadHandoff | None]:
    """Both directions of each peer that threads can use, the peers' runs
    interleaved repeat by repeat."""
    able = [p.thread_acquire is not None and p.handoff for p in found]
    to_task: list[array[int]] = [array("q") for _ in found]
    to_thread: list[array[int]] = [array("q") for _ in found]
    round_trips: list[list[float]] = [[] for _ in found]
    for r in range(plan.thread_repeats):
        for i, peer in enumerate(found):
            if not able[i]:
                continue
            say(f"thread <-> task handoff, {peer.name} ({r + 1}/{plan.thread_repeats})")
            a, b, rt = loop.run_until_complete(_thread_handoff(peer, plan.thread_rounds))
            to_task[i].extend(a)
            to_thread[i].extend(b)
            round_trips[i].append(rt)
    return [
        ThreadHandoff(_one_way(to_task[i]), _one_way(to_thread[i]),
                      statistics.median(round_trips[i]))
        if able[i] else None
        for i in range(len(found))
    ]  # fmt: skip


# --------------------------------------------------------------------------
# 64 tasks + 4 threads on value 4


@dataclass
class _Stamps:
    called: array[int] = field(default_factory=lambda: array("q"))
    granted: array[int] = field(default_factory=lambda: array("q"))


def _waits(stamps: list[_Stamps], begin: int, end: int) -> tuple[list[int], list[int]]:
    """Per worker, the grants whose acquire returned in [begin, end); and
    every wait of those grants, sorted."""
    counts, waits = [], []
    for s in stamps:
        n = 0
        for called, granted in zip(s.called, s.granted):
            if begin <= granted < end:
                n += 1
                waits.append(granted - called)
        counts.append(n)
    waits.sort()
    return counts, waits


def analyse(
    tasks: list[_Stamps], threads: list[_Stamps], begin: int, end: int, max_holders: int
) -> Contended:
    """The figures of a contended window [begin, end) (perf_counter_ns)."""
    task_counts, task_waits = _waits(tasks, begin, end)
    thread_counts, thread_waits = _waits(threads, begin, end)
    counts = task_counts + thread_counts
    total = sum(counts)
    both = sorted(task_waits + thread_waits)
    seconds = (end - begin) / 1e9

    def pct(ws: list[int], p: float) -> int | None:
        return report.percentile(ws, p) if ws else None

    return Contended(
        tasks=len(tasks),
        threads=len(threads),
        value=VALUE,
        seconds=seconds,
        acquisitions=total,
        ops_per_s=total / seconds if seconds > 0 else None,
        jain=_compare.jain_index(counts),
        jain_tasks=_compare.jain_index(task_counts) if task_counts else None,
        jain_threads=_compare.jain_index(thread_counts) if thread_counts else None,
        per_task_mean=sum(task_counts) / len(task_counts) if task_counts else None,
        per_thread_mean=sum(thread_counts) / len(thread_counts) if thread_counts else None,
        task_wait_p50_ns=pct(task_waits, 50),
        task_wait_p99_ns=pct(task_waits, 99),
        task_wait_max_ns=task_waits[-1] if task_waits else None,
        thread_wait_p50_ns=pct(thread_waits, 50),
        thread_wait_p99_ns=pct(thread_waits, 99),
        thread_wait_max_ns=thread_waits[-1] if thread_waits else None,
        wait_p99_ns=pct(both, 99),
        wait_max_ns=both[-1] if both else None,
        max_holders=max_holders,
        per_worker_counts=counts,
    )


async def _contended(peer: Peer, plan: Plan) -> Contended:
    assert peer.thread_acquire is not None
    sem = peer.make(VALUE)
    acquire, thread_acquire, clock = peer.acquire, peer.thread_acquire, time.perf_counter_ns
    running = [True]
    # The holders now and at most: a lock guards the count, since tasks
    # and threads change it from several threads.
    holders, most, guard = [0], [0], threading.Lock()
    errors: list[BaseException] = []
    task_stamps = [_Stamps() for _ in range(TASKS)]
    thread_stamps = [_Stamps() for _ in range(THREADS)]

    def enter() -> None:
        with guard:
            holders[0] += 1
            if holders[0] > most[0]:
                most[0] = holders[0]

    def leave() -> None:
        with guard:
            holders[0] -= 1

    async def task_worker(s: _Stamps) -> None:
        called, granted = s.called.append, s.granted.append
        while running[0]:
            t0 = clock()
            await acquire(sem)
            t1 = clock()
            enter()
            await asyncio.sleep(0)  # hold the permit across one pass of the loop
            leave()
            sem.release()
            called(t0)
            granted(t1)

    def thread_worker(s: _Stamps) -> None:
        called, granted, hold = s.called.append, s.granted.append, plan.hold_ns
        try:
            while running[0]:
                t0 = clock()
                thread_acquire(sem)
                t1 = clock()
                enter()
                while clock() - t1 < hold:
                    pass
                leave()
                sem.release()
                called(t0)
                granted(t1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread_worker, args=(s,), daemon=True)
               for s in thread_stamps]  # fmt: skip
    tasks = [asyncio.ensure_future(task_worker(s)) for s in task_stamps]
    for t in threads:
        t.start()
    try:
        await asyncio.sleep(plan.warmup)
        begin = clock()
        await asyncio.sleep(plan.contended_seconds)
        end = clock()
    finally:
        running[0] = False
        # Each worker leaves after its next grant; every grant is released.
        await asyncio.wait_for(asyncio.gather(*tasks), PATIENCE)
        for t in threads:
            t.join(PATIENCE)
    if errors or any(t.is_alive() for t in threads):
        raise RuntimeError(f"{peer.name}: a thread failed or hung: {errors[:1]!r}")
    return analyse(task_stamps, thread_stamps, begin, end, most[0])


# --------------------------------------------------------------------------
# FIFO across tasks and threads


async def _fifo(peer: Peer, waiters: int) -> Fifo:
    """Even arrival numbers are tasks, odd ones threads."""
    assert peer.thread_acquire is not None and peer.queued is not None
    sem, queued, thread_acquire = peer.make(VALUE), peer.queued, peer.thread_acquire
    for _ in range(VALUE):
        await peer.acquire(sem)
    log: list[int] = []  # list.append is atomic

    async def task(i: int) -> None:
        await peer.acquire(sem)
        log.append(i)

    def thread(i: int) -> None:
        thread_acquire(sem)
        log.append(i)

    async def until(predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + PATIENCE
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{peer.name}: {what} never happened")
            await asyncio.sleep(0.0002)

    tasks, threads = [], []
    try:
        for i in range(waiters):
            if i % 2:
                threads.append(threading.Thread(target=thread, args=(i,), daemon=True))
                threads[-1].start()
            else:
                tasks.append(asyncio.ensure_future(task(i)))
            await until(lambda i=i: queued(sem) == i + 1, f"waiter {i} queued")
        for k in range(waiters):
            sem.release()
            await until(lambda k=k: len(log) == k + 1, f"grant {k}")
    finally:
        for _ in range(waiters - len(log)):
            sem.release()  # whoever still waits goes
        await asyncio.wait_for(asyncio.gather(*tasks), PATIENCE)
        for t in threads:
            t.join(PATIENCE)
    return Fifo(len(log), in_order(log), log)


def in_order(log: list[int]) -> int:
    """How many grants of `log` (arrival numbers, in grant order) went to the
    oldest waiter still waiting (bench/workloads.py's measure: a waiter
    served ahead of an older one costs one grant, not all those after it)."""
    waiting, count = sorted(log), 0
    for who in log:
        count += who == waiting[0]
        waiting.remove(who)
    return count


# --------------------------------------------------------------------------
# The goals: bench/goals.py's, judged on this run


def judge(rows: list[Row]) -> list[report.GoalResult]:
    import goals  # here: goals.py imports this module for its names

    figures = goals.figures_of({"tool": TOOL, "contenders": [dataclasses.asdict(r) for r in rows]})
    found = []
    for goal in goals.ASYNC_GOALS:
        v = goals.judge(goal, [("this run", figures)])
        found.append(report.GoalResult(goal.id, goal.what, v.ratio, goal.op, goal.target, goal.unit,
                                v.met))  # fmt: skip
    return found


# --------------------------------------------------------------------------
# The run


def run(plan: Plan, progress: report.Say = None) -> Run:
    found, skipped = peers()
    rows = [Row(p.name, p.header) for p in found]
    crossing = [p for p in found if p.thread_acquire is not None]
    total = 3 + plan.thread_repeats * len(crossing) + 2 * len(crossing)
    say = report.steps(total, progress)
    t0 = time.perf_counter()
    noise = report.Noise()
    loop = asyncio.new_event_loop()
    try:
        say("uncontended: async with, and with for reference")
        async_with, sync_with = measure_uncontended(loop, found, plan)
        for row, a, s in zip(rows, async_with, sync_with):
            row.async_with_ns, row.sync_with_ns = a, s
        say("task-to-task handoff")
        for row, h in zip(rows, measure_task_handoff(loop, found, plan)):
            row.task_handoff = h
        for row, th in zip(rows, measure_thread_handoff(loop, found, plan, say)):
            row.thread_handoff = th
        say("the floor: a task woken by call_soon_threadsafe")
        floor = array("q")
        for _ in range(plan.thread_repeats):
            floor.extend(loop.run_until_complete(_wake_floor(plan.thread_rounds)))
        wake_floor = _one_way(floor)
        for p, row in zip(found, rows):
            if p.thread_acquire is None:
                continue
            say(f"{CONTENDED}: {p.name}")
            row.contended = loop.run_until_complete(_contended(p, plan))
            gc.collect()
            say(f"FIFO across tasks and threads: {p.name}")
            row.fifo = loop.run_until_complete(_fifo(p, plan.fifo_waiters))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return Run(
        tool=TOOL,
        machine=_compare.machine_info(),
        plan=plan,
        contenders=rows,
        skipped=skipped,
        goals=judge(rows),
        total_seconds=time.perf_counter() - t0,
        noise=noise.read(),
        floor=wake_floor,
    )


# --------------------------------------------------------------------------
# The table


def table_lines(run: Run) -> list[list[str]]:
    """The table's rows: a figure per row, a peer per column."""
    rows = run.contenders
    by_name = {r.name: r for r in rows}
    lines: list[list[str]] = []

    def line(label: str, cell: Callable[[Row], str]) -> None:
        lines.append([label, *(cell(r) for r in rows)])

    def versus(base_name: str, figure: Callable[[Row], float | None]) -> None:
        base = by_name.get(base_name)
        short = base_name.split(".")[0]

        def cell(r: Row) -> str:
            if r is base:
                return "1 (base)" if figure(r) is not None else "-"
            return report.times(report.ratio(figure(r), figure(base) if base else None))

        line(f"  x {short}", cell)

    def handoff(r: Row) -> float | None:
        return r.task_handoff.ns if r.task_handoff else None

    def one_way(direction: str, field: str) -> Callable[[Row], float | None]:
        def figure(r: Row) -> float | None:
            th = r.thread_handoff
            return getattr(getattr(th, direction), field) if th else None

        return figure

    def con(field: str) -> Callable[[Row], Any]:
        return lambda r: getattr(r.contended, field) if r.contended else None

    line("async with sem: pass, ns", lambda r: report.ns(r.async_with_ns))
    versus(ASYNCIO, lambda r: r.async_with_ns)
    line("with sem: pass (a thread), ns", lambda r: report.ns(r.sync_with_ns))
    line("task-to-task handoff, us", lambda r: report.us(handoff(r)))
    versus(ASYNCIO, handoff)
    for direction, label in (("thread_to_task", "thread-to-task"),
                             ("task_to_thread", "task-to-thread")):  # fmt: skip
        median, p99 = one_way(direction, "ns"), one_way(direction, "p99_ns")
        line(f"{label} handoff, us", lambda r, f=median: report.us(f(r)))
        versus(AIOLOGIC, median)
        line("  p99 us", lambda r, f=p99: report.us(f(r)))
    lines.append([CONTENDED, *("" for _ in rows)])
    line("  ops/s", lambda r: report.fixed(con("ops_per_s")(r), 0))
    line("  Jain", lambda r: report.fixed(con("jain")(r), 3))
    line("    of the tasks", lambda r: report.fixed(con("jain_tasks")(r), 3))
    line("    of the threads", lambda r: report.fixed(con("jain_threads")(r), 3))
    line("  grants per task", lambda r: report.fixed(con("per_task_mean")(r), 1))
    line("  grants per thread", lambda r: report.fixed(con("per_thread_mean")(r), 1))
    for kind in ("task", "thread"):
        p99, most = con(f"{kind}_wait_p99_ns"), con(f"{kind}_wait_max_ns")
        line(f"  {kind}s' p99 wait ms", lambda r, f=p99: report.ms(f(r)))
        versus(AIOLOGIC, p99)
        line(f"  {kind}s' max wait ms", lambda r, f=most: report.ms(f(r)))
        versus(AIOLOGIC, most)
    line("  most holders at once", lambda r: "-" if r.contended is None
         else str(r.contended.max_holders))  # fmt: skip
    line("FIFO across tasks and threads", lambda r: "-" if r.fifo is None
         else f"{r.fifo.in_order}/{r.fifo.grants}")  # fmt: skip
    return lines


def headline(run: Run) -> str:
    m = run.machine
    cpu = f"{m['cpu_count']} CPUs"
    gil = "" if m.get("gil_enabled", True) else ", GIL off"
    return (
        f"Async semaphores: fastsem {m['fastsem_version']} on {m['python_implementation']} "
        f"{m['python_version']}{gil}, {m['platform']} ({cpu}); asyncio's default loop; "
        f"{run.plan.mode} run, {run.total_seconds:.0f} s"
    )


def footnote(run: Run) -> str:
    p = run.plan
    return "\n".join(
        [
            f"async with: one task, uncontended, best of {p.loop_repeats} timed loops; "
            "with: the same object in a plain with block, for reference.",
            "task-to-task handoff: one handoff of a ping-pong of two tasks on two "
            f"semaphores at value 0 (median of {p.handoff_repeats} runs).",
            "thread-to-task / task-to-thread: the same ping-pong between a task and a "
            "thread, each handoff timed from the release to the other side's return, "
            f"median and p99 of {p.thread_repeats} x {p.thread_rounds:,} handoffs.",
            *(
                []
                if run.floor is None
                else [
                    "the floor of a thread-to-task handoff here (no semaphore: a thread, "
                    "awake, resolves a task's future with loop.call_soon_threadsafe, which "
                    f"wakes the loop's thread): median {run.floor.ns / 1e3:.1f} us, p99 "
                    f"{run.floor.p99_ns / 1e3:.1f} us."
                ]
            ),
            f"{CONTENDED}: tasks hold across one pass of the loop, threads spin "
            f"{p.hold_ns / 1e3:g} us; {p.contended_seconds:g} s measured after "
            f"{p.warmup:g} s; Jain's index of all {TASKS + THREADS} workers' grants, "
            "then of each kind's.",
            f"FIFO: {p.fifo_waiters} waiters, tasks and threads alternating, queued one "
            "by one; grants in arrival order, of all.",
            "x asyncio / x aiologic: the figure over that peer's; '-': the peer cannot "
            "run the workload (a loop's own object; a CapacityLimiter's tokens go back "
            "from the task that borrowed them).",
        ]
    )


def warnings(run: Run) -> list[str]:
    """What went wrong while measuring (there should be nothing)."""
    return [
        f"WARNING: {r.name}: {r.contended.max_holders} held a permit at once, "
        f"of a semaphore of value {VALUE}"
        for r in run.contenders
        if r.contended is not None and r.contended.max_holders > VALUE
    ]


def render(run: Run) -> str:
    what = "what (fastsem: the compiled Semaphore, fair mode)"
    return report.render(run, headline(run), table_lines(run), footnote(run), what, warnings(run))


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    return report.main(
        argv,
        prog="python bench/async_bench.py",
        description="Async semaphores side by side: fastsem's async API, asyncio.Semaphore, "
        "aiologic.Semaphore, anyio.CapacityLimiter.",
        plans=PLANS,
        run=run,
        render=render,
    )


if __name__ == "__main__":
    sys.exit(main())
