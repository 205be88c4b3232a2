"""bench/async_bench.py at its smoke sizes: it runs, its table and its JSON
carry every figure of every peer that can run each workload, goals.py reads
the JSON; and its analysis counts what it says it counts.

Tests, not benchmarks (``python -m pytest bench/test_async_bench.py``; with
``--benchmark-only`` they are skipped). Only shapes and behaviours are
checked, never speed: the figures of a smoke run mean nothing. aiologic and
anyio (the ``bench`` extra) are optional: a peer that is not installed skips
its own checks, and must then be listed as left out.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from array import array
from pathlib import Path

import async_bench as ab
import goals
import pytest
import smoke

from fastsem import _impl

SCRIPT = Path(__file__).with_name("async_bench.py")
PLAN = ab.PLANS["smoke"]
OPTIONAL = {ab.AIOLOGIC: "aiologic", ab.ANYIO: "anyio"}
# What each peer can run: threads use fastsem's and aiologic's; anyio's
# CapacityLimiter has no ping-pong (tokens go back from their borrower).
CROSSING = {ab.FASTSEM, ab.FASTSEM_PURE, ab.AIOLOGIC}
NO_HANDOFF = {ab.ANYIO}
COMPILED = _impl.c_module is not None


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """(process, JSON result) of one smoke run, shared by the tests here."""
    return smoke.run(SCRIPT, tmp_path_factory.mktemp("async_bench"))


def _installed(name):
    package = OPTIONAL.get(name)
    return package is None or importlib.util.find_spec(package) is not None


def _expected():
    """The peers that must be measured here."""
    names = [ab.FASTSEM] if COMPILED else []
    names += [ab.FASTSEM_PURE, ab.ASYNCIO, ab.AIOLOGIC, ab.ANYIO]
    return [n for n in names if _installed(n)]


@pytest.fixture(params=[ab.FASTSEM, ab.FASTSEM_PURE, ab.ASYNCIO, ab.AIOLOGIC, ab.ANYIO])
def peer_name(request):
    if request.param == ab.FASTSEM and not COMPILED:
        pytest.skip("the compiled module is not in use")
    if not _installed(request.param):
        pytest.skip(f"{OPTIONAL[request.param]} is not installed")
    return request.param


def test_exits_zero_and_writes_json(smoke_run):
    proc, result = smoke_run
    assert proc.returncode == 0, proc.stderr
    assert result is not None
    assert result["tool"] == ab.TOOL
    assert result["plan"]["mode"] == "smoke"


def test_every_peer_is_measured_or_said_to_be_left_out(smoke_run):
    _, result = smoke_run
    measured = [r["name"] for r in result["contenders"]]
    # fastsem's own columns are never left out where they can run: both
    # implementations have the async API.
    assert measured == _expected()
    for name in OPTIONAL:
        assert (name in result["skipped"]) != _installed(name)
    if not COMPILED:
        assert ab.FASTSEM in result["skipped"]


def test_every_figure_of_a_peer(smoke_run, peer_name):
    _, result = smoke_run
    row = smoke.row(result, peer_name)
    assert smoke.is_number(row["async_with_ns"]) and row["async_with_ns"] > 0
    sync = peer_name in CROSSING
    assert (row["sync_with_ns"] is not None) == sync
    if sync:
        assert row["sync_with_ns"] > 0
    handoff = row["task_handoff"]
    if peer_name in NO_HANDOFF:
        assert handoff is None
    else:
        assert smoke.is_number(handoff["ns"]) and handoff["ns"] > 0
        assert len(handoff["ns_runs"]) == PLAN.handoff_repeats
    if peer_name not in CROSSING:
        assert row["thread_handoff"] is None and row["contended"] is None and row["fifo"] is None
        return
    th = row["thread_handoff"]
    for direction in ("thread_to_task", "task_to_thread"):
        one = th[direction]
        assert one["samples"] == PLAN.thread_rounds * PLAN.thread_repeats
        assert 0 < one["ns"] <= one["p99_ns"]
    assert smoke.is_number(th["round_trip_ns"]) and th["round_trip_ns"] > 0
    con = row["contended"]
    assert (con["tasks"], con["threads"], con["value"]) == (ab.TASKS, ab.THREADS, ab.VALUE)
    assert len(con["per_worker_counts"]) == ab.TASKS + ab.THREADS
    assert con["acquisitions"] == sum(con["per_worker_counts"]) > 0
    for name in ("ops_per_s", "jain", "jain_tasks", "jain_threads", "per_task_mean",
                 "task_wait_p99_ns", "wait_max_ns"):  # fmt: skip
        assert smoke.is_number(con[name]), name
    assert con["task_wait_p50_ns"] <= con["task_wait_p99_ns"] <= con["task_wait_max_ns"]
    # Behaviour, not timing: never more holders than permits.
    assert 1 <= con["max_holders"] <= ab.VALUE
    fifo = row["fifo"]
    assert fifo["grants"] == PLAN.fifo_waiters == len(fifo["order"])
    assert sorted(fifo["order"]) == list(range(PLAN.fifo_waiters))
    if peer_name in (ab.FASTSEM, ab.FASTSEM_PURE):
        # fastsem's promise: one FIFO queue for tasks and threads.
        assert fifo["in_order"] == fifo["grants"]
        assert fifo["order"] == list(range(PLAN.fifo_waiters))


def test_table_shows_every_peer_and_figure(smoke_run):
    proc, result = smoke_run
    names = [r["name"] for r in result["contenders"]]
    headings, lines = smoke.table(proc.stdout)
    assert headings[1:] == smoke.headings_of(result)
    body = {}
    for cells in lines:
        body.setdefault(cells[0], []).append(dict(zip(names, cells[1:])))
    for label in ("async with sem: pass, ns", "task-to-task handoff, us",
                  "thread-to-task handoff, us", "task-to-thread handoff, us", "Jain",
                  "FIFO across tasks and threads"):  # fmt: skip
        assert label in body, label
    # A figure a peer cannot have shows as "-", every other is there.
    for name in names:
        assert body["async with sem: pass, ns"][0][name] != "-"
        has_handoff = name not in NO_HANDOFF
        assert (body["task-to-task handoff, us"][0][name] != "-") == has_handoff
        crossing = name in CROSSING
        for label in ("thread-to-task handoff, us", "Jain", "FIFO across tasks and threads"):
            assert (body[label][0][name] != "-") == crossing, (label, name)
    # The ratios are to the peer each goal names.
    assert [cells.get(ab.ASYNCIO) for cells in body["x asyncio"]] == ["1 (base)"] * 2
    if ab.AIOLOGIC in names:
        assert all(cells[ab.AIOLOGIC] == "1 (base)" for cells in body["x aiologic"])


def test_goals_are_judged_and_read_by_goals_py(smoke_run, tmp_path):
    proc, result = smoke_run
    ids = [g["id"] for g in result["goals"]]
    assert ids == [g.id for g in goals.ASYNC_GOALS]
    assert {g.id for g in goals.ASYNC_GOALS} <= {g.id for g in goals.GOALS}
    everything = COMPILED and _installed(ab.AIOLOGIC)
    for goal in result["goals"]:
        assert goal["id"] in proc.stdout
        if everything:
            assert goal["met"] is not None, goal["id"]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(result))
    judged = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("goals.py")), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert judged.returncode == 0, judged.stderr
    assert ab.TOOL in judged.stdout.splitlines()[0]
    for goal in result["goals"]:
        (line,) = [x for x in judged.stdout.splitlines() if x.startswith(goal["id"] + " ")]
        verdict = "not measured" if goal["met"] is None else "met" if goal["met"] else "NOT MET"
        assert f"  {verdict}" in line, line
    assert "issue" not in (proc.stdout + judged.stdout).lower()


# --------------------------------------------------------------------------
# The analysis, on stamps and logs made up to show each case


def test_in_order_counts_grants_to_the_oldest_waiter():
    assert ab.in_order([0, 1, 2, 3]) == 4
    # A waiter served ahead of an older one costs one grant, not all those
    # after it; the older one held back, as many as overtook it.
    assert ab.in_order([1, 0, 2, 3]) == 3
    assert ab.in_order([1, 2, 3, 0]) == 1
    assert ab.in_order([3, 2, 1, 0]) == 1


def _stamps(*grants):
    s = ab._Stamps()
    for called, granted in grants:
        s.called.append(called)
        s.granted.append(granted)
    return s


def test_analyse_counts_the_window_only():
    tasks = [_stamps((0, 10), (10, 30), (30, 200)), _stamps((5, 20), (20, 40))]
    threads = [_stamps((0, 50), (50, 60))]
    con = ab.analyse(tasks, threads, 10, 100, max_holders=3)
    assert con.per_worker_counts == [2, 2, 2]  # the grant at 200 is outside
    assert con.acquisitions == 6 and con.jain == con.jain_tasks == con.jain_threads == 1.0
    assert con.per_task_mean == 2 and con.per_thread_mean == 2
    assert con.task_wait_max_ns == 20 and con.thread_wait_max_ns == 50
    assert con.wait_max_ns == 50 and con.max_holders == 3
    assert con.ops_per_s == pytest.approx(6 / 90e-9)


def test_jain_shows_an_unfair_share():
    tasks = [_stamps(*((i, i + 1) for i in range(0, 90, 10))), _stamps((0, 5))]
    con = ab.analyse(tasks, [], 0, 100, max_holders=1)
    assert con.per_worker_counts == [9, 1]
    assert con.jain == con.jain_tasks == pytest.approx(100 / (2 * 82))
    assert con.jain_threads is None


def test_jain_of_each_kind():
    # Each kind shares evenly among itself; the tasks come back twice as often.
    tasks = [_stamps((0, 10), (10, 20)), _stamps((0, 15), (15, 25))]
    threads = [_stamps((0, 30)), _stamps((0, 35))]
    con = ab.analyse(tasks, threads, 0, 100, max_holders=2)
    assert con.jain_tasks == con.jain_threads == 1.0
    assert con.jain == pytest.approx(36 / (4 * 10))


def test_one_way_figures():
    one = ab._one_way(array("q", range(1, 101)))
    assert (one.ns, one.p99_ns, one.samples) == (50, 99, 100)


def test_goals_read_an_async_run():
    def row(name, **figures):
        base = dict.fromkeys(["async_with_ns", "sync_with_ns", "task_handoff",
                              "thread_handoff", "contended", "fifo"])  # fmt: skip
        base.update(name=name, header=name)
        return {**base, **figures}

    def way(ns):
        return {"ns": ns, "p99_ns": ns, "samples": 1}

    data = {
        "tool": ab.TOOL,
        "contenders": [
            row(ab.FASTSEM, async_with_ns=100.0, task_handoff={"ns": 3000.0, "ns_runs": []},
                thread_handoff={"thread_to_task": way(4000.0), "task_to_thread": way(6000.0),
                                "round_trip_ns": 1.0},
                contended={"jain": 0.98}, fifo={"grants": 10, "in_order": 10}),
            row(ab.ASYNCIO, async_with_ns=400.0, task_handoff={"ns": 2000.0, "ns_runs": []}),
            row(ab.AIOLOGIC, thread_handoff={"thread_to_task": way(10000.0),
                                             "task_to_thread": way(10000.0),
                                             "round_trip_ns": 1.0}),
        ],
    }  # fmt: skip
    figures = goals.figures_of(data)
    verdicts = {v.goal.id: v for v in (goals.judge(g, [("a", figures)]) for g in goals.GOALS)}
    expected = {
        "async-with": (0.25, True),
        "async-handoff": (1.5, False),
        "thread-to-task": (0.4, True),
        "task-to-thread": (0.6, False),
        "async-jain": (0.98, False),
        "async-fifo": (1.0, True),
    }
    for id, (ratio, met) in expected.items():
        assert verdicts[id].ratio == pytest.approx(ratio), id
        assert verdicts[id].met is met, id
    assert verdicts["pair"].met is None  # not this tool's
