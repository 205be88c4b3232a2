"""CPython's own semaphore test suite (Lib/test/lock_tests.py), run against
fastsem exactly as CPython runs it against threading."""

from __future__ import annotations

import functools

import pytest

lock_tests = pytest.importorskip("test.lock_tests", reason="the test package is not installed")

from conftest import IMPLEMENTATIONS  # noqa: E402


def _suite(base, kind: str, impl_name: str, **options):
    module = IMPLEMENTATIONS[impl_name]
    if module is None:
        return None
    semtype = getattr(module, kind)
    if options:
        semtype = functools.partial(semtype, **options)
    suffix = "NonFair" if options else ""
    name = f"Test{impl_name.capitalize()}{kind}{suffix}"
    return type(name, (base,), {"semtype": staticmethod(semtype)})


for _impl in ("c", "python"):
    for _options in ({}, {"fair": False}):
        for _kind, _base in (
            ("Semaphore", lock_tests.SemaphoreTests),
            ("BoundedSemaphore", lock_tests.BoundedSemaphoreTests),
        ):
            _case = _suite(_base, _kind, _impl, **_options)
            if _case is not None:
                globals()[_case.__name__] = _case
del _case, _impl, _options, _kind, _base
