"""One suite, several implementations (the aio-libs/multidict pattern).

`impl` runs a test on the C and the pure-Python implementation; `any_impl`
adds threading itself as a control row for tests about shared semantics.
The C implementation must import unless FASTSEM_NO_EXTENSIONS is set: a
broken build is a failure, never a silent skip.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Callable

import pytest

import fastsem._pyfastsem as python_impl
from fastsem._impl import NO_EXTENSIONS

if NO_EXTENSIONS:
    c_impl = None
else:
    import fastsem._cfastsem as c_impl

threading_impl = SimpleNamespace(
    __name__="threading",
    Semaphore=threading.Semaphore,
    BoundedSemaphore=threading.BoundedSemaphore,
)

IMPLEMENTATIONS = {"c": c_impl, "python": python_impl}


def _get(name: str):
    module = IMPLEMENTATIONS[name]
    if module is None:
        pytest.skip("C implementation disabled by FASTSEM_NO_EXTENSIONS")
    return module


@pytest.fixture(params=["c", "python"])
def impl(request):
    """A fastsem implementation module (Semaphore, BoundedSemaphore)."""
    return _get(request.param)


@pytest.fixture(params=["c", "python", "threading"])
def any_impl(request):
    """fastsem's implementations plus threading as the control row."""
    if request.param == "threading":
        return threading_impl
    return _get(request.param)


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Polls predicate until true; fails the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.0005)


def queued(sem) -> int:
    """How many threads wait in sem.acquire() now: fastsem's `waiting`; for
    threading's control row, the threads parked on its condition variable
    (the list threading itself keeps: a thread joins it just before it blocks
    and leaves it when a release notifies it)."""
    if hasattr(sem, "waiting"):
        return sem.waiting
    return len(sem._cond._waiters)


class Waiter:
    """A thread blocked in sem.acquire(**kwargs); records when it returns."""

    def __init__(
        self,
        sem,
        name: object = None,
        log: list | None = None,
        log_lock: threading.Lock | None = None,
        **kwargs,
    ) -> None:
        self.sem = sem
        self.name = name
        self.kwargs = kwargs
        self.result: object = None
        self.done = threading.Event()
        self._log = log
        self._log_lock = log_lock
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self.sem.acquire(**self.kwargs)
        except BaseException as exc:  # reported by the test
            self.result = exc
        if self._log is not None and self.result is True:
            with self._log_lock:  # type: ignore[union-attr]
                self._log.append(self.name)
        self.done.set()

    def start(self) -> Waiter:
        self.thread.start()
        return self

    def join(self, timeout: float = 10.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"waiter {self.name} is stuck"


def queue_waiters(sem, wants: list[int], log: list | None = None, **kwargs) -> list[Waiter]:
    """Starts one waiter per entry, each only after the previous one is queued,
    so that their arrival order is known."""
    log_lock = threading.Lock()
    waiters = []
    for i, n in enumerate(wants):
        before = sem.waiting
        w = Waiter(sem, name=i, log=log, log_lock=log_lock, n=n, **kwargs).start()
        wait_until(lambda before=before: sem.waiting == before + 1, what=f"waiter {i} to queue")
        waiters.append(w)
    return waiters
