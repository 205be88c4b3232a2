"""fastsem's performance goals, as data, and the script that judges a run.

    python -m fastsem --full --json run.json
    python -m pytest bench/ --benchmark-only --benchmark-json=bench.json
    python bench/goals.py run.json bench.json [--strict]
    python bench/contention.py --json ft.json    # on a free-threaded build
    python bench/goals.py ft.json
    python bench/async_bench.py --json async.json
    python bench/goals.py async.json

Each goal is a ratio of two figures measured side by side (or one figure), a
direction and a target. The files are JSON of ``python -m fastsem --json``,
of ``bench/contention.py --json``, of ``bench/async_bench.py --json`` or of
the benchmark suite's ``--benchmark-json``, in any order; all name
each figure by contender, workload and field. ``python -m fastsem`` measures
fastsem, threading.Semaphore and a lock, uncontended, in a handoff, with 16
threads on value 1 and for barging; the bounded semaphores, the other thread
counts, FIFO order, memory, creation, release(n), the pools and what
statistics cost are the suite's only; the async API's figures are
async_bench.py's. A goal takes both of its figures from
the first file that has both, so a ratio is never made of two runs; a goal
whose figures are in no file is listed as not measured.

Prints every goal with its ratio, target and verdict. Exits 0, or with
--strict, 1 when a measured goal is not met.
"""

from __future__ import annotations

import argparse
import json
import operator
import sys
from dataclasses import dataclass
from typing import Any, Callable

import async_bench
import contention
import peers
import processes
import report

from fastsem import _compare as c


@dataclass(frozen=True)
class Figure:
    contender: str
    workload: str  # "pair", "contended t16_v1", "pool contended"... (see figures_of)
    field: str


@dataclass(frozen=True)
class Goal:
    id: str
    what: str
    figure: Figure
    op: str  # "<=", ">=", "<" or ">": ratio op target
    target: float
    per: Figure | None = None  # the ratio's denominator; None: the figure itself
    unit: str = "x"  # how the ratio reads: "x", "fraction", "count", "index" or "ns"
    gil_off_only: bool = False  # judged only from a run with the GIL off


OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}


def _versus(
    id: str, what: str, workload: str, field: str, op: str, target: float, ours: str, theirs: str
) -> Goal:
    """A figure of `ours` over the same figure of `theirs`, in one workload."""
    return Goal(
        id, what, Figure(ours, workload, field), op, target, Figure(theirs, workload, field)
    )


def _uncontended() -> list[Goal]:
    """fastsem against the floor, the interpreter's own lock, in one thread."""
    pair, block = "uncontended acquire()+release()", "`with sem: pass`"
    return [
        _versus(f"{id}{suffix}", f"{what}: fastsem.{cls} / a _thread lock", workload, "ns",
                "<=", target, ours, c.LOCK)
        for id, what, workload, target in [("pair", pair, "pair", 0.55),
                                           ("with", block, "with_block", 1.0)]
        for suffix, cls, ours in [("", "Semaphore", c.FASTSEM),
                                  ("-bounded", "BoundedSemaphore", peers.FASTSEM_BOUNDED)]
    ] + [_versus("handoff", "handoff ping-pong between 2 threads: fastsem / _thread locks",
                 "handoff", "ns", "<=", 1.15, c.FASTSEM, c.LOCK)]  # fmt: skip


