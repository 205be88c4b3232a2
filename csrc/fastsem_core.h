/*
 * fastsem_core.h - a FIFO-fair counting semaphore on pthreads (C11, no Python).
 *
 * See fastsem_core.c for the design. In short: one mutex guards the count and
 * an intrusive FIFO queue of waiter nodes; each node lives on its waiting
 * thread's stack with its own condition variable; a release hands permits
 * straight to the oldest waiters.
 *
 * Calling convention for a blocking acquire (the caller owns the node):
 *
 *     fs_waiter w;
 *     int rc = fs_sem_acquire_or_enqueue(&sem, &w, n);   // FS_OK or FS_QUEUED
 *     while (rc == FS_QUEUED) {
 *         rc = fs_sem_wait(&sem, &w, deadline, wake_by); // OK, TIMEOUT, PAUSED
 *         if (rc == FS_PAUSED && must_give_up) {
 *             fs_sem_cancel(&sem, &w);                   // never loses a permit
 *             break;
 *         }
 *         if (rc == FS_PAUSED) rc = FS_QUEUED;           // same place in line
 *     }
 *
 * FS_PAUSED lets a caller step out of the wait (to run signal handlers, say)
 * without leaving the queue; the node must then stay alive until the caller
 * waits again, or cancels.
 */
#ifndef FASTSEM_CORE_H
#define FASTSEM_CORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. */
enum {
    FS_OK = 0,          /* the permits are the caller's */
    FS_WOULD_BLOCK = 1, /* try_acquire: not available without waiting */
    FS_QUEUED = 2,      /* acquire_or_enqueue: the node is now in the queue */
    FS_TIMEOUT = 3,     /* the deadline passed; the node has left the queue */
    FS_PAUSED = 4,      /* wake_by passed; the node is still queued */
    FS_OVER_BOUND = 5,  /* release: the count would pass the bound; nothing changed */
    FS_OVERFLOW = 6,    /* release: the count would not fit in fs_count; nothing changed */
    FS_EINVAL = 7,      /* bad argument (n < 1, negative value, ...) */
    FS_ENOMEM = 8       /* pthread primitive could not be initialised */
};

typedef long long fs_count;

/* A point in time, in nanoseconds of CLOCK_MONOTONIC. */
typedef int64_t fs_time;
#define FS_FOREVER INT64_MAX

/* Waiter states. */
enum { FS_W_WAITING = 0, FS_W_GRANTED = 1, FS_W_DONE = 2 };

/* One blocked acquire. Lives on the waiting thread's stack. */
typedef struct fs_waiter {
    struct fs_waiter *prev, *next; /* queue links, valid while queued */
    fs_count want;                 /* permits requested */
    int state;                     /* FS_W_*; written under the semaphore's mutex */
    unsigned long fork_gen;        /* fork generation the node was queued in */
    pthread_cond_t wakeup;         /* this waiter's own wake-up primitive */
} fs_waiter;

/* The FIFO of waiters: pure list logic, no locking, no idea of time. */
typedef struct fs_queue {
    fs_waiter *head, *tail;
    size_t length;
} fs_queue;

/* The permit word: free permits in the low 63 bits, and FS_WORD_WAITERS,
 * set exactly while the queue is non-empty. Uncontended acquires and releases
 * change it with one compare-and-swap; everything else holds the mutex. */
#define FS_WORD_WAITERS ((uint64_t)1 << 63)

/* Everything that decides who gets permits. */
typedef struct fs_state {
    _Atomic uint64_t word; /* free permits | FS_WORD_WAITERS */
    fs_count max_value;    /* bound on the count for a bounded semaphore, else -1 */
    int fair;              /* 1: FIFO with direct handoff; 0: barging allowed */
    fs_queue queue;        /* guarded by the owner's mutex */
} fs_state;

/* A semaphore for threads of one process. */
typedef struct fs_sem {
    pthread_mutex_t mutex;
    _Atomic unsigned long fork_gen; /* generation the mutex was made in */
    fs_state st;
} fs_sem;

/* Returns FS_OK, FS_EINVAL (value < 0, or max_value >= 0 and value > max_value)
 * or FS_ENOMEM. max_value < 0 means unbounded. */
int fs_sem_init(fs_sem *s, fs_count value, fs_count max_value, int fair);
void fs_sem_destroy(fs_sem *s);

/* Takes n permits if that needs no wait: FS_OK or FS_WOULD_BLOCK (FS_EINVAL
 * for n < 1). In fair mode it never overtakes a queued waiter. */
int fs_sem_try_acquire(fs_sem *s, fs_count n);

/* As try_acquire, but on FS_WOULD_BLOCK queues w (at the tail) in the same
 * critical section and returns FS_QUEUED. */
int fs_sem_acquire_or_enqueue(fs_sem *s, fs_waiter *w, fs_count n);

/* Waits for a queued w to be granted. Returns FS_OK once granted (also when
 * the grant and the deadline meet), FS_TIMEOUT at `deadline` (w has left the
 * queue, and whoever it held back has been reconsidered), FS_PAUSED at
 * `wake_by` (w keeps its place). Either time may be FS_FOREVER. FS_ENOMEM only
 * if, in a fork child, the node could not be queued again (w is finished). */
int fs_sem_wait(fs_sem *s, fs_waiter *w, fs_time deadline, fs_time wake_by);

/* Takes a queued w out of the queue for good. If w was granted meanwhile,
 * its permits are released again (handed on to the next waiters). Returns 1
 * if a grant was passed on, 0 if w was still waiting. */
int fs_sem_cancel(fs_sem *s, fs_waiter *w);

/* Adds n permits and hands them to the oldest waiters. FS_OK, FS_EINVAL
 * (n < 1), FS_OVER_BOUND or FS_OVERFLOW (nothing changed on failure). */
int fs_sem_release(fs_sem *s, fs_count n);

/* Snapshots (a racing thread may change them at once); fs_sem_value takes
 * no lock. */
fs_count fs_sem_value(fs_sem *s);
size_t fs_sem_waiting(fs_sem *s);

/* CLOCK_MONOTONIC now, and now + seconds clamped to FS_FOREVER. */
fs_time fs_now(void);
fs_time fs_deadline_after(double seconds);

/* Incremented in every fork child (pthread_atfork); exposed for tests. */
unsigned long fs_fork_generation(void);

#ifdef __cplusplus
}
#endif
#endif /* FASTSEM_CORE_H */
