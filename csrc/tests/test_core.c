/*
 * test_core.c - drives csrc/fastsem_core.c from many pthreads (no Python).
 *
 * Build (see run_tests.sh, which also builds TSan and ASan+UBSan variants):
 *
 *     gcc -O2 -Wall -Wextra -Werror -std=c11 -pthread -Icsrc \
 *         csrc/tests/test_core.c csrc/fastsem_core.c -o test_core
 *
 * Environment:
 *     FASTSEM_TEST_SCALE      multiplier for iteration counts (default 1.0;
 *                             run_tests.sh uses less under the sanitizers)
 *     FASTSEM_TEST_SKIP_FORK  1: skip the fork test; busy: skip only its part
 *                             that forks while another thread is inside
 *     FASTSEM_TEST_TIMEOUT    per-test watchdog in seconds (default 60)
 *     FASTSEM_TEST_ONLY       run only the test of this name
 *
 * Every wait in the tests is bounded: a hang (a lost wake-up in the core)
 * shows up as a failed WAIT_FOR or as the watchdog firing, never as a stuck
 * run.
 */
#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200809L
#undef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE /* syscall(), for the thread id */
#endif

#include "fastsem_core.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#if defined(__SANITIZE_THREAD__)
#define FS_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FS_TEST_TSAN 1
#endif
#endif
#ifndef FS_TEST_TSAN
#define FS_TEST_TSAN 0
#endif

/* ------------------------------------------------------------------------ */
/* Checks and helpers.                                                      */

static const char *g_test = "?";

static void fail_at(const char *file, int line, const char *expr)
{
    fprintf(stderr, "%s:%d: [%s] CHECK failed: %s\n", file, line, g_test, expr);
    fflush(stdout);
    fflush(stderr);
    _exit(1); /* also from a forked child or a worker thread */
}

static void fail_eq(const char *file, int line, const char *a, const char *b,
                    long long va, long long vb)
{
    fprintf(stderr, "%s:%d: [%s] CHECK failed: %s == %s (%lld != %lld)\n", file,
            line, g_test, a, b, va, vb);
    fflush(stdout);
    fflush(stderr);
    _exit(1);
}

#define CHECK(e)                                                               \
    do {                                                                       \
        if (!(e))                                                              \
            fail_at(__FILE__, __LINE__, #e);                                   \
    } while (0)

#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        long long va_ = (long long)(a), vb_ = (long long)(b);                  \
        if (va_ != vb_)                                                        \
            fail_eq(__FILE__, __LINE__, #a, #b, va_, vb_);                     \
    } while (0)

static double g_scale = 1.0;
static unsigned g_timeout_s = 60;

/* Sanitizers make everything slower: give a condition this long to happen. */
#define WAIT_LIMIT_NS ((fs_time)10 * 1000000000)

static void nap_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Polls until expr holds; fails the test after WAIT_LIMIT_NS. */
#define WAIT_FOR(expr)                                                         \
    do {                                                                       \
        fs_time end_ = fs_now() + WAIT_LIMIT_NS;                               \
        while (!(expr)) {                                                      \
            if (fs_now() > end_)                                               \
                fail_at(__FILE__, __LINE__, "timed out waiting for " #expr);   \
            nap_us(50);                                                        \
        }                                                                      \
    } while (0)

static int scaled(int n)
{
    double v = n * g_scale;
    return v < 1 ? 1 : (int)v;
}

static uint64_t rnd(uint64_t *s)
{
    /* xorshift64*: cheap, per thread, reproducible from the seed */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void spin(unsigned n)
{
    for (volatile unsigned i = 0; i < n; i++)
        ;
}

static void start_thread(pthread_t *th, void *(*fn)(void *), void *arg)
{
    CHECK(pthread_create(th, NULL, fn, arg) == 0);
}

static void join_thread(pthread_t th)
{
    CHECK(pthread_join(th, NULL) == 0);
}

/* The caller's part of a wait that is over (the calling convention in
 * fastsem_core.h): it wakes the next waiter of its relay. Returns rc. */
static int relay_if_owed(fs_sem *s, fs_waiter *w, int rc)
{
    if (rc != FS_PAUSED && fs_waiter_relay_owed(w))
        fs_sem_relay(s);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* A waiting thread: acquire_or_enqueue + wait, records what happened.      */

typedef struct order_rec {
    pthread_mutex_t m;
    int ids[64];
    int n;
} order_rec;

static int order_count(order_rec *r)
{
    pthread_mutex_lock(&r->m);
    int n = r->n;
    pthread_mutex_unlock(&r->m);
    return n;
}

static int order_at(order_rec *r, int i)
{
    pthread_mutex_lock(&r->m);
    int id = r->ids[i];
    pthread_mutex_unlock(&r->m);
    return id;
}

typedef struct waiter_t {
    fs_sem *s;
    int id;
    fs_count want;
    double timeout_s;  /* > 0: deadline = start + timeout_s; else forever */
    int release_after; /* give the permits back after the grant */
    order_rec *rec;    /* optional: grant order */
    long pause_us;     /* > 0: wait in slices of this long (FS_PAUSED, wait
                          again), as the binding does to run signal handlers */
    atomic_int first_rc; /* what acquire_or_enqueue said, -1 before */
    atomic_int rc;       /* final status, -1 before */
    atomic_int spun;     /* fs_waiter_spun after the last fs_sem_wait */
    atomic_long tid;     /* Linux: the thread's id, for its state in /proc */
    pthread_t th;
} waiter_t;

/* Linux: waits until thread `tid` has been asleep ('S' in /proc) at ten
 * looks in a row, 0.5 ms apart (at most 10 s); elsewhere returns at once. */
static void wait_until_asleep(long tid)
{
#if defined(__linux__)
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/stat", tid);
    for (int asleep = 0, looks = 0; asleep < 10 && looks < 20000; looks++) {
        char buf[512] = {0};
        FILE *f = fopen(path, "r");
        if (f == NULL)
            return;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        const char *close_paren = len ? strrchr(buf, ')') : NULL;
        asleep = close_paren != NULL && close_paren[1] == ' ' && close_paren[2] == 'S'
                     ? asleep + 1
                     : 0;
        nap_us(500);
    }
#else
    (void)tid;
#endif
}

static void *waiter_main(void *p)
{
    waiter_t *a = p;
    fs_waiter w;
#if defined(__linux__)
    atomic_store(&a->tid, (long)syscall(SYS_gettid));
#endif
    fs_time deadline = a->timeout_s > 0 ? fs_deadline_after(a->timeout_s) : FS_FOREVER;
    int rc = fs_sem_acquire_or_enqueue(a->s, &w, a->want);
    atomic_store(&a->first_rc, rc);
    while (rc == FS_QUEUED) {
        fs_time wake_by = a->pause_us > 0 ? fs_now() + (fs_time)a->pause_us * 1000 : FS_FOREVER;
        rc = relay_if_owed(a->s, &w, fs_sem_wait(a->s, &w, deadline, wake_by));
        atomic_store(&a->spun, fs_waiter_spun(&w));
        if (rc == FS_PAUSED) /* paused, or (non-fair) woken to compete */
            rc = FS_QUEUED;
    }
    CHECK(rc == FS_OK || rc == FS_TIMEOUT || rc == FS_CLOSED || rc == FS_OVER_MAX);
    if (rc == FS_OK && a->rec) {
        pthread_mutex_lock(&a->rec->m);
        a->rec->ids[a->rec->n++] = a->id;
        pthread_mutex_unlock(&a->rec->m);
    }
    atomic_store(&a->rc, rc);
    if (rc == FS_OK && a->release_after)
        CHECK_EQ(fs_sem_release(a->s, a->want), FS_OK);
    return NULL;
}

static void waiter_start_pausing(waiter_t *a, fs_sem *s, int id, fs_count want,
                                 double timeout_s, int release_after,
                                 order_rec *rec, long pause_us)
{
    a->s = s;
    a->id = id;
    a->want = want;
    a->timeout_s = timeout_s;
    a->release_after = release_after;
    a->rec = rec;
    a->pause_us = pause_us;
    atomic_init(&a->first_rc, -1);
    atomic_init(&a->rc, -1);
    atomic_init(&a->spun, -1);
    start_thread(&a->th, waiter_main, a);
}

static void waiter_start(waiter_t *a, fs_sem *s, int id, fs_count want,
                         double timeout_s, int release_after, order_rec *rec)
{
    waiter_start_pausing(a, s, id, want, timeout_s, release_after, rec, 0);
}

static int waiter_rc(waiter_t *a)
{
    return atomic_load(&a->rc);
}

/* ------------------------------------------------------------------------ */
/* basic: argument errors and counting, single-threaded.                    */

static void test_basic(void)
{
    fs_sem s;
    for (int fair = 0; fair <= 1; fair++) {
        CHECK_EQ(fs_sem_init(&s, -1, -1, fair), FS_BAD_VALUE);
        CHECK_EQ(fs_sem_init(&s, -1, 3, fair), FS_BAD_VALUE);
        CHECK_EQ(fs_sem_init(&s, 4, 3, fair), FS_OVER_BOUND);
        CHECK_EQ(fs_sem_init(&s, LLONG_MIN, -1, fair), FS_BAD_VALUE);

        /* Bounded, starting full. */
        CHECK_EQ(fs_sem_init(&s, 3, 3, fair), FS_OK);
        CHECK_EQ(fs_sem_fair(&s), fair);
        CHECK_EQ(fs_sem_value(&s), 3);
        CHECK_EQ(fs_sem_waiting(&s), 0);
        CHECK_EQ(fs_sem_try_acquire(&s, 2), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 1);
        CHECK_EQ(fs_sem_try_acquire(&s, 2), FS_WOULD_BLOCK);
        CHECK_EQ(fs_sem_value(&s), 1);
        CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OK);
        CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_WOULD_BLOCK);
        CHECK_EQ(fs_sem_value(&s), 0);
        /* n < 1 */
        CHECK_EQ(fs_sem_try_acquire(&s, 0), FS_BAD_COUNT);
        CHECK_EQ(fs_sem_try_acquire(&s, -1), FS_BAD_COUNT);
        CHECK_EQ(fs_sem_try_acquire(&s, LLONG_MIN), FS_BAD_COUNT);
        CHECK_EQ(fs_sem_release(&s, 0), FS_BAD_COUNT);
        CHECK_EQ(fs_sem_release(&s, -5), FS_BAD_COUNT);
        CHECK_EQ(fs_sem_release(&s, LLONG_MIN), FS_BAD_COUNT);
        fs_waiter w;
        CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 0), FS_BAD_COUNT);
        CHECK_EQ(fs_sem_waiting(&s), 0);
        /* More than the bound can ever hold: an error, not a wait forever. */
        CHECK_EQ(fs_sem_try_acquire(&s, 4), FS_OVER_MAX);
        CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 4), FS_OVER_MAX);
        CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, LLONG_MAX), FS_OVER_MAX);
        CHECK_EQ(fs_sem_waiting(&s), 0);
        CHECK_EQ(fs_sem_value(&s), 0);
        /* Release up to the bound, and no further. */
        CHECK_EQ(fs_sem_release(&s, 3), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 3);
        CHECK_EQ(fs_sem_release(&s, 1), FS_OVER_BOUND);
        CHECK_EQ(fs_sem_release(&s, LLONG_MAX), FS_OVER_BOUND);
        CHECK_EQ(fs_sem_value(&s), 3);
        CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OK);
        CHECK_EQ(fs_sem_release(&s, 2), FS_OVER_BOUND);
        CHECK_EQ(fs_sem_value(&s), 2);
        CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 3);
        /* acquire_or_enqueue takes at once when it can. */
        CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 3), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 0);
        CHECK_EQ(fs_sem_waiting(&s), 0);
        CHECK_EQ(fs_sem_release(&s, 3), FS_OK);
        fs_sem_destroy(&s);

        /* A bound of 0 holds nothing. */
        CHECK_EQ(fs_sem_init(&s, 0, 0, fair), FS_OK);
        CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OVER_MAX);
        CHECK_EQ(fs_sem_release(&s, 1), FS_OVER_BOUND);
        CHECK_EQ(fs_sem_value(&s), 0);
        fs_sem_destroy(&s);

        /* Unbounded (any negative max_value), up to FS_COUNT_MAX. */
        CHECK_EQ(fs_sem_init(&s, FS_COUNT_MAX + 1, -7, fair), FS_OVERFLOW);
        CHECK_EQ(fs_sem_init(&s, FS_COUNT_MAX - 1, -7, fair), FS_OK);
        CHECK_EQ(fs_sem_try_acquire(&s, FS_COUNT_MAX + 1), FS_OVERFLOW);
        CHECK_EQ(fs_sem_try_acquire(&s, LLONG_MAX), FS_OVERFLOW);
        CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
        CHECK_EQ(fs_sem_value(&s), FS_COUNT_MAX);
        CHECK_EQ(fs_sem_release(&s, 1), FS_OVERFLOW);
        CHECK_EQ(fs_sem_release(&s, FS_COUNT_MAX), FS_OVERFLOW);
        CHECK_EQ(fs_sem_value(&s), FS_COUNT_MAX);
        CHECK_EQ(fs_sem_try_acquire(&s, FS_COUNT_MAX), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 0);
        CHECK_EQ(fs_sem_release(&s, FS_COUNT_MAX), FS_OK);
        CHECK_EQ(fs_sem_try_acquire(&s, FS_COUNT_MAX - 5), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 5);
        CHECK_EQ(fs_sem_release(&s, FS_COUNT_MAX - 4), FS_OVERFLOW);
        CHECK_EQ(fs_sem_value(&s), 5);
        CHECK_EQ(fs_sem_release(&s, FS_COUNT_MAX - 5), FS_OK);
        CHECK_EQ(fs_sem_value(&s), FS_COUNT_MAX);
        fs_sem_destroy(&s);

        CHECK_EQ(fs_sem_init(&s, 0, -1, fair), FS_OK);
        CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_WOULD_BLOCK);
        CHECK_EQ(fs_sem_release(&s, 2), FS_OK);
        CHECK_EQ(fs_sem_try_acquire(&s, 3), FS_WOULD_BLOCK);
        CHECK_EQ(fs_sem_try_acquire(&s, 2), FS_OK);
        fs_sem_destroy(&s);
    }

    /* Time helpers. */
    fs_time now = fs_now();
    CHECK(now > 0);
    CHECK(fs_deadline_after(0) >= now);
    CHECK(fs_deadline_after(0) <= fs_now());
    CHECK(fs_deadline_after(-1) <= fs_now());
    CHECK(fs_deadline_after(NAN) <= fs_now());
    CHECK_EQ(fs_deadline_after(1e300), FS_FOREVER);
    CHECK_EQ(fs_deadline_after(INFINITY), FS_FOREVER);
    CHECK(fs_deadline_after(0.001) >= now + 1000000);
    CHECK(fs_deadline_after(1e-9) > now);
}

