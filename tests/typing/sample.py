"""Typed usage checked by mypy (tests/test_typing.py): the stubs must accept
what the docs show and reject what the runtime rejects."""

from __future__ import annotations

import sys
from typing import Optional

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type

import fastsem

sem = fastsem.Semaphore(3, fair=False)
assert_type(sem.acquire(), bool)
assert_type(sem.acquire(False), bool)
assert_type(sem.acquire(timeout=0.5, n=2), bool)
sem.release(2)
with sem as entered:
    assert_type(entered, bool)
assert_type(sem.value, int)
assert_type(sem.waiting, int)
assert_type(sem.fair, bool)

bounded = fastsem.BoundedSemaphore(2)
assert_type(bounded.max_value, int)
base: fastsem.Semaphore = bounded

with sem.hold(timeout=1.0, n=2) as held:
    assert_type(held, fastsem.Semaphore)
sem.close()
assert_type(sem.closed, bool)
assert_type(sem.drain(), int)
stats = sem.statistics()
assert_type(stats, fastsem.SemaphoreStatistics)
assert_type(stats.wait_p99, float)
sem.reset_statistics()
tracked = fastsem.Semaphore(2, track_holders=True)
assert_type(tracked.holders(), list[fastsem.Holder])
bounded.resize(4)
closed_error: type[RuntimeError] = fastsem.SemaphoreClosed

shared = fastsem.ProcessBoundedSemaphore(2, name=None, max_processes=8)
assert_type(shared.acquire(timeout=1.0, n=2), bool)
shared.release(2)
assert_type(shared.holders(), dict[int, int])
assert_type(shared.max_value, int)
assert_type(shared.statistics().recovered, int)
with shared.hold(timeout=1.0):
    pass
opened: fastsem.ProcessSemaphore = fastsem.ProcessSemaphore.open("name")
slots = fastsem.ProcessSlotPool(2)
assert_type(slots.acquire(timeout=0.5), Optional[int])
with slots.slot(timeout=1.0) as slot_number:
    assert_type(slot_number, int)
assert_type(slots.holders(), dict[int, list[int]])
full_error: type[RuntimeError] = fastsem.CapacityError


async def in_a_task() -> None:
    assert_type(await sem.async_acquire(), bool)
    assert_type(await sem.async_acquire(False), bool)
    assert_type(await bounded.async_acquire(timeout=0.5, n=2), bool)
    async with sem as entered_async:
        assert_type(entered_async, None)
    async with bounded.async_hold(timeout=1.0, n=2) as held_async:
        assert_type(held_async, fastsem.Semaphore)
    assert_type(tracked.holders()[0].task, Optional[str])
    await sem.async_acquire(n=1.5)  # E: float is not a count


sem.acquire(n=1.5)  # E: float is not a count
sem.resize(3)  # E: only a BoundedSemaphore can be resized
sem.value = 3  # E: read-only property
fastsem.Semaphore(fair=True, value=2, extra=1)  # E: no such argument
slots.release(1.5)  # E: a slot is a number
shared.acquire(n=2.0)  # E: float is not a count
