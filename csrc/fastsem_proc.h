/*
 * fastsem_proc.h - a FIFO-fair counting semaphore shared by processes, which
 * gives back the permits of a process that dies (C11, Linux; no Python).
 *
 * See fastsem_proc.c for the design. In short: the whole semaphore lives in
 * one shared memory segment (a memfd, or a POSIX shm name): a robust
 * process-shared mutex, an undo journal that makes every step atomic even if
 * its process dies inside it, the count, a table of the processes that use
 * it (what each holds), and a table of waiter slots linked into a FIFO by
 * index. Each waiting thread sleeps on its slot's futex word.
 *
 * Calling convention for a blocking acquire:
 *
 *     fsp_ticket t;
 *     int rc = fsp_acquire_or_enqueue(&sem, &t, n);  // FS_OK, FS_QUEUED, error
 *     while (rc == FS_QUEUED) {
 *         rc = fsp_wait(&sem, &t, deadline, wake_by);
 *         if (rc == FS_PAUSED) {                     // t keeps its place
 *             if (must_give_up) {
 *                 fsp_cancel(&sem, &t);              // never loses a permit
 *                 break;
 *             }
 *             rc = FS_QUEUED;
 *         }
 *     }
 *
 * The status codes, fs_count, fs_time and the statistics' histogram are
 * those of fastsem_core.h; the codes below are the process semaphore's own.
 * On platforms other than Linux every constructor returns FSP_UNSUPPORTED.
 */
#ifndef FASTSEM_PROC_H
#define FASTSEM_PROC_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "fastsem_core.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    FSP_UNSUPPORTED = 20, /* no process-shared semaphores on this platform */
    FSP_SYSTEM = 21,      /* a system call failed: errno says why */
    FSP_BAD_LAYOUT = 22,  /* the memory holds no semaphore of this version */
    FSP_OTHER_PIDNS = 23, /* made in another PID namespace: pids would lie */
    FSP_NO_ROOM = 24,     /* every process record or waiter slot is in use */
    FSP_BAD_LIMIT = 25,   /* create: max_processes or max_waiters out of range */
    FSP_NOT_OWNER = 26,   /* release_unit: this process does not hold that unit */
    FSP_NO_UNITS = 27,    /* a unit call on a plain semaphore, or the reverse */
    FSP_BAD_UNIT = 28     /* release_unit: no such unit */
};

#define FSP_LIMIT_MAX 65535

/* The largest count a process semaphore holds (its permit word keeps a fast
 * lane beside the count: fastsem_proc.c). */
#define FSP_COUNT_MAX ((fs_count)0x7FFFFFFF)

/* How often waiters look for dead processes (at most; the look is shared by
 * all of them), and so about how long a dead holder's permits stay lost. */
#define FSP_SWEEP_NS 100000000

/* How long a waiter sleeps at most before it looks again on its own: a
 * waker that dies between its decision and its wake-up costs this much. */
#define FSP_POLL_NS 100000000

/* The segment; its layout is private to fastsem_proc.c. */
typedef struct fsp_shared fsp_shared;

/* One process's view of a semaphore: a mapping of the segment. Several
 * threads may use one handle at once. */
typedef struct fsp_sem {
    fsp_shared *shared;
    size_t size;
    int fd;                  /* kept open, so that the handle can be shared */
    /* This process's record in the segment, and the fork generation it was
     * found in (a fork child is another process). Under the segment's mutex. */
    int32_t me;
    unsigned long me_generation;
} fsp_sem;

/* A blocked acquire's place: a waiter slot, and what its futex word said
 * when the waiter last looked. Lives with the waiting thread. */
typedef struct fsp_ticket {
    int32_t slot;
    uint32_t seen;
    fs_time waited;           /* out: queued to granted, once FS_OK */
    int32_t unit;             /* out: the unit granted (a pool of units), else -1 */
} fsp_ticket;

/* Statistics: the thread semaphore's, and what recovery did. */
typedef struct fsp_stats {
    fs_stats base;
    uint64_t recovered;       /* permits given back for dead processes */
    uint64_t dead_processes;  /* processes found dead while holding or queued */
} fsp_stats;

/* File descriptors for a segment: an anonymous one (memfd), or a POSIX
 * shared memory name ("/name"), created exclusively or opened. -1 and errno
 * on failure (fsp_shm_create: EEXIST if the name is taken). */
int fsp_memfd(void);
int fsp_shm_create(const char *name);
int fsp_shm_open(const char *name);
int fsp_shm_unlink(const char *name);