def _contended(t: int) -> list[Goal]:
    """t threads on value 1 (and t/2): fair mode against the pure-Python FIFO
    semaphore and threading; non-fair mode's throughput against threading."""
    k1, kh = f"contended {peers.config_key(t, 1)}", f"contended {peers.config_key(t, t // 2)}"
    fair, pure = f"fair, {t} threads, value 1:", "the pure-Python FIFO semaphore"
    return [
        _versus(f"fair-throughput-{t}t", f"{fair} throughput, fastsem / {pure}", k1,
                "ops_per_s", ">=", 1.5, c.FASTSEM, c.FASTSEM_PURE),
        Goal(f"fair-jain-{t}t", f"{fair} Jain's index of fastsem",
             Figure(c.FASTSEM, k1, "jain"), ">=", 0.99, unit="index"),
        Goal(f"fair-max-min-{t}t", f"{fair} max/min per-thread count of fastsem",
             Figure(c.FASTSEM, k1, "max_min_ratio"), "<=", 1.1),
        _versus(f"fair-p99-wait-{t}t", f"{fair} p99 wait, fastsem / {pure}", k1,
                "wait_p99_ns", "<=", 1.0, c.FASTSEM, c.FASTSEM_PURE),
        _versus(f"fair-max-wait-{t}t", f"{fair} max wait, fastsem / threading.Semaphore", k1,
                "wait_max_ns", "<=", 0.1, c.FASTSEM, c.THREADING),
        _versus(f"fair-throughput-{t}t-v{t // 2}",
                f"fair, {t} threads, value {t // 2}: throughput, fastsem / {pure}", kh,
                "ops_per_s", ">=", 1.5, c.FASTSEM, c.FASTSEM_PURE),
        _versus(f"nonfair-throughput-{t}t",
                f"non-fair, {t} threads, value 1: throughput, fastsem / threading.Semaphore", k1,
                "ops_per_s", ">=", 1.5, c.FASTSEM_NONFAIR, c.THREADING),
    ]  # fmt: skip


def _order_and_size() -> list[Goal]:
    """Strict FIFO order; the cost of an object; release(n) in O(n)."""
    fifo = Figure(c.FASTSEM, "fifo", "in_order")
    per_waiter = "release_ns_per_waiter"
    return [
        Goal("fifo-order", "strict FIFO: share of fastsem's grants in arrival order",
             fifo, ">=", 1.0, Figure(c.FASTSEM, "fifo", "grants"), unit="fraction"),
        Goal("no-barging", "strict FIFO: a releasing thread barges ahead of a queued waiter",
             Figure(c.FASTSEM, "barging", "barges"), "<=", 0, unit="count"),
        _versus("memory", "memory per object (tracemalloc): fastsem / threading.Semaphore",
                "memory", "bytes_per_object", "<=", 0.25, c.FASTSEM, c.THREADING),
        _versus("creation", "creation time: fastsem / threading.Semaphore",
                "creation", "ns_per_object", "<=", 0.2, c.FASTSEM, c.THREADING),
        Goal("release-n", "release(n) is O(n): fastsem's cost per waiter, n=5,000 / n=100",
             Figure(c.FASTSEM, "release_n 5000", per_waiter), "<=", 2.0,
             Figure(c.FASTSEM, "release_n 100", per_waiter)),
    ]  # fmt: skip


def _pool() -> list[Goal]:
    """fastsem.ResourcePool against SQLAlchemy's QueuePool and a queue.Queue
    pool; and what statistics() costs the semaphore's uncontended path."""
    idle, busy = "pool, idle checkout + return:", "pool of 4, 16 threads: max wait,"
    return [
        _versus("pool-uncontended", f"{idle} SQLAlchemy QueuePool / ResourcePool",
                "pool uncontended", "ns_per_pair", ">=", 3.0, peers.QUEUEPOOL, peers.POOL),
        _versus("pool-uncontended-queue", f"{idle} a queue.Queue pool / ResourcePool",
                "pool uncontended", "ns_per_pair", ">", 1.0, peers.QUEUE_POOL, peers.POOL),
        # A strictly FIFO pool's worst wait is the scheduler's: a granted thread
        # that the OS does not run holds up everyone queued behind it. The C
        # core alone, with no Python, shows that floor in the same run, so the
        # pool is judged against it as well as against QueuePool.
        _versus("pool-max-wait-floor", f"{busy} ResourcePool / the C core alone (the floor)",
                "pool contended", "max_wait_ms", "<=", 1.5, peers.POOL, peers.CORE_FLOOR),
        _versus("pool-max-wait", f"{busy} ResourcePool / SQLAlchemy QueuePool",
                "pool contended", "max_wait_ms", "<=", 0.25, peers.POOL, peers.QUEUEPOOL),
        Goal("statistics-cost", "what statistics cost an uncontended acquire()+release()",
             Figure(c.FASTSEM, "statistics", "share_of_python_pair"), "<=", 0.05,
             unit="fraction"),
    ]  # fmt: skip


