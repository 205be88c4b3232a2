# cython: freethreading_compatible = True
# cython: language_level = 3
# cython: binding = False
"""The C implementation: a thin binding over csrc/fastsem_core.c.

The binding owns no shared state of its own: every count and queue lives in
the core, behind the core's mutex. It converts arguments, keeps the GIL on the
uncontended path, waits inside ``with nogil``, and in the main thread steps out
of the wait every few milliseconds to run signal handlers (a condition variable
is not reliably woken by a signal) without leaving its place in the queue.
"""
cimport cython
from libc.math cimport isnan

import os
import threading

cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1
    bint PyLong_CheckExact(object o)
    object PyNumber_Index(object o)
    unsigned long PyThread_get_thread_ident() nogil

cdef extern from "fastsem_core.h" nogil:
    ctypedef long long fs_count
    ctypedef long long fs_time
    fs_time FS_FOREVER

    enum:
        FS_OK
        FS_WOULD_BLOCK
        FS_QUEUED
        FS_TIMEOUT
        FS_PAUSED
        FS_OVER_BOUND
        FS_OVERFLOW
        FS_EINVAL
        FS_ENOMEM

    ctypedef struct fs_waiter:
        pass

    ctypedef struct fs_state:
        fs_count max_value
        int fair

    ctypedef struct fs_sem:
        fs_state st

    int fs_sem_init(fs_sem *s, fs_count value, fs_count max_value, int fair)
    void fs_sem_destroy(fs_sem *s)
    int fs_sem_try_acquire(fs_sem *s, fs_count n)
    int fs_sem_acquire_or_enqueue(fs_sem *s, fs_waiter *w, fs_count n)
    int fs_sem_wait(fs_sem *s, fs_waiter *w, fs_time deadline, fs_time wake_by)
    int fs_sem_cancel(fs_sem *s, fs_waiter *w)
    int fs_sem_release(fs_sem *s, fs_count n)
    fs_count fs_sem_value(fs_sem *s)
    size_t fs_sem_waiting(fs_sem *s)
    fs_time fs_now()
    fs_time fs_deadline_after(double seconds)


# How long the main thread waits before it looks for pending signals. Ctrl-C
# reaches a blocked acquire() within about this long (plus a GIL switch).
cdef fs_time SIGNAL_CHECK_INTERVAL_NS = 10 * 1000 * 1000

cdef double TIMEOUT_MAX = threading.TIMEOUT_MAX

# Signal handlers run only in the main thread, so only it pauses its waits.
# Its ident is cached: between queueing a node and waiting on it no Python
# code may run (a signal handler could raise there and strand the node).
cdef unsigned long _main_thread_ident = threading.main_thread().ident


def _after_fork_in_child():
    # The thread that called fork() is the child's main thread.
    global _main_thread_ident
    _main_thread_ident = PyThread_get_thread_ident()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


cdef fs_time _deadline(object timeout) except? -1:
    """Absolute monotonic deadline for `timeout` seconds; errors as threading's."""
    cdef double seconds = timeout  # TypeError for a non-number
    if isnan(seconds):
        raise ValueError("Invalid value NaN (not a number)")
    if seconds > TIMEOUT_MAX:
        raise OverflowError("timeout value is too large")
    # threading.Semaphore treats a negative timeout as an immediate attempt.
    return fs_deadline_after(seconds)


cdef object ONE = 1  # the interpreter's cached small int: the default count


cdef inline fs_count _as_count(object n) except? -1:
    """A permit count: an int or an object with __index__ (never a float)."""
    if n is ONE:
        return 1
    if PyLong_CheckExact(n):
        return n  # OverflowError past the C range
    return PyNumber_Index(n)


cdef inline int _check_count(fs_count n) except -1:
    if n < 1:
        raise ValueError("n must be one or more")
    return 0


cdef str _public_module(type cls):
    module = cls.__module__
    return "fastsem" if module == "fastsem._cfastsem" else module


