/*
 * test_proc.c - tests of csrc/fastsem_proc.c, the process-shared semaphore.
 *
 * Built by run_tests.sh beside test_core.c, plain and under the sanitizers,
 * with FSP_TEST_HOOKS: the core then lets a test make a process exit at the
 * n-th write of a step (fsp_test_die_at), holding the segment's mutex, and
 * checks the segment's invariants (fsp_test_check).
 *
 *   death_points  a child dies at every write of a release that serves the
 *                 queue, of a grant taken, of an enqueue, of a recovery: the
 *                 next locker rolls the step back; invariants hold after each
 *   cancel        a granted ticket cancelled passes its permits on; a
 *                 waiting one leaves; a deadline passed times out
 *   units         a pool of numbered units: distinct units, handed with
 *                 the grant, given back only by their holder, recovered
 *                 from the dead, also from a death inside release_unit
 *   fifo          threads queue in order and are granted in that order
 *   stress        threads of this process and forked children hammer it
 *                 with timeouts; the children are SIGKILLed at random; the
 *                 bound holds throughout and every permit comes back
 */
#define _GNU_SOURCE
#include "fastsem_proc.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *g_test = "?";

#define CHECK(e)                                                                   \
    do {                                                                           \
        if (!(e)) {                                                                \
            fprintf(stderr, "%s:%d: [%s] CHECK failed: %s\n", __FILE__, __LINE__,  \
                    g_test, #e);                                                   \
            _exit(1);                                                              \
        }                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                             \
    do {                                                                           \
        long long va_ = (long long)(a), vb_ = (long long)(b);                      \
        if (va_ != vb_) {                                                          \
            fprintf(stderr, "%s:%d: [%s] CHECK failed: %s == %s (%lld != %lld)\n", \
                    __FILE__, __LINE__, g_test, #a, #b, va_, vb_);                 \
            _exit(1);                                                              \
        }                                                                          \
    } while (0)

static double g_scale = 1.0;

static int scaled(int n)
{
    int k = (int)(n * g_scale);
    return k < 1 ? 1 : k;
}

static void nap_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

#define WAIT_FOR(expr)                                                             \
    do {                                                                           \
        fs_time end_ = fs_now() + (fs_time)10 * 1000000000;                        \
        while (!(expr)) {                                                          \
            CHECK(fs_now() < end_ && "timed out waiting for " #expr);              \
            nap_us(100);                                                           \
        }                                                                          \
    } while (0)

static void make(fsp_sem *s, fs_count value, fs_count max_value, int fair)
{
    int fd = fsp_memfd();
    CHECK(fd >= 0);
    CHECK_EQ(fsp_create(s, fd, value, max_value, fair, 64, 64, 0), FS_OK);
}

static fs_count held_in_total(fsp_sem *s)
{
    int32_t pids[64];
    fs_count permits[64];
    size_t n = fsp_holders(s, pids, permits, 64);
    CHECK(n <= 64);
    fs_count total = 0;
    for (size_t i = 0; i < n; i++)
        total += permits[i];
    return total;
}

/* Whatever was in flight, once every dead process is buried: the invariants
 * hold and no permit is lost or made (a bounded semaphore without
 * producers: free + held = bound). */
static void check_whole(fsp_sem *s, fs_count bound)
{
    fsp_recover(s);
    CHECK_EQ(fsp_test_check(s), 0);
    CHECK_EQ(fsp_value(s) + held_in_total(s), bound);
}

/* ---- death at every point of every kind of step --------------------- */

typedef struct waiter_arg {
    fsp_sem *s;
    fs_count n;
    _Atomic int done;
} waiter_arg;

static void *acquire_or_closed(void *p)
{
    waiter_arg *a = p;
    fsp_ticket t;
    int rc = fsp_acquire_or_enqueue(a->s, &t, a->n);
    while (rc == FS_QUEUED) {
        rc = fsp_wait(a->s, &t, FS_FOREVER, FS_FOREVER);
        if (rc == FS_PAUSED)
            rc = FS_QUEUED;
    }
    CHECK(rc == FS_OK || rc == FS_CLOSED);
    atomic_store(&a->done, rc == FS_OK ? 1 : 2);
    return NULL;
}

/* A child that holds 2 permits of a bound of 3 and then does `what`, set to
 * die at its k-th write; a thread of the parent waits for 2. Returns 1 if
 * the child died inside (so a larger k is worth trying). */
static int die_during(int what, int k)
{
    fsp_sem s;
    make(&s, 3, 3, 1);
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(pipefd[0]);
        CHECK_EQ(fsp_try_acquire(&s, NULL, 2), FS_OK);
        char c = 'x';
        CHECK(write(pipefd[1], &c, 1) == 1);
        /* Wait for the parent's waiter to queue, then die in the step. */
        while (fsp_waiting(&s) != 1)
            nap_us(100);
        fsp_test_die_at = k;
        fsp_ticket t;
        switch (what) {
        case 0: /* a release that hands permits to the queued waiter */
            fsp_release(&s, 2);
            break;
        case 1: /* an enqueue behind it */
            fsp_acquire_or_enqueue(&s, &t, 3);
            break;
        case 2: /* a cancel of a queued ticket */
            fsp_test_die_at = 0;
            CHECK_EQ(fsp_acquire_or_enqueue(&s, &t, 3), FS_QUEUED);
            fsp_test_die_at = k;
            fsp_cancel(&s, &t);
            break;
        case 3: /* close, with the waiter queued */
            fsp_close(&s);
            break;
        }
        _exit(0);
    }
    close(pipefd[1]);
    char c;
    CHECK(read(pipefd[0], &c, 1) == 1);
    close(pipefd[0]);
    waiter_arg arg = {&s, 2, 0};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, acquire_or_closed, &arg) == 0);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    int died_inside = WEXITSTATUS(status) == 77;
    CHECK_EQ(fsp_test_check(&s), 0); /* locks: rolls back a step cut short */
    int closed_by_child = fsp_closed(&s);
    /* The child is dead, holding 2 or having released them: the waiter gets
     * 2 permits either way, unless close() turned it away first. A close
     * rolled back is done again here, maybe after the dead child's permits
     * went to the waiter. */
    check_whole(&s, 3);
    if (what == 3 && !fsp_closed(&s))
        fsp_close(&s);
    WAIT_FOR(atomic_load(&arg.done) != 0);
    if (what != 3)
        CHECK_EQ(atomic_load(&arg.done), 1);
    else if (closed_by_child)
        CHECK_EQ(atomic_load(&arg.done), 2);
    pthread_join(thread, NULL);
    check_whole(&s, 3);
    fsp_detach(&s);
    return died_inside;
}

static void test_death_points(void)
{
    static const char *steps[] = {"release", "enqueue", "cancel", "close"};
    for (int what = 0; what < 4; what++) {
        int k = 1;
        while (die_during(what, k))
            k++;
        printf("    %-8s died at each of its %d writes\n", steps[what], k - 1);
        CHECK(k > 3); /* the step has writes to die in */
    }
}

/* ---- leaving the queue ---------------------------------------------- */

static void test_cancel(void)
{
    fsp_sem s;
    make(&s, 0, 2, 1);
    fsp_ticket first, second;
    CHECK_EQ(fsp_acquire_or_enqueue(&s, &first, 1), FS_QUEUED);
    CHECK_EQ(fsp_acquire_or_enqueue(&s, &second, 1), FS_QUEUED);
    /* Granted but not yet taken (an interrupt came first): cancelling passes
     * the permit on to the next in line, and this process holds nothing. */
    CHECK_EQ(fsp_release(&s, 1), FS_OK);
    CHECK_EQ(held_in_total(&s), 1);
    CHECK_EQ(fsp_cancel(&s, &first), 1);
    CHECK_EQ(fsp_wait(&s, &second, 0, FS_FOREVER), FS_OK);
    CHECK_EQ(held_in_total(&s), 1);
    /* Still waiting: cancelling leaves the queue and passes nothing on. */
    CHECK_EQ(fsp_acquire_or_enqueue(&s, &first, 2), FS_QUEUED);
    CHECK_EQ(fsp_cancel(&s, &first), 0);
    CHECK_EQ(fsp_waiting(&s), 0);
    CHECK_EQ(fsp_release(&s, 1), FS_OK);
    CHECK_EQ(fsp_value(&s), 1);
    /* A deadline that has passed: FS_TIMEOUT, out of the queue. */
    CHECK_EQ(fsp_acquire_or_enqueue(&s, &first, 2), FS_QUEUED);
    CHECK_EQ(fsp_wait(&s, &first, fs_now(), FS_FOREVER), FS_TIMEOUT);
    CHECK_EQ(fsp_waiting(&s), 0);
    CHECK_EQ(held_in_total(&s), 0);
    CHECK_EQ(fsp_test_check(&s), 0);
    fsp_stats st;
    fsp_statistics(&s, &st);
    CHECK_EQ(st.base.interrupts, 2);
    CHECK_EQ(st.base.timeouts, 1);
    fsp_detach(&s);
}

/* ---- a pool of numbered units --------------------------------------- */

static void make_pool(fsp_sem *s, uint32_t units)
{
    int fd = fsp_memfd();
    CHECK(fd >= 0);
    CHECK_EQ(fsp_create(s, fd, units, units, 1, 64, 64, units), FS_OK);
}

static void *take_a_unit(void *p)
{
    waiter_arg *a = p;
    fsp_ticket t;
    int rc = fsp_acquire_or_enqueue(a->s, &t, 1);
    while (rc == FS_QUEUED)
        rc = fsp_wait(a->s, &t, FS_FOREVER, FS_FOREVER) == FS_PAUSED ? FS_QUEUED : FS_OK;
    CHECK_EQ(rc, FS_OK);
    atomic_store(&a->done, 1 + t.unit);
    return NULL;
}

static void test_units(void)
{
    fsp_sem s;
    make_pool(&s, 3);
    fsp_ticket t;
    int seen = 0;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(fsp_try_acquire(&s, &t, 1), FS_OK);
        CHECK(t.unit >= 0 && t.unit < 3 && !(seen & (1 << t.unit)));
        seen |= 1 << t.unit;
        CHECK_EQ(fsp_unit_holder(&s, t.unit), getpid());
    }
    CHECK_EQ(fsp_try_acquire(&s, &t, 1), FS_WOULD_BLOCK);
    CHECK_EQ(fsp_try_acquire(&s, &t, 2), FS_OVER_MAX);
    CHECK_EQ(fsp_release(&s, 1), FSP_NO_UNITS);
    CHECK_EQ(fsp_release_unit(&s, 3), FSP_BAD_UNIT);
    /* A unit goes to the waiter that the release serves. */
    waiter_arg arg = {&s, 1, 0};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, take_a_unit, &arg) == 0);
    WAIT_FOR(fsp_waiting(&s) == 1);
    CHECK_EQ(fsp_release_unit(&s, 1), FS_OK);
    pthread_join(thread, NULL);
    CHECK_EQ(atomic_load(&arg.done), 1 + 1);
    /* Another process cannot give back this one's unit; a unit it holds
     * when it dies comes back; and a death at each write of its
     * release_unit leaves the pool whole. */
    for (int k = 0;; k++) {
        CHECK_EQ(fsp_release_unit(&s, 2), FS_OK);
        pid_t pid = fork();
        if (pid == 0) {
            CHECK_EQ(fsp_release_unit(&s, 0), FSP_NOT_OWNER);
            CHECK_EQ(fsp_try_acquire(&s, &t, 1), FS_OK);
            CHECK_EQ(t.unit, 2);
            fsp_test_die_at = k;
            if (k > 0)
                fsp_release_unit(&s, 2);
            _exit(0);
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status));
        fsp_recover(&s);
        CHECK_EQ(fsp_test_check(&s), 0);
        CHECK_EQ(fsp_unit_holder(&s, 2), 0);
        CHECK_EQ(fsp_value(&s), 1);
        CHECK_EQ(fsp_try_acquire(&s, &t, 1), FS_OK);
        CHECK_EQ(t.unit, 2);
        if (k > 0 && WEXITSTATUS(status) != 77)
            break;
    }
    fsp_detach(&s);
}

