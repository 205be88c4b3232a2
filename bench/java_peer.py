"""Runs bench/java/SemaphorePeer.java: Java's fair Semaphore, the peer that
Java users guard their pools with (``new Semaphore(MAX, true)``,
``tryAcquire(maxWait)``), through the same loops as fastsem.

Needs a JDK 11 or newer on PATH (``java File.java`` compiles and runs a
single source file); without one, the benchmarks that use it are skipped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fastsem import _compare

SOURCE = Path(__file__).with_name("java") / "SemaphorePeer.java"
NAME = "java.util.concurrent.Semaphore (fair)"
# The JIT compiles the loop during the first second or so; the measured
# window opens after this much warm-up at least.
MIN_WARMUP_S = 1.0


def warmup(plan: _compare.Plan) -> float:
    """The warm-up before the measured window: the JIT's second, except in a
    smoke run, whose figures mean nothing anyway."""
    return plan.warmup if plan.mode == "smoke" else max(plan.warmup, MIN_WARMUP_S)


def run(mode: str, threads: int, value: int, seconds: float, warmup: float) -> dict[str, Any]:
    """One window of the Java loop ("loop": acquire / tiny critical section /
    release; "pool": tryAcquire, take an idle object, return it, release),
    as the figures fastsem's benchmarks report: ops_per_s, jain, max_min,
    p50/p99/max wait in ns."""
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java on PATH: the Java peer is not measured")
    argv = [java, str(SOURCE), mode, str(threads), str(value), str(seconds), str(warmup)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120 + seconds + warmup)
    if done.returncode != 0:
        if "Could not find or load main class" in done.stderr:  # JDK 8: no source launch
            pytest.skip(f"{java} cannot run a source file (JDK 11+ needed)")
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    counts = raw["counts"]
    return {
        "ops_per_s": raw["ops_per_s"],
        "jain": _compare.jain_index(counts),
        "max_min": max(counts) / min(counts) if min(counts) else None,
        "p50_wait_ns": raw["p50_wait_ns"],
        "p99_wait_ns": raw["p99_wait_ns"],
        "max_wait_ns": raw["max_wait_ns"],
        "java": raw["java"],
    }
