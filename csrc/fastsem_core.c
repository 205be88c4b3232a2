/*
 * fastsem_core.c - a FIFO-fair counting semaphore on pthreads.
 *
 * Design
 * ------
 * A semaphore is a permit word and a FIFO queue of waiters behind a mutex.
 * The permit word holds the count of free permits and two flags:
 *
 *     bit 63   bit 62       bits 61..0
 *   +------+--------+------------------------+
 *   | SLOW | CLOSED |  free permits (count)  |
 *   +------+--------+------------------------+
 *
 * SLOW is set exactly while the queue is non-empty or a lowered bound is
 * still owed permits; CLOSED once the semaphore is closed. The uncontended
 * paths touch the word alone, with one compare-and-swap: an acquire takes
 * permits while the count suffices, CLOSED is clear and (fair mode) SLOW is
 * clear; a release adds permits while SLOW is clear (nobody to hand them to).
 * Everything else holds the mutex, and since a fast path never runs while
 * SLOW is set (except a non-fair acquire, which only takes), the slow paths
 * see a word that only they change. Every piece of shared state is behind
 * the mutex or in atomics, so the code is correct on free-threaded Python as
 * well as with a GIL.
 *
 *         +------+      +------+      +------+
 *   head  | want |<---->| want |<---->| want |  tail
 *         |  2   |      |  1   |      |  1   |
 *         +------+      +------+      +------+
 *        thread A's    thread B's    thread C's
 *          stack         stack         stack
 *
 * Each waiter node lives on the stack of the thread that waits, and carries
 * its own wake-up event, so a release wakes exactly the thread it serves
 * (one wake per handoff, no thundering herd on a shared condition). The event
 * says what the wake-up means: LOOK (something changed: take the mutex and
 * look) or FINAL (the outcome is decided and the node is out of every list:
 * return without the mutex). A handed-off waiter thus never queues on the
 * mutex its waker, now waiting on its own next acquire, may hold; with a
 * condition variable it had to re-take that mutex before it could return.
 * On Linux the event is a futex word, and a waiter marks it SLEEPING before
 * it sleeps, so a waker whose waiter is still spinning (see below) makes no
 * system call at all.
 *
 * Wake-ups are decided under the mutex but sent after it is released:
 * signalled under the mutex, the woken thread would run only to block on the
 * mutex its waker still holds, a second context switch per handoff
 * (docs/design.rst, "Wake-ups after the unlock"). The node is on the
 * waiter's stack, so the waker marks it signal_pending under the mutex and
 * clears the mark, with a release store, as its last touch of the node; the
 * waiter neither leaves nor goes back to sleep while the mark is set.
 *
 * Spinning. A waiter that is at the head of the queue when it would sleep
 * first spins on its event for up to FS_SPIN_NS (none on a single CPU), as
 * the first queued thread does in Java's AQS: between two threads the next
 * release usually comes sooner than a futex wake-up of an idle CPU, so the
 * handoff costs no system call on either side. In fair mode the
 * FS_YIELD_SPINNERS waiters behind it also look, for up to FS_YIELD_SPIN_NS,
 * but yield the CPU between looks, so that the holder and the head, which
 * need a CPU to pass the permit on, get it first: a spin that does not yield
 * keeps the CPU from the threads it waits for, and a budget much shorter than
 * a handoff makes most spinners sleep anyway and pay for both. Waiters
 * further back sleep at once, so many waiters cost no more CPU than a few.
 * (docs/design.rst, "Spinning before sleeping".)
 *
 * Waking many at once (release(n), close, resize) goes as a relay: the nodes
 * whose outcome is decided leave the queue for the relay list in order, the
 * waker wakes the first, and every waiter that finishes wakes the next. Woken
 * all at once, the threads would fight for the mutex (and for whatever lock
 * their caller needs next) and starve the waker; relayed, the waker's work is
 * a list append per waiter and the threads run one after the other, in grant
 * order (docs/design.rst, "The relay").
 *
 * Fair mode (the default) keeps one invariant after every operation:
 *
 *     the queue is empty, or count < head->want
 *
 * - acquire takes permits at once only if nobody is queued (no barging), else
 *   it joins the tail;
 * - release adds permits and, while the head's request fits, moves them into
 *   the head node (direct handoff: the permits never become free, so a thread
 *   that arrives meanwhile cannot take them), unlinks it and signals it;
 * - a head that wants n blocks everyone behind it until n are free
 *   (head-of-line), so large requests never starve.
 *
 * Non-fair mode (Java's NonfairSync): acquire takes free permits whenever
 * there are enough, queued waiters or not. release does not hand off; it
 * leaves the permits free and wakes the head waiter if its request fits.
 * A woken waiter takes permits if they are still there (and wakes the next
 * if more are left), else waits again in the same place. That trades order
 * for throughput: the releasing thread can often re-acquire without a
 * context switch. Starvation is bounded, as in Go's sync.Mutex: a head that
 * loses a competition after FS_STARVE_NS (1 ms) in the queue is starving;
 * permits are then handed to it as in fair mode, and nobody barges past it
 * (the handoff flag, read by the lock-free path) until it is served. A
 * barger that read the flag just before it was set may still take permits
 * lock-free, so the handoff takes them with a compare-and-swap. Below the
 * threshold barging keeps non-fair mode's throughput; past it, order wins,
 * which caps the worst wait of a saturated semaphore (docs/design.rst,
 * "Non-fair starvation").
 *
 * Callers that hold a big lock. The core serves callers whose threads must
 * hold one lock to do anything with what they acquired: the Python binding,
 * whose threads run Python only while they hold the interpreter's GIL. Two
 * things a woken waiter would otherwise do at once, in the core, are handed
 * back to the caller so that it does them once it holds that lock:
 * - passing the relay on: a waiter that finishes with more of its batch
 *   behind it returns with relay_owed set, and its caller calls
 *   fs_sem_relay. Woken earlier, the next threads would queue on the big
 *   lock, all at once, instead of in the core, in order;
 * - competing, in non-fair mode: a waiter woken to compete returns
 *   FS_PAUSED, and its caller competes with fs_sem_wait(..., wake_by 0),
 *   which takes the permits if they are still free and never sleeps.
 *   Permits taken before the taker holds the big lock sit idle until it
 *   does, while the threads that could use them cannot take them.
 * A caller with no such lock does both at once, right after the wait.
 * fs_sem_cancel passes the relay on itself: its caller is unwinding.
 *
 * Leaving early. A waiter whose deadline passes takes itself out of the queue,
 * unless it was granted first, in which case it keeps the grant and reports
 * success. A waiter cancelled by its caller (an exception in the binding)
 * unlinks itself, or if already granted gives the permits back through the
 * normal release path, so a permit is never lost or duplicated. Either way the
 * queue is dispatched again: a small request behind a departed large one may
 * now be grantable.
 *
 * Notified waiters. A waiter that must not block its thread (an asyncio
 * task, in the binding) queues in the same FIFO, but instead of sleeping on
 * its event it is told of each wake-up by a callback of its owner's, sent
 * after the unlock like every wake-up, and its owner then looks with
 * fs_sem_poll, which never sleeps and never waits for a notifier (the
 * notifier may need a lock the owner holds: the GIL). Telling it costs a
 * call, not a thread's wake-up, so it takes no part in the relay, and never
 * holds the threads behind it up until its event loop gets round to it. A
 * notification that cannot be delivered (the loop is gone) makes the
 * notifier give the waiter up as a cancel would: its permits pass on.
 *
 * Closing turns every queued waiter away and sets CLOSED, so that later
 * acquires fail on the fast path too; releases go on working. Resizing a
 * bounded semaphore moves its bound: up, the new permits serve the queue;
 * down, free permits go at once and the rest is a debt that later releases
 * pay before any permit becomes free (SLOW stays set until it is paid).
 *
 * Statistics. Everything contended is counted under the mutex; the wait-time
 * histogram is allocated at the first wait, so a semaphore that never waits
 * stays small. Uncontended acquisitions are counted by the fast path with one
 * relaxed atomic add. All counts are exact.
 *
 * Pausing. fs_sem_wait can return FS_PAUSED at a caller-chosen time while the
 * node stays queued; the binding uses it to run Python signal handlers in the
 * main thread (a wait is not reliably interrupted by a signal: a futex wait
 * is, when the signal lands in the waiting thread; a condition variable is
 * not) and then waits again with the same deadline and the same place in
 * the queue.
 *
 * fork(). A pthread_atfork child handler bumps a global generation counter.
 * Each semaphore remembers the generation its mutex belongs to; the first call
 * in a new generation re-initialises the mutex (another thread may have held
 * it at fork time) and drops the queued waiters, whose threads do not exist in
 * the child. The check is one atomic load per call. Permits that were granted
 * to parent threads stay held, as with any lock held by a vanished thread.
 */
