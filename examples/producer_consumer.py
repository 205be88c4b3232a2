"""Producer/consumer with a bounded buffer, the classic way: two semaphores
and a lock (Dijkstra's solution), done right with fastsem.

    python examples/producer_consumer.py

``free`` counts the empty places of the buffer (a BoundedSemaphore: returning
more places than the buffer has is a bug, and it raises), ``filled`` counts
the items in it. Producers wait for a free place, consumers for an item, both
in the order they came (no producer or consumer starves). At the end the
consumers are stopped with close(), which wakes every one still waiting.
"""

from __future__ import annotations

import collections
import threading

import fastsem

CAPACITY = 8
PRODUCERS = 4
CONSUMERS = 3
ITEMS_EACH = 500


def main() -> None:
    free = fastsem.BoundedSemaphore(CAPACITY)  # empty places in the buffer
    filled = fastsem.Semaphore(0)  # items in the buffer
    buffer: collections.deque[tuple[int, int]] = collections.deque()
    lock = threading.Lock()  # guards buffer and the counters below
    most_buffered = 0
    consumed: list[tuple[int, int]] = []
    all_consumed = threading.Event()

    def producer(index: int) -> None:
        nonlocal most_buffered
        for n in range(ITEMS_EACH):
            free.acquire()  # wait for room: the buffer never overflows
            with lock:
                buffer.append((index, n))
                most_buffered = max(most_buffered, len(buffer))
            filled.release()  # first the item, then the signal

    def consumer() -> None:
        while True:
            try:
                filled.acquire()  # wait for an item
            except fastsem.SemaphoreClosed:
                return  # shut down: nothing more will come
            with lock:
                item = buffer.popleft()
                consumed.append(item)
                if len(consumed) == PRODUCERS * ITEMS_EACH:
                    all_consumed.set()
            free.release()  # the place is free again

    producers = [threading.Thread(target=producer, args=(i,)) for i in range(PRODUCERS)]
    consumers = [threading.Thread(target=consumer) for _ in range(CONSUMERS)]
    for t in producers + consumers:
        t.start()
    for t in producers:
        t.join()
    # Every item is produced; wait until they are all taken, then stop the
    # consumers: close() wakes each one waiting in acquire() at once.
    all_consumed.wait()
    filled.close()
    for t in consumers:
        t.join()

    print(
        f"{len(consumed)} items through a buffer of {CAPACITY}, "
        f"at most {most_buffered} buffered at once"
    )
    assert sorted(consumed) == [(p, n) for p in range(PRODUCERS) for n in range(ITEMS_EACH)]
    assert most_buffered <= CAPACITY
    # Every place was given back: the buffer is empty and all room is free.
    assert free.value == CAPACITY and not buffer


if __name__ == "__main__":
    main()
