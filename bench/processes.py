"""Process-shared semaphores side by side: fastsem's against the others.

    python bench/processes.py [--quick] [--json FILE]

Sets fastsem.ProcessSemaphore (fair and non-fair) beside
multiprocessing.Semaphore, posix_ipc.Semaphore (nameless), sysv_ipc.Semaphore
with SEM_UNDO (the one peer that gives back a dead holder's permits) and, as
a same-process reference, threading.Semaphore with threads in place of
processes. posix_ipc and sysv_ipc are optional (``pip install posix_ipc
sysv_ipc``, or the ``bench`` extra): without one, its column is left out and
a note says so. Every child process is started with ``fork``, the quickest
start, so a peer's object reaches its children as it is, whether or not it
can be pickled.

The workloads, each on every peer, one after the other in one run:

uncontended
    ns per acquire() + release() in one process: the best of several timed
    loops, the peers' loops interleaved round by round (the measuring
    function of ``python -m fastsem``).
handoff
    Ping-pong between two processes on two semaphores at value 0: the first
    releases the second's and waits on its own, the second the other way
    round, so a round trip is two handoffs from one process to the other. ns
    per handoff, the median of repeats, each in a new pair of processes.
    Where the scheduler puts the pair decides much of it: on one CPU a
    handoff is a direct switch, on two a wake-up across CPUs, which a waiter
    that spins can save and one that sleeps at once cannot; and a spinning
    waiter on the releaser's own CPU only delays it. Runs differ for that.
contended
    4 and 16 processes on a semaphore of value 1, each looping acquire /
    hold a few microseconds / release for a fixed time. Each worker stamps,
    with CLOCK_MONOTONIC (one clock for every process), when it called
    acquire(), when it returned and when it released, and numbers its grant
    from a counter it bumps while it holds the permit: the grant order.
    Figures over the grants of the window after a warm-up: throughput, Jain's
    index of the per-process counts, the wait in acquire() (p99, max), and
    barging: a process granted twice in a row while another process had
    called acquire() before the first of the two was released.
recovery
    A process holds the permit of a value-1 semaphore, another waits for it,
    and at a random moment after the waiter queued the holder is SIGKILLed:
    the time from the kill to the waiter's grant, over repeated kills. A peer
    whose waiter is not granted within the timeout does not recover
    ("never"), and is not killed again.

Prints one table, a column per peer, with each figure's ratio to
multiprocessing.Semaphore's, then the goals and whether they are met;
``--json FILE`` writes every figure. Progress goes to stderr.
"""

from __future__ import annotations

import gc
import itertools
import math
import multiprocessing
import os
import random
import signal
import statistics
import sys
import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Final

import report

from fastsem import _compare, _impl

START_METHOD: Final = "fork"
CTX = multiprocessing.get_context(START_METHOD)

FAIR = "fastsem.ProcessSemaphore"
NONFAIR = "fastsem.ProcessSemaphore (non-fair)"
MULTIPROCESSING = "multiprocessing.Semaphore"
POSIX_IPC = "posix_ipc.Semaphore"
SYSV_IPC = "sysv_ipc.Semaphore (SEM_UNDO)"
THREADING = "threading.Semaphore"
BASE = MULTIPROCESSING  # every ratio is to its figure

# SEM_UNDO keeps, per process, the sum of what it released and acquired on
# each semaphore, and the kernel refuses an operation that takes it past
# 32,767 (ERANGE). In the ping-pong each process releases one semaphore and
# acquires the other, so that sum grows by one a round trip: a pair of
# processes makes at most this many, warm-up included.
ROUND_TRIP_CAP = 30_000
HANDOFF_WARMUP = 100
# How long anything that should take milliseconds may take before it is
# called hung.
PATIENCE = 30.0
# Without a way to see a waiter queued (multiprocessing, posix_ipc), it is
# taken to be this long after it said it was about to call acquire().
SETTLE_SECONDS = 0.05


# --------------------------------------------------------------------------
# The peers


