"""ProcessSemaphore and ProcessBoundedSemaphore with real processes: every
start method, FIFO across processes and threads, no barging, SIGKILL of a
holder, of a queued waiter and of a granted head, sharing by pickling and by
name, and the errors of the thread classes."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import process_workers as workers
import pytest
from conftest import wait_until

import fastsem
from fastsem import _impl

pytestmark = [
    pytest.mark.skipif(
        _impl.process_module is None or not sys.platform.startswith("linux"),
        reason="process-shared semaphores: compiled, on Linux",
    ),
    # Forking a process with threads (multiprocessing's own helper threads,
    # or this test's) is what some tests here do on purpose.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

START_METHODS = [
    m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()
]
# Recovery is promised within 1 s of a death; the waiters look every 0.1 s.
RECOVERY = 1.0


@pytest.fixture
def ctx():
    return multiprocessing.get_context("spawn")


@pytest.fixture
def unique_name():
    name = f"fastsem-test-{uuid.uuid4().hex[:12]}"
    yield name
    try:
        fastsem.ProcessSemaphore.open(name).unlink()
    except FileNotFoundError:
        pass


class Children:
    """Child processes that are killed and reaped at the end of the test."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.procs = []

    def start(self, target, *args):
        proc = self.ctx.Process(target=target, args=args, daemon=True)
        proc.start()
        self.procs.append(proc)
        return proc

    def close(self):
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
            proc.join(10)


@pytest.fixture
def children(ctx):
    kids = Children(ctx)
    yield kids
    kids.close()


def kill(proc):
    os.kill(proc.pid, signal.SIGKILL)


def stopped(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0] == "T"


# ---- the thread classes' behaviour and errors ----------------------------


def test_acquire_release_value_and_holders():
    sem = fastsem.ProcessBoundedSemaphore(3)
    assert sem.acquire(n=2) is True
    assert sem.value == sem.get_value() == 1
    assert sem.holders() == {os.getpid(): 2}
    assert sem.acquire(False, n=2) is False
    assert sem.acquire(timeout=0.01, n=2) is False
    sem.release(2)
    assert sem.value == 3 and sem.holders() == {}
    with sem:
        assert sem.value == 2
    with sem.hold(n=3):
        assert sem.value == 0
    with pytest.raises(TimeoutError), fastsem.ProcessSemaphore(0).hold(timeout=0.01):
        pass
    stats = sem.statistics()
    assert (stats.acquisitions, stats.timeouts, stats.recovered) == (3, 1, 0)
    sem.reset_statistics()
    assert sem.statistics().acquisitions == 0


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: fastsem.ProcessSemaphore(-1), ValueError),
        (lambda: fastsem.ProcessSemaphore(1.5), TypeError),
        (lambda: fastsem.ProcessSemaphore(2**31), OverflowError),
        (lambda: fastsem.ProcessSemaphore(2**31 - 1).release(), OverflowError),
        (lambda: fastsem.ProcessSemaphore(1).acquire(n=2**31), OverflowError),
        (lambda: fastsem.ProcessSemaphore(1, max_processes=0), ValueError),
        (lambda: fastsem.ProcessSemaphore(1, max_waiters=10**6), ValueError),
        (lambda: fastsem.ProcessSemaphore(1, name=""), ValueError),
        (lambda: fastsem.ProcessSemaphore(1, name="a/b"), ValueError),
        (lambda: fastsem.ProcessSemaphore(1, name=3), TypeError),
        (lambda: fastsem.ProcessSemaphore(1).acquire(n=0), ValueError),
        (lambda: fastsem.ProcessSemaphore(1).acquire(n=1.0), TypeError),
        (lambda: fastsem.ProcessSemaphore(1).acquire(False, 1), ValueError),
        (lambda: fastsem.ProcessSemaphore(1).acquire(timeout=float("nan")), ValueError),
        (lambda: fastsem.ProcessSemaphore(1).acquire(timeout=1e300), OverflowError),
        (lambda: fastsem.ProcessSemaphore(1).release(0), ValueError),
        (lambda: fastsem.ProcessBoundedSemaphore(1).release(), ValueError),
        (lambda: fastsem.ProcessBoundedSemaphore(2).acquire(n=3), ValueError),
        (lambda: fastsem.ProcessSemaphore(1).unlink(), ValueError),
        (lambda: fastsem.ProcessSemaphore.open("fastsem-no-such-name"), FileNotFoundError),
    ],
)
def test_bad_input_raises_what_the_thread_classes_raise(call, error):
    with pytest.raises(error):
        call()


