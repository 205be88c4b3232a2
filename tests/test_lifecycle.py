"""hold(), close(), drain(), resize(), statistics() and holder tracking, on
both implementations, with real threads, including the races: close while
threads are being granted, resize during releases, statistics read while
others acquire."""

from __future__ import annotations

import dataclasses
import random
import threading
import time

import pytest
from conftest import Waiter, queue_waiters, wait_until

from fastsem import Holder, SemaphoreClosed, SemaphoreStatistics

# ---------------------------------------------------------------------------
# hold()


def test_hold_acquires_and_releases(impl):
    sem = impl.Semaphore(3)
    with sem.hold(n=2) as held:
        assert held is sem
        assert sem.value == 1
    assert sem.value == 3


def test_hold_releases_when_the_block_raises(impl):
    sem = impl.Semaphore(1)
    with pytest.raises(KeyError), sem.hold(timeout=1):
        raise KeyError
    assert sem.value == 1


def test_hold_raises_timeout_error(impl):
    sem = impl.Semaphore(1)
    sem.acquire()
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"within 0\.05 seconds"), sem.hold(timeout=0.05):
        pytest.fail("the block must not run")  # pragma: no cover
    assert time.monotonic() - start >= 0.045
    assert sem.value == 0 and sem.waiting == 0
    sem.release()
    assert sem.value == 1  # nothing was released on the failed hold


def test_hold_waits_in_line(impl):
    sem = impl.Semaphore(0)
    entered = threading.Event()

    def worker() -> None:
        with sem.hold(timeout=10):
            entered.set()

    t = threading.Thread(target=worker)
    t.start()
    wait_until(lambda: sem.waiting == 1)
    sem.release()
    t.join(10)
    assert entered.is_set() and sem.value == 1


# ---------------------------------------------------------------------------
# close()


def test_closed_is_a_runtime_error():
    assert issubclass(SemaphoreClosed, RuntimeError)


def test_close_turns_away_waiters_and_later_acquires(impl):
    sem = impl.Semaphore(0)
    waiters = queue_waiters(sem, [1, 2, 1])
    assert not sem.closed
    sem.close()
    for w in waiters:
        w.join()
        assert isinstance(w.result, SemaphoreClosed)
    assert sem.closed and sem.waiting == 0
    sem.release(2)  # release still works
    assert sem.value == 2
    for attempt in (
        sem.acquire,
        lambda: sem.acquire(False),
        lambda: sem.acquire(timeout=1),
        lambda: sem.__enter__(),
        lambda: sem.hold(timeout=1).__enter__(),
    ):
        with pytest.raises(SemaphoreClosed):
            attempt()
    assert sem.value == 2
    sem.close()  # idempotent
    assert sem.closed


def test_close_keeps_permits_already_held(impl):
    sem = impl.BoundedSemaphore(2)
    sem.acquire()
    sem.close()
    sem.release()
    assert sem.value == 2


def test_close_while_threads_are_being_granted(impl):
    """Threads loop acquire/release; close lands amid grants. Every thread
    ends with SemaphoreClosed, and every permit taken comes back."""
    sem = impl.BoundedSemaphore(3)
    outcomes: list[object] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while True:
                n = rng.choice((1, 1, 2))
                if sem.acquire(timeout=rng.uniform(0, 0.002), n=n):
                    sum(range(rng.randrange(100)))
                    sem.release(n)
        except SemaphoreClosed as exc:
            with lock:
                outcomes.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    # Close only once permits are being granted through the queue and some
    # threads are queued: a close before the workers got going would race
    # with nothing.
    wait_until(
        lambda: sem.statistics().contended >= 100 and sem.waiting > 0,
        what="queued threads being granted permits",
    )
    sem.close()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert len(outcomes) == 8
    assert sem.value == 3 and sem.waiting == 0


# ---------------------------------------------------------------------------
# drain()


