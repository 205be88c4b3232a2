# cython: freethreading_compatible = True
# cython: language_level = 3
# cython: binding = False
# cython: embedsignature = True
# cython: embedsignature.format = clinic
"""The process-shared semaphores and slot pool: a thin binding over
csrc/fastsem_proc.c.

As the thread binding (_cfastsem): it converts arguments, waits inside
``with nogil``, and in the main thread steps out of the wait every 10 ms, or
when a signal interrupts it, to run signal handlers, without leaving its
place in the queue. The state lives in the shared segment; an object here is
one process's mapping of it, and travels to other processes as a duplicate
of the segment's file descriptor (multiprocessing's DupFd)."""
cimport cython
from libc.errno cimport errno
from libc.math cimport isnan
from libc.stdlib cimport free, malloc
from libc.stdint cimport int32_t, uint32_t, uint64_t

import os
import threading
from multiprocessing import reduction

from fastsem._common import COUNT_MAX, Hold, SemaphoreClosed
from fastsem._process import (
    DEFAULT_MAX_PROCESSES,
    DEFAULT_MAX_WAITERS,
    CapacityError,
    make_process_statistics,
    segment_name,
)

from fastsem._core cimport *

cdef extern from "fastsem_proc.h" nogil:
    enum:
        FSP_UNSUPPORTED
        FSP_SYSTEM
        FSP_BAD_LAYOUT
        FSP_OTHER_PIDNS
        FSP_NO_ROOM
        FSP_BAD_LIMIT
        FSP_NOT_OWNER
        FSP_NO_UNITS
        FSP_BAD_UNIT
        FSP_LIMIT_MAX
    fs_count FSP_COUNT_MAX
    ctypedef struct fsp_sem:
        int fd
        void *shared
    ctypedef struct fsp_ticket:
        int32_t unit
    ctypedef struct fsp_stats:
        fs_stats base
        uint64_t recovered
        uint64_t dead_processes
    int fsp_memfd()
    int fsp_shm_create(const char *name)
    int fsp_shm_open(const char *name)
    int fsp_shm_unlink(const char *name)
    int fsp_create(fsp_sem *s, int fd, fs_count value, fs_count max_value, int fair,
                   uint32_t max_processes, uint32_t max_waiters, uint32_t units)
    int fsp_attach(fsp_sem *s, int fd)
    void fsp_detach(fsp_sem *s)
    int fsp_try_acquire(fsp_sem *s, fsp_ticket *t, fs_count n)
    int fsp_release_unit(fsp_sem *s, int32_t unit)
    uint32_t fsp_units(fsp_sem *s)
    int32_t fsp_unit_holder(fsp_sem *s, int32_t unit)
    int fsp_acquire_or_enqueue(fsp_sem *s, fsp_ticket *t, fs_count n)
    int fsp_wait(fsp_sem *s, fsp_ticket *t, fs_time deadline, fs_time wake_by)
    int fsp_cancel(fsp_sem *s, fsp_ticket *t)
    int fsp_release(fsp_sem *s, fs_count n)
    fs_count fsp_value(fsp_sem *s)
    fs_count fsp_max_value(fsp_sem *s)
    size_t fsp_waiting(fsp_sem *s)
    int fsp_fair(fsp_sem *s)
    int fsp_closed(fsp_sem *s)
    uint32_t fsp_max_processes(fsp_sem *s)
    uint32_t fsp_max_waiters(fsp_sem *s)
    void fsp_close(fsp_sem *s)
    void fsp_statistics(fsp_sem *s, fsp_stats *out)
    void fsp_reset_statistics(fsp_sem *s)
    size_t fsp_holders(fsp_sem *s, int32_t *pids, fs_count *permits, size_t room)
    size_t fsp_recover(fsp_sem *s)

include "_convert.pxi"

assert FS_COUNT_MAX == COUNT_MAX

# As in _cfastsem: how long the main thread waits before it looks for
# pending signals, and the main thread's ident, cached.
cdef fs_time SIGNAL_CHECK_INTERVAL_NS = 10 * 1000 * 1000
cdef unsigned long _main_thread_ident = threading.main_thread().ident


