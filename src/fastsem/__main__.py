"""python -m fastsem [--quick | --full] [--json FILE] [--plot FILE.png]

fastsem side by side with threading.Semaphore and a lock: the workloads of
fastsem._compare on each contender, as one table (progress on stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
from typing import Any, Callable

from . import _compare as m
from ._compare import Row, Run

PLOT_HINT = "--plot needs matplotlib: pip install 'fastsem[plot]'"
FOOTNOTE = """\
ns/pair: one uncontended acquire() + release(), best of several timed loops in one thread;
  with ns: one `with sem: pass`.
vs threading: that cost against threading.Semaphore's; vs floor: cost / the _thread lock's
  (0.50x = half its time).
handoff us: one handoff in a ping-pong of two threads, each releasing the other's semaphore
  and waiting on its own (median of runs).
{threads}-thread ops/s: acquisitions per second, {threads} threads looping acquire / tiny critical
  section / release on value 1 ({seconds:g} s measured).
Jain: fairness of the {threads} threads' acquisition counts; 1.0 means a perfectly even
  share, {worst:.4g} one thread taking everything.
max / p99 wait ms: how long one acquire() waited in that run.
barges: times a releasing thread took the permit back ahead of a queued waiter, of {trials}.
* a plain lock (value 1 only, no fairness promise): the floor."""


def _num(x: float | None, scale: float = 1.0) -> str:
    """x / scale, to three significant digits or so: 0.0012, 0.123, 1.23, 12.3, 1,234."""
    if x is None:
        return "-"
    x /= scale
    digits = 0 if x >= 100 else 1 if x >= 10 else 2 if x >= 1 else 3 if x >= 0.01 else 4
    return f"{x:,.{digits}f}"


def _vs(cost: float | None, base: float | None) -> str:
    """Speed against the baseline's: 2.0x faster is half its time."""
    if not cost or not base:
        return "-"
    if base / cost >= 1.05:
        return f"{base / cost:.1f}x faster"
    return f"{cost / base:.1f}x slower" if cost / base >= 1.05 else "about the same"


def _x(cost: float | None, floor: float | None) -> str:
    """Cost against the floor's: 0.49x is half the time of a _thread lock."""
    if not cost or not floor:
        return "-"
    return f"{cost / floor:.2f}x" if cost < 10 * floor else f"{cost / floor:.0f}x"


def _cost(field: str, scale: float = 1.0) -> Callable[[Row, Row, Row], str]:
    return lambda r, base, floor: _num(getattr(r, field), scale)


def _vs_floor(field: str) -> Callable[[Row, Row, Row], str]:
    return lambda r, b, f: "floor" if r is f else _x(getattr(r, field), getattr(f, field))


# (header, the cell of a row given the row, threading's row and the floor's)
COLUMNS: list[tuple[str, Callable[[Row, Row, Row], str]]] = [
    ("contender", lambda r, b, f: r.name + "*" * r.is_lock),
    ("ns/pair", _cost("pair_ns")),
    ("vs threading", lambda r, b, f: "baseline" if r is b else _vs(r.pair_ns, b.pair_ns)),
    ("vs floor", _vs_floor("pair_ns")),
    ("with ns", _cost("with_ns")),
    ("vs floor", _vs_floor("with_ns")),
    ("handoff us", _cost("handoff_ns", 1e3)),
    ("vs floor", _vs_floor("handoff_ns")),
    (f"{m.THREADS}-thread ops/s", lambda r, b, f: f"{r.contended.ops_per_s:,.0f}"),
    ("Jain", lambda r, b, f: "-" if r.contended.jain is None else f"{r.contended.jain:.3f}"),
    ("max wait ms", lambda r, b, f: _num(r.contended.wait_max_ns, 1e6)),
    ("p99 wait ms", lambda r, b, f: _num(r.contended.wait_p99_ns, 1e6)),
    ("barges", lambda r, b, f: str(r.barges)),
]  # fmt: skip


