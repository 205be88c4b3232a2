"""python -m fastsem: fastsem side by side with threading.Semaphore and its peers.

    python -m fastsem [--quick | --full] [--json FILE] [--plot FILE.png]

Runs the workloads of fastsem._compare on every contender and prints the
table, a second table of the other workloads, and the goals of issue 3 (each a
ratio measured in this run, its target, and whether it is met). Progress goes
to stderr, the tables to stdout. --plot needs matplotlib (fastsem[plot]).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from . import _compare

BASELINE = _compare.THREADING
FLOOR = _compare.LOCK
LOCK_MARK = "*"
PLOT_HINT = "--plot needs matplotlib: pip install 'fastsem[plot]'"


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
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _us(ns: float | None) -> str:
    if ns is None:
        return "-"
    us = ns / 1e3
    return f"{us:.2f}" if us < 10 else f"{us:.1f}" if us < 100 else f"{us:,.0f}"


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


def _x(value: float | None, base: float | None, is_base: bool = False) -> str:
    """Cost against the floor's: 0.49x is half the time of a _thread lock."""
    if is_base:
        return "floor"
    if not value or not base:
        return "-"
    ratio = value / base
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.0f}x"


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


def _get(row: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(row, dict):
            return None
        row = row.get(key)
    return row


# --------------------------------------------------------------------------
# The tables

COLUMNS = [
    ("contender", "<"),
    ("ns/pair", ">"),
    ("vs threading", ">"),
    ("vs floor", ">"),
    ("with ns", ">"),
    ("vs floor", ">"),
    ("handoff us", ">"),
    ("vs floor", ">"),
    ("16-thread ops/s", ">"),
    ("Jain", ">"),
    ("max wait ms", ">"),
    ("p99 wait ms", ">"),
    ("barges", ">"),
]


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = result["contenders"]
    base = next((r for r in rows if r["name"] == BASELINE), None)
    floor = next((r for r in rows if r["name"] == FLOOR), None)
    base_ns = _get(base, "uncontended", "ns_per_pair")
    floor_pair = _get(floor, "uncontended", "ns_per_pair")
    floor_with = _get(floor, "with_block", "ns_per_block")
    floor_handoff = _get(floor, "handoff", "ns_per_handoff")
    cells = []
    for r in rows:
        pair = _get(r, "uncontended", "ns_per_pair")
        block = _get(r, "with_block", "ns_per_block")
        handoff = _get(r, "handoff", "ns_per_handoff")
        con, bar = r["contended"], r["barging"]
        cells.append(
            [
                _label(r),
                _ns(pair),
                _vs(pair, base_ns, r is base),
                _x(pair, floor_pair, r is floor),
                _ns(block),
                _x(block, floor_with, r is floor),
                _us(handoff),
                _x(handoff, floor_handoff, r is floor),
                _ops(con["ops_per_s"]),
                _jain(con["jain"]),
                _ms(con["wait_ns"]["max"]),
                _ms(con["wait_ns"]["p99"]),
                f"{bar['barges']}/{bar['trials']}",
            ]
        )
    return cells


def _release_sizes(result: dict[str, Any]) -> list[int]:
    return [int(n) for n in result["settings"]["plan"]["release_ns"]]


def _extra_configs(result: dict[str, Any]) -> list[tuple[int, int]]:
    """The contended configurations besides the table's 16 threads on value 1."""
    seen = []
    for threads, value in result["settings"]["plan"]["configs"]:
        if (threads, value) != (_compare.THREADS, 1):
            seen.append((int(threads), int(value)))
    return sorted(seen, key=lambda tv: (tv[1] != 1, tv[0], tv[1]))


def more_columns(result: dict[str, Any]) -> list[tuple[str, str]]:
    cols = [("contender", "<")]
    for threads, value in _extra_configs(result):
        cols.append((f"{threads}t v{value} ops/s", ">"))
    cols += [("in order", ">"), ("B/object", ">"), ("create ns", ">")]
    for n in _release_sizes(result):
        cols.append((f"release({n:,}) us", ">"))
    return cols


def more_rows(result: dict[str, Any]) -> list[list[str]]:
    cells = []
    for r in result["contenders"]:
        row = [_label(r)]
        for threads, value in _extra_configs(result):
            key = _compare.config_key(threads, value)
            row.append(_ops(_get(r, "contended_runs", key, "ops_per_s")))
        fifo = r.get("fifo")
        row.append(f"{fifo['in_order']}/{fifo['grants']}" if fifo else "-")
        mem = _get(r, "memory", "bytes_per_object")
        row.append("-" if mem is None else f"{mem:,.0f}")
        row.append(_ns(_get(r, "creation", "ns_per_object")))
        for n in _release_sizes(result):
            row.append(_us(_get(r, "release_n", str(n), "release_ns")))
        cells.append(row)
    return cells


GOAL_COLUMNS = [
    ("goal", "<"),
    ("what (fastsem: the C core, fair mode, unless said)", "<"),
    ("measured", ">"),
    ("target", ">"),
    ("", "<"),
    ("figures", "<"),
]


def _goal_value(value: Any, unit: str) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    if unit == "fraction":
        return f"{value:.0%}"
    if unit == "count":
        return f"{value:.0f}"
    if unit == "index":
        return f"{value:.3f}"
    return f"{value:.3g}x" if value < 100 else f"{value:.0f}x"


def goal_rows(result: dict[str, Any]) -> list[list[str]]:
    cells = []
    for g in result["goals"]:
        verdict = "n/a" if g["met"] is None else "met" if g["met"] else "NOT MET"
        cells.append(
            [
                str(g["id"]),
                str(g["goal"]),
                _goal_value(g["ratio"], g["unit"]),
                f"{g['op']} {_goal_value(g['target'], g['unit'])}",
                verdict,
                str(g["detail"]),
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


def _table(columns: list[tuple[str, str]], rows: list[list[str]]) -> str:
    return format_table([c for c, _ in columns], rows, [a for _, a in columns])


def headline(result: dict[str, Any]) -> str:
    m = result["machine"]
    cpus = m["cpu_usable"]
    cpu = f"{cpus} CPU{'s' if cpus != 1 else ''}"
    if m.get("cpu_model"):
        cpu = f"{m['cpu_model']}, {cpu}"
    gil = "" if m["gil_enabled"] else ", free-threaded"
    mode = result["settings"].get("mode", "default")
    return (
        f"fastsem {m['fastsem_version']} vs threading.Semaphore on "
        f"{m['python_implementation']} {m['python_version']}{gil}, "
        f"{m['platform']} ({cpu}); {mode} run, {result['total_seconds']:.0f} s"
    )


def footnote(result: dict[str, Any]) -> str:
    s = result["settings"]
    n = s["threads"]
    return "\n".join(
        [
            "ns/pair: one uncontended acquire() + release(), best of several "
            "timed loops in one thread; with ns: one `with sem: pass`.",
            "vs threading: that cost against threading.Semaphore's; vs floor: "
            "cost / the _thread lock's (0.50x = half its time).",
            "handoff us: one handoff in a ping-pong of two threads, each releasing "
            "the other's semaphore and waiting on its own (median of runs).",
            f"16-thread ops/s: acquisitions per second, {n} threads looping "
            f"acquire / tiny critical section / release on value 1 "
            f"({s['contended_seconds']:g} s measured).",
            f"Jain: fairness of the {n} threads' acquisition counts; 1.0 means a "
            f"perfectly even share, {1 / n:.4g} one thread taking everything.",
            "max / p99 wait ms: how long one acquire() waited in that run.",
            "barges: times a releasing thread took the permit back ahead of a "
            "queued waiter, out of the trials.",
            f"{LOCK_MARK} a plain lock (value 1 only, no fairness promise): the floor.",
        ]
    )


def more_footnote(result: dict[str, Any]) -> str:
    plan = result["settings"]["plan"]
    return "\n".join(
        [
            "Nt vV ops/s: as the 16-thread column, N threads on a semaphore of value V "
            f"({plan['configs_seconds']:g} s measured; '-': not run).",
            "in order: grants that went to the oldest queued waiter, one release at a time.",
            f"B/object: tracemalloc over {plan['memory_objects']:,} objects; create ns: "
            f"one constructor call, over {plan['creation_objects']:,}.",
            "release(n) us: one release(n) call with n threads queued on value 0 "
            "(fair mode hands every permit over inside it).",
            "'-': not measured in this run (--full measures every contender).",
        ]
    )


def goals_summary(result: dict[str, Any]) -> str:
    goals = result["goals"]
    met = sum(1 for g in goals if g["met"])
    judged = sum(1 for g in goals if g["met"] is not None)
    return (
        f"{met} of {judged} goals met in this run"
        + (f" ({len(goals) - judged} not measured)" if judged < len(goals) else "")
        + "; each ratio is of two figures measured side by side in this run."
    )


NOISE_SHARE = 0.05  # of the machine's CPU time, taken by other processes


def warnings(result: dict[str, Any]) -> list[str]:
    """Correctness problems seen while measuring (there should be none), and a
    machine too busy to measure on."""
    found = []
    share = _get(result, "noise", "other_cpu_share")
    if share is not None and share > NOISE_SHARE:
        found.append(
            f"WARNING: other processes took {share:.0%} of the CPUs' time during the run "
            f"({result['noise']['other_cpu_seconds']:.1f} CPU s); the figures are disturbed. "
            "Rerun on an idle machine."
        )
    for r in result["contenders"]:
        for key, con in sorted(r.get("contended_runs", {}).items()):
            if con["exclusion_violations"]:
                found.append(
                    f"WARNING: {r['name']} ({key}): {con['exclusion_violations']} "
                    "times two threads held a value-1 semaphore at once"
                )
            if con["shared_counter_ok"] is False:
                found.append(f"WARNING: {r['name']} ({key}): the guarded counter lost updates")
        if r.get("fair") and r["barging"]["barges"]:
            found.append(f"WARNING: {r['name']}: fair, yet barged {r['barging']['barges']} times")
        fifo = r.get("fifo")
        if r.get("fair") and fifo and fifo["in_order"] != fifo["grants"]:
            found.append(
                f"WARNING: {r['name']}: fair, yet {fifo['grants'] - fifo['in_order']} "
                "grants out of arrival order"
            )
    return found


def render(result: dict[str, Any]) -> str:
    parts = [
        headline(result),
        "",
        _table(COLUMNS, table_rows(result)),
        "",
        footnote(result),
        "",
        _table(more_columns(result), more_rows(result)),
        "",
        more_footnote(result),
        "",
        "Goals (issue 3):",
        _table(GOAL_COLUMNS, goal_rows(result)),
        goals_summary(result),
    ]
    problems = warnings(result)
    if problems:
        parts += ["", *problems]
    return "\n".join(parts)


# --------------------------------------------------------------------------
# The plot


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend; ImportError if not installed."""
    import matplotlib  # type: ignore[import-not-found,unused-ignore]  # optional: fastsem[plot]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]

    return plt


def _plot_label(row: dict[str, Any]) -> str:
    # matplotlib leaves out of the legend a label that starts with "_".
    return f"floor: {_label(row)}" if row["name"].startswith("_") else _label(row)


def plot(result: dict[str, Any], path: str) -> None:
    """Throughput against thread count, and the wait-time distribution of each
    contender (16 threads, value 1), as one PNG."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 6))
    markers = "os^vD<>ph*"
    for i, r in enumerate(result["contenders"]):
        marker = markers[i % len(markers)]
        runs = r.get("contended_runs", {})
        points = sorted(
            (con["threads"], con["ops_per_s"])
            for con in runs.values()
            if con["value"] == 1 and con["ops_per_s"]
        )
        color = None
        if points:
            line = left.plot(*zip(*points), marker=marker, label=_plot_label(r))[0]
            color = line.get_color()
            half = sorted(
                (con["threads"], con["ops_per_s"])
                for con in runs.values()
                if con["value"] > 1 and con["value"] == con["threads"] // 2 and con["ops_per_s"]
            )
            if half:
                left.plot(*zip(*half), linestyle="--", marker=marker, color=color, alpha=0.6)
        # Percentiles strictly between 0 and 100 on a logit axis, so that the
        # tail (p99, p99.99) is as visible as the median; the max is in the label.
        dist = [
            (p, ns) for p, ns in _get(r, "contended", "wait_percentiles_ns") or [] if 0 < p < 100
        ]
        if dist:
            worst = _get(r, "contended", "wait_ns", "max")
            right.plot(
                [max(ns, 1) / 1e3 for _, ns in dist],
                [p / 100 for p, _ in dist],
                marker=marker,
                color=color,
                label=f"{_plot_label(r)} (max {_ms(worst)} ms)",
            )
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xlabel("threads")
    left.set_ylabel("acquisitions per second")
    left.set_title("Contended throughput (solid: value 1; dashed: value threads/2)")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize="small")
    right.set_xscale("log")
    right.set_yscale("logit")
    ticks = [1, 10, 50, 90, 99, 99.9, 99.99]
    right.set_yticks([p / 100 for p in ticks], [f"p{p:g}" for p in ticks])
    right.set_yticks([], minor=True)
    right.set_xlabel("wait in acquire(), microseconds")
    right.set_ylabel("percentile of the waits")
    right.set_title(f"Wait-time distribution, {_compare.THREADS} threads on value 1 (p1 to p99.99)")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize="small")
    fig.suptitle(headline(result), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastsem",
        description="Compare fastsem with threading.Semaphore and its peers on this machine.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="a smoke run of about 5 s, noisier figures"
    )
    size.add_argument(
        "--full",
        action="store_true",
        help="every workload on every contender, longer runs (a few minutes)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw throughput against thread count and the wait-time distributions "
        "(needs matplotlib: fastsem[plot])",
    )
    args = parser.parse_args(argv)

    if args.plot:
        try:
            _pyplot()
        except ImportError:
            print(PLOT_HINT, file=sys.stderr)
            return 2

    progress = Progress(sys.stderr)
    try:
        result = _compare.run(quick=args.quick, full=args.full, progress=progress)
    except KeyboardInterrupt:
        progress.clear()
        print("interrupted", file=sys.stderr)
        return 130
    progress.clear()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    if args.plot:
        plot(result, args.plot)
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
