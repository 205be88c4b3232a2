# The C declarations both compiled modules use: the interpreter's few
# functions they call directly, and the thread core (csrc/fastsem_core.h),
# whose clock, histogram and status codes the process core shares. Only
# declarations: cimported, never imported.
from libc.stdint cimport uint64_t

cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1
    unsigned long PyThread_get_thread_ident() nogil
    bint PyLong_CheckExact(object o)
    object PyNumber_Index(object o)

cdef extern from "fastsem_core.h" nogil:
    ctypedef long long fs_count
    ctypedef long long fs_time
    fs_time FS_FOREVER
    fs_count FS_COUNT_MAX
    int FS_HIST_BUCKETS

    enum:
        FS_OK
        FS_WOULD_BLOCK
        FS_QUEUED
        FS_TIMEOUT
        FS_PAUSED
        FS_OVER_BOUND
        FS_OVERFLOW
        FS_BAD_COUNT
        FS_ENOMEM
        FS_CLOSED
        FS_OVER_MAX
        FS_BAD_VALUE
        FS_BAD_BOUND
        FS_UNBOUNDED
        FS_IN_FLIGHT
        FS_ABANDONED

    # Opaque here but for the owner's pointer of a notified waiter: the
    # binding reads the rest through the core's accessors.
    ctypedef struct fs_waiter:
        void *notify_arg

    ctypedef int (*fs_notify_fn)(fs_waiter *w) noexcept nogil

    ctypedef struct fs_sem:
        pass

    ctypedef struct fs_stats:
        uint64_t acquisitions
        uint64_t contended
        uint64_t timeouts
        uint64_t interrupts
        uint64_t max_waiting
        uint64_t wait_total_ns
        uint64_t wait_max_ns
        uint64_t histogram[1]  # FS_HIST_BUCKETS in fact; indexed below

    int fs_sem_init(fs_sem *s, fs_count value, fs_count max_value, int fair)
    void fs_sem_destroy(fs_sem *s)
    int fs_sem_try_acquire(fs_sem *s, fs_count n)
    int fs_sem_acquire_or_enqueue(fs_sem *s, fs_waiter *w, fs_count n)
    int fs_sem_wait(fs_sem *s, fs_waiter *w, fs_time deadline, fs_time wake_by)
    int fs_sem_cancel(fs_sem *s, fs_waiter *w)
    int fs_sem_acquire_or_enqueue_notified(fs_sem *s, fs_waiter *w, fs_count n,
                                           fs_notify_fn notify, void *arg)
    int fs_sem_poll(fs_sem *s, fs_waiter *w, fs_time deadline)
    int fs_waiter_notifying(fs_waiter *w)
    void fs_sem_relay(fs_sem *s)
    int fs_waiter_relay_owed(const fs_waiter *w)
    int fs_waiter_spun(const fs_waiter *w)
    int fs_sem_fair(const fs_sem *s)
    int fs_sem_release(fs_sem *s, fs_count n)
    fs_count fs_sem_value(fs_sem *s)
    size_t fs_sem_waiting(fs_sem *s)
    fs_count fs_sem_max_value(fs_sem *s)
    int fs_sem_closed(fs_sem *s)
    void fs_sem_close(fs_sem *s)
    fs_count fs_sem_drain(fs_sem *s)
    int fs_sem_resize(fs_sem *s, fs_count new_max)
    void fs_sem_statistics(fs_sem *s, fs_stats *out)
    void fs_sem_reset_statistics(fs_sem *s)
    int fs_histogram_bucket(fs_time waited_ns)
    fs_time fs_now()
    fs_time fs_deadline_after(double seconds)
    void fs_cpu_relax()
