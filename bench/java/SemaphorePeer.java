// The Java peer of fastsem's contended benchmarks: java.util.concurrent's fair
// Semaphore, run through the same loops as bench/test_java_peer.py runs
// fastsem through, so that the two can be compared side by side.
//
//   java bench/java/SemaphorePeer.java loop THREADS VALUE SECONDS WARMUP
//   java bench/java/SemaphorePeer.java pool THREADS SIZE SECONDS WARMUP
//
// loop: THREADS threads loop acquire() / tiny critical section / release() on
//       new Semaphore(VALUE, true) (fastsem._compare.contended_window's loop).
// pool: THREADS threads loop checkout / return on a pool of SIZE objects
//       guarded the Java way: new Semaphore(SIZE, true), tryAcquire(maxWait),
//       a ConcurrentLinkedDeque of idle objects (bench/test_pool_bench.py's
//       contended loop).
//
// Prints one JSON object: throughput, per-thread counts, and the p50 / p99 /
// max wait (ns) of the acquisitions that started inside the measured window,
// which opens WARMUP seconds after every thread started (the JIT warms up
// then) and lasts SECONDS. Needs JDK 11+ (single-file source launch).

import java.util.Arrays;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;

public final class SemaphorePeer {
    // The tiny critical section's work (the Python loop adds to a counter).
    static long shared;

    static volatile boolean running = true;
    static volatile long windowStart = Long.MAX_VALUE; // nanoTime
    static volatile long windowEnd = Long.MAX_VALUE;

    /** The waits of one thread's acquisitions inside the window. */
    static final class Samples {
        long[] waits = new long[1 << 16];
        int count;

        void add(long wait) {
            if (count == waits.length) {
                waits = Arrays.copyOf(waits, count * 2);
            }
            waits[count++] = wait;
        }
    }

    interface Body {
        void run(Samples mine) throws InterruptedException;
    }

    static void loop(Semaphore sem, Samples mine) throws InterruptedException {
        while (running) {
            long t0 = System.nanoTime();
            sem.acquire();
            long t1 = System.nanoTime();
            shared += 2;
            sem.release();
            if (t0 >= windowStart && t0 < windowEnd) {
                mine.add(t1 - t0);
            }
        }
    }

    static void pool(Semaphore sem, ConcurrentLinkedDeque<Object> idle, Samples mine)
            throws InterruptedException {
        while (running) {
            long t0 = System.nanoTime();
            // The pattern of the users we serve: a bounded wait, checked.
            if (!sem.tryAcquire(10, TimeUnit.SECONDS)) {
                throw new IllegalStateException("no resource within 10 s");
            }
            Object res = idle.pollLast(); // most recently returned first
            long t1 = System.nanoTime();
            if (res == null) {
                throw new IllegalStateException("a permit without a resource");
            }
            idle.addLast(res);
            sem.release();
            if (t0 >= windowStart && t0 < windowEnd) {
                mine.add(t1 - t0);
            }
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 5 || !(args[0].equals("loop") || args[0].equals("pool"))) {
            System.err.println("usage: SemaphorePeer loop|pool THREADS VALUE SECONDS WARMUP");
            System.exit(2);
        }
        final boolean poolMode = args[0].equals("pool");
        final int threads = Integer.parseInt(args[1]);
        final int value = Integer.parseInt(args[2]);
        final double seconds = Double.parseDouble(args[3]);
        final double warmup = Double.parseDouble(args[4]);

        final Semaphore sem = new Semaphore(value, true);
        final ConcurrentLinkedDeque<Object> idle = new ConcurrentLinkedDeque<>();
        for (int i = 0; i < value; i++) {
            idle.add(new Object());
        }
        final Body body = poolMode ? mine -> pool(sem, idle, mine) : mine -> loop(sem, mine);

        final CountDownLatch started = new CountDownLatch(threads);
        final Samples[] samples = new Samples[threads];
        final Thread[] pool = new Thread[threads];
        final Throwable[] failure = new Throwable[1];
        for (int i = 0; i < threads; i++) {
            final Samples mine = samples[i] = new Samples();
            pool[i] = new Thread(() -> {
                started.countDown();
                try {
                    started.await();
                    body.run(mine);
                } catch (Throwable e) {
                    synchronized (failure) {
                        failure[0] = e;
                    }
                    running = false;
                }
            });
            pool[i].setDaemon(true);
            pool[i].start();
        }
        started.await();
        Thread.sleep((long) (warmup * 1000));
        long begin = System.nanoTime();
        windowStart = begin;
        Thread.sleep((long) (seconds * 1000));
        long end = System.nanoTime();
        windowEnd = end;
        running = false;
        for (Thread t : pool) {
            t.join(30_000);
            if (t.isAlive()) {
                System.err.println("a thread did not stop within 30 s");
                System.exit(1);
            }
        }
        if (failure[0] != null) {
            failure[0].printStackTrace();
            System.exit(1);
        }

        long[] counts = new long[threads];
        int total = 0;
        for (int i = 0; i < threads; i++) {
            counts[i] = samples[i].count;
            total += samples[i].count;
        }
        long[] all = new long[total];
        int at = 0;
        for (Samples s : samples) {
            System.arraycopy(s.waits, 0, all, at, s.count);
            at += s.count;
        }
        Arrays.sort(all);
        double window = (end - begin) / 1e9;
        StringBuilder out = new StringBuilder();
        out.append("{\"java\": \"").append(System.getProperty("java.version")).append('"');
        out.append(", \"mode\": \"").append(args[0]).append('"');
        out.append(", \"threads\": ").append(threads);
        out.append(", \"value\": ").append(value);
        out.append(", \"seconds\": ").append(window);
        out.append(", \"acquisitions\": ").append(total);
        out.append(", \"ops_per_s\": ").append(total / window);
        out.append(", \"counts\": ").append(Arrays.toString(counts));
        out.append(", \"p50_wait_ns\": ").append(total > 0 ? all[percentile(total, 50)] : 0);
        out.append(", \"p99_wait_ns\": ").append(total > 0 ? all[percentile(total, 99)] : 0);
        out.append(", \"max_wait_ns\": ").append(total > 0 ? all[total - 1] : 0);
        out.append('}');
        System.out.println(out);
    }

    /** The index of the p-th percentile of n sorted samples (nearest rank, as fastsem._compare). */
    static int percentile(int n, int p) {
        long rank = Math.max(1, ((long) n * p + 99) / 100);
        return (int) Math.min(rank, n) - 1;
    }
}