/* ------------------------------------------------------------------------ */
/* fifo_order: grants follow arrival order.                                 */

#define FIFO_K 16

static void test_fifo_order(void)
{
    fs_sem s;
    order_rec rec;
    waiter_t ws[FIFO_K];
    CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
    CHECK(pthread_mutex_init(&rec.m, NULL) == 0);

    /* One release at a time: the i-th arrival gets the i-th permit. */
    rec.n = 0;
    for (int i = 0; i < FIFO_K; i++) {
        /* odd ones wait in 300us slices: pausing must not cost the place */
        waiter_start_pausing(&ws[i], &s, i, 1, 0, 0, &rec, i % 2 ? 300 : 0);
        WAIT_FOR(fs_sem_waiting(&s) == (size_t)i + 1);
        WAIT_FOR(atomic_load(&ws[i].first_rc) != -1);
        CHECK_EQ(atomic_load(&ws[i].first_rc), FS_QUEUED);
    }
    for (int i = 0; i < FIFO_K; i++) {
        CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
        /* Fair handoff is synchronous: the queue shrank inside release. */
        CHECK_EQ(fs_sem_waiting(&s), FIFO_K - i - 1);
        CHECK_EQ(fs_sem_value(&s), 0);
        WAIT_FOR(order_count(&rec) == i + 1);
        CHECK_EQ(order_at(&rec, i), i);
    }
    for (int i = 0; i < FIFO_K; i++) {
        join_thread(ws[i].th);
        CHECK_EQ(waiter_rc(&ws[i]), FS_OK);
    }
    CHECK_EQ(fs_sem_value(&s), 0);

    /* release(K) at once: everybody goes. */
    rec.n = 0;
    for (int i = 0; i < FIFO_K; i++) {
        waiter_start(&ws[i], &s, i, 1, 0, 0, &rec);
        WAIT_FOR(fs_sem_waiting(&s) == (size_t)i + 1);
    }
    CHECK_EQ(fs_sem_release(&s, FIFO_K), FS_OK);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    CHECK_EQ(fs_sem_value(&s), 0);
    WAIT_FOR(order_count(&rec) == FIFO_K);
    for (int i = 0; i < FIFO_K; i++) {
        join_thread(ws[i].th);
        CHECK_EQ(waiter_rc(&ws[i]), FS_OK);
    }

    /* Mixed sizes, one big release that does not cover everybody: a prefix
     * of the queue goes, in order. wants: 1 2 1 3 1 ; release(5) -> 1,2,1
     * granted (4 used), head now wants 3 > 1 left. */
    static const fs_count wants[] = {1, 2, 1, 3, 1};
    const int nw = (int)(sizeof wants / sizeof wants[0]);
    rec.n = 0;
    for (int i = 0; i < nw; i++) {
        waiter_start_pausing(&ws[i], &s, i, wants[i], 0, 0, &rec, i % 2 ? 0 : 300);
        WAIT_FOR(fs_sem_waiting(&s) == (size_t)i + 1);
    }
    CHECK_EQ(fs_sem_release(&s, 5), FS_OK);
    CHECK_EQ(fs_sem_waiting(&s), 2);
    CHECK_EQ(fs_sem_value(&s), 1);
    WAIT_FOR(order_count(&rec) == 3);
    nap_us(2000);
    CHECK_EQ(order_count(&rec), 3);
    CHECK_EQ(waiter_rc(&ws[3]), -1);
    CHECK_EQ(waiter_rc(&ws[4]), -1);
    CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_WOULD_BLOCK);
    CHECK_EQ(fs_sem_release(&s, 3), FS_OK); /* 4 free: 3 to id 3, 1 to id 4 */
    WAIT_FOR(order_count(&rec) == 5);
    CHECK_EQ(fs_sem_value(&s), 0);
    for (int i = 0; i < nw; i++) {
        join_thread(ws[i].th);
        CHECK_EQ(waiter_rc(&ws[i]), FS_OK);
    }
    /* Grants happen in queue order inside one release, but the threads
     * record in whatever order they wake: only check the set per batch. */
    int seen = 0;
    for (int i = 0; i < 3; i++)
        seen |= 1 << order_at(&rec, i);
    CHECK_EQ(seen, 0x7);

    pthread_mutex_destroy(&rec.m);
    fs_sem_destroy(&s);
}

/* ------------------------------------------------------------------------ */
/* no_barging: a released permit goes to the queued waiter, not the releaser. */

static void test_no_barging(void)
{
    const int rounds = 200;
    fs_sem s;

    /* Fair. */
    CHECK_EQ(fs_sem_init(&s, 1, -1, 1), FS_OK);
    for (int i = 0; i < rounds; i++) {
        waiter_t a;
        CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OK);
        /* a keeps the permit: main gives it back after looking. */
        waiter_start(&a, &s, 0, 1, 0, 0, NULL);
        WAIT_FOR(fs_sem_waiting(&s) == 1);
        CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
        CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_WOULD_BLOCK);
        fs_waiter w;
        CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_QUEUED);
        CHECK_EQ(fs_sem_cancel(&s, &w), 0);
        join_thread(a.th);
        CHECK_EQ(waiter_rc(&a), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 0);
        CHECK_EQ(fs_sem_release(&s, 1), FS_OK); /* a's permit */
        CHECK_EQ(fs_sem_value(&s), 1);
        CHECK_EQ(fs_sem_waiting(&s), 0);
    }
    fs_sem_destroy(&s);

    /* Fair: free permits do not let a small request pass a big queued one. */
    CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
    {
        waiter_t a;
        waiter_start(&a, &s, 0, 2, 0, 1, NULL);
        WAIT_FOR(fs_sem_waiting(&s) == 1);
        CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 1);
        CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_WOULD_BLOCK);
        fs_waiter w;
        CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_QUEUED);
        CHECK_EQ(fs_sem_waiting(&s), 2);
        CHECK_EQ(fs_sem_cancel(&s, &w), 0);
        CHECK_EQ(fs_sem_waiting(&s), 1);
        CHECK_EQ(fs_sem_value(&s), 1);
        CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
        join_thread(a.th);
        CHECK_EQ(waiter_rc(&a), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 2);
    }
    fs_sem_destroy(&s);

    /* Non-fair: the releaser may take the permit back before the woken
     * waiter runs. Must happen at least once in `rounds`. */
    int barged = 0;
    CHECK_EQ(fs_sem_init(&s, 1, -1, 0), FS_OK);
    for (int i = 0; i < rounds; i++) {
        waiter_t a;
        CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OK);
        waiter_start(&a, &s, 0, 1, 0, 1, NULL);
        WAIT_FOR(fs_sem_waiting(&s) == 1);
        CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
        int rc = fs_sem_try_acquire(&s, 1);
        CHECK(rc == FS_OK || rc == FS_WOULD_BLOCK);
        if (rc == FS_OK) {
            barged++;
            CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
        }
        join_thread(a.th);
        CHECK_EQ(waiter_rc(&a), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 1);
        CHECK_EQ(fs_sem_waiting(&s), 0);
    }
    CHECK(barged >= 1);
    fs_sem_destroy(&s);
    printf("    non-fair: releaser re-took the permit in %d/%d rounds\n", barged, rounds);
}

/* ------------------------------------------------------------------------ */
/* head_of_line: a big request at the head holds back smaller ones.         */

static void test_head_of_line(void)
{
    fs_sem s;
    waiter_t a, b;
    CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
    waiter_start(&a, &s, 0, 3, 0, 0, NULL);
    WAIT_FOR(fs_sem_waiting(&s) == 1);
    /* B steps out of its wait every 200us and looks again: even so it must
     * not take the free permits that A is waiting to collect. */
    waiter_start_pausing(&b, &s, 1, 1, 0, 0, NULL, 200);
    WAIT_FOR(fs_sem_waiting(&s) == 2);

    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_value(&s), 2);
    CHECK_EQ(fs_sem_waiting(&s), 2);
    /* Nobody arriving now may pass A either. */
    CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_WOULD_BLOCK);
    CHECK_EQ(fs_sem_try_acquire(&s, 2), FS_WOULD_BLOCK);
    nap_us(20000);
    CHECK_EQ(waiter_rc(&a), -1);
    CHECK_EQ(waiter_rc(&b), -1);

    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    WAIT_FOR(waiter_rc(&a) == FS_OK);
    CHECK_EQ(fs_sem_value(&s), 0);
    CHECK_EQ(fs_sem_waiting(&s), 1);
    nap_us(2000);
    CHECK_EQ(waiter_rc(&b), -1);

    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    WAIT_FOR(waiter_rc(&b) == FS_OK);
    CHECK_EQ(fs_sem_value(&s), 0);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    join_thread(a.th);
    join_thread(b.th);
    fs_sem_destroy(&s);
}

/* ------------------------------------------------------------------------ */
/* timeout                                                                  */

static void test_timeout(void)
{
    for (int fair = 1; fair >= 0; fair--) {
        fs_sem s;
        fs_waiter w;
        CHECK_EQ(fs_sem_init(&s, 0, -1, fair), FS_OK);

        /* A plain timeout. */
        fs_time t0 = fs_now();
        fs_time deadline = fs_deadline_after(0.05);
        CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_QUEUED);
        CHECK_EQ(fs_sem_waiting(&s), 1);
        int rc;
        while ((rc = fs_sem_wait(&s, &w, deadline, FS_FOREVER)) == FS_PAUSED)
            ;
        CHECK_EQ(rc, FS_TIMEOUT);
        fs_time elapsed = fs_now() - t0;
        CHECK(elapsed >= 50000000);
        CHECK_EQ(fs_sem_waiting(&s), 0);
        CHECK_EQ(fs_sem_value(&s), 0);

        /* A deadline already past: times out at once. */
        CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_QUEUED);
        CHECK_EQ(fs_sem_wait(&s, &w, fs_now(), FS_FOREVER), FS_TIMEOUT);
        CHECK_EQ(fs_sem_waiting(&s), 0);

        /* Granted before the (past) deadline is looked at: success. */
        CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_QUEUED);
        CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
        CHECK_EQ(fs_sem_wait(&s, &w, fs_now() - 1, FS_FOREVER), FS_OK);
        CHECK_EQ(fs_sem_waiting(&s), 0);
        CHECK_EQ(fs_sem_value(&s), 0);

        /* A departing head re-dispatches: A wants 2 (times out), B wants 1
         * behind it; 1 permit is free all along, but only B can use it. */
        waiter_t a, b;
        waiter_start(&a, &s, 0, 2, 0.3, 0, NULL);
        WAIT_FOR(fs_sem_waiting(&s) == 1);
        waiter_start(&b, &s, 1, 1, 0, 0, NULL);
        WAIT_FOR(fs_sem_waiting(&s) == 2);
        CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
        CHECK_EQ(fs_sem_waiting(&s), 2); /* else A timed out already: too slow */
        CHECK_EQ(waiter_rc(&b), -1);
        WAIT_FOR(waiter_rc(&a) != -1);
        CHECK_EQ(waiter_rc(&a), FS_TIMEOUT);
        /* B is granted by A's departure alone: nobody releases any more. */
        WAIT_FOR(waiter_rc(&b) != -1);
        CHECK_EQ(waiter_rc(&b), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 0);
        CHECK_EQ(fs_sem_waiting(&s), 0);
        join_thread(a.th);
        join_thread(b.th);
        fs_sem_destroy(&s);
    }
}