def test_drain_takes_all_free_permits(impl):
    sem = impl.Semaphore(5)
    assert sem.drain() == 5
    assert sem.value == 0
    assert sem.drain() == 0


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "nonfair"])
def test_drain_never_takes_what_a_fair_queue_is_owed(impl, fair):
    sem = impl.Semaphore(2, fair=fair)
    (head,) = queue_waiters(sem, [3])
    assert sem.drain() == (0 if fair else 2)
    sem.release(1 if fair else 3)
    head.join()
    assert head.result is True and sem.value == 0


# ---------------------------------------------------------------------------
# resize()


def test_resize_up_wakes_waiters_in_order(impl):
    sem = impl.BoundedSemaphore(1)
    sem.acquire()
    granted: list[int] = []
    waiters = queue_waiters(sem, [1, 1, 1], log=granted)
    sem.resize(3)  # two new permits: the two oldest waiters
    for w in waiters[:2]:
        w.join()
    # Granted together, the two may wake in either order; the third waits.
    assert sorted(granted) == [0, 1] and sem.waiting == 1 and sem.max_value == 3
    assert not waiters[2].done.is_set()
    sem.resize(4)
    waiters[2].join()
    assert granted[2] == 2


def test_resize_down_takes_free_permits_then_absorbs_releases(impl):
    sem = impl.BoundedSemaphore(4)
    sem.acquire(n=3)  # one free
    sem.resize(1)  # takes the free one; 3 held against a bound of 1: owes 2
    assert (sem.value, sem.max_value) == (0, 1)
    sem.release()
    sem.release()
    assert sem.value == 0  # absorbed
    sem.release()
    assert sem.value == 1
    with pytest.raises(ValueError, match="released too many times"):
        sem.release()
    assert "value=1/1" in repr(sem)


def test_resize_below_a_queued_request_rejects_it(impl):
    sem = impl.BoundedSemaphore(3)
    sem.acquire(n=3)
    big, small = queue_waiters(sem, [3, 1])
    sem.resize(2)
    big.join()
    assert isinstance(big.result, ValueError)
    assert "bounded at 2" in str(big.result)
    sem.release()  # pays the debt (3 held, bound 2)
    assert not small.done.wait(0.02)
    sem.release()
    small.join()
    assert small.result is True


def test_resize_errors(impl):
    sem = impl.BoundedSemaphore(2)
    with pytest.raises(ValueError):
        sem.resize(-1)
    with pytest.raises(TypeError):
        sem.resize(2.5)
    with pytest.raises(OverflowError):
        sem.resize(2**62)
    assert sem.max_value == 2 and sem.value == 2
    assert not hasattr(impl.Semaphore(1), "resize")


def test_resize_during_releases(impl):
    """Resizes race with threads that acquire and release; once the bound is
    back, every permit is back."""
    bound = 4
    sem = impl.BoundedSemaphore(bound)
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            n = rng.choice((1, 2))
            try:
                got = sem.acquire(timeout=0.002, n=n)
            except ValueError:
                continue  # the bound went below the request while it waited
            if got:
                sum(range(rng.randrange(50)))
                try:
                    sem.release(n)
                except BaseException as exc:
                    errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    wait_until(lambda: sem.statistics().acquisitions > 0, what="the workers to start")
    before = sem.statistics().acquisitions
    rng = random.Random(99)
    for _ in range(200):
        sem.resize(rng.randrange(2, bound + 1))
        assert sem.value <= sem.max_value
        time.sleep(0.001)
    assert sem.statistics().acquisitions > before  # the resizes raced with them
    sem.resize(bound)
    stop.set()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sem.value == bound and sem.waiting == 0


# ---------------------------------------------------------------------------
# statistics()


