"""One server process per core, all sharing one port (``SO_REUSEPORT``).

    python examples/reuse_port_server.py                     # os.cpu_count() workers on :8888
    python examples/reuse_port_server.py --workers 2 --port 9000
    python -c "import socket; print(socket.create_connection(('127.0.0.1', 9000)).makefile().read(), end='')"
                                                             # -> pid 12345 on ferroloop.Loop

The supervisor (this process, itself an asyncio program on ferroloop) starts N worker
processes. Each worker runs its own ferroloop loop and ``asyncio.start_server(...,
reuse_port=True)`` on the same host and port: every worker has a listening socket of its
own, and the kernel spreads incoming connections over them (by a hash of the connection's
addresses), so N single-threaded loops serve in parallel with no shared accept lock and
nothing passed between processes. A connection is answered with the worker's pid and
closed.

Ctrl-C (SIGINT) or SIGTERM to the supervisor stops the workers (SIGTERM to each; a worker
closes its server and exits 0), waits for them and exits 0. A worker that dies makes the
supervisor stop the others and exit 1.

The supervisor prints ``serving on HOST:PORT with N workers: PID PID ...`` once every
worker is listening (tests/test_reuse_port.py waits for that line).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

import ferroloop

READY = "ready"  # what a worker prints on stdout once it listens


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    writer.write(f"pid {os.getpid()} on {type(loop).__module__}.{type(loop).__qualname__}\n"
                 .encode())
    try:
        await writer.drain()
    except ConnectionError:
        pass  # the client went away first
    finally:
        writer.close()


async def worker(host: str, port: int) -> None:
    """One worker: a server on host:port sharing the port with the others, until a signal."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(answer, host, port, reuse_port=True)
    async with server:
        print(READY, flush=True)
        await stop.wait()
    # Leaving the block closed the listening socket; let answers in flight finish.


async def supervise(host: str, port: int, workers: int) -> int:
    """Start ``workers`` worker processes, relay their readiness, stop them on a signal."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--host", host,
           "--port", str(port)]
    procs = [await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
             for _ in range(workers)]

    async def ready(proc: asyncio.subprocess.Process) -> bool:
        assert proc.stdout is not None
        return (await proc.stdout.readline()).decode().strip() == READY

    status = 0
    waiters = [asyncio.ensure_future(p.wait()) for p in procs]
    stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    started: asyncio.Future[list[bool]] = asyncio.gather(*(ready(p) for p in procs))
    watched: list[asyncio.Future[Any]] = [started, stopped, *waiters]
    done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    if started in done and all(started.result()):
        pids = " ".join(str(p.pid) for p in procs)
        print(f"serving on {host}:{port} with {workers} workers: {pids}", flush=True)
        done, _ = await asyncio.wait(watched[1:], return_when=asyncio.FIRST_COMPLETED)
    if stopped not in done:
        print("a worker exited; stopping the others", file=sys.stderr, flush=True)
        status = 1
    started.cancel()
    stopped.cancel()

    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(10):
            codes = await asyncio.gather(*waiters)
    except TimeoutError:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
        codes = await asyncio.gather(*waiters)
    if any(code != 0 for code in codes):
        status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One server process per core sharing a port.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        ferroloop.run(worker(args.host, args.port))
        return 0
    return ferroloop.run(supervise(args.host, args.port, args.workers))


if __name__ == "__main__":
    sys.exit(main())