/* ------------------------------------------------------------------------ */
/* relay: waiters decided together are woken one after the other.          */

typedef struct relay_waiter {
    fs_sem *s;
    long pause_us;       /* > 0: wait in slices (wakes by itself meanwhile) */
    atomic_int rc;       /* final status, -1 before */
    atomic_int owed;     /* fs_sem_wait said: call fs_sem_relay */
    atomic_int may_relay; /* the test lets it call fs_sem_relay */
    pthread_t th;
} relay_waiter;

static void *relay_waiter_main(void *p)
{
    relay_waiter *a = p;
    fs_waiter w;
    int rc = fs_sem_acquire_or_enqueue(a->s, &w, 1);
    while (rc == FS_QUEUED) {
        fs_time wake_by = a->pause_us > 0 ? fs_now() + (fs_time)a->pause_us * 1000 : FS_FOREVER;
        rc = fs_sem_wait(a->s, &w, FS_FOREVER, wake_by);
        if (rc == FS_PAUSED)
            rc = FS_QUEUED;
    }
    atomic_store(&a->owed, fs_waiter_relay_owed(&w));
    atomic_store(&a->rc, rc);
    if (fs_waiter_relay_owed(&w)) {
        while (!atomic_load(&a->may_relay))
            nap_us(200);
        fs_sem_relay(a->s);
    }
    return NULL;
}

static void relay_waiter_start(relay_waiter *a, fs_sem *s, long pause_us, int may_relay)
{
    a->s = s;
    a->pause_us = pause_us;
    atomic_init(&a->rc, -1);
    atomic_init(&a->owed, 0);
    atomic_init(&a->may_relay, may_relay);
    start_thread(&a->th, relay_waiter_main, a);
}

static size_t relay_length(fs_sem *s)
{
    pthread_mutex_lock(&s->mutex);
    size_t n = s->st.relay.length;
    pthread_mutex_unlock(&s->mutex);
    return n;
}

#define RELAY_N 3

static void test_relay(void)
{
    fs_sem s;
    fs_waiter w1, w2;
    relay_waiter a[RELAY_N];

    /* A granted node still in the relay, cancelled: its permit is passed on
     * and it leaves the relay (one thread may queue two nodes). */
    CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w1, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w2, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_release(&s, 2), FS_OK);
    CHECK_EQ(relay_length(&s), 1); /* w1 woken, w2 waits its turn */
    CHECK_EQ(fs_sem_cancel(&s, &w2), 1);
    CHECK_EQ(relay_length(&s), 0);
    CHECK_EQ(fs_sem_value(&s), 1);
    CHECK_EQ(fs_sem_wait(&s, &w1, FS_FOREVER, FS_FOREVER), FS_OK);
    CHECK_EQ(fs_waiter_relay_owed(&w1), 0);
    /* Waits are counted at the grant; the grant given back is not one. */
    fs_stats st;
    fs_sem_statistics(&s, &st);
    CHECK_EQ(st.acquisitions, 1);
    CHECK_EQ(st.contended, 1);
    CHECK_EQ(st.interrupts, 1);
    uint64_t in_histogram = 0;
    for (int i = 0; i < FS_HIST_BUCKETS; i++)
        in_histogram += st.histogram[i];
    CHECK_EQ(in_histogram, 1);
    fs_sem_destroy(&s);

    /* The first returns owing the relay; the second, waited for before its
     * turn, leaves the relay by itself and owes nothing. */
    CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w1, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w2, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_release(&s, 2), FS_OK);
    CHECK_EQ(fs_sem_wait(&s, &w1, FS_FOREVER, FS_FOREVER), FS_OK);
    CHECK_EQ(fs_waiter_relay_owed(&w1), 1);
    CHECK_EQ(fs_sem_wait(&s, &w2, FS_FOREVER, FS_FOREVER), FS_OK);
    CHECK_EQ(fs_waiter_relay_owed(&w2), 0);
    CHECK_EQ(relay_length(&s), 0);
    fs_sem_relay(&s); /* owed, but nobody is left: nothing happens */
    CHECK_EQ(fs_sem_value(&s), 0);

    /* A cancel (its caller is unwinding) passes the relay on at once: the
     * woken w1 goes, w2 is woken in its place. */
    fs_waiter w3;
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w1, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w2, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w3, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_release(&s, 3), FS_OK);
    CHECK_EQ(relay_length(&s), 2);
    CHECK_EQ(fs_sem_cancel(&s, &w1), 1);
    CHECK_EQ(relay_length(&s), 1);
    CHECK_EQ(fs_sem_value(&s), 1);
    CHECK_EQ(fs_sem_wait(&s, &w2, FS_FOREVER, FS_FOREVER), FS_OK);
    CHECK_EQ(fs_waiter_relay_owed(&w2), 1);
    fs_sem_relay(&s);
    CHECK_EQ(relay_length(&s), 0);
    CHECK_EQ(fs_sem_wait(&s, &w3, FS_FOREVER, FS_FOREVER), FS_OK);
    CHECK_EQ(fs_waiter_relay_owed(&w3), 0);
    CHECK_EQ(fs_sem_value(&s), 1);
    fs_sem_destroy(&s);

    /* With threads: nobody runs before the relay reaches it, that is, before
     * the one woken before it calls fs_sem_relay. */
    CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
    for (int i = 0; i < RELAY_N; i++) {
        relay_waiter_start(&a[i], &s, 0, i > 0);
        WAIT_FOR(fs_sem_waiting(&s) == (size_t)i + 1);
    }
    CHECK_EQ(fs_sem_release(&s, RELAY_N), FS_OK);
    WAIT_FOR(atomic_load(&a[0].rc) != -1);
    CHECK_EQ(atomic_load(&a[0].rc), FS_OK);
    CHECK_EQ(atomic_load(&a[0].owed), 1);
    nap_us(50000);
    for (int i = 1; i < RELAY_N; i++)
        CHECK_EQ(atomic_load(&a[i].rc), -1); /* granted, asleep, not woken */
    CHECK_EQ(relay_length(&s), RELAY_N - 1);
    atomic_store(&a[0].may_relay, 1);
    for (int i = 0; i < RELAY_N; i++) {
        join_thread(a[i].th);
        CHECK_EQ(atomic_load(&a[i].rc), FS_OK);
        CHECK_EQ(atomic_load(&a[i].owed), i < RELAY_N - 1);
    }
    CHECK_EQ(relay_length(&s), 0);
    CHECK_EQ(fs_sem_value(&s), 0);

    /* The relay is held: waiters that wake by themselves (in slices, as the
     * binding's main thread does) find their grant and leave the relay. */
    for (int i = 0; i < RELAY_N; i++) {
        relay_waiter_start(&a[i], &s, 2000, 0);
        WAIT_FOR(fs_sem_waiting(&s) == (size_t)i + 1);
    }
    CHECK_EQ(fs_sem_release(&s, RELAY_N), FS_OK);
    for (int i = 0; i < RELAY_N; i++) {
        WAIT_FOR(atomic_load(&a[i].rc) != -1);
        CHECK_EQ(atomic_load(&a[i].rc), FS_OK);
    }
    CHECK_EQ(relay_length(&s), 0);
    for (int i = 0; i < RELAY_N; i++) {
        atomic_store(&a[i].may_relay, 1);
        join_thread(a[i].th);
    }
    fs_sem_destroy(&s);

    /* close and release(n) wake everyone, in turn, each woken by the one
     * before; the last owes nothing. */
    for (int closing = 0; closing <= 1; closing++) {
        CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
        for (int i = 0; i < RELAY_N; i++) {
            relay_waiter_start(&a[i], &s, 0, 1);
            WAIT_FOR(fs_sem_waiting(&s) == (size_t)i + 1);
        }
        if (closing)
            fs_sem_close(&s);
        else
            CHECK_EQ(fs_sem_release(&s, RELAY_N), FS_OK);
        for (int i = 0; i < RELAY_N; i++) {
            join_thread(a[i].th);
            CHECK_EQ(atomic_load(&a[i].rc), closing ? FS_CLOSED : FS_OK);
            CHECK_EQ(atomic_load(&a[i].owed), i < RELAY_N - 1);
        }
        CHECK_EQ(relay_length(&s), 0);
        fs_sem_destroy(&s);
    }
}

/* ------------------------------------------------------------------------ */
/* spin: the head and, in fair mode, the FS_YIELD_SPINNERS behind it look   */
/* for their grant before they sleep (w->spun); the next sleeps at once;     */
/* budgets of 0 turn it off.                                                 */

static void test_spin(void)
{
    enum { SPINNERS = 1 + FS_YIELD_SPINNERS, N = SPINNERS + 1 };
    fs_sem s;
    waiter_t ws[N];
    for (int mode = 0; mode < 3; mode++) {
        int on = mode != 1, fair = mode != 2;
        int spinners = !on ? 0 : fair ? SPINNERS : 1;
        CHECK_EQ(fs_sem_init(&s, 0, -1, fair), FS_OK);
        /* Budgets far longer than the test: a grant can only come while the
         * spinners still look, never after they gave up and slept. */
        fs_time budget = on ? (fs_time)60 * 1000000000 : 0;
        fs_sem_set_spin(&s, budget, budget);
        for (int i = 0; i < N; i++) {
            waiter_start(&ws[i], &s, i, 1, 0, 0, NULL);
            WAIT_FOR(fs_sem_waiting(&s) == (size_t)i + 1);
        }
        /* All past their last look at the queue: the ones behind the
         * spinners asleep (a waiter that had not looked yet when the ones
         * before it were served would look as the head, and spin). */
        nap_us(2000);
        for (int i = spinners; i < N; i++)
            wait_until_asleep(atomic_load(&ws[i].tid));
        for (int i = 0; i < N; i++) {
            CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
            join_thread(ws[i].th);
            CHECK_EQ(waiter_rc(&ws[i]), FS_OK);
            /* The first `spinners` spun; the rest (queued behind them when
             * they chose) slept, and nothing wakes them to spin later. */
            CHECK_EQ(atomic_load(&ws[i].spun), i < spinners);
        }
        fs_sem_destroy(&s);
    }
}

/* ------------------------------------------------------------------------ */
/* compete: a non-fair waiter woken to compete returns FS_PAUSED in its     */
/* place, and its caller competes: fs_sem_wait(..., 0) never sleeps. Fair   */
/* mode hands permits over instead.                                          */

typedef struct {
    fs_sem *s;
    long us;
} delayed_release_t;

static void *delayed_release_main(void *p)
{
    delayed_release_t *d = p;
    nap_us(d->us);
    CHECK_EQ(fs_sem_release(d->s, 1), FS_OK);
    return NULL;
}

static void test_compete(void)
{
    fs_sem s;
    fs_waiter w;
    pthread_t th;
    delayed_release_t d = {&s, 2000};
    CHECK_EQ(fs_sem_init(&s, 0, -1, 0), FS_OK);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_QUEUED);
    /* Nothing free: competing neither sleeps nor takes. */
    CHECK_EQ(fs_sem_wait(&s, &w, FS_FOREVER, 0), FS_PAUSED);
    /* Woken to compete: back here, the place kept and the permit still free. */
    start_thread(&th, delayed_release_main, &d);
    CHECK_EQ(fs_sem_wait(&s, &w, FS_FOREVER, FS_FOREVER), FS_PAUSED);
    join_thread(th);
    CHECK_EQ(fs_sem_waiting(&s), 1);
    CHECK_EQ(fs_sem_value(&s), 1);
    /* Somebody barges in first (non-fair): the waiter stays queued. */
    CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_wait(&s, &w, FS_FOREVER, 0), FS_PAUSED);
    CHECK_EQ(fs_sem_waiting(&s), 1);
    /* Free again: competing takes it and leaves the queue. */
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_wait(&s, &w, FS_FOREVER, 0), FS_OK);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    CHECK_EQ(fs_sem_value(&s), 0);
    /* Past its deadline: competing times out and leaves the queue. */
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_wait(&s, &w, fs_now() - 1, 0), FS_TIMEOUT);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    fs_sem_destroy(&s);

    /* Fair mode: a release hands the permit over; the wait returns FS_OK. */
    CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_QUEUED);
    start_thread(&th, delayed_release_main, &d);
    CHECK_EQ(fs_sem_wait(&s, &w, FS_FOREVER, FS_FOREVER), FS_OK);
    join_thread(th);
    CHECK_EQ(fs_sem_value(&s), 0);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    fs_sem_destroy(&s);
}