@dataclass
class Peer:
    """One semaphore type under test.

    `make(value)` returns a new semaphore of that value, which child processes
    inherit through fork. `acquire_for(sem, seconds)` acquires within
    `seconds` and says whether it did. `queued(sem)` says how many wait in
    acquire() (None: no way to tell). `remove(sem)` frees what outlives its
    processes (a SysV semaphore stays in the kernel until removed).
    `same_process`: the workloads run on threads of this process instead.
    """

    name: str
    header: str  # the column heading; "\\n" between its two lines
    make: Callable[[int], Any]
    acquire_for: Callable[[Any, float], bool]
    queued: Callable[[Any], int] | None = None
    remove: Callable[[Any], None] | None = None
    same_process: bool = False
    made: list[Any] = field(default_factory=list)

    def new(self, value: int) -> Any:
        sem = self.make(value)
        if self.remove is not None:
            self.made.append(sem)
        return sem

    def retire(self, sem: Any) -> None:
        """Frees `sem` now, if it is one that outlives its processes."""
        if self.remove is not None and sem in self.made:
            self.made.remove(sem)
            self.remove(sem)

    def retire_all(self) -> None:
        while self.made:
            self.retire(self.made[-1])


def _fastsem_peers() -> list[Peer]:
    module = _impl.process_module
    if module is None:
        return []
    cls = module.ProcessSemaphore

    def peer(name: str, header: str, fair: bool) -> Peer:
        return Peer(
            name,
            header,
            lambda v: cls(v, fair=fair),
            lambda sem, seconds: bool(sem.acquire(timeout=seconds)),
            queued=lambda sem: int(sem.waiting),
        )

    return [
        peer(FAIR, "fastsem\nfair", True),
        peer(NONFAIR, "fastsem\nnon-fair", False),
    ]


def _posix_ipc_peer() -> Peer | None:
    try:
        import posix_ipc  # type: ignore[import-not-found]  # optional
    except ImportError:
        return None

    def make(value: int) -> Any:
        sem = posix_ipc.Semaphore(None, posix_ipc.O_CREX, initial_value=value)
        sem.unlink()  # nameless from here on: it lives while a process maps it
        return sem

    def acquire_for(sem: Any, seconds: float) -> bool:
        try:
            sem.acquire(seconds)
        except posix_ipc.BusyError:
            return False
        return True

    return Peer(POSIX_IPC, "posix_ipc\n", make, acquire_for)


def _sysv_ipc_peer() -> Peer | None:
    try:
        import sysv_ipc  # type: ignore[import-not-found]  # optional
    except ImportError:
        return None

    def make(value: int) -> Any:
        sem = sysv_ipc.Semaphore(sysv_ipc.IPC_PRIVATE, sysv_ipc.IPC_CREX, initial_value=value)
        sem.undo = True  # SEM_UNDO on every acquire() and release()
        return sem

    def acquire_for(sem: Any, seconds: float) -> bool:
        try:
            sem.acquire(seconds)
        except sysv_ipc.BusyError:
            return False
        return True

    def remove(sem: Any) -> None:
        try:
            sem.remove()
        except sysv_ipc.ExistentialError:
            pass

    return Peer(
        SYSV_IPC,
        "sysv_ipc\n(SEM_UNDO)",
        make,
        acquire_for,
        queued=lambda sem: int(sem.waiting_for_nonzero),
        remove=remove,
    )


def peers() -> tuple[list[Peer], dict[str, str]]:
    """The peers that work here, and {name: why not} for those left out."""
    found = _fastsem_peers()
    missing: dict[str, str] = {}
    if not found:
        missing[FAIR] = "fastsem's process semaphores need the compiled module, on Linux"
    found.append(
        Peer(
            MULTIPROCESSING,
            "multiprocessing\n",
            CTX.Semaphore,
            lambda sem, seconds: bool(sem.acquire(timeout=seconds)),
        )
    )
    for name, package, peer in [
        (POSIX_IPC, "posix_ipc", _posix_ipc_peer()),
        (SYSV_IPC, "sysv_ipc", _sysv_ipc_peer()),
    ]:
        if peer is None:
            missing[name] = f"not installed (pip install {package})"
            continue
        try:
            peer.retire(peer.new(1))
        except Exception as exc:  # a sandbox without IPC: leave it out, say why
            missing[name] = f"does not work here: {exc!r}"
            continue
        found.append(peer)
    found.append(
        Peer(
            THREADING,
            "threading\n(threads)",
            threading.Semaphore,
            lambda sem, seconds: bool(sem.acquire(timeout=seconds)),
            same_process=True,
        )
    )
    return found, missing


# --------------------------------------------------------------------------
# How much a run measures