def _free_threaded() -> list[Goal]:
    """With the GIL off (3.13t runs without the specializing interpreter, so
    every call costs more): fastsem's pair against the interpreter's own
    floor, two calls of a no-op builtin method, measured in the same loops
    (bench/contention.py); and fairness with two threads too."""
    return [
        Goal("free-threaded-floor",
             "GIL off: uncontended acquire()+release(), fastsem / two no-op builtin calls",
             Figure(c.FASTSEM, "pair", "ns"), "<=", 1.15, Figure(contention.FLOOR, "pair", "ns"),
             gil_off_only=True),
        Goal("fair-jain-2t", "fair, 2 threads, value 1: Jain's index of fastsem",
             Figure(c.FASTSEM, f"contended {peers.config_key(2, 1)}", "jain"), ">=", 0.99,
             unit="index"),
    ]  # fmt: skip


def _processes() -> list[Goal]:
    """fastsem.ProcessSemaphore, fair, against multiprocessing.Semaphore (a
    bare sem_t), from bench/processes.py --json: the bookkeeping that makes
    recovery possible against nothing; the handoff; fairness and the worst
    wait with 4 and 16 processes; SIGKILL of a holder to the next grant."""
    fair, mp = processes.FAIR, processes.MULTIPROCESSING
    found = [
        _versus(
            "process-pair",
            "processes, uncontended acquire()+release(): "
            "fastsem.ProcessSemaphore / multiprocessing",
            "pair",
            "ns",
            "<=",
            1.2,
            fair,
            mp,
        ),
        _versus(
            "process-handoff",
            "handoff between 2 processes: fastsem.ProcessSemaphore / multiprocessing",
            "handoff",
            "ns",
            "<=",
            0.5,
            fair,
            mp,
        ),
    ]
    for n in processes.PLANS["default"].workers:
        k, on = f"contended {processes.contended_key(n)}", f"{n} processes, value 1:"
        found += [
            Goal(
                f"process-jain-{n}p",
                f"{on} Jain's index of fastsem.ProcessSemaphore",
                Figure(fair, k, "jain"),
                ">=",
                0.99,
                unit="index",
            ),
            Goal(
                f"process-barging-{n}p",
                f"{on} barges of fastsem.ProcessSemaphore",
                Figure(fair, k, "barges"),
                "<=",
                0,
                unit="count",
            ),
            _versus(
                f"process-max-wait-{n}p",
                f"{on} max wait, fastsem.ProcessSemaphore / multiprocessing",
                k,
                "wait_max_ns",
                "<=",
                0.1,
                fair,
                mp,
            ),
            # The floor: a FIFO semaphore served by the kernel waits as long
            # at worst, about one scheduler time slice on a busy machine (a
            # holder preempted with the permit); multiprocessing's worst wait
            # swings from run to run with how long its barging starves one.
            _versus(
                f"process-max-wait-floor-{n}p",
                f"{on} max wait, fastsem.ProcessSemaphore / sysv_ipc (FIFO, in the kernel)",
                k,
                "wait_max_ns",
                "<=",
                1.5,
                fair,
                processes.SYSV_IPC,
            ),
        ]
    found.append(
        Goal(
            "process-recovery-p99",
            "SIGKILL of a holder to the next grant, p99: fastsem.ProcessSemaphore",
            Figure(fair, "recovery", "p99_ns"),
            "<=",
            1e9,
            unit="ns",
        )
    )
    return found


