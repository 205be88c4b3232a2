/*
 * fastsem_core.h - a FIFO-fair counting semaphore on pthreads (C11, no Python).
 *
 * See fastsem_core.c for the design. In short: one mutex guards the count and
 * an intrusive FIFO queue of waiter nodes; each node lives on its waiting
 * thread's stack with its own wake-up event (a futex on Linux); a release
 * hands permits straight to the oldest waiters.
 *
 * Calling convention for a blocking acquire (the caller owns the node):
 *
 *     fs_waiter w;
 *     int rc = fs_sem_acquire_or_enqueue(&sem, &w, n); // FS_OK, FS_QUEUED, or an error
 *     while (rc == FS_QUEUED) {
 *         rc = fs_sem_wait(&sem, &w, deadline, wake_by);
 *         if (rc == FS_PAUSED) {                     // w keeps its place
 *             if (must_give_up) {
 *                 fs_sem_cancel(&sem, &w);           // never loses a permit
 *                 break;
 *             }
 *             rc = FS_QUEUED;                        // wait again (competes first)
 *         } else if (fs_waiter_relay_owed(&w)) {
 *             fs_sem_relay(&sem);                    // wake the next of w's batch
 *         }
 *     }
 *
 * FS_PAUSED lets a caller step out of the wait (to run signal handlers, say)
 * without leaving the queue; the node must then stay alive until the caller
 * waits again, or cancels. The two hand-backs, FS_PAUSED for a non-fair
 * waiter woken to compete and relay_owed, let a caller that holds a big lock
 * choose when the next thread runs: "Callers that hold a big lock" in
 * fastsem_core.c.
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

/* Status codes. Each failure has its own, so that a caller can map them to
 * its errors one to one; on failure nothing has changed. */
enum {
    FS_OK = 0,          /* the permits are the caller's */
    FS_WOULD_BLOCK = 1, /* try_acquire: not available without waiting */
    FS_QUEUED = 2,      /* acquire_or_enqueue: the node is now in the queue */
    FS_TIMEOUT = 3,     /* the deadline passed; the node has left the queue */
    FS_PAUSED = 4,      /* wake_by passed, or (non-fair) woken to compete; the
                           node is still queued */
    FS_OVER_BOUND = 5,  /* release, init: the count would pass the bound */
    FS_OVERFLOW = 6,    /* a count or request past FS_COUNT_MAX */
    FS_BAD_COUNT = 7,   /* acquire, release: n < 1 */
    FS_ENOMEM = 8,      /* a pthread primitive could not be initialised */
    FS_CLOSED = 9,      /* the semaphore is closed: no acquire can succeed */
    FS_OVER_MAX = 10,   /* acquire: n is more than a bounded semaphore's bound,
                           now or (from fs_sem_wait) after a resize lowered it */
    FS_BAD_VALUE = 11,  /* init: a negative initial value */
    FS_BAD_BOUND = 12,  /* resize: a negative bound */
    FS_UNBOUNDED = 13,  /* resize: the semaphore has no bound to move */
    FS_IN_FLIGHT = 14,  /* poll: a notification of the waiter is being sent;
                           wait for fs_waiter_notifying() to clear, without
                           holding a lock the notifier may need, then poll
                           again */
    FS_ABANDONED = 15   /* poll: the notification could not be delivered, so
                           the waiter was given up and its permits passed on */
};

typedef long long fs_count;

/* The largest count a semaphore can hold (the permit word keeps two flags). */
#define FS_COUNT_MAX ((fs_count)(((uint64_t)1 << 62) - 1))

/* A point in time, in nanoseconds of CLOCK_MONOTONIC. */
typedef int64_t fs_time;
#define FS_FOREVER INT64_MAX

