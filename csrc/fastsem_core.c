/*
 * fastsem_core.c - a FIFO-fair counting semaphore on pthreads.
 *
 * Design
 * ------
 * A semaphore is a permit word and a FIFO queue of waiters behind a mutex.
 * The permit word holds the count of free permits and one flag bit, WAITERS,
 * which is set exactly while the queue is non-empty:
 *
 *     bit 63          bits 62..0
 *   +---------+-------------------------+
 *   | WAITERS |  free permits (count)   |
 *   +---------+-------------------------+
 *
 * The uncontended paths touch the word alone, with one compare-and-swap: an
 * acquire takes permits while WAITERS is clear (fair mode: nobody queued) and
 * the count suffices; a release adds permits while WAITERS is clear (nobody
 * to hand them to). Everything else holds the mutex, and since a fast path
 * never runs while WAITERS is set (except a non-fair acquire, which only
 * takes), the slow paths see a word that only they change. Every piece of
 * shared state is behind the mutex or in that one atomic word, so the code is
 * correct on free-threaded Python as well as with a GIL.
 *
 *         +------+      +------+      +------+
 *   head  | want |<---->| want |<---->| want |  tail
 *         |  2   |      |  1   |      |  1   |
 *         +------+      +------+      +------+
 *        thread A's    thread B's    thread C's
 *          stack         stack         stack
 *
 * Each waiter node lives on the stack of the thread that waits, and carries
 * its own condition variable, so a release wakes exactly the thread it serves
 * (one wake per handoff, no thundering herd on a shared condition).
 *
 * Fair mode (the default) keeps one invariant after every operation:
 *
 *     the queue is empty (WAITERS clear), or count < head->want
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
 * leaves the permits free and wakes the leading waiters whose requests fit.
 * A woken waiter takes permits if they are still there, else waits again in
 * the same place. That trades order for throughput: the releasing thread can
 * often re-acquire without a context switch.
 *
 * Leaving early. A waiter whose deadline passes takes itself out of the queue,
 * unless it was granted first, in which case it keeps the grant and reports
 * success. A waiter cancelled by its caller (an exception in the binding)
 * unlinks itself, or if already granted gives the permits back through the
 * normal release path, so a permit is never lost or duplicated. Either way the
 * queue is dispatched again: a small request behind a departed large one may
 * now be grantable.
 *
 * Pausing. fs_sem_wait can return FS_PAUSED at a caller-chosen time while the
 * node stays queued; the binding uses it to run Python signal handlers in the
 * main thread (condition variables are not reliably woken by signals) and
 * then waits again with the same deadline and the same place in the queue.
 *
 * fork(). A pthread_atfork child handler bumps a global generation counter.
 * Each semaphore remembers the generation its mutex belongs to; the first call
 * in a new generation re-initialises the mutex (another thread may have held
 * it at fork time) and drops the queued waiters, whose threads do not exist in
 * the child. The check is one atomic load per call. Permits that were granted
 * to parent threads stay held, as with any lock held by a vanished thread.
 *
 * Memory. The queue and the grant policy (fs_queue, fs_state) know nothing of
 * where the semaphore lives or how it is locked, so a process-shared variant
 * can reuse them with a different lock and node storage.
 */
#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200809L
#undef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#if defined(__APPLE__) && !defined(_DARWIN_C_SOURCE)
#define _DARWIN_C_SOURCE /* pthread_cond_timedwait_relative_np */
#endif

#include "fastsem_core.h"

#include <errno.h>
#include <limits.h>
#include <time.h>

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
/* The permit word.                                                          */

#define WAITERS FS_WORD_WAITERS
#define COUNT(word) ((fs_count)((word) & ~WAITERS))

static inline fs_count state_count(fs_state *st)
{
    return COUNT(atomic_load_explicit(&st->word, memory_order_acquire));
}

/* Takes n permits if enough are free and, with honour_queue, nobody is
 * queued. Lock-free; safe with or without the mutex. */