/* compete_chain (non-fair): a release wakes one competitor at a time; each
 * that takes its permits, or is cancelled, wakes the next (docs/design.rst,
 * "The relay", says why not all at once). */

enum { CHAIN_WAITERS = 4, GO_TAKE = 1, GO_CANCEL = 2, CANCELLED = 1000 };

typedef struct chain_waiter {
    fs_sem *s;
    atomic_int woken; /* back from fs_sem_wait with FS_PAUSED: woken to compete */
    atomic_int go;    /* set by the test: compete (GO_TAKE), or give up (GO_CANCEL) */
    atomic_int rc;    /* what competing returned (CANCELLED), -1 before */
    pthread_t th;
} chain_waiter;

static void *chain_waiter_main(void *p)
{
    chain_waiter *a = p;
    fs_waiter w;
    CHECK_EQ(fs_sem_acquire_or_enqueue(a->s, &w, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_wait(a->s, &w, FS_FOREVER, FS_FOREVER), FS_PAUSED);
    atomic_store(&a->woken, 1);
    WAIT_FOR(atomic_load(&a->go) != 0);
    if (atomic_load(&a->go) == GO_CANCEL) {
        CHECK_EQ(fs_sem_cancel(a->s, &w), 0); /* nothing granted to pass on */
        atomic_store(&a->rc, CANCELLED);
    } else {
        atomic_store(&a->rc, relay_if_owed(a->s, &w, fs_sem_wait(a->s, &w, FS_FOREVER, 0)));
    }
    return NULL;
}

static void test_compete_chain(void)
{
    fs_sem s;
    chain_waiter c[CHAIN_WAITERS];
    CHECK_EQ(fs_sem_init(&s, 0, -1, 0), FS_OK);
    for (int i = 0; i < CHAIN_WAITERS; i++) {
        c[i].s = &s;
        atomic_init(&c[i].woken, 0);
        atomic_init(&c[i].go, 0);
        atomic_init(&c[i].rc, -1);
        start_thread(&c[i].th, chain_waiter_main, &c[i]);
        WAIT_FOR(fs_sem_waiting(&s) == (size_t)i + 1);
    }
    /* Permits for all but one: the head gives up (an exception in the
     * binding), the rest take one each, woken in turn. */
    CHECK_EQ(fs_sem_release(&s, CHAIN_WAITERS - 1), FS_OK);
    for (int i = 0; i < CHAIN_WAITERS; i++) {
        WAIT_FOR(atomic_load(&c[i].woken));
        nap_us(20000); /* time for a wrongly woken one to show up */
        for (int j = i + 1; j < CHAIN_WAITERS; j++)
            CHECK_EQ(atomic_load(&c[j].woken), 0);
        atomic_store(&c[i].go, i == 0 ? GO_CANCEL : GO_TAKE);
        WAIT_FOR(atomic_load(&c[i].rc) != -1);
        CHECK_EQ(atomic_load(&c[i].rc), (i == 0 ? CANCELLED : FS_OK));
    }
    for (int i = 0; i < CHAIN_WAITERS; i++)
        join_thread(c[i].th);
    CHECK_EQ(fs_sem_value(&s), 0);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    fs_sem_destroy(&s);
}

/* starve (non-fair): a waiter that loses a competition after FS_STARVE_NS in
 * the queue gets the next permits handed over, and nobody barges past it. */

static void test_starve(void)
{
    fs_sem s;
    fs_waiter w, other;
    CHECK_EQ(fs_sem_init(&s, 0, -1, 0), FS_OK);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 2), FS_QUEUED);
    for (int round = 0; round < 2; round++) {
        /* Woken to compete (the release signals it), it loses to a barger:
         * starving only if it had queued FS_STARVE_NS before. */
        if (round == 1)
            nap_us(FS_STARVE_NS / 1000 + 1000);
        CHECK_EQ(fs_sem_release(&s, 2), FS_OK);
        CHECK_EQ(fs_sem_try_acquire(&s, 2), FS_OK);
        fs_time looked = fs_now();
        CHECK_EQ(fs_sem_wait(&s, &w, FS_FOREVER, fs_now() + 1000000), FS_PAUSED);
        if (round == 1)
            CHECK_EQ(w.starving, 1);
        else if (looked - w.queued_at < FS_STARVE_NS) /* else too slow to tell */
            CHECK_EQ(w.starving, 0);
    }
    /* Too few for it: they stay free, and nobody else may take them. */
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_WOULD_BLOCK);
    CHECK_EQ(fs_sem_drain(&s), 0);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &other, 1), FS_QUEUED);
    /* Enough: handed over (the wait returns FS_OK, not FS_PAUSED). */
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_value(&s), 0);
    CHECK_EQ(fs_sem_wait(&s, &w, FS_FOREVER, FS_FOREVER), FS_OK);
    /* Back to barging once the starving head is served. */
    CHECK_EQ(fs_sem_release(&s, 2), FS_OK);
    CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_cancel(&s, &other), 0);
    CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_value(&s), 0);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    fs_sem_destroy(&s);
}

/* ------------------------------------------------------------------------ */
/* pause: FS_PAUSED keeps the node's place; cancel removes it.              */

static void test_pause(void)
{
    fs_sem s;
    fs_waiter w;
    waiter_t b;
    CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);

    /* Pause, keep the place ahead of a later waiter, then get granted. */
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_QUEUED);
    fs_time t0 = fs_now();
    CHECK_EQ(fs_sem_wait(&s, &w, FS_FOREVER, t0 + 10000000), FS_PAUSED);
    CHECK(fs_now() - t0 >= 10000000);
    CHECK_EQ(fs_sem_waiting(&s), 1);
    waiter_start(&b, &s, 1, 1, 0, 1, NULL);
    WAIT_FOR(fs_sem_waiting(&s) == 2);
    CHECK_EQ(fs_sem_wait(&s, &w, FS_FOREVER, fs_now() + 10000000), FS_PAUSED);
    CHECK_EQ(fs_sem_waiting(&s), 2);
    /* wake_by before the deadline: a pause, not a timeout. */
    CHECK_EQ(fs_sem_wait(&s, &w, fs_now() + 1000000000, fs_now()), FS_PAUSED);
    CHECK_EQ(fs_sem_waiting(&s), 2);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK); /* to the paused head, not to B */
    CHECK_EQ(fs_sem_waiting(&s), 1);
    nap_us(2000);
    CHECK_EQ(waiter_rc(&b), -1);
    CHECK_EQ(fs_sem_wait(&s, &w, FS_FOREVER, fs_now()), FS_OK);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK); /* now B's turn; B gives it back */
    join_thread(b.th);
    CHECK_EQ(waiter_rc(&b), FS_OK);
    CHECK_EQ(fs_sem_value(&s), 1);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OK);

    /* Pause, then cancel while still waiting: 0, and the queue is empty. */
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_wait(&s, &w, FS_FOREVER, fs_now() + 1000000), FS_PAUSED);
    CHECK_EQ(fs_sem_waiting(&s), 1);
    CHECK_EQ(fs_sem_cancel(&s, &w), 0);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    CHECK_EQ(fs_sem_value(&s), 0);

    /* Pause, granted while paused, cancel: 1, the permit is passed on. */
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_wait(&s, &w, FS_FOREVER, fs_now()), FS_PAUSED);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    CHECK_EQ(fs_sem_value(&s), 0);
    CHECK_EQ(fs_sem_cancel(&s, &w), 1);
    CHECK_EQ(fs_sem_value(&s), 1);

    /* ... and passed on to the next waiter, not left free. */
    CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_wait(&s, &w, FS_FOREVER, fs_now()), FS_PAUSED);
    waiter_start(&b, &s, 1, 1, 0, 0, NULL);
    WAIT_FOR(fs_sem_waiting(&s) == 2);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK); /* to w (paused) */
    CHECK_EQ(fs_sem_waiting(&s), 1);
    CHECK_EQ(fs_sem_cancel(&s, &w), 1);     /* w's grant goes to B */
    WAIT_FOR(waiter_rc(&b) == FS_OK);
    CHECK_EQ(fs_sem_value(&s), 0);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    join_thread(b.th);
    fs_sem_destroy(&s);

    /* Bounded: a grant in flight to a paused node is held, not free, so an
     * over-release is accepted meanwhile; the cancel that frees the grant
     * must still leave the value within the bound. */
    CHECK_EQ(fs_sem_init(&s, 1, 1, 1), FS_OK);
    CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_wait(&s, &w, FS_FOREVER, fs_now()), FS_PAUSED);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK); /* to w (paused) */
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK); /* the over-release */
    CHECK_EQ(fs_sem_cancel(&s, &w), 1);
    CHECK_EQ(fs_sem_value(&s), 1);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OVER_BOUND);
    fs_sem_destroy(&s);
}

/* ------------------------------------------------------------------------ */
/* lifecycle: close, drain, resize, statistics, single- and multi-threaded.  */

static void test_lifecycle(void)
{
    fs_sem s;
    fs_waiter w;
    waiter_t a[3];
    fs_stats st;

    /* close: queued waiters and later acquires are turned away; release works. */
    CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
    for (int i = 0; i < 3; i++) {
        waiter_start(&a[i], &s, i, 1, 0, 0, NULL);
        WAIT_FOR(fs_sem_waiting(&s) == (size_t)i + 1);
    }
    CHECK_EQ(fs_sem_closed(&s), 0);
    fs_sem_close(&s);
    for (int i = 0; i < 3; i++) {
        join_thread(a[i].th);
        CHECK_EQ(waiter_rc(&a[i]), FS_CLOSED);
    }
    CHECK_EQ(fs_sem_closed(&s), 1);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    CHECK_EQ(fs_sem_release(&s, 2), FS_OK);
    CHECK_EQ(fs_sem_value(&s), 2);
    CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_CLOSED);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_CLOSED);
    fs_sem_close(&s); /* idempotent */
    CHECK_EQ(fs_sem_value(&s), 2);
    CHECK_EQ(fs_sem_drain(&s), 2);
    fs_sem_destroy(&s);

    /* close keeps a grant made before it. */
    CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_wait(&s, &w, FS_FOREVER, fs_now()), FS_PAUSED);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    fs_sem_close(&s);
    CHECK_EQ(fs_sem_wait(&s, &w, FS_FOREVER, FS_FOREVER), FS_OK);
    fs_sem_destroy(&s);

    /* drain: all free permits, but never those owed to a fair queue's head. */
    for (int fair = 0; fair <= 1; fair++) {
        CHECK_EQ(fs_sem_init(&s, 5, -1, fair), FS_OK);
        CHECK_EQ(fs_sem_drain(&s), 5);
        CHECK_EQ(fs_sem_drain(&s), 0);
        CHECK_EQ(fs_sem_release(&s, 2), FS_OK);
        waiter_start(&a[0], &s, 0, 3, 0, 0, NULL);
        WAIT_FOR(fs_sem_waiting(&s) == 1);
        CHECK_EQ(fs_sem_drain(&s), fair ? 0 : 2);
        CHECK_EQ(fs_sem_release(&s, fair ? 1 : 3), FS_OK);
        join_thread(a[0].th);
        CHECK_EQ(waiter_rc(&a[0]), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 0);
        fs_sem_destroy(&s);
    }

    /* resize: errors. */
    CHECK_EQ(fs_sem_init(&s, 1, -1, 1), FS_OK);
    CHECK_EQ(fs_sem_resize(&s, 5), FS_UNBOUNDED);
    CHECK_EQ(fs_sem_resize(&s, -1), FS_BAD_BOUND);
    fs_sem_destroy(&s);
    CHECK_EQ(fs_sem_init(&s, 1, 1, 1), FS_OK);
    CHECK_EQ(fs_sem_resize(&s, -1), FS_BAD_BOUND);
    CHECK_EQ(fs_sem_resize(&s, FS_COUNT_MAX + 1), FS_OVERFLOW);
    CHECK_EQ(fs_sem_max_value(&s), 1);
    fs_sem_destroy(&s);

    /* resize up: the new permits serve the queue in order. */
    CHECK_EQ(fs_sem_init(&s, 0, 2, 1), FS_OK);
    waiter_start(&a[0], &s, 0, 1, 0, 0, NULL);
    WAIT_FOR(fs_sem_waiting(&s) == 1);
    CHECK_EQ(fs_sem_resize(&s, 4), FS_OK);
    join_thread(a[0].th);
    CHECK_EQ(waiter_rc(&a[0]), FS_OK);
    CHECK_EQ(fs_sem_value(&s), 1);
    CHECK_EQ(fs_sem_max_value(&s), 4);
    CHECK_EQ(fs_sem_release(&s, 3), FS_OK);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OVER_BOUND);
    fs_sem_destroy(&s);

    /* resize down with free permits: they go at once. */
    CHECK_EQ(fs_sem_init(&s, 3, 3, 1), FS_OK);
    CHECK_EQ(fs_sem_resize(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_value(&s), 1);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OVER_BOUND);
    fs_sem_destroy(&s);

    /* resize down with all held: later releases are absorbed until it fits. */
    CHECK_EQ(fs_sem_init(&s, 3, 3, 1), FS_OK);
    CHECK_EQ(fs_sem_try_acquire(&s, 3), FS_OK);
    CHECK_EQ(fs_sem_resize(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_value(&s), 0);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_value(&s), 0);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_value(&s), 1);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OVER_BOUND);
    /* ... and raising it again first forgives what is still owed. */
    CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_resize(&s, 0), FS_OK); /* one held, bound 0: owes 1 */
    CHECK_EQ(fs_sem_resize(&s, 2), FS_OK); /* pays the 1, adds 1 */
    CHECK_EQ(fs_sem_value(&s), 1);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_value(&s), 2);
    fs_sem_destroy(&s);

    /* resize below a queued request: it is turned away; smaller ones stay. */
    CHECK_EQ(fs_sem_init(&s, 0, 3, 1), FS_OK);
    waiter_start(&a[0], &s, 0, 3, 0, 0, NULL);
    WAIT_FOR(fs_sem_waiting(&s) == 1);
    waiter_start(&a[1], &s, 1, 1, 0, 0, NULL);
    WAIT_FOR(fs_sem_waiting(&s) == 2);
    CHECK_EQ(fs_sem_resize(&s, 2), FS_OK);
    join_thread(a[0].th);
    CHECK_EQ(waiter_rc(&a[0]), FS_OVER_MAX);
    CHECK_EQ(fs_sem_waiting(&s), 1);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK); /* 3 held, bound 2: pays the debt */
    CHECK_EQ(fs_sem_waiting(&s), 1);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    join_thread(a[1].th);
    CHECK_EQ(waiter_rc(&a[1]), FS_OK);
    fs_sem_destroy(&s);

    /* statistics. */
    CHECK_EQ(fs_sem_init(&s, 1, -1, 1), FS_OK);
    fs_sem_statistics(&s, &st);
    CHECK_EQ(st.acquisitions, 0);
    CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_OK);
    waiter_start(&a[0], &s, 0, 1, 0, 1, NULL);   /* contended, gives it back */
    WAIT_FOR(fs_sem_waiting(&s) == 1);
    waiter_start(&a[1], &s, 1, 1, 0.02, 0, NULL); /* times out behind it */
    WAIT_FOR(fs_sem_waiting(&s) == 2);
    join_thread(a[1].th);
    CHECK_EQ(waiter_rc(&a[1]), FS_TIMEOUT);
    nap_us(2000);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    join_thread(a[0].th);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_OK);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 1), FS_QUEUED); /* interrupted */
    CHECK_EQ(fs_sem_cancel(&s, &w), 0);
    fs_sem_statistics(&s, &st);
    CHECK_EQ(st.acquisitions, 4);
    CHECK_EQ(st.contended, 1);
    CHECK_EQ(st.timeouts, 1);
    CHECK_EQ(st.interrupts, 1);
    CHECK_EQ(st.max_waiting, 2);
    CHECK(st.wait_max_ns >= 2000000); /* it waited out the other's timeout */
    CHECK_EQ(st.wait_total_ns, st.wait_max_ns);
    uint64_t in_histogram = 0;
    for (int i = 0; i < FS_HIST_BUCKETS; i++)
        in_histogram += st.histogram[i];
    CHECK_EQ(in_histogram, 1);
    fs_sem_reset_statistics(&s);
    fs_sem_statistics(&s, &st);
    CHECK_EQ(st.acquisitions + st.contended + st.timeouts + st.max_waiting, 0);
    fs_sem_destroy(&s);
}

