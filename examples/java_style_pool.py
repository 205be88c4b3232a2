"""The Java-style pool, done right: ``new Semaphore(MAX, true)``,
``tryAcquire(maxWait)`` and ``createResource()``, then the same with
fastsem.ResourcePool.

    python examples/java_style_pool.py

Part 1 writes the pattern by hand on a fair fastsem.BoundedSemaphore,
without its three usual bugs: a timed-out tryAcquire is not ignored, the
permit is given back when creating the resource fails, and the resource is
returned before the permit. Part 2 gets the same, plus validation and a clean
shutdown, from ResourcePool. In both, five workers share a pool of two
"expensive clients"; a caller that cannot get one within its timeout gives
up cleanly.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Callable

import fastsem

MAX = 2
MAX_WAIT = 0.5  # seconds, Java's tryAcquire(maxWait, SECONDS)


class Client:
    """Something expensive to make: a connection, a session, a GPU context."""

    _ids = itertools.count()

    def __init__(self) -> None:
        self.id = next(self._ids)
        self.open = True

    def call(self, job: int) -> str:
        assert self.open
        time.sleep(0.005)
        return f"job {job} on client {self.id}"

    def close(self) -> None:
        self.open = False


class HandMadePool:
    """The Java pattern in Python, with the bugs left out."""

    def __init__(self, size: int) -> None:
        self._available = fastsem.BoundedSemaphore(size)  # Semaphore(MAX, true)
        self._idle: list[Client] = []
        self._lock = threading.Lock()

    def get(self, max_wait: float) -> Client:
        if not self._available.acquire(timeout=max_wait):  # tryAcquire(maxWait)
            raise TimeoutError(f"no client free within {max_wait} s")  # never go ahead
        try:
            with self._lock:
                if self._idle:
                    return self._idle.pop()
            return Client()  # createResource(): may raise
        except BaseException:
            self._available.release()  # do not leak the permit
            raise

    def put(self, client: Client) -> None:
        with self._lock:
            self._idle.append(client)  # first the resource,
        self._available.release()  # then the permit


def run_workers(get: Callable[[float], Client], put: Callable[[Client], None], label: str) -> None:
    results: list[str] = []

    def worker(index: int) -> None:
        for job in range(index * 10, index * 10 + 10):
            client = get(MAX_WAIT)
            try:
                results.append(client.call(job))
            finally:
                put(client)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"{label}: {len(results)} jobs done by 5 threads sharing {MAX} clients")
    assert len(results) == 50


def main() -> None:
    # Part 1: by hand.
    hand = HandMadePool(MAX)
    run_workers(hand.get, hand.put, "hand-made pool")
    first, second = hand.get(MAX_WAIT), hand.get(MAX_WAIT)
    try:
        hand.get(0.05)
        raise AssertionError("a third client was handed out")
    except TimeoutError as exc:
        print(f"hand-made pool, both clients busy: TimeoutError({exc})")
    hand.put(first)
    hand.put(second)

    # Part 2: the same with ResourcePool.
    with fastsem.ResourcePool(
        Client,
        MAX,
        close=Client.close,
        check=lambda client: client.open,  # a closed client is never handed out
        timeout=MAX_WAIT,
        name="clients",
    ) as pool:
        run_workers(lambda wait: pool.acquire(timeout=wait), pool.release, "ResourcePool")
        with pool.lease() as a, pool.lease() as b:
            try:
                pool.acquire(timeout=0.05)
                raise AssertionError("a third client was handed out")
            except fastsem.PoolTimeout as exc:  # also a TimeoutError
                print(f"ResourcePool, both clients busy: PoolTimeout({exc})")
            assert a is not b
        stats = pool.stats()
        print(
            f"ResourcePool: {stats['created']} clients made, {stats['acquired']} checkouts, "
            f"{stats['timeouts']} timeout"
        )
        assert stats["created"] <= MAX
    # Leaving the with block closed the pool and every client in it.
    assert pool.closed and pool.stats().size == 0


if __name__ == "__main__":
    main()
