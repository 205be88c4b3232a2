# cython: freethreading_compatible = True
# cython: language_level = 3
# cython: binding = False
# cython: embedsignature = True
# cython: embedsignature.format = clinic
"""The C implementation: a thin binding over csrc/fastsem_core.c.

The binding owns no shared state of its own: every count and queue lives in
the core, behind the core's mutex or in its atomic permit word. It converts
arguments, keeps the GIL on the uncontended path, waits inside ``with nogil``,
and in the main thread steps out of the wait to run signal handlers, when a
signal interrupts it (Linux) and every 10 ms (a signal may land in another
thread; a condition variable is not reliably woken by one), without leaving
its place in the queue. Policy that is not counting (hold(),
holder tracking, the statistics snapshot) is shared Python in _common.
"""
cimport cython
from libc.math cimport isnan
from libc.stdint cimport int64_t, uint64_t

import collections.abc
import os
import threading
import weakref

from fastsem._common import (
    COUNT_MAX,
    AsyncHold,
    Hold,
    HolderTracker,
    SemaphoreClosed,
    make_statistics,
)

from fastsem._core cimport *

cdef extern from "<sched.h>" nogil:
    int sched_yield()

cdef extern from *:
    """
    static _Thread_local int fastsem_woke_a_loop;
    """
    # Set by a thread that has sent a task its wake-up through the task's
    # loop (call_soon_threadsafe), read by the same thread's next wait.
    int _woke_a_loop "fastsem_woke_a_loop"

cdef extern from "Python.h":
    void PyErr_SetInterrupt()

cdef extern from *:
    """
    #ifdef Py_GIL_DISABLED
    #define FASTSEM_GIL_GRACE_NS 0
    #define FASTSEM_GIL_DISABLED 1
    #else
    #define FASTSEM_GIL_GRACE_NS 1000
    #define FASTSEM_GIL_DISABLED 0
    #endif
    """
    bint GIL_DISABLED "FASTSEM_GIL_DISABLED"
    # A waiter whose wake-up came while it spun (so, within microseconds of
    # the release: a grant, or in non-fair mode a call to compete) waits this
    # long before it asks for the GIL: the releasing thread usually lets go
    # of the GIL within a microsecond (it is on its way to its own next
    # wait), and asking while it still holds it means sleeping on the GIL's
    # condition variable until a wake-up of an idle CPU. Much shorter, the
    # waiter still asks too early; much longer, it idles after the GIL is
    # free. No GIL, no wait. (docs/design.rst, "The GIL grace".)
    fs_time GIL_GRACE_NS "FASTSEM_GIL_GRACE_NS"

assert FS_COUNT_MAX == COUNT_MAX

# How long the main thread waits before it looks for pending signals. Ctrl-C
# reaches a blocked acquire() within about this long (plus a GIL switch).
cdef fs_time SIGNAL_CHECK_INTERVAL_NS = 10 * 1000 * 1000

# Signal handlers run only in the main thread, so only it pauses its waits.
# Its ident is cached: between queueing a node and waiting on it no Python
# code may run (a signal handler could raise there and strand the node).
cdef unsigned long _main_thread_ident = threading.main_thread().ident


cdef inline void _spin_for(fs_time ns) noexcept nogil:
    cdef fs_time until = fs_now() + ns
    while fs_now() < until:
        fs_cpu_relax()


# A weak reference to the event loop that ran the last task wait here, or
# None (see _this_tasks_loop).
cdef object _last_loop = None


def _after_fork_in_child():
    # The thread that called fork() is the child's main thread; the parent's
    # loops do not run here.
    global _main_thread_ident, _last_loop
    _main_thread_ident = PyThread_get_thread_ident()
    _last_loop = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _histogram_bucket(waited_ns):
    """The C core's histogram bucket for a wait (tests compare it with _common's)."""
    return fs_histogram_bucket(waited_ns)


# How many runs _complete() gives a step that keeps raising. Each run takes
# microseconds: a step cut short this many times in a row is not being
# interrupted but failing (a RecursionError near the limit), and must not
# loop for ever.
cdef int COMPLETE_RUNS = 16


