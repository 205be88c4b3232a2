"""On a free-threaded build, importing fastsem must not turn the GIL back on:
the extension declares itself free-threading compatible (every piece of
shared state is behind the C core's own mutex)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import threading
import time
from typing import Any

import pytest

from fastsem._impl import NO_EXTENSIONS

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
free_threaded_only = pytest.mark.skipif(not FREE_THREADED, reason="not a free-threaded build")


@free_threaded_only
@pytest.mark.parametrize(
    "no_extensions",
    [pytest.param("", id="c"), pytest.param("1", id="python")],
)
def test_gil_stays_disabled_after_import(no_extensions):
    if NO_EXTENSIONS and not no_extensions:
        pytest.skip("C disabled")
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    env["FASTSEM_NO_EXTENSIONS"] = no_extensions
    code = (
        "import sys, fastsem, fastsem._pool; print(fastsem.IMPLEMENTATION, sys._is_gil_enabled())"
    )
    run = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["python" if no_extensions else "c", "False"]


@free_threaded_only
@pytest.mark.skipif(os.environ.get("PYTHON_GIL") == "1", reason="PYTHON_GIL=1 asks for the GIL")
def test_this_run_has_no_gil():
    # The suite itself, in this process, runs without the GIL (conftest
    # checks it at the start and the end of the session too).
    assert not sys._is_gil_enabled()


def test_the_extension_declares_free_threading_compatibility():
    # The declaration must be the first line of the .pyx (where Cython reads
    # it); checked from the source so that it holds on every build.
    pyx = os.path.join(os.path.dirname(__file__), os.pardir, "src", "fastsem", "_cfastsem.pyx")
    if not os.path.exists(pyx):
        pytest.skip("source tree not available")
    with open(pyx) as f:
        assert f.readline().strip() == "# cython: freethreading_compatible = True"


@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore"])
def test_snapshots_do_not_wait_for_the_mutex(impl, kind):
    # value and waiting are read without the semaphore's mutex: a signal
    # handler that reads them runs in a thread that may be inside one of the
    # pure-Python version's critical sections, holding that mutex (seen as a
    # hang of the signal tests under load on the free-threaded build).
    sem = getattr(impl, kind)(2)
    seen: list[int] = []

    def look() -> None:
        seen.extend((sem.value, sem.waiting))

    if impl.__name__ == "fastsem._pyfastsem":
        with sem._lock():  # what a handler inside a critical section finds
            reader = threading.Thread(target=look, daemon=True)
            reader.start()
            reader.join(5)
    else:  # the C version holds no lock while Python code runs
        reader = threading.Thread(target=look, daemon=True)
        reader.start()
        reader.join(5)
    assert not reader.is_alive(), "value or waiting waited for the mutex"
    assert seen == [2, 0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork")
def test_first_use_in_a_fork_child_by_many_threads_makes_one_mutex():
    # The pure-Python version renews its mutex at its first use in a fork
    # child; threads started in the child that make that first use at the
    # same instant must all get the same new mutex, not one each.
    from test_fork import fork_and_check

    import fastsem._pyfastsem as python_impl

    threads = 8
    sems = [python_impl.Semaphore(1) for _ in range(20)]

    def child() -> bool:
        # A slower lock allocation widens the window between the look at the
        # fork generation and the new mutex (this is the child's own copy of
        # the module: the parent's is untouched).
        allocate = python_impl._allocate_lock

        def slow_allocate() -> Any:
            time.sleep(0.001)
            return allocate()

        python_impl._allocate_lock = slow_allocate  # type: ignore[assignment]
        seen: list[list[object]] = [[] for _ in sems]  # the locks, kept alive
        barrier = threading.Barrier(threads)

        def first_use() -> None:
            for sem, locks in zip(sems, seen):
                barrier.wait()
                locks.append(sem._lock())

        crew = [threading.Thread(target=first_use) for _ in range(threads)]
        for t in crew:
            t.start()
        for t in crew:
            t.join()
        return all(lock is locks[0] for locks in seen for lock in locks)

    assert fork_and_check(child) == 0