def _after_fork_in_child():
    global _main_thread_ident
    _main_thread_ident = PyThread_get_thread_ident()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_UNSUPPORTED = ("process-shared semaphores need Linux (futexes, robust "
                "process-shared mutexes and /proc)")
_ENOSYS = 38  # what the core's constructors say on other platforms


cdef int _raise_for(int rc, fs_count count, _Shared sem) except -1:
    """Raises the exception of a core failure: one status, one exception.
    count is the request (or the slot, for a slot pool's release)."""
    if rc == FS_CLOSED:
        raise SemaphoreClosed(f"the {type(sem).__name__} is closed")
    if rc == FS_BAD_COUNT:
        raise ValueError("n must be one or more")
    if rc == FS_OVER_MAX:
        raise ValueError(f"cannot acquire {count} permits from a semaphore "
                         f"bounded at {fsp_max_value(&sem._sem)}")
    if rc == FS_OVER_BOUND:
        raise ValueError("Semaphore released too many times")
    if rc == FS_OVERFLOW:
        raise OverflowError(f"a process semaphore counts at most {FSP_COUNT_MAX} permits")
    if rc == FS_BAD_VALUE:
        raise ValueError("semaphore initial value must be >= 0")
    if rc == FSP_NO_ROOM:
        raise CapacityError(
            f"this {type(sem).__name__} is full: it serves at most "
            f"{fsp_max_processes(&sem._sem)} processes and "
            f"{fsp_max_waiters(&sem._sem)} waiting threads at once "
            f"(max_processes, max_waiters)")
    if rc == FSP_BAD_LIMIT:
        raise ValueError(f"max_processes and max_waiters must be in 1..{FSP_LIMIT_MAX}")
    if rc == FSP_NOT_OWNER:
        raise ValueError(f"slot {count} is not held by this process")
    if rc == FSP_BAD_UNIT:
        raise ValueError(f"there is no slot {count}: the slots are "
                         f"0..{fsp_units(&sem._sem) - 1}")
    if rc == FSP_BAD_LAYOUT:
        raise ValueError(f"{sem._name!r} holds no fastsem process semaphore of this version")
    if rc == FSP_OTHER_PIDNS:
        raise RuntimeError("it was made in another PID namespace, where process ids "
                           "mean other processes: it cannot be shared")
    if rc == FSP_UNSUPPORTED:
        raise NotImplementedError(_UNSUPPORTED)
    if rc == FSP_SYSTEM:
        _raise_os_error(errno, sem._name)
    raise SystemError(f"fastsem: unexpected status {rc} from the core")


cdef int _raise_os_error(int err, object name) except -1:
    if err == _ENOSYS:
        raise NotImplementedError(_UNSUPPORTED)
    if name is None:
        raise OSError(err, os.strerror(err))
    raise OSError(err, os.strerror(err), name)


cdef int _check(_Shared sem) except -1:
    if sem._sem.shared == NULL:
        raise RuntimeError(
            f"this {type(sem).__name__} is not initialised: its __init__() was not called")
    return 0


cdef str _public_module(type cls):
    module = cls.__module__
    return "fastsem" if module == "fastsem._cprocess" else module


def _rebuild(dup_fd, name):
    # Unpickling: a duplicate of the sender's descriptor, mapped here.
    return _attached(dup_fd.detach(), name, None)


cdef _Shared _attached(int fd, object name, type wanted):
    # An object of the class the segment was made as (a slot pool, a bounded
    # or a plain semaphore); ValueError if the class whose open() was called
    # is of the other family.
    cdef _Shared probe = _Shared.__new__(_Shared)
    cdef _Shared made
    cdef int rc
    probe._name = name
    rc = fsp_attach(&probe._sem, fd)  # owns fd from here, failure or not
    if rc != FS_OK:
        _raise_for(rc, 0, probe)
    if fsp_units(&probe._sem) > 0:
        cls = ProcessSlotPool
    elif fsp_max_value(&probe._sem) >= 0:
        cls = ProcessBoundedSemaphore
    else:
        cls = ProcessSemaphore
    if wanted is not None and (cls is ProcessSlotPool) != issubclass(wanted, ProcessSlotPool):
        raise ValueError(f"{name!r} holds a {cls.__name__}, not a {wanted.__name__}")
    made = cls.__new__(cls)
    made._sem = probe._sem  # the mapping moves; probe lets go of nothing
    made._name = name
    probe._sem.shared = NULL
    probe._sem.fd = -1
    return made


