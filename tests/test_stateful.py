"""The C implementation against the pure-Python reference, driven by
hypothesis: the same random operations, including queued waiter threads, must
give the same results, values and queues."""

from __future__ import annotations

import os
import threading
import time

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import fastsem._pyfastsem as python_impl
from fastsem import SemaphoreClosed
from fastsem._impl import NO_EXTENSIONS

if NO_EXTENSIONS:
    pytest.skip("C implementation disabled", allow_module_level=True)
import fastsem._cfastsem as c_impl

MAX_WAITERS = 6


class QueuedWaiter:
    """A thread blocked in acquire(n=want); `outcome` says how it ended."""

    def __init__(self, sem, want: int) -> None:
        self.outcome: str | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(sem, want), daemon=True)
        self.thread.start()

    def _run(self, sem, want: int) -> None:
        try:
            self.outcome = "granted" if sem.acquire(timeout=60, n=want) else "timeout"
        except SemaphoreClosed:
            self.outcome = "closed"
        except ValueError:
            self.outcome = "rejected"  # a lowered bound
        self.done.set()

    @property
    def granted(self) -> threading.Event:
        return self.done


class CAgainstPython(RuleBasedStateMachine):
    """Fair mode: every grant is decided inside release(), synchronously, so
    after each step both semaphores must agree exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.pair = None
        self.waiters: list[tuple[QueuedWaiter, QueuedWaiter, int]] = []
        # The permits' books, kept from the outcomes both sides agreed on.
        self.initial = self.released = self.taken = 0
        self.resized = False

    @rule(value=st.integers(0, 4), bounded=st.booleans())
    @precondition(lambda self: self.pair is None)
    def create(self, value, bounded):
        kind = "BoundedSemaphore" if bounded else "Semaphore"
        self.bounded = bounded
        self.initial = value
        self.pair = (getattr(c_impl, kind)(value), getattr(python_impl, kind)(value))

    def both(self, method: str, *args, **kwargs):
        outcomes = []
        for sem in self.pair:
            try:
                outcomes.append(("ok", getattr(sem, method)(*args, **kwargs)))
            except (ValueError, OverflowError, TypeError, SemaphoreClosed) as exc:
                outcomes.append((type(exc).__name__, str(exc)))
        assert outcomes[0] == outcomes[1], (method, args, kwargs, outcomes)
        return outcomes[0]

    @rule(n=st.integers(-1, 6))
    @precondition(lambda self: self.pair is not None)
    def try_acquire(self, n):
        if self.both("acquire", False, n=n) == ("ok", True):
            self.taken += n

    @rule(n=st.integers(1, 5))
    @precondition(lambda self: self.pair is not None)
    def acquire_timeout_zero(self, n):
        if self.both("acquire", timeout=0, n=n) == ("ok", True):
            self.taken += n

    @rule(n=st.integers(-1, 6))
    @precondition(lambda self: self.pair is not None)
    def release(self, n):
        if self.both("release", n)[0] == "ok":
            self.released += n

    @rule(n=st.integers(1, 4))
    @precondition(lambda self: self.pair is not None and len(self.waiters) < MAX_WAITERS)
    def queue_a_waiter(self, n):
        c_sem, py_sem = self.pair
        if self.bounded and n > py_sem.max_value:
            return  # rejected at once; try_acquire covers that
        expected = [c_sem.waiting, py_sem.waiting]
        wc = QueuedWaiter(c_sem, n)
        wp = QueuedWaiter(py_sem, n)
        self.waiters.append((wc, wp, n))
        # Either it was granted at once or it is queued: wait for one of them.
        for sem, w, before in ((c_sem, wc, expected[0]), (py_sem, wp, expected[1])):
            deadline = time.monotonic() + 10
            while not (w.granted.is_set() or sem.waiting == before + 1):
                assert time.monotonic() < deadline
                time.sleep(0.0005)

    @rule()
    @precondition(lambda self: self.pair is not None)
    def drain(self):
        outcome, drained = self.both("drain")
        if outcome == "ok":
            self.taken += drained

    @rule(new_max=st.integers(-1, 5))
    @precondition(lambda self: self.pair is not None and self.bounded)
    def resize(self, new_max):
        if self.both("resize", new_max)[0] == "ok":
            self.resized = True
        self.settle()

    @rule()
    @precondition(lambda self: self.pair is not None)
    def close(self):
        self.both("close")
        self.settle()

    def settle(self) -> None:
        """Waiters turned away or granted report a moment later: wait for the
        ones that have left the queue (as many on both sides)."""
        for sem, index in ((self.pair[0], 0), (self.pair[1], 1)):
            left = len(self.waiters) - sem.waiting
            deadline = time.monotonic() + 10
            while sum(w[index].done.is_set() for w in self.waiters) < left:
                assert time.monotonic() < deadline, "waiters did not report"
                time.sleep(0.0005)

    @invariant()
    def agree(self):
        if self.pair is None:
            return
        c_sem, py_sem = self.pair
        assert c_sem.value == py_sem.value
        assert c_sem.waiting == py_sem.waiting
        if self.bounded:
            assert c_sem.value <= c_sem.max_value

    @invariant()
    def permits_are_conserved(self):
        """Every permit is free or held: the value is what was there, plus
        what was released, minus what was taken (by acquires, drains and
        granted waiters). A resize moves the bound; past one, a bounded
        semaphore's free and held permits cover at least its bound (more while
        a lowered bound is still owed permits). Checked on each side on its
        own: a miscount both implementations shared would pass the agreement."""
        if self.pair is None:
            return
        self.settle()
        for index, sem in enumerate(self.pair):
            granted = sum(n for *pair, n in self.waiters if pair[index].outcome == "granted")
            held = self.taken + granted - self.released
            if self.resized:
                assert sem.value + held >= sem.max_value, (index, sem.value, held)
            else:
                assert sem.value + held == self.initial, (index, sem.value, held)

    @invariant()
    def same_waiters_served(self):
        if self.pair is None:
            return
        self.settle()
        for wc, wp, _ in self.waiters:
            assert wc.outcome == wp.outcome

    @invariant()
    def same_statistics(self):
        if self.pair is None:
            return
        self.settle()
        c_stats, py_stats = (sem.statistics() for sem in self.pair)
        fields = ("acquisitions", "contended", "timeouts", "interrupts", "waiting", "max_waiting")
        assert [getattr(c_stats, f) for f in fields] == [getattr(py_stats, f) for f in fields]
        assert self.pair[0].closed == self.pair[1].closed

    def teardown(self):
        if self.pair is None:
            return
        for sem in self.pair:
            sem.close()  # turns every queued waiter away
        for wc, wp, _ in self.waiters:
            wc.thread.join(10)
            wp.thread.join(10)
            assert not wc.thread.is_alive() and not wp.thread.is_alive()


CAgainstPython.TestCase.settings = settings(
    max_examples=int(os.environ.get("FASTSEM_HYPOTHESIS_EXAMPLES", "60")),
    stateful_step_count=25,
    deadline=None,
)
TestCAgainstPython = CAgainstPython.TestCase
