"""python -m fastsem: fastsem side by side with threading.Semaphore.

    python -m fastsem [--quick] [--json FILE]

Runs the workloads of fastsem._compare on every contender and prints one
table. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from . import _compare

BASELINE = "threading.Semaphore"
LOCK_MARK = "*"


class Progress:
    """One progress line on a stream: redrawn in place on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.width = 0

    def __call__(self, text: str) -> None:
        if self.tty:
            pad = max(0, self.width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0


# --------------------------------------------------------------------------
# Cells


def _ns(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _vs(value: float | None, base: float | None, is_base: bool) -> str:
    if is_base:
        return "baseline"
    if not value or not base:
        return "-"
    ratio = base / value
    if ratio >= 1.05:
        return f"{ratio:.1f}x faster"
    if ratio <= 1 / 1.05:
        return f"{1 / ratio:.1f}x slower"
    return "about the same"


def _ops(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _jain(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ms(ns: float | None) -> str:
    if ns is None:
        return "-"
    ms = ns / 1e6
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    if ms >= 0.01:
        return f"{ms:.3f}"
    return f"{ms:.4f}"


def _label(row: dict[str, Any]) -> str:
    return str(row["name"]) + (LOCK_MARK if row.get("is_lock") else "")


# --------------------------------------------------------------------------
# The table

COLUMNS = [
    ("contender", "<"),
    ("ns/pair", ">"),
    ("vs threading", ">"),
    ("16-thread ops/s", ">"),
    ("Jain", ">"),
    ("max wait ms", ">"),
    ("p99 wait ms", ">"),
    ("barges", ">"),
]


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = result["contenders"]
    base = next((r for r in rows if r["name"] == BASELINE), None)
    base_ns = base["uncontended"]["ns_per_pair"] if base else None
    cells = []
    for r in rows:
        unc, con, bar = r["uncontended"], r["contended"], r["barging"]
        cells.append(
            [
                _label(r),
                _ns(unc["ns_per_pair"]),
                _vs(unc["ns_per_pair"], base_ns, r is base),
                _ops(con["ops_per_s"]),
                _jain(con["jain"]),
                _ms(con["wait_ns"]["max"]),
                _ms(con["wait_ns"]["p99"]),
                f"{bar['barges']}/{bar['trials']}",
            ]
        )
    return cells


def format_table(header: list[str], rows: list[list[str]], aligns: list[str]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [f"{cell:{align}{width}}" for cell, align, width in zip(cells, aligns, widths)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def headline(result: dict[str, Any]) -> str:
    m = result["machine"]
    cpus = m["cpu_usable"]
    cpu = f"{cpus} CPU{'s' if cpus != 1 else ''}"
    if m.get("cpu_model"):
        cpu = f"{m['cpu_model']}, {cpu}"
    gil = "" if m["gil_enabled"] else ", free-threaded"
    return (
        f"fastsem {m['fastsem_version']} vs threading.Semaphore on "
        f"{m['python_implementation']} {m['python_version']}{gil}, "
        f"{m['platform']} ({cpu})"
    )


def footnote(result: dict[str, Any]) -> str:
    s = result["settings"]
    n = s["threads"]
    return "\n".join(
        [
            "ns/pair: one uncontended acquire() + release(), best of several "
            "timed loops in one thread.",
            "vs threading: that cost against threading.Semaphore's.",
            f"16-thread ops/s: acquisitions per second, {n} threads looping "
            f"acquire / tiny critical section / release on value 1 "
            f"({s['contended_seconds']:g} s measured).",
            f"Jain: fairness of the {n} threads' acquisition counts; 1.0 means a "
            f"perfectly even share, {1 / n:.4g} one thread taking everything.",
            "max / p99 wait ms: how long one acquire() waited in that run.",
            "barges: times a releasing thread took the permit back ahead of a "
            "queued waiter, out of the trials.",
            f"{LOCK_MARK} a plain lock (value 1 only, no fairness promise), for reference.",
        ]
    )


def warnings(result: dict[str, Any]) -> list[str]:
    """Correctness problems seen while measuring (there should be none)."""
    found = []
    for r in result["contenders"]:
        con = r["contended"]
        if con["exclusion_violations"]:
            found.append(
                f"WARNING: {r['name']}: {con['exclusion_violations']} "
                "times two threads held a value-1 semaphore at once"
            )
        if not con["shared_counter_ok"]:
            found.append(f"WARNING: {r['name']}: the guarded counter lost updates")
        if r.get("fair") and r["barging"]["barges"]:
            found.append(f"WARNING: {r['name']}: fair, yet barged {r['barging']['barges']} times")
    return found


def render(result: dict[str, Any]) -> str:
    header = [name for name, _ in COLUMNS]
    aligns = [align for _, align in COLUMNS]
    parts = [
        headline(result),
        "",
        format_table(header, table_rows(result), aligns),
        "",
        footnote(result),
    ]
    problems = warnings(result)
    if problems:
        parts += ["", *problems]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastsem",
        description="Compare fastsem with threading.Semaphore on this machine.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="shorter runs (a few seconds in all), noisier figures"
    )
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    args = parser.parse_args(argv)

    progress = Progress(sys.stderr)
    try:
        result = _compare.run(quick=args.quick, progress=progress)
    except KeyboardInterrupt:
        progress.clear()
        print("interrupted", file=sys.stderr)
        return 130
    progress.clear()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
