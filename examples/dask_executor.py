"""Fan CPU-bound work out to other processes or machines from an asyncio program on
ferroloop, through Dask's ``concurrent.futures.Executor``.

    pip install "dask[distributed]"
    python examples/dask_executor.py                         # a LocalCluster on this machine
    python examples/dask_executor.py tcp://scheduler:8786    # an existing cluster

A cluster of several machines: run ``dask scheduler`` on one (it listens on port 8786),
``dask worker tcp://scheduler:8786`` on each of the others, then pass the scheduler's
address. ``client.get_executor()`` is a ``concurrent.futures.Executor``, so
``loop.run_in_executor(executor, func, *args)`` sends ``func(*args)`` to a worker and
returns an asyncio future for its result: the event loop stays free while the cluster
computes, and a remote exception is raised by the ``await``. Functions defined in the
script are sent by value (cloudpickle); functions of a module must be importable on the
workers. Calls with equal arguments share one result unless the executor is made with
``client.get_executor(pure=False)``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from concurrent.futures import Executor

import ferroloop


def count_primes(lo: int, hi: int) -> tuple[int, str]:
    """The number of primes in [lo, hi) by trial division, and where it was counted."""
    count = 0
    for n in range(max(lo, 2), hi):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            count += 1
    return count, f"{socket.gethostname()}:{os.getpid()}"


async def main(executor: Executor, limit: int = 200_000, chunks: int = 16) -> None:
    loop = asyncio.get_running_loop()
    step = limit // chunks
    futures = [loop.run_in_executor(executor, count_primes, lo, lo + step)
               for lo in range(0, limit, step)]
    results = await asyncio.gather(*futures)
    where = sorted({w for _, w in results})
    print(f"loop: {type(loop).__module__}.{type(loop).__qualname__}")
    print(f"primes below {limit}: {sum(c for c, _ in results)}")
    print(f"counted in {len(where)} worker processes: {', '.join(where)}")


def run(address: str | None) -> None:
    from distributed import Client, LocalCluster

    if address is None:
        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
            with Client(cluster) as client:
                ferroloop.run(main(client.get_executor()))
    else:
        with Client(address) as client:
            ferroloop.run(main(client.get_executor()))


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else None)
