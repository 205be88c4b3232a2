"""Contention with real parallelism: fastsem against threading at 2, 4 and 16
threads, on the interpreter that runs this (meant for a free-threaded build,
where nothing serialises the threads; it runs on any).

    python bench/contention.py [--seconds S] [--json FILE]

One run, every figure side by side:

- per contender: uncontended acquire()+release() against the interpreter's
  floor, two calls of a no-op builtin method (``lock.locked()`` twice), in
  the same interleaved loops; and barging;
- per (T threads, value V), V = 1 and T/2: throughput, Jain's index, p99 and
  max wait of fastsem fair and non-fair, the pure-Python twin,
  threading.Semaphore and threading.Lock (value 1 only).

A 3.13t interpreter runs without the specializing interpreter, so every call
costs more there than on a GIL build; the floor row measures what a call
costs in the same run, and goals.py judges fastsem's pair against it
(``free-threaded-floor``, free-threaded runs only). The measuring is
``fastsem._compare``'s, as ``python -m fastsem``'s; ``--json`` writes the
shape goals.py reads.
"""

from __future__ import annotations

import _thread
import argparse
import dataclasses
import gc
import json
import sys
import time
from types import SimpleNamespace
from typing import Any, Callable

import workloads

from fastsem import _compare
from fastsem.__main__ import busy_note, format_table, interpreter

# Two no-op builtin method calls per "pair": what the interpreter itself
# costs for the two calls an acquire() + release() makes.
FLOOR = "floor: lock.locked() twice"
CONFIGS = ((2, 1), (4, 1), (4, 2), (16, 1), (16, 8))  # 2 threads on 2/2 = 1 once
PAIR_LOOP_SECONDS, PAIR_REPEATS, BARGE_TRIALS = 0.02, 5, 200


def _floor() -> _compare.Contender:
    def make(value: int) -> Any:
        locked = _thread.allocate_lock().locked
        return SimpleNamespace(acquire=locked, release=locked)

    return _compare.Contender(FLOOR, make)


def measure(
    seconds: float, rounds: int, barge_trials: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """Every figure of the run, as goals.py reads it: `seconds` measured per
    configuration and contender, in `rounds` interleaved windows."""
    warmup = min(0.1, seconds / 4)
    loop_seconds = min(PAIR_LOOP_SECONDS, seconds / 10)  # tiny runs prove only that it runs
    found = _compare.contenders()
    t0 = time.perf_counter()
    machine = _compare.machine_info()
    timed = [_floor(), *found]
    say("uncontended acquire()+release(), and the floor")
    pairs = _compare.measure_uncontended(
        timed, "pair", min_seconds=loop_seconds, repeats=PAIR_REPEATS
    )
    rows: dict[str, dict[str, Any]] = {
        c.name: {"name": c.name, "is_lock": c.is_lock, "fair": c.fair, "pair_ns": ns,
                 "contended": []}
        for c, ns in zip(timed, pairs)
    }  # fmt: skip
    for threads, value in CONFIGS:
        who = [c for c in found if value == 1 or not c.is_lock]
        windows: dict[str, list[_compare.Window]] = {c.name: [] for c in who}
        for r in range(rounds):
            for c in who:
                say(f"{threads} threads, value {value}, round {r + 1}/{rounds}: {c.name}")
                w = _compare.contended_window(c, threads, value, seconds / rounds, warmup)
                windows[c.name].append(w)
                gc.collect()
        for name, ws in windows.items():
            rows[name]["contended"].append(dataclasses.asdict(workloads.summarize(ws, value)))
    for c in found:
        say(f"barging: {c.name}")
        rows[c.name]["barges"] = _compare.measure_barging(c, trials=barge_trials)
    plan = {"mode": "contention", "seconds": seconds, "rounds": rounds, "warmup": warmup,
            "barge_trials": barge_trials}  # fmt: skip
    total = time.perf_counter() - t0
    return {"machine": machine, "plan": plan, "contenders": list(rows.values()),
            "total_seconds": total}  # fmt: skip


def _ms(ns: float | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.3f}" if ns < 1e7 else f"{ns / 1e6:.1f}"


def render(run: dict[str, Any]) -> str:
    rows, trials = run["contenders"], run["plan"]["barge_trials"]
    floor = rows[0]["pair_ns"]
    per_contender = [
        [
            r["name"],
            f"{r['pair_ns']:.1f}",
            "floor" if r["name"] == FLOOR else f"{r['pair_ns'] / floor:.2f}x",
            f"{r['barges']}/{trials}" if "barges" in r else "-",
        ]
        for r in rows
    ]
    per_config = []
    for threads, value in CONFIGS:
        for r in rows:
            for con in r["contended"]:
                if (con["threads"], con["value"]) == (threads, value):
                    per_config.append([
                        str(threads), str(value), r["name"] + ("*" if r["is_lock"] else ""),
                        f"{con['ops_per_s']:,.0f}", f"{con['jain']:.3f}" if con["jain"] else "-",
                        _ms(con["wait_p99_ns"]), _ms(con["wait_max_ns"]),
                    ])  # fmt: skip
    m, plan = run["machine"], run["plan"]
    parts = [
        f"fastsem {m['fastsem_version']} under contention on {interpreter(m)}; "
        f"{run['total_seconds']:.0f} s",
        "",
        format_table(["contender", "ns/pair", "vs floor", "barges"], per_contender),
        "",
        format_table(
            ["threads", "value", "contender", "ops/s", "Jain", "p99 wait ms", "max wait ms"],
            per_config,
            left=3,
        ),
        "",
        "ns/pair: one uncontended acquire() + release(), best of several timed loops; the floor:",
        "  two calls of a no-op builtin method in the same loops. barges: times a releasing",
        "  thread took the permit back ahead of a queued waiter, of the trials.",
        "T threads loop acquire / tiny critical section / release on a semaphore of value V,",
        f"  {plan['seconds']:g} s measured per row, in {plan['rounds']} interleaved rounds.",
        "Jain: 1.0 is a perfectly even share. * threading.Lock (a _thread lock): value 1 only,",
        "  no fairness promise.",
    ]
    note = busy_note(m)
    return "\n".join(parts + (["", *note] if note else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="measured per configuration and contender"
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved windows per row")
    parser.add_argument("--barge-trials", type=int, default=BARGE_TRIALS)
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    args = parser.parse_args(argv)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    run = measure(args.seconds, args.rounds, args.barge_trials, say)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(run, f, indent=2)
            f.write("\n")
    print(render(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
