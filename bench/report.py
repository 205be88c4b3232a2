"""What the side-by-side benchmark scripts share: their command line and how
they show a run.

bench/processes.py and bench/async_bench.py each measure fastsem beside its
peers and print one page: a headline, a table with a column per peer, a
footnote, the goals with their verdicts, and notes. They differ in what they
measure; this module is what they do alike:

- ``main``: the command line (``--quick``, ``--json FILE``, and ``--smoke``
  for the tests), progress on stderr, exit status 130 on Ctrl-C;
- ``steps``: the progress lines, "[step/total] seconds  what";
- ``render``: the page, ``format_table`` and ``column_headers``: the table;
- ``ns``, ``us``, ``ms``, ``fixed``, ``times``: how a cell shows a figure;
- ``GoalResult``, ``goal_lines``, ``amount``, ``verdict``: how a goal reads;
- ``Noise`` and ``run_notes``: the notes every run may carry (peers left
  out, other processes' load on the machine);
- ``percentile`` and ``ratio``: the arithmetic the figures share.

bench/goals.py prints its verdicts with the same table, units and words.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

PlanT = TypeVar("PlanT")
RunT = TypeVar("RunT", bound="DataclassInstance")
Say = Optional[Callable[[str], None]]

NOISE_SHARE = 0.05  # of the machine's CPU time: more from other processes is noted


# --------------------------------------------------------------------------
# The command line


def main(
    argv: list[str] | None,
    *,
    prog: str,
    description: str,
    plans: Mapping[str, PlanT],
    run: Callable[[PlanT, Say], RunT],
    render: Callable[[RunT], str],
) -> int:
    """Parses `argv`, runs the plan it names ("default", "quick" or "smoke"
    of `plans`) with progress on stderr, writes ``--json FILE`` (the run
    through dataclasses.asdict) and prints render(run). Returns the exit
    status: 0, or 130 when interrupted."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a short run, noisier figures")
    # The smoke test's sizes: they prove the script runs, nothing more.
    size.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    args = parser.parse_args(argv)
    plan = plans["smoke" if args.smoke else "quick" if args.quick else "default"]

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        result = run(plan, progress)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(result), f, indent=2)
            f.write("\n")
    print(render(result))
    return 0


def steps(total: int, progress: Say) -> Callable[[str], None]:
    """say(text): passes "[n/total] seconds  text" to `progress` (if any),
    n counting the calls (never past `total`), the seconds since now."""
    done = [0]
    t0 = time.perf_counter()

    def say(text: str) -> None:
        done[0] += 1
        if progress is not None:
            progress(f"[{min(done[0], total)}/{total}] {time.perf_counter() - t0:4.0f} s  {text}")

    return say


# --------------------------------------------------------------------------
# The figures


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b; None if either is missing or b is 0."""
    return a / b if a is not None and b else None


def percentile(ordered: list[int], p: float) -> int:
    """The nearest-rank `p`th percentile of an ascending, non-empty list."""
    return ordered[min(max(1, math.ceil(p / 100 * len(ordered))), len(ordered)) - 1]


# --------------------------------------------------------------------------
# Cells: a figure as the table shows it, "-" where there is none


def ns(x: float | None) -> str:
    """Nanoseconds: "12.3", "456", "7,890"."""
    return "-" if x is None else f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def us(x: float | None) -> str:
    """`x` nanoseconds in microseconds, three significant digits or so."""
    if x is None:
        return "-"
    x /= 1e3
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def ms(x: float | None) -> str:
    """`x` nanoseconds in milliseconds, three significant digits or so."""
    if x is None:
        return "-"
    x /= 1e6
    digits = 0 if x >= 100 else 1 if x >= 10 else 2 if x >= 1 else 3
    return f"{x:.{digits}f}"


def fixed(x: float | None, digits: int) -> str:
    """`digits` decimals, thousands separated: "12,345.6"."""
    return "-" if x is None else f"{x:,.{digits}f}"


def times(x: float | None) -> str:
    """A ratio to the base peer's figure: "0.25x", "14x"."""
    if x is None:
        return "-"
    return f"{x:.2f}x" if x < 10 else f"{x:,.0f}x"


# --------------------------------------------------------------------------
# The table


def format_table(
    header: list[list[str]], rows: list[list[str]], right: Collection[int] | None = None
) -> str:
    """The header's lines, a rule, the rows: columns two spaces apart, each
    as wide as its widest cell, the columns numbered in `right` (by default
    all but the first) right-aligned, the others left-aligned."""
    everything = [*header, *rows]
    widths = [max(len(r[i]) for r in everything) for i in range(len(header[0]))]
    if right is None:
        right = range(1, len(widths))

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([*(fmt(h) for h in header), rule, *(fmt(r) for r in rows)])


