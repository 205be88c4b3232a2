"""python -m fastsem: the side-by-side comparison runs and reports every figure.

Only shapes and behaviours are checked, never timings or speed ratios: the
machines that run this are noisy.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from fastsem import _compare
from fastsem.__main__ import COLUMNS

FAIR_FASTSEM = {"fastsem", "fastsem (pure Python)"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fastsem", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = json.loads(out.read_text()) if out.exists() else None
    return proc, result


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def test_exits_zero(quick_run):
    proc, result = quick_run
    assert proc.returncode == 0, proc.stderr
    assert result is not None


def test_table_names_every_contender_and_column(quick_run):
    proc, _ = quick_run
    table = proc.stdout
    for c in _compare.contenders():
        assert c.name in table
    for column, _ in COLUMNS:
        assert column in table
    assert "Jain" in table and "barges" in table
    # Progress goes to stderr, never into the table.
    assert "[1/" not in table
    assert "[1/" in proc.stderr


def test_json_has_the_figures(quick_run):
    _, result = quick_run
    names = [c.name for c in _compare.contenders()]
    assert [r["name"] for r in result["contenders"]] == names
    assert "threading.Semaphore" in names and "_thread.lock" in names

    machine = result["machine"]
    for key in ("python_version", "python_implementation", "platform", "cpu_count", "date"):
        assert machine[key]
    assert result["settings"]["quick"] is True

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


def test_jain_index():
    assert _compare.jain_index([5, 5, 5, 5]) == 1.0
    assert _compare.jain_index([8, 0, 0, 0]) == 0.25
    assert _compare.jain_index([0, 0]) is None
