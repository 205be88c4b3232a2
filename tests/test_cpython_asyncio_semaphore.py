"""CPython's own asyncio semaphore tests (Lib/test/test_asyncio/test_locks.py,
SemaphoreTests), run against fastsem's async API.

The tests are the installed interpreter's own (as test_cpython_lock_tests.py
takes Lib/test/lock_tests.py): each test method is run unchanged, with the
name `asyncio` in its globals standing for the asyncio module with
Semaphore and BoundedSemaphore replaced by fastsem's classes behind
asyncio's interface (the adapters below). CPython has no BoundedSemaphore
test class: BoundedSemaphore appears in SemaphoreTests'
test_release_not_acquired, which runs against fastsem's BoundedSemaphore.
Both implementations, in fair mode (asyncio's semaphore is FIFO; its tests
assert that order).

The adapters: `acquire()` is the coroutine `async_acquire()`; `locked()` is
asyncio's "cannot be acquired immediately", which in fair mode is no free
permit or somebody queued; `_value` is fastsem's own (threading's name for
the free permits). `_waiters` is asyncio's deque of the queued waiters'
futures, which two tests read only to ask how many wait and whether a live
one remains: the adapter answers from fastsem's one queue (`waiting`), with
one stand-in per queued waiter, neither done nor cancelled. Everything else
is asyncio itself, including the turns of the loop the tests count with
`asyncio.sleep(0)`: a grant made in the task's own loop's thread reaches
the task as soon as asyncio's would.

Left out (LEFT_OUT says why for each), where the semantics differ:
- test_ctor_loop, test_ctor_noloop (3.9): the `loop=` argument and `_loop`
  attribute; fastsem binds no loop (any running loop may wait on it).
- test_initial_value_zero, test_release_not_acquired on 3.9: they pass
  `loop=`.
- test_acquire_cancel_before_awoken, test_acquire_hang on 3.9: 3.9's
  versions give one turn of the loop to a cancellation followed by a
  release. A task cancelled while queued leaves fastsem's queue when it
  next runs (the cancellation reaches it through its loop, as asyncio
  delivers it), so the release in between grants it the permit, which it
  passes on: the same outcome, turns later. The later versions of these
  tests give the turns, and run.
- test_repr: asyncio's repr format, checked by appending mocks to
  `_waiters`; fastsem's repr is threading's shape.
- test_acquire on 3.9: asserts asyncio's old count, where release() raised
  `_value` for permits a waiter had not yet taken; fastsem hands them to the
  waiter in release(), as asyncio since 3.10 does too, and as the later
  versions of this very test assert.
- test_acquire_fifo_order_2: asserts the order in which tasks *run* after
  their grants. A task granted a permit by release() holds it at once, so a
  task that releases and acquires again, with nobody queued, takes the
  permit it freed without waiting and runs before the granted task resumes;
  asyncio makes it queue behind the granted task's not yet resumed future.
  The grants themselves are in arrival order in both.
- test_acquire_fifo_order_4 (3.13): asserts that three releases leave
  `_value` at 2 while three tasks queue; fastsem hands the permits over in
  release().
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
import types
import unittest
from typing import Any

import pytest

test_locks = pytest.importorskip(
    "test.test_asyncio.test_locks", reason="the test package is not installed"
)

from conftest import IMPLEMENTATIONS  # noqa: E402

TIMEOUT = 10.0

# pytest-run-parallel calls a unittest coroutine method itself, without the
# event loop IsolatedAsyncioTestCase runs it in: it would pass, never awaited.
pytestmark = pytest.mark.thread_unsafe(
    reason="IsolatedAsyncioTestCase's coroutine methods need the loop unittest runs them in"
)

LEFT_OUT = {
    "test_ctor_loop": "asyncio's loop= argument and _loop attribute (3.9)",
    "test_ctor_noloop": "asyncio's _loop attribute (3.9)",
    "test_repr": "asyncio's repr format, checked through mocks put in _waiters",
    "test_acquire_fifo_order_2": (
        "asserts that a granted task runs before a task that frees and takes "
        "again a permit with nobody queued; fastsem lets the latter go at once"
    ),
    "test_acquire_fifo_order_4": (
        "asserts that released permits stay in _value until their tasks run; "
        "fastsem hands them over in release()"
    ),
}
if sys.version_info < (3, 10):
    LEFT_OUT["test_initial_value_zero"] = "passes asyncio's loop= argument (3.9)"
    LEFT_OUT["test_release_not_acquired"] = "passes asyncio's loop= argument (3.9)"
    LEFT_OUT["test_acquire"] = (
        "asserts 3.9's count of released permits not yet taken by their waiters"
    )
    for _name in ("test_acquire_cancel_before_awoken", "test_acquire_hang"):
        LEFT_OUT[_name] = (
            "3.9's version: one turn of the loop between a cancellation, a release "
            "and the check; a task cancelled while queued leaves fastsem's queue "
            "when it runs, so it is granted the permit and passes it on, in turns "
            "more (the later versions give them)"
        )
    del _name


class _Queued:
    """What the adapter's `_waiters` holds for one queued waiter: a stand-in
    for asyncio's future, neither done nor cancelled."""

    def done(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False


def _asyncio_style(cls: type) -> type:
    """cls behind asyncio.Semaphore's interface, under the same name."""

    class Adapter(cls):
        async def acquire(self) -> bool:
            return await self.async_acquire()

        def locked(self) -> bool:
            return self.value == 0 or self.waiting > 0

        @property
        def _waiters(self) -> list[_Queued]:
            return [_Queued() for _ in range(self.waiting)]

    Adapter.__name__ = Adapter.__qualname__ = cls.__name__
    return Adapter


class _Asyncio:
    """The asyncio module but for its Semaphore and BoundedSemaphore."""

    def __init__(self, module: Any) -> None:
        self.Semaphore = _asyncio_style(module.Semaphore)
        self.BoundedSemaphore = _asyncio_style(module.BoundedSemaphore)

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


def _rebound(function: Any, namespace: _Asyncio) -> Any:
    """function with `asyncio` in its globals (and so in the coroutines it
    defines) bound to namespace; if a coroutine function, bounded in time,
    so that a lost wake-up fails the test instead of hanging the suite."""
    copy = types.FunctionType(
        function.__code__,
        dict(function.__globals__, asyncio=namespace),
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__qualname__ = function.__qualname__
    copy.__doc__ = function.__doc__
    if not inspect.iscoroutinefunction(function):
        return copy

    @functools.wraps(copy)
    async def bounded(self: Any) -> Any:
        return await asyncio.wait_for(copy(self), TIMEOUT)

    return bounded


def _suite(impl_name: str) -> type | None:
    module = IMPLEMENTATIONS[impl_name]
    if module is None:
        return None
    namespace = _Asyncio(module)
    source = test_locks.SemaphoreTests
    tests = {
        name: _rebound(getattr(source, name), namespace)
        for name in dir(source)
        if name.startswith("test_") and name not in LEFT_OUT
    }
    name = f"Test{impl_name.capitalize()}AsyncioSemaphore"
    return type(name, (unittest.IsolatedAsyncioTestCase,), tests)


for _impl in ("c", "python"):
    _case = _suite(_impl)
    if _case is not None:
        globals()[_case.__name__] = _case
del _case, _impl


def test_the_suite_is_there():
    # A renamed class or method upstream must not leave this file testing
    # nothing.
    ran = [name for name in dir(test_locks.SemaphoreTests) if name.startswith("test_")]
    assert len([name for name in ran if name not in LEFT_OUT]) >= 5
