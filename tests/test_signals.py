"""Ctrl-C and other signals reaching a thread blocked in acquire(), in a real
subprocess with real signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

MODULES = {"c": "fastsem._cfastsem", "python": "fastsem._pyfastsem"}


def module_name(impl) -> str:
    return impl.__name__


# Every child has this; one that signals its own main thread while it waits
# calls it first, so that the path under test, a blocked wait cut short by
# the signal, is the one taken. A signal that lands after the main thread
# last looked for signals but before its blocking call began does not cut
# that call short: CPython's lock.acquire() looks before it sleeps, not in
# between (with or without the GIL). Both implementations then run the
# handler at their next step out of the wait, within 10 ms (the tests of a
# signal handled in another thread, below); threading.Semaphore only when its
# wait ends. Asleep for ten looks in a row, the main thread is in the
# blocking call.
MAIN_ASLEEP = """
    def wait_main_asleep(looks=10):
        path = "/proc/self/task/%d/stat" % threading.main_thread().native_id
        if not os.path.exists(path):  # no /proc (macOS): a pause stands in
            time.sleep(0.05)
            return
        seen = 0
        while seen < looks:
            with open(path) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            seen = seen + 1 if state == "S" else 0
            time.sleep(0.001)
"""


def start_child(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(MAIN_ASLEEP) + textwrap.dedent(code), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_asleep(pid: int) -> None:
    """Waits until the main thread of process pid (its thread id is the
    process id) sleeps in the kernel: queued is not yet asleep. A signal that
    lands before the wait blocks is caught all the same (the C binding steps
    out of its wait every 10 ms to look), so the outcome does not depend on
    this check; it makes sure that the path under test, a blocked wait cut
    short, is the one taken. Without /proc (macOS) a short sleep stands in."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        time.sleep(0.05)
        return

    def asleep() -> bool:
        # The state is the first field after the command name in parentheses.
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "S"

    wait_until(asleep, what=f"process {pid} to sleep in its wait")


def finish(child: subprocess.Popen) -> dict:
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


CTRL_C_CHILD = """
    import importlib, json, sys, threading, time
    impl = importlib.import_module(sys.argv[1])
    timeout = None if sys.argv[2] == "none" else float(sys.argv[2])
    sem = impl.Semaphore(0)
    behind = []

    def wait_behind():
        behind.append(sem.acquire(timeout=30))

    def announce():
        while sem.waiting < 1:
            time.sleep(0.001)
        threading.Thread(target=wait_behind).start()
        while sem.waiting < 2:
            time.sleep(0.001)
        print("READY", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    try:
        got = sem.acquire() if timeout is None else sem.acquire(timeout=timeout)
        outcome = "returned %r" % got
    except KeyboardInterrupt:
        outcome = "KeyboardInterrupt"
    caught_at = time.monotonic()
    after = {"value": sem.value, "waiting": sem.waiting}
    sem.release()  # must go to the thread queued behind
    while not behind:
        time.sleep(0.001)
    print(json.dumps({"outcome": outcome, "caught_at": caught_at, "after": after,
                      "behind": behind, "final": sem.value}))
"""


@pytest.mark.parametrize("timeout", ["none", "60"], ids=["no-timeout", "timeout"])
def test_ctrl_c_interrupts_a_blocked_acquire(impl, timeout):
    child = start_child(CTRL_C_CHILD, module_name(impl), timeout)
    assert child.stdout.readline().strip() == "READY"  # both threads queued
    wait_until_asleep(child.pid)
    sent_at = time.monotonic()  # CLOCK_MONOTONIC is system-wide
    child.send_signal(signal.SIGINT)
    report = finish(child)
    assert report["outcome"] == "KeyboardInterrupt"
    # The main thread left the queue and took nothing; the thread behind it
    # kept its place and got the next permit.
    assert report["after"] == {"value": 0, "waiting": 1}
    assert report["behind"] == [True] and report["final"] == 0
    latency = report["caught_at"] - sent_at
    print(f"Ctrl-C latency ({impl.__name__}, timeout={timeout}): {latency * 1000:.1f} ms")
    assert latency < 5  # not a timing test: the acquire would have waited 60 s or for ever


