"""Misuse and Ctrl-C must never strand a lock, lose a permit or corrupt the
pool: each test here is written the way the failure happens (a real signal
where the window is wide enough, a deliberate misuse otherwise).
tests/test_exception_safety.py adds an exception at every point."""

from __future__ import annotations

import dis
import inspect
import json
import subprocess
import sys
import textwrap
import threading
import types
from typing import Any

import pytest
from conftest import wait_until
from injection import CALL_OPS, Injected, Injector
from test_exception_safety import POOL_CODE, World, check_pool

import fastsem
import fastsem._pool as pool_module
from fastsem import PoolError, PoolTimeout, ResourcePool


@pytest.fixture(autouse=True)
def _pool_on(impl: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ResourcePool, "_semaphore_type", impl.BoundedSemaphore)


# ---------------------------------------------------------------------------
# Ctrl-C: a real SIGINT storm on a thread busy with the pool.
#
# The storm comes from another process. From a thread of the child it would
# need the GIL to send each signal: on a GIL build one signal per switch
# interval (5 ms), so two never landed in one handler, which a second
# process (and a free-threaded build's thread) does (see the test of a
# second exception below).

SIGINT_STORM = """
import os, signal, sys, time
child = int(sys.argv[1])
while os.getppid() == child:
    os.kill(child, signal.SIGINT)
    time.sleep(0.0002)
"""

SIGINT_STORM_CHILD = """
    import json, os, signal, subprocess, sys, time
    if sys.argv[1]:
        os.environ["FASTSEM_NO_EXTENSIONS"] = "1"
    import fastsem

    made, closed = [], []

    def make():
        made.append(object())
        return made[-1]

    pool = fastsem.ResourcePool(make, 4, close=closed.append, reset=lambda r: None)

    # Only the pool's code is under fire: the loop itself (its back edge,
    # the except clause) runs with the handler disarmed.
    armed = False
    signals = 0

    def interrupt(signum, frame):
        global signals
        signals += 1
        if armed:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    storm = subprocess.Popen([sys.executable, "-c", sys.argv[3], str(os.getpid())])
    interrupts = cycles = nested = 0
    started = time.monotonic()
    while not signals and time.monotonic() < started + 30:  # a loaded machine
        time.sleep(0.001)
    deadline = time.monotonic() + float(sys.argv[2])
    unguarded = 0
    try:
        while time.monotonic() < deadline:
            try:
                armed = True
                with pool.lease() as resource:
                    cycles += 1
                resource = pool.acquire()
                try:
                    cycles += 1
                finally:
                    pool.release(resource)
                armed = False
            except KeyboardInterrupt as exc:
                armed = False
                interrupts += 1
                # One that landed while the pool was undoing or completing
                # what an earlier one cut short.
                nested += isinstance(exc.__context__, KeyboardInterrupt)
                if pool._in_use:
                    # Left checked out: only a Ctrl-C on the first instruction of
                    # a pool function (release(), a lease's exit), which no Python
                    # code can guard, may do that. Say where, and give it back.
                    tb = exc.__traceback__
                    while tb.tb_next and tb.tb_next.tb_frame.f_code.co_name != "interrupt":
                        tb = tb.tb_next
                    code = tb.tb_frame.f_code
                    module = tb.tb_frame.f_globals["__name__"]
                    if module != "fastsem._pool" or tb.tb_lineno != code.co_firstlineno:
                        print("LEFT OUT at", code.co_name, tb.tb_lineno, file=sys.stderr)
                        sys.exit(3)
                    for slot in list(pool._in_use.values()):
                        pool.release(slot.resource)
                        unguarded += 1
    finally:
        armed = False
        storm.kill()
        storm.wait()
    stats = pool.stats()
    sem_stats = pool._sem.statistics()
    report = {
        "interrupts": interrupts, "nested": nested, "cycles": cycles,
        "in_use": stats["in_use"], "unguarded": unguarded,
        "size": stats["size"], "idle": stats["idle"], "free_places": pool._sem.value,
        "queued": sem_stats.waiting, "alive": len(made) - len(closed),
        "lock_free": pool._lock.acquire(blocking=False),
    }
    if report["lock_free"]:
        pool._lock.release()
    # Every place can be taken again (a lost one times out, and the report
    # says so rather than a traceback).
    free = []
    try:
        while len(free) < 4:
            free.append(pool.acquire(timeout=5))
    except fastsem.PoolTimeout:
        pass
    report["retaken"] = len(free)
    for resource in free:
        pool.release(resource)
    report["closed_ok"] = pool.close(timeout=5)
    report["all_closed"] = len(made) == len(closed)
    print(json.dumps(report))
"""


