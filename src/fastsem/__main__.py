"""python -m fastsem: fastsem side by side with threading.Semaphore.

    python -m fastsem [--quick | --full] [--json FILE] [--plot FILE.png]

Runs the workloads of fastsem._compare on each contender and prints one
table (progress goes to stderr). --plot needs matplotlib (fastsem[plot]).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from . import _compare
from ._compare import Row, Run

MAIN = _compare.config_key(_compare.THREADS, 1)  # the contended configuration
PLOT_HINT = "--plot needs matplotlib: pip install 'fastsem[plot]'"
COLUMNS = [
    "contender", "ns/pair", "vs threading", "vs floor", "with ns", "vs floor", "handoff us",
    "vs floor", "16-thread ops/s", "Jain", "max wait ms", "p99 wait ms", "barges",
]  # fmt: skip
FOOTNOTE = """\
ns/pair: one uncontended acquire() + release(), best of several timed loops in one thread;
  with ns: one `with sem: pass`.
vs threading: that cost against threading.Semaphore's; vs floor: cost / the _thread lock's
  (0.50x = half its time).
handoff us: one handoff in a ping-pong of two threads, each releasing the other's semaphore
  and waiting on its own (median of runs).
16-thread ops/s: acquisitions per second, {threads} threads looping acquire / tiny critical
  section / release on value 1 ({seconds:g} s measured).
Jain: fairness of the {threads} threads' acquisition counts; 1.0 means a perfectly even
  share, {worst:.4g} one thread taking everything.
max / p99 wait ms: how long one acquire() waited in that run.
barges: times a releasing thread took the permit back ahead of a queued waiter, of the trials.
* a plain lock (value 1 only, no fairness promise): the floor."""


def _num(x: float | None, scale: float = 1.0) -> str:
    """x / scale, to three significant digits or so: 0.0012, 0.123, 1.23, 12.3, 1,234."""
    if x is None:
        return "-"
    x /= scale
    digits = 0 if x >= 100 else 1 if x >= 10 else 2 if x >= 1 else 3 if x >= 0.01 else 4
    return f"{x:,.{digits}f}"


def _vs(cost: float | None, base: float | None, is_base: bool) -> str:
    """Speed against the baseline's: 2.0x faster is half its time."""
    if is_base or not cost or not base:
        return "baseline" if is_base else "-"
    ratio = base / cost
    if ratio >= 1.05:
        return f"{ratio:.1f}x faster"
    return f"{1 / ratio:.1f}x slower" if ratio <= 1 / 1.05 else "about the same"


def _x(cost: float | None, floor: float | None, is_floor: bool) -> str:
    """Cost against the floor's: 0.49x is half the time of a _thread lock."""
    if is_floor or not cost or not floor:
        return "floor" if is_floor else "-"
    return f"{cost / floor:.2f}x" if cost < 10 * floor else f"{cost / floor:.0f}x"


def _costs(row: Row | None) -> list[float | None]:
    """ns per pair, per `with` block and per handoff (None: not measured)."""
    figures = (row.pair, row.with_block, row.handoff) if row else (None, None, None)
    return [f.ns if f else None for f in figures]


def _label(row: Row) -> str:
    return row.name + ("*" if row.is_lock else "")


def table_rows(run: Run) -> list[list[str]]:
    base = next((r for r in run.contenders if r.name == _compare.THREADING), None)
    floor = next((r for r in run.contenders if r.is_lock), None)
    base_pair, floors = _costs(base)[0], _costs(floor)
    rows = []
    for r in run.contenders:
        (pair, block, handoff), con = _costs(r), r.contended[MAIN]
        rows.append([
            _label(r),
            _num(pair), _vs(pair, base_pair, r is base), _x(pair, floors[0], r is floor),
            _num(block), _x(block, floors[1], r is floor),
            _num(handoff, 1e3), _x(handoff, floors[2], r is floor),
            f"{con.ops_per_s:,.0f}", "-" if con.jain is None else f"{con.jain:.3f}",
            _num(con.wait_max_ns, 1e6), _num(con.wait_p99_ns, 1e6),
            f"{r.barging.barges}/{r.barging.trials}",
        ])  # fmt: skip
    return rows