HANDLER_CHILD = """
    import importlib, json, os, signal, sys, threading, time
    impl = importlib.import_module(sys.argv[1])
    sem = impl.Semaphore(0)
    handled = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: handled.append(signum))
    behind = []
    main_queued = threading.Event()

    def wait_behind():
        behind.append(sem.acquire(timeout=30))

    def pester_then_release():
        while sem.waiting < 1:
            time.sleep(0.001)
        threading.Thread(target=wait_behind).start()
        while sem.waiting < 2:
            time.sleep(0.001)
        for sent in range(1, 6):
            wait_main_asleep()
            os.kill(os.getpid(), signal.SIGUSR1)
            # Handled before the next one is sent: two pending signals count as one.
            while len(handled) < sent:
                time.sleep(0.001)
        sem.release()  # the main thread is still first in line

    threading.Thread(target=pester_then_release, daemon=True).start()
    got = sem.acquire(timeout=20)
    waiting_after = sem.waiting
    time.sleep(0.05)
    behind_before_release = list(behind)
    sem.release()
    while not behind:
        time.sleep(0.001)

    # A deadline keeps running across handled signals: it is not restarted.
    def pester(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)

    threading.Thread(target=pester, args=(1.5,), daemon=True).start()
    start = time.monotonic()
    timed_out = sem.acquire(timeout=0.5)
    elapsed = time.monotonic() - start
    print(json.dumps({"got": got, "handled": len(handled), "waiting_after": waiting_after,
                      "behind_before_release": behind_before_release, "behind": behind,
                      "timed_out_result": timed_out, "elapsed": elapsed}))
"""


def test_a_handler_that_does_not_raise_lets_the_wait_go_on(impl):
    report = finish(start_child(HANDLER_CHILD, module_name(impl)))
    assert report["handled"] >= 5
    assert report["got"] is True  # kept its place: first in line, first served
    assert report["waiting_after"] == 1 and report["behind_before_release"] == []
    assert report["behind"] == [True]
    assert report["timed_out_result"] is False
    # Restarting the 0.5 s timeout at each of the signals (every 50 ms for
    # 1.5 s) would take 2 s or more.
    assert 0.45 <= report["elapsed"] < 1.4


RACE_CHILD = """
    import importlib, json, os, random, signal, sys, threading, time
    impl = importlib.import_module(sys.argv[1])

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        # Raise only while the main thread is still queued: a grant can still
        # race with the exception (the permit must then be passed on), but the
        # exception cannot land after acquire() returned, before the caller
        # counted its permit (a window every Python lock has).
        if sem.waiting:
            raise Interrupted

    signal.signal(signal.SIGUSR1, handler)
    sem = impl.Semaphore(0)
    released = 0
    held = 0
    interrupted = 0
    rng = random.Random(7)
    for i in range(300):
        go = threading.Event()

        def poke():
            global released
            go.wait()
            time.sleep(rng.uniform(0, 0.003))
            if rng.random() < 0.5:
                sem.release()
                released += 1
                os.kill(os.getpid(), signal.SIGUSR1)
            else:
                os.kill(os.getpid(), signal.SIGUSR1)
                time.sleep(rng.uniform(0, 0.02))  # around the 10 ms signal check
                sem.release()
                released += 1

        t = threading.Thread(target=poke)
        t.start()
        try:
            go.set()
            if sem.acquire(timeout=0.05):
                held += 1
        except Interrupted:
            interrupted += 1
        t.join()
    print(json.dumps({"released": released, "held": held, "value": sem.value,
                      "waiting": sem.waiting, "interrupted": interrupted}))
"""


def test_interrupts_racing_with_releases_never_lose_a_permit(impl):
    report = finish(start_child(RACE_CHILD, module_name(impl)))
    assert report["interrupted"] > 0
    assert report["waiting"] == 0
    assert report["held"] + report["value"] == report["released"]