@cython.auto_pickle(False)
cdef class _Shared:
    """What the process-shared classes have in common: one process's mapping
    of a segment, its name, how it travels, closing, statistics."""
    cdef fsp_sem _sem
    cdef object _name
    cdef object __weakref__

    def __cinit__(self):
        self._sem.shared = NULL
        self._sem.fd = -1

    cdef int _make(self, object value, bint bounded, object fair, object name,
                   object max_processes, object max_waiters, bint slots) except -1:
        # Every argument is converted and checked before anything is made.
        cdef fs_count count = _as_count(value)
        cdef bint is_fair = fair
        cdef fs_count procs = _as_count(max_processes)
        cdef fs_count waiters = _as_count(max_waiters)
        cdef bytes path = None if name is None else segment_name(name)
        cdef int fd, rc
        if self._sem.shared != NULL:
            raise RuntimeError(f"{type(self).__name__}.__init__() called twice")
        if slots and not 1 <= count <= FSP_LIMIT_MAX:
            raise ValueError(f"a slot pool has 1..{FSP_LIMIT_MAX} slots")
        if count < 0:
            raise ValueError("semaphore initial value must be >= 0")
        if count > FSP_COUNT_MAX:
            raise OverflowError(f"a process semaphore counts at most {FSP_COUNT_MAX} permits")
        if not (1 <= procs <= FSP_LIMIT_MAX and 1 <= waiters <= FSP_LIMIT_MAX):
            raise ValueError(f"max_processes and max_waiters must be in 1..{FSP_LIMIT_MAX}")
        fd = fsp_memfd() if path is None else fsp_shm_create(path)
        if fd < 0:
            _raise_os_error(errno, name)
        self._name = name
        rc = fsp_create(&self._sem, fd, count, count if bounded else -1, is_fair,
                        <uint32_t>procs, <uint32_t>waiters,
                        <uint32_t>count if slots else 0)  # owns fd from here
        if rc != FS_OK:
            if path is not None:
                fsp_shm_unlink(path)
            _raise_for(rc, count, self)
        return 0

    @classmethod
    def open(cls, name):
        """Attach to what any process of the same user made with this name
        (ProcessSemaphore.open gives a ProcessBoundedSemaphore if it was made
        bounded). FileNotFoundError if there is none, or it was unlinked;
        ValueError if the name holds something else."""
        cdef bytes path = segment_name(name)
        cdef int fd = fsp_shm_open(path)
        if fd < 0:
            _raise_os_error(errno, name)
        return _attached(fd, name, cls)

    def unlink(self):
        """Remove the name: open() no longer finds it; every process that has
        it keeps using it, and the memory goes when the last one lets go.
        ValueError if anonymous; FileNotFoundError if the name is already
        gone."""
        _check(self)
        if self._name is None:
            raise ValueError(f"an anonymous {type(self).__name__} has no name to unlink")
        if fsp_shm_unlink(segment_name(self._name)) != 0:
            _raise_os_error(errno, self._name)

    @property
    def name(self):
        """The name given at creation (or to open()), or None if anonymous."""
        return self._name

    def __dealloc__(self):
        fsp_detach(&self._sem)

    def __reduce__(self):
        _check(self)
        return (_rebuild, (reduction.DupFd(self._sem.fd), self._name))

    def __repr__(self):
        cls = type(self)
        where = f"{_public_module(cls)}.{cls.__qualname__} at {id(self):#x}"
        if self._sem.shared == NULL:
            return f"<{where}: uninitialised>"
        named = "" if self._name is None else f", name={self._name!r}"
        return f"<{where}: {self._shown_value()}{named}>"

    cdef str _shown_value(self):
        return f"value={fsp_value(&self._sem)}"

    cdef bint _wait(self, fsp_ticket *ticket, fs_time deadline, fs_count count) except -1:
        cdef bint pausing = PyThread_get_thread_ident() == _main_thread_ident
        cdef fs_time wake_by = FS_FOREVER
        cdef int rc
        while True:
            with nogil:
                if pausing:
                    wake_by = fs_now() + SIGNAL_CHECK_INTERVAL_NS
                rc = fsp_wait(&self._sem, ticket, deadline, wake_by)
            if rc == FS_PAUSED:
                # Run signal handlers; if one raises, leave the queue (passing
                # on what was granted meanwhile) and let the exception out.
                try:
                    PyErr_CheckSignals()
                except BaseException:
                    fsp_cancel(&self._sem, ticket)
                    raise
                continue
            if rc == FS_OK:
                return True
            if rc == FS_TIMEOUT:
                return False
            _raise_for(rc, count, self)

    cdef bint _take(self, object blocking, object timeout, fs_count count,
                    fsp_ticket *ticket) except -1:
        # acquire()'s body: True with the permits (and the slot, in
        # ticket.unit, if a ticket is given) taken, False if not, an
        # exception for bad input.
        cdef fsp_ticket own
        cdef fs_time deadline = FS_FOREVER
        cdef int rc
        _check(self)
        if ticket == NULL:
            ticket = &own
        if timeout is not None:
            if not blocking:
                raise ValueError("can't specify timeout for non-blocking acquire")
            deadline = _deadline(timeout)
        elif not blocking:
            rc = fsp_try_acquire(&self._sem, ticket, count)
            if rc == FS_WOULD_BLOCK:
                return False
            if rc != FS_OK:
                _raise_for(rc, count, self)
            return True
        rc = fsp_acquire_or_enqueue(&self._sem, ticket, count)
        if rc == FS_QUEUED:
            return self._wait(ticket, deadline, count)
        if rc != FS_OK:
            _raise_for(rc, count, self)
        return True

    def close(self):
        """Close it, for every process: every waiting thread, and every later
        acquire, raises SemaphoreClosed. What is held stays held, and
        release() still works. The memory stays until every process lets go."""
        _check(self)
        fsp_close(&self._sem)

    @property
    def closed(self):
        """True once close() has been called, in any process."""
        _check(self)
        return fsp_closed(&self._sem) != 0

    @property
    def waiting(self):
        """Threads of all processes queued in acquire() now (a snapshot)."""
        _check(self)
        return fsp_waiting(&self._sem)

    @property
    def fair(self):
        """True if grants go strictly in arrival order."""
        _check(self)
        return fsp_fair(&self._sem) != 0

    @property
    def max_processes(self):
        """How many processes may use it at once."""
        _check(self)
        return fsp_max_processes(&self._sem)

    @property
    def max_waiters(self):
        """How many threads, of all processes, may wait in it at once."""
        _check(self)
        return fsp_max_waiters(&self._sem)

    def recover(self):
        """Look for dead processes now, rather than at the next look a waiter
        makes; give back what they held; return how many were found."""
        _check(self)
        with nogil:
            found = fsp_recover(&self._sem)
        return found

    def statistics(self):
        """A ProcessSemaphoreStatistics snapshot, counted across every
        process: as Semaphore.statistics(), plus the permits recovered from
        dead processes and how many dead processes were found."""
        cdef fsp_stats snap
        cdef uint64_t *histogram
        _check(self)
        fsp_statistics(&self._sem, &snap)
        histogram = snap.base.histogram
        return make_process_statistics(
            (snap.base.acquisitions, snap.base.contended, snap.base.timeouts,
             snap.base.interrupts, snap.base.max_waiting, snap.base.wait_total_ns,
             snap.base.wait_max_ns),
            fsp_waiting(&self._sem),
            [histogram[i] for i in range(FS_HIST_BUCKETS)],
            snap.recovered, snap.dead_processes)

    def reset_statistics(self):
        """Set every counter of statistics() back to zero, for every process."""
        _check(self)
        fsp_reset_statistics(&self._sem)


