/*
 * fastsem_proc.c - a FIFO-fair counting semaphore shared by processes.
 *
 * Design
 * ------
 * Everything lives in one shared memory segment, so that any thread of any
 * process that maps it is a peer; nothing in it is a pointer (each process
 * maps it at its own address), so the queue links are slot indices:
 *
 *   +--------+-------+---------+--------------------+----------------------+
 *   | header | mutex | journal | permit word, queue | process records      |
 *   | magic, |robust,| undo    | ends, mode,        | [pid, start, held]   |
 *   | sizes  |pshared| entries | statistics         +----------------------+
 *   +--------+-------+---------+--------------------+ waiter slots         |
 *                                                   | [futex, state, links]|
 *                                                   +----------------------+
 *
 * One mutex guards the whole state, but for the permit word's fast lane
 * (the comment at WORD_SLOW): a process may die at any instruction, and a
 * state that is changed only under one mutex, in journaled steps, or by one
 * compare-and-swap that says what it changed, is one that the next process
 * can always put right.
 *
 * Dying inside the critical section. The mutex is robust: when its owner
 * dies, the next locker gets EOWNERDEAD. The state may then be half-changed,
 * so every change is a journaled step. Before a field is written, its
 * offset and old value are appended to the undo journal (in the segment);
 * when the step is complete (the state is consistent again) the journal is
 * emptied with one store. A locker that gets EOWNERDEAD rolls the journal
 * back, newest entry first (death during the rollback leaves a shorter
 * journal, rolled back by the next locker), marks the mutex consistent and
 * serves the queue, since the dead owner may have stopped between two steps
 * (a release that added permits but had not yet handed them on). A step's
 * effects outside the state, the wake-ups, come after it is committed, so a
 * rolled-back step was never seen. The alternative, a lock-free state with
 * one compare-and-swap per change, would need the queue in one word; a
 * fair queue does not fit.
 *
 * Who holds what. A process that uses the semaphore has a record: its pid,
 * its start time (field 22 of /proc/<pid>/stat, which tells a reused pid
 * apart), and the permits it holds, which follows SysV's SEM_UNDO: what a
 * process acquired (or was granted) and has not released is its to give
 * back; a release is charged to what the releasing process holds, as far as
 * it holds any, so a producer that releases permits it never acquired owes
 * nothing. Threads of one process share its record: permits belong to
 * processes, as they are given back when a process dies.
 *
 * Finding the dead. Waiters sleep at most FSP_POLL_NS at a time; when one
 * wakes and the last look is FSP_SWEEP_NS old, it looks (once for all of
 * them: the time of the last look is in the segment) at every record's
 * process: gone, a zombie, or a pid with another start time is dead. A dead
 * process's queued slots are dropped (a slot that was granted but not yet
 * taken included: its permits are in the record's count already), what it
 * held goes back to the count (never past a bounded semaphore's bound), and
 * the queue is served in FIFO order. Nobody waits, nobody looks: permits
 * nobody asks for are lost to no one.
 *
 * Waiting. A waiter slot's futex word is bumped at every signal (a grant,
 * close, a non-fair call to compete), after the mutex is released; the
 * waiter reads it under the mutex when it looks at its slot, and sleeps only
 * while it is unchanged, so no wake-up is lost. A waker that dies before it
 * sends them costs its waiters one FSP_POLL_NS. The head spins briefly
 * before it sleeps, as in the thread core, and so does a locker that finds
 * the mutex taken, yielding the CPU between looks, and neither spins in a
 * process that may run on one CPU only. A woken waiter takes the mutex to
 * look: a grant becomes its own only under the mutex, so a grant rolled back
 * with its dead granter's step is never taken.
 *
 * Fair and non-fair mode, the invariant and head-of-line blocking are the
 * thread core's ("Fair mode", "Non-fair mode" in fastsem_core.c), with one
 * difference in non-fair mode: while anyone waits, every acquire, barging
 * or competing, takes the mutex.
 *
 * PID namespaces. Pids mean something only within one namespace; a segment
 * remembers its maker's and refuses processes of another (FSP_OTHER_PIDNS).
 */
#define _GNU_SOURCE
#include "fastsem_proc.h"

#include <errno.h>

#ifndef __linux__

int fsp_memfd(void) { errno = ENOSYS; return -1; }
int fsp_shm_create(const char *name) { (void)name; errno = ENOSYS; return -1; }
int fsp_shm_open(const char *name) { (void)name; errno = ENOSYS; return -1; }
int fsp_shm_unlink(const char *name) { (void)name; errno = ENOSYS; return -1; }
int fsp_create(fsp_sem *s, int fd, fs_count value, fs_count max_value, int fair,
               uint32_t max_processes, uint32_t max_waiters, uint32_t units)
{
    (void)s; (void)fd; (void)value; (void)max_value; (void)fair;
    (void)max_processes; (void)max_waiters; (void)units;
    return FSP_UNSUPPORTED;
}
int fsp_attach(fsp_sem *s, int fd) { (void)s; (void)fd; return FSP_UNSUPPORTED; }
void fsp_detach(fsp_sem *s) { (void)s; }
int fsp_try_acquire(fsp_sem *s, fsp_ticket *t, fs_count n)
{
    (void)s; (void)t; (void)n;
    return FSP_UNSUPPORTED;
}
int fsp_release_unit(fsp_sem *s, int32_t unit) { (void)s; (void)unit; return FSP_UNSUPPORTED; }
uint32_t fsp_units(fsp_sem *s) { (void)s; return 0; }
int32_t fsp_unit_holder(fsp_sem *s, int32_t unit) { (void)s; (void)unit; return 0; }
int fsp_acquire_or_enqueue(fsp_sem *s, fsp_ticket *t, fs_count n)
{
    (void)s; (void)t; (void)n;
    return FSP_UNSUPPORTED;
}
int fsp_wait(fsp_sem *s, fsp_ticket *t, fs_time deadline, fs_time wake_by)
{
    (void)s; (void)t; (void)deadline; (void)wake_by;
    return FSP_UNSUPPORTED;
}
int fsp_cancel(fsp_sem *s, fsp_ticket *t) { (void)s; (void)t; return 0; }
int fsp_release(fsp_sem *s, fs_count n) { (void)s; (void)n; return FSP_UNSUPPORTED; }
fs_count fsp_value(fsp_sem *s) { (void)s; return 0; }
fs_count fsp_max_value(fsp_sem *s) { (void)s; return -1; }
size_t fsp_waiting(fsp_sem *s) { (void)s; return 0; }
int fsp_fair(fsp_sem *s) { (void)s; return 1; }
int fsp_closed(fsp_sem *s) { (void)s; return 1; }
uint32_t fsp_max_processes(fsp_sem *s) { (void)s; return 0; }
uint32_t fsp_max_waiters(fsp_sem *s) { (void)s; return 0; }
void fsp_close(fsp_sem *s) { (void)s; }
void fsp_statistics(fsp_sem *s, fsp_stats *out) { (void)s; (void)out; }
void fsp_reset_statistics(fsp_sem *s) { (void)s; }
size_t fsp_holders(fsp_sem *s, int32_t *pids, fs_count *permits, size_t room)
{
    (void)s; (void)pids; (void)permits; (void)room;
    return 0;
}
size_t fsp_recover(fsp_sem *s) { (void)s; return 0; }

#else /* __linux__ */