/* Waiter states. */
enum {
    FS_W_WAITING = 0,
    FS_W_GRANTED = 1,  /* the permits were handed to it */
    FS_W_CLOSED = 2,   /* turned away by fs_sem_close */
    FS_W_REJECTED = 3, /* turned away: its request exceeds a lowered bound */
    FS_W_DONE = 4,     /* finished with; the node may go */
    FS_W_ABANDONED = 5 /* a notified waiter whose notification could not be
                          delivered: out of the queue, its permits passed on */
};

/* A one-thread wake-up: the waiter sleeps until the event is set. On Linux a
 * futex, so that a woken waiter whose outcome is decided returns without
 * touching the semaphore's mutex, and a signal interrupts the wait; elsewhere
 * (or built with FS_PORTABLE_EVENT) a mutex and condition variable of the
 * node's own. */
#if defined(__linux__) && !defined(FS_PORTABLE_EVENT)
#define FS_EVENT_FUTEX 1
#else
#define FS_EVENT_FUTEX 0
#endif
typedef struct fs_event {
    _Atomic uint32_t kind; /* 0 until set; then FS_WAKE_LOOK or FS_WAKE_FINAL */
#if !FS_EVENT_FUTEX
    pthread_mutex_t lock;
    pthread_cond_t cond;
#endif
} fs_event;

struct fs_waiter;

/* A notified waiter's wake-up (fs_sem_acquire_or_enqueue_notified): called
 * after the semaphore's mutex is released, never under it, by whichever
 * thread decided the wake-up. Returns 0 if the news will reach the waiter,
 * nonzero if it never can (its event loop is gone): the core then gives the
 * waiter up and passes its permits on. */
typedef int (*fs_notify_fn)(struct fs_waiter *w);

/* One blocked acquire. A thread's lives on its stack; a notified waiter's
 * wherever its owner keeps it, until its wait is finished. */
typedef struct fs_waiter {
    struct fs_waiter *prev, *next; /* queue links, valid while queued */
    fs_count want;                 /* permits requested */
    int state;                     /* FS_W_*; written under the semaphore's mutex */
    unsigned long fork_gen;        /* fork generation the node was queued in */
    int64_t queued_at;             /* fs_now() when it joined the queue */
    fs_event wakeup;               /* this waiter's own wake-up primitive */
    uint32_t wake_kind;            /* what the pending signal will say */
    fs_time waited;                /* queued_at to grant, once granted */
    /* A signal decided under the mutex, sent after it: while set, the node
     * must not go (the waker still touches it) nor sleep (the change it
     * announces may have come after the waiter's last look). */
    _Atomic int signal_pending;
    struct fs_waiter *wake_next;   /* in the owner's wake list, while pending */
    int relayed;                   /* in the owner's relay (links: prev, next) */
    int woken;                     /* non-fair: woken to compete, has not yet
                                      looked (no second wake meanwhile) */
    int starving;                  /* non-fair: lost a competition after
                                      FS_STARVE_NS in the queue */
    int spun;                      /* out: its wake-up came while it spun */
    int relay_owed;                /* out: the caller must call fs_sem_relay */
    fs_notify_fn notify;           /* NULL for a thread that sleeps on wakeup */
    void *notify_arg;              /* the owner's, for notify */
} fs_waiter;

/* The FIFO of waiters: pure list logic, no locking, no idea of time. */
typedef struct fs_queue {
    fs_waiter *head, *tail;
    size_t length;
} fs_queue;

/* The permit word: free permits in the low 62 bits and two flags. SLOW is
 * set exactly while the queue is non-empty or a lowered bound is still owed
 * permits: every change of the word then takes the mutex. CLOSED is set by
 * fs_sem_close and never cleared: no acquire succeeds. Uncontended acquires
 * and releases change the word with one compare-and-swap. */
#define FS_WORD_SLOW ((uint64_t)1 << 63)
#define FS_WORD_CLOSED ((uint64_t)1 << 62)