def test_a_failed_call_changes_nothing():
    sem = fastsem.ProcessBoundedSemaphore(2)
    sem.acquire()
    for bad in (lambda: sem.release(2), lambda: sem.acquire(n=3), lambda: sem.release(0)):
        with pytest.raises(ValueError):
            bad()
    assert sem.value == 1 and sem.holders() == {os.getpid(): 1}


def test_repr_and_uninitialised_subclass():
    assert "value=2/2" in repr(fastsem.ProcessBoundedSemaphore(2, fair=False))
    assert repr(fastsem.ProcessSemaphore(0)).startswith("<fastsem.ProcessSemaphore at ")

    class Forgetful(fastsem.ProcessSemaphore):
        def __init__(self):
            pass

    sem = Forgetful()
    assert "uninitialised" in repr(sem)
    for call in (sem.acquire, sem.release, lambda: sem.value, sem.close, sem.holders):
        with pytest.raises(RuntimeError, match="not initialised"):
            call()


def test_close_turns_waiters_of_other_processes_away(children):
    sem = fastsem.ProcessSemaphore(0)
    results = children.ctx.Queue()
    children.start(workers.acquire_with_timeout, sem, 30, results)
    wait_until(lambda: sem.waiting == 1)
    sem.close()
    proc = children.procs[0]
    proc.join(10)
    assert proc.exitcode == 1  # SemaphoreClosed in the child
    assert sem.closed and sem.waiting == 0
    with pytest.raises(fastsem.SemaphoreClosed):
        sem.acquire()
    sem.release()  # still works
    assert sem.value == 1
    with pytest.raises(fastsem.SemaphoreClosed):
        sem.acquire()  # a free permit, and still refused


def test_capacity_error_when_every_waiter_slot_is_taken():
    sem = fastsem.ProcessSemaphore(0, max_waiters=2)
    waiting = [threading.Thread(target=sem.acquire, daemon=True) for _ in range(2)]
    for thread in waiting:
        thread.start()
    wait_until(lambda: sem.waiting == 2)
    with pytest.raises(fastsem.CapacityError, match="max_waiters"):
        sem.acquire(timeout=5)
    assert sem.acquire(False) is False  # not waiting: no slot needed
    sem.release(2)
    for thread in waiting:
        thread.join(10)
    assert sem.value == 0 and sem.waiting == 0


