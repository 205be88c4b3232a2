from typing import Literal

from ._cfastsem import BoundedSemaphore as BoundedSemaphore
from ._cfastsem import Semaphore as Semaphore

__version__: str
__all__ = ["IMPLEMENTATION", "BoundedSemaphore", "Semaphore"]

IMPLEMENTATION: Literal["c", "python"]