#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200809L
#undef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE /* syscall(), for the futex */
#endif
#if defined(__APPLE__) && !defined(_DARWIN_C_SOURCE)
#define _DARWIN_C_SOURCE /* pthread_cond_timedwait_relative_np */
#endif

#include "fastsem_core.h"

#include <errno.h>
#include <stddef.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#if FS_EVENT_FUTEX
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#define SLOW FS_WORD_SLOW
#define CLOSED FS_WORD_CLOSED
#define COUNT(word) ((fs_count)((word) & ~(SLOW | CLOSED)))

/* ------------------------------------------------------------------------ */
/* The queue: an intrusive doubly linked list.                              */

static void queue_push(fs_queue *q, fs_waiter *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    q->length++;
}

static void queue_remove(fs_queue *q, fs_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->prev = w->next = NULL;
    q->length--;
}

/* ------------------------------------------------------------------------ */
/* Process-wide setup: the condition-variable clock and the fork hook.      */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_condattr_t g_condattr;
static _Atomic unsigned long g_fork_gen;
static long g_cpus; // online CPUs when the first semaphore was made
static pthread_mutex_t g_fork_fixup = PTHREAD_MUTEX_INITIALIZER;

static void atfork_child(void)
{
    // Another parent thread may have held it when fork() ran.
    pthread_mutex_init(&g_fork_fixup, NULL);
    atomic_fetch_add(&g_fork_gen, 1);
}

static void global_init(void)
{
    pthread_condattr_init(&g_condattr);
#if !defined(__APPLE__)
    // A wall-clock jump must never stretch or cut a timeout.
    pthread_condattr_setclock(&g_condattr, CLOCK_MONOTONIC);
#endif
    pthread_atfork(NULL, NULL, atfork_child);
    g_cpus = sysconf(_SC_NPROCESSORS_ONLN);
}

unsigned long fs_fork_generation(void)
{
    return atomic_load(&g_fork_gen);
}

/* ------------------------------------------------------------------------ */
/* The waiter's event.                                                       */

enum { FS_WAKE_LOOK = 1, FS_WAKE_FINAL = 2 };
/* Futex events only: the waiter is (about to be) asleep in the kernel, so
 * the waker must make the system call. A waker that finds the event at 0
 * (its waiter spins, or has not looked yet) only stores the kind: no system
 * call on the releasing side when the grant is seen by spinning. */
enum { FS_EVENT_SLEEPING = 3 };

#if FS_EVENT_FUTEX
static long futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, FUTEX_BITSET_MATCH_ANY);
}
#endif

static int event_init(fs_event *e)
{
    atomic_init(&e->kind, 0);
#if !FS_EVENT_FUTEX
    if (pthread_mutex_init(&e->lock, NULL) != 0)
        return -1;
    if (pthread_cond_init(&e->cond, &g_condattr) != 0) {
        pthread_mutex_destroy(&e->lock);
        return -1;
    }
#endif
    return 0;
}

static void event_destroy(fs_event *e)
{
#if !FS_EVENT_FUTEX
    pthread_cond_destroy(&e->cond);
    pthread_mutex_destroy(&e->lock);
#else
    (void)e;
#endif
}

/* The waiter, before it sleeps again (it has looked at everything the event
 * could have announced). */
static void event_reset(fs_event *e)
{
    atomic_store_explicit(&e->kind, 0, memory_order_relaxed);
}

/* Release: whatever the waker wrote before is seen by the waiter that reads
 * the kind. */
static void event_set(fs_event *e, uint32_t kind)
{
#if FS_EVENT_FUTEX
    // A read-modify-write sees the waiter's SLEEPING if it came first; if it
    // came after, the waiter's compare-exchange fails and it does not sleep.
    if (atomic_exchange_explicit(&e->kind, kind, memory_order_release) == FS_EVENT_SLEEPING)
        futex(&e->kind, FUTEX_WAKE_PRIVATE, 1, NULL);
#else
    pthread_mutex_lock(&e->lock);
    atomic_store_explicit(&e->kind, kind, memory_order_release);
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
#endif
}

/* Whether w is one of the FS_YIELD_SPINNERS nodes right behind the head. */
static int queue_near_head(const fs_queue *q, const fs_waiter *w)
{
    const fs_waiter *n = q->head->next;
    for (int i = 0; i < FS_YIELD_SPINNERS && n != NULL; i++, n = n->next)
        if (n == w)
            return 1;
    return 0;
}

/* Spins until the event is set or `until` passes: returns the kind, or 0.
 * yield_cpu: gives the CPU to any other runnable thread between looks. */
static int spin_for_event(fs_event *e, fs_time until, int yield_cpu)
{
    uint32_t kind;
    while ((kind = atomic_load_explicit(&e->kind, memory_order_acquire)) == 0) {
        if (fs_now() >= until)
            break;
        if (yield_cpu)
            sched_yield();
        else
            fs_cpu_relax();
    }
    return (int)kind;
}

/* Sleeps until the event is set or `until` (monotonic) passes. Returns the
 * kind it was set to, 0 if not set (time up, or a spurious wake-up), or -1 if
 * a signal handler interrupted the wait. */
