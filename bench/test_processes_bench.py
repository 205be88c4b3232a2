"""bench/processes.py at its smoke sizes: it runs, its table and its JSON
carry every figure of every peer, and its barge count counts barges.

Tests, not benchmarks (``python -m pytest bench/test_processes_bench.py``;
with ``--benchmark-only`` they are skipped). Only shapes are checked, never
speed: the figures of a smoke run mean nothing. A peer that is not installed
(posix_ipc, sysv_ipc) skips its own checks.
"""

from __future__ import annotations

import importlib.util
import sys
from array import array
from pathlib import Path

import processes
import pytest
import smoke

from fastsem import _impl

pytestmark = pytest.mark.skipif(
    _impl.process_module is None or not sys.platform.startswith("linux"),
    reason="fastsem's process-shared semaphores: compiled, on Linux",
)

SCRIPT = Path(__file__).with_name("processes.py")
OPTIONAL = {processes.POSIX_IPC: "posix_ipc", processes.SYSV_IPC: "sysv_ipc"}
ALWAYS = [processes.FAIR, processes.NONFAIR, processes.MULTIPROCESSING, processes.THREADING]
PEERS = [*ALWAYS[:3], *OPTIONAL, processes.THREADING]
WORKERS = processes.PLANS["smoke"].workers
KILLS = processes.PLANS["smoke"].kills


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """(process, JSON result) of one smoke run, shared by the tests here."""
    return smoke.run(SCRIPT, tmp_path_factory.mktemp("processes"))


@pytest.fixture(params=PEERS)
def peer_name(request):
    package = OPTIONAL.get(request.param)
    if package is not None and importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed")
    return request.param


def test_exits_zero_and_writes_json(smoke_run):
    proc, result = smoke_run
    assert proc.returncode == 0, proc.stderr
    assert result is not None
    assert result["start_method"] == "fork"
    assert result["plan"]["mode"] == "smoke"


def test_every_peer_is_measured_or_said_to_be_left_out(smoke_run):
    _, result = smoke_run
    measured = {r["name"] for r in result["contenders"]}
    assert set(ALWAYS) <= measured
    for name, package in OPTIONAL.items():
        installed = importlib.util.find_spec(package) is not None
        assert (name in measured) == installed
        assert (name in result["skipped"]) != installed


def test_every_figure_of_a_peer(smoke_run, peer_name):
    _, result = smoke_run
    row = smoke.row(result, peer_name)
    assert smoke.is_number(row["pair"]["ns"]) and row["pair"]["ns"] > 0
    assert smoke.is_number(row["handoff"]["ns"]) and row["handoff"]["ns"] > 0
    assert sorted(row["contended"]) == sorted(processes.contended_key(n) for n in WORKERS)
    for n in WORKERS:
        con = row["contended"][processes.contended_key(n)]
        assert con["workers"] == n
        assert len(con["per_worker_counts"]) == n
        assert con["acquisitions"] == sum(con["per_worker_counts"]) > 0
        for name in ("ops_per_s", "jain", "wait_p50_ns", "wait_p99_ns", "wait_max_ns"):
            assert smoke.is_number(con[name]), name
        assert 0 <= con["barges"] <= con["repeat_grants"] <= con["acquisitions"]
        assert con["exclusion_violations"] == 0
    if row["same_process"]:
        assert row["recovery"] is None
        return
    rec = row["recovery"]
    if rec["never"]:
        assert rec["p99_ns"] is None
        assert rec["recovered"] == rec["kills"] - 1
    else:
        assert rec["recovered"] == rec["kills"] == KILLS
        assert all(smoke.is_number(rec[k]) for k in ("p50_ns", "p99_ns", "max_ns"))


def test_recovery(smoke_run):
    """fastsem and SysV with SEM_UNDO give a dead holder's permit back;
    multiprocessing does not, and is killed only once."""
    _, result = smoke_run
    for name in (processes.FAIR, processes.NONFAIR):
        rec = smoke.row(result, name)["recovery"]
        assert not rec["never"] and rec["recovered"] == KILLS
    rec = smoke.row(result, processes.MULTIPROCESSING)["recovery"]
    assert rec["never"] and rec["kills"] == 1 and rec["recovered"] == 0


