"""python -m fastsem's output, every figure and behaviour it reports, the
suite's own workloads, and goals.py over a run.

Tests, not benchmarks: CI runs them in its benchmark step, outside the
library's unit suite (``python -m pytest bench/test_compare.py``; with
``--benchmark-only`` they are skipped). Only shapes and behaviours are
checked, never timings or speed ratios: the machines that run this are noisy.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import contention
import goals
import peers
import pytest
import workloads

import fastsem
from fastsem import _compare
from fastsem.__main__ import COLUMNS

FAIR_FASTSEM = {_compare.FASTSEM, peers.FASTSEM_BOUNDED, _compare.FASTSEM_PURE}
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
GOALS_SCRIPT = Path(__file__).with_name("goals.py")
# The goals whose figures python -m fastsem measures: fastsem against the
# floor, one thread and two; 16 threads on value 1 (not the per-thread counts:
# the suite's); barging.
FROM_PYTHON_M_FASTSEM = {
    "pair", "with", "handoff", "no-barging", "nonfair-throughput-16t",
    *(f"fair-{what}-16t" for what in ("throughput", "jain", "p99-wait", "max-wait")),
}  # fmt: skip


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run for every test here (with --plot when matplotlib is
    there): (process, JSON result, its path, path of the PNG or None)."""
    tmp = tmp_path_factory.mktemp("compare")
    out = tmp / "result.json"
    png = tmp / "plot.png" if HAVE_MATPLOTLIB else None
    cmd = [sys.executable, "-m", "fastsem", "--quick", "--json", str(out)]
    if png is not None:
        cmd += ["--plot", str(png)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    result = json.loads(out.read_text()) if out.exists() else None
    return proc, result, out, png


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def test_exits_zero(quick_run):
    proc, result, _, _ = quick_run
    assert proc.returncode == 0, proc.stderr
    assert result is not None


def test_table_names_every_contender_and_column(quick_run):
    proc, _, _, _ = quick_run
    table = proc.stdout
    for c in _compare.contenders():
        assert c.name in table
    for column, _ in COLUMNS:
        assert column in table
    assert "Jain" in table and "barges" in table
    assert "(GIL build)" in table or "(free-threaded build, GIL " in table
    # Progress goes to stderr, never into the table; no goal is printed.
    assert "[1/" not in table
    assert "[1/" in proc.stderr
    assert "goal" not in table.lower() and "issue" not in table.lower()


def test_json_has_the_figures(quick_run):
    _, result, _, _ = quick_run
    names = [c.name for c in _compare.contenders()]
    assert [r["name"] for r in result["contenders"]] == names
    assert "threading.Semaphore" in names and "_thread.lock" in names

    machine = result["machine"]
    for key in ("python_version", "python_implementation", "platform", "cpu_count", "date"):
        assert machine[key]
    assert result["plan"]["mode"] == "quick"

    assert result["plan"]["barge_trials"] == _compare.PLANS["quick"].barge_trials
    for row in result["contenders"]:
        name, con = row["name"], row["contended"]
        assert _number(row["pair_ns"]) and row["pair_ns"] > 0, name

        assert (con["threads"], con["value"]) == (_compare.THREADS, 1)
        assert _number(con["ops_per_s"]) and con["ops_per_s"] > 0, name
        assert _number(con["jain"]) and 0 < con["jain"] <= 1, name
        waits = [con[f"wait_{k}_ns"] for k in ("p99", "max")]
        assert all(_number(w) for w in waits), name
        assert 0 <= waits[0] <= waits[1], name
        assert waits[1] > 0, name
        # Behaviour, not timing: a value-1 semaphore admits one thread at
        # once, and the counter it guards loses no update.
        assert con["exclusive"] is True, name

        assert 0 <= row["barges"] <= result["plan"]["barge_trials"], name
        if name in FAIR_FASTSEM:
            # Fair mode hands the permit to the queued waiter: never a barge.
            assert row["barges"] == 0, name


def test_json_has_every_workload(quick_run):
    _, result, _, _ = quick_run
    rows = {r["name"]: r for r in result["contenders"]}
    for name, row in rows.items():
        assert _number(row["pair_ns"]), name
        assert _number(row["with_ns"]), name
        assert _number(row["handoff_ns"]) and row["handoff_ns"] > 0, name


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="matplotlib is not installed")
def test_plot_writes_a_png(quick_run):
    proc, _, _, png = quick_run
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------
# The suite's own workloads (in a benchmark run they have full sizes)