@pytest.mark.slow
def test_a_sigint_storm_never_strands_the_pool(impl):
    if sys.version_info < (3, 11):
        pytest.skip(
            "CPython 3.9 and 3.10 also run signal handlers as a Python call returns"
            " (3.9: between most bytecodes), where no Python code can guard what the"
            " call returned; the guarantee is for 3.11 and later"
        )
    if impl.__name__.endswith("_pyfastsem"):
        pytest.skip(
            "the pure-Python semaphore, as threading's, is not safe against an"
            " exception inside its own critical sections (its module docstring)"
        )
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SIGINT_STORM_CHILD), "", "3", SIGINT_STORM],
        capture_output=True,
        text=True,
        timeout=60,  # the old pool deadlocked here after a few interrupts
    )
    assert child.returncode == 0, child.stderr[-2000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["interrupts"] > 10, report  # the storm did reach the pool
    assert report["lock_free"], report
    # Nothing checked out, every place free, every live resource idle.
    assert report["in_use"] == 0 and report["free_places"] == 4, report
    assert report["queued"] == 0 and report["retaken"] == 4, report
    assert report["size"] == report["idle"] == report["alive"], report
    # Checkouts left out by a Ctrl-C on a pool function's first instruction
    # (the child exits 3 if one was left anywhere else) stay accounted for:
    # checked out, in stats() and in leak reports, until given back.
    assert report["unguarded"] < report["interrupts"], report
    assert report["closed_ok"] and report["all_closed"], report


# ---------------------------------------------------------------------------
# A Ctrl-C at a loop's back edge inside `with self._lock:`. CPython's
# compiler (3.12 and later) sometimes leaves a copy of a back edge (a branch
# that jumps straight to the next iteration) outside the with statement's
# entry in the exception table. CPython 3.13 checks for signals before it
# jumps, so a KeyboardInterrupt raised there leaves the function without
# calling __exit__, and the pool's lock stays held for good (3.12 checks
# after the jump and finds the handler; the rule is held everywhere all the
# same). The same goes for a try statement's handler. Checked here on the
# compiled code itself, for every path, whether or not a scenario reaches it.


def escaping_check_points(code: types.CodeType) -> list[str]:
    """The points of code where CPython runs signal handlers (after a call,
    at a back edge) that lie between two stretches of one with or try body
    in the exception table but outside both: an exception raised there
    skips that statement's handler."""
    bytecode = dis.Bytecode(code)
    instructions = [i for i in bytecode if i.opname not in ("CACHE", "PRECALL")]
    index = {i.offset: n for n, i in enumerate(instructions)}

    def handler(offset: int) -> int | None:
        for entry in bytecode.exception_entries:
            if entry.start <= offset < entry.end:
                return entry.target
        return None

    found = []
    for n, instruction in enumerate(instructions):
        if instruction.opname not in CALL_OPS and instruction.opname != "JUMP_BACKWARD":
            continue
        if handler(instruction.offset) is not None:
            continue
        if [i.argval for i in instructions[max(0, n - 3) : n]] == [None] * 3:
            continue  # a with statement's __exit__(None, None, None): after the block
        before = [handler(i.offset) for i in instructions[:n]]
        after = [handler(i.offset) for i in instructions[n + 1 :]]
        inside = next((h for h in reversed(before) if h is not None), None)
        if inside is None or inside != next((h for h in after if h is not None), None):
            continue
        # A with or try handler (an inlined comprehension's cleanup is not one).
        if instructions[index[inside]].opname == "PUSH_EXC_INFO":
            line = instruction.positions.lineno if instruction.positions else None
            found.append(f"{code.co_name}:{line} {instruction.opname} at {instruction.offset}")
    return found


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="exception tables (dis.Bytecode.exception_entries) came with CPython 3.11; "
    "3.9 and 3.10 also run signal handlers where no handler can guard (see the storm test)",
)
def test_no_signal_can_skip_a_with_or_try_handler_of_the_pool(impl):
    escaping = [point for code in POOL_CODE for point in escaping_check_points(code)]
    assert sorted(escaping) == []


