"""The scripts in examples/ run and exit 0 (each in a few seconds)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fastsem import _impl

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = [
    "connection_pool.py",
    "producer_consumer.py",
    "java_style_pool.py",
    "process_connection_pool.py",
]
# Examples of the process-shared classes: compiled, on Linux.
NEEDS_PROCESSES = {"process_connection_pool.py"}


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs(script: str, tmp_path: Path) -> None:
    path = EXAMPLES / script
    if not path.is_file():
        pytest.skip("no examples/ here (not a checkout)")
    if script in NEEDS_PROCESSES and (
        _impl.process_module is None or not sys.platform.startswith("linux")
    ):
        pytest.skip("process-shared semaphores: compiled, on Linux")
    run = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip(), "an example says what it did"


def test_every_example_is_tested() -> None:
    if not EXAMPLES.is_dir():
        pytest.skip("no examples/ here (not a checkout)")
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(SCRIPTS)
