"""Benchmark workloads, one function per workload, run in a fresh child process.

Usage (normally invoked by ``ferroloop bench``, benchmarks/run.py or callgrind.py, one
process per measurement):

    python -m ferroloop._bench.workloads LOOPNAME WORKLOAD N [--warmup W]
    python -m ferroloop._bench.workloads --check LOOPNAME
    python -m ferroloop._bench.workloads --list

LOOPNAME is asyncio or the name of a module with ``new_event_loop()`` (or a ``Loop``
class): ferroloop, uvloop, rloop, rsloop, talyn (the ones compared by default are
``LOOPS``). Prints a single JSON object on stdout.

Only the run call is timed (loop.run_forever() / loop.run_until_complete(),
plus, for ``timers``, the scheduling and cancelling of the handles): the
interpreter start, imports and loop creation are excluded.  Every workload
checks that it did the expected amount of work, so a loop that silently drops
callbacks fails instead of looking fast.
"""

import asyncio
import gc
import importlib
import json
import random
import sys
import time

perf_counter = time.perf_counter
process_time = time.process_time

LOOPS = ("ferroloop", "asyncio", "uvloop", "rloop", "rsloop", "talyn")


def new_loop(name):
    """Create a new event loop of the given implementation: asyncio's, or
    ``MODULE.new_event_loop()`` (``MODULE.Loop()`` where there is no such helper, as in
    talyn, a Zig loop for 3.13+)."""
    if name == "asyncio":
        return asyncio.new_event_loop()
    mod = importlib.import_module(name)
    factory = getattr(mod, "new_event_loop", None) or getattr(mod, "Loop", None)
    if factory is None:
        raise RuntimeError(f"module {name!r} has neither new_event_loop() nor Loop")
    return factory()


def loop_version(name):
    if name == "asyncio":
        return sys.version.split()[0]
    mod = importlib.import_module(name)
    ver = getattr(mod, "__version__", None)
    if ver is None:
        try:
            from importlib.metadata import version

            ver = version(name)
        except Exception:  # pragma: no cover - best effort only
            ver = "?"
    return str(ver)