# ---------------------------------------------------------------------------
# A second Ctrl-C while the pool cleans up after the first. A signal storm
# can land two interrupts microseconds apart, the second in the handler
# that undoes (an acquire) or completes (a release) what the first one cut
# short; cut short in turn, that handler left a place taken for good. Here
# the two land deterministically: the first at every point in turn, the
# second at every point reached after it.


class TwiceInjector(Injector):
    """Fires as Injector at point `first`, then again `then` points later."""

    def __init__(self, codes: Any, first: int, then: int) -> None:
        super().__init__(codes, fire_at=first)
        self.second_at = first + then
        self.second: str | None = None

    def _hit(self, name: str, line: int | None, code: Any, event: str) -> None:
        if self.count == self.second_at:
            self.count += 1
            self.second = f"{name}:{line} ({event})"
            raise Injected(self.second)
        super()._hit(name, line, code, event)


def storm_scenario(world: World) -> None:
    # The storm's cycle (a lease, then acquire and release) and a discard.
    with world.lease():
        pass
    resource = world.acquire()
    world.release(resource)
    world.discard(world.acquire())


@pytest.mark.slow
@pytest.mark.thread_unsafe(reason="injects exceptions through sys.monitoring: one tool per process")
@pytest.mark.parametrize("reset", [False, True], ids=["plain-return", "reset"])
def test_a_second_exception_while_the_pool_cleans_up_loses_nothing(impl, reset):
    if not hasattr(sys, "monitoring"):
        pytest.skip(
            "sys.settrace drops a trace function that raises; only sys.monitoring"
            " (CPython 3.12+) can fire twice in one run"
        )
    if pool_module.c_module is None:
        pytest.skip(
            "without the compiled module, _complete() is Python code: a second exception"
            " can still escape at its first instruction or its loop's back edge"
        )
    if impl.__name__.endswith("_pyfastsem"):
        pytest.skip("the exceptions land in the pool's code, the same on both rows")
    options = {"reset": lambda resource: None} if reset else {}
    counter = Injector(POOL_CODE)
    world = World(impl, max_size=2, **options)
    assert counter.run(lambda: storm_scenario(world)) is None
    pairs = 0
    for first in range(counter.count):
        single = Injector(POOL_CODE, fire_at=first)
        world = World(impl, max_size=2, **options)
        single.run(lambda world=world: storm_scenario(world))
        for then in range(1, single.count - first):
            injector = TwiceInjector(POOL_CODE, first, then)
            world = World(impl, max_size=2, **options)
            injector.run(lambda world=world: storm_scenario(world))
            assert injector.second is not None  # the path is the single run's
            try:
                check_pool(world, injector)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n(the second exception: {injector.second})") from exc
            pairs += 1
    assert pairs > 300  # the handlers and the lease's exit did run under fire


# ---------------------------------------------------------------------------
# A factory that returns one object twice.


@pytest.mark.parametrize("shared", [None, 7, "cached client"])
def test_a_factory_returning_an_object_the_pool_holds_is_refused(shared):
    closed = []
    pool = ResourcePool(lambda: shared, 3, close=closed.append)
    first = pool.acquire()
    with pytest.raises(PoolError, match="already holds"):
        pool.acquire()
    with pytest.raises(PoolError, match="already holds"):
        pool.acquire()
    stats = pool.stats()
    assert (stats["size"], stats["in_use"], closed) == (1, 1, [])  # not ours to close
    pool.release(first)
    again = pool.acquire(timeout=0)  # the idle one; every place is usable
    assert again is shared
    pool.release(again)
    assert pool._sem.value == 3
    assert pool.close(timeout=1) and closed == [shared]


