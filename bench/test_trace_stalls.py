"""bench/trace_stalls.py: reading the scheduler's trace and telling a stall
from it.

Tests, not benchmarks (``python -m pytest bench/test_trace_stalls.py``).
Tracing itself needs root and tracefs, so these read a recorded excerpt
instead: a handoff of a sysv_ipc run on this project's 2-vCPU VM, where the
granted process (pid 24267) was woken onto CPU 1 just as the VM's agent
(tokio-rt-worker, nice -10) was, and waited there while CPU 0 idled.
"""

from __future__ import annotations

from array import array

import processes
import trace_stalls as ts

EXCERPT = """\
# tracer: nop
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
          python-24266   [000] d..2. 35714.517153: sched_waking: comm=python pid=24267 prio=120 target_cpu=001
          python-24266   [000] d..2. 35714.517162: sched_switch: prev_comm=python prev_pid=24266 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120
          <idle>-0       [001] dNh2. 35714.517174: sched_wakeup: comm=python pid=24267 prio=120 target_cpu=001
          <idle>-0       [001] dNh3. 35714.517180: sched_waking: comm=tokio-rt-worker pid=81 prio=110 target_cpu=001
          <idle>-0       [001] dNh4. 35714.517182: sched_wakeup: comm=tokio-rt-worker pid=81 prio=110 target_cpu=001
          <idle>-0       [001] d..2. 35714.517193: sched_switch: prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=tokio-rt-worker next_pid=81 next_prio=110
 tokio-rt-worker-81      [001] dNs4. 35714.520098: softirq_entry: vec=7 [action=SCHED]
          <idle>-0       [000] d.s2. 35714.520100: sched_migrate_task: comm=python pid=24267 prio=120 orig_cpu=1 dest_cpu=0
          <idle>-0       [000] d..2. 35714.520115: sched_switch: prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=rcu_preempt next_pid=15 next_prio=120
     rcu_preempt-15      [000] d..2. 35714.520121: sched_switch: prev_comm=rcu_preempt prev_pid=15 prev_prio=120 prev_state=I ==> next_comm=python next_pid=24267 next_prio=120
 tokio-rt-worker-81      [001] d..2. 35714.520160: sched_switch: prev_comm=tokio-rt-worker prev_pid=81 prev_prio=110 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120
"""  # noqa: E501 (the trace's own lines)
RELEASED = 35714_517_151_946  # the releaser's stamp, time.monotonic_ns()
GRANTED = 35714_520_122_807  # the granted process's


def events() -> list[ts.Event]:
    return sorted(ts.parse(EXCERPT.splitlines()), key=lambda e: e.ns)


def test_parse_reads_the_scheduler_events_and_skips_the_rest():
    found = events()
    assert [e.event for e in found].count("sched_switch") == 5
    assert all(e.event in ts.EVENTS for e in found)  # the softirq line is not one
    first = found[0]
    assert (first.ns, first.cpu, first.event) == (35714_517_153_000, 0, "sched_waking")
    assert first.fields == {"comm": "python", "pid": "24267", "prio": "120", "target_cpu": "001"}
    # A command name with dashes: the pid is the last "-digits" before the CPU.
    last = found[-1]
    assert last.fields["prev_comm"] == "tokio-rt-worker" and last.fields["prev_pid"] == "81"


def test_cpu_runs_follow_the_switches():
    runs = ts.cpu_runs(events())
    on_1 = [(r.task, r.start, r.end, r.prio) for r in runs if r.cpu == 1]
    assert ("tokio-rt-worker-81", 35714_517_193_000, 35714_520_160_000, 110) in on_1
    on_0 = [(r.task, r.start, r.end) for r in runs if r.cpu == 0]
    assert ("idle", 35714_517_162_000, 35714_520_115_000) in on_0


def test_a_stall_says_where_the_granted_process_waited_and_who_ran():
    stall = ts.explain(
        ts.Stall("handoff", RELEASED, GRANTED, 24267), events(), ts.cpu_runs(events())
    )
    assert stall.moves == [
        "+0.022 ms  woken onto CPU 1",
        "+2.948 ms  moved from CPU 1 to CPU 0",
        "+2.969 ms  runs on CPU 0",
    ]
    text = ts.render(stall)
    assert text.startswith("handoff of 2.971 ms (the process granted: pid 24267)")
    assert "CPU 1: tokio-rt-worker-81 2.930 ms (prio 110)" in text
    assert "CPU 0: idle 2.953 ms" in text


def test_handoffs_and_holds_come_from_the_workers_stamps_in_grant_order():
    def stamps(*grants: tuple[int, int, int, int]) -> processes.Stamps:
        called, granted, released, order = (array("q", xs) for xs in zip(*grants))
        return processes.Stamps(called, granted, released, order)

    # Two workers taking turns: (called, granted, released, place in the order).
    a = stamps((0, 10, 20, 0), (21, 50, 60, 2))
    b = stamps((5, 25, 40, 1), (41, 65, 70, 3))
    window = processes.Window([a, b], [101, 102], begin=20, end=100, violations=0)
    gaps = [(s.start, s.end, s.pid) for s in ts.handoffs(window)]
    assert gaps == [(20, 25, 102), (40, 50, 101), (60, 65, 102)]
    assert [(s.start, s.end, s.pid) for s in ts.holds(window)] == [
        (25, 40, 102),
        (50, 60, 101),
        (65, 70, 102),
    ]
    assert [s.end - s.start for s in ts.longest(ts.handoffs(window), 1)] == [10]