@dataclass(frozen=True)
class Plan:
    mode: str
    loop_ns: int  # the shortest timed loop of the uncontended workload
    loop_repeats: int
    handoff_seconds: float  # one repeat
    handoff_repeats: int
    workers: tuple[int, ...]  # processes on value 1, one configuration each
    contended_seconds: float  # the window, per peer and configuration
    warmup: float  # before each window
    hold_ns: int  # how long a worker holds the permit
    kills: int
    recovery_timeout: float  # a waiter not granted this long after the kill: never
    kill_spread: float  # the kill comes at a random moment this long after the waiter queued


# "smoke" proves that everything runs (bench/test_processes_bench.py): its
# figures mean nothing.
# fmt: off
PLANS = {p.mode: p for p in [
    Plan("smoke",    1_000_000, 2, 0.005, 1, (4, 16), 0.05, 0.02, 10_000, 2,  0.3, 0.02),
    Plan("quick",    5_000_000, 3, 0.03,  3, (4, 16), 0.3,  0.05, 10_000, 5,  0.5, 0.2),
    Plan("default", 20_000_000, 5, 0.1,   5, (4, 16), 2.0,  0.2,  10_000, 20, 2.0, 0.2),
]}
# fmt: on


# --------------------------------------------------------------------------
# Results


@dataclass
class Handoff:
    ns: float  # per handoff, the median of the repeats
    ns_best: float
    ns_runs: list[float]
    round_trips: int  # per repeat


@dataclass
class Contended:
    workers: int
    seconds: float  # the window
    acquisitions: int  # in the window
    ops_per_s: float | None
    jain: float | None
    per_worker_counts: list[int]
    barges: int  # in the window
    repeat_grants: int  # one worker granted twice in a row, others waiting or not
    wait_p50_ns: int | None
    wait_p99_ns: int | None
    wait_max_ns: int | None
    exclusion_violations: int


@dataclass
class Recovery:
    kills: int
    recovered: int  # of the kills, the waiter was granted within the timeout
    timeout_s: float
    never: bool  # a waiter timed out: the permit did not come back
    p50_ns: int | None
    p99_ns: int | None
    max_ns: int | None
    times_ns: list[int]  # kill to grant, one per recovered kill


@dataclass
class Row:
    name: str
    header: str  # the column heading, "\\n" between its two lines
    same_process: bool
    pair: Uncontended | None = None
    handoff: Handoff | None = None
    contended: dict[str, Contended] = field(default_factory=dict)  # by contended_key()
    recovery: Recovery | None = None


@dataclass
class Run:
    """One run: dataclasses.asdict() of it is what --json writes."""

    machine: dict[str, Any]
    plan: Plan
    start_method: str
    contenders: list[Row]
    skipped: dict[str, str]  # peer: why it is not in the run
    goals: list[report.GoalResult]
    total_seconds: float
    noise: dict[str, float | None]


def contended_key(workers: int) -> str:
    return f"p{workers}_v1"


# --------------------------------------------------------------------------
# Children: processes, or threads for a same-process peer


def _start(peer: Peer, target: Callable[..., None], *args: Any) -> Any:
    runner: Any
    if peer.same_process:
        runner = threading.Thread(target=target, args=args, daemon=True)
    else:
        runner = CTX.Process(target=target, args=args, daemon=True)
    runner.start()
    return runner


def _finish(runners: list[Any], what: str) -> None:
    """Joins every runner; kills the processes that hang, then says so."""
    deadline = time.monotonic() + PATIENCE
    for r in runners:
        r.join(max(0.0, deadline - time.monotonic()))
    hung = [r for r in runners if r.is_alive()]
    _kill(hung)
    if hung:
        raise RuntimeError(f"{what}: {len(hung)} of {len(runners)} did not finish")


def _kill(runners: list[Any]) -> None:
    """Kills and reaps the processes still running (after a failure)."""
    for r in runners:
        if isinstance(r, multiprocessing.process.BaseProcess) and r.is_alive():
            r.kill()
            r.join(5)


def _receive(conn: Any, what: str, timeout: float = PATIENCE) -> Any:
    if not conn.poll(timeout):
        raise RuntimeError(f"{what}: no word from a child in {timeout:g} s")
    message = conn.recv()
    if isinstance(message, tuple) and message and message[0] == "error":
        raise RuntimeError(f"{what}: a child failed: {message[1]}")
    return message