static int event_wait(fs_event *e, fs_time until)
{
    uint32_t kind;
#if FS_EVENT_FUTEX
    kind = 0;
    if (!atomic_compare_exchange_strong_explicit(&e->kind, &kind, FS_EVENT_SLEEPING,
                                                 memory_order_acquire, memory_order_acquire))
        return (int)kind; // set before it could say it sleeps
    struct timespec ts = {(time_t)(until / 1000000000), (long)(until % 1000000000)};
    for (;;) {
        // Absolute, on CLOCK_MONOTONIC: a wall-clock jump changes nothing.
        long rc = futex(&e->kind, FUTEX_WAIT_BITSET_PRIVATE, FS_EVENT_SLEEPING,
                        until == FS_FOREVER ? NULL : &ts);
        int err = rc == -1 ? errno : 0;
        kind = atomic_load_explicit(&e->kind, memory_order_acquire);
        if (kind != FS_EVENT_SLEEPING)
            return (int)kind; // woken, or set before the kernel looked (EAGAIN)
        if (err == ETIMEDOUT || err == EINTR) {
            // Awake again: back to 0, unless the kind comes in this instant.
            if (atomic_compare_exchange_strong_explicit(&e->kind, &kind, 0,
                                                        memory_order_acquire,
                                                        memory_order_acquire))
                return err == EINTR ? -1 : 0;
            return err == EINTR ? 0 : (int)kind;
        } // else a spurious wake-up: sleep again
    }
#else
    pthread_mutex_lock(&e->lock);
    while ((kind = atomic_load_explicit(&e->kind, memory_order_acquire)) == 0) {
        int rc;
        if (until == FS_FOREVER) {
            rc = pthread_cond_wait(&e->cond, &e->lock);
        } else {
#if defined(__APPLE__)
            fs_time rel = until - fs_now();
            if (rel <= 0)
                break;
            struct timespec ts = {(time_t)(rel / 1000000000), (long)(rel % 1000000000)};
            rc = pthread_cond_timedwait_relative_np(&e->cond, &e->lock, &ts);
#else
            struct timespec ts = {(time_t)(until / 1000000000), (long)(until % 1000000000)};
            rc = pthread_cond_timedwait(&e->cond, &e->lock, &ts);
#endif
        }
        if (rc == ETIMEDOUT)
            break;
    }
    kind = atomic_load_explicit(&e->kind, memory_order_acquire);
    pthread_mutex_unlock(&e->lock);
#endif
    return (int)kind;
}

/* First use of s in a new fork child: the mutex and the queue are the
 * parent's, so make them fresh. Slow path, serialised by g_fork_fixup. */
static void sem_after_fork(fs_sem *s)
{
    pthread_mutex_lock(&g_fork_fixup);
    unsigned long gen = atomic_load(&g_fork_gen);
    if (atomic_load_explicit(&s->fork_gen, memory_order_relaxed) != gen) {
        pthread_mutex_init(&s->mutex, NULL);
        s->st.queue.head = s->st.queue.tail = NULL;
        s->st.queue.length = 0;
        s->st.wake_list = NULL; // the parent's nodes
        s->st.relay.head = s->st.relay.tail = NULL;
        s->st.relay.length = 0;
        atomic_store_explicit(&s->st.handoff, 0, memory_order_relaxed);
        if (s->st.debt == 0)
            atomic_fetch_and(&s->st.word, ~SLOW); // the queue was all it stood for
        atomic_store_explicit(&s->fork_gen, gen, memory_order_release);
    }
    pthread_mutex_unlock(&g_fork_fixup);
}

static inline void sem_lock(fs_sem *s)
{
    if (atomic_load_explicit(&s->fork_gen, memory_order_acquire) !=
        atomic_load_explicit(&g_fork_gen, memory_order_relaxed))
        sem_after_fork(s);
    pthread_mutex_lock(&s->mutex);
}

/* True in a fork child until the semaphore's first locked use there: its
 * SLOW bit may stand for the parent's queue. */
static inline int sem_is_from_before_fork(fs_sem *s)
{
    return atomic_load_explicit(&s->fork_gen, memory_order_relaxed) !=
           atomic_load_explicit(&g_fork_gen, memory_order_relaxed);
}

#ifdef FS_TEST_HOOKS
/* Test builds only (csrc/tests): widens the windows before and after a
 * deferred signal, while its pending mark is set, where lost wake-ups would
 * hide. */