/* wake_window: a wake-up decided while an earlier one is still being sent.
 * A test hook holds the first signal's pending mark open: 10 ms before the
 * signal (the test takes the released permit meanwhile) and 10 ms after it
 * (the woken non-fair waiter finds nothing to take). It must not go back to
 * sleep then: the second change (a release, or a close) made in that window
 * is not signalled again, since a signal is already on its way. */

extern _Atomic long fs_test_signal_delay_us;

static void *window_releaser(void *p)
{
    CHECK_EQ(fs_sem_release((fs_sem *)p, 1), FS_OK); // wakes the waiter, slowly
    return NULL;
}

static void test_wake_window(void)
{
    for (int second_is_close = 0; second_is_close <= 1; second_is_close++) {
        fs_sem s;
        CHECK_EQ(fs_sem_init(&s, 0, -1, 0), FS_OK); // non-fair: wakes, no grants
        waiter_t a;
        waiter_start(&a, &s, 0, 1, 5.0, 0, NULL);
        WAIT_FOR(fs_sem_waiting(&s) == 1);
        atomic_store(&fs_test_signal_delay_us, 10000);
        pthread_t th;
        start_thread(&th, window_releaser, &s);
        WAIT_FOR(fs_sem_value(&s) == 1); // released; the signal is 10 ms away
        CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OK);
        nap_us(12000); // after the signal: the waiter has found nothing
        if (second_is_close)
            fs_sem_close(&s);
        else
            CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
        join_thread(th);
        atomic_store(&fs_test_signal_delay_us, 0);
        fs_time start = fs_now();
        join_thread(a.th);
        // Woken by the second change, not by its own 5 s deadline.
        CHECK(fs_now() - start < 2000000000);
        CHECK_EQ(waiter_rc(&a), second_is_close ? FS_CLOSED : FS_OK);
        fs_sem_destroy(&s);
    }
}

/* lifecycle_races: close while threads are being granted, resize during
 * releases, statistics read while others acquire. */

typedef struct life_ctx {
    fs_sem *s;
    atomic_int *stop;
    uint64_t seed;
    long got, closed;
} life_ctx;

static void *life_worker(void *p)
{
    life_ctx *c = p;
    uint64_t rng = c->seed;
    while (!atomic_load(c->stop)) {
        fs_waiter w;
        fs_count n = 1 + (fs_count)(rnd(&rng) % 2);
        int rc = fs_sem_acquire_or_enqueue(c->s, &w, n);
        if (rc == FS_QUEUED) {
            fs_time deadline = fs_now() + (fs_time)(rnd(&rng) % 400000);
            do /* FS_PAUSED: woken to compete (non-fair) */
                rc = relay_if_owed(c->s, &w, fs_sem_wait(c->s, &w, deadline, FS_FOREVER));
            while (rc == FS_PAUSED);
        }
        if (rc == FS_OK) {
            c->got++;
            spin(rnd(&rng) % 200);
            int rel = fs_sem_release(c->s, n);
            CHECK(rel == FS_OK);
        } else if (rc == FS_CLOSED) {
            c->closed++;
            nap_us(50);
        } else {
            CHECK(rc == FS_TIMEOUT || rc == FS_OVER_MAX);
        }
    }
    return NULL;
}

static uint64_t acquisitions(fs_sem *s)
{
    fs_stats st;
    fs_sem_statistics(s, &st);
    return st.acquisitions;
}

static void test_lifecycle_races(void)
{
    enum { T = 6, V = 4 };
    int rounds = scaled(20);
    for (int r = 0; r < rounds; r++) {
        fs_sem s;
        int fair = r % 2;
        CHECK_EQ(fs_sem_init(&s, V, V, fair), FS_OK);
        atomic_int stop;
        atomic_init(&stop, 0);
        life_ctx c[T];
        pthread_t th[T];
        for (int i = 0; i < T; i++) {
            c[i] = (life_ctx){&s, &stop, 0x9e3779b97f4a7c15ULL * (uint64_t)(r * T + i + 1), 0, 0};
            start_thread(&th[i], life_worker, &c[i]);
        }
        uint64_t rng = (uint64_t)r + 77;
        for (int k = 0; k < 30; k++) {
            /* Resize while others release and wait; read statistics meanwhile. */
            CHECK_EQ(fs_sem_resize(&s, 2 + (fs_count)(rnd(&rng) % (V - 1))), FS_OK);
            fs_stats st;
            fs_sem_statistics(&s, &st);
            CHECK(st.contended <= st.acquisitions);
            CHECK(fs_sem_value(&s) <= fs_sem_max_value(&s));
            nap_us(200);
        }
        CHECK_EQ(fs_sem_resize(&s, V), FS_OK);
        /* On a busy machine the workers may not have run yet; the round
         * proves something only once they have (got > 0 below). */
        WAIT_FOR(acquisitions(&s) > 0);
        if (r % 4 < 2)
            fs_sem_close(&s); /* while threads are queued and being granted */
        nap_us(2000);
        atomic_store(&stop, 1);
        long got = 0;
        for (int i = 0; i < T; i++) {
            join_thread(th[i]);
            got += c[i].got;
        }
        /* Every permit came back: the bound is whole again, nobody waits. */
        CHECK_EQ(fs_sem_value(&s), V);
        CHECK_EQ(fs_sem_waiting(&s), 0);
        CHECK(got > 0);
        fs_stats st;
        fs_sem_statistics(&s, &st);
        CHECK_EQ(st.acquisitions, (uint64_t)got);
        fs_sem_destroy(&s);
    }
}

/* ------------------------------------------------------------------------ */
/* cancel_race: cancel vs release at random moments conserves permits.     */

/* Both threads of a round start together, so their random delays overlap. */
static void wait_go(atomic_int *go)
{
    while (!atomic_load(go))
        sched_yield();
}

typedef struct race_ctx {
    fs_sem *s;
    atomic_int *go;
    uint64_t seed;
    int outcome; /* 0 ok at once, 1 granted in wait, 2 cancel->0, 3 cancel->1 */
} race_ctx;

static void *race_waiter(void *p)
{
    race_ctx *c = p;
    uint64_t rng = c->seed;
    fs_waiter w;
    int held = 0;
    wait_go(c->go);
    int rc = fs_sem_acquire_or_enqueue(c->s, &w, 1);
    CHECK(rc == FS_OK || rc == FS_QUEUED);
    if (rc == FS_OK) {
        held = 1;
        c->outcome = 0;
    } else {
        int max_pauses = (int)(rnd(&rng) % 6);
        for (int pauses = 0;; pauses++) {
            /* Mostly a mere poll (wake_by already past: a timed sleep of a few
             * microseconds lasts at least the timer slack, ~50us on Linux),
             * sometimes a short sleep. */
            fs_time wake_by = rnd(&rng) % 4 ? 0 : fs_now() + (fs_time)(rnd(&rng) % 20000);
            rc = relay_if_owed(c->s, &w, fs_sem_wait(c->s, &w, FS_FOREVER, wake_by));
            if (rc == FS_OK) {
                held = 1;
                c->outcome = 1;
                break;
            }
            CHECK_EQ(rc, FS_PAUSED);
            int last = pauses >= max_pauses;
            /* a grant may land right here */
            spin((unsigned)(rnd(&rng) % (last ? 60000 : 20000)));
            if (last) {
                int passed = fs_sem_cancel(c->s, &w);
                CHECK(passed == 0 || passed == 1);
                c->outcome = 2 + passed;
                break;
            }
        }
    }
    if (held)
        CHECK_EQ(fs_sem_release(c->s, 1), FS_OK);
    return NULL;
}

typedef struct releaser_ctx {
    fs_sem *s;
    atomic_int *go;
    uint64_t seed;
} releaser_ctx;

static void *race_releaser(void *p)
{
    releaser_ctx *c = p;
    uint64_t rng = c->seed;
    wait_go(c->go);
    unsigned n = (unsigned)(rnd(&rng) % 60000);
    if (n & 1)
        sched_yield();
    spin(n);
    CHECK_EQ(fs_sem_release(c->s, 1), FS_OK);
    return NULL;
}

static void test_cancel_race(void)
{
    const int iters = scaled(3000);
    for (int fair = 1; fair >= 0; fair--) {
        fs_sem s;
        int outcomes[4] = {0, 0, 0, 0};
        CHECK_EQ(fs_sem_init(&s, 1, 1, fair), FS_OK); /* bounded: a duplicate
                                                        permit fails release */
        for (int i = 0; i < iters; i++) {
            pthread_t tw, tr;
            atomic_int go;
            atomic_init(&go, 0);
            race_ctx rc = {&s, &go, 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1), -1};
            releaser_ctx rr = {&s, &go, 0xD1B54A32D192ED03ULL * (uint64_t)(i + 7)};
            CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OK); /* rr releases this one */
            start_thread(&tw, race_waiter, &rc);
            start_thread(&tr, race_releaser, &rr);
            atomic_store(&go, 1);
            join_thread(tw);
            join_thread(tr);
            CHECK(rc.outcome >= 0 && rc.outcome < 4);
            outcomes[rc.outcome]++;
            CHECK_EQ(fs_sem_waiting(&s), 0);
            CHECK_EQ(fs_sem_value(&s), 1);
        }
        fs_sem_destroy(&s);
        printf("    %s: %d iterations: at once %d, granted %d, cancelled %d, "
               "cancelled after grant %d\n",
               fair ? "fair" : "non-fair", iters, outcomes[0], outcomes[1],
               outcomes[2], outcomes[3]);
    }
}