def test_pure_python_stand_ins_refuse_to_construct():
    code = (
        "import fastsem\n"
        "for cls in (fastsem.ProcessSemaphore, fastsem.ProcessBoundedSemaphore):\n"
        "    for make in (lambda: cls(1), lambda: cls.open('x')):\n"
        "        try:\n"
        "            make()\n"
        "        except NotImplementedError:\n"
        "            pass\n"
        "        else:\n"
        "            raise SystemExit('constructed')\n"
    )
    env = dict(os.environ, FASTSEM_NO_EXTENSIONS="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


# ---- sharing ---------------------------------------------------------------


@pytest.mark.parametrize("method", START_METHODS)
def test_shared_as_a_process_argument_under_every_start_method(method):
    ctx = multiprocessing.get_context(method)
    sem = fastsem.ProcessBoundedSemaphore(2, fair=False)
    results = ctx.Queue()
    proc = ctx.Process(target=workers.attach_and_report, args=(sem, results))
    proc.start()
    assert results.get(timeout=60) == ("ProcessBoundedSemaphore", 2, False)
    assert results.get(timeout=60) == "done"
    proc.join(30)
    assert proc.exitcode == 0
    assert sem.statistics().acquisitions == 1


def test_shared_through_a_pool_initializer(ctx):
    sem = fastsem.ProcessSemaphore(2)
    with ctx.Pool(3, initializer=workers.pool_initializer, initargs=(sem,)) as pool:
        assert pool.map(workers.pool_task, range(10)) == [i * i for i in range(10)]
    assert sem.statistics().acquisitions == 10 and sem.value == 2


def test_pickled_through_a_queue_while_the_sender_lives(children):
    sem = fastsem.ProcessSemaphore(1)
    inbox, results = children.ctx.Queue(), children.ctx.Queue()
    children.start(_receive_and_report, inbox, results)
    inbox.put(sem)
    assert results.get(timeout=60) == ("ProcessSemaphore", 1, True)
    assert results.get(timeout=60) == "done"
    # And back in the same process: a second mapping of the same semaphore.
    again = pickle.loads(pickle.dumps(sem))
    again.acquire()
    assert sem.value == 0 and sem.holders() == {os.getpid(): 1}
    sem.release()


def _receive_and_report(inbox, results):
    workers.attach_and_report(inbox.get(timeout=60), results)


def test_pickled_through_a_pipe(children):
    sem = fastsem.ProcessBoundedSemaphore(2)
    receive, send = children.ctx.Pipe(duplex=False)
    results = children.ctx.Queue()
    children.start(_receive_from_pipe_and_report, receive, results)
    send.send(sem)
    assert results.get(timeout=60) == ("ProcessBoundedSemaphore", 2, True)
    assert results.get(timeout=60) == "done"
    assert sem.statistics().acquisitions == 1


def _receive_from_pipe_and_report(receive, results):
    workers.attach_and_report(receive.recv(), results)


def test_a_name_opened_by_an_unrelated_process(unique_name):
    sem = fastsem.ProcessBoundedSemaphore(2, name=unique_name)
    assert sem.name == unique_name
    with pytest.raises(FileExistsError):
        fastsem.ProcessSemaphore(1, name=unique_name)
    sem.acquire()
    code = textwrap.dedent(f"""
        import os, fastsem
        sem = fastsem.ProcessSemaphore.open({unique_name!r})
        assert type(sem) is fastsem.ProcessBoundedSemaphore, type(sem)
        assert (sem.value, sem.max_value) == (1, 2), sem
        sem.acquire()
        print(sorted(sem.holders().values()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1, 1]"
    # The unrelated process exited holding a permit: it comes back.
    wait_until(lambda: sem.recover() or sem.value == 1, timeout=RECOVERY * 5)
    assert sem.value == 1
    sem.unlink()
    with pytest.raises(FileNotFoundError):
        fastsem.ProcessSemaphore.open(unique_name)
    sem.release()  # still works after unlink
    assert sem.value == 2 and not os.path.exists(f"/dev/shm/{unique_name}")


def test_a_name_holding_something_else_is_refused(unique_name):
    from multiprocessing import shared_memory

    other = shared_memory.SharedMemory(unique_name, create=True, size=4096)
    try:
        with pytest.raises(ValueError, match="no fastsem process semaphore"):
            fastsem.ProcessSemaphore.open(unique_name)
    finally:
        other.close()
        other.unlink()


def test_nothing_left_behind_after_sigkill(tmp_path):
    """Anonymous semaphores, children under spawn killed while holding and
    while waiting: nothing new in /dev/shm, no resource tracker warning."""
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(f"""
        import multiprocessing, os, signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import process_workers as workers, fastsem
        if __name__ == "__main__":
            ctx = multiprocessing.get_context("spawn")
            sem = fastsem.ProcessSemaphore(1)
            receive, send = ctx.Pipe(duplex=False)
            ready = workers.Announcer(send)
            holder = ctx.Process(target=workers.hold_forever, args=(sem, ready))
            holder.start(); receive.recv()
            waiter = ctx.Process(target=workers.wait_forever, args=(sem, ready))
            waiter.start(); receive.recv()
            for proc in (holder, waiter):
                os.kill(proc.pid, signal.SIGKILL); proc.join()
            assert sem.acquire(timeout=5)
            os.kill(os.getpid(), signal.SIGKILL)
        """)
    )
    before = set(os.listdir("/dev/shm"))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert "leaked" not in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert set(os.listdir("/dev/shm")) - before == set()


# ---- fairness --------------------------------------------------------------


def test_fifo_across_processes_and_threads(children):
    """Processes and threads of this process queue alternately; the grants
    follow the order in which they queued."""
    sem = fastsem.ProcessSemaphore(0)
    log = children.ctx.Array("i", 9, lock=False)
    threads = []
    for i in range(8):
        if i % 2 == 0:
            children.start(workers.take_in_turn, sem, i, log)
        else:
            thread = threading.Thread(target=workers.take_in_turn, args=(sem, i, log))
            thread.start()
            threads.append(thread)
        wait_until(lambda i=i: sem.waiting == i + 1, timeout=60)
    sem.release()
    wait_until(lambda: log[0] == 8, timeout=30)
    assert list(log[1:]) == list(range(8))
    for thread in threads:
        thread.join(10)
    wait_until(lambda: sem.value == 1)


def test_multi_permit_head_blocks_the_line(children):
    sem = fastsem.ProcessSemaphore(0)
    ready = children.ctx.Queue()
    children.start(workers.wait_forever, sem, ready, 2)  # wants 2
    ready.get(timeout=60)
    wait_until(lambda: sem.waiting == 1)
    small = threading.Thread(target=sem.acquire, daemon=True)
    small.start()
    wait_until(lambda: sem.waiting == 2)
    sem.release()  # 1 free: the head wants 2, the one behind it waits
    assert sem.acquire(False) is False  # and so does a newcomer
    time.sleep(0.05)
    assert sem.waiting == 2 and sem.value == 1
    sem.release()
    wait_until(lambda: sem.waiting == 1)  # the head got both, not the thread
    assert sem.holders().get(children.procs[0].pid) == 2


@pytest.mark.parametrize("fair", [True, False])
def test_no_barging_in_fair_mode(children, fair):
    """A waiter in another process, stopped so that it cannot compete: a
    release hands the permit to it (fair), or leaves it free for whoever
    asks first (non-fair)."""
    sem = fastsem.ProcessSemaphore(1, fair=fair)
    sem.acquire()
    ready = children.ctx.Queue()
    waiter = children.start(workers.wait_forever, sem, ready)
    ready.get(timeout=60)
    wait_until(lambda: sem.waiting == 1)
    os.kill(waiter.pid, signal.SIGSTOP)
    wait_until(lambda: stopped(waiter.pid))
    sem.release()
    assert sem.acquire(False) is (not fair)
    holders = sem.holders()
    if fair:
        assert holders == {waiter.pid: 1}
    else:
        assert holders == {os.getpid(): 1}
    os.kill(waiter.pid, signal.SIGCONT)


# ---- crash recovery --------------------------------------------------------


@pytest.mark.parametrize("method", START_METHODS)
def test_permits_of_a_killed_holder_come_back(method):
    ctx = multiprocessing.get_context(method)
    kids = Children(ctx)
    try:
        sem = fastsem.ProcessBoundedSemaphore(3)
        ready = ctx.Queue()
        holder = kids.start(workers.hold_forever, sem, ready, 2)
        ready.get(timeout=60)
        assert sem.holders() == {holder.pid: 2} and sem.value == 1
        sem.acquire()
        kill(holder)
        started = time.monotonic()
        assert sem.acquire(timeout=RECOVERY * 5, n=2)
        assert time.monotonic() - started < RECOVERY
        assert sem.holders() == {os.getpid(): 3}
        stats = sem.statistics()
        assert (stats.recovered, stats.dead_processes) == (2, 1)
        sem.release(3)
        assert sem.value == 3
    finally:
        kids.close()


def test_a_killed_waiter_leaves_the_queue(children):
    sem = fastsem.ProcessSemaphore(0)
    ready = children.ctx.Queue()
    first = children.start(workers.wait_forever, sem, ready)
    ready.get(timeout=60)
    wait_until(lambda: sem.waiting == 1)
    log = children.ctx.Array("i", 2, lock=False)
    children.start(workers.take_in_turn, sem, 2, log)
    wait_until(lambda: sem.waiting == 2)
    kill(first)
    first.join(10)
    wait_until(lambda: sem.waiting == 1, timeout=RECOVERY)  # the second looked
    sem.release()
    wait_until(lambda: list(log) == [1, 2], timeout=RECOVERY)  # not lost on the dead
    wait_until(lambda: sem.value == 1)


def test_a_granted_head_killed_before_it_takes_the_grant(children):
    """A waiter stopped (SIGSTOP) is granted the permit but cannot take it;
    killed then, its permit goes on to the next waiter."""
    sem = fastsem.ProcessSemaphore(0)
    ready = children.ctx.Queue()
    head = children.start(workers.wait_forever, sem, ready)
    ready.get(timeout=60)
    wait_until(lambda: sem.waiting == 1)
    os.kill(head.pid, signal.SIGSTOP)
    wait_until(lambda: stopped(head.pid))
    behind = []
    thread = threading.Thread(target=lambda: behind.append(sem.acquire(timeout=30)))
    thread.start()
    wait_until(lambda: sem.waiting == 2)
    sem.release()
    assert sem.holders() == {head.pid: 1} and sem.waiting == 1  # granted, not taken
    kill(head)
    thread.join(RECOVERY * 5)
    assert behind == [True]
    assert sem.holders() == {os.getpid(): 1}
    assert sem.statistics().recovered == 1


def test_recovery_never_passes_the_bound(children):
    """A consumer process dies holding a permit that a producer already gave
    back: recovery may not make the value pass the bound."""
    sem = fastsem.ProcessBoundedSemaphore(1)
    ready = children.ctx.Queue()
    holder = children.start(workers.hold_forever, sem, ready)
    ready.get(timeout=60)
    sem.release()  # a producer: this process held nothing, owes nothing
    assert sem.value == 1 and sem.holders() == {holder.pid: 1}
    kill(holder)
    holder.join(10)
    assert sem.recover() == 1
    assert sem.value == 1 and sem.holders() == {}


def test_a_producer_cannot_give_back_what_another_process_holds(children):
    """A process that took a permit holds it, even when a producer gives one
    back meanwhile (the producer owes nothing; it cannot release on the
    holder's behalf); the holder's own release then finds the semaphore at
    its bound and raises, changing nothing."""
    sem = fastsem.ProcessBoundedSemaphore(1)
    sem.acquire()  # this process is known to the semaphore, and holds nothing after
    sem.release()
    ready, results = children.ctx.Queue(), children.ctx.Queue()
    cue, go = children.ctx.Pipe(duplex=False)
    holder = children.start(workers.acquire_then_release_on_cue, sem, ready, cue, results)
    ready.get(timeout=60)
    sem.release()  # the producer
    assert sem.value == 1 and sem.holders() == {holder.pid: 1}
    go.send("release")
    assert results.get(timeout=60) == "ValueError: Semaphore released too many times"
    assert sem.value == 1 and sem.holders() == {holder.pid: 1}


def test_a_reused_pid_is_not_taken_for_the_dead_process():
    """A holder exits; a new process gets its pid (staged through
    /proc/sys/kernel/ns_last_pid where this test may write it): the record
    is still recognised as dead, by the start time."""
    sem = fastsem.ProcessSemaphore(1)
    first = os.fork()
    if first == 0:  # pragma: no cover - the child
        sem.acquire()
        os._exit(0)
    os.waitpid(first, 0)
    assert sem.holders() == {first: 1}
    # Start times count clock ticks (1/100 s): a pid reused within the same
    # tick would look alive, which takes ns_last_pid to stage; the pid space
    # cannot be cycled that fast by forking.
    time.sleep(0.05)
    try:
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(first - 1))
    except OSError:
        pytest.skip("cannot choose the next pid here (needs CAP_SYS_ADMIN)")
    second = os.fork()
    if second == 0:  # pragma: no cover - the child
        time.sleep(30)
        os._exit(0)
    try:
        if second != first:
            pytest.skip("another process took the pid first")
        assert sem.recover() == 1
        assert sem.value == 1 and sem.holders() == {}
    finally:
        os.kill(second, signal.SIGKILL)
        os.waitpid(second, 0)


def test_stress_processes_and_threads_with_timeouts_and_kills(tmp_path, ctx):
    """8 processes x 4 threads on a bound of 3, some acquires with timeouts,
    3 processes SIGKILLed mid-run: never more than 3 permits held by live
    processes (checked by the holders, in a book kept in shared memory under
    a lock that survives SIGKILL), and every permit back at the end."""
    bound, procs, threads, rounds = 3, 8, 4, 300
    sem = fastsem.ProcessBoundedSemaphore(bound)
    book = ctx.Array("q", 2 * procs * threads + 1, lock=False)
    lock_file = tmp_path / "book.lock"
    lock_file.write_bytes(b"")
    lock = workers.BookLock(str(lock_file))
    pool = [
        ctx.Process(target=workers.stress_worker, args=(sem, bound, book, lock, w, rounds, threads))
        for w in range(procs)
    ]
    for proc in pool:
        proc.start()
    wait_until(lambda: sem.statistics().acquisitions >= 300, timeout=60)
    for victim in pool[:3]:
        kill(victim)
        time.sleep(0.05)
    for proc in pool:
        proc.join(120)
    assert [proc.exitcode for proc in pool] == [-signal.SIGKILL] * 3 + [0] * (procs - 3)
    assert book[len(book) - 1] == 0, f"{book[len(book) - 1]} permits held at once"
    sem.recover()
    assert sem.value == bound and sem.holders() == {} and sem.waiting == 0
    stats = sem.statistics()
    assert stats.dead_processes >= 3


def test_ctrl_c_interrupts_a_blocked_acquire():
    code = textwrap.dedent("""
        import fastsem, sys
        sem = fastsem.ProcessSemaphore(0)
        print("waiting", flush=True)
        try:
            sem.acquire()
        except KeyboardInterrupt:
            print("interrupted", sem.waiting, sem.value, flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "waiting"
        time.sleep(0.2)
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=30)
    finally:
        child.kill()
    assert out.strip() == "interrupted 0 0"


def test_fork_child_is_its_own_holder():
    """After fork() the child is another process: what it acquires is its,
    and the parent's holdings are not the child's to give back."""
    sem = fastsem.ProcessSemaphore(2)
    sem.acquire()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            sem.acquire()
            os.write(write, repr(sorted(sem.holders().items())).encode())
        finally:
            os._exit(0)
    os.close(write)
    seen = os.read(read, 1000).decode()
    os.waitpid(pid, 0)
    assert seen == repr(sorted([(os.getpid(), 1), (pid, 1)]))
    assert sem.recover() == 1 and sem.value == 1
    assert sem.holders() == {os.getpid(): 1}


def test_mixed_threads_in_one_process_share_its_record():
    sem = fastsem.ProcessSemaphore(4)
    done = []
    thread = threading.Thread(target=lambda: done.append(sem.acquire(n=2)))
    thread.start()
    thread.join()
    sem.acquire()
    assert sem.holders() == {os.getpid(): 3}
    sem.release(3)
    assert sem.holders() == {}


def test_death_inside_the_critical_section_is_rolled_back():
    """Processes that hammer the semaphore, SIGKILLed at random instants,
    many inside its critical section (the robust mutex's owner dies): the
    next locker rolls the dead step back, and the state adds up every time."""
    import random

    ctx = multiprocessing.get_context("fork")
    bound = 3
    sem = fastsem.ProcessBoundedSemaphore(bound)
    rng = random.Random(1)
    for round_ in range(30):
        pair = [ctx.Process(target=workers.hammer, args=(sem, n), daemon=True) for n in (1, 2)]
        for proc in pair:
            proc.start()
        wait_until(lambda: sem.statistics().acquisitions > 50, timeout=30)
        time.sleep(rng.random() / 100)
        for proc in pair:
            kill(proc)
        for proc in pair:
            proc.join(10)
        sem.recover()
        assert (sem.value, sem.holders(), sem.waiting) == (bound, {}, 0), f"round {round_}"
        assert sem.acquire(timeout=RECOVERY, n=bound)
        sem.release(bound)
        sem.reset_statistics()


# ---- ProcessSlotPool ---------------------------------------------------------


def test_slot_pool_hands_out_distinct_slots():
    pool = fastsem.ProcessSlotPool(3)
    assert (pool.size, pool.free) == (3, 3)
    taken = [pool.acquire() for _ in range(3)]
    assert sorted(taken) == [0, 1, 2]
    assert pool.holders() == {os.getpid(): [0, 1, 2]}
    assert pool.acquire(False) is None
    assert pool.acquire(timeout=0.01) is None
    pool.release(1)
    with pool.slot() as slot:
        assert slot == 1 and pool.free == 0
    assert pool.free == 1
    with pytest.raises(TimeoutError), pool.slot(timeout=0.01), pool.slot(timeout=0.01):
        pass
    assert pool.free == 1  # the first slot came back when the second timed out
    lease = pool.slot()
    with lease:
        pass
    with pytest.raises(RuntimeError, match="entered once"):
        lease.__enter__()
    assert "free=1/3" in repr(pool)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda pool: pool.release(7), ValueError),
        (lambda pool: pool.release(-1), ValueError),
        (lambda pool: pool.release(0), ValueError),  # free, so not this process's
        (lambda pool: pool.release("0"), TypeError),
        (lambda pool: pool.acquire(False, 1.0), ValueError),
    ],
)
def test_slot_pool_bad_input(call, error):
    pool = fastsem.ProcessSlotPool(2)
    with pytest.raises(error):
        call(pool)
    assert pool.free == 2