def loop_build(name):
    """Fingerprint (name, size, mtime) of the loop package's files: identifies
    an installed build cheaply, so run.py can warn when a loop was reinstalled
    in the middle of a run."""
    if name == "asyncio":
        return sys.version.split()[0]
    import hashlib
    import os

    mod = importlib.import_module(name)
    root = os.path.dirname(getattr(mod, "__file__", "") or "")
    h = hashlib.sha1()
    for dirpath, _dirs, files in sorted(os.walk(root)):
        for fn in sorted(files):
            if fn.endswith((".so", ".pyd", ".py")):
                st = os.stat(os.path.join(dirpath, fn))
                h.update(f"{fn}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:12]


class Timer:
    """Wall-clock (perf_counter) and CPU (process_time) around a region."""

    __slots__ = ("wall", "cpu", "_w0", "_c0")

    def __enter__(self):
        self._c0 = process_time()
        self._w0 = perf_counter()
        return self

    def __exit__(self, *exc):
        w1 = perf_counter()
        c1 = process_time()
        self.wall = w1 - self._w0
        self.cpu = c1 - self._c0
        return False


def _check(got, expected, what):
    if got != expected:
        raise RuntimeError(f"{what}: expected {expected}, got {got}")


# ---------------------------------------------------------------------------
# Workloads.  Each takes (loop, n) and returns (Timer, ops).
# ---------------------------------------------------------------------------


def wl_call_soon(loop, n):
    """Chain of n callbacks: each one call_soon()s the next; the last stops."""
    count = 0
    call_soon = loop.call_soon

    def cb():
        nonlocal count
        count += 1
        if count < n:
            call_soon(cb)
        else:
            loop.stop()

    call_soon(cb)
    with Timer() as t:
        loop.run_forever()
    _check(count, n, "callbacks run")
    return t, n


def wl_call_soon_args(loop, n):
    """Same chain, but every callback takes two positional arguments."""
    count = 0
    call_soon = loop.call_soon

    def cb(a, b):
        nonlocal count
        count += 1
        if count < n:
            call_soon(cb, a, b)
        else:
            loop.stop()

    call_soon(cb, 1, "x")
    with Timer() as t:
        loop.run_forever()
    _check(count, n, "callbacks run")
    return t, n


TIMER_SPREAD = 0.050  # seconds


def wl_timers(loop, n):
    """n call_later() handles, delays spread over 0-50 ms, every other one
    cancelled before it fires; run until all live ones have fired.

    Timed: scheduling + cancelling + running.  ns per *scheduled* timer.
    The figure that run.py reports for this workload is CPU time
    (process_time), because a fast loop would otherwise spend most of the
    wall-clock time idle waiting for the 50 ms deadline.
    """
    rnd = random.Random(0x5EED)
    delays = [rnd.random() * TIMER_SPREAD for _ in range(n)]
    live = n - n // 2  # indices 0, 2, 4, ... stay live
    fired = 0

    def cb():
        nonlocal fired
        fired += 1
        if fired == live:
            loop.stop()

    call_later = loop.call_later
    gc.collect()
    with Timer() as t:
        handles = [call_later(d, cb) for d in delays]
        for h in handles[1::2]:
            h.cancel()
        loop.run_forever()
    _check(fired, live, "timers fired")
    return t, n


def wl_call_later_chain(loop, n):
    """Chain of n callbacks, each schedules the next with call_later(0)."""
    count = 0
    call_later = loop.call_later

    def cb():
        nonlocal count
        count += 1
        if count < n:
            call_later(0, cb)
        else:
            loop.stop()

    call_later(0, cb)
    with Timer() as t:
        loop.run_forever()
    _check(count, n, "callbacks run")
    return t, n


def wl_sleep0(loop, n):
    """One task doing ``await asyncio.sleep(0)`` n times."""

    async def main():
        sleep = asyncio.sleep
        for _ in range(n):
            await sleep(0)
        return n

    coro = main()
    with Timer() as t:
        res = loop.run_until_complete(coro)
    _check(res, n, "sleeps")
    return t, n


def wl_tasks(loop, n):
    """Sequential ``await loop.create_task(coro())``, n times."""

    async def child(i):
        return i

    async def main():
        create_task = loop.create_task
        total = 0
        for i in range(n):
            total += await create_task(child(1))
        return total

    coro = main()
    with Timer() as t:
        res = loop.run_until_complete(coro)
    _check(res, n, "tasks completed")
    return t, n


GATHER_SLEEPS = 3
GATHER_BATCH = 1000


def wl_gather(loop, n):
    """n workers, each doing sleep(0) three times, run as sequential
    ``asyncio.gather()`` batches of 1000 workers (so the cost stays linear in n
    instead of turning into a cache/GC test of n live tasks).

    ns per worker (task creation + 4 steps + completion + gather bookkeeping).
    """

    async def worker():
        sleep = asyncio.sleep
        for _ in range(GATHER_SLEEPS):
            await sleep(0)
        return 1

    async def main():
        gather = asyncio.gather
        total = 0
        left = n
        while left > 0:
            m = min(left, GATHER_BATCH)
            left -= m
            total += sum(await gather(*[worker() for _ in range(m)]))
        return total

    coro = main()
    with Timer() as t:
        res = loop.run_until_complete(coro)
    _check(res, n, "workers completed")
    return t, n


def wl_future_chain(loop, n):
    """n futures awaited in sequence, each resolved by a call_soon'ed
    set_result."""

    async def main():
        create_future = loop.create_future
        call_soon = loop.call_soon
        total = 0
        for _ in range(n):
            fut = create_future()
            call_soon(fut.set_result, 1)
            total += await fut
        return total

    coro = main()
    with Timer() as t:
        res = loop.run_until_complete(coro)
    _check(res, n, "futures resolved")
    return t, n


# name -> (function, default N, quick N, metric, unit)
WORKLOADS = {
    "call_soon": (wl_call_soon, 1_000_000, 200_000, "wall", "callback"),
    "call_soon_args": (wl_call_soon_args, 1_000_000, 200_000, "wall", "callback"),
    "timers": (wl_timers, 100_000, 30_000, "cpu", "timer"),
    "call_later_chain": (wl_call_later_chain, 500_000, 100_000, "wall", "callback"),
    "sleep0": (wl_sleep0, 500_000, 100_000, "wall", "sleep"),
    "tasks": (wl_tasks, 200_000, 50_000, "wall", "task"),
    "gather": (wl_gather, 200_000, 40_000, "wall", "worker"),
    "future_chain": (wl_future_chain, 300_000, 60_000, "wall", "future"),
}


def run_one(loop_name, workload, n, warmup):
    func = WORKLOADS[workload][0]
    if warmup:
        # Same workload, smaller, on a separate loop: warms pymalloc arenas,
        # the loop implementation's free lists and lazily-initialised state.
        wl = new_loop(loop_name)
        asyncio.set_event_loop(wl)
        try:
            func(wl, warmup)
        finally:
            wl.close()
            asyncio.set_event_loop(None)
    loop = new_loop(loop_name)
    asyncio.set_event_loop(loop)
    try:
        gc.collect()
        t, ops = func(loop, n)
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    metric = WORKLOADS[workload][3]
    secs = t.cpu if metric == "cpu" else t.wall
    return {
        "loop": loop_name,
        "version": loop_version(loop_name),
        "build": loop_build(loop_name),
        "workload": workload,
        "n": n,
        "ops": ops,
        "warmup": warmup,
        "metric": metric,
        "wall_s": t.wall,
        "cpu_s": t.cpu,
        "ns_per_op": secs * 1e9 / ops,
        "wall_ns_per_op": t.wall * 1e9 / ops,
        "cpu_ns_per_op": t.cpu * 1e9 / ops,
        "python": sys.version.split()[0],
    }


def check(loop_name):
    """Import + create + run a trivial coroutine; print version."""
    loop = new_loop(loop_name)
    try:
        async def probe():
            await asyncio.sleep(0)
            return 42

        _check(loop.run_until_complete(probe()), 42, "probe")
    finally:
        loop.close()
    return {"loop": loop_name, "version": loop_version(loop_name),
            "build": loop_build(loop_name),
            "type": f"{type(loop).__module__}.{type(loop).__qualname__}"}


def main(argv):
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", metavar="LOOP", help="probe that LOOP works")
    p.add_argument("--list", action="store_true", help="list workloads as JSON")
    p.add_argument("--warmup", type=int, default=None,
                   help="size of an untimed warm-up run on a separate loop "
                        "(default: N//10, at most 20000; 0 disables)")
    p.add_argument("loop", nargs="?")
    p.add_argument("workload", nargs="?")
    p.add_argument("n", nargs="?", type=int)
    a = p.parse_args(argv)

    if a.list:
        out = {k: {"default_n": v[1], "quick_n": v[2], "metric": v[3],
                   "unit": v[4], "doc": (v[0].__doc__ or "").strip()}
               for k, v in WORKLOADS.items()}
    elif a.check:
        out = check(a.check)
    else:
        if not a.loop or not a.workload:
            p.error("LOOPNAME and WORKLOAD are required")
        if a.workload not in WORKLOADS:
            p.error(f"unknown workload {a.workload!r}; "
                    f"known: {', '.join(WORKLOADS)}")
        n = a.n if a.n is not None else WORKLOADS[a.workload][1]
        warmup = a.warmup if a.warmup is not None else min(n // 10, 20_000)
        out = run_one(a.loop, a.workload, n, warmup)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