/* ------------------------------------------------------------------------ */
/* notified: waiters that do not block their thread (the binding's asyncio  */
/* tasks), told of their wake-ups by a callback, in one queue with threads. */

/* A stand-in for an event loop: notify marks the task woken and wakes the
 * loop's thread, or says the loop is gone (closed). */
typedef struct nloop {
    pthread_mutex_t m;
    pthread_cond_t c;
    int closed;
    atomic_int gate;     /* notify_gated: 1 while notifications must wait */
} nloop;

typedef struct ntask {
    fs_waiter w;
    nloop *loop;
    int woken;           /* under loop->m */
    atomic_int notified; /* how many notifications arrived */
} ntask;

static void nloop_init(nloop *L)
{
    CHECK(pthread_mutex_init(&L->m, NULL) == 0);
    CHECK(pthread_cond_init(&L->c, NULL) == 0);
    L->closed = 0;
    atomic_init(&L->gate, 0);
}

static void nloop_destroy(nloop *L)
{
    pthread_cond_destroy(&L->c);
    pthread_mutex_destroy(&L->m);
}

static int ntask_notify(fs_waiter *w)
{
    ntask *t = w->notify_arg;
    nloop *L = t->loop;
    pthread_mutex_lock(&L->m);
    int gone = L->closed;
    if (!gone) {
        t->woken = 1;
        atomic_fetch_add(&t->notified, 1);
        pthread_cond_broadcast(&L->c);
    }
    pthread_mutex_unlock(&L->m);
    return gone;
}

/* As ntask_notify, after waiting for the loop's gate to open: holds a
 * notification in flight. */
static int ntask_notify_gated(fs_waiter *w)
{
    ntask *t = w->notify_arg;
    atomic_fetch_add(&t->notified, 1);
    while (atomic_load(&t->loop->gate))
        nap_us(100);
    return ntask_notify(w);
}

static void ntask_init(ntask *t, nloop *L)
{
    t->loop = L;
    t->woken = 0;
    atomic_init(&t->notified, 0);
}

/* Arms the task's wake-up: from here on a notification is not missed. */
static void ntask_arm(ntask *t)
{
    pthread_mutex_lock(&t->loop->m);
    t->woken = 0;
    pthread_mutex_unlock(&t->loop->m);
}

static int ntask_woken(ntask *t)
{
    pthread_mutex_lock(&t->loop->m);
    int woken = t->woken;
    pthread_mutex_unlock(&t->loop->m);
    return woken;
}

static int ntask_enqueue(fs_sem *s, ntask *t, fs_count n)
{
    ntask_arm(t);
    return fs_sem_acquire_or_enqueue_notified(s, &t->w, n, ntask_notify, t);
}

/* One look, as the binding makes it after a wake-up: re-arms, polls, and
 * waits out a notification in flight. */
static int ntask_poll(fs_sem *s, ntask *t, fs_time deadline)
{
    int rc;
    do {
        ntask_arm(t);
        rc = fs_sem_poll(s, &t->w, deadline);
        if (rc == FS_IN_FLIGHT)
            while (fs_waiter_notifying(&t->w))
                sched_yield();
    } while (rc == FS_IN_FLIGHT);
    return rc;
}

typedef struct releaser_t {
    fs_sem *s;
    fs_count n;
    pthread_t th;
} releaser_t;

static void *releaser_main(void *p)
{
    releaser_t *r = p;
    CHECK_EQ(fs_sem_release(r->s, r->n), FS_OK);
    return NULL;
}

