"""The fastsem benchmark suite: pytest-benchmark configuration.

Every workload runs on every contender (peers.contenders(): the package's,
plus the optional peers), through the same measuring functions as ``python -m
fastsem``:

    python -m pip install '.[bench]'
    python -m pytest bench/ --benchmark-only                        # minutes
    FASTSEM_BENCH_QUICK=1 python -m pytest bench/ --benchmark-only  # smoke, seconds
    python -m pytest bench/ --benchmark-only --benchmark-json=bench.json

pytest-benchmark's own table times one call of each benchmark's target (one
whole measurement). The figures that matter are in each benchmark's
``extra_info``, filed by ``contender`` and ``workload`` (what goals.py reads
from ``--benchmark-json``), and printed as one table per group at the end.

The sizes: PLANS and SIZES below, the "full" row, or "smoke" under
FASTSEM_BENCH_QUICK=1 or ``--fastsem-quick`` (it only proves that the suite
runs). PLANS sizes the workloads shared with ``python -m fastsem`` (its
``fastsem._compare.Plan``), SIZES the suite's own and its contended
configurations.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

import peers
import pytest

from fastsem import _compare

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sizes:
    """The sizes of the workloads only this suite runs (a row of SIZES)."""

    configs: tuple[tuple[int, int], ...]  # the contended (threads, value) runs
    fifo_waiters: int
    fifo_rounds: int
    memory_objects: int
    creation_objects: int
    release_ns: tuple[int, ...]
    release_repeats: int
    pool_pairs: int  # checkouts + returns per round, uncontended
    pool_rounds: int
    pool_seconds: float  # the pools' contended window


# 2, 4 and 16 threads, on value 1 and on threads / 2 (2 on 1 once).
CONFIGS = ((_compare.THREADS, 1), (2, 1), (4, 1), (4, 2), (16, 8))
# fmt: off
SIZES = {
    #         configs  fifo    memory   creation   release(n)             pool
    "smoke": Sizes(CONFIGS, 4, 1,  1_000,   5_000,     (20,), 1,              1_000, 2,   0.03),
    "full":  Sizes(CONFIGS, 50, 4, 100_000, 1_000_000, (100, 1000, 5000), 3,  50_000, 15, 2.0),
}
# The shared workloads: the smoke row proves that everything runs, its
# figures mean nothing; a contended configuration measures 1 s per contender.
PLANS = {
    "smoke": _compare.Plan("smoke", 0.001, 2, 0.002, 2, 0.02, 0.01, 1, 3),
    "full": dataclasses.replace(_compare.PLANS["full"], contended_seconds=1.0, rounds=1),
}
# fmt: on


def build_core_program(tmp_path: Path, source: str, name: str, *flags: str) -> Path:
    """Compiles bench/<source> with the C core into tmp_path/<name>, by the
    system C compiler ($CC, cc or gcc); skips the benchmark without one or
    without the source tree."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not (ROOT / "csrc" / "fastsem_core.c").exists():
        pytest.skip("needs a C compiler and the source tree")
    exe = tmp_path / name
    subprocess.run(
        [compiler, "-O2", "-std=c11", "-pthread", *flags, f"-I{ROOT / 'csrc'}",
         str(ROOT / "bench" / source), str(ROOT / "csrc" / "fastsem_core.c"),
         "-o", str(exe)],
        check=True,
    )  # fmt: skip
    return exe


def pytest_addoption(parser: Any) -> None:
    parser.addoption(
        "--fastsem-quick",
        action="store_true",
        help="tiny sizes: prove the benchmarks run (as FASTSEM_BENCH_QUICK=1)",
    )


def _mode(config: Any) -> str:
    flag = os.environ.get("FASTSEM_BENCH_QUICK", "")
    quick = bool(config.getoption("--fastsem-quick")) or flag not in ("", "0")
    return "smoke" if quick else "full"


@pytest.fixture(scope="session")
def plan(request: Any) -> _compare.Plan:
    return PLANS[_mode(request.config)]


@pytest.fixture(scope="session")
def sizes(request: Any) -> Sizes:
    return SIZES[_mode(request.config)]


def _param(value: Any, id: str, group: str) -> Any:
    return pytest.param(value, id=id, marks=pytest.mark.benchmark(group=group))


def pytest_generate_tests(metafunc: Any) -> None:
    mode = _mode(metafunc.config)
    if "contender" in metafunc.fixturenames:
        metafunc.parametrize("contender", peers.contenders(), ids=attrgetter("name"))
    if "config" in metafunc.fixturenames:
        metafunc.parametrize(
            "config",
            [_param(tv, f"{tv[0]}threads-value{tv[1]}", f"contended: {tv[0]} threads, "
                    f"value {tv[1]}") for tv in SIZES[mode].configs],
        )  # fmt: skip
    if "release_size" in metafunc.fixturenames:
        metafunc.parametrize(
            "release_size",
            [
                _param(n, f"n{n}", f"release(n): {n:,} queued waiters")
                for n in SIZES[mode].release_ns
            ],
        )


# --------------------------------------------------------------------------
# The figures: in extra_info, and one table per group at the end of the run

# (group, contender, {figure: value}) in the order the benchmarks ran.
FIGURES: list[tuple[str, str, dict[str, Any]]] = []


def record(
    benchmark: Any, contender: str, workload: str, figures: Any, group: str | None = None
) -> None:
    """Files `figures` (a dict, or a dataclass of results) in the benchmark's
    extra_info under `contender` and `workload`, and in the summary table
    (under `group`, by default the benchmark's)."""
    if dataclasses.is_dataclass(figures) and not isinstance(figures, type):
        figures = dataclasses.asdict(figures)
    benchmark.extra_info.update(contender=contender, workload=workload, **figures)
    FIGURES.append((group or str(benchmark.group), contender, figures))


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fastsem figures (extra_info)")
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for group, name, figures in FIGURES:
        groups.setdefault(group, []).append((name, figures))
    for group, rows in groups.items():
        # Lists (wait percentiles, per-thread counts) stay in the JSON only.
        keys = list(
            dict.fromkeys(
                k for _, f in rows for k, v in f.items() if not isinstance(v, (list, tuple))
            )
        )
        header = ["contender", *keys]
        cells = [[name, *(_cell(figures.get(k)) for k in keys)] for name, figures in rows]
        widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
        write("")
        write(group)
        for r in [header, *cells]:
            write(
                "  ".join(
                    c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
                )
            )
