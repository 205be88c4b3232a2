"""The documentation: it builds in strict mode, and what it documents is true.

The Sphinx build runs only where Sphinx and furo are installed
(`pip install '.[docs]'`; .ci/build_docs does that in a venv of its own).
The API reference is generated from the pure-Python classes, so the second
test checks that the compiled classes carry the very same docstrings.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import fastsem._pyfastsem as python_impl
from fastsem._impl import NO_EXTENSIONS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_docs_build_strict(tmp_path: Path) -> None:
    pytest.importorskip("sphinx")
    pytest.importorskip("furo")
    if not (DOCS / "conf.py").is_file():
        pytest.skip("no docs/ here (not a checkout)")
    out = tmp_path / "html"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",  # every warning is an error
            "--keep-going",  # ... but report all of them
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    api = (out / "api.html").read_text(encoding="utf-8")
    # The reference was generated from the docstrings, under the public names.
    for anchor in [
        "fastsem.Semaphore",
        "fastsem.Semaphore.acquire",
        "fastsem.Semaphore.release",
        "fastsem.BoundedSemaphore.max_value",
        "fastsem.IMPLEMENTATION",
    ]:
        assert f'id="{anchor}"' in api, anchor
    assert "Acquire n permits (default 1)." in api
    for page in ["index", "guide", "benchmarks"]:
        assert (out / f"{page}.html").is_file(), page


@pytest.mark.parametrize("name", ["Semaphore", "BoundedSemaphore"])
def test_compiled_docstrings_match_the_documented_ones(name: str) -> None:
    if NO_EXTENSIONS:
        pytest.skip("C implementation disabled by FASTSEM_NO_EXTENSIONS")
    import fastsem._cfastsem as c_impl

    documented = getattr(python_impl, name)
    compiled = getattr(c_impl, name)
    # The compiled class keeps its signature line apart (the part before
    # "--" in its C docstring), where inspect.signature() reads it.
    signature_line, _, body = inspect.getdoc(documented).partition("\n\n")
    assert signature_line == name + compiled.__text_signature__
    assert inspect.getdoc(compiled) == body
    public = [m for m in vars(documented) if not m.startswith("_")]
    assert public, name
    for member in public:
        assert inspect.getdoc(getattr(compiled, member)) == inspect.getdoc(
            getattr(documented, member)
        ), f"{name}.{member}"