static inline int word_try_take(fs_state *st, fs_count n, int honour_queue)
{
    uint64_t w = atomic_load_explicit(&st->word, memory_order_relaxed);
    while (COUNT(w) >= n && !(honour_queue && (w & WAITERS))) {
        if (atomic_compare_exchange_weak_explicit(&st->word, &w, w - (uint64_t)n,
                                                  memory_order_acquire,
                                                  memory_order_relaxed))
            return 1;
    }
    return 0;
}

static inline int room_for(const fs_state *st, fs_count count, fs_count n)
{
    if (st->max_value >= 0 && n > st->max_value - count)
        return FS_OVER_BOUND;
    if (n > LLONG_MAX - count)
        return FS_OVERFLOW;
    return FS_OK;
}

/* Adds n permits if nobody is queued: FS_OK, or FS_OVER_BOUND / FS_OVERFLOW
 * (nothing changed), or FS_QUEUED if there are waiters to serve, which needs
 * the mutex (nothing changed). Lock-free. */
static inline int word_try_put(fs_state *st, fs_count n)
{
    uint64_t w = atomic_load_explicit(&st->word, memory_order_relaxed);
    while (!(w & WAITERS)) {
        int rc = room_for(st, COUNT(w), n);
        if (rc != FS_OK)
            return rc;
        if (atomic_compare_exchange_weak_explicit(&st->word, &w, w + (uint64_t)n,
                                                  memory_order_release,
                                                  memory_order_relaxed))
            return FS_OK;
    }
    return FS_QUEUED;
}

/* Gives n permits back, capped at the bound (or the largest count): the
 * permits of a grant that is being passed on. Lock-free. */
static void word_put_capped(fs_state *st, fs_count n)
{
    fs_count cap = st->max_value >= 0 ? st->max_value : LLONG_MAX;
    uint64_t w = atomic_load_explicit(&st->word, memory_order_relaxed);
    for (;;) {
        fs_count count = COUNT(w);
        fs_count next = count > cap - n ? cap : count + n;
        if (atomic_compare_exchange_weak_explicit(&st->word, &w,
                                                  (w & WAITERS) | (uint64_t)next,
                                                  memory_order_release,
                                                  memory_order_relaxed))
            return;
    }
}

/* ------------------------------------------------------------------------ */
/* The grant policy (the caller holds the mutex).                           */

/* Serves the queue after the count grew or a waiter left, and clears
 * WAITERS once the queue is empty. */
static void state_dispatch(fs_state *st)
{
    fs_waiter *w;
    if (st->fair) {
        // WAITERS is set, so no fast path changes the count under us.
        while ((w = st->queue.head) != NULL && w->want <= state_count(st)) {
            atomic_fetch_sub_explicit(&st->word, (uint64_t)w->want, memory_order_relaxed);
            queue_remove(&st->queue, w);
            w->state = FS_W_GRANTED;
            /* Signalled under the mutex: the node is on the waiter's stack and
             * may vanish as soon as the mutex is released. */
            pthread_cond_signal(&w->wakeup);
        }
    } else {
        fs_count left = state_count(st);
        for (w = st->queue.head; w != NULL && w->want <= left; w = w->next) {
            left -= w->want;
            pthread_cond_signal(&w->wakeup);
        }
    }
    if (st->queue.head == NULL)
        atomic_fetch_and_explicit(&st->word, ~WAITERS, memory_order_release);
}

/* Takes n permits now if the policy allows, else sets WAITERS (so that the
 * caller can queue): returns 1 if taken. The caller holds the mutex. */
