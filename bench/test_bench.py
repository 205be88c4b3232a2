"""Benchmarks: one group per workload of issue 3, every contender in each.

The measuring is fastsem._compare's (shared with ``python -m fastsem``); this
file only runs it under pytest-benchmark and files the figures. See
conftest.py for how to run it.
"""

from __future__ import annotations

import functools
import gc
from typing import Any

import pytest

from fastsem import _compare

pytest.importorskip("pytest_benchmark")


def _rounds(benchmark: Any, target: Any, times: int, **kwargs: Any) -> list[Any]:
    """Runs target `times` times under the benchmark (no warm-up round
    beyond the first, uncounted one); returns what each counted call returned."""
    seen: list[Any] = []

    def call() -> None:
        seen.append(target(**kwargs))

    benchmark.pedantic(call, rounds=times, warmup_rounds=1, iterations=1)
    # A disabled benchmark (--benchmark-disable) runs the target once, with
    # no warm-up round.
    return seen[1:] or seen


def _loop(contender: _compare.Contender, kind: str) -> Any:
    sem = contender.make(1)
    if kind == "pair":
        return functools.partial(_compare.pair_loop, sem.acquire, sem.release)
    if not hasattr(sem, "__enter__"):
        pytest.skip(f"{contender.name} is not a context manager")
    return functools.partial(_compare.with_loop, sem)


@pytest.mark.benchmark(group="uncontended: acquire() + release()")
def test_pair(benchmark: Any, contender: _compare.Contender, sizes: Any, record: Any) -> None:
    ns = _rounds(benchmark, _loop(contender, "pair"), sizes.rounds, number=sizes.pairs)
    record(pairs_per_round=sizes.pairs, ns_per_pair=min(ns) / sizes.pairs)


@pytest.mark.benchmark(group="uncontended: with sem: pass")
def test_with(benchmark: Any, contender: _compare.Contender, sizes: Any, record: Any) -> None:
    ns = _rounds(benchmark, _loop(contender, "with"), sizes.rounds, number=sizes.pairs)
    record(blocks_per_round=sizes.pairs, ns_per_block=min(ns) / sizes.pairs)


@pytest.mark.benchmark(group="handoff: ping-pong between 2 threads")
def test_handoff(benchmark: Any, contender: _compare.Contender, sizes: Any, record: Any) -> None:
    n = sizes.round_trips
    ns = _rounds(benchmark, _compare.handoff_run, sizes.rounds, c=contender, rounds=n)
    per = sorted(x / (2 * n) for x in ns)
    record(
        round_trips_per_round=n,
        ns_per_handoff_median=per[len(per) // 2],
        ns_per_handoff_best=per[0],
    )


def test_contended(
    benchmark: Any,
    contender: _compare.Contender,
    config: tuple[int, int],
    sizes: Any,
    record: Any,
) -> None:
    threads, value = config
    if contender.is_lock and value != 1:
        pytest.skip("a lock has value 1 only")
    window = benchmark.pedantic(
        _compare.contended_window,
        kwargs={
            "c": contender,
            "threads": threads,
            "value": value,
            "seconds": sizes.contended_seconds,
            "warmup": sizes.contended_warmup,
        },
        rounds=1,
        iterations=1,
    )
    figures = _compare.summarize_contended([window])
    gc.collect()
    waits = figures["wait_ns"]
    record(
        ops_per_s=figures["ops_per_s"],
        jain=figures["jain"],
        max_min=figures["max_min_ratio"],
        starved=figures["starved_threads"],
        p50_wait_ns=waits["p50"],
        p99_wait_ns=waits["p99"],
        max_wait_ns=waits["max"],
        exclusion_ok=(
            None
            if figures["exclusion_violations"] is None
            else figures["exclusion_violations"] == 0 and figures["shared_counter_ok"]
        ),
    )
    if value == 1:
        assert figures["exclusion_violations"] == 0, "two threads inside a value-1 semaphore"


@pytest.mark.benchmark(group="barging: release() then a non-blocking acquire")
def test_barging(benchmark: Any, contender: _compare.Contender, sizes: Any, record: Any) -> None:
    figures = benchmark.pedantic(
        _compare.measure_barging,
        kwargs={"c": contender, "trials": sizes.barge_trials},
        rounds=1,
        iterations=1,
    )
    record(barges=figures["barges"], trials=figures["trials"])


@pytest.mark.benchmark(group="FIFO: grants in arrival order")
def test_fifo(benchmark: Any, contender: _compare.Contender, sizes: Any, record: Any) -> None:
    figures = benchmark.pedantic(
        _compare.measure_fifo,
        kwargs={"c": contender, "waiters": sizes.fifo_waiters, "rounds": sizes.fifo_rounds},
        rounds=1,
        iterations=1,
    )
    record(in_order=figures["in_order"], grants=figures["grants"])


def _needs_new(contender: _compare.Contender) -> None:
    if contender.new is None:
        pytest.skip(f"{contender.name}: not made in bulk (same type as another, or a kernel one)")


@pytest.mark.benchmark(group="memory: tracemalloc")
def test_memory(benchmark: Any, contender: _compare.Contender, sizes: Any, record: Any) -> None:
    _needs_new(contender)
    figures = benchmark.pedantic(
        _compare.measure_memory,
        kwargs={"c": contender, "objects": sizes.memory_objects},
        rounds=1,
        iterations=1,
    )
    record(
        objects=figures["objects"],
        bytes_per_object=figures["bytes_per_object"],
    )


@pytest.mark.benchmark(group="creation")
def test_creation(benchmark: Any, contender: _compare.Contender, sizes: Any, record: Any) -> None:
    _needs_new(contender)
    figures = benchmark.pedantic(
        _compare.measure_creation,
        kwargs={"c": contender, "objects": sizes.creation_objects},
        rounds=1,
        iterations=1,
    )
    record(objects=figures["objects"], ns_per_object=figures["ns_per_object"])


def test_release_n(
    benchmark: Any,
    contender: _compare.Contender,
    release_size: int,
    sizes: Any,
    record: Any,
) -> None:
    if not contender.release_n or contender.queued is None:
        pytest.skip(f"{contender.name}: no release(n), or no way to see its queue")
    figures = benchmark.pedantic(
        _compare.release_n_run,
        kwargs={"c": contender, "n": release_size},
        rounds=1,
        iterations=1,
    )
    gc.collect()
    record(
        n=release_size,
        release_ns_per_waiter=figures["release_ns"] / release_size,
        all_returned_ns_per_waiter=figures["all_returned_ns"] / release_size,
    )