def _goal_contenders():
    wanted = (_compare.FASTSEM, _compare.FASTSEM_PURE, _compare.THREADING)
    return [c for c in peers.contenders() if c.name in wanted]


@pytest.mark.parametrize("peer", _goal_contenders(), ids=lambda c: c.name)
def test_workloads_report_their_figures(peer):
    fifo = workloads.measure_fifo(peer, waiters=10, rounds=2)
    assert fifo.grants == 20
    if peer.name in FAIR_FASTSEM:
        # Behaviour, not timing: fair mode grants strictly in arrival order.
        assert fifo.in_order == fifo.grants
    memory = workloads.measure_memory(peer, objects=1_000)
    assert memory is not None and memory.bytes_per_object > 0
    creation = workloads.measure_creation(peer, objects=2_000)
    assert creation is not None and creation.ns_per_object > 0
    for n in (10, 40):
        scaling = workloads.measure_release_n(peer, n=n, repeats=1)
        assert scaling.n == n
        assert scaling.release_ns > 0 and scaling.all_returned_ns > 0
        assert scaling.release_ns_per_waiter == scaling.release_ns / n


def test_posix_ipc_is_a_contender_only_when_installed():
    names = [c.name for c in peers.contenders()]
    installed = importlib.util.find_spec("posix_ipc") is not None
    assert (peers.POSIX_IPC in names) <= installed
    assert names[-1] == _compare.LOCK


# --------------------------------------------------------------------------
# goals.py


def _goals(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GOALS_SCRIPT), *args], capture_output=True, text=True, timeout=60
    )


