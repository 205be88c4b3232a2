"""threading's documented Semaphore behaviour, with threading as the control row,
and fastsem's stricter argument checking."""

from __future__ import annotations

import gc
import pickle
import re
import subprocess
import sys
import threading
import time
import weakref

import pytest
from conftest import Waiter, queued, wait_until

from fastsem._impl import NO_EXTENSIONS

# ---------------------------------------------------------------------------
# Shared semantics: fastsem (C and Python) and threading behave the same.


def test_default_value_is_one(any_impl):
    sem = any_impl.Semaphore()
    assert sem.acquire(blocking=False) is True
    assert sem.acquire(blocking=False) is False


def test_acquire_release_counts(any_impl):
    sem = any_impl.Semaphore(3)
    assert sem.acquire() is True
    assert sem.acquire() is True
    assert sem._value == 1
    sem.release()
    assert sem._value == 2


def test_negative_value_is_rejected(any_impl):
    with pytest.raises(ValueError, match="semaphore initial value must be >= 0"):
        any_impl.Semaphore(-1)
    with pytest.raises(ValueError, match="semaphore initial value must be >= 0"):
        any_impl.BoundedSemaphore(-sys.maxsize)


def test_timeout_with_nonblocking_is_rejected(any_impl):
    sem = any_impl.Semaphore(1)
    with pytest.raises(ValueError, match="can't specify timeout for non-blocking acquire"):
        sem.acquire(False, timeout=1.0)
    assert sem._value == 1


def test_release_zero_is_rejected(any_impl):
    sem = any_impl.Semaphore(1)
    for n in (0, -1):
        with pytest.raises(ValueError, match="n must be one or more"):
            sem.release(n)
    assert sem._value == 1


def test_release_n(any_impl):
    sem = any_impl.Semaphore(0)
    sem.release(5)
    assert sem._value == 5
    assert all(sem.acquire(blocking=False) for _ in range(5))
    assert sem.acquire(blocking=False) is False


def test_unbounded_release_past_initial_value(any_impl):
    sem = any_impl.Semaphore(1)
    sem.release()
    assert sem._value == 2


def test_bounded_over_release_changes_nothing(any_impl):
    sem = any_impl.BoundedSemaphore(2)
    with pytest.raises(ValueError, match="Semaphore released too many times"):
        sem.release()
    sem.acquire()
    with pytest.raises(ValueError, match="Semaphore released too many times"):
        sem.release(2)
    assert sem._value == 1
    sem.release()
    assert sem._value == 2


def test_bounded_is_a_semaphore(any_impl):
    assert isinstance(any_impl.BoundedSemaphore(), any_impl.Semaphore)


def test_timeout_expires(any_impl):
    sem = any_impl.Semaphore(0)
    start = time.monotonic()
    assert sem.acquire(timeout=0.05) is False
    assert time.monotonic() - start >= 0.045  # never early (rounding slack only)
    assert sem._value == 0


@pytest.mark.parametrize("timeout", [0, -1, -0.5])
def test_zero_or_negative_timeout_is_one_attempt(any_impl, timeout):
    sem = any_impl.Semaphore(1)
    assert sem.acquire(timeout=timeout) is True
    assert sem.acquire(timeout=timeout) is False


def test_contended_acquire_is_woken_by_release(any_impl):
    sem = any_impl.Semaphore(0)
    w = Waiter(sem).start()
    wait_until(lambda: queued(sem) == 1, what="the waiter to queue")
    assert not w.done.is_set()
    sem.release()
    w.join()
    assert w.result is True
    assert sem._value == 0


def test_timed_acquire_is_woken_by_release(any_impl):
    sem = any_impl.Semaphore(0)
    w = Waiter(sem, timeout=30).start()
    wait_until(lambda: queued(sem) == 1, what="the waiter to queue")
    sem.release()
    w.join()
    assert w.result is True


