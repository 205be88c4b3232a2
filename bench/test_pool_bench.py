"""ResourcePool benchmarks: fastsem.ResourcePool against SQLAlchemy's
QueuePool and a pool made of a queue.Queue.

    python -m pip install '.[bench]'          # pytest-benchmark and SQLAlchemy
    python -m pytest bench/test_pool_bench.py --benchmark-only
    FASTSEM_BENCH_QUICK=1 python -m pytest bench/test_pool_bench.py --benchmark-only  # smoke

- **uncontended**: checkout + return of an idle resource, one thread, in ns
  (the best round of a loop of N pairs).
- **contended**: 16 threads, a pool of 4, each looping checkout / return
  with nothing in between, for a fixed time: checkouts per second, and the
  p50 / p99 / max wait of a checkout. The Java way of guarding a pool
  (java_peer.py: Semaphore(4, true), tryAcquire(maxWait)) runs the same loop
  when a JDK 11+ is on PATH, and so does the C core alone (core_contended.c:
  pthreads, no Python): the floor of a strictly FIFO semaphore on the
  machine, where a granted thread that the scheduler does not run holds up
  everyone queued behind it. The pool's worst wait is judged against that
  floor, measured in the same run (goals.py).

Every pool holds the same trivial resource (an object with no-op rollback()
and close(), which QueuePool calls). QueuePool runs with
``reset_on_return=None`` and ``max_overflow=0``: its fastest configuration
with a hard cap of 4, as a pool of 4 must have. SQLAlchemy missing: its rows
are skipped. The figures land in each benchmark's extra_info and in the table
printed at the end of the run; goals.py judges the goals from them.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import java_peer
import pytest
from conftest import Sizes, build_core_program, record
from peers import CORE_FLOOR, JAVA_POOL, POOL, QUEUE_POOL, QUEUEPOOL

import fastsem
from fastsem import _compare

pytest.importorskip("pytest_benchmark")

POOL_SIZE = 4
THREADS = 16


class Conn:
    """The trivial resource: what QueuePool calls on it does nothing."""

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


class QueueQueuePool:
    """The classic pool on a queue.Queue: filled with `size` resources, get()
    to check one out (waiting with a timeout), put() to return it."""

    def __init__(self, factory: Callable[[], Any], size: int) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(size)
        for _ in range(size):
            self._queue.put(factory())

    def acquire(self, timeout: float | None = None) -> Any:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no resource free") from None

    def release(self, resource: Any) -> None:
        self._queue.put(resource)


@dataclass(frozen=True)
class Kind:
    """One pool under test: how to make it, and its checkout/return pair."""

    name: str
    make: Callable[[], tuple[Callable[[], Any], Callable[[Any], None]]]


def _fastsem(fair: bool) -> tuple[Callable[[], Any], Callable[[Any], None]]:
    pool = fastsem.ResourcePool(Conn, POOL_SIZE, fair=fair)
    return pool.acquire, pool.release


def _fastsem_lease() -> tuple[Callable[[], Any], Callable[[Any], None]]:
    # Checkout and return through `with pool.lease() as res:`.
    pool = fastsem.ResourcePool(Conn, POOL_SIZE)
    lease = pool.lease

    def checkout() -> Any:
        cm = lease()
        cm.__enter__()
        return cm

    def checkin(cm: Any) -> None:
        cm.__exit__(None, None, None)

    return checkout, checkin


def _queue_pool() -> tuple[Callable[[], Any], Callable[[Any], None]]:
    pool = QueueQueuePool(Conn, POOL_SIZE)
    return pool.acquire, pool.release


def _sqlalchemy() -> tuple[Callable[[], Any], Callable[[Any], None]]:
    sqlalchemy_pool = pytest.importorskip("sqlalchemy.pool")
    pool = sqlalchemy_pool.QueuePool(
        Conn, pool_size=POOL_SIZE, max_overflow=0, reset_on_return=None
    )

    def checkin(fairy: Any) -> None:
        fairy.close()

    return pool.connect, checkin


KINDS = [
    Kind(POOL, lambda: _fastsem(True)),
    Kind("fastsem.ResourcePool (fair=False)", lambda: _fastsem(False)),
    Kind("fastsem.ResourcePool lease()", _fastsem_lease),
    Kind(QUEUE_POOL, _queue_pool),
    Kind(QUEUEPOOL, _sqlalchemy),
]
UNCONTENDED = "pool uncontended"
CONTENDED = "pool contended"


def _pairs_loop(kind: Kind, pairs: int) -> Callable[[], int]:
    checkout, checkin = kind.make()
    if kind.name == QUEUEPOOL:
        connect = checkout

        def run() -> int:  # the way QueuePool is used: connect().close()
            start = time.perf_counter_ns()
            for _ in range(pairs):
                connect().close()
            return time.perf_counter_ns() - start

        return run

    def run_pairs() -> int:
        start = time.perf_counter_ns()
        for _ in range(pairs):
            checkin(checkout())
        return time.perf_counter_ns() - start

    return run_pairs


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@pytest.mark.benchmark(group="pool uncontended: checkout + return of an idle resource")
def test_pool_uncontended(benchmark: Any, kind: Kind, sizes: Sizes) -> None:
    pairs = sizes.pool_pairs
    run = _pairs_loop(kind, pairs)
    seen: list[int] = []
    benchmark.pedantic(lambda: seen.append(run()), rounds=sizes.pool_rounds, warmup_rounds=1)
    ns = min(seen[1:] or seen) / pairs
    record(benchmark, kind.name, UNCONTENDED, {"pairs_per_round": pairs, "ns_per_pair": ns})


def _contended_window(kind: Kind, seconds: float, warmup: float) -> dict[str, float]:
    """THREADS threads loop checkout/return; the waits of the checkouts that
    started inside the measured window are kept."""
    checkout, checkin = kind.make()
    start_gate = threading.Barrier(THREADS + 1)
    stop = threading.Event()
    window: list[int] = [0, 0]  # start, end (perf_counter_ns)
    waits: list[list[int]] = [[] for _ in range(THREADS)]
    counts = [0] * THREADS
    clock = time.perf_counter_ns

    def worker(index: int) -> None:
        mine = waits[index]
        start_gate.wait()
        n = 0
        while not stop.is_set():
            t0 = clock()
            res = checkout()
            t1 = clock()
            checkin(res)
            if t0 >= window[0] > 0:
                mine.append(t1 - t0)
                n += 1
        counts[index] = n

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    start_gate.wait()
    time.sleep(warmup)
    window[0] = clock()
    time.sleep(seconds)
    window[1] = clock()
    stop.set()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), f"{kind.name}: a thread is stuck"
    every = sorted(w for mine in waits for w in mine if w >= 0)
    total = len(every)
    elapsed = (window[1] - window[0]) / 1e9

    def pct(p: float) -> float:
        return every[min(total - 1, int(total * p / 100))] / 1e6 if total else 0.0

    shares = [c for c in counts]
    jain = sum(shares) ** 2 / (len(shares) * sum(c * c for c in shares)) if any(shares) else 0.0
    return {
        "ops_per_s": total / elapsed,
        "p50_wait_ms": pct(50),
        "p99_wait_ms": pct(99),
        "max_wait_ms": every[-1] / 1e6 if total else 0.0,
        "jain": jain,
    }


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@pytest.mark.benchmark(group=f"pool contended: {THREADS} threads, pool of {POOL_SIZE}")
def test_pool_contended(benchmark: Any, kind: Kind, sizes: Sizes, plan: _compare.Plan) -> None:
    figures = benchmark.pedantic(
        _contended_window,
        kwargs={"kind": kind, "seconds": sizes.pool_seconds, "warmup": plan.warmup},
        rounds=1,
        iterations=1,
    )
    record(benchmark, kind.name, CONTENDED, figures)


@pytest.mark.benchmark(group=f"pool contended: {THREADS} threads, pool of {POOL_SIZE}")
def test_pool_contended_java(benchmark: Any, sizes: Sizes, plan: _compare.Plan) -> None:
    """The Java way (java_peer.py): new Semaphore(4, true), tryAcquire(maxWait),
    a deque of idle objects; Java threads, no GIL."""
    warmup = java_peer.warmup(plan)
    java = benchmark.pedantic(
        java_peer.run,
        args=("pool", THREADS, POOL_SIZE, sizes.pool_seconds, warmup),
        rounds=1,
        iterations=1,
    )
    figures = {
        "ops_per_s": java["ops_per_s"],
        "p50_wait_ms": java["p50_wait_ns"] / 1e6,
        "p99_wait_ms": java["p99_wait_ns"] / 1e6,
        "max_wait_ms": java["max_wait_ns"] / 1e6,
        "jain": java["jain"],
        "jdk": java["java"],
    }
    record(benchmark, JAVA_POOL, CONTENDED, figures)


@pytest.mark.benchmark(group=f"pool contended: {THREADS} threads, pool of {POOL_SIZE}")
def test_pool_contended_core_floor(
    benchmark: Any, sizes: Sizes, plan: _compare.Plan, tmp_path: Path
) -> None:
    """The floor under every fair row: the C core alone (core_contended.c),
    THREADS pthreads on a fair semaphore of POOL_SIZE, no Python, no GIL."""
    exe = build_core_program(tmp_path, "core_contended.c", "core_contended")
    argv = [str(exe), str(THREADS), str(POOL_SIZE), str(sizes.pool_seconds), str(plan.warmup)]
    done = benchmark.pedantic(
        subprocess.run,
        args=(argv,),
        kwargs={"capture_output": True, "text": True, "check": True},
        rounds=1,
        iterations=1,
    )
    raw = json.loads(done.stdout)
    counts = raw["counts"]
    figures = {
        "ops_per_s": raw["ops_per_s"],
        "p50_wait_ms": raw["p50_wait_ns"] / 1e6,
        "p99_wait_ms": raw["p99_wait_ns"] / 1e6,
        "max_wait_ms": raw["max_wait_ns"] / 1e6,
        "jain": _compare.jain_index(counts),
    }
    record(benchmark, CORE_FLOOR, CONTENDED, figures)