static void test_notified(void)
{
    fs_sem s;
    nloop L;
    ntask t, u;
    fs_stats st;
    nloop_init(&L);

    /* Granted by a release: notified at once (by the releasing thread,
     * after the unlock), then the poll finds it granted. */
    CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
    ntask_init(&t, &L);
    CHECK_EQ(ntask_enqueue(&s, &t, 2), FS_QUEUED);
    CHECK_EQ(fs_sem_waiting(&s), 1);
    CHECK_EQ(fs_sem_poll(&s, &t.w, FS_FOREVER), FS_QUEUED);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(atomic_load(&t.notified), 0); /* head-of-line: 1 of 2 */
    CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_WOULD_BLOCK); /* no barging past it */
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(atomic_load(&t.notified), 1);
    CHECK(ntask_woken(&t));
    CHECK_EQ(ntask_poll(&s, &t, FS_FOREVER), FS_OK);
    CHECK_EQ(fs_sem_value(&s), 0);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    /* Uncontended: granted at once, never queued. */
    CHECK_EQ(fs_sem_release(&s, 2), FS_OK);
    CHECK_EQ(ntask_enqueue(&s, &t, 2), FS_OK);
    fs_sem_destroy(&s);

    /* One FIFO for threads and tasks, and a release(n) batch tells its task
     * at once while its threads relay. */
    for (int batch = 0; batch < 2; batch++) {
        order_rec rec = {.m = PTHREAD_MUTEX_INITIALIZER};
        waiter_t w1, w3;
        CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
        ntask_init(&t, &L);
        waiter_start(&w1, &s, 1, 1, 0, 0, &rec);
        WAIT_FOR(fs_sem_waiting(&s) == 1);
        CHECK_EQ(ntask_enqueue(&s, &t, 1), FS_QUEUED);
        waiter_start(&w3, &s, 3, 1, 0, 0, &rec);
        WAIT_FOR(fs_sem_waiting(&s) == 3);
        if (batch) {
            CHECK_EQ(fs_sem_release(&s, 3), FS_OK);
            CHECK_EQ(atomic_load(&t.notified), 1); /* not behind thread 1's relay */
            join_thread(w1.th);
            join_thread(w3.th);
            CHECK_EQ(order_at(&rec, 0), 1);
            CHECK_EQ(order_at(&rec, 1), 3);
        } else {
            CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
            join_thread(w1.th);
            CHECK_EQ(atomic_load(&t.notified), 0);
            CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
            CHECK_EQ(atomic_load(&t.notified), 1);
            CHECK_EQ(waiter_rc(&w3), -1); /* the task came first */
            CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
            join_thread(w3.th);
        }
        CHECK_EQ(ntask_poll(&s, &t, FS_FOREVER), FS_OK);
        CHECK_EQ(waiter_rc(&w1), FS_OK);
        CHECK_EQ(waiter_rc(&w3), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 0);
        CHECK_EQ(fs_sem_waiting(&s), 0);
        fs_sem_destroy(&s);
    }

    /* A notification that cannot be delivered (the loop is closed): the
     * task is given up and its permit passes on to the thread behind it. */
    CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
    {
        waiter_t w2;
        ntask_init(&t, &L);
        CHECK_EQ(ntask_enqueue(&s, &t, 1), FS_QUEUED);
        waiter_start(&w2, &s, 2, 1, 0, 0, NULL);
        WAIT_FOR(fs_sem_waiting(&s) == 2);
        pthread_mutex_lock(&L.m);
        L.closed = 1;
        pthread_mutex_unlock(&L.m);
        CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
        join_thread(w2.th);
        CHECK_EQ(waiter_rc(&w2), FS_OK);
        CHECK_EQ(fs_sem_poll(&s, &t.w, FS_FOREVER), FS_ABANDONED);
        CHECK_EQ(fs_sem_cancel(&s, &t.w), 0); /* finished: nothing more */
        fs_sem_statistics(&s, &st);
        CHECK_EQ(st.interrupts, 1);
        CHECK_EQ(st.acquisitions, 1);
        /* Alone in the queue, its permit becomes free again. */
        CHECK_EQ(ntask_enqueue(&s, &t, 1), FS_QUEUED);
        CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 1);
        CHECK_EQ(fs_sem_waiting(&s), 0);
        pthread_mutex_lock(&L.m);
        L.closed = 0;
        pthread_mutex_unlock(&L.m);
    }
    fs_sem_destroy(&s);

    /* Cancelled after its grant, before it looked: the permits pass on. */
    CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
    ntask_init(&t, &L);
    ntask_init(&u, &L);
    CHECK_EQ(ntask_enqueue(&s, &t, 1), FS_QUEUED);
    CHECK_EQ(ntask_enqueue(&s, &u, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(atomic_load(&t.notified), 1);
    CHECK_EQ(fs_sem_cancel(&s, &t.w), 1);
    CHECK_EQ(atomic_load(&u.notified), 1);
    CHECK_EQ(ntask_poll(&s, &u, FS_FOREVER), FS_OK);
    /* Cancelled while queued: nothing taken, nothing owed. */
    CHECK_EQ(ntask_enqueue(&s, &t, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_cancel(&s, &t.w), 0);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(fs_sem_value(&s), 1);
    fs_sem_statistics(&s, &st);
    CHECK_EQ(st.interrupts, 2);
    fs_sem_destroy(&s);

    /* Its deadline: the poll times it out, and it is told of nothing more. */
    CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
    ntask_init(&t, &L);
    CHECK_EQ(ntask_enqueue(&s, &t, 1), FS_QUEUED);
    CHECK_EQ(ntask_poll(&s, &t, fs_now() + 1000000000), FS_QUEUED);
    CHECK_EQ(ntask_poll(&s, &t, fs_now() - 1), FS_TIMEOUT);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(atomic_load(&t.notified), 0);
    CHECK_EQ(fs_sem_value(&s), 1);
    fs_sem_destroy(&s);

    /* close() and a lowered bound turn tasks away as they do threads. */
    CHECK_EQ(fs_sem_init(&s, 0, 2, 1), FS_OK);
    ntask_init(&t, &L);
    ntask_init(&u, &L);
    CHECK_EQ(ntask_enqueue(&s, &t, 2), FS_QUEUED);
    CHECK_EQ(ntask_enqueue(&s, &u, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_resize(&s, 1), FS_OK);
    CHECK_EQ(atomic_load(&t.notified), 1);
    CHECK_EQ(ntask_poll(&s, &t, FS_FOREVER), FS_OVER_MAX);
    fs_sem_close(&s);
    CHECK_EQ(atomic_load(&u.notified), 1);
    CHECK_EQ(ntask_poll(&s, &u, FS_FOREVER), FS_CLOSED);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    fs_sem_destroy(&s);

    /* Non-fair: woken to compete, it may lose to a barger and wait on. */
    CHECK_EQ(fs_sem_init(&s, 0, -1, 0), FS_OK);
    ntask_init(&t, &L);
    CHECK_EQ(ntask_enqueue(&s, &t, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(atomic_load(&t.notified), 1);
    CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OK); /* the barger */
    CHECK_EQ(ntask_poll(&s, &t, FS_FOREVER), FS_QUEUED);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
    CHECK_EQ(atomic_load(&t.notified), 2); /* re-armed by the poll */
    CHECK_EQ(ntask_poll(&s, &t, FS_FOREVER), FS_OK);
    CHECK_EQ(fs_sem_value(&s), 0);
    fs_sem_destroy(&s);

    /* A notification in flight: the poll says so rather than wait for the
     * notifier (which may need a lock the poller holds), and the node is
     * finished only once the notifier is done with it. */
    for (int cancel = 0; cancel < 2; cancel++) {
        releaser_t r = {.n = 1};
        CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
        r.s = &s;
        ntask_init(&t, &L);
        ntask_arm(&t);
        atomic_store(&L.gate, 1);
        CHECK_EQ(fs_sem_acquire_or_enqueue_notified(&s, &t.w, 1, ntask_notify_gated, &t),
                 FS_QUEUED);
        start_thread(&r.th, releaser_main, &r);
        WAIT_FOR(atomic_load(&t.notified) == 1);
        CHECK(fs_waiter_notifying(&t.w));
        CHECK_EQ(fs_sem_poll(&s, &t.w, FS_FOREVER), FS_IN_FLIGHT);
        atomic_store(&L.gate, 0);
        if (cancel) {
            CHECK_EQ(fs_sem_cancel(&s, &t.w), 1); /* waits for the notifier */
            CHECK(!fs_waiter_notifying(&t.w));
            CHECK_EQ(fs_sem_value(&s), 1);
        } else {
            CHECK_EQ(ntask_poll(&s, &t, FS_FOREVER), FS_OK);
            CHECK_EQ(fs_sem_value(&s), 0);
        }
        join_thread(r.th);
        fs_sem_destroy(&s);
    }
    nloop_destroy(&L);
}

/* notified_stress: event-loop threads, each running tasks that acquire with
 * random timeouts and cancellations, beside plain threads, on one
 * semaphore; one loop closes while its tasks are queued. Nobody holds more
 * than the permits allow, no permit is lost, nobody is stuck. */

#define NS_PERMITS 3
#define NS_LOOPS 2
#define NS_TASKS 4
#define NS_THREADS 2

typedef struct ns_shared {
    fs_sem s;
    atomic_int held;   /* permits held now */
    atomic_int done;   /* loops and threads finished */
    int rounds;
} ns_shared;

typedef struct ns_task {
    ntask t;
    int state;         /* 0 idle, 1 queued, 2 holding */
    fs_count want;
    fs_time deadline;
    int cancel_at;     /* queued this many turns, then cancelled (0: never) */
    int turns;
    int hold_turns;
    int rounds;
    int abandoned;     /* its loop closed under it */
} ns_task;

typedef struct ns_loop {
    nloop L;
    ns_shared *sh;
    ns_task tasks[NS_TASKS];
    int closes;        /* this loop closes half-way */
    uint64_t seed;
    pthread_t th;
} ns_loop;

static void ns_take(ns_shared *sh, fs_count n)
{
    int now = atomic_fetch_add(&sh->held, (int)n) + (int)n;
    CHECK(now <= NS_PERMITS);
}

static void ns_give(ns_shared *sh, fs_count n)
{
    atomic_fetch_sub(&sh->held, (int)n);
    CHECK_EQ(fs_sem_release(&sh->s, n), FS_OK);
}

static void *ns_loop_main(void *p)
{
    ns_loop *lp = p;
    ns_shared *sh = lp->sh;
    int finished = 0;
    for (int turn = 0; finished < NS_TASKS; turn++) {
        int progressed = 0;
        finished = 0;
        if (lp->closes && turn == sh->rounds * 4) {
            /* Closing: a queued task not yet told of its grant never will
             * be; one already told finishes (its wake-up is in the loop). */
            pthread_mutex_lock(&lp->L.m);
            lp->L.closed = 1;
            for (int i = 0; i < NS_TASKS; i++)
                if (lp->tasks[i].state == 1 && !lp->tasks[i].t.woken)
                    lp->tasks[i].abandoned = 1;
            pthread_mutex_unlock(&lp->L.m);
        }
        for (int i = 0; i < NS_TASKS; i++) {
            ns_task *k = &lp->tasks[i];
            if (k->abandoned || (k->state == 0 && k->rounds >= sh->rounds)) {
                finished++;
                continue;
            }
            if (lp->L.closed && k->state == 0) {
                k->rounds = sh->rounds; /* a closed loop starts nothing */
                continue;
            }
            if (k->state == 0) {
                uint64_t r = rnd(&lp->seed);
                k->want = 1 + (fs_count)(r % 2);
                k->deadline = (r >> 8) % 4 == 0 ? fs_now() + (fs_time)((r >> 16) % 200) * 1000
                                                 : FS_FOREVER;
                k->cancel_at = (r >> 24) % 4 == 0 ? 1 + (int)((r >> 28) % 20) : 0;
                k->turns = 0;
                int rc = ntask_enqueue(&sh->s, &k->t, k->want);
                if (rc == FS_OK) {
                    ns_take(sh, k->want);
                    k->state = 2;
                    k->hold_turns = 1 + (int)((r >> 32) % 3);
                } else {
                    CHECK_EQ(rc, FS_QUEUED);
                    k->state = 1;
                }
                progressed = 1;
            } else if (k->state == 1) {
                k->turns++;
                if (k->cancel_at && k->turns >= k->cancel_at) {
                    fs_sem_cancel(&sh->s, &k->t.w);
                    k->state = 0;
                    k->rounds++;
                    progressed = 1;
                } else if (ntask_woken(&k->t) || fs_now() >= k->deadline) {
                    int rc = ntask_poll(&sh->s, &k->t, k->deadline);
                    if (rc == FS_OK) {
                        ns_take(sh, k->want);
                        k->state = 2;
                        k->hold_turns = 1 + (int)(rnd(&lp->seed) % 3);
                    } else if (rc == FS_QUEUED) {
                        k->abandoned = lp->L.closed; /* told of nothing more */
                    } else {
                        CHECK_EQ(rc, FS_TIMEOUT);
                        k->state = 0;
                        k->rounds++;
                    }
                    progressed = 1;
                }
            } else if (--k->hold_turns <= 0) {
                ns_give(sh, k->want);
                k->state = 0;
                k->rounds++;
                progressed = 1;
            }
        }
        if (!progressed) {
            /* Asleep until a notification (or a deadline) comes. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_mutex_lock(&lp->L.m);
            pthread_cond_timedwait(&lp->L.c, &lp->L.m, &ts);
            pthread_mutex_unlock(&lp->L.m);
        }
    }
    atomic_fetch_add(&sh->done, 1);
    return NULL;
}

typedef struct ns_thread {
    ns_shared *sh;
    uint64_t seed;
    pthread_t th;
} ns_thread;

static void *ns_thread_main(void *p)
{
    ns_thread *a = p;
    ns_shared *sh = a->sh;
    for (int i = 0; i < sh->rounds * NS_TASKS; i++) {
        uint64_t r = rnd(&a->seed);
        fs_count want = 1 + (fs_count)(r % 2);
        fs_time deadline = (r >> 8) % 4 == 0 ? fs_now() + (fs_time)((r >> 16) % 200) * 1000
                                             : FS_FOREVER;
        fs_waiter w;
        int rc = fs_sem_acquire_or_enqueue(&sh->s, &w, want);
        while (rc == FS_QUEUED) {
            rc = relay_if_owed(&sh->s, &w, fs_sem_wait(&sh->s, &w, deadline, FS_FOREVER));
            if (rc == FS_PAUSED)
                rc = FS_QUEUED;
        }
        if (rc == FS_OK) {
            ns_take(sh, want);
            spin(200 + (unsigned)((r >> 24) % 2000));
            ns_give(sh, want);
        } else {
            CHECK_EQ(rc, FS_TIMEOUT);
        }
    }
    atomic_fetch_add(&sh->done, 1);
    return NULL;
}

static void test_notified_stress(void)
{
    static ns_shared sh;
    static ns_loop loops[NS_LOOPS];
    static ns_thread threads[NS_THREADS];
    for (int fair = 1; fair >= 0; fair--) {
        CHECK_EQ(fs_sem_init(&sh.s, NS_PERMITS, NS_PERMITS, fair), FS_OK);
        atomic_init(&sh.held, 0);
        atomic_init(&sh.done, 0);
        sh.rounds = scaled(300);
        for (int l = 0; l < NS_LOOPS; l++) {
            ns_loop *lp = &loops[l];
            memset(lp->tasks, 0, sizeof lp->tasks);
            nloop_init(&lp->L);
            lp->sh = &sh;
            lp->closes = l == 0;
            lp->seed = 0x9E3779B97F4A7C15ULL * (uint64_t)(l + 1 + 10 * fair);
            for (int i = 0; i < NS_TASKS; i++)
                ntask_init(&lp->tasks[i].t, &lp->L);
            start_thread(&lp->th, ns_loop_main, lp);
        }
        for (int i = 0; i < NS_THREADS; i++) {
            threads[i].sh = &sh;
            threads[i].seed = 0xD1B54A32D192ED03ULL * (uint64_t)(i + 1 + 10 * fair);
            start_thread(&threads[i].th, ns_thread_main, &threads[i]);
        }
        for (int l = 0; l < NS_LOOPS; l++)
            join_thread(loops[l].th);
        for (int i = 0; i < NS_THREADS; i++)
            join_thread(threads[i].th);
        /* The closed loop's tasks that were still queued were given up when
         * their grants came, and their permits passed on: every permit is
         * back, and nobody is queued. Their owner (a task's coroutine being
         * closed, in the binding) finishes them with a cancel, which then
         * gives back nothing. */
        CHECK_EQ(atomic_load(&sh.held), 0);
        CHECK_EQ(fs_sem_waiting(&sh.s), 0);
        CHECK_EQ(fs_sem_value(&sh.s), NS_PERMITS);
        for (int i = 0; i < NS_TASKS; i++)
            if (loops[0].tasks[i].abandoned)
                CHECK_EQ(fs_sem_cancel(&sh.s, &loops[0].tasks[i].t.w), 0);
        for (int l = 0; l < NS_LOOPS; l++)
            nloop_destroy(&loops[l].L);
        fs_sem_destroy(&sh.s);
    }
}

/* ------------------------------------------------------------------------ */
/* stress: never more than V held; nothing lost or duplicated.              */

#define STRESS_T 8

typedef struct stress_ctx {
    fs_sem s;
    fs_count V;
    int iters;
    atomic_llong held;
    atomic_long n_got, n_would_block, n_timeout, n_cancel0, n_cancel1, n_paused;
    atomic_long n_competed; /* woken to compete (FS_PAUSED), competed */
    int compete;            /* non-fair: waiters are woken to compete */
    atomic_int stop;      /* tells the monitor to finish */
    long n_samples;       /* monitor's */
} stress_ctx;

/* Samples the snapshots while the workers run: permits are conserved, so the
 * free count stays within 0..V whatever is held or in flight. */
static void *stress_monitor(void *p)
{
    stress_ctx *c = p;
    while (!atomic_load(&c->stop)) {
        fs_count v = fs_sem_value(&c->s);
        CHECK(v >= 0 && v <= c->V);
        CHECK(fs_sem_waiting(&c->s) <= STRESS_T);
        c->n_samples++;
        sched_yield();
    }
    return NULL;
}

typedef struct stress_thread {
    stress_ctx *c;
    uint64_t seed;
    pthread_t th;
} stress_thread;

static void *stress_main(void *p)
{
    stress_thread *t = p;
    stress_ctx *c = t->c;
    uint64_t rng = t->seed;
    for (int i = 0; i < c->iters; i++) {
        fs_count n = 1 + (fs_count)(rnd(&rng) % 2);
        int mode = (int)(rnd(&rng) % 5);
        int got = 0;
        if (mode == 0) {
            int rc = fs_sem_try_acquire(&c->s, n);
            CHECK(rc == FS_OK || rc == FS_WOULD_BLOCK);
            got = rc == FS_OK;
            if (!got)
                atomic_fetch_add(&c->n_would_block, 1);
        } else {
            /* 1: forever; 2: deadline 0..200us; 3: pauses then cancel;
             * 4: deadline 0..400us with pauses, maybe cancel. */
            fs_waiter w;
            fs_time deadline = FS_FOREVER;
            if (mode == 2)
                deadline = fs_now() + (fs_time)(rnd(&rng) % 201) * 1000;
            else if (mode == 4)
                deadline = fs_now() + (fs_time)(rnd(&rng) % 401) * 1000;
            int max_pauses = mode >= 3 ? (int)(rnd(&rng) % 4) : -1;
            int rc = fs_sem_acquire_or_enqueue(&c->s, &w, n);
            CHECK(rc == FS_OK || rc == FS_QUEUED);
            int pauses = 0, cancelled = 0;
            while (rc == FS_QUEUED) {
                fs_time wake_by = FS_FOREVER;
                if (max_pauses >= 0) /* a poll, or a pause after 0..100us */
                    wake_by = rnd(&rng) % 2 ? 0 : fs_now() + (fs_time)(rnd(&rng) % 101) * 1000;
                rc = relay_if_owed(&c->s, &w, fs_sem_wait(&c->s, &w, deadline, wake_by));
                if (rc == FS_PAUSED && max_pauses < 0) {
                    CHECK(c->compete); /* woken to compete: do it now */
                    atomic_fetch_add(&c->n_competed, 1);
                    spin((unsigned)(rnd(&rng) % 500)); /* barging lands here */
                    rc = relay_if_owed(&c->s, &w, fs_sem_wait(&c->s, &w, deadline, 0));
                    if (rc == FS_PAUSED) {
                        rc = FS_QUEUED; /* lost: wait again */
                        continue;
                    }
                }
                if (rc != FS_PAUSED)
                    break;
                atomic_fetch_add(&c->n_paused, 1);
                if (pauses++ >= max_pauses) {
                    spin((unsigned)(rnd(&rng) % 5000));
                    int passed = fs_sem_cancel(&c->s, &w);
                    CHECK(passed == 0 || passed == 1);
                    atomic_fetch_add(passed ? &c->n_cancel1 : &c->n_cancel0, 1);
                    cancelled = 1;
                    break;
                }
                spin((unsigned)(rnd(&rng) % 5000)); /* grants land here too */
                rc = FS_QUEUED;
            }
            if (!cancelled) {
                if (rc == FS_TIMEOUT) {
                    CHECK(deadline != FS_FOREVER);
                    atomic_fetch_add(&c->n_timeout, 1);
                } else {
                    CHECK_EQ(rc, FS_OK);
                    got = 1;
                }
            }
        }
        if (got) {
            long long h = atomic_fetch_add(&c->held, n) + n;
            CHECK(h <= c->V);
            atomic_fetch_add(&c->n_got, 1);
            unsigned work = (unsigned)(rnd(&rng) % 256);
            if (work < 24)
                sched_yield(); /* let others pile up behind the holder */
            else
                spin(work);
            atomic_fetch_sub(&c->held, n);
            /* Bounded: value + held <= V, so this never passes the bound. */
            CHECK_EQ(fs_sem_release(&c->s, n), FS_OK);
        }
    }
    return NULL;
}

static void test_stress(void)
{
    const int iters = scaled(4000);
    for (int cfg = 0; cfg < 8; cfg++) {
        int fair = !(cfg & 1), bounded = !(cfg & 2), spin = !(cfg & 4);
        stress_ctx c;
        stress_thread ts[STRESS_T];
        c.V = 3;
        /* Non-fair runs far faster (the releaser usually re-takes at once,
         * no context switch): give it more rounds to get as many waits. */
        c.iters = fair ? iters : 5 * iters;
        atomic_init(&c.held, 0);
        atomic_init(&c.n_got, 0);
        atomic_init(&c.n_would_block, 0);
        atomic_init(&c.n_timeout, 0);
        atomic_init(&c.n_cancel0, 0);
        atomic_init(&c.n_cancel1, 0);
        atomic_init(&c.n_paused, 0);
        atomic_init(&c.n_competed, 0);
        atomic_init(&c.stop, 0);
        c.n_samples = 0;
        CHECK_EQ(fs_sem_init(&c.s, c.V, bounded ? c.V : -1, fair), FS_OK);
        if (!spin) // every waiter sleeps at once, as on a single CPU
            fs_sem_set_spin(&c.s, 0, 0);
        if (!fair && bounded) // starving heads and handoffs all the time
            fs_sem_set_starve(&c.s, 20000);
        c.compete = !fair;
        fs_time t0 = fs_now();
        pthread_t monitor;
        start_thread(&monitor, stress_monitor, &c);
        for (int i = 0; i < STRESS_T; i++) {
            ts[i].c = &c;
            ts[i].seed = 0x853C49E6748FEA9BULL ^ ((uint64_t)(cfg * 100 + i + 1) << 32);
            start_thread(&ts[i].th, stress_main, &ts[i]);
        }
        for (int i = 0; i < STRESS_T; i++)
            join_thread(ts[i].th);
        atomic_store(&c.stop, 1);
        join_thread(monitor);
        CHECK(c.n_samples > 0);
        double ms = (double)(fs_now() - t0) / 1e6;
        CHECK_EQ(atomic_load(&c.held), 0);
        CHECK_EQ(fs_sem_waiting(&c.s), 0);
        CHECK_EQ(fs_sem_value(&c.s), c.V);
        fs_sem_destroy(&c.s);
        printf("    %-8s %-9s %-7s %dx%d: got %ld, would-block %ld, timeout %ld, "
               "paused %ld, competed %ld, cancel %ld, cancel-after-grant %ld, "
               "samples %ld (%.0f ms)\n",
               fair ? "fair" : "non-fair", bounded ? "bounded" : "unbounded",
               spin ? "spin" : "no spin", STRESS_T, c.iters, atomic_load(&c.n_got),
               atomic_load(&c.n_would_block), atomic_load(&c.n_timeout),
               atomic_load(&c.n_paused), atomic_load(&c.n_competed), atomic_load(&c.n_cancel0),
               atomic_load(&c.n_cancel1), c.n_samples, ms);
    }
}

/* ------------------------------------------------------------------------ */
/* fork: the child drops the parent's waiters and keeps the count.          */

typedef struct hammer_ctx {
    fs_sem s;
    atomic_int stop;
    atomic_long rounds;
} hammer_ctx;

static void *hammer_main(void *p)
{
    hammer_ctx *h = p;
    while (!atomic_load(&h->stop)) {
        fs_waiter w;
        int rc = fs_sem_acquire_or_enqueue(&h->s, &w, 1);
        CHECK_EQ(rc, FS_OK);
        CHECK_EQ(fs_sem_release(&h->s, 1), FS_OK);
        (void)fs_sem_value(&h->s);
        atomic_fetch_add(&h->rounds, 1);
    }
    return NULL;
}

static void test_fork(void)
{
    const char *skip = getenv("FASTSEM_TEST_SKIP_FORK");
    int skip_busy = skip && strcmp(skip, "busy") == 0;
    if (skip && *skip && strcmp(skip, "0") != 0 && !skip_busy) {
        printf("    skipped (FASTSEM_TEST_SKIP_FORK)\n");
        return;
    }
    fs_sem s;
    waiter_t a, b;
    fs_waiter m0, m1, m2, m3; /* the forking thread's own (paused) nodes */
    CHECK_EQ(fs_sem_init(&s, 0, -1, 1), FS_OK);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &m0, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_wait(&s, &m0, FS_FOREVER, 0), FS_PAUSED);
    waiter_start(&a, &s, 0, 2, 0, 0, NULL);
    WAIT_FOR(fs_sem_waiting(&s) == 2);
    waiter_start(&b, &s, 1, 2, 0, 0, NULL);
    WAIT_FOR(fs_sem_waiting(&s) == 3);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK); /* to m0 (paused, granted) */
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK); /* 1 free, a and b still queued */
    CHECK_EQ(fs_sem_waiting(&s), 2);
    CHECK_EQ(fs_sem_value(&s), 1);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &m1, 1), FS_QUEUED); /* no barging */
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &m2, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &m3, 1), FS_QUEUED);
    CHECK_EQ(fs_sem_wait(&s, &m1, FS_FOREVER, 0), FS_PAUSED);
    CHECK_EQ(fs_sem_waiting(&s), 5);
    unsigned long gen = fs_fork_generation();

    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        g_test = "fork (child)";
        CHECK_EQ(fs_fork_generation(), gen + 1);
        CHECK_EQ(fs_sem_waiting(&s), 0); /* the parent's queue is gone */
        CHECK_EQ(fs_sem_value(&s), 1);  /* the count is kept */
        /* This thread's nodes: m0 keeps its grant; m1 joins this process's
         * queue again and takes the free permit at once; m2 joins and times
         * out; m3 is cancelled (nothing to pass on). */
        CHECK_EQ(fs_sem_wait(&s, &m0, FS_FOREVER, FS_FOREVER), FS_OK);
        CHECK_EQ(fs_sem_wait(&s, &m1, fs_deadline_after(5), FS_FOREVER), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 0);
        CHECK_EQ(fs_sem_wait(&s, &m2, fs_deadline_after(0.01), FS_FOREVER), FS_TIMEOUT);
        CHECK_EQ(fs_sem_waiting(&s), 0);
        CHECK_EQ(fs_sem_cancel(&s, &m3), 0);
        CHECK_EQ(fs_sem_waiting(&s), 0);
        CHECK_EQ(fs_sem_value(&s), 0);
        CHECK_EQ(fs_sem_release(&s, 2), FS_OK); /* m0's and m1's */
        CHECK_EQ(fs_sem_try_acquire(&s, 1), FS_OK);
        CHECK_EQ(fs_sem_try_acquire(&s, 2), FS_WOULD_BLOCK);
        CHECK_EQ(fs_sem_release(&s, 3), FS_OK);
        CHECK_EQ(fs_sem_try_acquire(&s, 2), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 2);
        /* Queueing, timing out and grants work with the new mutex. */
        fs_waiter w;
        CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 3), FS_QUEUED);
        CHECK_EQ(fs_sem_waiting(&s), 1);
        CHECK_EQ(fs_sem_wait(&s, &w, fs_deadline_after(0.01), FS_FOREVER), FS_TIMEOUT);
        CHECK_EQ(fs_sem_waiting(&s), 0);
        CHECK_EQ(fs_sem_acquire_or_enqueue(&s, &w, 3), FS_QUEUED);
        CHECK_EQ(fs_sem_release(&s, 1), FS_OK);
        CHECK_EQ(fs_sem_wait(&s, &w, fs_deadline_after(5), FS_FOREVER), FS_OK);
        CHECK_EQ(fs_sem_value(&s), 0);
        fs_sem_destroy(&s);
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);

    /* The parent is untouched. */
    CHECK_EQ(fs_fork_generation(), gen);
    CHECK_EQ(fs_sem_waiting(&s), 5);
    CHECK_EQ(fs_sem_value(&s), 1);
    CHECK_EQ(fs_sem_cancel(&s, &m3), 0);
    CHECK_EQ(fs_sem_cancel(&s, &m2), 0);
    CHECK_EQ(fs_sem_cancel(&s, &m1), 0);
    CHECK_EQ(fs_sem_waiting(&s), 2);
    CHECK_EQ(fs_sem_wait(&s, &m0, FS_FOREVER, FS_FOREVER), FS_OK);
    CHECK_EQ(fs_sem_release(&s, 1), FS_OK); /* m0's: a gets 2 */
    WAIT_FOR(waiter_rc(&a) == FS_OK);
    CHECK_EQ(fs_sem_release(&s, 2), FS_OK);
    WAIT_FOR(waiter_rc(&b) == FS_OK);
    CHECK_EQ(fs_sem_value(&s), 0);
    CHECK_EQ(fs_sem_waiting(&s), 0);
    join_thread(a.th);
    join_thread(b.th);
    fs_sem_destroy(&s);

    /* fork() while another thread is inside the semaphore (it may hold the
     * mutex, or a permit, at that instant): the child must not deadlock. */
    if (skip_busy) {
        printf("    fork with a busy semaphore skipped (FASTSEM_TEST_SKIP_FORK=busy)\n");
        return;
    }
    hammer_ctx h;
    CHECK_EQ(fs_sem_init(&h.s, 2, 2, 1), FS_OK);
    atomic_init(&h.stop, 0);
    atomic_init(&h.rounds, 0);
    pthread_t th;
    start_thread(&th, hammer_main, &h);
    const int forks = scaled(30);
    for (int i = 0; i < forks; i++) {
        long r0 = atomic_load(&h.rounds);
        WAIT_FOR(atomic_load(&h.rounds) > r0); /* the hammer is running */
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            g_test = "fork (child, busy semaphore)";
            alarm(10); /* a deadlock here kills the child via on_alarm */
            fs_count v = fs_sem_value(&h.s);
            CHECK(v == 1 || v == 2); /* the hammer may have held one */
            CHECK_EQ(fs_sem_waiting(&h.s), 0);
            CHECK_EQ(fs_sem_try_acquire(&h.s, v), FS_OK);
            CHECK_EQ(fs_sem_release(&h.s, v), FS_OK);
            _exit(0);
        }
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status));
        CHECK_EQ(WEXITSTATUS(status), 0);
    }
    atomic_store(&h.stop, 1);
    join_thread(th);
    CHECK_EQ(fs_sem_value(&h.s), 2);
    fs_sem_destroy(&h.s);
}