_Atomic long fs_test_signal_delay_us;
static void test_hook_delay(void)
{
    long us = atomic_load(&fs_test_signal_delay_us);
    if (us > 0) {
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}
#endif

static void waiter_abandon(fs_sem *s, fs_waiter *w);

/* Sets w's event to the kind decided under the mutex (or notifies a notified
 * waiter), then clears its mark: from then on the waiter may leave, and its
 * node be gone. */
static inline void signal_node(fs_sem *s, fs_waiter *w)
{
    if (w->notify != NULL) {
        if (w->notify(w) != 0)
            waiter_abandon(s, w); // its mark still keeps its owner from finishing it
        atomic_store_explicit(&w->signal_pending, 0, memory_order_release);
        return;
    }
#ifdef FS_TEST_HOOKS
    test_hook_delay();
#endif
    /* The mark is cleared only after the wake-up system call returns. Woken
     * on its waker's CPU, a waiter then yields until the waker has gone on
     * (usually to its own next wait, letting go of its caller's big lock)
     * instead of running into the lock the waker still holds and sleeping
     * again on it (docs/design.rst, "Clearing the pending mark"). */
    event_set(&w->wakeup, w->wake_kind);
#ifdef FS_TEST_HOOKS
    test_hook_delay();
#endif
    atomic_store_explicit(&w->signal_pending, 0, memory_order_release);
}

/* Whether a wake list holds a notified waiter, whose notify must run after
 * the unlock: it may take a lock (its caller's big lock) that a thread
 * waiting for this mutex holds. */
static int wake_list_notifies(const fs_waiter *w)
{
    for (; w != NULL; w = w->wake_next)
        if (w->notify != NULL)
            return 1;
    return 0;
}

/* Releases the mutex, then sends the wake-ups decided under it. */
static inline void sem_unlock(fs_sem *s)
{
    fs_waiter *w = s->st.wake_list;
    s->st.wake_list = NULL;
    if (w != NULL && w->wake_next != NULL && !wake_list_notifies(w)) {
        /* Several to wake (a relay's next and a competitor, in one call): signal
         * them under the mutex, so that those that need it sleep on it until
         * the list is done, instead of spinning on their marks while this
         * thread works through it. */
        while (w != NULL) {
            fs_waiter *next = w->wake_next;
            signal_node(s, w);
            w = next;
        }
        pthread_mutex_unlock(&s->mutex);
        return;
    }
    pthread_mutex_unlock(&s->mutex);
    while (w != NULL) {
        fs_waiter *next = w->wake_next; // read while the node surely lives
        signal_node(s, w);
        w = next; // w itself may be gone now
    }
}

/* Has w's event set to `kind` once the mutex is released (the caller holds
 * it). A node already marked gets no second signal: the first still comes,
 * and then the node takes the mutex and looks at its state (a LOOK pending
 * when its outcome is decided is not upgraded: the node finds out under the
 * mutex). */
static void wake_later(fs_state *st, fs_waiter *w, uint32_t kind)
{
    // Acquire: pairs with the last waker's release store, after which it no
    // longer reads wake_next or wake_kind.
    if (atomic_load_explicit(&w->signal_pending, memory_order_acquire))
        return;
    atomic_store_explicit(&w->signal_pending, 1, memory_order_relaxed);
    w->wake_kind = kind;
    w->wake_next = st->wake_list;
    st->wake_list = w;
}

/* Puts w, which has left the queue with its outcome decided, in the relay;
 * the caller then wakes the relay's head (relay_wake_next). A notified
 * waiter is told at once instead: telling it costs its notifier a call, not
 * a thread's wake-up, and it must not hold the threads behind it up until
 * its task runs. */
static void relay_push(fs_state *st, fs_waiter *w)
{
    if (w->notify != NULL) {
        wake_later(st, w, FS_WAKE_FINAL);
        return;
    }
    queue_push(&st->relay, w);
    w->relayed = 1;
}

/* Passes the relay on: the oldest node in it is woken. */
static void relay_wake_next(fs_state *st)
{
    fs_waiter *w = st->relay.head;
    if (w == NULL)
        return;
    queue_remove(&st->relay, w);
    w->relayed = 0;
    // Said now: the woken waiter may return without taking the mutex.
    w->relay_owed = st->relay.head != NULL;
    wake_later(st, w, FS_WAKE_FINAL);
}

/* ------------------------------------------------------------------------ */
/* Time.                                                                     */

fs_time fs_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (fs_time)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

fs_time fs_deadline_after(double seconds)
{
    fs_time now = fs_now();
    if (!(seconds > 0)) // also NaN: the caller rejects it, this only stays safe
        return now;
    double ns = seconds * 1e9;
    if (ns >= (double)(FS_FOREVER - now))
        return FS_FOREVER;
    fs_time whole = (fs_time)ns;
    // Round up, so that a waiter never gives up before its time.
    return now + whole + ((double)whole < ns);
}

/* ------------------------------------------------------------------------ */
/* The permit word.                                                          */

static inline fs_count state_count(fs_state *st)
{
    return COUNT(atomic_load_explicit(&st->word, memory_order_acquire));
}

static inline fs_count state_max(fs_state *st)
{
    return atomic_load_explicit(&st->max_value, memory_order_relaxed);
}

/* Counts an acquisition that did not wait. A relaxed atomic add, cheap right
 * after the compare-and-swap that brought the cache line, and exact even when
 * acquires run in parallel (docs/design.rst, "Counting uncontended
 * acquisitions"; bench/test_statistics_overhead.py measures it). */
#ifndef FS_COUNT_UNCONTENDED
#define FS_COUNT_UNCONTENDED 1 // 0 only in bench/, to measure what counting costs
#endif
static inline void count_uncontended(fs_state *st)
{
#if FS_COUNT_UNCONTENDED
    atomic_fetch_add_explicit(&st->uncontended, 1, memory_order_relaxed);
#else
    (void)st;
#endif
}

/* Takes n permits if enough are free, the semaphore is open and, with
 * honour_queue, nobody is queued. Lock-free; safe with or without the mutex. */
static inline int word_try_take(fs_state *st, fs_count n, int honour_queue)
{
    uint64_t blocked = honour_queue ? (SLOW | CLOSED) : CLOSED;
    uint64_t w = atomic_load_explicit(&st->word, memory_order_relaxed);
    while (COUNT(w) >= n && !(w & blocked)) {
        if (atomic_compare_exchange_weak_explicit(&st->word, &w, w - (uint64_t)n,
                                                  memory_order_acquire,
                                                  memory_order_relaxed))
            return 1;
    }
    return 0;
}

/* FS_OK if n more permits fit beside `count` free ones: a bounded semaphore
 * takes back at most the permits that are out (max - count, plus what a
 * lowered bound is still owed), and no count passes FS_COUNT_MAX. */
static inline int room_for(fs_state *st, fs_count count, fs_count n, fs_count debt)
{
    fs_count max = state_max(st);
    if (max >= 0 && n > max - count + debt)
        return FS_OVER_BOUND;
    if (n > FS_COUNT_MAX - count)
        return FS_OVERFLOW;
    return FS_OK;
}

/* Adds n permits if SLOW is clear: FS_OK, or FS_QUEUED (nothing changed)
 * when the mutex is needed: SLOW is set, or the permits do not seem to fit.
 * Lock-free callers cannot report a misfit themselves: the bound they read
 * may be newer than the count (a resize in between), so under the mutex,
 * where the bound stands still, `under_lock` makes the misfit final:
 * FS_OVER_BOUND or FS_OVERFLOW, nothing changed. */
static inline int word_try_put(fs_state *st, fs_count n, int under_lock)
{
    uint64_t w = atomic_load_explicit(&st->word, memory_order_relaxed);
    while (!(w & SLOW)) {
        int rc = room_for(st, COUNT(w), n, 0);
        if (rc != FS_OK)
            return under_lock ? rc : FS_QUEUED;
        if (atomic_compare_exchange_weak_explicit(&st->word, &w, w + (uint64_t)n,
                                                  memory_order_release,
                                                  memory_order_relaxed))
            return FS_OK;
    }
    return FS_QUEUED;
}

/* Sets or clears flags, leaving the count alone. */
static inline void word_set(fs_state *st, uint64_t flags)
{
    atomic_fetch_or_explicit(&st->word, flags, memory_order_acq_rel);
}

static inline void word_clear(fs_state *st, uint64_t flags)
{
    atomic_fetch_and_explicit(&st->word, ~flags, memory_order_release);
}

/* ------------------------------------------------------------------------ */
/* The grant policy and the statistics (the caller holds the mutex).         */

static fs_stats *state_stats(fs_state *st)
{
    if (st->stats == NULL)
        st->stats = calloc(1, sizeof(fs_stats)); // NULL: not recorded, no harm
    return st->stats;
}

int fs_histogram_bucket(fs_time waited_ns)
{
    if (waited_ns < ((fs_time)1 << FS_HIST_FIRST_OCTAVE))
        return 0;
    uint64_t ns = (uint64_t)waited_ns;
    int top = 63 - __builtin_clzll(ns);
    int octave = top - FS_HIST_FIRST_OCTAVE;
    if (octave >= FS_HIST_OCTAVES)
        return FS_HIST_BUCKETS - 1;
    int sub = (int)(((ns - ((uint64_t)1 << top)) * FS_HIST_SUBBUCKETS) >> top);
    return 1 + octave * FS_HIST_SUBBUCKETS + sub;
}

/* A queued waiter got its permits after waiting since w->queued_at: counted
 * at the grant (the waiter may return without the mutex). */
static void stats_contended(fs_state *st, fs_waiter *w)
{
    fs_time waited = fs_now() - w->queued_at;
    if (waited < 0)
        waited = 0;
    w->waited = waited;
    fs_stats *stats = state_stats(st);
    if (stats == NULL)
        return;
    stats->acquisitions++;
    stats->contended++;
    stats->wait_total_ns += (uint64_t)waited;
    if ((uint64_t)waited > stats->wait_max_ns)
        stats->wait_max_ns = (uint64_t)waited;
    stats->histogram[fs_histogram_bucket(waited)]++;
}

/* A grant its waiter gave back unused (fs_sem_cancel) was no acquisition.
 * (Unless the counters were reset meanwhile; the longest wait stays.) */
static void stats_uncount(fs_state *st, const fs_waiter *w)
{
    fs_stats *stats = st->stats;
    int bucket = fs_histogram_bucket(w->waited);
    if (stats == NULL || stats->contended == 0 || stats->histogram[bucket] == 0 ||
        stats->wait_total_ns < (uint64_t)w->waited)
        return;
    stats->acquisitions--;
    stats->contended--;
    stats->wait_total_ns -= (uint64_t)w->waited;
    stats->histogram[bucket]--;
}

static void stats_count(fs_state *st, size_t field_offset)
{
    fs_stats *stats = state_stats(st);
    if (stats != NULL)
        (*(uint64_t *)((char *)stats + field_offset))++;
}

/* Fair mode, SLOW set: nobody but lock holders changes the count. */
static inline void state_take_locked(fs_state *st, fs_count n)
{
    atomic_fetch_sub_explicit(&st->word, (uint64_t)n, memory_order_acq_rel);
}

/* Takes up to n free permits and returns how many: a CAS loop, since a
 * non-fair acquire may take concurrently even while SLOW is set. */
static fs_count word_take_up_to(fs_state *st, fs_count n)
{
    uint64_t w = atomic_load_explicit(&st->word, memory_order_relaxed);
    for (;;) {
        fs_count take = COUNT(w) < n ? COUNT(w) : n;
        if (atomic_compare_exchange_weak_explicit(&st->word, &w, w - (uint64_t)take,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed))
            return take;
    }
}

/* Gives n permits back under the mutex with SLOW set: a lowered bound's
 * debt is paid first, and never more than the bound is kept (an over-release
 * of a bounded semaphore may have been accepted while these permits were
 * held by a waiter that is now passing them on). */
static void state_put_locked(fs_state *st, fs_count n)
{
    fs_count pay = n < st->debt ? n : st->debt;
    st->debt -= pay;
    n -= pay;
    fs_count max = state_max(st);
    fs_count cap = max >= 0 ? max : FS_COUNT_MAX;
    fs_count count = state_count(st);
    if (n > cap - count)
        n = cap - count;
    if (n > 0)
        atomic_fetch_add_explicit(&st->word, (uint64_t)n, memory_order_acq_rel);
}

/* Whether free permits belong to the queue's head, so that nobody else takes
 * them while it waits: always in fair mode; in non-fair mode while the head
 * is starving (the handoff flag, which the lock-free path reads). */
static inline int head_owns_free_permits(fs_state *st)
{
    return st->fair || atomic_load_explicit(&st->handoff, memory_order_relaxed);
}

/* Non-fair: the handoff flag follows the head's starving mark. */
static void handoff_follow_head(fs_state *st)
{
    fs_waiter *head = st->queue.head;
    atomic_store_explicit(&st->handoff, head != NULL && head->starving, memory_order_relaxed);
}

/* Serves the queue after the count grew or a waiter left, then clears SLOW
 * if nothing needs it any more. */
static void state_dispatch(fs_state *st)
{
    fs_waiter *w;
    int granted = 0;
    /* Fair mode hands the permits over to the head; non-fair mode only to a
     * starving head. */
    while ((w = st->queue.head) != NULL && (st->fair || w->starving) &&
           w->want <= state_count(st)) {
        if (st->fair)
            state_take_locked(st, w->want); // SLOW is set: no fast path takes meanwhile
        else if (!word_try_take(st, w->want, 0))
            break; // a barger that had not seen the handoff flag yet took them first
        queue_remove(&st->queue, w);
        w->state = FS_W_GRANTED;
        stats_contended(st, w);
        relay_push(st, w);
        granted = 1;
    }
    if (granted)
        relay_wake_next(st);
    if (!st->fair) {
        handoff_follow_head(st);
        /* One competitor at a time: the head is woken if its request fits,
         * unless it already is (it will look at the count before it sleeps
         * again; waking it again per release cost the releaser a system call
         * each time for nothing). A competitor that takes its permits, times
         * out or is cancelled dispatches again, so the next one is woken
         * then: a chain, as the fair relay. Woken all at once, the threads
         * that fit starve the waker of the CPU (docs/design.rst, "The
         * relay"). */
        if (w != NULL && !w->starving && w->want <= state_count(st) && !w->woken) {
            w->woken = 1;
            wake_later(st, w, FS_WAKE_LOOK);
        }
    }
    if (st->queue.head == NULL && st->debt == 0)
        word_clear(st, SLOW);
}

/* Takes n permits now if the policy allows, else sets SLOW (so that the
 * caller can queue): returns 1 if taken. The caller holds the mutex and has
 * checked that the semaphore is open. */
static int state_take_or_mark_waiting(fs_state *st, fs_count n)
{
    uint64_t w = atomic_load_explicit(&st->word, memory_order_relaxed);
    for (;;) {
        int queued = st->queue.head != NULL;
        if (COUNT(w) >= n && !(queued && head_owns_free_permits(st))) {
            if (atomic_compare_exchange_weak_explicit(&st->word, &w, w - (uint64_t)n,
                                                      memory_order_acquire,
                                                      memory_order_relaxed))
                return 1;
        } else if ((w & SLOW) ||
                   atomic_compare_exchange_weak_explicit(&st->word, &w, w | SLOW,
                                                         memory_order_acq_rel,
                                                         memory_order_relaxed)) {
            return 0;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The semaphore.                                                            */

int fs_sem_init(fs_sem *s, fs_count value, fs_count max_value, int fair)
{
    if (value < 0)
        return FS_BAD_VALUE;
    if (max_value >= 0 && value > max_value)
        return FS_OVER_BOUND;
    if (value > FS_COUNT_MAX || max_value > FS_COUNT_MAX)
        return FS_OVERFLOW;
    pthread_once(&g_once, global_init);
    if (pthread_mutex_init(&s->mutex, NULL) != 0)
        return FS_ENOMEM;
    atomic_init(&s->fork_gen, atomic_load(&g_fork_gen));
    atomic_init(&s->st.word, (uint64_t)value);
    atomic_init(&s->st.max_value, max_value < 0 ? -1 : max_value);
    atomic_init(&s->st.uncontended, 0);
    s->st.fair = fair ? 1 : 0;
    s->st.debt = 0;
    atomic_init(&s->st.handoff, 0);
    s->st.spin_ns = g_cpus > 1 ? FS_SPIN_NS : 0;
    s->st.yield_spin_ns = g_cpus > 1 ? FS_YIELD_SPIN_NS : 0;
    s->st.starve_ns = FS_STARVE_NS;
    s->st.queue.head = s->st.queue.tail = NULL;
    s->st.queue.length = 0;
    s->st.wake_list = NULL;
    s->st.relay.head = s->st.relay.tail = NULL;
    s->st.relay.length = 0;
    s->st.stats = NULL;
    return FS_OK;
}

void fs_sem_destroy(fs_sem *s)
{
    // Only the owner calls this, when no thread can be inside; after a fork the
    // mutex may be the parent's, so only destroy one made in this process.
    if (!sem_is_from_before_fork(s))
        pthread_mutex_destroy(&s->mutex);
    free(s->st.stats);
    s->st.stats = NULL;
}

/* FS_OK, or why n permits can never be granted. */
static int check_request(fs_state *st, fs_count n)
{
    if (n < 1)
        return FS_BAD_COUNT;
    fs_count max = state_max(st);
    if (max >= 0 && n > max) // a bounded semaphore never holds more
        return FS_OVER_MAX;
    return n > FS_COUNT_MAX ? FS_OVERFLOW : FS_OK;
}

/* The uncontended acquire: lock-free, and counted. */
static inline int fast_take(fs_state *st, fs_count n)
{
    if (!word_try_take(st, n, head_owns_free_permits(st)))
        return 0;
    count_uncontended(st);
    return 1;
}

static inline int is_closed(fs_state *st)
{
    return (atomic_load_explicit(&st->word, memory_order_acquire) & CLOSED) != 0;
}

int fs_sem_try_acquire(fs_sem *s, fs_count n)
{
    fs_state *st = &s->st;
    int rc = check_request(st, n);
    if (rc != FS_OK)
        return rc;
    if (fast_take(st, n))
        return FS_OK;
    if (is_closed(st))
        return FS_CLOSED;
    if (sem_is_from_before_fork(s)) {
        // The parent's waiters may be what blocks us: drop them, then retry.
        sem_lock(s);
        sem_unlock(s);
        if (fast_take(st, n))
            return FS_OK;
    }
    return FS_WOULD_BLOCK;
}

/* Puts w at the tail; the caller holds the lock and has set SLOW. */
static int enqueue_locked(fs_sem *s, fs_waiter *w, fs_count n)
{
    fs_state *st = &s->st;
    if (event_init(&w->wakeup) != 0) {
        state_dispatch(st); // clears SLOW again if nothing else needs it
        return FS_ENOMEM;
    }
    w->want = n;
    w->state = FS_W_WAITING;
    w->fork_gen = atomic_load_explicit(&s->fork_gen, memory_order_relaxed);
    w->queued_at = fs_now();
    atomic_init(&w->signal_pending, 0);
    w->wake_next = NULL;
    w->relayed = 0;
    w->relay_owed = 0;
    w->woken = 0;
    w->starving = 0;
    w->spun = 0;
    queue_push(&st->queue, w);
    fs_stats *stats = state_stats(st);
    if (stats != NULL && st->queue.length > stats->max_waiting)
        stats->max_waiting = st->queue.length;
    return FS_QUEUED;
}

/* Takes n permits, or queues w; the caller holds the lock. */
static int take_or_enqueue_locked(fs_sem *s, fs_waiter *w, fs_count n)
{
    fs_state *st = &s->st;
    if (is_closed(st))
        return FS_CLOSED;
    if (state_take_or_mark_waiting(st, n)) {
        count_uncontended(st);
        return FS_OK;
    }
    return enqueue_locked(s, w, n);
}

static inline int acquire_or_enqueue(fs_sem *s, fs_waiter *w, fs_count n,
                                     fs_notify_fn notify, void *arg)
{
    fs_state *st = &s->st;
    int rc = check_request(st, n);
    if (rc != FS_OK)
        return rc;
    if (fast_take(st, n))
        return FS_OK; // uncontended: no lock, no system call
    w->notify = notify;
    w->notify_arg = arg;
    sem_lock(s);
    rc = check_request(st, n); // the bound may have moved
    if (rc == FS_OK)
        rc = take_or_enqueue_locked(s, w, n);
    sem_unlock(s);
    return rc;
}

int fs_sem_acquire_or_enqueue(fs_sem *s, fs_waiter *w, fs_count n)
{
    return acquire_or_enqueue(s, w, n, NULL, NULL);
}

int fs_sem_acquire_or_enqueue_notified(fs_sem *s, fs_waiter *w, fs_count n,
                                       fs_notify_fn notify, void *arg)
{
    return acquire_or_enqueue(s, w, n, notify, arg);
}

/* A fork child dropped the queue the node was in (possible only when the
 * forking thread itself was paused in a wait, e.g. fork() from a signal
 * handler). Returns 1 if the node was dropped. */
static int waiter_was_dropped(fs_sem *s, const fs_waiter *w)
{
    return w->fork_gen != atomic_load_explicit(&s->fork_gen, memory_order_relaxed);
}

/* Lets a waker that decided to signal w finish doing so (the caller holds
 * the mutex; the window is the waker's unlock-to-signal, a few instructions
 * unless it is preempted there). */
static void await_signal(fs_sem *s, fs_waiter *w)
{
    while (atomic_load_explicit(&w->signal_pending, memory_order_acquire)) {
        sem_unlock(s);
        sched_yield();
        sem_lock(s);
    }
}

/* Waits, without the mutex, for a waker that decided to signal w to finish
 * doing so (the window is the waker's unlock-to-signal, a few instructions
 * unless it is preempted there). */
static void await_signal_unlocked(fs_waiter *w)
{
    while (atomic_load_explicit(&w->signal_pending, memory_order_acquire))
        sched_yield();
}

/* The node is finished with (the caller holds the mutex): it leaves the
 * relay, and its event goes, unless it came from the parent of a fork, whose
 * state of it is unknown. With pass_relay it wakes the relay's next node;
 * else its caller does, once ready (relay_owed: "Callers that hold a big
 * lock"). */
static void waiter_done(fs_sem *s, fs_waiter *w, int pass_relay)
{
    w->relay_owed = 0;
    if (!waiter_was_dropped(s, w)) {
        if (w->relayed) { // woke by itself (deadline, pause) before its turn
            queue_remove(&s->st.relay, w);
            w->relayed = 0;
        }
        if (pass_relay)
            relay_wake_next(&s->st);
        else // a notified waiter never holds the relay (relay_push)
            w->relay_owed = w->notify == NULL && s->st.relay.head != NULL;
        await_signal(s, w); // its waker may still be about to touch it
        event_destroy(&w->wakeup);
    }
    w->state = FS_W_DONE;
}

/* The outcome of a node that left the queue without waiting for a deadline. */
static int waiter_outcome(int state)
{
    switch (state) {
    case FS_W_GRANTED:
        return FS_OK;
    case FS_W_CLOSED:
        return FS_CLOSED;
    case FS_W_ABANDONED:
        return FS_ABANDONED;
    default:
        return FS_OVER_MAX; // FS_W_REJECTED: the bound was lowered below its request
    }
}

/* A FINAL wake-up: w's outcome was decided, and w taken out of every list,
 * before its event was set, and nobody touches it any more but its waker
 * (until it clears signal_pending). So it finishes without the mutex; its
 * waker has set relay_owed. */
static int waiter_finish_unlocked(fs_waiter *w)
{
    int rc = waiter_outcome(w->state);
    await_signal_unlocked(w);
    event_destroy(&w->wakeup);
    w->state = FS_W_DONE;
    return rc;
}

/* The steps of fs_sem_wait. Those named _locked run under the mutex. */

/* In a fork child, a node whose queue the child dropped joins this process's
 * queue again, at the tail, or takes its permits at once: FS_QUEUED, or how
 * its wait ends (the node is finished). A signal the parent had pending for
 * it will never come. */
static int waiter_rejoin_after_fork_locked(fs_sem *s, fs_waiter *w)
{
    atomic_store_explicit(&w->signal_pending, 0, memory_order_relaxed);
    int rc = take_or_enqueue_locked(s, w, w->want);
    if (rc != FS_QUEUED) {
        w->state = FS_W_DONE;
        w->relay_owed = 0;
    }
    return rc;
}

/* Non-fair mode: w competes for the free permits, unless they belong to a
 * starving head other than w. Returns 1 if it took them and left the queue. */
static int waiter_compete_locked(fs_state *st, fs_waiter *w)
{
    if (st->fair || (st->queue.head != w && head_owns_free_permits(st)) ||
        !word_try_take(st, w->want, 0))
        return 0;
    queue_remove(&st->queue, w);
    stats_contended(st, w);
    state_dispatch(st); // others may fit in what is left
    return 1;
}

/* Where w stands: FS_QUEUED if it waits on (*now: when it looked), else how
 * its wait ends, w having left the queue: its decided outcome, FS_OK if it
 * competed and took its permits, or FS_TIMEOUT at its deadline (whoever it
 * held back is reconsidered). */
static int waiter_look_locked(fs_state *st, fs_waiter *w, fs_time deadline, fs_time *now)
{
    if (w->state != FS_W_WAITING)
        return waiter_outcome(w->state);
    if (waiter_compete_locked(st, w))
        return FS_OK;
    *now = fs_now();
    if (*now < deadline)
        return FS_QUEUED;
    queue_remove(&st->queue, w);
    stats_count(st, offsetof(fs_stats, timeouts));
    state_dispatch(st); // whoever it held back may go now
    return FS_TIMEOUT;
}

/* w is about to sleep: a non-fair head that was woken to compete and lost
 * after FS_STARVE_NS in the queue is starving from now on; w has looked, so
 * the next release may wake it again; its event is reset. Returns how long
 * it looks at its event before it sleeps: the head spins, in fair mode the
 * FS_YIELD_SPINNERS behind it yield-spin (*yield_cpu), the rest sleep at
 * once. Non-fair waiters behind the head would only be woken to compete, and
 * their looks would take the mutex from the holder. */
static fs_time waiter_before_sleep_locked(fs_state *st, fs_waiter *w, fs_time now,
                                          int *yield_cpu)
{
    int head = st->queue.head == w;
    if (w->woken && !st->fair && head && now - w->queued_at >= st->starve_ns) {
        w->starving = 1;
        handoff_follow_head(st);
    }
    w->woken = 0;
    event_reset(&w->wakeup);
    *yield_cpu = !head;
    if (head)
        return st->spin_ns;
    return st->fair && queue_near_head(&st->queue, w) ? st->yield_spin_ns : 0;
}

/* Without the mutex: looks at w's event for up to `spin`, then sleeps on it
 * until `until`. Returns the event's kind as event_wait does, and sets
 * w->spun if it came while w spun. */
static int waiter_sleep(fs_waiter *w, fs_time now, fs_time spin, int yield_cpu, fs_time until)
{
    int kind = 0;
    if (spin > 0)
        kind = spin_for_event(&w->wakeup, now + spin < until ? now + spin : until, yield_cpu);
    w->spun = kind != 0;
    if (kind == 0)
        kind = event_wait(&w->wakeup, until);
    return kind;
}

int fs_sem_wait(fs_sem *s, fs_waiter *w, fs_time deadline, fs_time wake_by)
{
    fs_time until = deadline < wake_by ? deadline : wake_by;
    int interrupted = 0;
    int rc;
    sem_lock(s);
    if (waiter_was_dropped(s, w) && w->state == FS_W_WAITING) {
        rc = waiter_rejoin_after_fork_locked(s, w);
        if (rc != FS_QUEUED) {
            sem_unlock(s);
            return rc;
        }
    }
    for (;;) {
        fs_time now = 0;
        rc = waiter_look_locked(&s->st, w, deadline, &now);
        if (rc != FS_QUEUED)
            break;
        if (now >= wake_by || interrupted) {
            sem_unlock(s);
            return FS_PAUSED;
        }
        if (atomic_load_explicit(&w->signal_pending, memory_order_acquire)) {
            /* Not asleep with a signal in flight: it may have been sent
             * already, and the reset before sleeping would swallow it, while
             * a waker that finds the mark set sends no other. */
            await_signal(s, w);
            continue;
        }
        int yield_cpu;
        fs_time spin = waiter_before_sleep_locked(&s->st, w, now, &yield_cpu);
        sem_unlock(s);
        int kind = waiter_sleep(w, now, spin, yield_cpu, until);
        if (kind == FS_WAKE_FINAL)
            return waiter_finish_unlocked(w);
        if (kind == FS_WAKE_LOOK)
            return FS_PAUSED; // woken to compete (non-fair): its caller does that
        interrupted = kind < 0 && wake_by != FS_FOREVER;
        sem_lock(s);
    }
    waiter_done(s, w, 0);
    sem_unlock(s);
    return rc;
}

/* Takes w out for good (the caller holds the mutex): a grant it had is
 * passed on, as a release would pass it, and whoever it held back is
 * reconsidered. Returns 1 if a grant was passed on. */
static int waiter_give_up_locked(fs_sem *s, fs_waiter *w)
{
    fs_state *st = &s->st;
    int passed_on = 0;
    if (w->state == FS_W_DONE || w->state == FS_W_ABANDONED)
        return 0;
    if (w->state == FS_W_GRANTED) {
        // Granted in the same instant: hand the permits on, as a release would.
        word_set(st, SLOW);
        state_put_locked(st, w->want);
        stats_uncount(st, w);
        passed_on = 1;
    } else if (w->state == FS_W_WAITING && !waiter_was_dropped(s, w)) {
        queue_remove(&st->queue, w);
    }
    stats_count(st, offsetof(fs_stats, interrupts));
    state_dispatch(st);
    return passed_on;
}

int fs_sem_cancel(fs_sem *s, fs_waiter *w)
{
    sem_lock(s);
    int passed_on = waiter_give_up_locked(s, w);
    if (w->state != FS_W_DONE) // its caller is unwinding: pass the relay on now
        waiter_done(s, w, w->notify == NULL);
    sem_unlock(s);
    return passed_on;
}

/* A notified waiter whose notification cannot be delivered: nobody will
 * ever look at its outcome, so it is given up as fs_sem_cancel would, its
 * permits passed on. Its notifier calls this after the unlock, and its mark
 * on the node keeps the owner from finishing the node meanwhile. */
static void waiter_abandon(fs_sem *s, fs_waiter *w)
{
    sem_lock(s);
    if (w->state != FS_W_DONE && w->state != FS_W_ABANDONED) {
        waiter_give_up_locked(s, w);
        w->state = FS_W_ABANDONED;
    }
    sem_unlock(s);
}

int fs_sem_poll(fs_sem *s, fs_waiter *w, fs_time deadline)
{
    int rc;
    sem_lock(s);
    if (waiter_was_dropped(s, w) && w->state == FS_W_WAITING) {
        rc = waiter_rejoin_after_fork_locked(s, w);
        if (rc != FS_QUEUED) {
            sem_unlock(s);
            return rc;
        }
    }
    if (fs_waiter_notifying(w)) {
        /* A notification is on its way. A decided node may not be finished
         * until its notifier is done with it; and a waiter that looked now
         * and then slept until its next notification could sleep through
         * this one, if it was delivered before the owner armed its wake-up
         * again. So the owner waits for the notifier, then looks. */
        sem_unlock(s);
        return FS_IN_FLIGHT;
    }
    fs_time now = 0;
    rc = waiter_look_locked(&s->st, w, deadline, &now);
    if (rc == FS_QUEUED) {
        int yield_cpu; // a notified waiter neither spins nor sleeps here
        (void)waiter_before_sleep_locked(&s->st, w, now, &yield_cpu);
    } else {
        waiter_done(s, w, 0);
    }
    sem_unlock(s);
    return rc;
}

void fs_sem_set_spin(fs_sem *s, fs_time head_ns, fs_time next_ns)
{
    sem_lock(s);
    s->st.spin_ns = head_ns > 0 ? head_ns : 0;
    s->st.yield_spin_ns = next_ns > 0 ? next_ns : 0;
    sem_unlock(s);
}

void fs_sem_set_starve(fs_sem *s, fs_time ns)
{
    sem_lock(s);
    s->st.starve_ns = ns > 0 ? ns : 0;
    sem_unlock(s);
}

void fs_sem_relay(fs_sem *s)
{
    sem_lock(s);
    relay_wake_next(&s->st);
    sem_unlock(s);
}

int fs_sem_release(fs_sem *s, fs_count n)
{
    fs_state *st = &s->st;
    if (n < 1)
        return FS_BAD_COUNT;
    if (word_try_put(st, n, 0) == FS_OK)
        return FS_OK; // nobody waits: no lock, no system call
    sem_lock(s);
    int rc = word_try_put(st, n, 1); // SLOW may have cleared meanwhile
    if (rc == FS_QUEUED) {
        // SLOW is set: only lock holders add to the count.
        rc = room_for(st, state_count(st), n, st->debt);
        if (rc == FS_OK) {
            state_put_locked(st, n);
            state_dispatch(st);
        }
    }
    sem_unlock(s);
    return rc;
}

void fs_sem_close(fs_sem *s)
{
    fs_state *st = &s->st;
    fs_waiter *w;
    sem_lock(s);
    word_set(st, CLOSED);
    while ((w = st->queue.head) != NULL) {
        queue_remove(&st->queue, w);
        w->state = FS_W_CLOSED;
        relay_push(st, w);
    }
    relay_wake_next(st);
    state_dispatch(st); // clears SLOW unless a debt is still owed
    sem_unlock(s);
}

fs_count fs_sem_drain(fs_sem *s)
{
    fs_state *st = &s->st;
    uint64_t w = atomic_load_explicit(&st->word, memory_order_relaxed);
    while (!(w & SLOW)) {
        if (atomic_compare_exchange_weak_explicit(&st->word, &w, w & (SLOW | CLOSED),
                                                  memory_order_acquire,
                                                  memory_order_relaxed))
            return COUNT(w);
    }
    fs_count taken = 0;
    sem_lock(s);
    if (st->queue.head == NULL || !head_owns_free_permits(st))
        taken = word_take_up_to(st, FS_COUNT_MAX);
    sem_unlock(s);
    return taken;
}

int fs_sem_resize(fs_sem *s, fs_count new_max)
{
    fs_state *st = &s->st;
    if (new_max < 0)
        return FS_BAD_BOUND;
    if (state_max(st) < 0)
        return FS_UNBOUNDED;
    if (new_max > FS_COUNT_MAX)
        return FS_OVERFLOW;
    sem_lock(s);
    word_set(st, SLOW); // every change of the word now holds the mutex
    fs_count old_max = state_max(st);
    atomic_store_explicit(&st->max_value, new_max, memory_order_relaxed);
    if (new_max >= old_max) {
        // state_put_locked pays any debt first; the bound is already raised.
        state_put_locked(st, new_max - old_max);
    } else {
        fs_count cut = old_max - new_max;
        st->debt += cut - word_take_up_to(st, cut);
        // Requests that no longer fit under the bound could never be served.
        fs_waiter *w, *next;
        for (w = st->queue.head; w != NULL; w = next) {
            next = w->next;
            if (w->want > new_max) {
                queue_remove(&st->queue, w);
                w->state = FS_W_REJECTED;
                relay_push(st, w);
            }
        }
        relay_wake_next(st);
    }
    state_dispatch(st);
    sem_unlock(s);
    return FS_OK;
}

fs_count fs_sem_value(fs_sem *s)
{
    if (sem_is_from_before_fork(s)) {
        sem_lock(s);
        sem_unlock(s);
    }
    return state_count(&s->st);
}

size_t fs_sem_waiting(fs_sem *s)
{
    sem_lock(s);
    size_t n = s->st.queue.length;
    sem_unlock(s);
    return n;
}

fs_count fs_sem_max_value(fs_sem *s)
{
    return state_max(&s->st);
}

int fs_sem_closed(fs_sem *s)
{
    return is_closed(&s->st);
}

void fs_sem_statistics(fs_sem *s, fs_stats *out)
{
    sem_lock(s);
    if (s->st.stats != NULL)
        *out = *s->st.stats;
    else
        memset(out, 0, sizeof(*out));
    out->acquisitions += atomic_load_explicit(&s->st.uncontended, memory_order_relaxed);
    sem_unlock(s);
}

void fs_sem_reset_statistics(fs_sem *s)
{
    sem_lock(s);
    if (s->st.stats != NULL)
        memset(s->st.stats, 0, sizeof(*s->st.stats));
    atomic_store_explicit(&s->st.uncontended, 0, memory_order_relaxed);
    sem_unlock(s);
}
