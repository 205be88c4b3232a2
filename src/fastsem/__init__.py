"""fastsem: a fast, FIFO-fair Semaphore and BoundedSemaphore for threads.

A drop-in for threading.Semaphore and threading.BoundedSemaphore, written in
C. Permits go to waiting threads in the order they called acquire(); a release
hands them straight to the oldest waiter; nobody barges in ahead of the queue
(unless fair=False is asked for).

IMPLEMENTATION is "c" when the compiled core is in use, "python" when the
pure-Python version is (set FASTSEM_NO_EXTENSIONS=1 to choose it, or it is
used when the extension cannot be imported).
"""

import os as _os

from ._common import Holder, SemaphoreClosed, SemaphoreStatistics

__version__ = "0.1.0"
__all__ = [
    "IMPLEMENTATION",
    "BoundedSemaphore",
    "Holder",
    "PoolClosed",
    "PoolError",
    "PoolStats",
    "PoolTimeout",
    "PoolTooBusy",
    "ResourcePool",
    "Semaphore",
    "SemaphoreClosed",
    "SemaphoreStatistics",
]

IMPLEMENTATION: str
if _os.environ.get("FASTSEM_NO_EXTENSIONS"):
    from ._pyfastsem import BoundedSemaphore, Semaphore

    IMPLEMENTATION = "python"
else:
    try:
        from ._cfastsem import BoundedSemaphore, Semaphore

        IMPLEMENTATION = "c"
    except ImportError:
        from ._pyfastsem import BoundedSemaphore, Semaphore

        IMPLEMENTATION = "python"

# The pool is built on the BoundedSemaphore chosen above, so it comes last.
from ._pool import (  # noqa: E402
    PoolClosed,
    PoolError,
    PoolStats,
    PoolTimeout,
    PoolTooBusy,
    ResourcePool,
)