def test_goals_judges_a_run(quick_run):
    _, _, path, _ = quick_run
    proc = _goals(str(path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    measured = set()
    for g in goals.GOALS:
        (line,) = [x for x in lines if x.startswith(g.id + " ")]
        verdict = [v for v in ("NOT MET", "not measured", "met") if f"  {v}" in line]
        assert verdict, line
        if verdict[0] != "not measured":
            measured.add(g.id)
    # python -m fastsem measures every goal of its workloads, in C (the other
    # contenders and configurations are the benchmark suite's).
    if fastsem.IMPLEMENTATION == "c":
        assert measured == FROM_PYTHON_M_FASTSEM
    assert "issue" not in proc.stdout.lower()


def test_goals_fail_only_when_asked(quick_run, tmp_path):
    _, result, _, _ = quick_run
    if fastsem.IMPLEMENTATION != "c":
        pytest.skip("the goals are about the C core")
    slow = json.loads(json.dumps(result))
    for row in slow["contenders"]:
        if row["name"] == _compare.FASTSEM:
            row["pair_ns"] = 1e9  # far slower than a lock: the goal is not met
    path = tmp_path / "slow.json"
    path.write_text(json.dumps(slow))
    lenient, strict = _goals(str(path)), _goals(str(path), "--strict")
    (line,) = [x for x in lenient.stdout.splitlines() if x.startswith("pair ")]
    assert "NOT MET" in line
    assert lenient.returncode == 0, lenient.stderr
    assert strict.returncode == 1, strict.stderr


def test_goals_read_the_suite_json():
    # The shape pytest-benchmark writes, with the extra_info conftest.record() files.
    def bench(contender, workload, **figures):
        return {"extra_info": {"contender": contender, "workload": workload, **figures}}

    data = {
        "machine_info": {"python_version": "3.x"},
        "datetime": "now",
        "benchmarks": [
            bench(peers.POOL, "pool contended", max_wait_ms=3.0),
            bench(peers.CORE_FLOOR, "pool contended", max_wait_ms=2.5),
            bench(peers.QUEUEPOOL, "pool contended", max_wait_ms=20.0),
            bench(_compare.FASTSEM, "fifo", in_order=9, grants=10),
        ],
    }
    verdicts = {
        v.goal.id: v for v in (goals.judge(g, [("b", goals.figures_of(data))]) for g in goals.GOALS)
    }
    # The pool's worst wait: at most 1.5x the C core's floor, measured in the
    # same run, and at most a quarter of QueuePool's.
    assert verdicts["pool-max-wait-floor"].ratio == 1.2
    assert verdicts["pool-max-wait-floor"].met is True
    assert verdicts["pool-max-wait"].ratio == 0.15
    assert verdicts["pool-max-wait"].met is True
    assert verdicts["fifo-order"].met is False
    assert verdicts["memory"].met is None


# --------------------------------------------------------------------------
# bench/contention.py: 2, 4 and 16 threads on value 1 and T/2, and the floor

CONTENTION_SCRIPT = Path(__file__).with_name("contention.py")


@pytest.fixture(scope="module")
def contention_run(tmp_path_factory):
    """One tiny run of bench/contention.py: (process, JSON result, its path)."""
    out = tmp_path_factory.mktemp("contention") / "run.json"
    cmd = [sys.executable, str(CONTENTION_SCRIPT), "--seconds", "0.05", "--rounds", "1",
           "--barge-trials", "5", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text()) if out.exists() else None
    return proc, result, out


def test_contention_prints_every_configuration(contention_run):
    proc, _, _ = contention_run
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "(GIL build)" in lines[0] or "(free-threaded build, GIL " in lines[0]
    assert any(line.startswith(contention.FLOOR) for line in lines)
    for threads, value in contention.CONFIGS:
        for c in _compare.contenders():
            if value == 1 or not c.is_lock:
                label = c.name + ("*" if c.is_lock else "")
                cells = [str(threads), str(value), label]
                row = [x for x in lines if re.split(r"\s{2,}", x)[:3] == cells]
                assert len(row) == 1, (threads, value, c.name)
    assert "goal" not in proc.stdout.lower() and "issue" not in proc.stdout.lower()


def test_contention_json_has_every_figure(contention_run):
    _, result, _ = contention_run
    rows = {r["name"]: r for r in result["contenders"]}
    assert result["contenders"][0]["name"] == contention.FLOOR
    assert rows[contention.FLOOR]["pair_ns"] > 0
    assert rows[contention.FLOOR]["contended"] == []
    keys = {peers.config_key(t, v) for t, v in contention.CONFIGS}
    assert keys == {"t2_v1", "t4_v1", "t4_v2", "t16_v1", "t16_v8"}
    for c in _compare.contenders():
        row = rows[c.name]
        assert _number(row["pair_ns"]) and row["pair_ns"] > 0, c.name
        want = {k for k in keys if k.endswith("_v1")} if c.is_lock else keys
        runs = {peers.config_key(run["threads"], run["value"]): run for run in row["contended"]}
        assert set(runs) == want and len(runs) == len(row["contended"]), c.name
        for key, run in runs.items():
            assert run["acquisitions"] > 0, (c.name, key)
            assert _number(run["ops_per_s"]) and run["ops_per_s"] > 0, (c.name, key)
            assert len(run["per_thread_counts"]) == run["threads"], (c.name, key)
            waits = [w for _, w in run["wait_percentiles_ns"]]
            assert waits == sorted(waits), (c.name, key)
            ps = [p for p, _ in run["wait_percentiles_ns"]]
            assert ps == sorted(ps) and 50.0 in ps, (c.name, key)
            assert run["wait_p50_ns"] <= run["wait_p99_ns"] <= run["wait_max_ns"], (c.name, key)
            # Behaviour, not timing: a value-1 semaphore admits one thread at once.
            assert run["exclusive"] is (True if run["value"] == 1 else None), (c.name, key)
        if c.name in FAIR_FASTSEM:
            assert row["barges"] == 0, c.name


def test_the_floor_goal_is_judged_only_with_the_gil_off(contention_run, tmp_path):
    _, result, _ = contention_run
    (goal,) = [g for g in goals.GOALS if g.id == "free-threaded-floor"]
    verdicts = {}
    for gil in (True, False):
        data = json.loads(json.dumps(result))
        data["machine"]["gil_enabled"] = gil
        verdicts[gil] = goals.judge(goal, [("run", goals.figures_of(data))])
    assert verdicts[True].met is None  # not measured: a GIL build calls faster
    if fastsem.IMPLEMENTATION == "c":
        assert verdicts[False].met is not None
        floor = result["contenders"][0]["pair_ns"]
        ours = next(r for r in result["contenders"] if r["name"] == _compare.FASTSEM)
        assert verdicts[False].ratio == ours["pair_ns"] / floor
    proc = _goals(str(contention_run[2]))
    assert proc.returncode == 0, proc.stderr
    assert "bench/contention.py" in proc.stdout