@pytest.mark.parametrize("size", [0, -1, 65537])
def test_slot_pool_size_is_checked(size):
    with pytest.raises(ValueError):
        fastsem.ProcessSlotPool(size)


def test_slot_pool_across_processes_and_a_dead_holder(children):
    pool = fastsem.ProcessSlotPool(2)
    ready, results = children.ctx.Queue(), children.ctx.Queue()
    holder = children.start(workers.hold_a_slot, pool, ready)
    pid, theirs = ready.get(timeout=60)
    mine = pool.acquire()
    assert {theirs, mine} == {0, 1}
    assert pool.holders() == {pid: [theirs], os.getpid(): [mine]}
    children.start(workers.try_to_release, pool, mine, results)
    assert "not held by this process" in results.get(timeout=60)
    assert pool.acquire(False) is None
    kill(holder)
    started = time.monotonic()
    assert pool.acquire(timeout=RECOVERY * 5) == theirs
    assert time.monotonic() - started < RECOVERY
    assert pool.statistics().recovered == 1


def test_slot_pool_by_name_and_family_checks(unique_name):
    pool = fastsem.ProcessSlotPool(2, name=unique_name)
    other = fastsem.ProcessSlotPool.open(unique_name)
    assert type(other) is fastsem.ProcessSlotPool and other.size == 2
    assert other.acquire() == 0 and pool.free == 1
    with pytest.raises(ValueError, match="ProcessSlotPool"):
        fastsem.ProcessSemaphore.open(unique_name)
    again = pickle.loads(pickle.dumps(pool))
    assert again.holders() == {os.getpid(): [0]}
    pool.unlink()
    sem_name = unique_name + "-sem"
    sem = fastsem.ProcessSemaphore(1, name=sem_name)
    try:
        with pytest.raises(ValueError, match="not a ProcessSlotPool"):
            fastsem.ProcessSlotPool.open(sem_name)
    finally:
        sem.unlink()


