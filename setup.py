"""Builds the C extension; the metadata lives in pyproject.toml.

FASTSEM_NO_EXTENSIONS=1 at build time skips the extension (a pure-Python
install, as on a machine with no compiler).
"""
import os
import sys

from setuptools import Extension, setup

CORE_SOURCES = ["csrc/fastsem_core.c"]
CORE_HEADERS = ["csrc/fastsem_core.h"]
PROCESS_SOURCES = ["csrc/fastsem_proc.c", *CORE_SOURCES]
PROCESS_HEADERS = ["csrc/fastsem_proc.h", *CORE_HEADERS]
# What both bindings include or cimport (declarations, argument conversions).
BINDING_SHARED = ["src/fastsem/_core.pxd", "src/fastsem/_convert.pxi"]
COMPILE_ARGS = ["-std=c11", "-O2", "-Wall", "-Wno-unused-function"]
NOT_SET = ("", "0", "false", "no", "off")


def extensions():
    # The same rule as fastsem._impl.no_extensions_requested (run time).
    if os.environ.get("FASTSEM_NO_EXTENSIONS", "").strip().lower() not in NOT_SET:
        return []
    from Cython.Build import cythonize

    threads = Extension(
        "fastsem._cfastsem",
        sources=["src/fastsem/_cfastsem.pyx", *CORE_SOURCES],
        depends=[*CORE_HEADERS, *BINDING_SHARED],
        include_dirs=["csrc"],
        extra_compile_args=COMPILE_ARGS,
        libraries=["pthread"],
    )
    # The process-shared semaphores: their own core, and the thread core's
    # clock and histogram. shm_open lives in librt on older glibc.
    processes = Extension(
        "fastsem._cprocess",
        sources=["src/fastsem/_cprocess.pyx", *PROCESS_SOURCES],
        depends=[*PROCESS_HEADERS, *BINDING_SHARED],
        include_dirs=["csrc"],
        extra_compile_args=COMPILE_ARGS,
        libraries=["pthread", "rt"] if sys.platform.startswith("linux") else ["pthread"],
    )
    return cythonize([threads, processes], compiler_directives={"language_level": 3})


setup(ext_modules=extensions())
