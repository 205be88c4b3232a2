/*
 * core_contended.c - the contended loop on the C core alone: THREADS pthreads
 * loop acquire / release on a fair fs_sem of VALUE, no Python, no GIL. The
 * waits it sees are the floor a strictly FIFO semaphore has on the machine
 * (a granted thread the scheduler does not run holds up everyone behind it).
 * Built and run by bench/test_pool_bench.py next to the pools.
 *
 * Usage: core_contended THREADS VALUE SECONDS WARMUP
 * Prints one JSON object: ops_per_s, counts, p50/p99/max wait in ns of the
 * acquisitions that started inside the measured window.
 */
#define _POSIX_C_SOURCE 200809L
#include "fastsem_core.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct worker {
    pthread_t th;
    fs_time *waits; /* of the acquisitions inside the window */
    size_t count, cap;
} worker;

static fs_sem g_sem;
static atomic_int g_stop;
static _Atomic fs_time g_window_start = FS_FOREVER;
static _Atomic fs_time g_window_end = FS_FOREVER;

static void *run(void *p)
{
    worker *me = p;
    while (!atomic_load(&g_stop)) {
        fs_waiter w;
        fs_time t0 = fs_now();
        int rc = fs_sem_acquire_or_enqueue(&g_sem, &w, 1);
        while (rc == FS_QUEUED)
            rc = fs_sem_wait(&g_sem, &w, FS_FOREVER, FS_FOREVER);
        fs_time t1 = fs_now();
        if (rc != FS_OK || fs_sem_release(&g_sem, 1) != FS_OK)
            abort();
        if (t0 < atomic_load(&g_window_start) || t0 >= atomic_load(&g_window_end))
            continue;
        if (me->count == me->cap) {
            me->cap = me->cap ? me->cap * 2 : 1 << 16;
            me->waits = realloc(me->waits, me->cap * sizeof *me->waits);
            if (me->waits == NULL)
                abort();
        }
        me->waits[me->count++] = t1 - t0;
    }
    return NULL;
}

static void nap(double seconds)
{
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int by_value(const void *a, const void *b)
{
    fs_time x = *(const fs_time *)a, y = *(const fs_time *)b;
    return (x > y) - (x < y);
}

/* Nearest rank, as fastsem._compare. */
static fs_time percentile(const fs_time *sorted, size_t n, int p)
{
    size_t rank = ((size_t)p * n + 99) / 100;
    return sorted[(rank < 1 ? 1 : rank > n ? n : rank) - 1];
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: core_contended THREADS VALUE SECONDS WARMUP\n");
        return 2;
    }
    int threads = atoi(argv[1]);
    fs_count value = atoll(argv[2]);
    double seconds = atof(argv[3]), warmup = atof(argv[4]);
    if (threads < 1 || fs_sem_init(&g_sem, value, -1, 1) != FS_OK)
        return 2;
    worker *pool = calloc((size_t)threads, sizeof *pool);
    for (int i = 0; i < threads; i++)
        pthread_create(&pool[i].th, NULL, run, &pool[i]);
    nap(warmup);
    fs_time begin = fs_now();
    atomic_store(&g_window_start, begin);
    nap(seconds);
    fs_time end = fs_now();
    atomic_store(&g_window_end, end);
    atomic_store(&g_stop, 1);
    size_t total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(pool[i].th, NULL);
        total += pool[i].count;
    }
    fs_time *all = malloc((total ? total : 1) * sizeof *all);
    size_t at = 0;
    printf("{\"threads\": %d, \"value\": %lld, \"counts\": [", threads, (long long)value);
    for (int i = 0; i < threads; i++) {
        printf("%s%zu", i ? ", " : "", pool[i].count);
        for (size_t k = 0; k < pool[i].count; k++)
            all[at++] = pool[i].waits[k];
        free(pool[i].waits);
    }
    qsort(all, total, sizeof *all, by_value);
    printf("], \"ops_per_s\": %.1f, \"p50_wait_ns\": %lld, \"p99_wait_ns\": %lld, "
           "\"max_wait_ns\": %lld}\n",
           (double)total / ((double)(end - begin) / 1e9),
           (long long)(total ? percentile(all, total, 50) : 0),
           (long long)(total ? percentile(all, total, 99) : 0),
           (long long)(total ? all[total - 1] : 0));
    free(all);
    free(pool);
    fs_sem_destroy(&g_sem);
    return 0;
}
