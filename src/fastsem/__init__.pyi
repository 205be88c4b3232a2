from typing import Literal

from ._cfastsem import BoundedSemaphore as BoundedSemaphore
from ._cfastsem import Semaphore as Semaphore
from ._common import Holder as Holder
from ._common import SemaphoreClosed as SemaphoreClosed
from ._common import SemaphoreStatistics as SemaphoreStatistics
from ._cprocess import ProcessBoundedSemaphore as ProcessBoundedSemaphore
from ._cprocess import ProcessSemaphore as ProcessSemaphore
from ._cprocess import ProcessSlotPool as ProcessSlotPool
from ._pool import PoolClosed as PoolClosed
from ._pool import PoolError as PoolError
from ._pool import PoolStats as PoolStats
from ._pool import PoolTimeout as PoolTimeout
from ._pool import PoolTooBusy as PoolTooBusy
from ._pool import ResourcePool as ResourcePool
from ._process import CapacityError as CapacityError
from ._process import ProcessSemaphoreStatistics as ProcessSemaphoreStatistics

__version__: str
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

IMPLEMENTATION: Literal["c", "python"]