def _report_error(conn: Any, exc: BaseException) -> None:
    try:
        conn.send(("error", repr(exc)))
    except OSError:
        pass


# --------------------------------------------------------------------------
# Uncontended


@dataclass
class Uncontended:
    ns: float  # per acquire()+release(), the best of the timed loops


def measure_uncontended(
    found: list[Peer], plan: Plan, say: Callable[[str], None]
) -> list[Uncontended | None]:
    contenders = [_compare.Contender(p.name, p.new) for p in found]
    say("uncontended acquire()+release()")
    figures = _compare.measure_uncontended(
        contenders, "pair", min_seconds=plan.loop_ns / 1e9, repeats=plan.loop_repeats
    )
    return [None if ns is None else Uncontended(ns) for ns in figures]


# --------------------------------------------------------------------------
# Handoff


def _calls(first: Callable[[], Any], second: Callable[[], Any], number: int) -> None:
    for _ in itertools.repeat(None, number):
        first()
        second()


def _pinger(ping: Any, pong: Any, warmup: int, rounds: int, conn: Any) -> None:
    try:
        _calls(ping.release, pong.acquire, warmup)
        t0 = time.perf_counter_ns()
        _calls(ping.release, pong.acquire, rounds)
        conn.send(time.perf_counter_ns() - t0)
    except BaseException as exc:
        _report_error(conn, exc)


def _ponger(ping: Any, pong: Any, number: int, done: Any, conn: Any) -> None:
    try:
        _calls(ping.acquire, pong.release, number)
        # SEM_UNDO undoes releases too: a SysV semaphore takes back, when this
        # process exits, every permit it released. Exiting before the pinger
        # took the last one would take that one back and leave the pinger
        # waiting for ever; so the ponger waits until the pinger is through.
        done.wait()
    except BaseException as exc:
        _report_error(conn, exc)


def handoff_run(peer: Peer, rounds: int) -> int:
    """ns for `rounds` round trips (two handoffs each) between two new
    processes, after a warm-up."""
    ping, pong = peer.new(0), peer.new(0)
    receive, send = CTX.Pipe(duplex=False)
    done = CTX.Event()
    what = f"{peer.name}: handoff"
    pair = []
    try:
        pair.append(_start(peer, _ponger, ping, pong, HANDOFF_WARMUP + rounds, done, send))
        pair.append(_start(peer, _pinger, ping, pong, HANDOFF_WARMUP, rounds, send))
        elapsed = _receive(receive, what)
        done.set()
        _finish(pair, what)
        return int(elapsed)
    finally:
        done.set()
        _kill(pair)
        receive.close()
        send.close()
        peer.retire(ping)
        peer.retire(pong)


def measure_handoff(found: list[Peer], plan: Plan, say: Callable[[str], None]) -> list[Handoff]:
    """Each peer's ns per handoff: the median of the repeats, interleaved
    round by round, each about plan.handoff_seconds long."""
    rounds = []
    for p in found:
        say(f"handoff: {p.name} (calibrating)")
        per_trip = handoff_run(p, 300) / 300
        wanted = int(plan.handoff_seconds * 1e9 / max(per_trip, 1))
        rounds.append(min(ROUND_TRIP_CAP - HANDOFF_WARMUP, max(200, wanted)))
    runs: list[list[float]] = [[] for _ in found]
    for r in range(plan.handoff_repeats):
        say(f"handoff: round {r + 1}/{plan.handoff_repeats}")
        for p, n, per in zip(found, rounds, runs):
            per.append(handoff_run(p, n) / (2 * n))
    return [Handoff(statistics.median(per), min(per), per, n) for n, per in zip(rounds, runs)]


# --------------------------------------------------------------------------
# Contended


def _contend(
    sem: Any, hold_ns: int, gate: Any, stop: Any, counter: Any, inside: Any, conn: Any
) -> None:
    """One worker: acquire / hold / release until the stop time, stamping
    every grant; then sends the stamps back."""
    try:
        acquire, release = sem.acquire, sem.release
        clock = time.monotonic_ns
        called, granted, released, order = array("q"), array("q"), array("q"), array("q")
        violations = 0
        conn.send("ready")
        gate.wait()
        end = stop.value
        while True:
            t0 = clock()
            acquire()
            t1 = clock()
            # The permit is held: the counter is this process's alone.
            inside.value += 1
            if inside.value != 1:
                violations += 1
            seq = counter.value
            counter.value = seq + 1
            until = t1 + hold_ns
            while clock() < until:
                pass
            inside.value -= 1
            t2 = clock()
            release()
            called.append(t0)
            granted.append(t1)
            released.append(t2)
            order.append(seq)
            if t2 >= end:
                break
        conn.send(
            (called.tobytes(), granted.tobytes(), released.tobytes(), order.tobytes(), violations)
        )
    except BaseException as exc:
        _report_error(conn, exc)


