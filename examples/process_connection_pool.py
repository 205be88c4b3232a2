"""Worker processes share a database server that takes at most 3 connections;
one worker is killed (SIGKILL) while it holds one, and nobody is stuck.

    python examples/process_connection_pool.py

The "database" is a small TCP server in this process that counts the
connections open at once, as the kernel sees them (a connection whose
client has gone is not counted). Six worker processes (started with spawn)
share a fastsem.ProcessBoundedSemaphore(3): each takes a permit before it
connects and releases it after. One of them connects and kills itself with
SIGKILL, holding a permit and a connection. With multiprocessing's
BoundedSemaphore that permit would be gone for ever and the pool one short;
here it comes back, the other workers finish every job, the server never
sees more than 3 connections, and no permit is lost.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import socket
import socketserver
import threading
import time

import fastsem

LIMIT = 3
WORKERS = 6
JOBS = 60


class Database(socketserver.ThreadingTCPServer):
    """Answers "job N" with "done N" after 5 ms, and keeps count."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.open: set[socket.socket] = set()
        self.most = 0
        self.done: set[int] = set()

    def opened(self, conn: socket.socket) -> None:
        with self.lock:
            # Count only connections whose client is still there: a killed
            # client's socket is closed by its kernel before its permit can
            # be recovered, but our handler may not have read the EOF yet.
            self.open = {c for c in self.open if not peer_gone(c)}
            self.open.add(conn)
            self.most = max(self.most, len(self.open))

    def closed(self, conn: socket.socket) -> None:
        with self.lock:
            self.open.discard(conn)


def peer_gone(conn: socket.socket) -> bool:
    readable, _, _ = select.select([conn], [], [], 0)
    if not readable:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: Database = self.server  # type: ignore[assignment]
        server.opened(self.connection)
        try:
            for line in self.rfile:
                n = int(line.split()[1])
                time.sleep(0.005)
                with server.lock:
                    server.done.add(n)
                self.wfile.write(b"done %d\n" % n)
        finally:
            server.closed(self.connection)


def worker(sem: fastsem.ProcessBoundedSemaphore, address, jobs, victim: bool) -> None:
    if victim:
        sem.acquire()
        socket.create_connection(address)  # holds a permit and a connection
        os.kill(os.getpid(), signal.SIGKILL)
    while (n := jobs.get()) is not None:
        # A permit first, then the connection; given back in reverse order.
        with sem, socket.create_connection(address) as conn:
            conn.sendall(b"job %d\n" % n)
            assert conn.makefile().readline() == f"done {n}\n"


def main() -> None:
    db = Database()
    threading.Thread(target=db.serve_forever, daemon=True).start()
    ctx = multiprocessing.get_context("spawn")
    sem = fastsem.ProcessBoundedSemaphore(LIMIT)
    jobs = ctx.Queue()
    for n in range(JOBS):
        jobs.put(n)
    for _ in range(WORKERS - 1):
        jobs.put(None)
    procs = [
        ctx.Process(target=worker, args=(sem, db.server_address, jobs, i == 0))
        for i in range(WORKERS)
    ]
    started = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    elapsed = time.monotonic() - started
    db.shutdown()

    # Waiters look for the dead every 0.1 s of waiting; if the victim died
    # after the last long wait, nobody has looked yet. recover() looks now
    # (and finds nothing when a waiter already gave the permit back).
    sem.recover()
    stats = sem.statistics()
    print(f"{JOBS} jobs by {WORKERS - 1} workers in {elapsed:.2f} s; one worker was killed")
    print(f"exit codes: {[p.exitcode for p in procs]}")
    print(f"jobs done: {len(db.done)}/{JOBS}; most connections at once: {db.most} (limit {LIMIT})")
    print(f"permits free: {sem.value}/{LIMIT}; recovered from the dead: {stats.recovered}")
    assert procs[0].exitcode == -signal.SIGKILL
    assert all(p.exitcode == 0 for p in procs[1:])
    assert db.done == set(range(JOBS))
    assert db.most <= LIMIT
    assert sem.value == LIMIT and stats.recovered == 1


if __name__ == "__main__":
    main()