/* ---- FIFO among threads --------------------------------------------- */

typedef struct fifo_arg {
    fsp_sem *s;
    int id;
    int *log;
    _Atomic int *logged;
} fifo_arg;

static void *fifo_thread(void *p)
{
    fifo_arg *a = p;
    fsp_ticket t;
    int rc = fsp_acquire_or_enqueue(a->s, &t, 1);
    while (rc == FS_QUEUED)
        rc = fsp_wait(a->s, &t, FS_FOREVER, FS_FOREVER) == FS_PAUSED ? FS_QUEUED : FS_OK;
    a->log[atomic_fetch_add(a->logged, 1)] = a->id;
    CHECK_EQ(fsp_release(a->s, 1), FS_OK);
    return NULL;
}

static void test_fifo(void)
{
    enum { N = 8 };
    fsp_sem s;
    make(&s, 0, -1, 1);
    int log[N];
    _Atomic int logged = 0;
    pthread_t threads[N];
    fifo_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (fifo_arg){&s, i, log, &logged};
        CHECK(pthread_create(&threads[i], NULL, fifo_thread, &args[i]) == 0);
        WAIT_FOR(fsp_waiting(&s) == (size_t)i + 1);
    }
    CHECK_EQ(fsp_try_acquire(&s, NULL, 1), FS_WOULD_BLOCK);
    CHECK_EQ(fsp_release(&s, 1), FS_OK);
    for (int i = 0; i < N; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < N; i++)
        CHECK_EQ(log[i], i);
    CHECK_EQ(fsp_value(&s), 1);
    CHECK_EQ(fsp_test_check(&s), 0);
    fsp_detach(&s);
}

