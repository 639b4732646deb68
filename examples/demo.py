"""ferroloop demo: a small asyncio pipeline doing real work.

    python examples/demo.py                      # installs ferroloop, then asyncio.run()
    python -m ferroloop run examples/demo.py     # the CLI installs ferroloop first
    python examples/demo.py --stock-asyncio      # the same program on asyncio's own loop

A producer feeds jobs through a bounded asyncio.Queue to a TaskGroup of workers. Each job
hashes its payload: small ones inline, expensive ones (PBKDF2) in the default executor via
run_in_executor, and a few "remote" ones wait on a slow fake service under asyncio.timeout
and are given up on. A collector folds the digests into one checksum while a heartbeat
timer ticks in the background. Everything except the timing line is deterministic.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from dataclasses import dataclass, field

N_JOBS = 240
N_WORKERS = 4
QUEUE_SIZE = 16
EXPENSIVE_EVERY = 6  # every 6th job runs PBKDF2 in the executor
REMOTE_EVERY = 40  # every 40th job calls the slow fake service
REMOTE_TIMEOUT = 0.05  # seconds; the fake service takes 1 s, so these time out
PBKDF2_ROUNDS = 20_000
HEARTBEAT = 0.01  # seconds


@dataclass
class Stats:
    produced: int = 0
    inline: int = 0
    executor: int = 0
    timed_out: int = 0
    per_worker: dict[int, int] = field(default_factory=dict)


def payload(n: int) -> bytes:
    return f"job-{n:04d}:".encode() * (1 + n % 7)


def expensive_hash(data: bytes) -> bytes:
    """CPU-bound; hashlib releases the GIL, so executor threads really run in parallel."""
    return hashlib.pbkdf2_hmac("sha256", data, b"ferroloop-demo", PBKDF2_ROUNDS)


async def slow_service(n: int) -> bytes:
    await asyncio.sleep(1.0)  # far longer than REMOTE_TIMEOUT
    return hashlib.sha256(payload(n)).digest()


async def producer(queue: asyncio.Queue[int | None], stats: Stats) -> None:
    for n in range(N_JOBS):
        await queue.put(n)
        stats.produced += 1
        if n % 50 == 49:
            await asyncio.sleep(0.002)  # bursts, paced by timers
    for _ in range(N_WORKERS):
        await queue.put(None)  # one stop marker per worker


async def worker(wid: int, jobs: asyncio.Queue[int | None],
                 results: asyncio.Queue[tuple[int, bytes] | None], stats: Stats) -> None:
    loop = asyncio.get_running_loop()
    while (n := await jobs.get()) is not None:
        if n % REMOTE_EVERY == REMOTE_EVERY - 1:
            try:
                async with asyncio.timeout(REMOTE_TIMEOUT):
                    digest = await slow_service(n)
            except TimeoutError:
                stats.timed_out += 1
                continue
        elif n % EXPENSIVE_EVERY == 0:
            digest = await loop.run_in_executor(None, expensive_hash, payload(n))
            stats.executor += 1
        else:
            digest = hashlib.sha256(payload(n)).digest()
            stats.inline += 1
        stats.per_worker[wid] = stats.per_worker.get(wid, 0) + 1
        await results.put((n, digest))
    await results.put(None)


async def collector(results: asyncio.Queue[tuple[int, bytes] | None]) -> tuple[int, str]:
    digests: dict[int, bytes] = {}
    finished_workers = 0
    while finished_workers < N_WORKERS:
        item = await results.get()
        if item is None:
            finished_workers += 1
        else:
            n, digest = item
            digests[n] = digest
    # Order-independent of scheduling: fold the digests in job order.
    total = hashlib.sha256()
    for n in sorted(digests):
        total.update(digests[n])
    return len(digests), total.hexdigest()[:16]


async def heartbeat(ticks: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        ticks.append(loop.time())
        await asyncio.sleep(HEARTBEAT)


async def main() -> None:
    loop = asyncio.get_running_loop()
    loop_cls = type(loop)
    stats = Stats()
    jobs: asyncio.Queue[int | None] = asyncio.Queue(maxsize=QUEUE_SIZE)
    results: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
    ticks: list[float] = []

    start = time.perf_counter()
    beat = asyncio.create_task(heartbeat(ticks), name="heartbeat")
    async with asyncio.TaskGroup() as tg:
        tg.create_task(producer(jobs, stats), name="producer")
        for wid in range(N_WORKERS):
            tg.create_task(worker(wid, jobs, results, stats), name=f"worker-{wid}")
        collected = tg.create_task(collector(results), name="collector")
    beat.cancel()
    elapsed = time.perf_counter() - start
    n_results, checksum = collected.result()

    print(f"loop: {loop_cls.__module__}.{loop_cls.__qualname__}")
    print(f"jobs produced:          {stats.produced}")
    print(f"hashed inline:          {stats.inline}")
    print(f"hashed in executor:     {stats.executor} (PBKDF2, {PBKDF2_ROUNDS} rounds)")
    print(f"timed out (remote):     {stats.timed_out} (asyncio.timeout {REMOTE_TIMEOUT} s)")
    print(f"results collected:      {n_results}, checksum {checksum}")
    print(f"workers:                {N_WORKERS}, jobs handled in total {sum(stats.per_worker.values())}")
    assert stats.inline + stats.executor + stats.timed_out == stats.produced == N_JOBS
    assert n_results == stats.inline + stats.executor
    print(f"[timing] elapsed {elapsed:.3f} s, heartbeat ticks {len(ticks)}")


def _ferroloop_installed() -> bool:
    import warnings

    import ferroloop

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return isinstance(asyncio.get_event_loop_policy(), ferroloop.EventLoopPolicy)


if __name__ == "__main__":
    if "--stock-asyncio" not in sys.argv[1:]:
        import ferroloop

        if not _ferroloop_installed():  # `python -m ferroloop run` has already done it
            ferroloop.install()
    asyncio.run(main())
