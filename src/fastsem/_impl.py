"""Which implementation fastsem uses, decided once, here.

The compiled one (fastsem._cfastsem) unless FASTSEM_NO_EXTENSIONS asks for
the pure-Python one (fastsem._pyfastsem), or the extension cannot be
imported (a pure-Python install). Every other module, the package itself,
the pool, the tests and the benchmarks, takes the result from here; nothing
imports the package back up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING

from . import _process, _pyfastsem

__all__ = [
    "IMPLEMENTATION",
    "NO_EXTENSIONS",
    "BoundedSemaphore",
    "ProcessBoundedSemaphore",
    "ProcessSemaphore",
    "ProcessSlotPool",
    "Semaphore",
    "c_module",
    "no_extensions_requested",
    "process_module",
    "python_module",
]

# The values of FASTSEM_NO_EXTENSIONS that do not ask for anything (setup.py
# reads the variable at build time with the same rule).
_OFF = ("", "0", "false", "no", "off")


def no_extensions_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether FASTSEM_NO_EXTENSIONS asks for the pure-Python implementation:
    any value but empty, 0, false, no or off (in any case)."""
    return environ.get("FASTSEM_NO_EXTENSIONS", "").strip().lower() not in _OFF


NO_EXTENSIONS = no_extensions_requested()

python_module: ModuleType = _pyfastsem
c_module: ModuleType | None = None
if not NO_EXTENSIONS:
    try:
        from . import _cfastsem as c_module
    except ImportError:  # built without the extension, or it cannot load here
        c_module = None

IMPLEMENTATION: str = "c" if c_module is not None else "python"

# The process-shared semaphores exist only compiled (the pure-Python version
# cannot wait on a futex in shared memory, nor survive a death inside its
# critical section): elsewhere, stand-ins that raise NotImplementedError.
process_module: ModuleType | None = None
if c_module is not None:
    try:
        from . import _cprocess as process_module
    except ImportError:
        process_module = None

if TYPE_CHECKING:
    from ._cfastsem import BoundedSemaphore as BoundedSemaphore
    from ._cfastsem import Semaphore as Semaphore
else:
    _chosen = c_module if c_module is not None else python_module
    Semaphore = _chosen.Semaphore
    BoundedSemaphore = _chosen.BoundedSemaphore

if TYPE_CHECKING:
    from ._cprocess import ProcessBoundedSemaphore as ProcessBoundedSemaphore
    from ._cprocess import ProcessSemaphore as ProcessSemaphore
    from ._cprocess import ProcessSlotPool as ProcessSlotPool
elif process_module is not None:
    ProcessSemaphore = process_module.ProcessSemaphore
    ProcessBoundedSemaphore = process_module.ProcessBoundedSemaphore
    ProcessSlotPool = process_module.ProcessSlotPool
else:
    _why = (
        "process-shared semaphores need fastsem's compiled extension; "
        "this is a pure-Python install, or FASTSEM_NO_EXTENSIONS is set"
    )
    ProcessSemaphore = _process.unavailable("ProcessSemaphore", _why)
    ProcessBoundedSemaphore = _process.unavailable("ProcessBoundedSemaphore", _why)
    ProcessSlotPool = _process.unavailable("ProcessSlotPool", _why)
