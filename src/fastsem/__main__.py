"""python -m fastsem: fastsem side by side with threading.Semaphore.

    python -m fastsem [--quick | --full] [--json FILE] [--plot FILE.png]

Runs the workloads of fastsem._compare on every contender and prints one
table, then the throughput at the other thread counts. Progress goes to
stderr, the tables to stdout. --plot needs matplotlib (fastsem[plot]).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, TextIO

from . import _compare
from ._compare import Contended, Row, Run

MAIN = _compare.config_key(_compare.THREADS, 1)
LOCK_MARK = "*"
PLOT_HINT = "--plot needs matplotlib: pip install 'fastsem[plot]'"
NOISE_SHARE = 0.05  # of the machine's CPU time, taken by other processes


class Progress:
    """One progress line on a stream: redrawn in place on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.width = 0

    def __call__(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + text + " " * max(0, self.width - len(text)))
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


def _ms(ns: float | None) -> str:
    if ns is None:
        return "-"
    ms = ns / 1e6
    digits = 0 if ms >= 100 else 1 if ms >= 10 else 2 if ms >= 1 else 3 if ms >= 0.01 else 4
    return f"{ms:.{digits}f}"


def _over(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _vs(value: float | None, base: float | None, is_base: bool) -> str:
    """Speed against the baseline's: 2.0x faster is half its time."""
    ratio = _over(base, value)
    if is_base or ratio is None:
        return "baseline" if is_base else "-"
    if ratio >= 1.05:
        return f"{ratio:.1f}x faster"
    return f"{1 / ratio:.1f}x slower" if ratio <= 1 / 1.05 else "about the same"


def _x(value: float | None, floor: float | None, is_floor: bool) -> str:
    """Cost against the floor's: 0.49x is half the time of a _thread lock."""
    ratio = _over(value, floor)
    if is_floor or ratio is None:
        return "floor" if is_floor else "-"
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.0f}x"


def _costs(row: Row | None) -> tuple[float | None, float | None, float | None]:
    """ns per pair, per `with` block and per handoff (None: not measured)."""
    if row is None:
        return None, None, None
    return (
        row.pair.ns if row.pair else None,
        row.with_block.ns if row.with_block else None,
        row.handoff.ns if row.handoff else None,
    )


def _ops(con: Contended | None) -> str:
    return "-" if con is None or con.ops_per_s is None else f"{con.ops_per_s:,.0f}"


def _label(row: Row) -> str:
    return row.name + (LOCK_MARK if row.is_lock else "")


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


def table_rows(run: Run) -> list[list[str]]:
    base = next((r for r in run.contenders if r.name == _compare.THREADING), None)
    floor = next((r for r in run.contenders if r.is_lock), None)
    base_pair = _costs(base)[0]
    floor_pair, floor_block, floor_handoff = _costs(floor)
    cells = []
    for r in run.contenders:
        con = r.contended.get(MAIN)
        pair, block, handoff = _costs(r)
        cells.append(
            [
                _label(r),
                _ns(pair),
                _vs(pair, base_pair, r is base),
                _x(pair, floor_pair, r is floor),
                _ns(block),
                _x(block, floor_block, r is floor),
                _us(handoff),
                _x(handoff, floor_handoff, r is floor),
                _ops(con),
                "-" if con is None or con.jain is None else f"{con.jain:.3f}",
                _ms(con.wait_max_ns if con else None),
                _ms(con.wait_p99_ns if con else None),
                "-" if r.barging is None else f"{r.barging.barges}/{r.barging.trials}",
            ]
        )
    return cells


def _threads_value(key: str) -> tuple[int, int]:
    """The (threads, value) of a config_key(): "t16_v8" -> (16, 8)."""
    threads, value = key[1:].split("_v")
    return int(threads), int(value)


def _other_configs(run: Run) -> list[str]:
    """The contended configurations besides the table's, value 1 first."""
    keys = {k for r in run.contenders for k in r.contended if k != MAIN}
    return sorted(keys, key=lambda k: (_threads_value(k)[1] != 1, *_threads_value(k)))


def format_table(header: list[str], rows: list[list[str]], aligns: list[str]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [f"{cell:{align}{width}}" for cell, align, width in zip(cells, aligns, widths)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def headline(run: Run) -> str:
    m = run.machine
    cpus = m["cpu_usable"]
    cpu = f"{cpus} CPU{'s' if cpus != 1 else ''}"
    if m.get("cpu_model"):
        cpu = f"{m['cpu_model']}, {cpu}"
    gil = "" if m["gil_enabled"] else ", free-threaded"
    return (
        f"fastsem {m['fastsem_version']} vs threading.Semaphore on "
        f"{m['python_implementation']} {m['python_version']}{gil}, "
        f"{m['platform']} ({cpu}); {run.plan.mode} run, {run.total_seconds:.0f} s"
    )


def footnote(run: Run) -> str:
    n = _compare.THREADS
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
            f"({run.plan.contended_seconds:g} s measured).",
            f"Jain: fairness of the {n} threads' acquisition counts; 1.0 means a "
            f"perfectly even share, {1 / n:.4g} one thread taking everything.",
            "max / p99 wait ms: how long one acquire() waited in that run.",
            "barges: times a releasing thread took the permit back ahead of a "
            "queued waiter, out of the trials.",
            f"{LOCK_MARK} a plain lock (value 1 only, no fairness promise): the floor.",
        ]
    )