def _complete(step, *args):
    # Runs step(*args) again each time an exception cuts it short, until a
    # run returns, then raises the last such exception, if any. The pool's
    # handlers that undo an interrupted acquire or complete an interrupted
    # release run through this: a second exception (a signal storm lands two
    # Ctrl-Cs microseconds apart) could otherwise cut a handler short in turn
    # and leave a place taken for good. The loop is compiled, so no signal
    # handler runs between the handler and the first run, nor between runs;
    # inside a run one may (on its first instruction too), which is why the
    # steps are idempotent: each undoes or completes what it finds.
    cdef int runs = 0
    cdef object last = None
    while True:
        try:
            step(*args)
        except BaseException as exc:
            last = exc
            runs += 1
            if runs < COMPLETE_RUNS:
                continue
            raise
        break
    if last is not None:
        raise last


include "_convert.pxi"


cdef int _raise_for(int rc, fs_count count, Semaphore sem) except -1:
    """Raises the exception of a core failure: one status, one exception.
    count is the request (n, or the new bound of resize())."""
    if not sem._initialized:
        _raise_uninitialized(sem)
    if rc == FS_CLOSED:
        raise SemaphoreClosed("the semaphore is closed")
    if rc == FS_BAD_COUNT:
        raise ValueError("n must be one or more")
    if rc == FS_OVER_MAX:
        raise ValueError(f"cannot acquire {count} permits from a semaphore "
                         f"bounded at {fs_sem_max_value(&sem._sem)}")
    if rc == FS_OVER_BOUND:
        raise ValueError("Semaphore released too many times")
    if rc == FS_OVERFLOW:
        raise OverflowError(f"a semaphore counts at most {FS_COUNT_MAX} permits")
    if rc == FS_BAD_VALUE:
        raise ValueError("semaphore initial value must be >= 0")
    if rc == FS_BAD_BOUND:
        raise ValueError("the bound must be >= 0")
    if rc == FS_ENOMEM:
        raise MemoryError("could not initialise a wait")
    if rc == FS_ABANDONED:
        raise RuntimeError("the grant could not be delivered to this task's event loop; "
                           "the permits were passed on")
    raise SystemError(f"fastsem: unexpected status {rc} from the core")


cdef int _init_unconfigured(fs_sem *sem) except -1:
    # The state of a semaphore whose __init__ has not run (see __cinit__).
    if fs_sem_init(sem, 0, 0, 1) != FS_OK:
        raise MemoryError("could not initialise the semaphore")
    fs_sem_close(sem)
    return 0


cdef int _raise_uninitialized(Semaphore sem) except -1:
    raise RuntimeError(
        f"this {type(sem).__name__} is not initialised: its __init__() was not called")


cdef str _public_module(type cls):
    module = cls.__module__
    return "fastsem" if module == "fastsem._cfastsem" else module