def test_with_releases_even_when_the_block_raises(any_impl):
    sem = any_impl.Semaphore(2)
    with sem as entered:
        assert entered is True
        assert sem._value == 1
    assert sem._value == 2
    with pytest.raises(KeyError), sem:
        raise KeyError("boom")
    assert sem._value == 2


@pytest.mark.skipif(sys.version_info < (3, 11), reason="threading's repr shape is 3.11+")
def test_repr_shape_matches_threading(any_impl):
    module = "threading" if any_impl.__name__ == "threading" else "fastsem"
    sem = any_impl.Semaphore(3)
    sem.acquire()
    assert re.fullmatch(rf"<{module}\.Semaphore at 0x[0-9a-f]+: value=2>", repr(sem))
    bsem = any_impl.BoundedSemaphore(3)
    bsem.acquire()
    assert re.fullmatch(rf"<{module}\.BoundedSemaphore at 0x[0-9a-f]+: value=2/3>", repr(bsem))
    assert hex(id(sem)) in repr(sem)


def test_repr_of_a_subclass_names_it(impl):
    class Pool(impl.BoundedSemaphore):
        pass

    assert re.fullmatch(
        r"<test_api\.test_repr_of_a_subclass_names_it\.<locals>\.Pool "
        r"at 0x[0-9a-f]+: value=2/2>",
        repr(Pool(2)),
    )


def test_cannot_be_pickled(any_impl):
    with pytest.raises(TypeError):
        pickle.dumps(any_impl.Semaphore(1))


def test_weak_references(any_impl):
    sem = any_impl.Semaphore(1)
    ref = weakref.ref(sem)
    assert ref() is sem
    del sem
    gc.collect()
    assert ref() is None


# ---------------------------------------------------------------------------
# fastsem's own API and its stricter argument checks.


def test_properties(impl):
    sem = impl.Semaphore(3)
    assert (sem.value, sem._value, sem.waiting, sem.fair) == (3, 3, 0, True)
    assert impl.Semaphore(1, fair=False).fair is False
    bsem = impl.BoundedSemaphore(4, fair=False)
    assert (bsem.value, bsem.max_value, bsem.fair) == (4, 4, False)
    bsem.acquire(n=3)
    assert (bsem.value, bsem.max_value) == (1, 4)


@pytest.mark.parametrize("name", ["value", "_value", "waiting", "fair", "max_value"])
def test_properties_are_read_only(impl, name):
    sem = impl.BoundedSemaphore(2)
    with pytest.raises(AttributeError):
        setattr(sem, name, 5)
    assert sem.value == 2


def test_waiting_counts_queued_threads(impl):
    sem = impl.Semaphore(0)
    waiters = [Waiter(sem).start() for _ in range(3)]
    wait_until(lambda: sem.waiting == 3)
    sem.release(3)
    for w in waiters:
        w.join()
    assert sem.waiting == 0


def test_acquire_n(impl):
    sem = impl.Semaphore(5)
    assert sem.acquire(n=3) is True
    assert sem.value == 2
    assert sem.acquire(blocking=False, n=3) is False
    assert sem.acquire(timeout=0.01, n=3) is False
    assert sem.value == 2
    sem.release(3)
    assert sem.value == 5


@pytest.mark.parametrize("bad", [1.5, 1.0, "1", None, [1]])
def test_non_integer_counts_raise_type_error(impl, bad):
    sem = impl.BoundedSemaphore(2)
    with pytest.raises(TypeError):
        impl.Semaphore(bad)
    with pytest.raises(TypeError):
        impl.BoundedSemaphore(bad)
    with pytest.raises(TypeError):
        sem.acquire(n=bad)
    with pytest.raises(TypeError):
        sem.release(bad)
    assert sem.value == 2


def test_index_objects_and_bools_are_counts(impl):
    class Two:
        def __index__(self):
            return 2

    sem = impl.Semaphore(Two())
    assert sem.value == 2
    assert sem.acquire(n=Two())
    sem.release(True)
    assert sem.value == 1


