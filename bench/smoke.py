"""What the tests of the side-by-side scripts (test_processes_bench.py,
test_async_bench.py) share: one smoke run of a script, and its JSON and its
table read back. The figures of a smoke run mean nothing; only their shape
is checked."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any


def run(script: Path, directory: Path) -> tuple[subprocess.CompletedProcess[str], Any]:
    """(process, JSON result or None) of `script --smoke --json` run in a
    subprocess, the JSON written in `directory`."""
    out = directory / "run.json"
    proc = subprocess.run(
        [sys.executable, str(script), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc, json.loads(out.read_text()) if out.exists() else None


def row(result: Any, name: str) -> Any:
    """The JSON row of the peer called `name`."""
    return next(r for r in result["contenders"] if r["name"] == name)


def is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def table(stdout: str) -> tuple[list[str], list[list[str]]]:
    """The printed table: its column headings (the two heading lines joined)
    and its body, a list of cells per line, cut where the rule's dashes are."""
    lines = stdout.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("----"))
    spans = [m.span() for m in re.finditer("-+", lines[rule])]

    def cells(line: str) -> list[str]:
        return [line[a:b].strip() for a, b in spans]

    top, bottom = cells(lines[rule - 2]), cells(lines[rule - 1])
    headings = [f"{a} {b}".strip() for a, b in zip(top, bottom)]
    return headings, [cells(line) for line in lines[rule + 1 : lines.index("", rule)]]


def headings_of(result: Any) -> list[str]:
    """The headings the table must show for the JSON's peers, in order."""
    return [r["header"].replace("\n", " ").strip() for r in result["contenders"]]