/* ---- stress: threads and killed children ---------------------------- */

typedef struct stress_shared {
    _Atomic long inside;
    _Atomic long worst;
} stress_shared;

typedef struct stress_arg {
    fsp_sem *s;
    stress_shared *book;
    unsigned seed;
    int rounds;
    fs_count bound;
} stress_arg;

static void *stress_thread(void *p)
{
    stress_arg *a = p;
    unsigned seed = a->seed;
    for (int r = 0; r < a->rounds; r++) {
        fs_count n = 1 + (rand_r(&seed) % 2);
        fsp_ticket t;
        fs_time deadline = rand_r(&seed) % 3 == 0 ? fs_now() + 200000 : FS_FOREVER;
        int rc = fsp_acquire_or_enqueue(a->s, &t, n);
        while (rc == FS_QUEUED) {
            rc = fsp_wait(a->s, &t, deadline, FS_FOREVER);
            if (rc == FS_PAUSED)
                rc = FS_QUEUED;
        }
        if (rc == FS_TIMEOUT)
            continue;
        CHECK_EQ(rc, FS_OK);
        long now = atomic_fetch_add(&a->book->inside, n) + n;
        long worst = atomic_load(&a->book->worst);
        while (now > worst && !atomic_compare_exchange_weak(&a->book->worst, &worst, now))
            ;
        if (rand_r(&seed) % 4 == 0)
            sched_yield();
        atomic_fetch_sub(&a->book->inside, n);
        CHECK_EQ(fsp_release(a->s, n), FS_OK);
    }
    return NULL;
}

