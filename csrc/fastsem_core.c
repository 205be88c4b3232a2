/*
 * fastsem_core.c - a FIFO-fair counting semaphore on pthreads.
 *
 * Design
 * ------
 * One mutex guards all of a semaphore's state: the count of free permits and
 * a FIFO queue of waiters. There are no atomics on the permit count and no
 * lock-free tricks, so every piece of shared state is behind that mutex and the
 * code is correct on free-threaded Python as well as with a GIL.
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
 *     the queue is empty, or value < head->want
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
/* The grant policy, on fs_state alone (the caller holds the lock).         */

static int state_can_take_now(const fs_state *st, fs_count n)
{
    if (st->value < n)
        return 0;
    // Fair: only when nobody is queued ahead. Non-fair: whenever enough are free.
    return !st->fair || st->queue.head == NULL;
}

/* Serves the queue after the count grew or a waiter left. */
static void state_dispatch(fs_state *st)
{
    fs_waiter *w;
    if (st->fair) {
        while ((w = st->queue.head) != NULL && w->want <= st->value) {
            st->value -= w->want;
            queue_remove(&st->queue, w);
            w->state = FS_W_GRANTED;
            /* Signalled under the mutex: the node is on the waiter's stack and
             * may vanish as soon as the mutex is released. */
            pthread_cond_signal(&w->wakeup);
        }
    } else {
        fs_count left = st->value;
        for (w = st->queue.head; w != NULL && w->want <= left; w = w->next) {
            left -= w->want;
            pthread_cond_signal(&w->wakeup);
        }
    }
}

static fs_count saturating_add(fs_count a, fs_count b)
{
    return a > LLONG_MAX - b ? LLONG_MAX : a + b;
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
    s->st.value = value;
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
    if (atomic_load(&s->fork_gen) == atomic_load(&g_fork_gen))
        pthread_mutex_destroy(&s->mutex);
}

static int request_is_valid(const fs_state *st, fs_count n)
{
    // A bounded semaphore can never hold more than its bound.
    return n >= 1 && (st->max_value < 0 || n <= st->max_value);
}

int fs_sem_try_acquire(fs_sem *s, fs_count n)
{
    int rc;
    sem_lock(s);
    if (!request_is_valid(&s->st, n))
        rc = FS_EINVAL;
    else if (state_can_take_now(&s->st, n)) {
        s->st.value -= n;
        rc = FS_OK;
    } else
        rc = FS_WOULD_BLOCK;
    sem_unlock(s);
    return rc;
}

/* Puts w at the tail; the caller holds the lock. */
static int enqueue_locked(fs_sem *s, fs_waiter *w, fs_count n)
{
    if (pthread_cond_init(&w->wakeup, &g_condattr) != 0)
        return FS_ENOMEM;
    w->want = n;
    w->state = FS_W_WAITING;
    w->fork_gen = atomic_load_explicit(&s->fork_gen, memory_order_relaxed);
    queue_push(&s->st.queue, w);
    return FS_QUEUED;
}

int fs_sem_acquire_or_enqueue(fs_sem *s, fs_waiter *w, fs_count n)
{
    int rc;
    sem_lock(s);
    if (!request_is_valid(&s->st, n))
        rc = FS_EINVAL;
    else if (state_can_take_now(&s->st, n)) {
        s->st.value -= n;
        rc = FS_OK;
    } else
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
        if (state_can_take_now(st, w->want)) {
            st->value -= w->want;
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
        if (!st->fair && w->want <= st->value) {
            // Non-fair: a woken waiter competes for free permits.
            st->value -= w->want;
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
        // Granted in the same instant: hand the permits on, as a release would.
        st->value = saturating_add(st->value, w->want);
        /* Granted permits are held, not free, so an over-release of a bounded
         * semaphore was accepted while this node held them; it ends here: a
         * bounded semaphore never has more than its bound. */
        if (st->max_value >= 0 && st->value > st->max_value)
            st->value = st->max_value;
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
    int rc = FS_OK;
    if (n < 1)
        return FS_EINVAL;
    sem_lock(s);
    fs_state *st = &s->st;
    if (st->max_value >= 0 && n > st->max_value - st->value)
        rc = FS_OVER_BOUND;
    else if (n > LLONG_MAX - st->value)
        rc = FS_OVERFLOW;
    else {
        st->value += n;
        state_dispatch(st);
    }
    sem_unlock(s);
    return rc;
}

fs_count fs_sem_value(fs_sem *s)
{
    sem_lock(s);
    fs_count v = s->st.value;
    sem_unlock(s);
    return v;
}

size_t fs_sem_waiting(fs_sem *s)
{
    sem_lock(s);
    size_t n = s->st.queue.length;
    sem_unlock(s);
    return n;
}