@dataclass
class Stamps:
    """One worker's grants, in its order: when it called acquire(), when it
    got the permit, when it released it, and the grant's place in the
    semaphore's order."""

    called: array[int]
    granted: array[int]
    released: array[int]
    order: array[int]


def _array(raw: bytes) -> array[int]:
    a = array("q")
    a.frombytes(raw)
    return a


def count_barges(workers: list[Stamps], begin: int, end: int) -> tuple[int, int]:
    """(barges, repeat grants) among the grants made in [begin, end).

    A repeat grant: the grant after the same worker's previous one, nobody in
    between. A barge: a repeat grant while another worker had called
    acquire() before the first of the two grants was released (that worker's
    next grant came later, so it waited through both)."""
    grants = sorted((seq, w, i) for w, s in enumerate(workers) for i, seq in enumerate(s.order))
    # next_called[v]: when worker v called acquire() for its first grant after
    # the one being looked at (inf: no more).
    next_called: list[float] = [s.called[0] if len(s.called) else math.inf for s in workers]
    barges = repeats = 0
    for (_, w, i), (_, w2, i2) in zip(grants, [*grants[1:], (0, -1, 0)]):
        s = workers[w]
        next_called[w] = s.called[i + 1] if i + 1 < len(s.called) else math.inf
        if w2 != w or not begin <= workers[w2].granted[i2] < end:
            continue
        repeats += 1
        released = s.released[i]
        if any(t < released for v, t in enumerate(next_called) if v != w):
            barges += 1
    return barges, repeats


def analyse(workers: list[Stamps], begin: int, end: int, violations: int) -> Contended:
    counts = [sum(1 for t in s.granted if begin <= t < end) for s in workers]
    waits = sorted(g - c for s in workers for c, g in zip(s.called, s.granted) if begin <= g < end)
    barges, repeats = count_barges(workers, begin, end)
    seconds = (end - begin) / 1e9
    total = sum(counts)
    return Contended(
        workers=len(workers),
        seconds=seconds,
        acquisitions=total,
        ops_per_s=total / seconds if seconds > 0 else None,
        jain=_compare.jain_index(counts),
        per_worker_counts=counts,
        barges=barges,
        repeat_grants=repeats,
        wait_p50_ns=report.percentile(waits, 50) if waits else None,
        wait_p99_ns=report.percentile(waits, 99) if waits else None,
        wait_max_ns=waits[-1] if waits else None,
        exclusion_violations=violations,
    )


@dataclass
class Window:
    """One contended run's record: every worker's stamps (with its process
    id, None for a thread), and the measured window [begin, end) in
    time.monotonic_ns()."""

    workers: list[Stamps]
    pids: list[int | None]
    begin: int
    end: int
    violations: int  # times two workers held the value-1 semaphore at once


def contended_run(peer: Peer, workers: int, plan: Plan) -> Contended:
    w = contended_window(peer, workers, plan)
    return analyse(w.workers, w.begin, w.end, w.violations)


def contended_window(peer: Peer, workers: int, plan: Plan) -> Window:
    """`workers` processes (threads, for a same_process peer) loop acquire /
    hold / release on a semaphore of value 1 for the plan's window."""
    sem = peer.new(1)
    gate = CTX.Event()
    stop, counter, inside = (CTX.RawValue("q", 0) for _ in range(3))
    pipes = [CTX.Pipe(duplex=False) for _ in range(workers)]
    what = f"{peer.name}: {workers} workers"
    runners = []
    try:
        for _, send in pipes:
            runners.append(
                _start(peer, _contend, sem, plan.hold_ns, gate, stop, counter, inside, send)
            )
        for receive, _ in pipes:
            _receive(receive, what)
        begin = time.monotonic_ns() + int(plan.warmup * 1e9)
        end = begin + int(plan.contended_seconds * 1e9)
        stop.value = end
        gate.set()
        results = [
            _receive(receive, what, plan.warmup + plan.contended_seconds + PATIENCE)
            for receive, _ in pipes
        ]
        _finish(runners, what)
    finally:
        gate.set()  # a worker still at the gate goes on and stops at once
        _kill(runners)
        for receive, send in pipes:
            receive.close()
            send.close()
        peer.retire(sem)
    stamps = [Stamps(*(_array(raw) for raw in r[:4])) for r in results]
    pids = [getattr(r, "pid", None) for r in runners]
    return Window(stamps, pids, begin, end, sum(r[4] for r in results))