static void test_stress(void)
{
    enum { THREADS = 4, CHILDREN = 3 };
    const fs_count bound = 3;
    fsp_sem s;
    make(&s, bound, bound, 1);
    stress_shared *book = mmap(NULL, sizeof *book, PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(book != MAP_FAILED);
    /* Children first (forked while this process has one thread), each a
     * loop that is killed at a random moment: permits it held are not in
     * the book (it cannot take them out when killed), so the book counts
     * this process's threads only, against the bound. */
    pid_t kids[CHILDREN];
    for (int c = 0; c < CHILDREN; c++) {
        kids[c] = fork();
        CHECK(kids[c] >= 0);
        if (kids[c] == 0) {
            stress_shared mine = {0, 0};
            stress_arg arg = {&s, &mine, 1000u + (unsigned)c, 1 << 30, bound};
            stress_thread(&arg);
            _exit(0);
        }
    }
    pthread_t threads[THREADS];
    stress_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (stress_arg){&s, book, (unsigned)i + 1, scaled(3000), bound};
        CHECK(pthread_create(&threads[i], NULL, stress_thread, &args[i]) == 0);
    }
    unsigned seed = 7;
    for (int c = 0; c < CHILDREN; c++) {
        nap_us(2000 + rand_r(&seed) % 20000);
        kill(kids[c], SIGKILL);
        CHECK(waitpid(kids[c], NULL, 0) == kids[c]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    CHECK(atomic_load(&book->worst) <= bound);
    check_whole(&s, bound);
    CHECK_EQ(fsp_value(&s), bound);
    fsp_stats st;
    fsp_statistics(&s, &st);
    CHECK_EQ(st.dead_processes, CHILDREN);
    munmap(book, sizeof *book);
    fsp_detach(&s);
}

static const struct {
    const char *name;
    void (*fn)(void);
} tests[] = {
    {"death_points", test_death_points},
    {"cancel", test_cancel},
    {"units", test_units},
    {"fifo", test_fifo},
    {"stress", test_stress},
};

int main(int argc, char **argv)
{
    if (argc > 1)
        g_scale = atof(argv[1]);
    if (!(g_scale > 0))
        g_scale = 1.0;
    const char *only = getenv("FASTSEM_TEST_ONLY");
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("fastsem process core tests (scale %g)\n", g_scale);
    int ran = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (only && *only && strcmp(only, tests[i].name) != 0)
            continue;
        g_test = tests[i].name;
        alarm(120);
        fs_time t0 = fs_now();
        tests[i].fn();
        alarm(0);
        printf("  %-13s ok (%.0f ms)\n", tests[i].name, (double)(fs_now() - t0) / 1e6);
        ran++;
    }
    printf("all %d process tests passed\n", ran);
    return 0;
}
