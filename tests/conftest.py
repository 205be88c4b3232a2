"""One suite, several implementations (the aio-libs/multidict pattern).

`impl` runs a test on the C and the pure-Python implementation; `any_impl`
adds threading itself as a control row for tests about shared semantics.
The C implementation must import unless FASTSEM_NO_EXTENSIONS is set: a
broken build is a failure, never a silent skip.

On a free-threaded build the session fails unless the GIL is off from start
to finish: a run that turned it back on (an import of a module that does not
declare itself free-threading compatible) would prove nothing about running
without it. PYTHON_GIL=1 in the environment asks for the GIL, and is obeyed.
"""

from __future__ import annotations

import os
import sys
import sysconfig
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

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def gil_enabled() -> bool:
    """Whether the GIL is on now (always, before 3.13's free-threaded builds)."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return True if is_enabled is None else bool(is_enabled())


def _gil_problem(when: str) -> str | None:
    if FREE_THREADED and gil_enabled() and os.environ.get("PYTHON_GIL") != "1":
        return (
            f"the GIL is enabled {when} on a free-threaded build: this run would "
            "not test fastsem without it (set PYTHON_GIL=1 to ask for the GIL)"
        )
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    problem = _gil_problem("at the start of the session")
    if problem is not None:
        pytest.exit(problem, returncode=1)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    problem = _gil_problem("at the end of the session")
    if problem is not None:
        sys.stderr.write(f"\nconftest: {problem}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# The tests that must not run in several threads at once under
# pytest-run-parallel (`--parallel-threads=N`), by file or by file::name, each
# with the reason; the plugin runs them in one thread. Tests that use
# monkeypatch, caplog and the like it finds by itself.
THREAD_UNSAFE = {
    "test_exception_safety.py": (
        "injects exceptions through sys.monitoring (or sys.settrace): one tool per process"
    ),
    "test_fairness.py::test_a_thousand_waiters_released_at_once": (
        "starts a thousand threads itself: four copies at once add only load"
    ),
    "test_process.py": (
        "real processes: fork, SIGSTOP and SIGKILL of children, the waiting count of "
        "one semaphore shared with them, /dev/shm before and after"
    ),
    "test_examples.py": "each example starts its own threads or processes, timed as a whole",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        file = item.path.name
        reason = THREAD_UNSAFE.get(f"{file}::{getattr(item, 'originalname', item.name)}")
        reason = reason or THREAD_UNSAFE.get(file)
        if reason is not None:
            item.add_marker(pytest.mark.thread_unsafe(reason=reason))


def pytest_report_header(config: pytest.Config) -> str:
    build = "free-threaded build" if FREE_THREADED else "GIL build"
    return f"fastsem: {build}, GIL {'on' if gil_enabled() else 'off'}"


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