# --------------------------------------------------------------------------
# Recovery


def _hold_until_killed(sem: Any, conn: Any) -> None:
    try:
        sem.acquire()
        conn.send("holding")
        while True:
            time.sleep(60)
    except BaseException as exc:
        _report_error(conn, exc)


def _wait_for_permit(
    acquire_for: Callable[[Any, float], bool], sem: Any, timeout: float, conn: Any
) -> None:
    try:
        conn.send("waiting")
        granted = acquire_for(sem, timeout)
        conn.send((granted, time.monotonic_ns()))
        if granted:
            sem.release()
    except BaseException as exc:
        _report_error(conn, exc)


def _wait_queued(peer: Peer, sem: Any) -> None:
    if peer.queued is None:
        time.sleep(SETTLE_SECONDS)
        return
    deadline = time.monotonic() + PATIENCE
    while peer.queued(sem) < 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{peer.name}: the waiter never queued")
        time.sleep(0.0005)


def recovery_once(peer: Peer, timeout: float, delay: float) -> int | None:
    """ns from the SIGKILL of a permit's holder to its waiter's grant; None
    if the waiter was not granted within `timeout` seconds. The kill comes
    `delay` seconds after the waiter queued."""
    sem = peer.new(1)
    holder_in, holder_out = CTX.Pipe(duplex=False)
    waiter_in, waiter_out = CTX.Pipe(duplex=False)
    what = f"{peer.name}: recovery"
    runners = []
    try:
        holder = _start(peer, _hold_until_killed, sem, holder_out)
        runners.append(holder)
        _receive(holder_in, what)
        runners.append(_start(peer, _wait_for_permit, peer.acquire_for, sem, timeout, waiter_out))
        _receive(waiter_in, what)
        _wait_queued(peer, sem)
        time.sleep(delay)
        killed = time.monotonic_ns()
        os.kill(holder.pid, signal.SIGKILL)
        granted, when = _receive(waiter_in, what, timeout + PATIENCE)
        _finish(runners, what)
    finally:
        _kill(runners)
        for conn in (holder_in, holder_out, waiter_in, waiter_out):
            conn.close()
        peer.retire(sem)
    return int(when - killed) if granted else None


def measure_recovery(peer: Peer, plan: Plan, say: Callable[[str], None]) -> Recovery:
    """Kills a holder plan.kills times, each at a random moment after its
    waiter queued (a crash comes at any time, not in step with anything a
    semaphore does); the same moments for every peer."""
    chance = random.Random(0)
    times: list[int] = []
    never = False
    kills = 0
    while kills < plan.kills and not never:
        say(f"recovery: {peer.name}, kill {kills + 1}/{plan.kills}")
        ns = recovery_once(peer, plan.recovery_timeout, chance.uniform(0, plan.kill_spread))
        kills += 1
        if ns is None:
            never = True
        else:
            times.append(ns)
    ordered = sorted(times)
    return Recovery(
        kills=kills,
        recovered=len(times),
        timeout_s=plan.recovery_timeout,
        never=never,
        p50_ns=report.percentile(ordered, 50) if ordered and not never else None,
        p99_ns=report.percentile(ordered, 99) if ordered and not never else None,
        max_ns=ordered[-1] if ordered and not never else None,
        times_ns=times,
    )


# --------------------------------------------------------------------------
# The goals