def format_table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """The first `left` columns left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def interpreter(machine: dict[str, Any]) -> str:
    """ "CPython 3.13.5 (free-threaded build, GIL off), Linux-... (2 CPUs)"."""
    build, cpus = "GIL build", machine["cpu_count"]
    if machine["free_threaded_build"]:
        build = f"free-threaded build, GIL {'on' if machine['gil_enabled'] else 'off'}"
    return (
        f"{machine['python_implementation']} {machine['python_version']} ({build}), "
        f"{machine['platform']} ({cpus} CPU{'s' * (cpus != 1)})"
    )


def headline(run: Run) -> str:
    return (
        f"fastsem {run.machine['fastsem_version']} vs threading.Semaphore on "
        f"{interpreter(run.machine)}; {run.plan.mode} run, {run.total_seconds:.0f} s"
    )


def busy_note(machine: dict[str, Any]) -> list[str]:
    """A note if other processes kept half the CPUs busy as the run began."""
    load, cpus = machine["load_average"], machine["cpu_count"]
    if load is None or load < cpus / 2:
        return []
    return [
        f"NOTE: the load average was {load:.1f} on {cpus} CPUs when the run began: "
        "other processes may have disturbed the figures. Rerun on an idle machine."
    ]


def render(run: Run) -> str:
    """The table and its notes; a warning for any correctness problem seen
    while measuring (there should be none), and for a busy machine."""
    rows, problems = run.contenders, busy_note(run.machine)
    base = next((r for r in rows if r.name == m.THREADING), rows[0])
    floor = next((r for r in rows if r.is_lock), rows[-1])
    cells = [[cell(r, base, floor) for _, cell in COLUMNS] for r in rows]
    for r in rows:
        if r.contended.exclusive is False:
            problems.append(f"WARNING: {r.name} let two threads hold a value-1 semaphore at once")
        if r.fair and r.barges:
            problems.append(f"WARNING: {r.name}: fair, yet barged {r.barges} times")
    notes = FOOTNOTE.format(threads=m.THREADS, seconds=run.plan.contended_seconds,
                            worst=1 / m.THREADS, trials=run.plan.barge_trials)  # fmt: skip
    parts = [headline(run), "", format_table([h for h, _ in COLUMNS], cells), "", notes]
    return "\n".join(parts + (["", *problems] if problems else []))


def plot(run: Run, path: str) -> None:
    """The contended throughput of each contender, and its p99 and max wait,
    as one PNG."""
    import matplotlib  # type: ignore[import-not-found,unused-ignore]  # optional: fastsem[plot]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]

    fig, (ops, waits) = plt.subplots(1, 2, figsize=(14, 5), sharey=True)
    names, rows = [r.name for r in run.contenders], [r.contended for r in run.contenders]
    ops.barh(names, [c.ops_per_s for c in rows])
    ops.set(xscale="log", xlabel="acquisitions per second", title=f"{m.THREADS} threads on value 1")
    for shift, label in ((-0.2, "p99"), (0.2, "max")):
        ms = [(c.wait_p99_ns if label == "p99" else c.wait_max_ns) / 1e6 for c in rows]
        waits.barh([i + shift for i in range(len(rows))], ms, height=0.4, label=label)
    waits.set(xscale="log", xlabel="wait in acquire(), ms", title="the longest waits")
    waits.legend()
    ops.invert_yaxis()
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
    parser.add_argument("--plot", metavar="FILE.png", help="draw the throughput and the waits")
    args = parser.parse_args(argv)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        print(PLOT_HINT, file=sys.stderr)
        return 2
    tty = sys.stderr.isatty()

    def progress(text: str) -> None:  # one line, redrawn in place on a terminal
        sys.stderr.write(f"\r{text:<79.79}" if tty else text + "\n")
        sys.stderr.flush()

    try:
        run = m.run(
            m.PLANS["quick" if args.quick else "full" if args.full else "default"], progress
        )
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        sys.stderr.write("\r" + " " * 79 + "\r" if tty else "")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(json.dumps(dataclasses.asdict(run), indent=2) + "\n")
    if args.plot:
        plot(run, args.plot)
    print(render(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