def test_statistics_count_what_happened(impl):
    sem = impl.Semaphore(1)
    assert sem.statistics() == SemaphoreStatistics(0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0)
    sem.acquire()
    sem.release()
    sem.acquire()
    holder = Waiter(sem).start()  # contended
    wait_until(lambda: sem.waiting == 1)
    late = Waiter(sem, timeout=0.02).start()  # times out behind it
    wait_until(lambda: sem.waiting == 2)
    late.join()
    time.sleep(0.01)
    sem.release()
    holder.join()
    stats = sem.statistics()
    assert (stats.acquisitions, stats.contended, stats.timeouts) == (3, 1, 1)
    assert (stats.waiting, stats.max_waiting, stats.interrupts) == (0, 2, 0)
    assert stats.wait_max >= 0.03  # the contended one waited out the other's timeout
    assert stats.wait_total == stats.wait_max
    assert stats.wait_max * 0.75 <= stats.wait_p50 <= stats.wait_p90 <= stats.wait_p99
    assert stats.wait_p99 <= stats.wait_max
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.acquisitions = 0  # type: ignore[misc]
    sem.reset_statistics()
    assert sem.statistics().acquisitions == 0
    assert sem.statistics().max_waiting == 0


def test_statistics_read_while_others_acquire(impl):
    sem = impl.Semaphore(2)
    stop = threading.Event()
    done = [0] * 4

    def worker(i: int) -> None:
        while not stop.is_set():
            if sem.acquire(timeout=0.01):
                done[i] += 1
                sem.release()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    # Read on until the count has moved between reads a few times: two
    # hundred reads in a row can all fall within one switch interval of the
    # GIL, while the workers stand still.
    previous = reads = moves = 0
    deadline = time.monotonic() + 30
    while reads < 200 or moves < 5:
        stats = sem.statistics()
        assert stats.contended <= stats.acquisitions
        assert stats.acquisitions >= previous  # never goes back
        if reads and stats.acquisitions > previous:
            moves += 1
        previous = stats.acquisitions
        reads += 1
        assert time.monotonic() < deadline, f"the count moved {moves} times in 30 s"
    stop.set()
    for t in threads:
        t.join(30)
    assert sem.statistics().acquisitions == sum(done)


def test_the_c_histogram_matches_the_python_one():
    c_impl = pytest.importorskip("fastsem._cfastsem")
    from fastsem._common import histogram_bucket

    rng = random.Random(5)
    samples = [0, 1, 1023, 1024, 1025, 2047, 2048, 10**6, 10**9, 2**45, 2**50]
    samples += [rng.randrange(0, 2**47) for _ in range(20000)]
    samples += [2**k + d for k in range(10, 46) for d in (-1, 0, 1)]
    assert [c_impl._histogram_bucket(ns) for ns in samples] == [
        histogram_bucket(ns) for ns in samples
    ]


# ---------------------------------------------------------------------------
# track_holders


def test_holders_off_by_default(impl):
    with pytest.raises(RuntimeError, match="track_holders"):
        impl.Semaphore(1).holders()


def test_holders_record_thread_permits_and_place(impl):
    sem = impl.Semaphore(5, track_holders=True)
    sem.acquire(n=2)  # this line is where the permits were taken
    line = test_holders_record_thread_permits_and_place.__code__.co_firstlineno + 2
    got = threading.Event()
    finish = threading.Event()

    def other() -> None:
        with sem:
            got.set()
            finish.wait(10)

    t = threading.Thread(target=other, name="other-holder")
    t.start()
    got.wait(10)
    holders = {h.thread_name: h for h in sem.holders()}
    assert all(isinstance(h, Holder) for h in holders.values())
    mine = holders[threading.current_thread().name]
    assert mine.permits == 2 and mine.thread_id == threading.get_ident()
    assert f"line {line}," in mine.acquired_at[0]
    assert "test_lifecycle.py" in mine.acquired_at[0]
    assert holders["other-holder"].permits == 1
    finish.set()
    t.join(10)
    assert [h.permits for h in sem.holders()] == [2]
    sem.release(2)
    assert sem.holders() == []


def test_holders_when_another_thread_releases(impl):
    sem = impl.Semaphore(3, track_holders=True)
    sem.acquire(n=2)
    t = threading.Thread(target=sem.release)  # holds nothing: charged to us
    t.start()
    t.join(10)
    assert [h.permits for h in sem.holders()] == [1]
