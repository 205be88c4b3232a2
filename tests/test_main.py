"""python -m fastsem: the side-by-side comparison runs and reports every figure.

Only shapes and behaviours are checked, never timings or speed ratios: the
machines that run this are noisy.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import pytest

import fastsem
from fastsem import _compare
from fastsem.__main__ import COLUMNS, GOAL_COLUMNS, PLOT_HINT

FAIR_FASTSEM = {"fastsem", "fastsem (bounded)", "fastsem (pure Python)"}
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
GOAL_IDS = [
    "1a",
    "1b",
    "1c",
    "1d",
    "2",
    *(f"3{x} T={t}" for t in (4, 16) for x in "abcdef"),
    "4 T=4",
    "4 T=16",
    "5a",
    "5b",
    "6a",
    "6b",
    "7",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run for every test here (with --plot when matplotlib is
    there): (process, JSON result, path of the PNG or None)."""
    tmp = tmp_path_factory.mktemp("compare")
    out = tmp / "result.json"
    png = tmp / "plot.png" if HAVE_MATPLOTLIB else None
    cmd = [sys.executable, "-m", "fastsem", "--quick", "--json", str(out)]
    if png is not None:
        cmd += ["--plot", str(png)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    result = json.loads(out.read_text()) if out.exists() else None
    return proc, result, png


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def test_exits_zero(quick_run):
    proc, result, _ = quick_run
    assert proc.returncode == 0, proc.stderr
    assert result is not None


def test_table_names_every_contender_and_column(quick_run):
    proc, _, _ = quick_run
    table = proc.stdout
    for c in _compare.contenders():
        assert c.name in table
    for column, _ in COLUMNS:
        assert column in table
    assert "Jain" in table and "barges" in table
    # Progress goes to stderr, never into the table.
    assert "[1/" not in table
    assert "[1/" in proc.stderr
    # The goals table: every goal, with its verdict.
    for column, _ in GOAL_COLUMNS:
        assert column in table
    goal_lines = table.split("Goals (issue 3):", 1)[1].splitlines()
    for gid in GOAL_IDS:
        (line,) = [x for x in goal_lines if x.startswith(gid + " ")]
        assert any(f"  {v}  " in line for v in ("met", "NOT MET", "n/a")), line


def test_json_has_the_figures(quick_run):
    _, result, _ = quick_run
    names = [c.name for c in _compare.contenders()]
    assert [r["name"] for r in result["contenders"]] == names
    assert "threading.Semaphore" in names and "_thread.lock" in names

    machine = result["machine"]
    for key in ("python_version", "python_implementation", "platform", "cpu_count", "date"):
        assert machine[key]
    assert result["settings"]["quick"] is True
    assert result["settings"]["mode"] == "quick"

    for row in result["contenders"]:
        name = row["name"]
        unc, con, bar = row["uncontended"], row["contended"], row["barging"]
        assert _number(unc["ns_per_pair"]) and unc["ns_per_pair"] > 0, name

        assert con["threads"] == _compare.THREADS
        assert len(con["per_thread_counts"]) == con["threads"]
        assert con["acquisitions"] > 0, name
        assert _number(con["ops_per_s"]) and con["ops_per_s"] > 0, name
        assert _number(con["jain"]) and 0 < con["jain"] <= 1, name
        waits = con["wait_ns"]
        assert all(_number(waits[k]) for k in ("p50", "p99", "max")), name
        assert 0 <= waits["p50"] <= waits["p99"] <= waits["max"], name
        assert waits["max"] > 0, name
        # Behaviour, not timing: a value-1 semaphore admits one thread at once.
        assert con["exclusion_violations"] == 0, name
        assert con["shared_counter_ok"], name

        assert bar["trials"] == _compare.BARGE_TRIALS_QUICK
        assert 0 <= bar["barges"] <= bar["trials"], name
        if name in FAIR_FASTSEM:
            # Fair mode hands the permit to the queued waiter: never a barge.
            assert bar["barges"] == 0, name


def test_json_has_the_new_workloads(quick_run):
    _, result, _ = quick_run
    rows = {r["name"]: r for r in result["contenders"]}
    for name, row in rows.items():
        assert _number(row["uncontended"]["ns_per_pair"]), name
        assert _number(row["with_block"]["ns_per_block"]), name
        handoff = row["handoff"]
        assert _number(handoff["ns_per_handoff"]) and handoff["ns_per_handoff"] > 0, name
        assert handoff["round_trips"] > 0, name
        assert row["contended_runs"][_compare.config_key(_compare.THREADS, 1)] == row["contended"]
        for run in row["contended_runs"].values():
            assert run["acquisitions"] > 0, name
            assert len(run["per_thread_counts"]) == run["threads"], name
            ps = [p for p, _ in run["wait_percentiles_ns"]]
            waits = [w for _, w in run["wait_percentiles_ns"]]
            assert ps == sorted(ps) and waits == sorted(waits), name
            if run["value"] == 1:
                assert run["exclusion_violations"] == 0, name
            else:
                assert run["exclusion_violations"] is None, name
    # The contenders the goals compare, on the goals' configurations.
    names = [r for r in (_compare.FASTSEM, _compare.FASTSEM_PURE, _compare.THREADING) if r in rows]
    for name in names:
        for key in ("t4_v1", "t4_v2", "t16_v1", "t16_v8"):
            assert _number(rows[name]["contended_runs"][key]["ops_per_s"]), (name, key)
        assert rows[name]["fifo"]["grants"] > 0, name
        assert rows[name]["memory"]["bytes_per_object"] > 0, name
        assert rows[name]["creation"]["ns_per_object"] > 0, name
        scaling = rows[name]["release_n"]
        assert len(scaling) >= 2, name
        for n, figures in scaling.items():
            assert figures["n"] == int(n)
            assert figures["release_ns"] > 0 and figures["all_returned_ns"] > 0, name
    for name in FAIR_FASTSEM & set(rows):
        fifo = rows[name]["fifo"]
        # Behaviour, not timing: fair mode grants strictly in arrival order.
        assert fifo["in_order"] == fifo["grants"], name


def test_json_has_the_goals(quick_run):
    _, result, _ = quick_run
    goals = result["goals"]
    assert [g["id"] for g in goals] == GOAL_IDS
    for g in goals:
        assert g["op"] in ("<=", ">=")
        assert _number(g["target"])
        assert g["goal"] and g["detail"]
        # Never whether a goal is met (that is timing), only that it was judged.
        if fastsem.IMPLEMENTATION == "c":
            assert _number(g["ratio"]), g
            assert isinstance(g["met"], bool), g
        else:  # the goals are about the C core, absent here
            assert g["ratio"] is None or _number(g["ratio"]), g


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="matplotlib is not installed")
def test_plot_writes_a_png(quick_run):
    proc, _, png = quick_run
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_what_to_install(tmp_path):
    # Importing matplotlib fails as when it is not installed.
    code = (
        "import sys; sys.modules['matplotlib'] = None; "
        "from fastsem.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    png = tmp_path / "plot.png"
    proc = subprocess.run(
        [sys.executable, "-c", code, "--quick", "--plot", str(png)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert PLOT_HINT in proc.stderr
    assert "pip install 'fastsem[plot]'" in proc.stderr
    assert not png.exists()
    assert proc.stdout == ""


def test_quick_and_full_exclude_each_other():
    proc = subprocess.run(
        [sys.executable, "-m", "fastsem", "--quick", "--full"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "not allowed with" in proc.stderr


def test_jain_index():
    assert _compare.jain_index([5, 5, 5, 5]) == 1.0
    assert _compare.jain_index([8, 0, 0, 0]) == 0.25
    assert _compare.jain_index([0, 0]) is None