#include <fcntl.h>
#include <linux/futex.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define FSP_MAGIC UINT64_C(0x31504d4553545346) /* "FSTSEMP1", little-endian */
#define FSP_VERSION 1
#define FSP_UNDO_MAX 64
#define FSP_WAKE_BATCH 64
#define FSP_SWEEP_BATCH 64
/* How long fsp_attach waits for a segment that its maker is still filling. */
#define FSP_ATTACH_PATIENCE_NS 1000000000

enum { W_FREE = 0, W_WAITING = 1, W_GRANTED = 2, W_CLOSED = 3 };

/* The permit word: the free permits, and a fast lane that records what one
 * process took without the mutex.
 *
 *    63     62      61..46        45..31       30..0
 *  +------+--------+-------------+------------+--------------+
 *  | SLOW | CLOSED | lane owner  | lane count | free permits |
 *  +------+--------+-------------+------------+--------------+
 *
 * While SLOW is clear (nobody queued, no mutex holder at work, not a slot
 * pool), an acquire by the lane's owner, or by anyone while the lane is
 * empty, takes permits with one compare-and-swap that also adds them to the
 * lane (owner: its record's index + 1); a release by the owner of permits
 * in the lane gives them back the same way. One atomic change moves permits
 * and records who holds them, so a process that dies at any instruction of
 * the lock-free path leaves a word that says what it held. Everything else
 * holds the mutex and first freezes the word (sets SLOW, so that no
 * lock-free change can come) and empties the lane into the owner's record:
 * under the mutex the word is then a journaled field like any other, and
 * the records hold every permit held. SLOW is cleared again at the end if
 * nobody is queued, after the journal is empty. */
#define WORD_SLOW (UINT64_C(1) << 63)
#define WORD_CLOSED (UINT64_C(1) << 62)
#define LANE_OWNER_SHIFT 46
#define LANE_OWNER_MASK (UINT64_C(0xFFFF) << LANE_OWNER_SHIFT)
#define LANE_COUNT_SHIFT 31
#define LANE_COUNT_MAX UINT64_C(0x7FFF)
#define LANE_COUNT_MASK (LANE_COUNT_MAX << LANE_COUNT_SHIFT)
#define FREE_MASK ((UINT64_C(1) << 31) - 1)

typedef struct proc_record {
    int32_t pid;     /* 0: a free record */
    int32_t unused;
    uint64_t start;  /* the process's start time, in clock ticks after boot */
    int64_t held;    /* permits acquired or granted and not released, less
                        what the permit word's fast lane holds for it */
    uint64_t fast_acquisitions; /* by the lock-free path: atomic adds */
} proc_record;

typedef struct waiter_slot {
    uint32_t futex;  /* bumped at every signal; never journaled */
    uint32_t state;  /* W_* */
    int32_t proc;    /* the owner's record */
    int32_t prev, next;
    uint32_t starving;
    int32_t unit;    /* the unit granted with the permit (pools), else -1 */
    int32_t unused;
    int64_t want;
    int64_t queued_at;
    int64_t waited;  /* queued_at to the grant */
} waiter_slot;

typedef struct undo_entry {
    uint32_t offset;
    uint32_t size;
    uint64_t old;
} undo_entry;

typedef struct shared_stats {
    uint64_t acquisitions, contended, timeouts, interrupts, max_waiting;
    uint64_t wait_total_ns, wait_max_ns, recovered, dead_processes;
    uint64_t histogram[FS_HIST_BUCKETS];
} shared_stats;

struct fsp_shared {
    uint64_t magic;        /* stored last by the maker */
    uint32_t version;
    uint32_t header_size;  /* sizeof(struct fsp_shared) of the maker */
    uint64_t total_size;
    uint32_t max_procs, max_waiters;
    uint32_t units;        /* a pool of numbered units: how many, else 0 */
    uint32_t unused_;
    uint64_t pidns;        /* the inode of the maker's PID namespace, or 0 */
    pthread_mutex_t mutex;
    uint32_t undo_count;
    uint32_t unused;
    undo_entry undo[FSP_UNDO_MAX];
    /* Under the mutex, every change journaled; value, closed and waiting are
     * also read without it (snapshots). */
    uint64_t word;         /* the permit word (below); lock-free while thawed */
    int64_t max_value;     /* -1: unbounded */
    int32_t fair;
    int32_t unused2;
    int32_t head, tail;    /* slot indices, -1: none */
    int64_t waiting;
    int64_t starve_ns;
    int64_t spin_ns;
    shared_stats stats;
    /* Hints, not state: atomics, never journaled. */
    int64_t last_sweep;
    uint32_t free_hint;
};

/* ---- layout ---------------------------------------------------------- */

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static size_t procs_offset(void) { return align64(sizeof(struct fsp_shared)); }

static size_t waiters_offset(uint32_t max_procs)
{
    return procs_offset() + align64((size_t)max_procs * sizeof(proc_record));
}

static size_t units_offset(uint32_t max_procs, uint32_t max_waiters)
{
    return waiters_offset(max_procs) + align64((size_t)max_waiters * sizeof(waiter_slot));
}

static size_t layout_size(uint32_t max_procs, uint32_t max_waiters, uint32_t units)
{
    return units_offset(max_procs, max_waiters) + align64((size_t)units * sizeof(int32_t));
}

static proc_record *record(fsp_shared *sh, int32_t i)
{
    return (proc_record *)((char *)sh + procs_offset()) + i;
}

static waiter_slot *slot(fsp_shared *sh, int32_t i)
{
    return (waiter_slot *)((char *)sh + waiters_offset(sh->max_procs)) + i;
}

static uint64_t load_word(fsp_shared *sh)
{
    return __atomic_load_n(&sh->word, __ATOMIC_ACQUIRE);
}

static int64_t free_permits(fsp_shared *sh)
{
    return (int64_t)(load_word(sh) & FREE_MASK);
}

static int is_closed(fsp_shared *sh) { return (load_word(sh) & WORD_CLOSED) != 0; }

/* A pool's units: the holder's record index + 1, or 0 for a free unit. */
static int32_t *unit_owner(fsp_shared *sh, int32_t u)
{
    return (int32_t *)((char *)sh + units_offset(sh->max_procs, sh->max_waiters)) + u;
}

/* ---- the journal ----------------------------------------------------- */

#ifdef FSP_TEST_HOOKS
/* The C tests kill a process at every point of a step: when this counts
 * down to zero, the process exits at once, holding the mutex. */
int fsp_test_die_at;
static void maybe_die(void)
{
    if (fsp_test_die_at > 0 && --fsp_test_die_at == 0)
        _exit(77);
}
#else
#define maybe_die() ((void)0)
#endif

/* A write of a journaled field: the old value goes into the journal first.
 * The signal fences keep the compiler from reordering the three stores; a
 * process that dies stops between two of them, never inside one. */
static void journal(fsp_shared *sh, void *field, uint32_t size)
{
    uint32_t i = sh->undo_count;
    if (i >= FSP_UNDO_MAX)
        abort(); /* a step larger than the journal: a bug, not a state */
    maybe_die();
    undo_entry *e = &sh->undo[i];
    e->offset = (uint32_t)((char *)field - (char *)sh);
    e->size = size;
    /* Atomic loads, though the mutex orders them: the permit word is also
     * written lock-free (while thawed), and a sanitizer that cannot see the
     * other processes' side of the mutex would take plain reads for races. */
    e->old = size == 8 ? __atomic_load_n((uint64_t *)field, __ATOMIC_RELAXED)
                       : __atomic_load_n((uint32_t *)field, __ATOMIC_RELAXED);
    atomic_signal_fence(memory_order_seq_cst);
    __atomic_store_n(&sh->undo_count, i + 1, __ATOMIC_RELAXED);
    atomic_signal_fence(memory_order_seq_cst);
    maybe_die();
}