@pytest.mark.parametrize("huge", [2**63, 2**70, -(2**63) - 1])
def test_counts_past_the_c_range_raise_overflow_error(impl, huge):
    sem = impl.Semaphore(1)
    with pytest.raises(OverflowError):
        impl.Semaphore(huge)
    with pytest.raises(OverflowError):
        sem.acquire(n=huge)
    with pytest.raises(OverflowError):
        sem.release(huge)
    assert sem.value == 1


COUNT_MAX = 2**62 - 1  # the C core keeps two flags beside the count in 64 bits


def test_release_that_would_overflow_changes_nothing(impl):
    sem = impl.Semaphore(COUNT_MAX - 1)
    with pytest.raises(OverflowError):
        sem.release(2)
    assert sem.value == COUNT_MAX - 1
    sem.release(1)
    assert sem.value == COUNT_MAX


@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore"])
def test_counts_past_count_max_raise_overflow_error(impl, kind):
    with pytest.raises(OverflowError):
        getattr(impl, kind)(COUNT_MAX + 1)
    sem = getattr(impl, kind)(5)
    if kind == "Semaphore":
        with pytest.raises(OverflowError):
            sem.acquire(n=COUNT_MAX + 1)
    assert sem.value == 5


def test_acquire_n_below_one_is_rejected(impl):
    sem = impl.Semaphore(1)
    for n in (0, -3):
        with pytest.raises(ValueError, match="n must be one or more"):
            sem.acquire(n=n)
        with pytest.raises(ValueError, match="n must be one or more"):
            sem.acquire(False, n=n)
    assert sem.value == 1


def test_acquire_more_than_the_bound_fails_at_once(impl):
    sem = impl.BoundedSemaphore(3)
    for kwargs in ({}, {"blocking": False}, {"timeout": 5}):
        with pytest.raises(ValueError, match="bounded at 3"):
            sem.acquire(n=4, **kwargs)
    assert sem.value == 3 and sem.waiting == 0


def test_bad_timeouts(impl):
    sem = impl.Semaphore(0)
    with pytest.raises(ValueError, match="NaN"):
        sem.acquire(timeout=float("nan"))
    with pytest.raises(OverflowError, match="timeout value is too large"):
        sem.acquire(timeout=float("inf"))
    with pytest.raises(OverflowError):
        sem.acquire(timeout=threading.TIMEOUT_MAX * 2)
    with pytest.raises(TypeError):
        sem.acquire(timeout="1")
    assert sem.waiting == 0 and sem.value == 0


def test_largest_timeout_is_accepted(impl):
    sem = impl.Semaphore(1)
    assert sem.acquire(timeout=threading.TIMEOUT_MAX) is True


def test_init_twice_is_refused(impl):
    sem = impl.Semaphore(1)
    with pytest.raises(RuntimeError):
        sem.__init__(5)
    assert sem.value == 1


def test_subclass_with_its_own_init(impl):
    class Limiter(impl.Semaphore):
        def __init__(self, name, limit):
            super().__init__(limit, fair=True)
            self.name = name

    lim = Limiter("db", 2)
    assert lim.name == "db" and lim.value == 2
    with lim:
        assert lim.value == 1


UNINITIALISED_CALLS = {
    "acquire": lambda s: s.acquire(),
    "acquire(False)": lambda s: s.acquire(False),
    "acquire(timeout)": lambda s: s.acquire(timeout=0.01),
    "acquire(n=0)": lambda s: s.acquire(n=0),
    "release": lambda s: s.release(),
    "release(0)": lambda s: s.release(0),
    "with": lambda s: s.__enter__(),
    "exit": lambda s: s.__exit__(None, None, None),
    "hold": lambda s: s.hold().__enter__(),
    "value": lambda s: s.value,
    "waiting": lambda s: s.waiting,
    "fair": lambda s: s.fair,
    "closed": lambda s: s.closed,
    "close": lambda s: s.close(),
    "drain": lambda s: s.drain(),
    "statistics": lambda s: s.statistics(),
    "reset_statistics": lambda s: s.reset_statistics(),
    "holders": lambda s: s.holders(),
    "resize": lambda s: s.resize(3),
    "max_value": lambda s: s.max_value,
}


