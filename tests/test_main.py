"""python -m fastsem, at the smoke run's tiny sizes: the table's shape and the
JSON's keys.

Never a timing, nor a figure's value: those are the benchmark suite's
(bench/test_compare.py runs the real --quick run and checks every figure and
behaviour it reports; CI runs it in its benchmark step).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import platform
import subprocess
import sys

import pytest

from fastsem import _compare
from fastsem.__main__ import COLUMNS, PLOT_HINT, main

ROW_KEYS = {f.name for f in dataclasses.fields(_compare.Row)}
CONTENDED_KEYS = {f.name for f in dataclasses.fields(_compare.Contended)}
# Proves that everything runs; its figures mean nothing.
SMOKE = _compare.Plan("smoke", 0.001, 2, 0.002, 2, 0.02, 0.01, 1, 3)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """`python -m fastsem --quick --json FILE`, in this process, with the
    smoke plan's sizes: (exit status, stdout, stderr, JSON)."""
    out = tmp_path_factory.mktemp("main") / "run.json"
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(_compare.PLANS, "quick", SMOKE)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = main(["--quick", "--json", str(out)])
    return status, stdout.getvalue(), stderr.getvalue(), json.loads(out.read_text())


def test_prints_one_row_per_contender_under_every_column(smoke):
    status, stdout, stderr, _ = smoke
    assert status == 0, stderr
    lines = stdout.splitlines()
    # The headline says which interpreter and build the figures are of.
    assert f"CPython {platform.python_version()} (" in lines[0]
    assert "(GIL build)" in lines[0] or "(free-threaded build, GIL " in lines[0]
    header = lines[2]
    for column, _ in COLUMNS:
        assert column in header
    assert set(lines[3]) == {"-", " "}  # the rule under the header
    names = [c.name for c in _compare.contenders()]
    rows = lines[4 : 4 + len(names)]
    assert [row.startswith(name) for row, name in zip(rows, names)] == [True] * len(names)
    assert lines[4 + len(names)] == ""
    # Progress goes to stderr, never into the table; no goals are printed.
    assert "[1/" in stderr and "[1/" not in stdout
    assert "goal" not in stdout.lower()


def test_json_has_every_key(smoke):
    _, _, _, result = smoke
    assert set(result) == {"machine", "plan", "contenders", "total_seconds"}
    for key in ("python_version", "python_implementation", "platform", "cpu_count", "date"):
        assert result["machine"][key]
    assert result["plan"]["mode"] == "smoke"
    names = [c.name for c in _compare.contenders()]
    assert [r["name"] for r in result["contenders"]] == names
    for row in result["contenders"]:
        assert set(row) == ROW_KEYS
        assert row["pair_ns"] > 0 and row["handoff_ns"] > 0, row["name"]
        assert set(row["contended"]) == CONTENDED_KEYS
        assert 0 <= row["barges"] <= SMOKE.barge_trials, row["name"]


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
