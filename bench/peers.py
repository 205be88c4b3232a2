"""The peers that stay out of the package, and the names their figures go by.

posix_ipc's semaphore joins the contenders of ``fastsem._compare`` when that
package is installed (it is never a dependency). The pools that
test_pool_bench.py sets against fastsem.ResourcePool (SQLAlchemy's QueuePool,
a queue.Queue pool, Java's way, the C core alone) file their figures under
the names below, which goals.py reads.
"""

from __future__ import annotations

from typing import Any

from fastsem import _compare

POSIX_IPC = "posix_ipc.Semaphore"

POOL = "fastsem.ResourcePool"
QUEUE_POOL = "queue.Queue pool"
QUEUEPOOL = "SQLAlchemy QueuePool"
JAVA_POOL = "Java Semaphore(4, true) + deque"
CORE_FLOOR = "floor: fastsem's C core alone, pthreads"


def posix_ipc_contender() -> _compare.Contender | None:
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
    return _compare.Contender(POSIX_IPC, make, try_acquire=try_acquire)


def contenders() -> list[_compare.Contender]:
    """The package's contenders, with posix_ipc's (if any) before the floor."""
    found = _compare.contenders()
    extra = posix_ipc_contender()
    if extra is not None:
        found.insert(len(found) - 1, extra)
    return found