@pytest.mark.parametrize("cls_name", ["Semaphore", "BoundedSemaphore"])
@pytest.mark.parametrize("call", list(UNINITIALISED_CALLS))
def test_uninitialised_object_refuses_every_operation(impl, cls_name, call):
    """A subclass that never calls super().__init__() (or __new__ alone)
    gets one clear error from both implementations, on every operation; no
    thread can queue on it, and a late __init__ makes it a normal one."""
    if call in ("resize", "max_value") and cls_name == "Semaphore":
        pytest.skip("BoundedSemaphore only")

    class Forgetful(getattr(impl, cls_name)):
        def __init__(self):
            pass  # never calls super().__init__()

    sem = Forgetful()
    with pytest.raises(RuntimeError, match="not initialised"):
        UNINITIALISED_CALLS[call](sem)
    assert "uninitialised" in repr(sem)
    getattr(impl, cls_name).__init__(sem, 2)
    assert sem.value == 2
    assert sem.acquire(n=2)
    sem.release(2)


def test_init_converts_every_argument_once_before_changing_anything(impl):
    class Fickle:
        """An index that answers 1, then 2: read twice, a bound of 1 over a
        value of 2."""

        def __init__(self):
            self.calls = 0

        def __index__(self):
            self.calls += 1
            return self.calls

    value = Fickle()
    sem = impl.BoundedSemaphore(value)
    assert value.calls == 1
    assert (sem.value, sem.max_value) == (1, 1)
    with pytest.raises(ValueError):
        sem.release()

    class BadBool:
        def __bool__(self):
            raise ZeroDivisionError

    fresh = impl.Semaphore.__new__(impl.Semaphore)
    with pytest.raises(ZeroDivisionError):
        fresh.__init__(3, fair=BadBool())
    with pytest.raises(ZeroDivisionError):
        fresh.__init__(3, track_holders=BadBool())
    with pytest.raises(RuntimeError, match="not initialised"):
        fresh.acquire(False)
    fresh.__init__(3)  # the failed calls changed nothing: this is the first
    assert fresh.acquire(n=3)
    assert not fresh.acquire(False)
    fresh.release(3)
    with pytest.raises(RuntimeError, match="called twice"):
        fresh.__init__(1)
    assert fresh.value == 3


def test_no_thread_can_queue_on_an_uninitialised_semaphore(impl):
    """__init__ must never rebuild a core with waiters in it: acquiring
    before __init__ raises at once instead of queueing."""
    sem = impl.BoundedSemaphore.__new__(impl.BoundedSemaphore)
    outcome = []

    def try_acquire():
        try:
            outcome.append(sem.acquire(timeout=5))
        except RuntimeError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=try_acquire)
    thread.start()
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], RuntimeError)
    sem.__init__(1)
    assert sem.waiting == 0
    assert sem.acquire(False)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "c"),
        ({"FASTSEM_NO_EXTENSIONS": "1"}, "python"),
        ({"FASTSEM_NO_EXTENSIONS": "yes"}, "python"),
        ({"FASTSEM_NO_EXTENSIONS": "0"}, "c"),
        ({"FASTSEM_NO_EXTENSIONS": "false"}, "c"),
        ({"FASTSEM_NO_EXTENSIONS": ""}, "c"),
    ],
)
def test_implementation_choice(env, expected, monkeypatch):
    import os

    if expected == "c" and NO_EXTENSIONS:
        pytest.skip("C implementation disabled")
    environment = {k: v for k, v in os.environ.items() if k != "FASTSEM_NO_EXTENSIONS"}
    environment.update(env)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import fastsem; print(fastsem.IMPLEMENTATION, fastsem.Semaphore.__module__)",
        ],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    ).stdout.split()
    assert out[0] == expected
    assert out[1] == {"c": "fastsem._cfastsem", "python": "fastsem._pyfastsem"}[expected]