@cython.auto_pickle(False)
cdef class ProcessSemaphore(_Shared):
    """ProcessSemaphore(value=1, *, fair=True, name=None, max_processes=256, max_waiters=1024)
--

    A counting semaphore shared by processes, FIFO-fair across every thread
    of every process, which gives back the permits of a process that dies.

    It behaves as fastsem.Semaphore, with one queue for all: acquire() takes
    permits, waiting in line while there are not enough; release() hands
    them to the oldest waiter of any process. Permits belong to processes:
    what a process acquired and has not released goes back to the queue if it
    dies, however it dies (SIGKILL included), within about 0.1 s of a waiter
    looking; a process that releases permits it did not acquire owes nothing.

    Anonymous by default: share it with child processes as a Process argument
    (fork, spawn or forkserver), through a Pool initializer, or pickled
    through a Queue or Pipe while the sender lives; the memory goes when the
    last process using it lets go. With name="x" it can also be opened by any
    process of the same user with ProcessSemaphore.open("x"), until unlink().

    max_processes caps how many processes may use it at once, max_waiters
    how many threads may wait in it at once; past either, acquire() raises
    CapacityError.
    """

    def __init__(self, value=1, *, fair=True, name=None,
                 max_processes=DEFAULT_MAX_PROCESSES, max_waiters=DEFAULT_MAX_WAITERS):
        self._make(value, False, fair, name, max_processes, max_waiters, False)

    def acquire(self, blocking=True, timeout=None, *, n=1):
        """Acquire n permits (default 1), as Semaphore.acquire(): in line
        with every thread of every process that shares the semaphore."""
        return self._take(blocking, timeout, _as_count(n), NULL)

    def _acquire_into(self, list receipt, blocking=True, timeout=None, n=1):
        # For hold(): the count is appended to receipt, in compiled code,
        # before this returns (see _cfastsem).
        cdef fs_count count = _as_count(n)
        if not self._take(blocking, timeout, count, NULL):
            return False
        receipt.append(count)
        return True

    def _release_from(self, list receipt):
        _release(self, receipt[-1])
        receipt.pop()

    def release(self, n=1):
        """Release n permits (default 1), handing them to the oldest waiters
        of any process. Charged to what this process holds, as far as it
        holds any."""
        _release(self, n)

    def __enter__(self):
        return self._take(True, None, 1, NULL)

    def __exit__(self, exc_type, exc, tb):
        if type(self) is ProcessSemaphore or type(self) is ProcessBoundedSemaphore:
            _release(self, ONE)
        else:
            self.release()

    def hold(self, timeout=None, *, n=1):
        """A context manager that acquires n permits on entry, or raises
        TimeoutError after timeout seconds, and releases them on exit."""
        return Hold(self, timeout, n)

    @property
    def value(self):
        """Permits free now (a snapshot)."""
        _check(self)
        return fsp_value(&self._sem)

    def get_value(self):
        """Permits free now, as multiprocessing's Semaphore.get_value()."""
        _check(self)
        return fsp_value(&self._sem)

    def holders(self):
        """Who holds permits now: {pid: permits}, one entry per process."""
        cdef size_t room = 16, count
        cdef int32_t *pids = NULL
        cdef fs_count *permits = NULL
        _check(self)
        while True:
            pids = <int32_t *>malloc(room * sizeof(int32_t))
            permits = <fs_count *>malloc(room * sizeof(fs_count))
            try:
                if pids == NULL or permits == NULL:
                    raise MemoryError()
                count = fsp_holders(&self._sem, pids, permits, room)
                if count <= room:
                    return {pids[i]: permits[i] for i in range(count)}
            finally:
                free(pids)
                free(permits)
            room = count


