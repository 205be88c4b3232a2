"""The benchmark suite's contenders, and the names their figures go by.

``python -m fastsem`` compares five (fastsem fair, non-fair and pure Python,
threading.Semaphore, a ``_thread`` lock); the suite adds both
BoundedSemaphores, ``multiprocessing.Semaphore`` (a POSIX semaphore, usable
by threads too) and, when that package is installed, ``posix_ipc``'s (never
a dependency). Each is a ``Peer``: the package's ``Contender`` plus what the
suite's own workloads need (a constructor to make many, and whether
release(n) may go past the initial value).

The pools that test_pool_bench.py sets against fastsem.ResourcePool
(SQLAlchemy's QueuePool, a queue.Queue pool, Java's way, the C core alone)
file their figures under the names below, which goals.py reads.
"""

from __future__ import annotations

import _thread
import dataclasses
import functools
import threading
from dataclasses import dataclass
from typing import Any, Callable

from fastsem import _compare
from fastsem._impl import c_module

FASTSEM_BOUNDED = "fastsem (bounded)"
THREADING_BOUNDED = "threading.BoundedSemaphore"
MULTIPROCESSING = "multiprocessing.Semaphore"
POSIX_IPC = "posix_ipc.Semaphore"

POOL = "fastsem.ResourcePool"
QUEUE_POOL = "queue.Queue pool"
QUEUEPOOL = "SQLAlchemy QueuePool"
JAVA_POOL = "Java Semaphore(4, true) + deque"
CORE_FLOOR = "floor: fastsem's C core alone, pthreads"


@dataclass(frozen=True)
class Peer(_compare.Contender):
    new: Callable[[], Any] | None = None  # makes one of value 1; None: not made in bulk
    release_n: bool = False  # release(n) exists and may go past the initial value


def config_key(threads: int, value: int) -> str:
    """How a contended configuration's figures are filed: "t16_v1"."""
    return f"t{threads}_v{value}"


def _posix_ipc() -> Peer | None:
    """posix_ipc.Semaphore, nameless, if posix_ipc imports and works here."""
    try:
        import posix_ipc  # type: ignore[import-not-found]  # optional, never a dependency
    except ImportError:
        return None

    def make(value: int) -> Any:
        sem = posix_ipc.Semaphore(None, posix_ipc.O_CREX, initial_value=value)
        sem.unlink()  # nameless from now on; lives while this object does
        return sem

    def try_acquire(sem: Any) -> bool:
        try:
            sem.acquire(0)
        except posix_ipc.BusyError:
            return False
        return True

    try:
        make(1)
    except (OSError, posix_ipc.Error):
        return None
    return Peer(POSIX_IPC, make, try_acquire=try_acquire)


def _multiprocessing() -> Peer | None:
    """multiprocessing.Semaphore, if it works here (it needs /dev/shm)."""
    try:
        import multiprocessing

        multiprocessing.Semaphore(1)
    except (ImportError, OSError):
        return None
    return Peer(MULTIPROCESSING, lambda v: multiprocessing.Semaphore(v))


def _peer(c: _compare.Contender, **extra: Any) -> Peer:
    """`c` as a Peer, `extra` its fields that differ."""
    fields = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)}
    return Peer(**{**fields, **extra})


def contenders() -> list[Peer]:
    """The package's contenders with the suite's added, the floor last."""
    from fastsem import _pyfastsem

    # Objects made in bulk (memory, creation): one per type is enough.
    new: dict[str, Any] = {
        _compare.FASTSEM: c_module.Semaphore if c_module else None,
        _compare.FASTSEM_PURE: _pyfastsem.Semaphore,
        _compare.THREADING: threading.Semaphore,
        _compare.LOCK: _thread.allocate_lock,
    }
    found: list[Peer] = []
    for c in _compare.contenders():
        found.append(_peer(c, new=new.get(c.name), release_n=not c.is_lock))
        # The bounded ones: the same but for the class (release(n) may not pass the value).
        if c.name == _compare.FASTSEM and c_module is not None:
            cls = c_module.BoundedSemaphore
            make = functools.partial(cls, fair=True)
            found.append(_peer(c, name=FASTSEM_BOUNDED, make=make, new=cls))
        if c.name == _compare.THREADING:
            cls = threading.BoundedSemaphore
            found.append(_peer(c, name=THREADING_BOUNDED, make=cls, new=cls))
    extra = [p for p in (_multiprocessing(), _posix_ipc()) if p is not None]
    return found[:-1] + extra + found[-1:]
