"""Builds the C extension; the metadata lives in pyproject.toml.

FASTSEM_NO_EXTENSIONS=1 at build time skips the extension (a pure-Python
install, as on a machine with no compiler).
"""
import os

from setuptools import Extension, setup

CORE_SOURCES = ["csrc/fastsem_core.c"]
CORE_HEADERS = ["csrc/fastsem_core.h"]
NOT_SET = ("", "0", "false", "no", "off")


def extensions():
    # The same rule as fastsem._impl.no_extensions_requested (run time).
    if os.environ.get("FASTSEM_NO_EXTENSIONS", "").strip().lower() not in NOT_SET:
        return []
    from Cython.Build import cythonize

    ext = Extension(
        "fastsem._cfastsem",
        sources=["src/fastsem/_cfastsem.pyx", *CORE_SOURCES],
        depends=CORE_HEADERS,
        include_dirs=["csrc"],
        extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wno-unused-function"],
        libraries=["pthread"],
    )
    return cythonize([ext], compiler_directives={"language_level": 3})


setup(ext_modules=extensions())