@cython.auto_pickle(False)
cdef class ProcessBoundedSemaphore(ProcessSemaphore):
    """ProcessBoundedSemaphore(value=1, *, fair=True, name=None, max_processes=256, max_waiters=1024)
--

    A ProcessSemaphore whose value may never exceed its initial value: a
    release() past it raises ValueError and changes nothing, and permits
    given back for a dead process never take it past the bound.
    """

    def __init__(self, value=1, *, fair=True, name=None,
                 max_processes=DEFAULT_MAX_PROCESSES, max_waiters=DEFAULT_MAX_WAITERS):
        self._make(value, True, fair, name, max_processes, max_waiters, False)

    cdef str _shown_value(self):
        return f"value={fsp_value(&self._sem)}/{fsp_max_value(&self._sem)}"

    @property
    def max_value(self):
        """The bound: the initial value."""
        _check(self)
        return fsp_max_value(&self._sem)


cdef inline object _release(ProcessSemaphore self, object n):
    cdef fs_count count = _as_count(n)
    cdef int rc
    _check(self)
    rc = fsp_release(&self._sem, count)
    if rc != FS_OK:
        _raise_for(rc, count, self)
    return None


@cython.auto_pickle(False)
cdef class ProcessSlotPool(_Shared):
    """ProcessSlotPool(n, *, fair=True, name=None, max_processes=256, max_waiters=1024)
--

    Slot numbers 0..n-1 handed out fairly across processes: GPU ids, ports,
    licence seats. Each acquire gets a slot no one else holds, in FIFO order
    across every thread of every process; a process that dies holding slots
    gives them back, as ProcessSemaphore gives back permits.

        with pool.slot(timeout=10) as gpu:
            run_on(gpu)

    Shared like ProcessSemaphore (Process arguments, Pool initializers,
    pickling, or name= and ProcessSlotPool.open(name)).
    """

    def __init__(self, n, *, fair=True, name=None,
                 max_processes=DEFAULT_MAX_PROCESSES, max_waiters=DEFAULT_MAX_WAITERS):
        self._make(n, True, fair, name, max_processes, max_waiters, True)

    cdef str _shown_value(self):
        return f"free={fsp_value(&self._sem)}/{fsp_units(&self._sem)}"

    def acquire(self, blocking=True, timeout=None):
        """Take a free slot and return its number; None if none was free in
        time (blocking false, or the timeout passed). Slot 0 is a slot: test
        the result with `is None`. The slot is this process's until
        release(slot), or until the process dies."""
        cdef fsp_ticket ticket
        if not self._take(blocking, timeout, 1, &ticket):
            return None
        return ticket.unit

    def release(self, slot):
        """Give back a slot this process holds; ValueError for a slot it does
        not hold (another process's, or no slot at all)."""
        cdef int32_t unit
        _check(self)
        unit = _as_slot(slot)
        rc = fsp_release_unit(&self._sem, unit)
        if rc != FS_OK:
            _raise_for(rc, unit, self)

    def slot(self, timeout=None):
        """A context manager: entry takes a slot and gives its number, or
        raises TimeoutError after timeout seconds; exit gives it back."""
        return SlotLease(self, timeout)

    @property
    def size(self):
        """How many slots there are."""
        _check(self)
        return fsp_units(&self._sem)

    @property
    def free(self):
        """How many slots are free now (a snapshot)."""
        _check(self)
        return fsp_value(&self._sem)

    def holders(self):
        """Who holds slots now: {pid: [slot, ...]}."""
        cdef int32_t unit, pid
        _check(self)
        held = {}
        for unit in range(<int32_t>fsp_units(&self._sem)):
            pid = fsp_unit_holder(&self._sem, unit)
            if pid:
                held.setdefault(pid, []).append(unit)
        return held