def switches(pid):
    """Voluntary context switches of all of a process's threads: a waiter
    that wakes, looks and sleeps again adds at least one."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches"):
                    total += int(line.split()[1])
    return total


def asleep_for(pid, looks):
    """Whether every thread of the process is asleep ('S') at `looks` looks
    in a row, 1 ms apart: blocked, not merely waiting for a CPU."""
    for _ in range(looks):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] != "S":
                    return False
        time.sleep(0.001)
    return True


def test_non_fair_starvation_is_bounded(children):
    """Non-fair: a waiter of another process, queued for more than a
    millisecond, that loses one competition to a barger gets the next
    release handed over, and the barger's next try fails."""
    sem = fastsem.ProcessSemaphore(1, fair=False)
    sem.acquire()
    log = children.ctx.Array("i", 2, lock=False)
    waiter = children.start(workers.take_in_turn, sem, 1, log)
    wait_until(lambda: sem.waiting == 1, timeout=60)
    time.sleep(0.02)  # queued past the starvation bound
    before = switches(waiter.pid)
    sem.release()  # wakes the waiter to compete...
    if not sem.acquire(False):  # ...and this barges in first (almost always)
        pytest.skip("the waiter won the race this time")
    wait_until(
        lambda: switches(waiter.pid) > before and not stopped(waiter.pid),
        what="the waiter to wake, compete and lose",
    )
    wait_until(lambda: sem.waiting == 1, what="the waiter queued again")
    # It has looked, lost, and gone back to sleep: asleep at 10 looks in a
    # row, 1 ms apart (a sleep of fixed length lost that race on a loaded
    # machine, where the woken waiter had not yet run).
    wait_until(lambda: asleep_for(waiter.pid, looks=10), what="the waiter asleep again")
    sem.release()  # now handed to the starving waiter:
    assert sem.acquire(False) is False
    wait_until(lambda: list(log) == [1, 1])
