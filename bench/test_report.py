"""bench/report.py: how the side-by-side scripts show figures and goals, and
their command line.

Tests, not benchmarks (``python -m pytest bench/test_report.py``; with
``--benchmark-only`` they are skipped). Nothing here measures anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import report


@pytest.mark.parametrize(
    ("x", "unit", "shown"),
    [
        (0.98765, "index", "0.988"),
        (1234, "count", "1,234"),
        (0, "count", "0"),
        (1.0, "fraction", "100%"),
        (0.25, "fraction", "25%"),
        (0.05, "fraction", "5.0%"),  # below 10%: one decimal, or 5% and 5.4% read alike
        (0.0853, "s", "0.0853 s"),
        (1.5e9, "ns", "1.5 s"),
        (0.5, "x", "0.5x"),
        (0.12345, "x", "0.123x"),
        (12.345, "x", "12.3x"),
        (1196.4, "x", "1196x"),  # not 1.2e+03x
    ],
)
def test_a_goal_reads_in_its_unit(x, unit, shown):
    assert report.amount(x, unit) == shown


def test_cells():
    for cell in (report.ns, report.us, report.ms, report.times):
        assert cell(None) == "-"
    assert report.fixed(None, 3) == "-"
    assert [report.ns(x) for x in (12.34, 456.7, 7890)] == ["12.3", "457", "7,890"]
    assert [report.us(x) for x in (2_345, 23_456, 234_567, 2_345_678)] == [
        "2.35", "23.5", "235", "2,346",
    ]  # fmt: skip
    assert [report.ms(x) for x in (123_456, 1_234_567, 12_345_678, 123_456_789)] == [
        "0.123", "1.23", "12.3", "123",
    ]  # fmt: skip
    assert report.fixed(12345.678, 1) == "12,345.7"
    assert [report.times(x) for x in (0.254, 9.99, 14.4, 1234.0)] == [
        "0.25x", "9.99x", "14x", "1,234x",
    ]  # fmt: skip


def test_ratio():
    assert report.ratio(3.0, 4.0) == 0.75
    assert report.ratio(None, 4.0) is None
    assert report.ratio(3.0, None) is None
    assert report.ratio(3.0, 0) is None


def test_percentile_is_the_nearest_rank():
    ordered = list(range(1, 101))
    assert [report.percentile(ordered, p) for p in (0, 1, 50, 99, 100)] == [1, 1, 50, 99, 100]
    assert report.percentile([10, 20, 30], 50) == 20
    assert report.percentile([7], 99) == 7


def test_table_layout():
    header = [["", "a", "bbbbbb"], ["", "first", ""]]
    rows = [["label", "1", "22"], ["longer label", "333", "-"]]
    assert report.format_table(header, rows).splitlines() == [
        "                  a  bbbbbb",
        "              first",
        "------------  -----  ------",
        "label             1      22",
        "longer label    333       -",
    ]
    # Only the columns named are right-aligned; no line ends in spaces.
    assert report.format_table([["x", "y", "z"]], [["1", "22", "333"]], right={1}).splitlines() == [
        "x   y  z",
        "-  --  ---",
        "1  22  333",
    ]
    assert report.column_headers(["fastsem\nfair", "multiprocessing\n", "plain"]) == [
        ["", "fastsem", "multiprocessing", "plain"],
        ["", "fair", "", ""],
    ]


def test_goal_lines_count_only_the_measured_goals():
    goals = [
        report.GoalResult("a", "a ratio", 0.4, "<=", 0.5, "x", True),
        report.GoalResult("b", "an index", 0.9, ">=", 0.99, "index", False),
        report.GoalResult("c", "a share", None, ">=", 1.0, "fraction", None),
    ]
    lines = report.goal_lines(goals, "what it says").splitlines()
    words = [" ".join(line.split()) for line in lines]
    assert words[0] == "goal what it says measured target"
    assert words[2:5] == [
        "a a ratio 0.4x <= 0.5x met",
        "b an index 0.900 >= 0.990 NOT MET",
        "c a share - >= 100% not measured",
    ]
    assert lines[-1] == "1 of 2 measured goals met"


def test_run_notes():
    quiet = {"other_cpu_seconds": 0.1, "other_cpu_share": report.NOISE_SHARE}
    assert report.run_notes({}, quiet) == []
    assert report.run_notes({}, {"other_cpu_seconds": None, "other_cpu_share": None}) == []
    busy = {"other_cpu_seconds": 3.94, "other_cpu_share": 0.68}
    assert report.run_notes({"posix_ipc.Semaphore": "not installed"}, busy) == [
        "NOTE: posix_ipc.Semaphore left out: not installed",
        "NOTE: other processes took 68% of the CPUs' time during the run (3.9 CPU s); "
        "the figures are disturbed.",
    ]


@dataclass
class _Run:
    mode: str
    figure: float


def _main(argv, run):
    return report.main(
        argv,
        prog="python bench/example.py",
        description="an example",
        plans={mode: mode for mode in ("smoke", "quick", "default")},
        run=run,
        render=lambda r: f"{r.mode} run: {r.figure}",
    )


@pytest.mark.parametrize(
    ("argv", "mode"), [([], "default"), (["--quick"], "quick"), (["--smoke"], "smoke")]
)
def test_main_runs_the_plan_asked_for(argv, mode, tmp_path, capsys):
    def run(plan, progress):
        progress("[1/1]    0 s  a step")
        return _Run(plan, 1.5)

    out = tmp_path / "run.json"
    assert _main([*argv, "--json", str(out)], run) == 0
    printed = capsys.readouterr()
    assert printed.out == f"{mode} run: 1.5\n"
    assert printed.err == "[1/1]    0 s  a step\n"
    assert json.loads(out.read_text()) == {"mode": mode, "figure": 1.5}


def test_main_says_interrupted_and_exits_130(tmp_path, capsys):
    def run(plan, progress):
        raise KeyboardInterrupt

    out = tmp_path / "run.json"
    assert _main(["--json", str(out)], run) == 130
    printed = capsys.readouterr()
    assert (printed.out, printed.err) == ("", "interrupted\n")
    assert not out.exists()


def test_steps_count_and_never_pass_the_total():
    said: list[str] = []
    say = report.steps(2, said.append)
    for text in ("one", "two", "three"):
        say(text)
    assert [line.split()[0] for line in said] == ["[1/2]", "[2/2]", "[2/2]"]
    assert said[0].endswith(" s  one")
    report.steps(2, None)("nobody listens")  # no progress callback: nothing happens
