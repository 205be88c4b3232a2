"""Benchmarks: one group per workload, every contender in each.

The measuring is fastsem._compare's (shared with ``python -m fastsem``) and
workloads.py's; this file only runs it under pytest-benchmark and files the
figures. See conftest.py for how to run it.
"""

from __future__ import annotations

import gc
from typing import Any, Callable

import peers
import pytest
import workloads
from conftest import Sizes, record

from fastsem import _compare

pytest.importorskip("pytest_benchmark")


def _once(benchmark: Any, measure: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Runs one whole measurement under the benchmark; returns its result."""
    result = benchmark.pedantic(measure, args=args, kwargs=kwargs, rounds=1, iterations=1)
    gc.collect()
    return result


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(
            "pair", marks=pytest.mark.benchmark(group="uncontended: acquire() + release()")
        ),
        pytest.param("with", marks=pytest.mark.benchmark(group="uncontended: with sem: pass")),
    ],
)
def test_uncontended(benchmark: Any, contender: peers.Peer, kind: str, plan: _compare.Plan) -> None:
    (ns,) = _once(
        benchmark, _compare.measure_uncontended, [contender], kind,
        min_seconds=plan.loop_seconds, repeats=plan.loop_repeats,
    )  # fmt: skip
    if ns is None:
        pytest.skip(f"{contender.name} is not a context manager")
    record(benchmark, contender.name, "pair" if kind == "pair" else "with_block", {"ns": ns})


@pytest.mark.benchmark(group="handoff: ping-pong between 2 threads")
def test_handoff(benchmark: Any, contender: peers.Peer, plan: _compare.Plan) -> None:
    (ns,) = _once(
        benchmark, _compare.measure_handoff, [contender],
        seconds=plan.handoff_seconds, repeats=plan.handoff_repeats,
    )  # fmt: skip
    record(benchmark, contender.name, "handoff", {"ns": ns})


def test_contended(
    benchmark: Any, contender: peers.Peer, config: tuple[int, int], plan: _compare.Plan
) -> None:
    threads, value = config
    if contender.is_lock and value != 1:
        pytest.skip("a lock has value 1 only")
    window = _once(
        benchmark, _compare.contended_window, contender, threads=threads, value=value,
        seconds=plan.contended_seconds, warmup=plan.warmup,
    )  # fmt: skip
    figures = workloads.summarize([window], value)
    record(benchmark, contender.name, f"contended {peers.config_key(threads, value)}", figures)
    if value == 1:
        assert figures.exclusive, "two threads inside a value-1 semaphore, or a lost update"


@pytest.mark.benchmark(group="barging: release() then a non-blocking acquire")
def test_barging(benchmark: Any, contender: peers.Peer, plan: _compare.Plan) -> None:
    barges = _once(benchmark, _compare.measure_barging, contender, trials=plan.barge_trials)
    record(benchmark, contender.name, "barging", {"barges": barges, "trials": plan.barge_trials})


@pytest.mark.benchmark(group="FIFO: grants in arrival order")
def test_fifo(benchmark: Any, contender: peers.Peer, sizes: Sizes) -> None:
    figures = _once(
        benchmark, workloads.measure_fifo, contender,
        waiters=sizes.fifo_waiters, rounds=sizes.fifo_rounds,
    )  # fmt: skip
    record(benchmark, contender.name, "fifo", figures)


def _needs_new(contender: peers.Peer) -> None:
    if contender.new is None:
        pytest.skip(f"{contender.name}: not made in bulk (same type as another, or a kernel one)")


@pytest.mark.benchmark(group="memory: tracemalloc")
def test_memory(benchmark: Any, contender: peers.Peer, sizes: Sizes) -> None:
    _needs_new(contender)
    figures = _once(benchmark, workloads.measure_memory, contender, objects=sizes.memory_objects)
    record(benchmark, contender.name, "memory", figures)


@pytest.mark.benchmark(group="creation")
def test_creation(benchmark: Any, contender: peers.Peer, sizes: Sizes) -> None:
    _needs_new(contender)
    figures = _once(
        benchmark, workloads.measure_creation, contender, objects=sizes.creation_objects
    )
    record(benchmark, contender.name, "creation", figures)


def test_release_n(benchmark: Any, contender: peers.Peer, release_size: int, sizes: Sizes) -> None:
    if not contender.release_n or contender.queued is None:
        pytest.skip(f"{contender.name}: no release(n), or no way to see its queue")
    figures = _once(
        benchmark, workloads.measure_release_n, contender,
        n=release_size, repeats=sizes.release_repeats,
    )  # fmt: skip
    record(benchmark, contender.name, f"release_n {release_size}", figures)