/* Makes a new semaphore in the empty file fd (sized here) and maps it into s,
 * which owns fd from then on. max_value < 0: unbounded. FS_OK, FS_BAD_VALUE,
 * FS_OVER_BOUND, FS_OVERFLOW, FSP_BAD_LIMIT, FSP_SYSTEM, FSP_UNSUPPORTED.
 *
 * With units > 0 it is a pool of that many numbered units (0..units-1),
 * bounded at units: each grant of one permit comes with a unit of its own,
 * which only fsp_release_unit gives back (and recovery, for the dead). */
int fsp_create(fsp_sem *s, int fd, fs_count value, fs_count max_value, int fair,
               uint32_t max_processes, uint32_t max_waiters, uint32_t units);

/* Maps the semaphore in fd, made by fsp_create in this or another process;
 * s owns fd from then on (also on failure: it is closed). FS_OK,
 * FSP_BAD_LAYOUT, FSP_OTHER_PIDNS, FSP_SYSTEM, FSP_UNSUPPORTED. */
int fsp_attach(fsp_sem *s, int fd);

/* Unmaps and closes; the semaphore lives on in other handles. */
void fsp_detach(fsp_sem *s);

/* As fs_sem_try_acquire and fs_sem_acquire_or_enqueue; also FSP_NO_ROOM
 * when this process has no record and none is free (after dead processes'
 * records are freed), or no waiter slot is free. try_acquire's ticket may be
 * NULL (it is only filled in with the unit granted). In a pool of units, n
 * must be 1. */
int fsp_try_acquire(fsp_sem *s, fsp_ticket *t, fs_count n);
int fsp_acquire_or_enqueue(fsp_sem *s, fsp_ticket *t, fs_count n);

/* Waits for a queued ticket: FS_OK once granted, FS_TIMEOUT at deadline,
 * FS_CLOSED if closed meanwhile (the ticket has left the queue in all
 * three), FS_PAUSED at wake_by or when a signal handler interrupted the
 * sleep (the ticket keeps its place). While it waits it looks for dead
 * processes every FSP_SWEEP_NS. */
int fsp_wait(fsp_sem *s, fsp_ticket *t, fs_time deadline, fs_time wake_by);

/* Takes a queued ticket out for good; permits granted meanwhile are
 * released again. Returns 1 if a grant was passed on, else 0. */
int fsp_cancel(fsp_sem *s, fsp_ticket *t);

/* Adds n permits and hands them to the oldest waiters; the release is
 * charged to what this process holds, as far as it holds any. FS_OK,
 * FS_BAD_COUNT, FS_OVER_BOUND, FS_OVERFLOW. */
int fsp_release(fsp_sem *s, fs_count n);

/* A pool of units: gives back a unit this process holds. FS_OK,
 * FSP_NOT_OWNER, FSP_BAD_UNIT, FSP_NO_UNITS. */
int fsp_release_unit(fsp_sem *s, int32_t unit);

/* A pool of units: how many, and the pid that holds unit i (0: free). */
uint32_t fsp_units(fsp_sem *s);
int32_t fsp_unit_holder(fsp_sem *s, int32_t unit);

/* Snapshots. */
fs_count fsp_value(fsp_sem *s);
fs_count fsp_max_value(fsp_sem *s); /* -1 if unbounded */
size_t fsp_waiting(fsp_sem *s);
int fsp_fair(fsp_sem *s);
int fsp_closed(fsp_sem *s);
uint32_t fsp_max_processes(fsp_sem *s);
uint32_t fsp_max_waiters(fsp_sem *s);

/* Turns away every queued waiter and every later acquire, in every process. */
void fsp_close(fsp_sem *s);

/* Copies the statistics, or resets them. */
void fsp_statistics(fsp_sem *s, fsp_stats *out);
void fsp_reset_statistics(fsp_sem *s);

/* Fills pids[] and permits[] (room for `room` entries) with the processes
 * that hold permits now; returns how many there are (maybe more than room). */
size_t fsp_holders(fsp_sem *s, int32_t *pids, fs_count *permits, size_t room);

/* Looks for dead processes now (rather than at the next sweep) and gives
 * back what they held. Returns how many were found. */
size_t fsp_recover(fsp_sem *s);

#ifdef FSP_TEST_HOOKS
/* Test builds only (csrc/tests): the process exits at the n-th journal
 * write or field store from now; and the segment's invariants, 0 if they
 * hold, else the number of the one that does not. */
extern int fsp_test_die_at;
int fsp_test_check(fsp_sem *s);
#endif

#ifdef __cplusplus
}
#endif
#endif /* FASTSEM_PROC_H */
