/*
 * core_pair.c - ns per uncontended fs_sem_try_acquire + fs_sem_release, the
 * core's part of an uncontended acquire()+release() from Python. Built by
 * bench/test_statistics_overhead.py twice: as shipped, and with
 * -DFS_COUNT_UNCONTENDED=0, to show what counting acquisitions costs.
 *
 * Usage: core_pair [pairs]   prints the best ns per pair of 7 runs.
 */
#define _POSIX_C_SOURCE 200809L
#include "fastsem_core.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    long pairs = argc > 1 ? atol(argv[1]) : 20000000;
    fs_sem s;
    if (fs_sem_init(&s, 1, -1, 1) != FS_OK)
        return 1;
    double best = 1e30;
    for (int run = 0; run < 7; run++) {
        fs_time start = fs_now();
        for (long i = 0; i < pairs; i++) {
            if (fs_sem_try_acquire(&s, 1) != FS_OK || fs_sem_release(&s, 1) != FS_OK)
                return 2;
        }
        double ns = (double)(fs_now() - start) / (double)pairs;
        if (ns < best)
            best = ns;
    }
    printf("%.3f\n", best);
    fs_sem_destroy(&s);
    return 0;
}
