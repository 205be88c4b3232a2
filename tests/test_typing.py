"""The stubs against real usage: mypy --strict must accept every line of
tests/typing/sample.py except exactly those marked `# E:`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is not installed")

SAMPLE = Path(__file__).parent / "typing" / "sample.py"


def test_stubs_match_usage(tmp_path):
    expected = {
        number for number, line in enumerate(SAMPLE.read_text().splitlines(), 1) if "# E:" in line
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path),
            str(SAMPLE),
        ],
        capture_output=True,
        text=True,
    )
    reported = {int(m.group(1)) for m in re.finditer(r"sample\.py:(\d+): error", run.stdout)}
    assert reported == expected, run.stdout