def judge(rows: list[Row], plan: Plan) -> list[report.GoalResult]:
    """fastsem's goals, in fair mode, from this run's figures."""
    by_name = {r.name: r for r in rows}
    ours, base = by_name.get(FAIR), by_name.get(BASE)
    found: list[report.GoalResult] = []

    def goal(id: str, what: str, value: float | None, op: str, target: float, unit: str) -> None:
        met = None
        if value is not None:
            met = {"<=": value <= target, ">=": value >= target}[op]
        found.append(report.GoalResult(id, what, value, op, target, unit, met))

    def pair(r: Row | None) -> float | None:
        return r.pair.ns if r and r.pair else None

    def handoff(r: Row | None) -> float | None:
        return r.handoff.ns if r and r.handoff else None

    goal(
        "process-pair",
        "uncontended acquire()+release(): fastsem / multiprocessing",
        report.ratio(pair(ours), pair(base)),
        "<=",
        1.2,
        "x",
    )
    goal("process-handoff", "handoff between 2 processes: fastsem / multiprocessing",
         report.ratio(handoff(ours), handoff(base)), "<=", 0.5, "x")  # fmt: skip
    for n in plan.workers:
        key = contended_key(n)
        mine = ours.contended.get(key) if ours else None
        theirs = base.contended.get(key) if base else None
        goal(
            f"process-jain-{n}p",
            f"{n} processes, value 1: Jain's index of fastsem",
            mine.jain if mine else None,
            ">=",
            0.99,
            "index",
        )
        goal(
            f"process-barging-{n}p",
            f"{n} processes, value 1: fastsem's barges",
            mine.barges if mine else None,
            "<=",
            0,
            "count",
        )
        mine_max, theirs_max = (c.wait_max_ns if c else None for c in (mine, theirs))
        goal(f"process-max-wait-{n}p",
             f"{n} processes, value 1: max wait, fastsem / multiprocessing",
             report.ratio(mine_max, theirs_max), "<=", 0.1, "x")  # fmt: skip
    rec = ours.recovery if ours else None
    p99 = rec.p99_ns / 1e9 if rec and rec.p99_ns is not None else None
    goal("process-recovery-p99",
         f"SIGKILL of a holder to the next grant, p99 of {plan.kills} kills: fastsem",
         p99, "<=", 1.0, "s")  # fmt: skip
    return found


# --------------------------------------------------------------------------
# The run


def run(plan: Plan, progress: report.Say = None) -> Run:
    found, skipped = peers()
    rows = [Row(p.name, p.header, p.same_process) for p in found]
    crossing = [p for p in found if not p.same_process]
    total = (
        len(found) + plan.loop_repeats - 1
        + len(found) + plan.handoff_repeats
        + len(plan.workers) * len(found)
        + plan.kills * len(crossing)
    )  # fmt: skip
    say = report.steps(total, progress)
    t0 = time.perf_counter()
    noise = report.Noise()
    try:
        for row, u in zip(rows, measure_uncontended(found, plan, say)):
            row.pair = u
        for row, h in zip(rows, measure_handoff(found, plan, say)):
            row.handoff = h
        for n in plan.workers:
            for p, row in zip(found, rows):
                say(f"contended: {n} {'threads' if p.same_process else 'processes'}, {p.name}")
                row.contended[contended_key(n)] = contended_run(p, n, plan)
                gc.collect()
        for p, row in zip(found, rows):
            if not p.same_process:
                row.recovery = measure_recovery(p, plan, say)
    finally:
        for p in found:
            p.retire_all()
    return Run(
        machine=_compare.machine_info(),
        plan=plan,
        start_method=START_METHOD,
        contenders=rows,
        skipped=skipped,
        goals=judge(rows, plan),
        total_seconds=time.perf_counter() - t0,
        noise=noise.read(),
    )


# --------------------------------------------------------------------------
# The table


def _with(c: Contended | None, cell: Callable[[Contended], str]) -> str:
    return "-" if c is None else cell(c)


def _times(value: float | None, base: float | None, is_base: bool) -> str:
    return "1 (base)" if is_base else report.times(report.ratio(value, base))


def _recovery(rec: Recovery | None, ns: int | None) -> str:
    if rec is None:
        return "-"
    if rec.never:
        return f"never (>{rec.timeout_s:g} s)"
    return report.ms(ns)