def format_table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """The first `left` columns left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def interpreter(m: dict[str, Any]) -> str:
    """ "CPython 3.13.5 (free-threaded build, GIL off), Linux-... (2 CPUs)"."""
    build = "GIL build"
    if m["free_threaded_build"]:
        build = f"free-threaded build, GIL {'on' if m['gil_enabled'] else 'off'}"
    cpus = f"{m['cpu_count']} CPU{'s' if m['cpu_count'] != 1 else ''}"
    return f"{m['python_implementation']} {m['python_version']} ({build}), {m['platform']} ({cpus})"


def headline(run: Run) -> str:
    return (
        f"fastsem {run.machine['fastsem_version']} vs threading.Semaphore on "
        f"{interpreter(run.machine)}; {run.plan.mode} run, {run.total_seconds:.0f} s"
    )


def busy_note(m: dict[str, Any]) -> str:
    """A note if other processes kept half the CPUs busy as the run began."""
    load, cpus = m["load_average"], m["cpu_count"]
    if load is None or load < cpus / 2:
        return ""
    return (
        f"NOTE: the load average was {load:.1f} on {cpus} CPUs when the run began: "
        "other processes may have disturbed the figures. Rerun on an idle machine."
    )


def warnings(run: Run) -> list[str]:
    """Correctness problems seen while measuring (there should be none), and
    a machine that was busy when the run began."""
    found = [busy_note(run.machine)] if busy_note(run.machine) else []
    for r in run.contenders:
        for con in r.contended.values():
            if con.exclusion_violations or con.shared_counter_ok is False:
                found.append(f"WARNING: {r.name} let two threads hold a value-1 semaphore at once")
        if r.fair and r.barging.barges:
            found.append(f"WARNING: {r.name}: fair, yet barged {r.barging.barges} times")
    return found


def render(run: Run) -> str:
    n, seconds = _compare.THREADS, run.plan.contended_seconds
    notes = FOOTNOTE.format(threads=n, seconds=seconds, worst=1 / n)
    problems = warnings(run)
    parts = [headline(run), "", format_table(COLUMNS, table_rows(run)), "", notes]
    return "\n".join(parts + (["", *problems] if problems else []))


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend; ImportError if not installed."""
    import matplotlib  # type: ignore[import-not-found,unused-ignore]  # optional: fastsem[plot]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]

    return plt


def plot(run: Run, path: str) -> None:
    """The 16-thread throughput of each contender, and the distribution of
    its waits in acquire(), as one PNG."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 6), gridspec_kw={"width_ratios": (2, 3)})
    for i, r in enumerate(run.contenders):
        con, label = r.contended[MAIN], _label(r)
        color = left.barh(label, con.ops_per_s)[0].get_facecolor()
        ps, ns = zip(*con.wait_percentiles_ns)
        right.plot(
            [max(x, 1) / 1e3 for x in ns], [p / 100 for p in ps], marker="os^vD<>ph*"[i % 10],
            # matplotlib leaves a label that starts with "_" out of the legend.
            color=color, label=f"{label.lstrip('_')} (max {_num(con.wait_max_ns, 1e6)} ms)",
        )  # fmt: skip
    left.invert_yaxis()
    left.set(xscale="log", xlabel="acquisitions per second", title="16 threads on value 1")
    # A logit axis shows the tail (p99, p99.99) as plainly as the median.
    right.set(xscale="log", yscale="logit", xlabel="wait in acquire(), microseconds")
    right.set_yticks([p / 100 for p in _compare.WAIT_PERCENTILES])
    right.set_yticklabels([f"p{p:g}" for p in _compare.WAIT_PERCENTILES])
    right.set_yticks([], minor=True)
    right.set_title("The waits of the 16 threads, p1 to p99.99")
    right.legend(fontsize="small")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(headline(run), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastsem",
        description="Compare fastsem with threading.Semaphore and a lock on this machine.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a run of a few seconds, noisier")
    size.add_argument("--full", action="store_true", help="longer runs (about a minute)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw the throughput and the wait-time distributions (needs fastsem[plot])",
    )
    args = parser.parse_args(argv)
    if args.plot:
        try:
            _pyplot()
        except ImportError:
            print(PLOT_HINT, file=sys.stderr)
            return 2

    plan = _compare.PLANS["quick" if args.quick else "full" if args.full else "default"]
    tty = sys.stderr.isatty()

    def progress(text: str) -> None:  # one line, redrawn in place on a terminal
        sys.stderr.write(f"\r{text:<79.79}" if tty else text + "\n")
        sys.stderr.flush()

    try:
        run = _compare.run(plan, progress)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        sys.stderr.write("\r" + " " * 79 + "\r" if tty else "")
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
