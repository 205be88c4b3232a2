"""fastsem against Java's fair Semaphore, side by side in one run.

Java users guard their pools with ``new Semaphore(MAX, true)``; this runs
the contended loop of test_bench.py (T threads looping acquire / tiny
critical section / release, T = 4 and 16, value 1 and T/2) on it and on
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
import pytest
from conftest import FIGURES

from fastsem import _compare

pytest.importorskip("pytest_benchmark")

FASTSEM = next(c for c in _compare.contenders() if c.name == _compare.FASTSEM)


def _fastsem_window(threads: int, value: int, seconds: float, warmup: float) -> dict[str, Any]:
    window = _compare.contended_window(
        FASTSEM, threads=threads, value=value, seconds=seconds, warmup=warmup
    )
    figures = _compare.summarize_contended([window])
    gc.collect()
    waits = figures["wait_ns"]
    return {
        "ops_per_s": figures["ops_per_s"],
        "jain": figures["jain"],
        "max_min": figures["max_min_ratio"],
        "p50_wait_ns": waits["p50"],
        "p99_wait_ns": waits["p99"],
        "max_wait_ns": waits["max"],
    }


def _over(a: Any, b: Any) -> float | None:
    return a / b if a is not None and b else None


def test_java_peer(benchmark: Any, config: tuple[int, int], sizes: Any) -> None:
    threads, value = config
    warmup = sizes.contended_warmup if sizes.quick else java_peer.MIN_WARMUP_S
    seconds = sizes.contended_seconds
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
    benchmark.extra_info.update({"fastsem": ours, "java": java, "fastsem_over_java": ratios})
    group = f"fastsem vs Java: {threads} threads, value {value}"
    FIGURES.append((group, _compare.FASTSEM, ours))
    FIGURES.append((group, f"{java_peer.NAME}, JDK {java.pop('java')}", java))
    FIGURES.append(("fastsem / Java: ratios", f"{threads} threads, value {value}", ratios))