def test_min_size_refuses_a_shared_object_too():
    with pytest.raises(PoolError, match="already holds"):
        ResourcePool(lambda: None, 3, min_size=2)


# ---------------------------------------------------------------------------
# Leases are one-shot and give back their own checkout only.


def test_a_lease_entered_twice_raises_and_loses_nothing():
    pool = ResourcePool(object, 2)
    lease = pool.lease()
    with lease as resource:
        with pytest.raises(RuntimeError, match="entered already"), lease:
            pass
        assert pool.stats()["in_use"] == 1
    assert pool.stats()["in_use"] == 0 and pool._sem.value == 2
    with pytest.raises(RuntimeError, match="entered already"):
        lease.__enter__()
    assert resource in [slot.resource for slot in pool._idle]


def test_a_lease_shared_by_two_threads_serves_one():
    pool = ResourcePool(object, 2)
    lease = pool.lease()
    barrier = threading.Barrier(2)
    outcomes: list[Any] = []

    def enter() -> None:
        barrier.wait()
        try:
            with lease:
                outcomes.append("entered")
                wait_until(lambda: len(outcomes) == 2, what="the other thread's outcome")
        except RuntimeError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=enter) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(map(type, outcomes), key=str) == sorted([str, RuntimeError], key=str)
    assert pool.stats()["in_use"] == 0 and pool._sem.value == 2


def test_releasing_inside_a_lease_does_not_release_the_next_holder():
    pool = ResourcePool(object, 1)
    with pool.lease() as resource:
        pool.release(resource)  # given back early, by hand
        other = pool.acquire(timeout=0)  # someone else checks it out again
        assert other is resource
    # The exit gave back nothing: the other checkout is still out.
    assert pool.stats()["in_use"] == 1
    with pytest.raises(PoolTimeout):
        pool.acquire(timeout=0)
    pool.release(other)
    assert pool._sem.value == 1


# ---------------------------------------------------------------------------
# Timeouts are checked at the call, as the semaphore checks them.

BAD_TIMEOUTS = [
    (float("inf"), OverflowError),
    (1e300, OverflowError),
    ("abc", TypeError),
    (float("nan"), ValueError),
]


@pytest.mark.parametrize(("timeout", "error"), BAD_TIMEOUTS)
def test_a_bad_timeout_is_refused_whether_or_not_a_place_is_free(timeout, error):
    with pytest.raises(error):
        ResourcePool(object, 1, timeout=timeout)
    pool = ResourcePool(object, 1)
    with pytest.raises(error):
        pool.acquire(timeout)  # a place is free
    with pytest.raises(error):
        pool.lease(timeout)
    held = pool.acquire()
    with pytest.raises(error):
        pool.acquire(timeout)  # none is
    with pytest.raises(error):
        pool.close(timeout)
    pool.release(held)
    assert pool._sem.value == 1 and pool.stats()["in_use"] == 0
    # The semaphore raises the same for the same value.
    with pytest.raises(error):
        fastsem.Semaphore(0).acquire(timeout=timeout)


# ---------------------------------------------------------------------------
# min_size is kept whatever closed the resources.


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    import fastsem._pool as pool_module

    fake = Clock()
    monkeypatch.setattr(pool_module, "monotonic", fake)
    return fake


def test_min_size_is_kept_after_expiry(clock):
    pool = ResourcePool(object, 4, min_size=2, max_lifetime=0.3)
    first, second = pool.acquire(), pool.acquire()
    pool.release(first)
    pool.release(second)
    clock.now += 1  # both expire
    fresh = pool.acquire()
    assert fresh not in (first, second)
    pool.release(fresh)
    assert pool.stats()["size"] == 2


def test_min_size_is_kept_after_a_failed_check():
    healthy: dict[int, bool] = {}
    pool = ResourcePool(object, 4, min_size=2, check=lambda r: healthy.get(id(r), True))
    held = [pool.acquire(), pool.acquire()]
    for resource in held:
        healthy[id(resource)] = False
        pool.release(resource)
    fresh = pool.acquire()  # both fail their check and are closed
    pool.release(fresh)
    assert pool.stats()["size"] == 2


