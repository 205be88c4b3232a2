"""What the child processes of test_process.py run. A module of its own, so
that children started with spawn or forkserver can import it by name."""

from __future__ import annotations

import fcntl
import os
import random
import threading
import time


def hold_forever(sem, ready, n=1):
    """Acquires n permits, says so, and sleeps until killed. The first
    acquire of a process makes its record (under the mutex); the second, the
    one that holds, takes the lock-free path when nobody waits."""
    sem.acquire(n=n)
    sem.release(n)
    sem.acquire(n=n)
    ready.put(os.getpid())
    time.sleep(600)


def wait_forever(sem, ready, n=1):
    """Says it is about to wait, then waits in acquire() until killed."""
    ready.put(os.getpid())
    sem.acquire(n=n)
    time.sleep(600)


def take_in_turn(sem, number, log):
    """Acquires, appends its number to the log, releases. The log is a
    shared array (log[0]: the entries so far) written while holding the
    semaphore's one permit, so its order is the order of the grants."""
    sem.acquire()
    try:
        log[0] += 1
        log[log[0]] = number
    finally:
        sem.release()


class Announcer:
    """ready.put() over a pipe: unlike a multiprocessing Queue, a pipe needs
    no named semaphore that the resource tracker would report as leaked when
    its owner is killed."""

    def __init__(self, connection):
        self.connection = connection

    def put(self, item):
        self.connection.send(item)


def acquire_with_timeout(sem, timeout, results):
    results.put((os.getpid(), sem.acquire(timeout=timeout)))


def attach_and_report(sem, results):
    """Reports what it sees, then takes and gives back a permit."""
    results.put((type(sem).__name__, sem.value, sem.fair))
    with sem:
        pass
    results.put("done")


_pool_sem = None


def pool_initializer(sem):
    global _pool_sem
    _pool_sem = sem


def pool_task(i):
    with _pool_sem:
        return i * i


_first_use = threading.Lock()


class BookLock:
    """A lock for the stress test's bookkeeping that survives SIGKILL: a
    thread lock within a process, an fcntl lock on a file across processes
    (the kernel drops a dead process's fcntl locks)."""

    def __init__(self, path):
        self.path = path
        self._pid = None

    def _own(self):
        if self._pid != os.getpid():  # first use in this process
            with _first_use:
                if self._pid != os.getpid():
                    self._threads = threading.Lock()
                    self._fd = os.open(self.path, os.O_RDWR)
                    self._pid = os.getpid()  # last: the others are set
        return self._threads, self._fd

    def __enter__(self):
        threads, fd = self._own()
        threads.acquire()
        fcntl.lockf(fd, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        threads, fd = self._own()
        fcntl.lockf(fd, fcntl.LOCK_UN)
        threads.release()

    def __getstate__(self):
        return {"path": self.path, "_pid": None}


def process_dead(pid):
    """Gone, or a zombie: what the semaphore counts as dead."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def count_inside(book):
    """Permits held by live processes, per the book: pairs (pid, permits) per
    thread, then the violation cell. A dead process's permits may already
    have been given to others: they no longer count."""
    cells = (len(book) - 1) // 2
    total = 0
    for c in range(cells):
        permits = book[2 * c + 1]
        if permits and not process_dead(book[2 * c]):
            total += permits
    return total


def stress_worker(sem, bound, book, lock, worker, rounds, threads):
    """threads threads that acquire n permits (some with timeouts), note
    them in the book while they hold them, and release; a count of permits
    held past the bound is written to the book's last cell."""
    rng = random.Random(worker)

    def run(t):
        cell = worker * threads + t
        local = random.Random(rng.random())
        for _ in range(rounds):
            n = min(local.choice((1, 1, 1, 2)), bound)
            if local.random() < 0.3:
                if not sem.acquire(timeout=local.choice((0, 0.001, 0.01)), n=n):
                    continue
            else:
                sem.acquire(n=n)
            with lock:
                book[2 * cell] = os.getpid()
                book[2 * cell + 1] = n
                total = count_inside(book)
                if total > bound:
                    book[len(book) - 1] = total
            if local.random() < 0.5:
                time.sleep(local.random() / 2000)
            with lock:
                book[2 * cell + 1] = 0
            sem.release(n)

    failures = []

    def checked(t):
        try:
            run(t)
        except BaseException as e:  # a thread that dies holding permits
            failures.append(e)
            raise

    pool = [threading.Thread(target=checked, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} worker threads failed: {failures[0]!r}")


def hammer(sem, n):
    """acquire(n) and release(n) for ever, from two threads, so that some of
    the calls queue: killed at a random instant, the process dies inside the
    semaphore's critical section often enough."""

    def run():
        while True:
            sem.acquire(n=n)
            sem.release(n)

    threading.Thread(target=run, daemon=True).start()
    run()


def hold_a_slot(pool, ready):
    """Takes a slot, says which, and sleeps until killed."""
    ready.put((os.getpid(), pool.acquire()))
    time.sleep(600)


def try_to_release(pool, slot, results):
    try:
        pool.release(slot)
    except ValueError as e:
        results.put(str(e))
    else:
        results.put("released")


def barge_for(sem, seconds, counter):
    """Takes and gives back the permit as fast as it can for a while, from
    two threads: in non-fair mode they barge past the queue."""
    end = time.monotonic() + seconds

    def run():
        while time.monotonic() < end:
            if sem.acquire(False):
                counter.value += 1
                sem.release()

    thread = threading.Thread(target=run)
    thread.start()
    run()
    thread.join()


def acquire_then_release_on_cue(sem, ready, cue, results):
    """Acquires, says so, waits for the cue, then releases and reports what
    the release did. Acquires twice, so that the permit it holds comes
    through the lock-free path (see hold_forever)."""
    sem.acquire()
    sem.release()
    sem.acquire()
    ready.put(os.getpid())
    cue.recv()
    try:
        sem.release()
    except ValueError as e:
        results.put(f"ValueError: {e}")
    else:
        results.put("released")