static void set64(fsp_shared *sh, void *field, uint64_t v)
{
    journal(sh, field, 8);
    __atomic_store_n((uint64_t *)field, v, __ATOMIC_RELAXED);
    maybe_die();
}

static void set32(fsp_shared *sh, void *field, uint32_t v)
{
    journal(sh, field, 4);
    __atomic_store_n((uint32_t *)field, v, __ATOMIC_RELAXED);
    maybe_die();
}

static void add64(fsp_shared *sh, void *field, int64_t by)
{
    set64(sh, field, __atomic_load_n((uint64_t *)field, __ATOMIC_RELAXED) + (uint64_t)by);
}

/* Under the mutex, with the word frozen: free permits up or down (the
 * checks that keep the count within FSP_COUNT_MAX come first). */
static void add_free(fsp_shared *sh, int64_t by)
{
    set64(sh, &sh->word, load_word(sh) + (uint64_t)by);
}

/* The state is consistent again: the step is done. */
static void commit(fsp_shared *sh)
{
    atomic_signal_fence(memory_order_seq_cst);
    __atomic_store_n(&sh->undo_count, 0, __ATOMIC_RELAXED);
}

static void roll_back(fsp_shared *sh)
{
    uint32_t n = sh->undo_count;
    if (n > FSP_UNDO_MAX)
        n = FSP_UNDO_MAX;
    while (n > 0) {
        undo_entry *e = &sh->undo[n - 1];
        if ((uint64_t)e->offset + e->size <= sh->total_size) {
            char *field = (char *)sh + e->offset;
            if (e->size == 8)
                __atomic_store_n((uint64_t *)field, e->old, __ATOMIC_RELAXED);
            else if (e->size == 4)
                __atomic_store_n((uint32_t *)field, (uint32_t)e->old, __ATOMIC_RELAXED);
        }
        n--;
        atomic_signal_fence(memory_order_seq_cst);
        __atomic_store_n(&sh->undo_count, n, __ATOMIC_RELAXED);
    }
}

/* ---- this process ---------------------------------------------------- */

/* Bumped in every fork child: a handle's record is this process's only if
 * it was found in the current generation. */
static _Atomic unsigned long g_generation;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

static int g_cpus;

static void atfork_child(void)
{
    atomic_fetch_add(&g_generation, 1);
    __atomic_store_n(&g_cpus, 0, __ATOMIC_RELAXED); /* a child may run elsewhere */
}

static void register_atfork(void) { pthread_atfork(NULL, NULL, atfork_child); }

/* Field 3 (state) and field 22 (start time) of /proc/<pid>/stat. Returns 1
 * if read, 0 if the process does not exist, -1 if it cannot be told. */
static int read_stat(int32_t pid, char *state, uint64_t *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    ssize_t len = read(fd, buf, sizeof buf - 1);
    int err = errno;
    close(fd);
    if (len <= 0)
        return err == ESRCH ? 0 : -1;
    buf[len] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold anything */
    if (p == NULL || p[1] != ' ')
        return -1;
    p += 2;
    *state = *p;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (p == NULL)
            return -1;
        p++;
    }
    *start = strtoull(p, NULL, 10);
    return 1;
}

static void self_identity(int32_t *pid, uint64_t *start)
{
    char state;
    *pid = (int32_t)getpid();
    if (read_stat(*pid, &state, start) != 1)
        *start = 0; /* no /proc: liveness by kill(pid, 0) alone */
}

/* 0 if the process of a record is gone, a zombie, or another process under
 * a reused pid; 1 otherwise, and when it cannot be told. */
static int process_alive(int32_t pid, uint64_t start)
{
    char state;
    uint64_t now_start;
    int rc = read_stat(pid, &state, &now_start);
    if (rc == 0)
        return 0;
    if (rc < 0)
        return !(kill(pid, 0) != 0 && errno == ESRCH);
    if (state == 'Z' || state == 'X' || state == 'x')
        return 0;
    return start == 0 || now_start == start;
}

static uint64_t pid_namespace(void)
{
    struct stat st;
    return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* ---- futexes --------------------------------------------------------- */

/* Not FUTEX_PRIVATE_FLAG: the word is shared with other processes. */
static int futex_wait(uint32_t *word, uint32_t expected, fs_time timeout_ns)
{
    struct timespec ts = {(time_t)(timeout_ns / 1000000000),
                          (long)(timeout_ns % 1000000000)};
    if (syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, NULL, 0) == 0)
        return 0;
    return errno;
}

