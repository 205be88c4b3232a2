"""What the documentation says of the compiled classes is true.

The API reference is generated from the pure-Python classes, so the compiled
classes must carry the very same docstrings. (The site itself is built and
checked by .ci/build_docs, a CI step: it needs Sphinx and a checkout.)
"""

from __future__ import annotations

import inspect

import pytest

import fastsem._pyfastsem as python_impl
from fastsem._impl import NO_EXTENSIONS


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
