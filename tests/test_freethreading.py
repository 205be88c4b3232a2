"""On a free-threaded build, importing fastsem must not turn the GIL back on:
the extension declares itself free-threading compatible (every piece of
shared state is behind the C core's own mutex)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig

import pytest

from fastsem._impl import NO_EXTENSIONS

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


@pytest.mark.skipif(not FREE_THREADED, reason="not a free-threaded build")
@pytest.mark.skipif(NO_EXTENSIONS, reason="C disabled")
def test_gil_stays_disabled_after_import():
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    code = "import sys, fastsem; print(fastsem.IMPLEMENTATION, sys._is_gil_enabled())"
    run = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["c", "False"]


def test_the_extension_declares_free_threading_compatibility():
    # The declaration must be the first line of the .pyx (where Cython reads
    # it); checked from the source so that it holds on every build.
    pyx = os.path.join(os.path.dirname(__file__), os.pardir, "src", "fastsem", "_cfastsem.pyx")
    if not os.path.exists(pyx):
        pytest.skip("source tree not available")
    with open(pyx) as f:
        assert f.readline().strip() == "# cython: freethreading_compatible = True"