GRANTED_THEN_INTERRUPTED_CHILD = """
    import importlib, json, os, signal, sys, threading, time
    impl = importlib.import_module(sys.argv[1])
    sem = impl.Semaphore(0)

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        # Runs in the main thread while its own node is first in the queue:
        # this release grants the permit to that very node, then the wait
        # is abandoned. The permit must go on to the next in line.
        sem.release()
        raise Interrupted

    signal.signal(signal.SIGUSR1, handler)
    behind = []

    def wait_behind():
        behind.append(sem.acquire(timeout=30))

    def interrupt():
        while sem.waiting < 1:
            time.sleep(0.001)
        threading.Thread(target=wait_behind).start()
        while sem.waiting < 2:
            time.sleep(0.001)
        wait_main_asleep()
        os.kill(os.getpid(), signal.SIGUSR1)

    threading.Thread(target=interrupt, daemon=True).start()
    try:
        outcome = "returned %r" % sem.acquire(timeout=30)
    except Interrupted:
        outcome = "Interrupted"
    deadline = time.monotonic() + 30
    while not behind and time.monotonic() < deadline:
        time.sleep(0.001)
    stats = sem.statistics()
    print(json.dumps({"outcome": outcome, "behind": behind, "value": sem.value,
                      "waiting": sem.waiting, "acquisitions": stats.acquisitions,
                      "contended": stats.contended, "interrupts": stats.interrupts}))
"""


def test_a_permit_granted_during_an_interrupt_is_passed_on(impl):
    report = finish(start_child(GRANTED_THEN_INTERRUPTED_CHILD, module_name(impl)))
    # The grant given back is not counted as an acquisition; the wait is an
    # interrupt.
    assert report == {
        "outcome": "Interrupted",
        "behind": [True],
        "value": 0,
        "waiting": 0,
        "acquisitions": 1,
        "contended": 1,
        "interrupts": 1,
    }


HANDLED_ELSEWHERE_CHILD = """
    import importlib, json, os, signal, sys, threading, time
    sem = getattr(importlib.import_module(sys.argv[1]), sys.argv[2])(0)

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    signal.signal(signal.SIGUSR1, handler)
    sent = []

    def signal_from_here():
        wait_main_asleep()
        sent.append(time.monotonic())
        # Raised in this thread, the signal's C handler runs here: the main
        # thread's wait is not interrupted, only told that a handler is due.
        signal.raise_signal(signal.SIGUSR1)

    threading.Thread(target=signal_from_here, daemon=True).start()
    try:
        outcome = "returned %r" % sem.acquire(timeout=5)
    except Interrupted:
        outcome = "Interrupted"
    print(json.dumps({"outcome": outcome, "latency": time.monotonic() - sent[0],
                      "value": sem.value, "waiting": sem.waiting}))
"""


def handled_elsewhere(module: str, cls: str) -> dict:
    # What a Ctrl-C that lands in another thread, or just before the main
    # thread's wait began, does: the handler is due, and the main thread
    # must step out of its wait to run it (every 10 ms), not 5 s later.
    return finish(start_child(HANDLED_ELSEWHERE_CHILD, module, cls))


def test_a_signal_handled_in_another_thread_still_interrupts_the_wait(impl):
    report = handled_elsewhere(module_name(impl), "Semaphore")
    assert report["outcome"] == "Interrupted"
    assert report["latency"] < 2.5  # half the timeout: not a timing test
    assert (report["value"], report["waiting"]) == (0, 0)


def test_a_signal_handled_in_another_thread_interrupts_a_process_semaphores_wait():
    fastsem = pytest.importorskip("fastsem")
    if getattr(fastsem, "ProcessSemaphore", None) is None:
        pytest.skip("no process-shared semaphores on this platform")
    try:
        fastsem.ProcessSemaphore(0).close()
    except NotImplementedError as exc:
        pytest.skip(str(exc))
    report = handled_elsewhere("fastsem", "ProcessSemaphore")
    assert report["outcome"] == "Interrupted"
    assert report["latency"] < 2.5
    assert (report["value"], report["waiting"]) == (0, 0)