def more_table(run: Run) -> str:
    keys = _other_configs(run)
    header = ["contender", *("{}t v{} ops/s".format(*_threads_value(k)) for k in keys)]
    rows = [
        [_label(r), *(_ops(r.contended.get(k)) for k in keys)]
        for r in run.contenders
        if any(k in r.contended for k in keys)
    ]
    return "\n".join(
        [
            format_table(header, rows, ["<"] + [">"] * len(keys)),
            "",
            "Nt vV ops/s: as the 16-thread column, N threads on a semaphore of value V "
            f"({run.plan.configs_seconds:g} s measured; '-': not run, --full runs every "
            "contender).",
        ]
    )


def warnings(run: Run) -> list[str]:
    """Correctness problems seen while measuring (there should be none), and a
    machine too busy to measure on."""
    found = []
    share = run.noise.get("other_cpu_share")
    if share is not None and share > NOISE_SHARE:
        found.append(
            f"WARNING: other processes took {share:.0%} of the CPUs' time during the run "
            f"({run.noise['other_cpu_seconds']:.1f} CPU s); the figures are disturbed. "
            "Rerun on an idle machine."
        )
    for r in run.contenders:
        for key, con in sorted(r.contended.items()):
            if con.exclusion_violations:
                found.append(
                    f"WARNING: {r.name} ({key}): {con.exclusion_violations} "
                    "times two threads held a value-1 semaphore at once"
                )
            if con.shared_counter_ok is False:
                found.append(f"WARNING: {r.name} ({key}): the guarded counter lost updates")
        if r.fair and r.barging is not None and r.barging.barges:
            found.append(f"WARNING: {r.name}: fair, yet barged {r.barging.barges} times")
    return found


def render(run: Run) -> str:
    parts = [
        headline(run),
        "",
        format_table([c for c, _ in COLUMNS], table_rows(run), [a for _, a in COLUMNS]),
        "",
        footnote(run),
    ]
    if _other_configs(run):
        parts += ["", more_table(run)]
    problems = warnings(run)
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


def plot(run: Run, path: str) -> None:
    """Throughput against thread count, and the wait-time distribution of each
    contender (16 threads, value 1), as one PNG."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 6))
    markers = "os^vD<>ph*"
    for i, r in enumerate(run.contenders):
        marker = markers[i % len(markers)]
        # matplotlib leaves out of the legend a label that starts with "_".
        label = f"floor: {_label(r)}" if r.name.startswith("_") else _label(r)
        runs = r.contended.values()
        points = sorted((c.threads, c.ops_per_s) for c in runs if c.value == 1 and c.ops_per_s)
        color = None
        if points:
            color = left.plot(*zip(*points), marker=marker, label=label)[0].get_color()
            half = sorted(
                (c.threads, c.ops_per_s)
                for c in runs
                if c.value > 1 and c.value == c.threads // 2 and c.ops_per_s
            )
            if half:
                left.plot(*zip(*half), linestyle="--", marker=marker, color=color, alpha=0.6)
        # Percentiles strictly between 0 and 100 on a logit axis, so that the
        # tail (p99, p99.99) is as visible as the median; the max is in the label.
        con = r.contended.get(MAIN)
        dist = [(p, ns) for p, ns in (con.wait_percentiles_ns if con else []) if 0 < p < 100]
        if con and dist:
            right.plot(
                [max(ns, 1) / 1e3 for _, ns in dist],
                [p / 100 for p, _ in dist],
                marker=marker,
                color=color,
                label=f"{label} (max {_ms(con.wait_max_ns)} ms)",
            )
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xlabel("threads")
    left.set_ylabel("acquisitions per second")
    left.set_title("Contended throughput (solid: value 1; dashed: value threads/2)")
    right.set_xscale("log")
    right.set_yscale("logit")
    ticks = [1, 10, 50, 90, 99, 99.9, 99.99]
    right.set_yticks([p / 100 for p in ticks], [f"p{p:g}" for p in ticks])
    right.set_yticks([], minor=True)
    right.set_xlabel("wait in acquire(), microseconds")
    right.set_ylabel("percentile of the waits")
    right.set_title(f"Wait-time distribution, {_compare.THREADS} threads on value 1 (p1 to p99.99)")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(headline(run), fontsize="small")
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
        help="more thread counts, on every contender, and longer runs (a few minutes)",
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

    plan = _compare.PLANS["quick" if args.quick else "full" if args.full else "default"]
    progress = Progress(sys.stderr)
    try:
        run = _compare.run(plan, progress)
    except KeyboardInterrupt:
        progress.clear()
        print("interrupted", file=sys.stderr)
        return 130
    progress.clear()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(run), f, indent=2)
            f.write("\n")
    if args.plot:
        plot(run, args.plot)
    print(render(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