def _async() -> list[Goal]:
    """fastsem's async API (the compiled Semaphore, fair mode), from
    bench/async_bench.py --json: `async with` and the handoff between tasks
    against asyncio.Semaphore on its own loop; the handoffs between a thread
    and a task against aiologic's Semaphore, the other semaphore both can
    use; fairness and FIFO order with tasks and threads in one queue."""
    a = async_bench
    fs, mixed = a.FASTSEM, f"{a.CONTENDED}:"
    return [
        _versus("async-with", "uncontended `async with sem: pass`: fastsem / asyncio.Semaphore",
                "async_with", "ns", "<=", 0.5, fs, a.ASYNCIO),
        _versus("async-handoff", "handoff between 2 tasks of one loop: fastsem / asyncio.Semaphore",
                "task_handoff", "ns", "<=", 1.0, fs, a.ASYNCIO),
        _versus("thread-to-task", "handoff from a thread to a task, median: fastsem / aiologic",
                "thread_to_task", "ns", "<=", 0.5, fs, a.AIOLOGIC),
        _versus("task-to-thread", "handoff from a task to a thread, median: fastsem / aiologic",
                "task_to_thread", "ns", "<=", 0.5, fs, a.AIOLOGIC),
        Goal("async-jain", f"{mixed} Jain's index of fastsem",
             Figure(fs, "tasks_threads", "jain"), ">=", 0.99, unit="index"),
        Goal("async-fifo", "FIFO across tasks and threads: share of fastsem's grants in order",
             Figure(fs, "fifo_kinds", "in_order"), ">=", 1.0,
             Figure(fs, "fifo_kinds", "grants"), unit="fraction"),
    ]  # fmt: skip


ASYNC_GOALS = _async()

# Unless a goal says otherwise, "fastsem" is the C core in fair mode.
GOALS = [
    *_uncontended(), *_contended(4), *_contended(16), *_free_threaded(), *_order_and_size(),
    *_pool(), *_processes(), *ASYNC_GOALS,
]  # fmt: skip


# --------------------------------------------------------------------------
# Reading runs

Figures = dict[tuple[str, str], dict[str, Any]]
BUILD = ("interpreter", "build")  # where figures_of files whether the GIL was on


def figures_of(data: dict[str, Any]) -> Figures:
    """{(contender, workload): {field: value}} of one JSON file."""
    found: Figures = {}
    if "benchmarks" in data:  # pytest-benchmark: conftest.record() filed them
        for bench in data["benchmarks"]:
            info = bench.get("extra_info") or {}
            if "contender" in info and "workload" in info:
                found[(info["contender"], info["workload"])] = info
        return found
    if data.get("tool") == async_bench.TOOL:
        for row in data["contenders"]:
            name = row["name"]
            for workload, key in (("async_with", "async_with_ns"), ("sync_with", "sync_with_ns")):
                if row.get(key) is not None:
                    found[(name, workload)] = {"ns": row[key]}
            handoff = row.get("thread_handoff") or {}
            for workload, figures in (("task_handoff", row.get("task_handoff")),
                                      ("thread_to_task", handoff.get("thread_to_task")),
                                      ("task_to_thread", handoff.get("task_to_thread")),
                                      ("tasks_threads", row.get("contended")),
                                      ("fifo_kinds", row.get("fifo"))):  # fmt: skip
                if figures:
                    found[(name, workload)] = figures
        return found
    if "start_method" in data:  # bench/processes.py
        for row in data["contenders"]:
            for workload in ("pair", "handoff", "recovery"):
                if row.get(workload):
                    found[(row["name"], workload)] = row[workload]
            for key, con in (row.get("contended") or {}).items():
                found[(row["name"], f"contended {key}")] = con
        return found
    # python -m fastsem's Run (one contended configuration), or bench/contention.py's
    # run of the same shape (a list of them)
    found[BUILD] = {"gil_enabled": data["machine"].get("gil_enabled", True)}
    for row in data["contenders"]:
        name = row["name"]
        for workload, field in (("pair", "pair_ns"), ("with_block", "with_ns"),
                                ("handoff", "handoff_ns")):  # fmt: skip
            if row.get(field) is not None:
                found[(name, workload)] = {"ns": row[field]}
        if row.get("barges") is not None:
            found[(name, "barging")] = {"barges": row["barges"]}
        contended = row.get("contended") or []
        for con in contended if isinstance(contended, list) else [contended]:
            found[(name, f"contended {peers.config_key(con['threads'], con['value'])}")] = con
    return found


def _value(figures: Figures, f: Figure) -> float | None:
    v = figures.get((f.contender, f.workload), {}).get(f.field)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass
