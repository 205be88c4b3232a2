"""What statistics() costs the uncontended path (goals.py: at most 5% of a
Python acquire()+release()).

Everything contended is counted on the slow path, where a wait dwarfs it; the
one cost on the fast path is the count of uncontended acquisitions, a relaxed
atomic add in the core. This benchmark builds the core's own acquire+release
twice with the system C compiler, as shipped and with that count compiled out
(-DFS_COUNT_UNCONTENDED=0), times both, and sets the difference against a
Python-level uncontended acquire()+release() pair measured in the same run.

    python -m pytest bench/test_statistics_overhead.py --benchmark-only -s
"""

from __future__ import annotations

import os
import subprocess
import sys
import timeit
from pathlib import Path

import pytest
from conftest import build_core_program, record

import fastsem

QUICK = bool(os.environ.get("FASTSEM_BENCH_QUICK"))
PAIRS = 200_000 if QUICK else 20_000_000


def ns_per_pair(exe: Path) -> float:
    return float(subprocess.run([str(exe), str(PAIRS)], capture_output=True, text=True,
                                check=True).stdout)  # fmt: skip


@pytest.mark.benchmark(group="statistics overhead")
def test_counting_cost_on_the_uncontended_path(benchmark, tmp_path):
    counting = build_core_program(tmp_path, "core_pair.c", "counting")
    not_counting = build_core_program(
        tmp_path, "core_pair.c", "not_counting", "-DFS_COUNT_UNCONTENDED=0"
    )
    sem = fastsem.Semaphore()
    number = 20_000 if QUICK else 2_000_000
    python_pair_ns = min(
        timeit.repeat("a(); r()", globals={"a": sem.acquire, "r": sem.release},
                      number=number, repeat=5)
    ) / number * 1e9  # fmt: skip

    def measure() -> tuple[float, float]:
        # Interleaved, best of both, so that machine noise hits both alike.
        with_count = min(ns_per_pair(counting) for _ in range(3))
        without = min(ns_per_pair(not_counting) for _ in range(3))
        return with_count, without

    with_count, without = benchmark.pedantic(measure, rounds=1, iterations=1)
    cost = max(with_count - without, 0.0)
    share = cost / python_pair_ns
    figures = {
        "core_pair_ns_counting": with_count,
        "core_pair_ns_not_counting": without,
        "python_pair_ns": python_pair_ns,
        "counting_cost_ns": cost,
        "share_of_python_pair": share,
        "implementation": fastsem.IMPLEMENTATION,
        "python": sys.version.split()[0],
    }
    record(benchmark, "fastsem", "statistics", figures)
    print(
        f"\ncore acquire+release: {with_count:.2f} ns counting, {without:.2f} ns not; "
        f"Python acquire()+release(): {python_pair_ns:.1f} ns; counting costs "
        f"{cost:.2f} ns = {share:.1%} of the Python pair"
    )
    assert with_count > 0 and without > 0  # a measurement, not a timing test
