"""Fanning work out to other processes (or machines) through Dask's
``concurrent.futures.Executor``: ``loop.run_in_executor(client.get_executor(), func, x)``.

The test starts a ``distributed.LocalCluster`` of two worker processes (one thread each) on
loopback, no dashboard, and a ``Client`` to it; the multi-machine form is the same with
``Client("tcp://scheduler:8786")`` (examples/dask_executor.py). A program on the loop under
test submits calls and awaits them as asyncio futures: results come back from the worker
processes, an exception raised remotely is raised by the ``await``, and cancelling a call
that is still pending cancels the Dask task (it never runs).

The functions are defined inside the tests: cloudpickle sends those by value, so the worker
processes need not import this module.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from _integ import run

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    """One cluster for the module (about 2 s to start): 2 worker processes on 127.0.0.1."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  worker_dashboard_address=None) as cluster:
        with distributed.Client(cluster, timeout="30s") as client:
            client.wait_for_workers(2, timeout=30)
            yield client


def test_results_from_remote_processes(loop_name, client):
    def square(x: int) -> tuple[int, int]:
        return x * x, os.getpid()

    async def main():
        loop = asyncio.get_running_loop()
        executor = client.get_executor()
        futures = [loop.run_in_executor(executor, square, x) for x in range(20)]
        assert all(isinstance(f, asyncio.Future) for f in futures)
        return await asyncio.gather(*futures)

    results = run(loop_name, main, timeout=30)
    assert [r for r, _ in results] == [x * x for x in range(20)]
    worker_pids = set(client.run(os.getpid).values())
    assert len(worker_pids) == 2
    pids = {pid for _, pid in results}
    assert os.getpid() not in pids and pids <= worker_pids, (pids, worker_pids)


def test_remote_exception_propagates(loop_name, client):
    class Boom(Exception):
        pass

    def fail(x: int) -> int:
        raise Boom(f"no {x} here")

    async def main():
        loop = asyncio.get_running_loop()
        executor = client.get_executor()
        ok = loop.run_in_executor(executor, abs, -5)
        with pytest.raises(Exception) as info:
            await loop.run_in_executor(executor, fail, 7)
        return await ok, info.value

    result, exc = run(loop_name, main, timeout=30)
    assert result == 5
    # The class comes back by value (cloudpickle): same name and message, raised by the await.
    assert type(exc).__name__ == "Boom" and str(exc) == "no 7 here"


def test_cancelling_a_pending_call_cancels_the_task(loop_name, client, tmp_path):
    def touch(path: str) -> str:
        pathlib.Path(path).write_text("ran")
        return path

    cancelled_marker = tmp_path / "cancelled"
    control_marker = tmp_path / "control"

    async def main():
        loop = asyncio.get_running_loop()
        executor = client.get_executor()
        # Both workers busy (distinct arguments: equal calls would share one Dask key).
        busy = [loop.run_in_executor(executor, time.sleep, 1.0 + i / 100) for i in range(2)]
        pending = loop.run_in_executor(executor, touch, str(cancelled_marker))
        await asyncio.sleep(0.1)
        assert not pending.done()
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        await asyncio.gather(*busy)
        # The same function does run when it is not cancelled.
        assert await loop.run_in_executor(executor, touch, str(control_marker)) == str(
            control_marker)
        # Nothing left on any worker: a task that escaped the cancellation would have run.
        deadline = loop.time() + 10
        while any((await loop.run_in_executor(None, client.processing)).values()):
            assert loop.time() < deadline, "tasks still processing"
            await asyncio.sleep(0.05)

    run(loop_name, main, timeout=30)
    assert control_marker.read_text() == "ran"
    assert not cancelled_marker.exists()



EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "dask_executor.py"


def test_example_with_a_scheduler_address(client):
    """examples/dask_executor.py in its multi-machine form, ``python examples/dask_executor.py
    tcp://HOST:PORT``, given the test cluster's scheduler (its LocalCluster form differs only
    in making that cluster itself)."""
    proc = subprocess.run([sys.executable, str(EXAMPLE), client.scheduler.address],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "loop: ferroloop.Loop"
    assert lines[1] == "primes below 200000: 17984"
    workers = set(client.run(lambda: f"{socket.gethostname()}:{os.getpid()}").values())
    assert lines[2] == f"counted in 2 worker processes: {', '.join(sorted(workers))}", (
        lines[2], workers)