class Verdict:
    goal: Goal
    ratio: float | None = None
    met: bool | None = None  # None: not measured
    values: tuple[float, ...] = ()
    source: str = ""


def judge(goal: Goal, sources: list[tuple[str, Figures]]) -> Verdict:
    """The goal measured in the first source that has all of its figures."""
    for name, figures in sources:
        if goal.gil_off_only and figures.get(BUILD, {}).get("gil_enabled", True):
            continue
        a = _value(figures, goal.figure)
        b = _value(figures, goal.per) if goal.per else 1.0
        if a is None or not b:
            continue
        ratio = a / b
        values = (a, b) if goal.per else (a,)
        return Verdict(goal, ratio, OPS[goal.op](ratio, goal.target), values, name)
    return Verdict(goal)


# --------------------------------------------------------------------------
# Printing


def _figure(x: float, field: str) -> str:
    if (
        field.endswith("_ns")
        or field in ("ns", "ns_per_pair", "ns_per_object")
        or "ns_per" in field
    ):
        if x >= 1e6:
            return f"{x / 1e6:.2f} ms"
        if x >= 1e4:
            return f"{x / 1e3:.1f} us"
        return f"{x:.1f} ns" if x < 100 else f"{x:,.0f} ns"
    if field.endswith("_ms"):
        return f"{x:.2f} ms"
    if field == "ops_per_s":
        return f"{x:,.0f}/s"
    if field == "bytes_per_object":
        return f"{x:,.0f} B"
    return f"{x:.3g}" if isinstance(x, float) and not x.is_integer() else f"{x:,.0f}"


def row(v: Verdict) -> list[str]:
    g = v.goal
    fields = [g.figure.field] + ([g.per.field] if g.per else [])
    return [
        g.id,
        g.what,
        "-" if v.ratio is None else report.amount(v.ratio, g.unit),
        f"{g.op} {report.amount(g.target, g.unit)}",
        report.verdict(v.met),
        " / ".join(_figure(x, f) for x, f in zip(v.values, fields)),
        v.source,
    ]


def table(verdicts: list[Verdict]) -> str:
    header = ["goal", "what (fastsem: the C core, fair mode, unless said)", "measured",
              "target", "", "figures", "from"]  # fmt: skip
    return report.format_table([header], [row(v) for v in verdicts], right={2, 3})


def describe(name: str, data: dict[str, Any]) -> str:
    """One line on where a file's figures come from."""
    if "benchmarks" in data:
        m = data.get("machine_info", {})
        return f"{name}: benchmark suite, {m.get('python_version', '?')}, {data.get('datetime')}"
    m, mode = data["machine"], data["plan"]["mode"]
    tool = "bench/contention.py" if mode == "contention" else "python -m fastsem"
    if data.get("tool") == async_bench.TOOL:
        tool = async_bench.TOOL
    gil = "" if m.get("gil_enabled", True) else " (GIL off)"
    line = (
        f"{name}: {tool}, {m['python_implementation']} {m['python_version']}{gil}, "
        f"fastsem {m['fastsem_version']} ({m['fastsem_implementation']}), {mode} run, {m['date']}"
    )
    load, cpus = m.get("load_average"), m.get("cpu_count") or 1
    if load is not None and load >= cpus / 2:
        line += f"; NOTE: load average {load:.1f} on {cpus} CPUs when it began"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="FILE.json", help="a run's figures")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a measured goal is not met"
    )
    args = parser.parse_args(argv)
    sources = []
    for path in args.runs:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        print(describe(path, data))
        sources.append((path, figures_of(data)))
    verdicts = [judge(g, sources) for g in GOALS]
    met = sum(1 for v in verdicts if v.met)
    judged = sum(1 for v in verdicts if v.met is not None)
    print()
    print(table(verdicts))
    print(
        f"{met} of {judged} measured goals met"
        + (f"; {len(GOALS) - judged} not measured" if judged < len(GOALS) else "")
        + "; each ratio is of two figures from one run."
    )
    return 1 if args.strict and met < judged else 0


if __name__ == "__main__":
    sys.exit(main())
