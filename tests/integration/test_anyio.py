"""anyio on its asyncio backend, running on ferroloop through
``anyio.run(..., backend="asyncio", backend_options={"loop_factory": ferroloop.new_event_loop})``:
task groups, cancel scopes, TCP listener/connect, threads, UDP sockets and subprocesses."""

from __future__ import annotations

import hashlib
import sys
import threading

import pytest

from _integ import FACTORIES, check_loop

anyio = pytest.importorskip("anyio")


def anyio_run(loop_name, main):
    return anyio.run(main, backend="asyncio",
                     backend_options={"loop_factory": FACTORIES[loop_name]})


def test_anyio_task_groups_and_cancel_scopes(loop_name):
    async def main():
        check_loop(loop_name)
        results = []

        async def worker(n):
            await anyio.sleep(0.01 * (n % 3))
            results.append(n)

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(worker, n)
        assert sorted(results) == list(range(20))

        # move_on_after: the sleep is cancelled, the scope records it
        with anyio.move_on_after(0.05) as scope:
            await anyio.sleep(10)
        assert scope.cancelled_caught

        # fail_after raises TimeoutError
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.05):
                await anyio.sleep(10)

        # cancelling a task group's scope cancels every child; shielded work finishes
        finished = []

        async def forever():
            try:
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(0.01)
                    finished.append(True)

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(forever)
            await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
        assert finished == [True] * 5

        # an exception in a child cancels its siblings and comes out as an ExceptionGroup
        with pytest.raises(BaseExceptionGroup) as info:
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.sleep_forever)

                async def boom():
                    raise ValueError("boom")

                tg.start_soon(boom)
        assert [type(e) for e in info.value.exceptions] == [ValueError]
        return "ok"

    assert anyio_run(loop_name, main) == "ok"


def test_anyio_tcp(loop_name):
    payload = bytes(range(256)) * 4096  # 1 MiB

    async def main():
        check_loop(loop_name)

        async def handle(stream):
            async with stream:
                digest, size = hashlib.sha256(), 0
                while size < len(payload):
                    data = await stream.receive()
                    digest.update(data)
                    size += len(data)
                await stream.send(digest.hexdigest().encode())

        async with anyio.create_task_group() as tg:
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            tg.start_soon(listener.serve, handle)

            async def client():
                async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                    await stream.send(payload)
                    reply = b""
                    while len(reply) < 64:
                        reply += await stream.receive()
                    return reply.decode()

            replies = []

            async def record():
                replies.append(await client())

            async with anyio.create_task_group() as clients:
                for _ in range(10):
                    clients.start_soon(record)
            assert replies == [hashlib.sha256(payload).hexdigest()] * 10
            tg.cancel_scope.cancel()
        await listener.aclose()
        return "ok"

    assert anyio_run(loop_name, main) == "ok"


def test_anyio_threads(loop_name):
    async def main():
        check_loop(loop_name)
        loop_thread = threading.get_ident()

        def in_thread(n):
            # back into the event loop from the worker thread
            from_loop = anyio.from_thread.run(anyio_side, n)
            return threading.get_ident(), from_loop

        async def anyio_side(n):
            await anyio.sleep(0)
            return threading.get_ident(), n * 2

        results = []

        async def one(n):
            results.append((n, await anyio.to_thread.run_sync(in_thread, n)))

        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(one, n)
        assert len(results) == 10
        for n, (worker_ident, (side_ident, doubled)) in results:
            assert worker_ident != loop_thread
            assert side_ident == loop_thread
            assert doubled == 2 * n

        # a cancellable wait on a thread
        with anyio.move_on_after(0.05) as scope:
            await anyio.to_thread.run_sync(threading.Event().wait, 0.5, abandon_on_cancel=True)
        assert scope.cancelled_caught
        return "ok"

    assert anyio_run(loop_name, main) == "ok"


def test_anyio_udp(loop_name):
    async def main():
        check_loop(loop_name)
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as server:
            port = server.extra(anyio.abc.SocketAttribute.local_port)
            async with await anyio.create_connected_udp_socket("127.0.0.1", port) as client:
                for i in range(100):
                    await client.send(f"datagram {i}".encode())
                    data, addr = await server.receive()
                    assert data == f"datagram {i}".encode()
                    await server.sendto(data.upper(), *addr)
                    assert await client.receive() == data.upper()
        return "ok"

    assert anyio_run(loop_name, main) == "ok"


def test_anyio_subprocess(loop_name):
    async def main():
        check_loop(loop_name)
        payload = b"x" * 300_000
        result = await anyio.run_process(
            [sys.executable, "-c",
             "import sys, hashlib; d = sys.stdin.buffer.read(); "
             "print(hashlib.sha256(d).hexdigest()); sys.exit(3)"],
            input=payload, check=False)
        assert result.returncode == 3
        assert result.stdout.decode().strip() == hashlib.sha256(payload).hexdigest()
        return "ok"

    assert anyio_run(loop_name, main) == "ok"