/* ------------------------------------------------------------------------ */

static void on_alarm(int sig)
{
    static const char msg[] = "\nwatchdog: a test hung (lost wake-up?): ";
    (void)sig;
    /* write() only: async-signal-safe */
    if (write(2, msg, sizeof msg - 1) < 0 || write(2, g_test, strlen(g_test)) < 0 ||
        write(2, "\n", 1) < 0) {
        /* nothing more to do */
    }
    _exit(2);
}

static const struct {
    const char *name;
    void (*fn)(void);
} tests[] = {
    {"basic", test_basic},
    {"fifo_order", test_fifo_order},
    {"no_barging", test_no_barging},
    {"head_of_line", test_head_of_line},
    {"timeout", test_timeout},
    {"pause", test_pause},
    {"compete", test_compete},
    {"compete_chain", test_compete_chain},
    {"starve", test_starve},
    {"relay", test_relay},
    {"spin", test_spin},
    {"cancel_race", test_cancel_race},
    {"notified", test_notified},
    {"notified_stress", test_notified_stress},
    {"stress", test_stress},
    {"lifecycle", test_lifecycle},
    {"wake_window", test_wake_window},
    {"lifecycle_races", test_lifecycle_races},
    {"fork", test_fork},
};

int main(int argc, char **argv)
{
    const char *env = getenv("FASTSEM_TEST_SCALE");
    if (argc > 1)
        env = argv[1];
    if (env && *env) {
        g_scale = atof(env);
        if (!(g_scale > 0)) {
            fprintf(stderr, "bad scale: %s\n", env);
            return 2;
        }
    }
    env = getenv("FASTSEM_TEST_TIMEOUT");
    if (env && atoi(env) > 0)
        g_timeout_s = (unsigned)atoi(env);
    const char *only = getenv("FASTSEM_TEST_ONLY");

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("fastsem core tests (scale %g%s)\n", g_scale, FS_TEST_TSAN ? ", tsan" : "");
    fs_time t_all = fs_now();
    int ran = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (only && *only && strcmp(only, tests[i].name) != 0)
            continue;
        g_test = tests[i].name;
        alarm(g_timeout_s);
        fs_time t0 = fs_now();
        tests[i].fn();
        alarm(0);
        printf("  %-13s ok (%.0f ms)\n", tests[i].name, (double)(fs_now() - t0) / 1e6);
        ran++;
    }
    if (ran == 0) {
        fprintf(stderr, "no test named %s\n", only);
        return 2;
    }
    printf("all %d tests passed (%.2f s)\n", ran, (double)(fs_now() - t_all) / 1e9);
    return 0;
}