cdef int32_t _as_slot(object slot) except? -1:
    cdef fs_count number = _as_count(slot)
    if number < 0 or number > 0x7fffffff:
        return 0x7fffffff  # no such slot: the core says which range there is
    return <int32_t>number


@cython.final
@cython.auto_pickle(False)
cdef class SlotLease:
    """What ProcessSlotPool.slot() returns: entered once, it takes a slot and
    gives its number; exit gives it back. The number is kept by compiled
    code before entry returns, so that an exception arriving just then (a
    Ctrl-C) gives the slot back rather than stranding it."""
    cdef ProcessSlotPool _pool
    cdef object _timeout
    cdef int32_t _slot
    cdef bint _entered

    def __init__(self, ProcessSlotPool pool, timeout=None):
        self._pool = pool
        self._timeout = timeout
        self._slot = -1

    def __enter__(self):
        cdef fsp_ticket ticket
        if self._entered:
            raise RuntimeError("a slot lease is entered once")
        self._entered = True
        if not self._pool._take(True, self._timeout, 1, &ticket):
            raise TimeoutError(f"no slot was free within {self._timeout} seconds")
        self._slot = ticket.unit
        return self._slot

    def __exit__(self, exc_type, exc, tb):
        cdef int32_t slot = self._slot
        if slot >= 0:
            self._slot = -1
            self._pool.release(slot)
