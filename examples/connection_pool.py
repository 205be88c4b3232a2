"""A connection pool shared by threads: sqlite3 connections to one database
file, at most 4 open at once, handed out in the order threads asked.

    python examples/connection_pool.py

Eight worker threads each write 50 rows through the pool. Every connection is
checked before it is reused, rolled back when it is returned, and closed by
pool.close(); at the end every row is there and the pool's statistics show
how many connections were made and how long the threads waited.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading

import fastsem

WORKERS = 8
ROWS = 50


def main() -> None:
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "example.db")
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE events (worker INTEGER, n INTEGER)")
    db.close()

    def connect() -> sqlite3.Connection:
        # One connection is used by one thread at a time, but not always the
        # same thread: sqlite3 must be told that this is fine.
        return sqlite3.connect(path, timeout=30, check_same_thread=False)

    def still_good(conn: sqlite3.Connection) -> bool:
        conn.execute("SELECT 1")  # raises if the connection is broken
        return True

    pool = fastsem.ResourcePool(
        connect,
        max_size=4,
        min_size=1,  # one connection is opened now
        close=sqlite3.Connection.close,
        check=still_good,
        reset=sqlite3.Connection.rollback,  # nothing half-done is handed on
        timeout=30.0,  # acquire() and lease() wait at most 30 s
        name="example-db",
    )

    def worker(index: int) -> None:
        for n in range(ROWS):
            with pool.lease() as conn:  # released even if the block raises
                conn.execute("INSERT INTO events VALUES (?, ?)", (index, n))
                conn.commit()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    stats = pool.stats()
    print(
        f"{stats['acquired']} checkouts, {stats['created']} connections made "
        f"(at most {stats['max_size']}), {stats['contended']} had to wait, "
        f"longest wait {stats['wait_max'] * 1000:.2f} ms"
    )
    assert pool.close(timeout=10), "a connection was not returned"

    with sqlite3.connect(path) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM events").fetchone()
    db.close()
    print(f"{count} rows written by {WORKERS} threads")
    assert count == WORKERS * ROWS
    assert stats["created"] <= 4


if __name__ == "__main__":
    main()