static int state_take_or_mark_waiting(fs_state *st, fs_count n)
{
    uint64_t w = atomic_load_explicit(&st->word, memory_order_relaxed);
    for (;;) {
        if (COUNT(w) >= n && !(st->fair && (w & WAITERS))) {
            if (atomic_compare_exchange_weak_explicit(&st->word, &w, w - (uint64_t)n,
                                                      memory_order_acquire,
                                                      memory_order_relaxed))
                return 1;
        } else if ((w & WAITERS) ||
                   atomic_compare_exchange_weak_explicit(&st->word, &w, w | WAITERS,
                                                         memory_order_acq_rel,
                                                         memory_order_relaxed)) {
            return 0;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Process-wide setup: the condition-variable clock and the fork hook.      */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_condattr_t g_condattr;
static _Atomic unsigned long g_fork_gen;
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
}

unsigned long fs_fork_generation(void)
{
    return atomic_load(&g_fork_gen);
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
        atomic_fetch_and(&s->st.word, ~WAITERS);
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
 * WAITERS bit may stand for the parent's queue. */
static inline int sem_is_from_before_fork(fs_sem *s)
{
    return atomic_load_explicit(&s->fork_gen, memory_order_relaxed) !=
           atomic_load_explicit(&g_fork_gen, memory_order_relaxed);
}

static inline void sem_unlock(fs_sem *s)
{
    pthread_mutex_unlock(&s->mutex);
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

/* Blocks on the waiter's condition until signalled, or `until` (monotonic),
 * or a spurious wake-up; the caller re-checks everything. */
static void wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex, fs_time until)
{
    if (until == FS_FOREVER) {
        pthread_cond_wait(cond, mutex);
        return;
    }
#if defined(__APPLE__)
    fs_time rel = until - fs_now();
    if (rel <= 0)
        return;
    struct timespec ts = {(time_t)(rel / 1000000000), (long)(rel % 1000000000)};
    pthread_cond_timedwait_relative_np(cond, mutex, &ts);
#else
    struct timespec ts = {(time_t)(until / 1000000000), (long)(until % 1000000000)};
    pthread_cond_timedwait(cond, mutex, &ts);
#endif
}

/* ------------------------------------------------------------------------ */
/* The semaphore.                                                            */

int fs_sem_init(fs_sem *s, fs_count value, fs_count max_value, int fair)
{
    if (value < 0 || (max_value >= 0 && value > max_value))
        return FS_EINVAL;
    pthread_once(&g_once, global_init);
    if (pthread_mutex_init(&s->mutex, NULL) != 0)
        return FS_ENOMEM;
    atomic_init(&s->fork_gen, atomic_load(&g_fork_gen));
    atomic_init(&s->st.word, (uint64_t)value);
    s->st.max_value = max_value < 0 ? -1 : max_value;
    s->st.fair = fair ? 1 : 0;
    s->st.queue.head = s->st.queue.tail = NULL;
    s->st.queue.length = 0;
    return FS_OK;
}

void fs_sem_destroy(fs_sem *s)
{
    // Only the owner calls this, when no thread can be inside; after a fork the
    // mutex may be the parent's, so only destroy one made in this process.
    if (!sem_is_from_before_fork(s))
        pthread_mutex_destroy(&s->mutex);
}

static int request_is_valid(const fs_state *st, fs_count n)
{
    // A bounded semaphore can never hold more than its bound.
    return n >= 1 && (st->max_value < 0 || n <= st->max_value);
}

int fs_sem_try_acquire(fs_sem *s, fs_count n)
{
    fs_state *st = &s->st;
    if (!request_is_valid(st, n))
        return FS_EINVAL;
    if (word_try_take(st, n, st->fair))
        return FS_OK;
    if (sem_is_from_before_fork(s)) {
        // The parent's waiters may be what blocks us: drop them, then retry.
        sem_lock(s);
        sem_unlock(s);
        if (word_try_take(st, n, st->fair))
            return FS_OK;
    }
    return FS_WOULD_BLOCK;
}

/* Puts w at the tail; the caller holds the lock and has set WAITERS. */
static int enqueue_locked(fs_sem *s, fs_waiter *w, fs_count n)
{
    if (pthread_cond_init(&w->wakeup, &g_condattr) != 0) {
        state_dispatch(&s->st); // clears WAITERS again if nobody else waits
        return FS_ENOMEM;
    }
    w->want = n;
    w->state = FS_W_WAITING;
    w->fork_gen = atomic_load_explicit(&s->fork_gen, memory_order_relaxed);
    queue_push(&s->st.queue, w);
    return FS_QUEUED;
}

int fs_sem_acquire_or_enqueue(fs_sem *s, fs_waiter *w, fs_count n)
{
    int rc;
    fs_state *st = &s->st;
    if (!request_is_valid(st, n))
        return FS_EINVAL;
    if (word_try_take(st, n, st->fair))
        return FS_OK; // uncontended: no lock, no system call
    sem_lock(s);
    if (state_take_or_mark_waiting(st, n))
        rc = FS_OK;
    else
        rc = enqueue_locked(s, w, n);
    sem_unlock(s);
    return rc;
}

/* A fork child dropped the queue the node was in (possible only when the
 * forking thread itself was paused in a wait, e.g. fork() from a signal
 * handler). Returns 1 if the node was dropped. */
static int waiter_was_dropped(fs_sem *s, const fs_waiter *w)
{
    return w->fork_gen != atomic_load_explicit(&s->fork_gen, memory_order_relaxed);
}

/* The node is finished with: its condition variable goes, unless it came from
 * the parent of a fork, whose state of it is unknown (destroying could block
 * on waiters that do not exist here; a condition variable holds no resource). */
static void waiter_done(fs_sem *s, fs_waiter *w)
{
    if (!waiter_was_dropped(s, w))
        pthread_cond_destroy(&w->wakeup);
    w->state = FS_W_DONE;
}

int fs_sem_wait(fs_sem *s, fs_waiter *w, fs_time deadline, fs_time wake_by)
{
    fs_state *st = &s->st;
    sem_lock(s);
    if (waiter_was_dropped(s, w) && w->state == FS_W_WAITING) {
        // Join again at the tail of this process's queue (or take at once).
        if (state_take_or_mark_waiting(st, w->want)) {
            w->state = FS_W_DONE;
            sem_unlock(s);
            return FS_OK;
        }
        if (enqueue_locked(s, w, w->want) != FS_QUEUED) {
            w->state = FS_W_DONE;
            sem_unlock(s);
            return FS_ENOMEM;
        }
    }
    for (;;) {
        if (w->state == FS_W_GRANTED)
            break;
        if (!st->fair && word_try_take(st, w->want, 0)) {
            // Non-fair: a woken waiter competes for free permits.
            queue_remove(&st->queue, w);
            state_dispatch(st); // others may fit in what is left
            break;
        }
        fs_time now = fs_now();
        if (now >= deadline) {
            queue_remove(&st->queue, w);
            state_dispatch(st); // whoever it held back may go now
            waiter_done(s, w);
            sem_unlock(s);
            return FS_TIMEOUT;
        }
        if (now >= wake_by) {
            sem_unlock(s);
            return FS_PAUSED;
        }
        wait_until(&w->wakeup, &s->mutex, deadline < wake_by ? deadline : wake_by);
    }
    waiter_done(s, w);
    sem_unlock(s);
    return FS_OK;
}

int fs_sem_cancel(fs_sem *s, fs_waiter *w)
{
    fs_state *st = &s->st;
    int passed_on = 0;
    sem_lock(s);
    if (w->state == FS_W_GRANTED) {
        /* Granted in the same instant: hand the permits on, as a release
         * would. Granted permits are held, not free, so an over-release of a
         * bounded semaphore may have been accepted meanwhile; it ends here:
         * the count is capped at the bound. */
        word_put_capped(st, w->want);
        passed_on = 1;
    } else if (w->state == FS_W_WAITING && !waiter_was_dropped(s, w)) {
        queue_remove(&st->queue, w);
    }
    if (w->state != FS_W_DONE) {
        state_dispatch(st);
        waiter_done(s, w);
    }
    sem_unlock(s);
    return passed_on;
}

int fs_sem_release(fs_sem *s, fs_count n)
{
    fs_state *st = &s->st;
    if (n < 1)
        return FS_EINVAL;
    int rc = word_try_put(st, n);
    if (rc != FS_QUEUED)
        return rc; // nobody waits: no lock, no system call
    sem_lock(s);
    rc = word_try_put(st, n); // the queue may have emptied meanwhile
    if (rc == FS_QUEUED) {
        // WAITERS is set and only lock holders change the count upwards.
        rc = room_for(st, state_count(st), n);
        if (rc == FS_OK) {
            atomic_fetch_add_explicit(&st->word, (uint64_t)n, memory_order_release);
            state_dispatch(st);
        }
    }
    sem_unlock(s);
    return rc;
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