def test_min_size_is_kept_after_discard_and_failed_reset():
    def reset(resource: object) -> None:
        raise OSError("broken")

    pool = ResourcePool(object, 4, min_size=2, reset=reset)
    first = pool.acquire()
    pool.discard(first)
    assert pool.stats()["size"] == 2
    second = pool.acquire()
    pool.release(second)  # reset() fails: closed
    assert pool.stats()["size"] == 2


def test_max_idle_keeps_min_size(clock):
    pool = ResourcePool(object, 4, min_size=2, max_idle=1)
    taken = [pool.acquire() for _ in range(3)]
    for resource in taken:
        pool.release(resource)
    clock.now += 5  # all idle too long; only the one above min_size goes
    pool.release(pool.acquire())
    assert pool.stats()["size"] == 2


# ---------------------------------------------------------------------------
# Semaphores: holder tracking, `with` on a subclass, signatures.


def test_an_acquire_that_raises_in_the_holder_record_takes_nothing(impl):
    """A RecursionError near the limit lands in the holder record (Python
    code): the acquire must raise with nothing taken, not after taking."""
    sem = impl.BoundedSemaphore(2, track_holders=True)

    def deep(level: int) -> Any:
        try:
            return deep(level + 1)
        except RecursionError:
            return sem.acquire()

    outcomes = []
    for _ in range(5):
        try:
            outcomes.append(deep(0))
        except RecursionError:
            outcomes.append("raised")
        taken = sum(holder.permits for holder in sem.holders())
        assert sem.value + taken == 2, outcomes
        if taken:
            sem.release(taken)


@pytest.mark.parametrize("cls_name", ["Semaphore", "BoundedSemaphore"])
def test_with_on_a_subclass_calls_release_but_not_acquire(any_impl, cls_name):
    """As threading's: entering never calls an overridden acquire(); leaving
    calls release(), overridden or not. hold() behaves as `with`."""
    calls: list[str] = []

    class Logged(getattr(any_impl, cls_name)):
        def acquire(self, *args: Any, **kwargs: Any) -> bool:
            calls.append("acquire")
            return super().acquire(*args, **kwargs)

        def release(self, *args: Any, **kwargs: Any) -> None:
            calls.append("release")
            super().release(*args, **kwargs)

    sem = Logged(1)
    with sem:
        pass
    assert calls == ["release"]
    if hasattr(sem, "hold"):
        with sem.hold():
            pass
        assert calls == ["release", "release"]
    assert sem._value == 1


def _parameters(func: Any) -> list[tuple[str, object, object]]:
    # Names, kinds and defaults: the C methods declare self positional-only
    # and carry no annotations, which changes nothing for a caller.
    return [
        (p.name, None if p.name == "self" else p.kind, p.default)
        for p in inspect.signature(func).parameters.values()
    ]


@pytest.mark.parametrize(
    ("cls_name", "method"),
    [
        ("Semaphore", "acquire"),
        ("Semaphore", "release"),
        ("Semaphore", "hold"),
        ("Semaphore", "close"),
        ("Semaphore", "drain"),
        ("Semaphore", "statistics"),
        ("BoundedSemaphore", "resize"),
        ("BoundedSemaphore", "acquire"),
        ("BoundedSemaphore", "release"),
    ],
)
def test_both_implementations_have_the_same_signatures(cls_name, method):
    c_module = fastsem._impl.c_module
    if c_module is None:
        pytest.skip("C implementation disabled")
    python_method = getattr(getattr(fastsem._impl.python_module, cls_name), method)
    c_method = getattr(getattr(c_module, cls_name), method)
    assert _parameters(c_method) == _parameters(python_method)


@pytest.mark.parametrize("cls_name", ["Semaphore", "BoundedSemaphore"])
def test_both_classes_have_the_same_signature(cls_name):
    c_module = fastsem._impl.c_module
    if c_module is None:
        pytest.skip("C implementation disabled")
    python_class = getattr(fastsem._impl.python_module, cls_name)
    assert _parameters(getattr(c_module, cls_name)) == _parameters(python_class)
