"""Policy for the process-shared semaphores, in Python: their statistics,
their names, the error for a full table, and what stands in for them where
they cannot be built (a pure-Python install, a platform other than Linux).
The counting is in csrc/fastsem_proc.c, bound by fastsem._cprocess."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NoReturn

from ._common import SemaphoreStatistics, make_statistics

__all__ = [
    "CapacityError",
    "ProcessSemaphoreStatistics",
    "make_process_statistics",
    "segment_name",
    "unavailable",
]

# The tables' sizes: how many processes may use one semaphore over its life
# at once (a dead one's record is freed when it is found dead), and how many
# threads, of all processes together, may wait at once.
DEFAULT_MAX_PROCESSES = 256
DEFAULT_MAX_WAITERS = 1024


class CapacityError(RuntimeError):
    """Raised by a process semaphore whose table is full: more processes
    use it than its max_processes, or more threads wait in it than its
    max_waiters. Nothing was taken."""


@dataclasses.dataclass(frozen=True)
class ProcessSemaphoreStatistics(SemaphoreStatistics):
    """SemaphoreStatistics of a process semaphore (counted across all its
    processes), and what recovery did: permits given back for processes that
    died holding them, and how many dead processes were found."""

    recovered: int = 0
    dead_processes: int = 0


def make_process_statistics(
    counters: Sequence[int],
    waiting: int,
    histogram: Sequence[int],
    recovered: int,
    dead_processes: int,
) -> ProcessSemaphoreStatistics:
    acquisitions, contended, timeouts, interrupts, max_waiting, total, longest = counters
    base = make_statistics(
        acquisitions,
        contended,
        timeouts,
        interrupts,
        waiting,
        max_waiting,
        total,
        longest,
        histogram,
    )
    return ProcessSemaphoreStatistics(
        **{f.name: getattr(base, f.name) for f in dataclasses.fields(base)},
        recovered=recovered,
        dead_processes=dead_processes,
    )


def segment_name(name: object) -> bytes:
    """The POSIX shared memory name for a user's name: a leading slash is
    added if missing; no other slash, not empty, at most 255 bytes."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    bare = name[1:] if name.startswith("/") else name
    if not bare or "/" in bare or "\0" in bare:
        raise ValueError(f"invalid name {name!r}: one path component, without '/' or NUL")
    encoded = ("/" + bare).encode()
    if len(encoded) > 255:
        raise ValueError(f"name {name!r} is longer than 255 bytes")
    return encoded


def unavailable(name: str, reason: str) -> type:
    """A class that stands in for ProcessSemaphore or ProcessBoundedSemaphore
    where they cannot work: constructing or opening one raises
    NotImplementedError, never a semaphore that only seems to work."""

    class Unavailable:
        __slots__ = ()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise NotImplementedError(reason)

        @classmethod
        def open(cls, name: str) -> NoReturn:
            raise NotImplementedError(reason)

    Unavailable.__name__ = Unavailable.__qualname__ = name
    Unavailable.__module__ = "fastsem"
    return Unavailable