/* Wait times of contended acquisitions, on a fixed log scale: bucket 0 holds
 * waits under 2^10 ns (about 1 us); then each doubling, 2^k .. 2^(k+1) ns for
 * k >= 10, is split into FS_HIST_SUBBUCKETS equal parts, for FS_HIST_OCTAVES
 * doublings (to 2^45 ns, about 9.8 hours; longer waits land in the last
 * bucket). src/fastsem/_common.py has the same arithmetic. */
#define FS_HIST_SUBBUCKETS 4
#define FS_HIST_OCTAVES 35
#define FS_HIST_FIRST_OCTAVE 10
#define FS_HIST_BUCKETS (1 + FS_HIST_SUBBUCKETS * FS_HIST_OCTAVES)

typedef struct fs_stats {
    uint64_t acquisitions;  /* successful acquires, waiting or not */
    uint64_t contended;     /* of those, the ones that had to queue */
    uint64_t timeouts;      /* acquires that gave up at their deadline */
    uint64_t interrupts;    /* waits abandoned by the caller (fs_sem_cancel) */
    uint64_t max_waiting;   /* the longest the queue has been */
    uint64_t wait_total_ns; /* summed over contended acquisitions */
    uint64_t wait_max_ns;
    uint64_t histogram[FS_HIST_BUCKETS];
} fs_stats;

/* Everything that decides who gets permits. */
typedef struct fs_state {
    _Atomic uint64_t word;       /* free permits | FS_WORD_SLOW | FS_WORD_CLOSED */
    _Atomic fs_count max_value;  /* the bound of a bounded semaphore, else -1 */
    int fair;                    /* 1: FIFO with direct handoff; 0: barging allowed */
    _Atomic int handoff;         /* non-fair: the head is starving, so permits
                                    go to it and nobody barges */
    fs_time spin_ns;             /* fs_sem_set_spin: the head's budget */
    fs_time yield_spin_ns;       /* fs_sem_set_spin: the next ones' budget */
    fs_time starve_ns;           /* fs_sem_set_starve */
    /* The rest is guarded by the owner's mutex. */
    fs_count debt;               /* permits a lowered bound still takes from releases */
    fs_queue queue;
    fs_waiter *wake_list;        /* to signal once the mutex is released */
    fs_queue relay;              /* out of the queue, outcome decided, not yet
                                    woken: each is woken by the one before */
    _Atomic uint64_t uncontended; /* acquisitions that did not wait */
    fs_stats *stats;             /* everything else: made at the first wait */
} fs_state;

/* A semaphore for threads of one process. */
typedef struct fs_sem {
    pthread_mutex_t mutex;
    _Atomic unsigned long fork_gen; /* generation the mutex was made in */
    fs_state st;
} fs_sem;

/* Returns FS_OK, FS_BAD_VALUE (value < 0), FS_OVER_BOUND (max_value >= 0 and
 * value > max_value), FS_OVERFLOW (value or max_value > FS_COUNT_MAX) or
 * FS_ENOMEM. max_value < 0 means unbounded. */
int fs_sem_init(fs_sem *s, fs_count value, fs_count max_value, int fair);
void fs_sem_destroy(fs_sem *s);

/* Takes n permits if that needs no wait: FS_OK or FS_WOULD_BLOCK; FS_BAD_COUNT
 * for n < 1, FS_OVER_MAX past the bound, FS_OVERFLOW past FS_COUNT_MAX,
 * FS_CLOSED. In fair mode it never overtakes a queued waiter. */
int fs_sem_try_acquire(fs_sem *s, fs_count n);

/* As try_acquire, but on FS_WOULD_BLOCK queues w (at the tail) in the same
 * critical section and returns FS_QUEUED. */
int fs_sem_acquire_or_enqueue(fs_sem *s, fs_waiter *w, fs_count n);