static void futex_wake(uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* ---- operations: lock, steps, wake-ups after the unlock ------------- */

typedef struct op {
    fsp_sem *s;
    fsp_shared *sh;
    int nwake;
    int32_t wake[FSP_WAKE_BATCH];
} op;

static void serve(op *o);

/* One step of a spin: a short pause, then a yield of the CPU. The process
 * a spinner waits for (the releaser, the mutex's holder) is often on the
 * same CPU, where a spin that does not yield keeps it from running: with
 * two processes on one CPU, every handoff then costs the whole spin. A
 * yield with nothing else to run returns at once. */
/* Whether this process may run on more than one CPU (its affinity, which
 * taskset or a container may narrow): alone on one, a spinner only delays
 * the process it waits for. Read once per process. */
static int may_spin(fsp_shared *sh)
{
    if (sh->spin_ns <= 0)
        return 0;
    int cpus = __atomic_load_n(&g_cpus, __ATOMIC_RELAXED);
    if (cpus == 0) {
        cpu_set_t set;
        cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 2;
        __atomic_store_n(&g_cpus, cpus, __ATOMIC_RELAXED);
    }
    return cpus > 1;
}

static void pause_yielding(void)
{
    for (int i = 0; i < 32; i++)
        fs_cpu_relax();
    sched_yield();
}

/* glibc's robust mutexes sleep at once when taken; the critical sections
 * here are short, so a locker first tries for up to FSP_LOCK_SPIN_NS (with
 * more than one CPU): a woken waiter often finds its waker still inside,
 * and sleeping then costs it a second wake-up. */
#define FSP_LOCK_SPIN_NS 20000

static int lock_mutex(fsp_shared *sh)
{
    int rc = pthread_mutex_trylock(&sh->mutex);
    if (rc != EBUSY)
        return rc;
    if (may_spin(sh)) {
        fs_time until = fs_now() + FSP_LOCK_SPIN_NS;
        do {
            pause_yielding();
            rc = pthread_mutex_trylock(&sh->mutex);
            if (rc != EBUSY)
                return rc;
        } while (fs_now() < until);
    }
    return pthread_mutex_lock(&sh->mutex);
}

/* Sets SLOW (no lock-free change can come after), then moves what the fast
 * lane holds into its owner's record: one step. */
static void freeze(fsp_shared *sh)
{
    uint64_t w = load_word(sh);
    while (!(w & WORD_SLOW) &&
           !__atomic_compare_exchange_n(&sh->word, &w, w | WORD_SLOW, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
        ;
    w = load_word(sh);
    uint64_t owner = (w & LANE_OWNER_MASK) >> LANE_OWNER_SHIFT;
    if (owner != 0) {
        int64_t lane = (int64_t)((w & LANE_COUNT_MASK) >> LANE_COUNT_SHIFT);
        add64(sh, &record(sh, (int32_t)owner - 1)->held, lane);
        set64(sh, &sh->word, w & ~(LANE_OWNER_MASK | LANE_COUNT_MASK));
        commit(sh);
    }
}

/* Clears SLOW when the lock-free paths may run again: nobody queued, not a
 * slot pool. After every step is committed: from here on, other processes
 * change the word without the mutex, so it must not be rolled back. */
static void thaw(fsp_shared *sh)
{
    if (sh->head < 0 && sh->units == 0)
        __atomic_store_n(&sh->word, load_word(sh) & ~WORD_SLOW, __ATOMIC_RELEASE);
}

static void op_begin(op *o, fsp_sem *s)
{
    o->s = s;
    o->sh = s->shared;
    o->nwake = 0;
    int rc = lock_mutex(o->sh);
    if (rc == EOWNERDEAD) {
        /* The word was frozen when its owner died (it is never journaled
         * while thawed), so rolling it back undoes no lock-free change. */
        roll_back(o->sh);
        pthread_mutex_consistent(&o->sh->mutex);
        freeze(o->sh);
        serve(o);
    } else {
        freeze(o->sh);
    }
}

/* A waiter is signalled by a bump of its futex word and a wake-up, both
 * after the mutex is released: bumped earlier, a spinning waiter would see
 * it at once and run into the mutex its waker still holds. No signal is
 * lost: the waiter reads the word under the mutex when it looks, and sleeps
 * only while it is unchanged. A slot reused meanwhile gets a spurious
 * wake-up, which costs its new waiter one look. */
static void send_signal(fsp_shared *sh, int32_t i)
{
    waiter_slot *w = slot(sh, i);
    __atomic_fetch_add(&w->futex, 1, __ATOMIC_RELEASE);
    futex_wake(&w->futex);
}

static void op_end(op *o)
{
    thaw(o->sh);
    pthread_mutex_unlock(&o->sh->mutex);
    for (int i = 0; i < o->nwake; i++)
        send_signal(o->sh, o->wake[i]);
}

/* Signals a waiter once the mutex is released (at once if the batch is
 * full: correct, only slower). */
static void signal_slot(op *o, int32_t i)
{
    if (o->nwake < FSP_WAKE_BATCH)
        o->wake[o->nwake++] = i;
    else
        send_signal(o->sh, i);
}

/* The handle's record is read by the lock-free paths without the mutex:
 * the index is stored before the generation it belongs to. */
static void remember_me(fsp_sem *s, int32_t me, unsigned long gen)
{
    __atomic_store_n(&s->me, me, __ATOMIC_RELAXED);
    __atomic_store_n(&s->me_generation, gen, __ATOMIC_RELEASE);
}

/* This process's record as the lock-free paths know it, or -1. */
static int32_t known_me(fsp_sem *s)
{
    if (__atomic_load_n(&s->me_generation, __ATOMIC_ACQUIRE) != atomic_load(&g_generation))
        return -1;
    return __atomic_load_n(&s->me, __ATOMIC_RELAXED);
}

/* The lock-free acquire: n permits from a thawed word into this process's
 * lane. 0 if the word is frozen or closed, too few are free, or another
 * process's permits are in the lane (the mutex path then decides). */
static int try_fast_acquire(fsp_sem *s, fs_count n)
{
    fsp_shared *sh = s->shared;
    int32_t me = known_me(s);
    if (me < 0 || (uint64_t)n > LANE_COUNT_MAX)
        return 0;
    uint64_t mine = (uint64_t)(me + 1) << LANE_OWNER_SHIFT;
    uint64_t w = load_word(sh);
    for (;;) {
        uint64_t owner = w & LANE_OWNER_MASK;
        uint64_t lane = (w & LANE_COUNT_MASK) >> LANE_COUNT_SHIFT;
        if ((w & (WORD_SLOW | WORD_CLOSED)) || (w & FREE_MASK) < (uint64_t)n ||
            (lane != 0 && owner != mine) || lane + (uint64_t)n > LANE_COUNT_MAX)
            return 0;
        uint64_t next = (w & ~(LANE_OWNER_MASK | LANE_COUNT_MASK | FREE_MASK)) | mine |
                        ((lane + (uint64_t)n) << LANE_COUNT_SHIFT) |
                        ((w & FREE_MASK) - (uint64_t)n);
        if (__atomic_compare_exchange_n(&sh->word, &w, next, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            break;
    }
    __atomic_fetch_add(&record(sh, me)->fast_acquisitions, 1, __ATOMIC_RELAXED);
    return 1;
}

/* The lock-free release: n permits from this process's lane back to the
 * free count. 0 if the word is frozen or the lane holds fewer of this
 * process's permits (the mutex path then charges, serves and reports). The
 * bound check cannot fail (the lock-free paths keep free + lane constant,
 * and every mutex path empties the lane first); it is there so that no
 * path can take the word past the bound. */
static int try_fast_release(fsp_sem *s, fs_count n)
{
    fsp_shared *sh = s->shared;
    int32_t me = known_me(s);
    if (me < 0)
        return 0;
    uint64_t mine = (uint64_t)(me + 1) << LANE_OWNER_SHIFT;
    uint64_t limit = sh->max_value >= 0 ? (uint64_t)sh->max_value : FREE_MASK;
    uint64_t w = load_word(sh);
    for (;;) {
        uint64_t lane = (w & LANE_COUNT_MASK) >> LANE_COUNT_SHIFT;
        if ((w & WORD_SLOW) || (w & LANE_OWNER_MASK) != mine || lane < (uint64_t)n ||
            (w & FREE_MASK) + (uint64_t)n > limit)
            return 0;
        lane -= (uint64_t)n;
        uint64_t next = (w & ~(LANE_OWNER_MASK | LANE_COUNT_MASK | FREE_MASK)) |
                        (lane ? mine : 0) | (lane << LANE_COUNT_SHIFT) |
                        ((w & FREE_MASK) + (uint64_t)n);
        if (__atomic_compare_exchange_n(&sh->word, &w, next, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return 1;
    }
}

/* This process's record, found or made; -1 if none is free. */
static int32_t find_me(op *o, int make)
{
    fsp_sem *s = o->s;
    fsp_shared *sh = o->sh;
    unsigned long gen = atomic_load(&g_generation);
    int32_t known = known_me(s);
    if (known >= 0)
        return known;
    int32_t pid;
    uint64_t start;
    self_identity(&pid, &start);
    int32_t free_one = -1;
    for (uint32_t i = 0; i < sh->max_procs; i++) {
        proc_record *r = record(sh, (int32_t)i);
        if (r->pid == pid && r->start == start) {
            remember_me(s, (int32_t)i, gen);
            return (int32_t)i;
        }
        if (r->pid == 0 && free_one < 0)
            free_one = (int32_t)i;
    }
    if (!make || free_one < 0)
        return -1;
    proc_record *r = record(sh, free_one);
    set64(sh, &r->start, start);
    set64(sh, &r->held, 0);
    set64(sh, &r->fast_acquisitions, 0);
    set32(sh, &r->pid, (uint32_t)pid);
    commit(sh);
    remember_me(s, free_one, gen);
    return free_one;
}

static void unlink_slot(fsp_shared *sh, int32_t i)
{
    waiter_slot *w = slot(sh, i);
    if (w->prev >= 0)
        set32(sh, &slot(sh, w->prev)->next, (uint32_t)w->next);
    else
        set32(sh, &sh->head, (uint32_t)w->next);
    if (w->next >= 0)
        set32(sh, &slot(sh, w->next)->prev, (uint32_t)w->prev);
    else
        set32(sh, &sh->tail, (uint32_t)w->prev);
    add64(sh, &sh->waiting, -1);
}

static void count_acquisition(fsp_shared *sh, fs_time waited, int contended)
{
    add64(sh, &sh->stats.acquisitions, 1);
    if (!contended)
        return;
    add64(sh, &sh->stats.contended, 1);
    add64(sh, &sh->stats.wait_total_ns, waited);
    if ((uint64_t)waited > sh->stats.wait_max_ns)
        set64(sh, &sh->stats.wait_max_ns, (uint64_t)waited);
    add64(sh, &sh->stats.histogram[fs_histogram_bucket(waited)], 1);
}

/* In a pool, the lowest free unit becomes record me's; -1 elsewhere. A free
 * unit exists whenever a permit is granted: units out never exceed permits
 * out, which never exceed the bound, which is the number of units. */
static int32_t take_unit(fsp_shared *sh, int32_t me)
{
    for (uint32_t u = 0; u < sh->units; u++) {
        if (*unit_owner(sh, (int32_t)u) == 0) {
            set32(sh, unit_owner(sh, (int32_t)u), (uint32_t)(me + 1));
            return (int32_t)u;
        }
    }
    return -1;
}

/* The permits of slot i's request become its owner's; i leaves the queue.
 * One step. */
static void grant(op *o, int32_t i, int signal)
{
    fsp_shared *sh = o->sh;
    waiter_slot *w = slot(sh, i);
    fs_time waited = fs_now() - w->queued_at;
    if (waited < 0)
        waited = 0;
    add_free(sh, -w->want);
    add64(sh, &record(sh, w->proc)->held, w->want);
    set32(sh, &w->unit, (uint32_t)take_unit(sh, w->proc));
    set64(sh, &w->waited, (uint64_t)waited);
    set32(sh, &w->state, W_GRANTED);
    unlink_slot(sh, i);
    count_acquisition(sh, waited, 1);
    commit(sh);
    if (signal)
        signal_slot(o, i);
}

/* Puts the queue right after any change: on a closed semaphore, turns every
 * waiter away; otherwise hands free permits to the queue as far as the mode
 * allows: to every head whose request fits in fair mode, or to a starving
 * head; otherwise (non-fair) wakes a head whose request fits to compete for
 * them. Run after every step that frees permits or a place, and by a locker
 * that found the previous owner dead between two steps. */
static void serve(op *o)
{
    fsp_shared *sh = o->sh;
    if (is_closed(sh)) {
        /* Closed: nobody may stay queued (a close whose process died in it
         * is finished here). */
        while (sh->head >= 0) {
            int32_t i = sh->head;
            unlink_slot(sh, i);
            set32(sh, &slot(sh, i)->state, W_CLOSED);
            commit(sh);
            signal_slot(o, i);
        }
        return;
    }
    while (sh->head >= 0) {
        waiter_slot *w = slot(sh, sh->head);
        if (free_permits(sh) < w->want)
            return;
        if (!sh->fair && !w->starving) {
            signal_slot(o, sh->head);
            return;
        }
        grant(o, sh->head, 1);
    }
}

/* Whether n permits may be taken now, without queueing. */
static int may_take(fsp_shared *sh, fs_count n)
{
    if (free_permits(sh) < n)
        return 0;
    if (sh->head < 0)
        return 1;
    return !sh->fair && !slot(sh, sh->head)->starving;
}

static int32_t take(fsp_shared *sh, int32_t me, fs_count n)
{
    add_free(sh, -n);
    add64(sh, &record(sh, me)->held, n);
    int32_t unit = take_unit(sh, me);
    count_acquisition(sh, 0, 0);
    commit(sh);
    return unit;
}

static int check_request(fsp_shared *sh, fs_count n)
{
    if (n < 1)
        return FS_BAD_COUNT;
    if (n > FSP_COUNT_MAX)
        return FS_OVERFLOW;
    if (sh->max_value >= 0 && n > sh->max_value)
        return FS_OVER_MAX;
    if (sh->units > 0 && n != 1)
        return FS_OVER_MAX; /* one unit at a time */
    return FS_OK;
}

/* A release is charged to what the releasing process holds, as far as it
 * holds any (SEM_UNDO's rule: a producer owes nothing). */
static void charge(fsp_shared *sh, int32_t me, int64_t n)
{
    if (me < 0)
        return;
    proc_record *r = record(sh, me);
    int64_t paid = r->held < n ? r->held : n;
    if (paid > 0)
        add64(sh, &r->held, -paid);
}

/* Frees the records of dead processes, gives back what they held, drops
 * their queued slots, and serves the queue. Under the mutex; pid and start
 * are what the liveness check saw (the record may have changed since). */
static int bury(op *o, int32_t i, int32_t pid, uint64_t start)
{
    fsp_shared *sh = o->sh;
    proc_record *r = record(sh, i);
    if (r->pid != pid || r->start != start)
        return 0;
    for (uint32_t j = 0; j < sh->max_waiters; j++) {
        waiter_slot *w = slot(sh, (int32_t)j);
        if (w->state == W_FREE || w->proc != i)
            continue;
        if (w->state == W_WAITING)
            unlink_slot(sh, (int32_t)j);
        set32(sh, &w->state, W_FREE); /* a granted slot's permits are in held */
        commit(sh);
    }
    for (uint32_t u = 0; u < sh->units; u++) {
        if (*unit_owner(sh, (int32_t)u) == i + 1) {
            set32(sh, unit_owner(sh, (int32_t)u), 0);
            commit(sh);
        }
    }
    int64_t give = r->held, room = FSP_COUNT_MAX - free_permits(sh);
    if (sh->max_value >= 0)
        room = sh->max_value - free_permits(sh); /* never past the bound */
    if (give > room)
        give = room;
    if (give > 0) {
        add_free(sh, give);
        add64(sh, &sh->stats.recovered, give);
    }
    add64(sh, &sh->stats.dead_processes, 1);
    add64(sh, &sh->stats.acquisitions, (int64_t)r->fast_acquisitions);
    set64(sh, &r->fast_acquisitions, 0);
    set64(sh, &r->held, 0);
    set64(sh, &r->start, 0);
    set32(sh, &r->pid, 0);
    commit(sh);
    serve(o);
    return 1;
}

/* Looks at every recorded process (without the mutex: reading /proc takes
 * microseconds) and buries the dead ones. Unless forced, at most once per
 * FSP_SWEEP_NS across all processes. */
static size_t sweep(fsp_sem *s, int force)
{
    fsp_shared *sh = s->shared;
    fs_time now = fs_now();
    int64_t last = __atomic_load_n(&sh->last_sweep, __ATOMIC_RELAXED);
    if (!force && (now - last < FSP_SWEEP_NS ||
                   !__atomic_compare_exchange_n(&sh->last_sweep, &last, now, 0,
                                                __ATOMIC_RELAXED, __ATOMIC_RELAXED)))
        return 0;
    if (force)
        __atomic_store_n(&sh->last_sweep, now, __ATOMIC_RELAXED);
    size_t buried = 0;
    uint32_t i = 0;
    while (i < sh->max_procs) {
        int32_t dead[FSP_SWEEP_BATCH], pids[FSP_SWEEP_BATCH];
        uint64_t starts[FSP_SWEEP_BATCH];
        int ndead = 0;
        for (; i < sh->max_procs && ndead < FSP_SWEEP_BATCH; i++) {
            proc_record *r = record(sh, (int32_t)i);
            int32_t pid = __atomic_load_n(&r->pid, __ATOMIC_RELAXED);
            uint64_t start = __atomic_load_n(&r->start, __ATOMIC_RELAXED);
            if (pid != 0 && !process_alive(pid, start)) {
                dead[ndead] = (int32_t)i;
                pids[ndead] = pid;
                starts[ndead] = start;
                ndead++;
            }
        }
        if (ndead == 0)
            continue;
        op o;
        op_begin(&o, s);
        for (int k = 0; k < ndead; k++)
            buried += (size_t)bury(&o, dead[k], pids[k], starts[k]);
        op_end(&o);
    }
    return buried;
}

/* ---- segments -------------------------------------------------------- */

int fsp_memfd(void)
{
    return memfd_create("fastsem", MFD_CLOEXEC | MFD_ALLOW_SEALING);
}

int fsp_shm_create(const char *name)
{
    return shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

int fsp_shm_open(const char *name)
{
    return shm_open(name, O_RDWR | O_CLOEXEC, 0);
}

int fsp_shm_unlink(const char *name) { return shm_unlink(name); }

static int fail_closing(fsp_sem *s, int fd, int rc)
{
    int err = errno;
    close(fd);
    s->fd = -1;
    s->shared = NULL;
    errno = err;
    return rc;
}

int fsp_create(fsp_sem *s, int fd, fs_count value, fs_count max_value, int fair,
               uint32_t max_processes, uint32_t max_waiters, uint32_t units)
{
    int rc = FS_OK;
    if (value < 0)
        rc = FS_BAD_VALUE;
    else if (value > FSP_COUNT_MAX || max_value > FSP_COUNT_MAX)
        rc = FS_OVERFLOW;
    else if (max_value >= 0 && value > max_value)
        rc = FS_OVER_BOUND;
    else if (max_processes < 1 || max_processes > FSP_LIMIT_MAX || max_waiters < 1 ||
             max_waiters > FSP_LIMIT_MAX || units > FSP_LIMIT_MAX)
        rc = FSP_BAD_LIMIT;
    else if (units > 0 && (value != (fs_count)units || max_value != (fs_count)units))
        rc = FS_BAD_VALUE; /* a pool starts full, bounded at its size */
    if (rc != FS_OK)
        return fail_closing(s, fd, rc);
    pthread_once(&g_atfork_once, register_atfork);
    size_t size = layout_size(max_processes, max_waiters, units);
    if (ftruncate(fd, (off_t)size) != 0)
        return fail_closing(s, fd, FSP_SYSTEM);
    /* A memfd cannot be shrunk under its users (a SIGBUS) once sealed; a
     * named segment can, by its owner, like any file. */
    (void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return fail_closing(s, fd, FSP_SYSTEM);
    fsp_shared *sh = p; /* zero-filled: every record and slot is free */
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    rc = pthread_mutex_init(&sh->mutex, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0) {
        munmap(p, size);
        errno = rc;
        return fail_closing(s, fd, FSP_SYSTEM);
    }
    sh->version = FSP_VERSION;
    sh->header_size = sizeof(struct fsp_shared);
    sh->total_size = size;
    sh->max_procs = max_processes;
    sh->max_waiters = max_waiters;
    sh->units = units;
    sh->pidns = pid_namespace();
    /* A slot pool's word stays frozen: every grant must take a unit. */
    sh->word = (uint64_t)value | (units > 0 ? WORD_SLOW : 0);
    sh->max_value = max_value < 0 ? -1 : max_value;
    sh->fair = fair ? 1 : 0;
    sh->head = sh->tail = -1;
    sh->starve_ns = FS_STARVE_NS;
    sh->spin_ns = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? FS_SPIN_NS : 0;
    __atomic_store_n(&sh->magic, FSP_MAGIC, __ATOMIC_RELEASE);
    s->shared = sh;
    s->size = size;
    s->fd = fd;
    s->me = -1;
    s->me_generation = 0;
    return FS_OK;
}

int fsp_attach(fsp_sem *s, int fd)
{
    pthread_once(&g_atfork_once, register_atfork);
    struct stat st;
    fs_time give_up = fs_now() + FSP_ATTACH_PATIENCE_NS;
    void *p = MAP_FAILED;
    size_t size = 0;
    /* A named segment may be seen before its maker has sized and filled it:
     * wait a little for the magic number, stored last. */
    for (;;) {
        if (fstat(fd, &st) != 0)
            return fail_closing(s, fd, FSP_SYSTEM);
        size = (size_t)st.st_size;
        if (size >= sizeof(struct fsp_shared)) {
            p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (p == MAP_FAILED)
                return fail_closing(s, fd, FSP_SYSTEM);
            if (__atomic_load_n(&((fsp_shared *)p)->magic, __ATOMIC_ACQUIRE) == FSP_MAGIC)
                break;
            munmap(p, size);
            p = MAP_FAILED;
        }
        if (fs_now() >= give_up)
            return fail_closing(s, fd, FSP_BAD_LAYOUT);
        struct timespec nap = {0, 1000000};
        nanosleep(&nap, NULL);
    }
    fsp_shared *sh = p;
    int rc = FS_OK;
    if (sh->version != FSP_VERSION || sh->header_size != sizeof(struct fsp_shared) ||
        sh->max_procs < 1 || sh->max_procs > FSP_LIMIT_MAX || sh->max_waiters < 1 ||
        sh->max_waiters > FSP_LIMIT_MAX || sh->units > FSP_LIMIT_MAX ||
        sh->total_size != layout_size(sh->max_procs, sh->max_waiters, sh->units) ||
        sh->total_size > size)
        rc = FSP_BAD_LAYOUT;
    else if (sh->pidns != 0 && pid_namespace() != 0 && sh->pidns != pid_namespace())
        rc = FSP_OTHER_PIDNS;
    if (rc != FS_OK) {
        munmap(p, size);
        return fail_closing(s, fd, rc);
    }
    s->shared = sh;
    s->size = size;
    s->fd = fd;
    s->me = -1;
    s->me_generation = 0;
    return FS_OK;
}

void fsp_detach(fsp_sem *s)
{
    if (s->shared != NULL)
        munmap(s->shared, s->size);
    if (s->fd >= 0)
        close(s->fd);
    s->shared = NULL;
    s->fd = -1;
}

/* ---- acquire, wait, cancel, release ---------------------------------- */

static int acquire(fsp_sem *s, fsp_ticket *t, fs_count n, int enqueue);

int fsp_try_acquire(fsp_sem *s, fsp_ticket *t, fs_count n)
{
    return acquire(s, t, n, 0);
}

int fsp_acquire_or_enqueue(fsp_sem *s, fsp_ticket *t, fs_count n)
{
    return acquire(s, t, n, 1);
}

static int acquire(fsp_sem *s, fsp_ticket *t, fs_count n, int enqueue)
{
    fsp_shared *sh = s->shared;
    int rc = check_request(sh, n);
    if (rc != FS_OK)
        return rc;
    if (try_fast_acquire(s, n)) {
        if (t != NULL)
            t->unit = -1;
        return FS_OK;
    }
    for (int attempt = 0;; attempt++) {
        op o;
        op_begin(&o, s);
        int32_t me = find_me(&o, 1);
        if (me < 0) {
            op_end(&o);
            /* Every record is taken: perhaps by dead processes. */
            if (attempt == 0 && sweep(s, 1) > 0)
                continue;
            return FSP_NO_ROOM;
        }
        if (is_closed(sh)) {
            rc = FS_CLOSED;
        } else if (may_take(sh, n)) {
            int32_t unit = take(sh, me, n);
            if (t != NULL)
                t->unit = unit;
            rc = FS_OK;
        } else if (!enqueue) {
            rc = FS_WOULD_BLOCK;
        } else {
            rc = FSP_NO_ROOM;
            uint32_t hint = __atomic_load_n(&sh->free_hint, __ATOMIC_RELAXED);
            for (uint32_t k = 0; k < sh->max_waiters; k++) {
                int32_t i = (int32_t)((hint + k) % sh->max_waiters);
                waiter_slot *w = slot(sh, i);
                if (w->state != W_FREE)
                    continue;
                set32(sh, &w->proc, (uint32_t)me);
                set64(sh, &w->want, (uint64_t)n);
                set64(sh, &w->queued_at, (uint64_t)fs_now());
                set32(sh, &w->starving, 0);
                set32(sh, &w->prev, (uint32_t)sh->tail);
                set32(sh, &w->next, (uint32_t)-1);
                if (sh->tail >= 0)
                    set32(sh, &slot(sh, sh->tail)->next, (uint32_t)i);
                else
                    set32(sh, &sh->head, (uint32_t)i);
                set32(sh, &sh->tail, (uint32_t)i);
                set32(sh, &w->state, W_WAITING);
                add64(sh, &sh->waiting, 1);
                if ((uint64_t)sh->waiting > sh->stats.max_waiting)
                    set64(sh, &sh->stats.max_waiting, (uint64_t)sh->waiting);
                commit(sh);
                __atomic_store_n(&sh->free_hint, (uint32_t)(i + 1) % sh->max_waiters,
                                 __ATOMIC_RELAXED);
                t->slot = i;
                t->seen = __atomic_load_n(&w->futex, __ATOMIC_ACQUIRE);
                t->waited = 0;
                t->unit = -1;
                rc = FS_QUEUED;
                break;
            }
        }
        op_end(&o);
        return rc;
    }
}

/* Looks at a queued ticket's slot under the mutex: FS_OK, FS_CLOSED or
 * FS_TIMEOUT (the ticket is finished), or FS_QUEUED (still waiting; the
 * futex word it saw is in t->seen). */
static int look(fsp_sem *s, fsp_ticket *t, fs_time deadline)
{
    fsp_shared *sh = s->shared;
    waiter_slot *w = slot(sh, t->slot);
    /* Signalled since the last look: in non-fair mode, woken to compete. */
    int woken = __atomic_load_n(&w->futex, __ATOMIC_ACQUIRE) != t->seen;
    op o;
    op_begin(&o, s);
    t->seen = __atomic_load_n(&w->futex, __ATOMIC_ACQUIRE);
    int32_t me = find_me(&o, 0);
    int rc = FS_QUEUED;
    if (w->state == W_FREE || w->proc != me) {
        /* Taken from this process, which was judged dead: cannot happen to
         * a live process with its own PID namespace's pids. */
        rc = FS_CLOSED;
    } else if (w->state == W_GRANTED) {
        t->waited = (fs_time)w->waited;
        t->unit = w->unit;
        set32(sh, &w->state, W_FREE);
        commit(sh);
        rc = FS_OK;
    } else if (w->state == W_CLOSED) {
        set32(sh, &w->state, W_FREE);
        commit(sh);
        rc = FS_CLOSED;
    } else if (!sh->fair && free_permits(sh) >= w->want &&
               (sh->head == t->slot || !slot(sh, sh->head)->starving)) {
        /* Non-fair: woken to compete, and the permits are there. */
        grant(&o, t->slot, 0);
        t->waited = (fs_time)w->waited;
        t->unit = w->unit;
        set32(sh, &w->state, W_FREE);
        commit(sh);
        rc = FS_OK;
    } else if (fs_now() >= deadline) {
        unlink_slot(sh, t->slot);
        set32(sh, &w->state, W_FREE);
        add64(sh, &sh->stats.timeouts, 1);
        commit(sh);
        serve(&o); /* a head that held others back has gone */
        rc = FS_TIMEOUT;
    } else if (!sh->fair && woken && sh->head == t->slot && !w->starving &&
               fs_now() - w->queued_at >= sh->starve_ns) {
        /* Woken to compete and beaten to the permits, after long enough in
         * the queue: from now on releases hand over to it, and nobody
         * barges past it. */
        set32(sh, &w->starving, 1);
        commit(sh);
        serve(&o);
        if (w->state == W_GRANTED) {
            t->waited = (fs_time)w->waited;
            t->unit = w->unit;
            set32(sh, &w->state, W_FREE);
            commit(sh);
            rc = FS_OK;
        }
    }
    op_end(&o);
    return rc;
}

int fsp_wait(fsp_sem *s, fsp_ticket *t, fs_time deadline, fs_time wake_by)
{
    fsp_shared *sh = s->shared;
    waiter_slot *w = slot(sh, t->slot);
    for (;;) {
        int rc = look(s, t, deadline);
        if (rc != FS_QUEUED)
            return rc;
        /* Every waiter may look for the dead; one look per FSP_SWEEP_NS is
         * made, by whichever comes first. */
        if (sweep(s, 0) > 0)
            continue;
        fs_time now = fs_now();
        if (now >= wake_by)
            return FS_PAUSED;
        /* The head spins a little: a handoff often comes sooner than a
         * sleeping process can be woken. */
        if (may_spin(sh) && __atomic_load_n(&sh->head, __ATOMIC_RELAXED) == t->slot) {
            fs_time until = now + sh->spin_ns;
            while (__atomic_load_n(&w->futex, __ATOMIC_ACQUIRE) == t->seen &&
                   fs_now() < until)
                pause_yielding();
        }
        if (__atomic_load_n(&w->futex, __ATOMIC_ACQUIRE) != t->seen)
            continue;
        fs_time poll_end = now + FSP_POLL_NS;
        fs_time until = deadline < wake_by ? deadline : wake_by;
        if (poll_end < until)
            until = poll_end;
        int err = futex_wait(&w->futex, t->seen, until - now > 0 ? until - now : 0);
        if (err == EINTR)
            return FS_PAUSED;
    }
}

int fsp_cancel(fsp_sem *s, fsp_ticket *t)
{
    fsp_shared *sh = s->shared;
    waiter_slot *w = slot(sh, t->slot);
    int passed = 0;
    op o;
    op_begin(&o, s);
    int32_t me = find_me(&o, 0);
    if (w->state != W_FREE && w->proc == me) {
        if (w->state == W_WAITING) {
            unlink_slot(sh, t->slot);
            add64(sh, &sh->stats.interrupts, 1);
        } else if (w->state == W_GRANTED) {
            /* Granted, but the caller never saw it: the permits go on. */
            charge(sh, me, w->want);
            add_free(sh, w->want);
            if (w->unit >= 0)
                set32(sh, unit_owner(sh, w->unit), 0);
            add64(sh, &sh->stats.interrupts, 1);
            passed = 1;
        }
        set32(sh, &w->state, W_FREE);
        commit(sh);
        serve(&o);
    }
    op_end(&o);
    return passed;
}

int fsp_release(fsp_sem *s, fs_count n)
{
    fsp_shared *sh = s->shared;
    if (sh->units > 0)
        return FSP_NO_UNITS; /* a unit goes back by its number */
    if (n < 1)
        return FS_BAD_COUNT;
    if (n > FSP_COUNT_MAX)
        return FS_OVERFLOW;
    if (try_fast_release(s, n))
        return FS_OK;
    op o;
    op_begin(&o, s);
    int rc = FS_OK;
    if (sh->max_value >= 0 && n > sh->max_value - free_permits(sh))
        rc = FS_OVER_BOUND;
    else if (n > FSP_COUNT_MAX - free_permits(sh))
        rc = FS_OVERFLOW;
    else {
        charge(sh, find_me(&o, 0), n);
        add_free(sh, n);
        commit(sh);
        serve(&o);
    }
    op_end(&o);
    return rc;
}

int fsp_release_unit(fsp_sem *s, int32_t unit)
{
    fsp_shared *sh = s->shared;
    if (sh->units == 0)
        return FSP_NO_UNITS;
    if (unit < 0 || (uint32_t)unit >= sh->units)
        return FSP_BAD_UNIT;
    op o;
    op_begin(&o, s);
    int rc = FS_OK;
    int32_t me = find_me(&o, 0);
    if (me < 0 || *unit_owner(sh, unit) != me + 1) {
        rc = FSP_NOT_OWNER;
    } else {
        set32(sh, unit_owner(sh, unit), 0);
        charge(sh, me, 1);
        add_free(sh, 1);
        commit(sh);
        serve(&o);
    }
    op_end(&o);
    return rc;
}

uint32_t fsp_units(fsp_sem *s) { return s->shared->units; }

int32_t fsp_unit_holder(fsp_sem *s, int32_t unit)
{
    fsp_shared *sh = s->shared;
    if (unit < 0 || (uint32_t)unit >= sh->units)
        return 0;
    int32_t owner = __atomic_load_n(unit_owner(sh, unit), __ATOMIC_RELAXED);
    return owner > 0 ? __atomic_load_n(&record(sh, owner - 1)->pid, __ATOMIC_RELAXED) : 0;
}

/* ---- the rest -------------------------------------------------------- */

fs_count fsp_value(fsp_sem *s) { return free_permits(s->shared); }

fs_count fsp_max_value(fsp_sem *s) { return s->shared->max_value; }

size_t fsp_waiting(fsp_sem *s)
{
    return (size_t)__atomic_load_n(&s->shared->waiting, __ATOMIC_RELAXED);
}

int fsp_fair(fsp_sem *s) { return s->shared->fair; }

int fsp_closed(fsp_sem *s) { return is_closed(s->shared); }

uint32_t fsp_max_processes(fsp_sem *s) { return s->shared->max_procs; }

uint32_t fsp_max_waiters(fsp_sem *s) { return s->shared->max_waiters; }

void fsp_close(fsp_sem *s)
{
    fsp_shared *sh = s->shared;
    op o;
    op_begin(&o, s);
    if (!is_closed(sh)) {
        set64(sh, &sh->word, load_word(sh) | WORD_CLOSED);
        commit(sh);
    }
    serve(&o); /* turns every waiter away */
    op_end(&o);
}

void fsp_statistics(fsp_sem *s, fsp_stats *out)
{
    fsp_shared *sh = s->shared;
    op o;
    op_begin(&o, s);
    const shared_stats *st = &sh->stats;
    out->base.acquisitions = st->acquisitions;
    for (uint32_t i = 0; i < sh->max_procs; i++)
        out->base.acquisitions +=
            __atomic_load_n(&record(sh, (int32_t)i)->fast_acquisitions, __ATOMIC_RELAXED);
    out->base.contended = st->contended;
    out->base.timeouts = st->timeouts;
    out->base.interrupts = st->interrupts;
    out->base.max_waiting = st->max_waiting;
    out->base.wait_total_ns = st->wait_total_ns;
    out->base.wait_max_ns = st->wait_max_ns;
    memcpy(out->base.histogram, st->histogram, sizeof st->histogram);
    out->recovered = st->recovered;
    out->dead_processes = st->dead_processes;
    op_end(&o);
}

void fsp_reset_statistics(fsp_sem *s)
{
    fsp_shared *sh = s->shared;
    op o;
    op_begin(&o, s);
    /* Not journaled (too many fields for one step): a reset cut short by a
     * death leaves some counters unreset, nothing worse. */
    memset(&sh->stats, 0, sizeof sh->stats);
    sh->stats.max_waiting = (uint64_t)sh->waiting;
    for (uint32_t i = 0; i < sh->max_procs; i++)
        __atomic_store_n(&record(sh, (int32_t)i)->fast_acquisitions, 0, __ATOMIC_RELAXED);
    op_end(&o);
}

size_t fsp_holders(fsp_sem *s, int32_t *pids, fs_count *permits, size_t room)
{
    fsp_shared *sh = s->shared;
    size_t count = 0;
    op o;
    op_begin(&o, s);
    for (uint32_t i = 0; i < sh->max_procs; i++) {
        proc_record *r = record(sh, (int32_t)i);
        if (r->pid == 0 || r->held <= 0)
            continue;
        if (count < room) {
            pids[count] = r->pid;
            permits[count] = r->held;
        }
        count++;
    }
    op_end(&o);
    return count;
}

size_t fsp_recover(fsp_sem *s) { return sweep(s, 1); }

#ifdef FSP_TEST_HOOKS
/* The invariants of a quiet segment (no step in flight): the queue's links
 * agree both ways and hold exactly the waiting slots; the count is within
 * its range; the journal is empty. 0, or the number of the broken one. */
int fsp_test_check(fsp_sem *s)
{
    fsp_shared *sh = s->shared;
    int broken = 0;
    op o;
    op_begin(&o, s);
    int64_t listed = 0;
    int32_t prev = -1;
    for (int32_t i = sh->head; i >= 0 && !broken; i = slot(sh, i)->next) {
        if (slot(sh, i)->state != W_WAITING)
            broken = 1;
        else if (slot(sh, i)->prev != prev)
            broken = 2;
        else if (++listed > (int64_t)sh->max_waiters)
            broken = 3;
        prev = i;
    }
    int64_t waiting = 0;
    for (uint32_t j = 0; j < sh->max_waiters; j++)
        waiting += slot(sh, (int32_t)j)->state == W_WAITING;
    if (!broken && sh->tail != prev)
        broken = 4;
    else if (!broken && (listed != waiting || waiting != sh->waiting))
        broken = 5;
    else if (!broken && sh->max_value >= 0 && free_permits(sh) > sh->max_value)
        broken = 6;
    else if (!broken && sh->undo_count != 0)
        broken = 7;
    else if (!broken && sh->fair && sh->head >= 0 && free_permits(sh) >= slot(sh, sh->head)->want)
        broken = 8; /* fair mode: the head's request would fit */
    op_end(&o);
    return broken;
}
#endif

#endif /* __linux__ */
