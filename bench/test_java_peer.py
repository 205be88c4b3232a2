"""fastsem against Java's fair Semaphore, side by side in one run.

Java users guard their pools with ``new Semaphore(MAX, true)``; this runs
the contended loop of test_bench.py (T threads looping acquire / tiny
critical section / release, at the thread counts and values of its
contended groups) on it and on
fastsem's fair Semaphore, one right after the other, and reports fastsem's
figures over Java's. Java threads run Python-free and in parallel; fastsem's
run the loop in Python, holding the GIL between acquire() and release().

    python -m pytest bench/test_java_peer.py --benchmark-only

Skipped without a JDK 11+ on PATH (java_peer.py).
"""

from __future__ import annotations

import gc
from typing import Any

import java_peer
import peers
import pytest
import workloads
from conftest import FIGURES, record

from fastsem import _compare

pytest.importorskip("pytest_benchmark")

FASTSEM = next(c for c in _compare.contenders() if c.name == _compare.FASTSEM)


def _fastsem_window(threads: int, value: int, seconds: float, warmup: float) -> dict[str, Any]:
    window = _compare.contended_window(
        FASTSEM, threads=threads, value=value, seconds=seconds, warmup=warmup
    )
    figures = workloads.summarize([window], value)
    gc.collect()
    return {
        "ops_per_s": figures.ops_per_s,
        "jain": figures.jain,
        "max_min": figures.max_min_ratio,
        "p50_wait_ns": figures.wait_p50_ns,
        "p99_wait_ns": figures.wait_p99_ns,
        "max_wait_ns": figures.wait_max_ns,
    }


def _over(a: Any, b: Any) -> float | None:
    return a / b if a is not None and b else None


def test_java_peer(benchmark: Any, config: tuple[int, int], plan: _compare.Plan) -> None:
    threads, value = config
    warmup = java_peer.warmup(plan)
    seconds = plan.contended_seconds
    java = java_peer.run("loop", threads, value, seconds, warmup)
    ours = benchmark.pedantic(
        _fastsem_window,
        kwargs={"threads": threads, "value": value, "seconds": seconds, "warmup": warmup},
        rounds=1,
        iterations=1,
    )
    ratios = {
        "throughput_x": _over(ours["ops_per_s"], java["ops_per_s"]),
        "p99_wait_x": _over(ours["p99_wait_ns"], java["p99_wait_ns"]),
        "max_wait_x": _over(ours["max_wait_ns"], java["max_wait_ns"]),
    }
    group = f"fastsem vs Java: {threads} threads, value {value}"
    workload = f"java peer {peers.config_key(threads, value)}"
    record(benchmark, _compare.FASTSEM, workload, ours, group)
    benchmark.extra_info.update({"java": dict(java), "fastsem_over_java": ratios})
    version = java.pop("java")
    FIGURES.append((group, f"{java_peer.NAME}, JDK {version}", java))
    FIGURES.append(("fastsem / Java: ratios", f"{threads} threads, value {value}", ratios))
