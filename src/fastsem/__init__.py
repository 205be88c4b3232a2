"""fastsem: a fast, FIFO-fair Semaphore and BoundedSemaphore for threads.

A drop-in for threading.Semaphore and threading.BoundedSemaphore, written in
C. Permits go to waiting threads in the order they called acquire(); a release
hands them straight to the oldest waiter; nobody barges in ahead of the queue
(unless fair=False is asked for). ProcessSemaphore and
ProcessBoundedSemaphore do the same across processes, and give back the
permits of a process that dies holding them; ProcessSlotPool hands out
numbered slots the same way (Linux).

IMPLEMENTATION is "c" when the compiled core is in use, "python" when the
pure-Python version is (set FASTSEM_NO_EXTENSIONS=1 to choose it, or it is
used when the extension cannot be imported); fastsem._impl decides.
"""

from ._common import Holder, SemaphoreClosed, SemaphoreStatistics
from ._impl import (
    IMPLEMENTATION,
    BoundedSemaphore,
    ProcessBoundedSemaphore,
    ProcessSemaphore,
    ProcessSlotPool,
    Semaphore,
)
from ._pool import (
    PoolClosed,
    PoolError,
    PoolStats,
    PoolTimeout,
    PoolTooBusy,
    ResourcePool,
)
from ._process import CapacityError, ProcessSemaphoreStatistics

__version__ = "0.1.0"
__all__ = [
    "IMPLEMENTATION",
    "BoundedSemaphore",
    "CapacityError",
    "Holder",
    "PoolClosed",
    "PoolError",
    "PoolStats",
    "PoolTimeout",
    "PoolTooBusy",
    "ProcessBoundedSemaphore",
    "ProcessSemaphore",
    "ProcessSemaphoreStatistics",
    "ProcessSlotPool",
    "ResourcePool",
    "Semaphore",
    "SemaphoreClosed",
    "SemaphoreStatistics",
]