@cython.auto_pickle(False)
cdef class Semaphore:
    """Semaphore(value=1, *, fair=True)

    A counting semaphore, a drop-in for threading.Semaphore that is FIFO-fair.

    It manages a count of free permits: acquire() takes permits, waiting in
    line while there are not enough; release() gives them back. In fair mode
    (the default) permits go to waiting threads strictly in the order they
    called acquire(), a release hands them straight to the oldest waiter, and
    no thread takes a permit while an earlier one is still waiting. With
    fair=False an arriving acquire() may take free permits ahead of waiting
    threads (barging), which gives more throughput under contention.

    value is the initial count and defaults to 1; a negative value raises
    ValueError.
    """
    cdef fs_sem _sem
    cdef bint _initialized
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        # A valid empty semaphore until __init__ configures it, so that no
        # method can ever meet an uninitialised mutex.
        if fs_sem_init(&self._sem, 0, -1, 1) != FS_OK:
            raise MemoryError("could not initialise the semaphore")

    def __init__(self, value=1, *, fair=True):
        self._configure(value, -1, fair)

    cdef int _configure(self, object value, fs_count max_value, object fair) except -1:
        cdef fs_count count = _as_count(value)
        if count < 0:
            raise ValueError("semaphore initial value must be >= 0")
        if self._initialized:
            raise RuntimeError(f"{type(self).__name__}.__init__() called twice")
        fs_sem_destroy(&self._sem)
        if fs_sem_init(&self._sem, count, max_value, 1 if fair else 0) != FS_OK:
            raise MemoryError("could not initialise the semaphore")
        self._initialized = True
        return 0

    def __dealloc__(self):
        fs_sem_destroy(&self._sem)

    def __repr__(self):
        cls = type(self)
        return (f"<{_public_module(cls)}.{cls.__qualname__} at {id(self):#x}: "
                f"value={fs_sem_value(&self._sem)}>")

    def acquire(self, blocking=True, timeout=None, *, n=1):
        """Acquire n permits (default 1).

        With blocking true (the default) and no timeout, wait in line until n
        permits are granted, then return True. With a timeout, wait at most
        that many seconds and return False if the permits were not granted by
        then. With blocking false, take the permits only if that needs no wait
        and, in fair mode, nobody is queued ahead; return whether they were
        taken. A wait interrupted by an exception (KeyboardInterrupt from
        Ctrl-C) leaves the queue and takes nothing.
        """
        return _acquire(self, blocking, timeout, n)

    cdef int _raise_bad_count(self, fs_count count) except -1:
        _check_count(count)
        if count > self._sem.st.max_value >= 0:
            raise ValueError(
                f"cannot acquire {count} permits from a semaphore bounded at "
                f"{self._sem.st.max_value}")
        raise MemoryError("could not initialise a wait")

    cdef bint _wait(self, fs_waiter *node, fs_time deadline) except -1:
        cdef bint pausing = PyThread_get_thread_ident() == _main_thread_ident
        cdef fs_time wake_by = FS_FOREVER
        cdef int rc
        while True:
            with nogil:
                if pausing:
                    wake_by = fs_now() + SIGNAL_CHECK_INTERVAL_NS
                rc = fs_sem_wait(&self._sem, node, deadline, wake_by)
            if rc == FS_OK:
                return True
            if rc == FS_TIMEOUT:
                return False
            if rc != FS_PAUSED:
                raise MemoryError("could not wait on the semaphore")
            # Run signal handlers; if one raises, leave the queue (passing on
            # any permits granted meanwhile) and let the exception through.
            try:
                PyErr_CheckSignals()
            except BaseException:
                fs_sem_cancel(&self._sem, node)
                raise

    def release(self, n=1):
        """Release n permits (default 1), waking waiters in the order they came.

        A BoundedSemaphore raises ValueError if its value would pass its
        initial value; nothing is released then.
        """
        _release(self, n)

    def __enter__(self):
        return _acquire_one(self)

    def __exit__(self, exc_type, exc, tb):
        _release(self, ONE)

    @property
    def value(self):
        """Permits free now (a snapshot)."""
        return fs_sem_value(&self._sem)

    @property
    def _value(self):
        # threading.Semaphore's attribute, which some code reads.
        return fs_sem_value(&self._sem)

    @property
    def waiting(self):
        """Threads queued in acquire() now (a snapshot)."""
        return fs_sem_waiting(&self._sem)

    @property
    def fair(self):
        """True if permits are granted strictly in arrival order."""
        return self._sem.st.fair != 0


@cython.auto_pickle(False)
cdef class BoundedSemaphore(Semaphore):
    """BoundedSemaphore(value=1, *, fair=True)

    A Semaphore whose value may never exceed its initial value: a release()
    past it raises ValueError and changes nothing. It guards resources of
    limited capacity, where an extra release is a bug.
    """

    def __init__(self, value=1, *, fair=True):
        self._configure(value, _as_count(value), fair)

    # The same four methods again: CPython checks a method's `self` against
    # the class that defines it, with one pointer compare if it is that very
    # class and a walk up the bases if not (about 5 ns a call).
    def acquire(self, blocking=True, timeout=None, *, n=1):
        """Acquire n permits (default 1), as Semaphore.acquire()."""
        return _acquire(self, blocking, timeout, n)

    def release(self, n=1):
        """Release n permits (default 1), as Semaphore.release(); ValueError
        past the bound, and nothing is released then."""
        _release(self, n)

    def __enter__(self):
        return _acquire_one(self)

    def __exit__(self, exc_type, exc, tb):
        _release(self, ONE)

    def __repr__(self):
        cls = type(self)
        return (f"<{_public_module(cls)}.{cls.__qualname__} at {id(self):#x}: "
                f"value={fs_sem_value(&self._sem)}/{self._sem.st.max_value}>")

    @property
    def max_value(self):
        """The bound: the initial value."""
        return self._sem.st.max_value


# The bodies of the methods, shared by both classes.

cdef inline object _acquire(Semaphore self, object blocking, object timeout, object n):
    cdef fs_count count = _as_count(n)
    cdef fs_waiter node
    cdef fs_time deadline = FS_FOREVER
    cdef int rc
    if timeout is not None:
        if not blocking:
            raise ValueError("can't specify timeout for non-blocking acquire")
        deadline = _deadline(timeout)
    elif not blocking:
        rc = fs_sem_try_acquire(&self._sem, count)
        if rc == FS_EINVAL:
            self._raise_bad_count(count)
        return rc == FS_OK
    # Uncontended: one compare-and-swap in the core, with the GIL held.
    rc = fs_sem_acquire_or_enqueue(&self._sem, &node, count)
    if rc == FS_OK:
        return True
    if rc != FS_QUEUED:
        self._raise_bad_count(count)
    return self._wait(&node, deadline)


cdef inline object _acquire_one(Semaphore self):
    cdef fs_waiter node
    cdef int rc = fs_sem_acquire_or_enqueue(&self._sem, &node, 1)
    if rc == FS_OK:
        return True
    if rc != FS_QUEUED:
        self._raise_bad_count(1)
    return self._wait(&node, FS_FOREVER)


cdef inline object _release(Semaphore self, object n):
    cdef fs_count count = _as_count(n)
    cdef int rc = fs_sem_release(&self._sem, count)
    if rc == FS_OK:
        return None
    _check_count(count)
    if rc == FS_OVER_BOUND:
        raise ValueError("Semaphore released too many times")
    raise OverflowError("semaphore value would overflow")