def test_table_shows_every_peer_and_figure(smoke_run):
    proc, result = smoke_run
    headings, body = smoke.table(proc.stdout)
    assert headings[1:] == smoke.headings_of(result)
    labels = [cells[0] for cells in body]
    assert labels[:4] == ["uncontended ns/pair", "x multiprocessing", "handoff us",
                          "x multiprocessing"]  # fmt: skip
    for n in WORKERS:
        assert f"{n} processes on value 1" in labels
    assert labels.count("Jain") == labels.count("barges") == len(WORKERS)
    assert labels[-3:] == ["p50 ms", "p99 ms", "max ms"]
    # A figure missing shows as "-": only threading, the last column, has no
    # recovery; the section headings have no figures.
    for cells in body:
        label, figures = cells[0], cells[1:]
        if label.endswith("on value 1") or label.startswith("recovery"):
            assert figures == [""] * len(figures)
            continue
        if label in ("p50 ms", "p99 ms", "max ms"):
            assert figures[-1] == "-"
            figures = figures[:-1]
        assert "-" not in figures and "" not in figures, cells


def test_goals_are_all_judged(smoke_run):
    proc, result = smoke_run
    ids = [g["id"] for g in result["goals"]]
    assert ids == [
        "process-pair",
        "process-handoff",
        *(f"process-{kind}-{n}p" for n in WORKERS for kind in ("jain", "barging", "max-wait")),
        "process-recovery-p99",
    ]
    for goal in result["goals"]:
        assert goal["met"] is not None, goal["id"]
        assert goal["id"] in proc.stdout
    assert f"{sum(g['met'] for g in result['goals'])} of {len(ids)} measured goals met" in (
        proc.stdout
    )


# --------------------------------------------------------------------------
# The barge count, on grants made up to show each case


def _stamps(*grants):
    """Workers' Stamps from (worker, called, granted, released) in grant
    order."""
    workers = {}
    for seq, (w, called, granted, released) in enumerate(grants):
        s = workers.setdefault(w, processes.Stamps(*(array("q") for _ in range(4))))
        s.called.append(called)
        s.granted.append(granted)
        s.released.append(released)
        s.order.append(seq)
    return [workers[w] for w in sorted(workers)]


def test_a_repeat_grant_while_another_waits_is_a_barge():
    # B called acquire() at 5, before A released its first grant at 20.
    workers = _stamps((0, 0, 10, 20), (0, 21, 22, 30), (1, 5, 31, 40))
    assert processes.count_barges(workers, 0, 100) == (1, 1)


def test_a_repeat_grant_with_nobody_waiting_is_no_barge():
    # B called acquire() at 25, after A's release at 20.
    workers = _stamps((0, 0, 10, 20), (0, 21, 22, 30), (1, 25, 31, 40))
    assert processes.count_barges(workers, 0, 100) == (0, 1)


def test_alternating_grants_are_no_repeats():
    workers = _stamps((0, 0, 10, 20), (1, 5, 21, 30), (0, 21, 31, 40), (1, 31, 41, 50))
    assert processes.count_barges(workers, 0, 100) == (0, 0)


def test_a_waiter_already_served_is_not_waiting():
    # B's only grant came before A's two: nobody waited through them.
    workers = _stamps((1, 0, 1, 9), (0, 0, 10, 20), (0, 21, 22, 30))
    assert processes.count_barges(workers, 0, 100) == (0, 1)


def test_barges_outside_the_window_are_not_counted():
    workers = _stamps((0, 0, 10, 20), (0, 21, 22, 30), (1, 5, 31, 40))
    assert processes.count_barges(workers, 25, 100) == (0, 0)
    assert processes.count_barges(workers, 0, 22) == (0, 0)


def test_analyse():
    workers = _stamps((0, 0, 10, 20), (0, 21, 22, 30), (1, 5, 31, 40))
    figures = processes.analyse(workers, 0, 100, violations=0)
    assert figures.per_worker_counts == [2, 1]
    assert figures.acquisitions == 3
    assert figures.wait_max_ns == 26 and figures.wait_p50_ns == 10
    assert figures.barges == 1
    assert figures.jain == pytest.approx(9 / (2 * 5))
