"""The fastsem benchmark suite: pytest-benchmark configuration.

Every workload of issue 3 runs on every contender of fastsem._compare (the
same list, and the same measuring functions, as ``python -m fastsem``):

    python -m pip install '.[bench]'
    python -m pytest bench/ --benchmark-only                     # minutes
    FASTSEM_BENCH_QUICK=1 python -m pytest bench/ --benchmark-only  # smoke, seconds

pytest-benchmark's own table times one call of each benchmark's target (a
loop of N pairs, N round trips, one contended window...). The figures that
matter (ns per pair, per handoff; throughput, Jain's index, max/min count,
p50/p99/max wait, barges...) are in each benchmark's ``extra_info``, which
``--benchmark-json`` writes out, and are printed as one table per group at
the end of the run.

FASTSEM_BENCH_QUICK=1 (or ``--fastsem-quick``) shrinks every size so that the
whole suite only proves it runs: a smoke test for CI, no meaningful figure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

import pytest

from fastsem import _compare

contenders = _compare.contenders()

ROOT = Path(__file__).resolve().parent.parent


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


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does: full figures, or the CI smoke run."""

    quick: bool
    pairs: int  # acquire/release pairs (or with blocks) per round
    rounds: int  # rounds of the uncontended and handoff benchmarks
    round_trips: int  # ping-pong round trips per round
    contended_seconds: float
    contended_warmup: float
    configs: tuple[tuple[int, int], ...]  # (threads, value)
    barge_trials: int
    fifo_waiters: int
    fifo_rounds: int
    memory_objects: int
    creation_objects: int
    release_ns: tuple[int, ...]


FULL = Sizes(
    quick=False,
    pairs=200_000,
    rounds=15,
    round_trips=5_000,
    contended_seconds=1.0,
    contended_warmup=_compare.CONTENDED_WARMUP,
    configs=((4, 1), (16, 1), (4, 2), (16, 8)),
    barge_trials=_compare.BARGE_TRIALS,
    fifo_waiters=50,
    fifo_rounds=4,
    memory_objects=100_000,
    creation_objects=1_000_000,
    release_ns=(100, 1000, 5000),
)

QUICK = Sizes(
    quick=True,
    pairs=2_000,
    rounds=2,
    round_trips=50,
    contended_seconds=0.03,
    contended_warmup=0.01,
    configs=((4, 1), (16, 1), (4, 2), (16, 8)),
    barge_trials=3,
    fifo_waiters=4,
    fifo_rounds=1,
    memory_objects=1_000,
    creation_objects=5_000,
    release_ns=(20,),
)


def pytest_addoption(parser: Any) -> None:
    parser.addoption(
        "--fastsem-quick",
        action="store_true",
        help="tiny sizes: prove the benchmarks run (as FASTSEM_BENCH_QUICK=1)",
    )


def _quick(config: Any) -> bool:
    flag = os.environ.get("FASTSEM_BENCH_QUICK", "")
    return bool(config.getoption("--fastsem-quick")) or flag not in ("", "0")


@pytest.fixture(scope="session")
def sizes(request: Any) -> Sizes:
    return QUICK if _quick(request.config) else FULL


def pytest_generate_tests(metafunc: Any) -> None:
    if "contender" in metafunc.fixturenames:
        metafunc.parametrize("contender", contenders, ids=attrgetter("name"))
    if "config" in metafunc.fixturenames:
        sizes = QUICK if _quick(metafunc.config) else FULL
        metafunc.parametrize(
            "config",
            [
                pytest.param(
                    tv,
                    id=f"{tv[0]}threads-value{tv[1]}",
                    marks=pytest.mark.benchmark(group=f"contended: {tv[0]} threads, value {tv[1]}"),
                )
                for tv in sizes.configs
            ],
        )
    if "release_size" in metafunc.fixturenames:
        sizes = QUICK if _quick(metafunc.config) else FULL
        metafunc.parametrize(
            "release_size",
            [
                pytest.param(
                    n,
                    id=f"n{n}",
                    marks=pytest.mark.benchmark(group=f"release(n): {n:,} queued waiters"),
                )
                for n in sizes.release_ns
            ],
        )


# --------------------------------------------------------------------------
# One table of the extra_info figures per group, at the end of the run

# (group, contender, {figure: value}) in the order the benchmarks ran.
FIGURES: list[tuple[str, str, dict[str, Any]]] = []


@pytest.fixture
def record(benchmark: Any, contender: _compare.Contender) -> Any:
    """record(**figures) puts them in the benchmark's extra_info and in the
    summary table."""

    def put(**figures: Any) -> None:
        benchmark.extra_info.update(figures)
        FIGURES.append((str(benchmark.group), contender.name, figures))

    return put


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
        keys = list(dict.fromkeys(k for _, figures in rows for k in figures))
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