/* Waits for a queued w to be granted. Returns FS_OK once granted (also when
 * the grant and the deadline meet), FS_TIMEOUT at `deadline` (w has left the
 * queue, and whoever it held back has been reconsidered), FS_CLOSED if the
 * semaphore was closed, FS_OVER_MAX if a lowered bound turned the request
 * away (in both cases w has left the queue), or FS_PAUSED with w still in
 * its place: at `wake_by`; with a finite wake_by also earlier, when a signal
 * handler interrupted the wait (Linux); and in non-fair mode when a release
 * woke w to compete for free permits. Either time may be FS_FOREVER. Called
 * again after FS_PAUSED, it first competes (non-fair) and looks at the
 * outcome; with wake_by 0 it then returns FS_PAUSED rather than sleep.
 * FS_ENOMEM only if, in a fork child, the node could not be queued again (w
 * is finished).
 *
 * Waiters whose outcome is decided together (release(n), close, resize) are
 * woken one after the other, each by the one before: when fs_sem_wait returns
 * anything but FS_PAUSED with w->relay_owed set (fs_waiter_relay_owed), the
 * caller must call fs_sem_relay(s), at the moment it is ready for the next
 * thread to run, or the rest of the batch sleeps on. */
int fs_sem_wait(fs_sem *s, fs_waiter *w, fs_time deadline, fs_time wake_by);
void fs_sem_relay(fs_sem *s);

/* Takes a queued w out of the queue for good. If w was granted meanwhile,
 * its permits are released again (handed on to the next waiters); a relay
 * it held is passed on at once. Returns 1 if a grant was passed on, 0 if w
 * was still waiting. */
int fs_sem_cancel(fs_sem *s, fs_waiter *w);

/* Notified waiters: an acquire that does not block its thread (an asyncio
 * task). It queues with the threads, in the same FIFO, and is granted in
 * turn; instead of sleeping, its owner is told of each wake-up by notify, and
 * then looks with fs_sem_poll:
 *
 *     arm the owner's wake-up;                      // before: notify may come at once
 *     rc = fs_sem_acquire_or_enqueue_notified(&sem, w, n, notify, arg);
 *     while (rc == FS_QUEUED) {
 *         sleep until notify (or the owner's timer) wakes the owner;
 *         do {
 *             arm the owner's wake-up again;
 *             rc = fs_sem_poll(&sem, w, deadline);
 *             if (rc == FS_IN_FLIGHT)
 *                 wait until !fs_waiter_notifying(w);
 *         } while (rc == FS_IN_FLIGHT);
 *     }
 *     (given up early: fs_sem_cancel(&sem, w), as for a thread)
 *
 * The node must live until its wait is finished: fs_sem_poll returned
 * anything but FS_QUEUED and FS_IN_FLIGHT, or fs_sem_cancel returned. A
 * notified waiter takes no part in the relay and never returns FS_PAUSED:
 * its wake-ups cost its notifier a call, not a context switch. fs_sem_poll
 * never sleeps and never waits for a notifier, so an owner may call it while
 * holding a lock its notify takes; fs_sem_cancel may wait for a notifier
 * (briefly), so call it without such a lock. */
int fs_sem_acquire_or_enqueue_notified(fs_sem *s, fs_waiter *w, fs_count n,
                                       fs_notify_fn notify, void *arg);

/* Looks at a queued notified waiter: FS_QUEUED while it waits (its next
 * wake-up is notified: arm for it before polling), FS_IN_FLIGHT (a
 * notification is being sent: see above), or how its wait ends,
 * the node then being finished: FS_OK (granted; or, non-fair, it competed and
 * took its permits), FS_TIMEOUT (`deadline` has passed; it left the queue),
 * FS_CLOSED, FS_OVER_MAX, FS_ABANDONED. */
int fs_sem_poll(fs_sem *s, fs_waiter *w, fs_time deadline);

/* Whether a notification of w is being sent. */
static inline int fs_waiter_notifying(fs_waiter *w)
{
    return atomic_load_explicit(&w->signal_pending, memory_order_acquire);
}