def table_lines(run: Run) -> list[list[str]]:
    """The table's rows: a figure per row, a peer per column."""
    rows = run.contenders
    base = next((r for r in rows if r.name == BASE), None)
    lines: list[list[str]] = []

    def line(label: str, cell: Callable[[Row], str]) -> None:
        lines.append([label, *(cell(r) for r in rows)])

    def versus(label: str, figure: Callable[[Row], float | None]) -> None:
        line(label, lambda r: _times(figure(r), figure(base) if base else None, r is base))

    def pair(r: Row) -> float | None:
        return r.pair.ns if r.pair else None

    def handoff(r: Row) -> float | None:
        return r.handoff.ns if r.handoff else None

    line("uncontended ns/pair", lambda r: report.ns(pair(r)))
    versus("  x multiprocessing", pair)
    line("handoff us", lambda r: report.us(handoff(r)))
    versus("  x multiprocessing", handoff)
    for n in run.plan.workers:
        key = contended_key(n)

        # Each cell function is called at once, by line(): `key` is this
        # configuration's.
        def contended(label: str, cell: Callable[[Contended], str], key: str = key) -> None:
            line(label, lambda r: _with(r.contended.get(key), cell))

        def max_wait(r: Row, key: str = key) -> float | None:
            c = r.contended.get(key)
            return c.wait_max_ns if c else None

        lines.append([f"{n} processes on value 1", *("" for _ in rows)])
        contended("  ops/s", lambda c: report.fixed(c.ops_per_s, 0))
        contended("  Jain", lambda c: report.fixed(c.jain, 3))
        contended("  barges", lambda c: f"{c.barges:,}/{c.acquisitions:,}")
        contended("  p99 wait ms", lambda c: report.ms(c.wait_p99_ns))
        line("  max wait ms", lambda r: report.ms(max_wait(r)))
        versus("    x multiprocessing", max_wait)
    kills = run.plan.kills
    lines.append([f"recovery after SIGKILL ({kills} kills)", *("" for _ in rows)])
    line("  p50 ms", lambda r: _recovery(r.recovery, r.recovery.p50_ns if r.recovery else None))
    line("  p99 ms", lambda r: _recovery(r.recovery, r.recovery.p99_ns if r.recovery else None))
    line("  max ms", lambda r: _recovery(r.recovery, r.recovery.max_ns if r.recovery else None))
    return lines


def headline(run: Run) -> str:
    m = run.machine
    cpu = f"{m['cpu_count']} CPUs"
    if m.get("cpu_model"):
        cpu = f"{m['cpu_model']}, {cpu}"
    return (
        f"Process-shared semaphores: fastsem {m['fastsem_version']} on "
        f"{m['python_implementation']} {m['python_version']}, {m['platform']} ({cpu}); "
        f"{run.plan.mode} run, start method {run.start_method}, {run.total_seconds:.0f} s"
    )


def footnote(run: Run) -> str:
    p = run.plan
    return "\n".join(
        [
            "uncontended ns/pair: one acquire() + release() in one process, best of "
            f"{p.loop_repeats} timed loops.",
            "handoff us: one handoff in a ping-pong of two processes on two semaphores "
            f"at value 0 (median of {p.handoff_repeats} runs).",
            f"N processes on value 1: each loops acquire / hold {p.hold_ns / 1e3:g} us / "
            f"release; {p.contended_seconds:g} s measured after {p.warmup:g} s.",
            "  barges: grants to the process granted just before, while another had "
            "called acquire() before that grant's release; of all grants.",
            "  p99 / max wait: of every acquire() in the window, timed by the worker "
            "(time.monotonic_ns).",
            "recovery: from the SIGKILL of the holder, at a random moment up to "
            f"{p.kill_spread:g} s after a process queued for its permit, to that process's "
            "grant; 'never': not granted within the timeout.",
            "x multiprocessing: the figure over multiprocessing.Semaphore's.",
            "threading (threads): threads of one process in place of processes, for "
            "reference; it has no recovery.",
        ]
    )


def warnings(run: Run) -> list[str]:
    """What went wrong while measuring (there should be nothing)."""
    found = []
    for r in run.contenders:
        for key, c in r.contended.items():
            if c.exclusion_violations:
                found.append(
                    f"WARNING: {r.name} ({key}): {c.exclusion_violations} times two "
                    "workers held a value-1 semaphore at once"
                )
    return found


def render(run: Run) -> str:
    what = "what (fastsem: ProcessSemaphore, fair mode)"
    return report.render(run, headline(run), table_lines(run), footnote(run), what, warnings(run))


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    return report.main(
        argv,
        prog="python bench/processes.py",
        description="Process-shared semaphores side by side: fastsem.ProcessSemaphore, "
        "multiprocessing, posix_ipc, sysv_ipc (SEM_UNDO), threading.",
        plans=PLANS,
        run=run,
        render=render,
    )


if __name__ == "__main__":
    sys.exit(main())