@cython.auto_pickle(False)
cdef class Semaphore:
    """Semaphore(value=1, *, fair=True, track_holders=False)
--

    A counting semaphore, a drop-in for threading.Semaphore that is FIFO-fair.

    It manages a count of free permits: acquire() takes permits, waiting in
    line while there are not enough; release() gives them back. Tasks of any
    asyncio event loop wait in the same line, through async_acquire(),
    async with and async_hold(), without blocking their loop. In fair mode
    (the default) permits go to waiting threads and tasks strictly in the
    order they asked, a release hands them straight to the oldest waiter,
    and nobody takes a permit while an earlier waiter is still waiting. With
    fair=False an arriving acquire may take free permits ahead of waiters
    (barging), which gives more throughput under contention; a waiter passed
    over after waiting a millisecond gets the next permits.

    value is the initial count and defaults to 1; a negative value raises
    ValueError. With track_holders=True the semaphore records which thread
    or task holds how many permits and where it acquired them (see
    holders()).
    """
    cdef fs_sem _sem
    cdef bint _initialized
    cdef object _tracker  # a HolderTracker, or None (the default: no cost)
    cdef object _task_roots  # the queued tasks' waiters (a set, made at the first), or None
    cdef object __weakref__

    def __cinit__(self):
        # Until __init__ configures it, the core is a closed semaphore bounded
        # at 0: no method meets an uninitialised mutex, no thread can queue
        # (so __init__ never rebuilds a core under its waiters), and acquire
        # and release fail on their error paths, where _raise_for says that
        # __init__ was not called, at no cost to the hot paths. Declared
        # without arguments, Cython passes over the constructor's instead of
        # parsing them twice.
        _init_unconfigured(&self._sem)

    def __init__(self, value=1, *, fair=True, track_holders=False):
        self._configure(value, False, fair, track_holders)

    cdef int _configure(self, object value, bint bounded, object fair,
                        object track_holders) except -1:
        # Every argument is converted and checked once, before the core is
        # touched: a conversion that raises leaves the object as it was.
        cdef fs_count count = _as_count(value)
        cdef bint is_fair = fair
        cdef object tracker = HolderTracker() if track_holders else None
        cdef int rc
        if count < 0:
            raise ValueError("semaphore initial value must be >= 0")
        if self._initialized:
            raise RuntimeError(f"{type(self).__name__}.__init__() called twice")
        if count > FS_COUNT_MAX:
            raise OverflowError(f"a semaphore counts at most {FS_COUNT_MAX} permits")
        fs_sem_destroy(&self._sem)
        rc = fs_sem_init(&self._sem, count, count if bounded else -1, is_fair)
        if rc != FS_OK:
            _init_unconfigured(&self._sem)
            raise MemoryError("could not initialise the semaphore")
        self._tracker = tracker
        self._initialized = True
        return 0

    cdef int _check_initialized(self) except -1:
        if not self._initialized:
            _raise_uninitialized(self)
        return 0

    def __dealloc__(self):
        fs_sem_destroy(&self._sem)

    def __repr__(self):
        cls = type(self)
        if not self._initialized:
            return f"<{_public_module(cls)}.{cls.__qualname__} at {id(self):#x}: uninitialised>"
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
        Ctrl-C) leaves the queue and takes nothing. On a closed semaphore,
        raise SemaphoreClosed.
        """
        return _acquire(self, blocking, timeout, n, None)

    def _acquire_into(self, list receipt, blocking=True, timeout=None, n=1):
        # acquire() for fastsem's own callers (hold(), the pool): the count
        # is appended to receipt before this returns, in compiled code, so
        # the caller can tell whether it holds permits even when an
        # exception (a Ctrl-C) arrives the instant this call returns.
        # Never an acquire() that a subclass overrides.
        return _acquire(self, blocking, timeout, n, receipt)

    def _release_from(self, list receipt):
        # Releases the last count in receipt and removes it, together.
        _release(self, receipt[-1])
        receipt.pop()

    cdef bint _wait(self, fs_waiter *node, fs_time deadline, fs_count count) except -1:
        global _woke_a_loop
        # The core hands two things back to run once this thread holds the
        # GIL again: competing (non-fair) and waking the next thread of a
        # relay (fastsem_core.c, "Callers that hold a big lock").
        cdef bint pausing = PyThread_get_thread_ident() == _main_thread_ident
        cdef bint fair = fs_sem_fair(&self._sem)
        cdef fs_time wake_by = FS_FOREVER
        cdef int rc
        while True:
            with nogil:
                if _woke_a_loop:
                    # This thread has just woken an event loop's thread,
                    # which the kernel likes to queue on this CPU, where the
                    # head's spin before sleeping would keep it from running.
                    _woke_a_loop = 0
                    sched_yield()
                if pausing:
                    wake_by = fs_now() + SIGNAL_CHECK_INTERVAL_NS
                rc = fs_sem_wait(&self._sem, node, deadline, wake_by)
                if fs_waiter_spun(node) and GIL_GRACE_NS > 0 and (
                    rc == FS_OK or (rc == FS_PAUSED and not fair)
                ):
                    _spin_for(GIL_GRACE_NS)
            if rc == FS_PAUSED:
                # Run signal handlers; if one raises, leave the queue (passing
                # on any permits granted meanwhile) and let the exception
                # through.
                try:
                    PyErr_CheckSignals()
                except BaseException:
                    fs_sem_cancel(&self._sem, node)
                    raise
                if fair:
                    continue
                # Non-fair, maybe woken to compete: take the free permits now
                # that this thread can run with them (taken without the GIL,
                # they would sit idle until it got it). Never sleeps while
                # holding the GIL.
                rc = fs_sem_wait(&self._sem, node, deadline, 0)
                if rc == FS_PAUSED:
                    continue
            # Holding the GIL again: now the next relayed waiter may run.
            if fs_waiter_relay_owed(node):
                fs_sem_relay(&self._sem)
            if rc == FS_OK:
                return True
            if rc == FS_TIMEOUT:
                return False
            _raise_for(rc, count, self)

    def release(self, n=1):
        """Release n permits (default 1), waking waiters in the order they came.

        A BoundedSemaphore raises ValueError if its value would pass its
        initial value; nothing is released then.
        """
        _release(self, n)

    def __enter__(self):
        return _acquire_one(self)

    def __exit__(self, exc_type, exc, tb):
        _exit(self)

    def hold(self, timeout=None, *, n=1):
        """Return a context manager that acquires n permits on entry, or raises
        TimeoutError if they are not granted within timeout seconds (None:
        wait as long as it takes), and releases them on exit, even when the
        block raises.
        """
        return Hold(self, timeout, n)

    def async_acquire(self, blocking=True, timeout=None, *, n=1):
        """Acquire n permits (default 1) from an asyncio task: as acquire(),
        but waiting suspends the task, not its thread, in the same FIFO queue
        as threads.

        Returns True, or False if the permits were not granted within timeout
        seconds (or at once, with blocking false). An uncontended acquire
        completes without suspending. Cancelled while it waits, the task
        leaves the queue; cancelled after the grant but before it resumed, it
        passes the permits on; either way it takes nothing and CancelledError
        propagates. The arguments and errors are acquire()'s, raised when the
        call is awaited.
        """
        return _async_acquire(self, blocking, timeout, n, None, False)

    def _async_acquire_into(self, list receipt, blocking=True, timeout=None, n=1):
        # async_acquire() for fastsem's own callers (AsyncHold, the pool):
        # the count is appended to receipt in compiled code, in the step that
        # takes the permits, as _acquire_into does.
        return _async_acquire(self, blocking, timeout, n, receipt, False)

    def __aenter__(self):
        return _async_enter(self)

    def __aexit__(self, exc_type, exc, tb):
        _exit(self)
        return _DONE

    def async_hold(self, timeout=None, *, n=1):
        """Return an async context manager that acquires n permits on entry,
        or raises TimeoutError if they are not granted within timeout seconds
        (None: wait as long as it takes), and releases them on exit, even
        when the block raises: hold() for asyncio tasks.
        """
        return AsyncHold(self, timeout, n)

    def close(self):
        """Close the semaphore: every thread waiting in acquire(), every task
        waiting in async_acquire(), and every later acquire, raises
        SemaphoreClosed at once. Permits already granted stay granted, and
        release() still works, so that held permits can be given back.
        Closing twice does nothing more.
        """
        self._check_initialized()
        fs_sem_close(&self._sem)

    @property
    def closed(self):
        """True once close() has been called."""
        self._check_initialized()
        return fs_sem_closed(&self._sem) != 0

    def drain(self):
        """Take all free permits now and return how many. Permits owed to a
        queued waiter are never taken: in fair mode, while anyone is queued,
        none are free for the taking (the free ones are the head waiter's);
        likewise in non-fair mode while a starving waiter heads the queue.
        """
        cdef fs_count taken
        cdef list record = None
        self._check_initialized()
        if self._tracker is not None:
            record = self._tracker.record(0)
        taken = fs_sem_drain(&self._sem)
        if taken and record is not None:
            record[2] = taken
            _store_record(self._tracker, record)
        return taken

    def statistics(self):
        """Return a SemaphoreStatistics snapshot: acquisitions, contended
        acquisitions, timeouts, interrupts, threads and tasks waiting now and
        at most, and the total, maximum and p50/p90/p99 wait times in
        seconds."""
        cdef fs_stats snapshot
        cdef uint64_t *histogram
        self._check_initialized()
        fs_sem_statistics(&self._sem, &snapshot)
        histogram = snapshot.histogram
        return make_statistics(
            snapshot.acquisitions, snapshot.contended, snapshot.timeouts,
            snapshot.interrupts, fs_sem_waiting(&self._sem), snapshot.max_waiting,
            snapshot.wait_total_ns, snapshot.wait_max_ns,
            [histogram[i] for i in range(FS_HIST_BUCKETS)])

    def reset_statistics(self):
        """Set every counter of statistics() back to zero."""
        self._check_initialized()
        fs_sem_reset_statistics(&self._sem)

    def holders(self):
        """Return who holds permits now, as a list of Holder records (thread or
        task, permits, where they were acquired). Needs track_holders=True."""
        self._check_initialized()
        if self._tracker is None:
            raise RuntimeError("holders() needs Semaphore(..., track_holders=True)")
        return self._tracker.holders()

    @property
    def value(self):
        """Permits free now (a snapshot)."""
        self._check_initialized()
        return fs_sem_value(&self._sem)

    @property
    def _value(self):
        # threading.Semaphore's attribute, which some code reads.
        self._check_initialized()
        return fs_sem_value(&self._sem)

    @property
    def waiting(self):
        """Threads queued in acquire() and tasks in async_acquire() now (a
        snapshot)."""
        self._check_initialized()
        return fs_sem_waiting(&self._sem)

    @property
    def fair(self):
        """True if permits are granted strictly in arrival order."""
        self._check_initialized()
        return fs_sem_fair(&self._sem) != 0


@cython.auto_pickle(False)
cdef class BoundedSemaphore(Semaphore):
    """BoundedSemaphore(value=1, *, fair=True, track_holders=False)
--

    A Semaphore whose value may never exceed its bound, initially its initial
    value: a release() past it raises ValueError and changes nothing. It
    guards resources of limited capacity, where an extra release is a bug.
    resize() moves the bound at run time.
    """

    def __init__(self, value=1, *, fair=True, track_holders=False):
        self._configure(value, True, fair, track_holders)

    # The same six methods again: CPython checks a method's `self` against
    # the class that defines it, with one pointer compare if it is that very
    # class and a walk up the bases if not, which an inherited method would
    # pay on every call (docs/design.rst, "Methods defined twice").
    def acquire(self, blocking=True, timeout=None, *, n=1):
        """Acquire n permits (default 1), as Semaphore.acquire()."""
        return _acquire(self, blocking, timeout, n, None)

    def release(self, n=1):
        """Release n permits (default 1), as Semaphore.release(); ValueError
        past the bound, and nothing is released then."""
        _release(self, n)

    def __enter__(self):
        return _acquire_one(self)

    def __exit__(self, exc_type, exc, tb):
        _exit(self)

    def __aenter__(self):
        return _async_enter(self)

    def __aexit__(self, exc_type, exc, tb):
        _exit(self)
        return _DONE

    def __repr__(self):
        cls = type(self)
        if not self._initialized:
            return f"<{_public_module(cls)}.{cls.__qualname__} at {id(self):#x}: uninitialised>"
        return (f"<{_public_module(cls)}.{cls.__qualname__} at {id(self):#x}: "
                f"value={fs_sem_value(&self._sem)}/{fs_sem_max_value(&self._sem)}>")

    def resize(self, new_max):
        """Move the bound to new_max. Raising it adds the difference as free
        permits and wakes waiters in order. Lowering it takes free permits away
        now, and absorbs later releases until the permits out fit the new
        bound; queued requests for more than new_max raise ValueError. A bound
        below 0 is a ValueError.
        """
        cdef fs_count bound = _as_count(new_max)
        cdef int rc
        self._check_initialized()
        rc = fs_sem_resize(&self._sem, bound)
        if rc != FS_OK:
            _raise_for(rc, bound, self)

    @property
    def max_value(self):
        """The bound: the initial value, unless resize() moved it."""
        self._check_initialized()
        return fs_sem_max_value(&self._sem)


# The bodies of the methods, shared by both classes.
#
# With track_holders=True, the holder record is made before the permits are
# taken (it runs Python code, which may raise: nothing has changed then) and
# stored after, by compiled code that no signal handler can interrupt; a
# release computes its charge first and applies it after the core has
# released. So an exception never escapes with the permits taken (or given
# back) and the records saying otherwise.

cdef inline object _acquire(Semaphore self, object blocking, object timeout, object n,
                            list receipt):
    cdef fs_count count = _as_count(n)
    cdef fs_waiter node
    cdef fs_time deadline = FS_FOREVER
    cdef int rc
    cdef list record = None
    cdef bint wait = True
    if timeout is not None:
        if not blocking:
            raise ValueError("can't specify timeout for non-blocking acquire")
        deadline = _deadline(timeout)
    elif not blocking:
        wait = False
    if self._tracker is not None:
        record = self._tracker.record(count)
    if not wait:
        rc = fs_sem_try_acquire(&self._sem, count)
        if rc == FS_WOULD_BLOCK:
            return False
        if rc != FS_OK:
            _raise_for(rc, count, self)
    else:
        # Uncontended: one compare-and-swap in the core, with the GIL held.
        rc = fs_sem_acquire_or_enqueue(&self._sem, &node, count)
        if rc == FS_QUEUED:
            if not self._wait(&node, deadline, count):
                return False
        elif rc != FS_OK:
            _raise_for(rc, count, self)
    if record is not None:
        _store_record(self._tracker, record)
    if receipt is not None:
        receipt.append(count)
    return True


cdef inline object _acquire_one(Semaphore self):
    cdef fs_waiter node
    cdef list record = None
    cdef int rc
    if self._tracker is not None:
        record = self._tracker.record(1)
    rc = fs_sem_acquire_or_enqueue(&self._sem, &node, 1)
    if rc == FS_QUEUED:
        self._wait(&node, FS_FOREVER, 1)
    elif rc != FS_OK:
        _raise_for(rc, 1, self)
    if record is not None:
        _store_record(self._tracker, record)
    return True


cdef inline void _store_record(object tracker, list record):
    # Compiled: no signal handler runs between the grant and this store.
    cdef dict records = tracker.records
    records[next(tracker.keys)] = record


cdef inline object _release(Semaphore self, object n):
    cdef fs_count count = _as_count(n)
    cdef int rc
    if self._tracker is not None:
        return _release_tracked(self, count)
    rc = fs_sem_release(&self._sem, count)
    if rc != FS_OK:
        _raise_for(rc, count, self)
    return None


cdef object _release_tracked(Semaphore self, fs_count count):
    cdef object tracker = self._tracker
    cdef dict records = tracker.records
    cdef object lock = tracker.lock
    cdef int rc
    lock.acquire()
    try:
        shrunk, gone = tracker.charge(count)
        rc = fs_sem_release(&self._sem, count)
        if rc != FS_OK:
            _raise_for(rc, count, self)
        # From here on, compiled code only: the charge is applied in full.
        records.update(shrunk)
        for key in gone:
            records.pop(key, None)
    finally:
        lock.release()
    return None


cdef inline object _exit(Semaphore self):
    # `with sem:` ends in release(), as threading's does: an override in a
    # subclass is called; the two classes themselves take the direct path.
    if type(self) is Semaphore or type(self) is BoundedSemaphore:
        return _release(self, ONE)
    self.release()
    return None


# asyncio tasks. A task waits in the core's queue as a notified waiter
# (fastsem_core.h, "Notified waiters"): its node lives in a _TaskWaiter that
# the task's coroutine frame keeps alive until the wait is finished, and
# whoever decides its wake-up calls _notify_task, which brings the news to
# the task's loop. The task then looks with fs_sem_poll. asyncio is imported
# at the first wait of a task, never by importing fastsem.

cdef object _running_loop = None  # the current thread's running loop, or RuntimeError
cdef object _loop_running_here = None  # the current thread's running loop, or None
cdef object _Future = None        # asyncio.Future
cdef object _base_create_future = None  # BaseEventLoop.create_future


cdef inline object _new_future(object loop):
    # What loop.create_future() makes, without its Python frame when the
    # loop has asyncio's own (uvloop and others keep theirs).
    if type(loop).create_future is _base_create_future:
        return _Future(loop=loop)
    return loop.create_future()


cdef object _asyncio_import_lock = threading.Lock()
cdef object _task_roots_lock = threading.Lock()


cdef object _task_roots_of(Semaphore sem):
    # The set through which the semaphore keeps its queued tasks alive (see
    # _async_acquire), made at its first task wait and never replaced. With
    # the GIL, a read that finds it made needs nothing more. Without, it is
    # read and made under a lock: two loops' threads may come at once, and
    # a reader must not see the field before the set it points to.
    roots = sem._task_roots
    if roots is not None and not GIL_DISABLED:
        return roots
    with _task_roots_lock:
        if sem._task_roots is None:
            sem._task_roots = set()
        return sem._task_roots


cdef inline object _this_tasks_loop():
    # This thread's running loop. asyncio.get_running_loop() makes a system
    # call (getpid, to tell a fork child's stale loop) on CPython 3.11 and
    # before: the loop that ran the last task wait is taken instead when it
    # runs in this thread now (_runs_here), as one thread runs one loop at a
    # time; a fork child forgets it. With the GIL only: without, replacing
    # the module global under a reader could free what it just read.
    # The reference is weak: a closed loop may still hold the handles of
    # tasks that must be collected for their grants to pass on.
    global _last_loop
    if not GIL_DISABLED and _last_loop is not None:
        loop = _last_loop()
        if loop is not None and _runs_here(loop):
            return loop
    if _running_loop is None:
        _import_asyncio()
    loop = _running_loop()
    if not GIL_DISABLED:
        try:
            _last_loop = weakref.ref(loop)
        except TypeError:  # a loop type without weak references: not cached
            _last_loop = None
    return loop


cdef void _import_asyncio() except *:
    # Once, under a lock: on a free-threaded build two threads replacing a
    # global at once could free the object the other just read.
    global _running_loop, _loop_running_here, _Future, _base_create_future
    with _asyncio_import_lock:
        if _running_loop is None:
            import asyncio.base_events
            import asyncio.events
            import asyncio.futures
            _Future = asyncio.futures.Future
            _base_create_future = asyncio.base_events.BaseEventLoop.create_future
            _loop_running_here = asyncio.events._get_running_loop
            _running_loop = asyncio.events.get_running_loop


@cython.final
@cython.freelist(16)
@cython.auto_pickle(False)
cdef class _TaskWaiter:
    """A task's place in the queue: the core's node, the task's loop, and
    what the task awaits now. Everything but the node is read and written in
    the loop's thread only; other threads reach it through the loop
    (call_soon_threadsafe)."""
    cdef fs_waiter node
    cdef object loop
    cdef object roots   # the semaphore's _task_roots
    cdef object future  # what the task awaits, or None while it runs
    cdef bint woken     # told since the task last looked
    cdef object timer

    cdef inline void wake_now(self):
        # In the loop's thread: the task is to look again (fs_sem_poll).
        self.woken = True
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)

    def _wake(self):
        self.wake_now()

    def _time_out(self):
        self.timer = None
        self.wake_now()

    cdef int deliver(self) except -1:
        global _woke_a_loop
        if _runs_here(self.loop):
            # Inside the loop's run, in its thread: the future may be
            # resolved now, a loop turn sooner. Not merely in the thread the
            # task queued in: a loop may be stopped there and run on in
            # another, where a future resolved from here would schedule its
            # task without waking the loop's selector.
            self.wake_now()
        else:
            self.loop.call_soon_threadsafe(self._wake)
            _woke_a_loop = 1
        return 0


cdef inline bint _runs_here(object loop) except -1:
    # Whether this thread is inside `loop`'s run now. asyncio's own loops
    # say which thread runs them (_thread_id, set for the length of
    # run_forever): one attribute, a fraction of the cost of asking asyncio
    # for this thread's running loop, which other loops are asked through.
    try:
        thread_id = loop._thread_id
    except AttributeError:
        return _loop_running_here() is loop
    return thread_id is not None and thread_id == PyThread_get_thread_ident()


cdef int _notify_task(fs_waiter *node) noexcept nogil:
    # The core calls this after its unlock, in whichever thread decided the
    # wake-up (a release, a close, another waiter's timeout), with or without
    # the GIL. Returns nonzero if the news can never reach the task (its loop
    # is closed): the core then passes the task's permits on.
    with gil:
        waiter = <_TaskWaiter>node.notify_arg
        delivered = interrupted = False
        for attempt in range(3):
            try:
                waiter.deliver()
                delivered = True
                break
            except BaseException as exc:
                # A signal handler's exception (Ctrl-C) landing inside the
                # delivery must not cost the task its grant: deliver again,
                # and raise it again at the thread's next check for signals.
                interrupted = interrupted or isinstance(exc, KeyboardInterrupt)
                try:
                    if waiter.loop.is_closed():
                        break
                except BaseException:
                    pass
        # Told, the task is the loop's to keep alive (its wake-up is queued
        # there); not told, it never runs again and may be collected. A
        # wait that goes on puts it back after a look that finds it queued.
        waiter.roots.discard(waiter)
        if interrupted:
            PyErr_SetInterrupt()
        return 0 if delivered else 1


cdef inline void _await_notifier(fs_waiter *node) noexcept nogil:
    # A notification is being sent; its sender may need the GIL to finish.
    while fs_waiter_notifying(node):
        sched_yield()


@cython.final
@cython.auto_pickle(False)
cdef class _Done:
    """A coroutine that is done at once, with None: what `async with` awaits
    when nothing needs to wait, without making a coroutine object. It has a
    coroutine's methods and is registered as a Coroutine, so that whatever
    takes a coroutine (asyncio.create_task, asyncio.run, stepping it with
    send) takes it too. It keeps no state: one serves every caller."""

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        raise StopIteration

    def send(self, value):
        raise StopIteration

    def throw(self, typ, val=None, tb=None):
        if val is None:
            raise typ
        raise val.with_traceback(tb) if tb is not None else val

    def close(self):
        pass


cdef _Done _DONE = _Done()
collections.abc.Coroutine.register(_Done)


cdef inline object _async_enter(Semaphore self):
    if self._tracker is None and fs_sem_try_acquire(&self._sem, 1) == FS_OK:
        return _DONE
    return _async_acquire(self, True, None, ONE, None, True)


async def _async_acquire(Semaphore self, object blocking, object timeout, object n,
                         list receipt, bint entering):
    # entering: for `async with`, which gives None, as asyncio.Semaphore's.
    cdef fs_count count = _as_count(n)
    cdef fs_time deadline = FS_FOREVER
    cdef int rc
    cdef list record = None
    cdef bint wait = True
    cdef _TaskWaiter waiter
    if timeout is not None:
        if not blocking:
            raise ValueError("can't specify timeout for non-blocking acquire")
        deadline = _deadline(timeout)
        if deadline <= fs_now():
            # Due already (timeout <= 0): the thread's one attempt, counted
            # as the thread's (a timeout), and no suspension.
            return _acquire(self, blocking, timeout, n, receipt)
    elif not blocking:
        wait = False
    if self._tracker is not None:
        record = self._tracker.record(count)
    rc = fs_sem_try_acquire(&self._sem, count)
    if rc == FS_WOULD_BLOCK and wait:
        loop = _this_tasks_loop()
        waiter = _TaskWaiter.__new__(_TaskWaiter)
        waiter.loop = loop
        # While it waits untold, only the semaphore refers to the task (the
        # core's node does not count): asyncio keeps no strong reference to
        # a task, and asyncio.Semaphore's queue of futures is what keeps a
        # task nobody else refers to alive until its turn. The waiter is in
        # the semaphore's roots from before it queues, leaves them when a
        # notification is sent (_notify_task), is put back after a look that
        # finds it still queued, and leaves them when its wait ends. A
        # notification that comes between that look and the put-back finds
        # it out already: it then stays rooted while its wake-up is on the
        # way, and is taken out at the latest when its wait ends.
        waiter.roots = _task_roots_of(self)
        waiter.roots.add(waiter)
        # A wake-up reaches the waiter in the loop's thread, where this code
        # runs until its next await: none can come before the future is made.
        rc = fs_sem_acquire_or_enqueue_notified(&self._sem, &waiter.node, count,
                                                _notify_task, <void *>waiter)
        if rc == FS_QUEUED:
            try:
                while True:
                    if not waiter.woken:
                        if deadline != FS_FOREVER:
                            waiter.timer = loop.call_later(
                                max(deadline - fs_now(), 0) / 1e9, waiter._time_out)
                        waiter.future = _new_future(loop)
                        await waiter.future
                        waiter.future = None
                        # Cancelled now, while the node is still queued: an
                        # exception in this Python call is the except's to
                        # handle. Between the poll that finishes the wait and
                        # the return, only compiled code runs (no signal
                        # handler can strand the permits there).
                        if waiter.timer is not None:
                            waiter.timer.cancel()
                            waiter.timer = None
                    waiter.woken = False
                    rc = fs_sem_poll(&self._sem, &waiter.node, deadline)
                    if rc == FS_IN_FLIGHT:
                        with nogil:
                            _await_notifier(&waiter.node)
                        waiter.woken = True  # look again at once
                    elif rc != FS_QUEUED:
                        break
                    waiter.roots.add(waiter)
            except BaseException:
                # Cancelled (or the coroutine closed): leave the queue, passing
                # on a grant that came meanwhile. The core may wait here for a
                # notifier, which may need the GIL. Then the timer; if that
                # raises, the node is out already.
                with nogil:
                    fs_sem_cancel(&self._sem, &waiter.node)
                waiter.roots.discard(waiter)
                if waiter.timer is not None:
                    waiter.timer.cancel()
                raise
        waiter.roots.discard(waiter)
    if rc != FS_OK:
        if rc == FS_WOULD_BLOCK or rc == FS_TIMEOUT:
            return False
        _raise_for(rc, count, self)
    if record is not None:
        _store_record(self._tracker, record)
    if receipt is not None:
        receipt.append(count)
    return None if entering else True