def column_headers(headings: list[str]) -> list[list[str]]:
    """A table's two header lines for columns headed "first\\nsecond" (the
    second line may be missing), the first column's heading empty."""
    split = [h.split("\n") for h in headings]
    return [["", *(s[0] for s in split)], ["", *(s[1] if len(s) > 1 else "" for s in split)]]


class Column(Protocol):
    @property
    def header(self) -> str: ...  # the column's heading, "first line\nsecond line"


class Shown(Protocol):
    """What render() reads of a script's Run."""

    @property
    def contenders(self) -> Sequence[Column]: ...
    @property
    def goals(self) -> Sequence[GoalResult]: ...
    @property
    def skipped(self) -> Mapping[str, str]: ...  # peer: why it is not in the run
    @property
    def noise(self) -> Mapping[str, Any]: ...  # Noise.read()


def render(
    run: Shown, headline: str, table: list[list[str]], footnote: str, what: str, warnings: list[str]
) -> str:
    """The page of a run: the headline; the table's rows under a column per
    contender; the footnote; the goals (`what` heads the column of what each
    says); then the notes of run_notes() and `warnings`, if any."""
    notes = [*run_notes(run.skipped, run.noise), *warnings]
    sections = [
        headline,
        format_table(column_headers([c.header for c in run.contenders]), table),
        footnote,
        goal_lines(run.goals, what),
        *(["\n".join(notes)] if notes else []),
    ]
    return "\n\n".join(sections)


# --------------------------------------------------------------------------
# The goals


@dataclass
class GoalResult:
    """One goal judged on one run's figures, as --json writes it."""

    id: str
    what: str
    value: float | None  # the ratio, or the figure itself
    op: str
    target: float
    unit: str  # how value and target read: see amount()
    met: bool | None  # None: not measured


def amount(x: float, unit: str) -> str:
    """A goal's value or target in its unit: "index" (3 decimals), "count",
    "fraction" (a percentage), "s" or "ns" (shown in seconds), or else a
    ratio ("0.25x")."""
    if unit == "index":
        return f"{x:.3f}"
    if unit == "count":
        return f"{x:,.0f}"
    if unit == "fraction":
        return f"{x:.0%}" if x >= 0.1 else f"{x:.1%}"
    if unit == "ns":
        x, unit = x / 1e9, "s"
    if unit == "s":
        return f"{x:.3g} s"
    return f"{x:.3g}x" if x < 100 else f"{x:.0f}x"


def verdict(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "NOT MET"


def goal_lines(goals: Sequence[GoalResult], what: str) -> str:
    """The goals as a table (`what` heads the column of what each says),
    then how many of those measured are met."""
    rows = [
        [
            g.id,
            g.what,
            "-" if g.value is None else amount(g.value, g.unit),
            f"{g.op} {amount(g.target, g.unit)}",
            verdict(g.met),
        ]
        for g in goals
    ]
    header = ["goal", what, "measured", "target", ""]
    met = sum(1 for g in goals if g.met)
    judged = sum(1 for g in goals if g.met is not None)
    table = format_table([header], rows, right={2, 3})
    return f"{table}\n{met} of {judged} measured goals met"


# --------------------------------------------------------------------------
# Notes


def _cpu_busy_seconds() -> float | None:
    """CPU time spent busy by the whole machine so far (Linux), else None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
        # cpu user nice system idle iowait irq softirq steal ...
        busy = sum(int(x) for x in fields[1:4]) + sum(int(x) for x in fields[6:9])
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class Noise:
    """CPU time other processes took while we measured: the machine's busy
    time less this process's and its children's (Linux; None elsewhere)."""

    def __init__(self) -> None:
        self.busy0 = _cpu_busy_seconds()
        self.ours0 = self._ours()
        self.wall0 = time.perf_counter()

    @staticmethod
    def _ours() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def read(self) -> dict[str, float | None]:
        busy1 = _cpu_busy_seconds()
        wall = time.perf_counter() - self.wall0
        if self.busy0 is None or busy1 is None or wall <= 0:
            return {"other_cpu_seconds": None, "other_cpu_share": None}
        others = max(0.0, (busy1 - self.busy0) - (self._ours() - self.ours0))
        return {
            "other_cpu_seconds": round(others, 3),
            "other_cpu_share": round(others / (wall * (os.cpu_count() or 1)), 4),
        }


def run_notes(skipped: Mapping[str, str], noise: Mapping[str, Any]) -> list[str]:
    """A note for each peer left out ({name: why}), and one if other
    processes took more than NOISE_SHARE of the CPUs' time (Noise.read())."""
    found = [f"NOTE: {name} left out: {why}" for name, why in skipped.items()]
    share = noise.get("other_cpu_share")
    if share is not None and share > NOISE_SHARE:
        found.append(
            f"NOTE: other processes took {share:.0%} of the CPUs' time during the run "
            f"({noise['other_cpu_seconds']:.1f} CPU s); the figures are disturbed."
        )
    return found
