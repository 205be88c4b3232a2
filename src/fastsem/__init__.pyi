from typing import Literal

from ._cfastsem import BoundedSemaphore as BoundedSemaphore
from ._cfastsem import Semaphore as Semaphore
from ._common import Holder as Holder
from ._common import SemaphoreClosed as SemaphoreClosed
from ._common import SemaphoreStatistics as SemaphoreStatistics

__version__: str
__all__ = [
    "IMPLEMENTATION",
    "BoundedSemaphore",
    "Holder",
    "Semaphore",
    "SemaphoreClosed",
    "SemaphoreStatistics",
]

IMPLEMENTATION: Literal["c", "python"]
