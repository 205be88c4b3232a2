"""Races: many threads for seconds, mixing every kind of acquire, with an
invariant checker (holders never exceed the value, nothing lost at the end).
FASTSEM_STRESS_SECONDS sets the length of each run."""

from __future__ import annotations

import os
import random
import threading

import pytest

SECONDS = float(os.environ.get("FASTSEM_STRESS_SECONDS", "1.0"))
THREADS = 8
VALUE = 3


@pytest.mark.slow
@pytest.mark.parametrize("fair", [True, False], ids=["fair", "nonfair"])
@pytest.mark.parametrize("bounded", [False, True], ids=["unbounded", "bounded"])
def test_invariants_under_contention(impl, fair, bounded):
    kind = impl.BoundedSemaphore if bounded else impl.Semaphore
    sem = kind(VALUE, fair=fair)
    guard = threading.Lock()
    state = {"held": 0, "max_held": 0}
    violations: list[str] = []
    acquired = [0] * THREADS
    stop = threading.Event()

    def take(n: int) -> None:
        with guard:
            state["held"] += n
            state["max_held"] = max(state["max_held"], state["held"])
            if state["held"] > VALUE:
                violations.append(f"{state['held']} permits held, value {VALUE}")

    def give(n: int) -> None:
        with guard:
            state["held"] -= n

    def worker(index: int) -> None:
        rng = random.Random(index)
        while not stop.is_set():
            n = rng.choice((1, 1, 1, 2, 3))
            op = rng.random()
            if op < 0.1:
                with sem:
                    take(1)
                    give(1)
                continue
            if op < 0.4:
                got = sem.acquire(timeout=rng.uniform(0, 0.001), n=n)
            elif op < 0.6:
                got = sem.acquire(False, n=n)
            elif op < 0.9:
                got = sem.acquire(timeout=5, n=n)
            else:
                got = sem.acquire(n=n)
            if got:
                acquired[index] += 1
                take(n)
                sum(range(rng.randrange(50)))  # a little work while holding
                give(n)
                sem.release(n)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    stop.wait(SECONDS)
    stop.set()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    assert violations == []
    assert sem.value == VALUE and sem.waiting == 0
    assert state["max_held"] >= 2  # permits were held at once: the threads did race
    if fair:
        assert all(acquired), f"a thread starved: {acquired}"


@pytest.mark.slow
def test_release_from_other_threads_conserves_permits(impl):
    """Producers release, consumers acquire with tiny timeouts: every permit
    released is acquired exactly once or still free at the end."""
    sem = impl.Semaphore(0)
    produced = 20000
    consumed = [0] * 4
    stop = threading.Event()

    def producer() -> None:
        for _ in range(produced // 2):
            sem.release()

    def consumer(index: int) -> None:
        while not stop.is_set():
            if sem.acquire(timeout=0.0005):
                consumed[index] += 1

    consumers = [threading.Thread(target=consumer, args=(i,)) for i in range(4)]
    producers = [threading.Thread(target=producer) for _ in range(2)]
    for t in consumers + producers:
        t.start()
    for t in producers:
        t.join(60)
    stop.set()
    for t in consumers:
        t.join(60)
    assert sum(consumed) + sem.value == produced
    assert sem.waiting == 0


@pytest.mark.slow
def test_batched_releases_racing_timeouts_conserve_permits(impl):
    """Waiters served several at a time (release(n) wakes them as a relay,
    each passing the wake-up on once it holds the GIL) while some of them
    time out: nobody is left asleep with a permit, and every permit released
    is acquired exactly once or still free at the end."""
    sem = impl.Semaphore(0)
    rng = random.Random(7)
    waiters = 24
    rounds = 30
    got = [0] * waiters
    timed_out = [0] * waiters
    stop = threading.Event()

    def waiter(index: int) -> None:
        local = random.Random(index)
        while not stop.is_set():
            timeout = None if local.random() < 0.5 else local.uniform(0.0001, 0.003)
            if sem.acquire(timeout=timeout):
                got[index] += 1
            else:
                timed_out[index] += 1

    threads = [threading.Thread(target=waiter, args=(i,)) for i in range(waiters)]
    for t in threads:
        t.start()
    released = 0
    for _ in range(rounds):
        n = rng.randint(1, waiters)
        sem.release(n)
        released += n
        threading.Event().wait(0.005)
    stop.set()
    sem.release(waiters)  # one for each thread that may still wait untimed
    released += waiters
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a waiter is stuck"
    assert sum(got) + sem.value == released
    assert sem.waiting == 0
    assert sum(timed_out) > 0  # the race this test is about happened
