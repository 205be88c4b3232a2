from typing import Literal

from ._cfastsem import BoundedSemaphore as BoundedSemaphore
from ._cfastsem import Semaphore as Semaphore
from ._common import Holder as Holder
from ._common import SemaphoreClosed as SemaphoreClosed
from ._common import SemaphoreStatistics as SemaphoreStatistics
from ._pool import PoolClosed as PoolClosed
from ._pool import PoolError as PoolError
from ._pool import PoolStats as PoolStats
from ._pool import PoolTimeout as PoolTimeout
from ._pool import PoolTooBusy as PoolTooBusy
from ._pool import ResourcePool as ResourcePool

__version__: str
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

IMPLEMENTATION: Literal["c", "python"]