/* What the last fs_sem_wait left in w. */
static inline int fs_waiter_relay_owed(const fs_waiter *w)
{
    return w->relay_owed;
}
static inline int fs_waiter_spun(const fs_waiter *w)
{
    return w->spun;
}

/* Before it sleeps, a waiter at the head of the queue spins up to head_ns
 * nanoseconds looking at its event, and in fair mode the FS_YIELD_SPINNERS
 * waiters behind it look for up to next_ns, yielding the CPU between looks: a
 * handoff that comes meanwhile costs no wake-up of an idle CPU, which often
 * takes longer than the next release does to come. fs_sem_wait then returns
 * with w->spun set (fs_waiter_spun). The defaults are
 * FS_SPIN_NS and FS_YIELD_SPIN_NS, or 0 and 0 on a single CPU (where the
 * releaser cannot run while the waiter spins). 0 turns either off. */
#define FS_SPIN_NS 20000
#define FS_YIELD_SPIN_NS 50000
#define FS_YIELD_SPINNERS 2
void fs_sem_set_spin(fs_sem *s, fs_time head_ns, fs_time next_ns);

/* Non-fair mode: a head that loses a competition after ns in the queue
 * (default FS_STARVE_NS) gets the next permits handed over, and nobody
 * barges past it meanwhile (fastsem_core.c, "Non-fair"). */
#define FS_STARVE_NS 1000000
void fs_sem_set_starve(fs_sem *s, fs_time ns);

/* Adds n permits and hands them to the oldest waiters. FS_OK, FS_BAD_COUNT
 * (n < 1), FS_OVER_BOUND or FS_OVERFLOW (nothing changed on failure). */
int fs_sem_release(fs_sem *s, fs_count n);

/* Snapshots (a racing thread may change them at once); fs_sem_value takes
 * no lock. */
fs_count fs_sem_value(fs_sem *s);
size_t fs_sem_waiting(fs_sem *s);
fs_count fs_sem_max_value(fs_sem *s); /* -1 if unbounded */
int fs_sem_closed(fs_sem *s);

/* 1 in fair mode, 0 in non-fair mode (fixed by fs_sem_init). */
static inline int fs_sem_fair(const fs_sem *s)
{
    return s->st.fair;
}

/* Turns away every queued waiter and every later acquire (FS_CLOSED);
 * releases still work. Idempotent. */
void fs_sem_close(fs_sem *s);

/* Takes all free permits that are not owed to a queued waiter (in fair mode:
 * none while anyone is queued) and returns how many. */
fs_count fs_sem_drain(fs_sem *s);

/* Bounded semaphores: a new bound. Raising it adds permits and serves the
 * queue; lowering it takes free permits now and the rest from later releases;
 * queued requests larger than the new bound are turned away (FS_OVER_MAX from
 * fs_sem_wait). FS_OK, FS_BAD_BOUND (new_max < 0), FS_UNBOUNDED or
 * FS_OVERFLOW (new_max > FS_COUNT_MAX). */
int fs_sem_resize(fs_sem *s, fs_count new_max);

/* The histogram bucket a wait of that many nanoseconds is counted in. */
int fs_histogram_bucket(fs_time waited_ns);

/* Copies the statistics (counters zero where nothing was recorded), or
 * resets them. */
void fs_sem_statistics(fs_sem *s, fs_stats *out);
void fs_sem_reset_statistics(fs_sem *s);

/* A hint to the CPU inside a spin loop. */
static inline void fs_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* CLOCK_MONOTONIC now, and now + seconds clamped to FS_FOREVER. */
fs_time fs_now(void);
fs_time fs_deadline_after(double seconds);

/* Incremented in every fork child (pthread_atfork); exposed for tests. */
unsigned long fs_fork_generation(void);

#ifdef __cplusplus
}
#endif
#endif /* FASTSEM_CORE_H */
