"""Where the worst waits of a contended run go, as the kernel's scheduler saw
them.

processes.py's contended runs (N processes on a semaphore of value 1, each
looping acquire / hold 10 us / release) report a worst wait far above the
typical one, for fastsem and for sysv_ipc's FIFO in the kernel alike. This
script runs one such configuration under the scheduler's tracepoints
(ftrace: sched_waking, sched_wakeup, sched_switch, sched_migrate_task, on
CLOCK_MONOTONIC, the workers' clock) and, for the longest handoffs (a
release to the next grant) and the longest holds (a grant to its release),
shows what each CPU ran meanwhile and when the process that was waited for
was woken, moved and run.

Linux only; needs root and tracefs::

    mount -t tracefs nodev /sys/kernel/tracing    # if it is not mounted
    python bench/trace_stalls.py [--peer fastsem] [--workers 4] [--top 3] [--quick]

It leaves the tracing state as it found it (tracing off, its events
disabled, the buffer emptied, the clock and buffer size restored).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import processes

TRACEFS = Path("/sys/kernel/tracing")
EVENTS = ("sched_waking", "sched_wakeup", "sched_switch", "sched_migrate_task")
PEERS = {
    "fastsem": processes.FAIR,
    "fastsem-non-fair": processes.NONFAIR,
    "multiprocessing": "multiprocessing.Semaphore",
    "posix_ipc": "posix_ipc.Semaphore",
    "sysv_ipc": "sysv_ipc.Semaphore (SEM_UNDO)",
}
MARGIN_NS = 20_000  # events read this far either side of a stall
SHOWN_SHARE = 0.02  # a task that ran less of a stall than this is not listed

# "  python-24266   [000] d..2. 35713.456118: sched_waking: comm=python pid=24267 ..."
# (a command name may hold spaces and dashes: the pid is the last "-digits"
# before the CPU).
_LINE = re.compile(
    r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+\S+\s+"
    r"(?P<sec>\d+)\.(?P<frac>\d+):\s+(?P<event>\w+):\s+(?P<rest>.*)$"
)
_FIELD = re.compile(r"(\w+)=(\S+)")


@dataclass
class Event:
    ns: int
    cpu: int
    event: str
    fields: dict[str, str]


@dataclass
class Run:
    """A task on a CPU from `start` to `end` (ns)."""

    cpu: int
    start: int
    end: int
    task: str  # "comm-pid", or "idle"
    prio: int


@dataclass
class Stall:
    what: str  # "handoff" or "hold"
    start: int  # ns, CLOCK_MONOTONIC
    end: int
    pid: int | None  # the process waited for: the one granted, or the holder
    runs: list[Run] = field(default_factory=list)
    moves: list[str] = field(default_factory=list)  # its wake-ups, migrations, switches in


def parse(lines: Iterable[str]) -> Iterator[Event]:
    """The events of an ftrace text dump (comments and others skipped)."""
    for line in lines:
        m = _LINE.match(line)
        if m is None or m["event"] not in EVENTS:
            continue
        ns = int(m["sec"]) * 1_000_000_000 + int(m["frac"].ljust(9, "0")[:9])
        yield Event(ns, int(m["cpu"]), m["event"], dict(_FIELD.findall(m["rest"])))


def cpu_runs(events: list[Event]) -> list[Run]:
    """Who ran where, from the switches: a run per switch-in, ended by the
    next switch on that CPU (the last one runs to the last event)."""
    last_ns = events[-1].ns if events else 0
    current: dict[int, Run] = {}
    runs: list[Run] = []
    for e in events:
        if e.event != "sched_switch":
            continue
        previous = current.pop(e.cpu, None)
        if previous is not None:
            previous.end = e.ns
            runs.append(previous)
        pid = e.fields.get("next_pid", "0")
        task = "idle" if pid == "0" else f"{e.fields.get('next_comm', '?')}-{pid}"
        current[e.cpu] = Run(e.cpu, e.ns, last_ns, task, int(e.fields.get("next_prio", 0)))
    runs.extend(current.values())
    return runs


def explain(stall: Stall, events: list[Event], runs: list[Run]) -> Stall:
    """Fills in what each CPU ran during the stall and what became of the
    process waited for."""
    for r in runs:
        start, end = max(r.start, stall.start), min(r.end, stall.end)
        if end > start:
            stall.runs.append(Run(r.cpu, start, end, r.task, r.prio))
    pid = str(stall.pid)
    for e in events:
        if not stall.start - MARGIN_NS <= e.ns <= stall.end + MARGIN_NS:
            continue
        at = f"{(e.ns - stall.start) / 1e6:+.3f} ms"
        if e.event == "sched_wakeup" and e.fields.get("pid") == pid:
            stall.moves.append(f"{at}  woken onto CPU {int(e.fields['target_cpu'])}")
        elif e.event == "sched_migrate_task" and e.fields.get("pid") == pid:
            stall.moves.append(
                f"{at}  moved from CPU {int(e.fields['orig_cpu'])} to CPU "
                f"{int(e.fields['dest_cpu'])}"
            )
        elif e.event == "sched_switch" and e.fields.get("next_pid") == pid:
            stall.moves.append(f"{at}  runs on CPU {e.cpu}")
    return stall


def render(stall: Stall) -> str:
    length = stall.end - stall.start
    who = "the process granted" if stall.what == "handoff" else "the holder"
    lines = [f"{stall.what} of {length / 1e6:.3f} ms ({who}: pid {stall.pid})"]
    lines += [f"    {m}" for m in stall.moves]
    by_cpu: dict[int, dict[tuple[str, int], int]] = defaultdict(lambda: defaultdict(int))
    for r in stall.runs:
        by_cpu[r.cpu][(r.task, r.prio)] += r.end - r.start
    for cpu in sorted(by_cpu):
        shown = [
            f"{task} {ns / 1e6:.3f} ms" + ("" if task == "idle" else f" (prio {prio})")
            for (task, prio), ns in sorted(by_cpu[cpu].items(), key=lambda kv: -kv[1])
            if ns >= SHOWN_SHARE * length
        ]
        lines.append(f"    CPU {cpu}: " + ", ".join(shown))
    return "\n".join(lines)


def _grants(window: processes.Window) -> list[tuple[int, int, int, int | None]]:
    """(place in the grant order, granted, released, pid) of every grant."""
    return sorted(
        (s.order[i], s.granted[i], s.released[i], window.pids[w])
        for w, s in enumerate(window.workers)
        for i in range(len(s.order))
    )


def handoffs(window: processes.Window) -> list[Stall]:
    """Each release to the next grant, for the grants inside the window."""
    grants = _grants(window)
    return [
        Stall("handoff", a[2], b[1], b[3])
        for a, b in zip(grants, grants[1:])
        if window.begin <= b[1] < window.end
    ]


def holds(window: processes.Window) -> list[Stall]:
    """Each grant inside the window to its release."""
    return [
        Stall("hold", g[1], g[2], g[3])
        for g in _grants(window)
        if window.begin <= g[1] < window.end
    ]


def longest(stalls: list[Stall], top: int) -> list[Stall]:
    return sorted(stalls, key=lambda s: s.end - s.start, reverse=True)[:top]


class Tracing:
    """The scheduler's tracepoints on, on CLOCK_MONOTONIC, for a `with`
    block; the state found is put back after it."""

    def __init__(self, buffer_kb: int = 131072) -> None:
        self.buffer_kb = buffer_kb

    def _write(self, name: str, value: str) -> None:
        (TRACEFS / name).write_text(value)

    def __enter__(self) -> Tracing:
        if not (TRACEFS / "trace").exists():
            raise SystemExit(
                f"no tracefs at {TRACEFS}: run as root, after "
                "`mount -t tracefs nodev /sys/kernel/tracing`"
            )
        clock = (TRACEFS / "trace_clock").read_text()
        self.clock = clock.split("[", 1)[1].split("]", 1)[0]
        self.old_buffer_kb = (TRACEFS / "buffer_size_kb").read_text().split()[0]
        self._write("tracing_on", "0")
        self._write("trace_clock", "mono")
        self._write("buffer_size_kb", str(self.buffer_kb))
        self._write("trace", "")
        for event in EVENTS:
            self._write(f"events/sched/{event}/enable", "1")
        self._write("tracing_on", "1")
        return self

    def stop(self) -> list[str]:
        """Stops tracing and returns the dump's lines."""
        self._write("tracing_on", "0")
        return (TRACEFS / "trace").read_text().splitlines()

    def __exit__(self, *exc: object) -> None:
        self._write("tracing_on", "0")
        for event in EVENTS:
            self._write(f"events/sched/{event}/enable", "0")
        self._write("trace", "")
        self._write("trace_clock", self.clock)
        self._write("buffer_size_kb", self.old_buffer_kb)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/trace_stalls.py",
        description="The longest handoffs and holds of one contended run of "
        "bench/processes.py, with what each CPU ran meanwhile (root, tracefs).",
    )
    parser.add_argument("--peer", choices=sorted(PEERS), default="fastsem")
    parser.add_argument("--workers", type=int, default=4, help="processes on value 1")
    parser.add_argument("--top", type=int, default=3, help="stalls of each kind shown")
    parser.add_argument("--quick", action="store_true", help="the quick plan's window")
    args = parser.parse_args(argv)
    found, missing = processes.peers()
    peer = next((p for p in found if p.name == PEERS[args.peer]), None)
    if peer is None:
        print(f"{args.peer} is not available here: {missing}", file=sys.stderr)
        return 2
    plan = processes.PLANS["quick" if args.quick else "default"]
    with Tracing() as tracing:
        window = processes.contended_window(peer, args.workers, plan)
        lines = tracing.stop()
    events = sorted(parse(lines), key=lambda e: e.ns)
    runs = cpu_runs(events)
    gaps = handoffs(window)
    print(
        f"{peer.name}, {args.workers} processes on value 1: {len(gaps)} handoffs, "
        f"{sum(g.end - g.start > 1_000_000 for g in gaps)} of them over 1 ms; "
        f"{len(events)} scheduler events"
    )
    for stall in longest(gaps, args.top) + longest(holds(window), args.top):
        print(render(explain(stall, events, runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
