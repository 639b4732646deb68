"""Bounded soak: the loop's steady state must not grow memory.

Each round schedules 100,000 chained callbacks, 50,000 timers (half of them cancelled),
10,000 tasks and a few executor round trips on a fresh loop, then closes it. The resident
set size settles after a few rounds (the allocators keep their arenas); after that, six more
rounds may not grow it by more than 6 MB (stock asyncio on 3.13 drifts by up to ~3.5 MB).
A leak of one small object per operation (~160,000 per round) would add well over 10 MB.
"""

import asyncio
import gc
import os
import shutil
import signal
import socket
import sys

import pytest

ROUNDS_WARMUP = 6
ROUNDS_MEASURED = 6
MAX_GROWTH_MB = 6


def _rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _one_round(loop_factory):
    loop = loop_factory()
    try:
        count = 0

        def chain():
            nonlocal count
            count += 1
            if count < 100_000:
                loop.call_soon(chain)
            else:
                loop.stop()

        loop.call_soon(chain)
        loop.run_forever()
        assert count == 100_000

        fired = 0

        def fire():
            nonlocal fired
            fired += 1

        handles = [loop.call_later(0.001 * (i % 20), fire) for i in range(50_000)]
        for h in handles[::2]:
            h.cancel()
        del handles
        loop.run_until_complete(asyncio.sleep(0.03))
        assert fired == 25_000

        async def work(i):
            await asyncio.sleep(0)
            return i

        async def main():
            results = await asyncio.gather(*(work(i) for i in range(10_000)))
            assert sum(results) == sum(range(10_000))
            for _ in range(20):
                assert await loop.run_in_executor(None, pow, 2, 10) == 1024

        loop.run_until_complete(main())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def test_soak_memory_is_stable(loop_factory):
    for _ in range(ROUNDS_WARMUP):
        _one_round(loop_factory)
    gc.collect()
    before = _rss_mb()
    for _ in range(ROUNDS_MEASURED):
        _one_round(loop_factory)
    gc.collect()
    growth = _rss_mb() - before
    assert growth < MAX_GROWTH_MB, f"RSS grew by {growth:.1f} MB over {ROUNDS_MEASURED} rounds"


def test_soak_connection_churn_keeps_memory_and_objects_flat(loop_factory):
    """A server under connect/disconnect churn (stream client, protocol server) keeps a
    flat fd count, object count and resident set: nothing per connection outlives it."""

    class Once(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)
            self.transport.close()

    def fds():
        return len(os.listdir("/proc/self/fd"))

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def one():
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"x")
            assert await reader.read() == b"x"
            writer.close()
            await writer.wait_closed()

        samples = []
        for _ in range(4):
            for _ in range(500):
                await one()
            gc.collect()
            samples.append((fds(), len(gc.get_objects()), _rss_mb()))
        server.close()
        await server.wait_closed()
        return samples

    loop = loop_factory()
    try:
        samples = loop.run_until_complete(main())
    finally:
        loop.close()
    # The first round warms caches and allocators; the rounds after it must not grow.
    (fd1, obj1, rss1), last = samples[1], samples[-1]
    assert last[0] == fd1, samples
    assert last[1] - obj1 < 200, samples
    assert last[2] - rss1 < 2, samples


def _type_cache_pinned_blocks():
    """Memory blocks only CPython's type attribute cache keeps alive: the blocks that
    clearing it frees. The cache holds a reference to the name of each lookup it caches
    (up to 4096 entries) and, from 3.12, picks the entry by the name's address, so every
    lookup by a new (not interned) str of the same name can take an entry of its own."""
    gc.collect()
    before = sys.getallocatedblocks()
    sys._clear_type_cache()
    return before - sys.getallocatedblocks()


def test_loop_lifecycle_pins_no_attribute_names(loop_factory):
    """Running and closing loops looks attributes up by interned names. A name made anew
    per lookup (PyO3's getattr/call_method with a &str) stays referenced by the type
    cache: on 3.13 each round of the soak test left ~35 such strings behind, scattered
    over fresh allocator pools, and the arenas they pinned grew the resident set by about
    1 MB per round. Counted in allocated blocks, which is deterministic (RSS is not)."""

    async def main(loop):
        loop.call_later(0, int)
        # Tasks awaited one by one, not through gather(): asyncio's C task looks up
        # "result" by a new str on futures that are not its own (gather's), ~0.5 per round.
        for task in [loop.create_task(asyncio.sleep(0)) for _ in range(3)]:
            await task
        assert await loop.run_in_executor(None, pow, 2, 10) == 1024

    def one_round():
        loop = loop_factory()
        try:
            loop.run_until_complete(main(loop))
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    one_round()
    _type_cache_pinned_blocks()
    for _ in range(200):
        one_round()
    pinned = _type_cache_pinned_blocks()
    # Before its names were interned, ferroloop pinned 1,000-1,800 blocks here; asyncio none.
    assert pinned < 50, f"the type cache keeps {pinned} blocks alive after 200 loops"


def test_network_operations_pin_no_attribute_names(loop_factory):
    """Connections, sock_* calls, DNS lookups, signal handlers and subprocesses look
    attributes up by interned names too (fileno, family, getpeername, set_wakeup_fd,
    set_result, ...): a name made anew per operation stays referenced by the type cache
    (see test_loop_lifecycle_pins_no_attribute_names)."""

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    true = shutil.which("true")

    async def one_round(loop, port):
        # A transport: create_connection (through open_connection), write, read, close.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        writer.close()
        await writer.wait_closed()

        # sock_connect to the server, then sock_sendall/sock_recv over it and a socketpair.
        with socket.socket() as s:
            s.setblocking(False)
            await loop.sock_connect(s, ("127.0.0.1", port))
            await loop.sock_sendall(s, b"pong")
            assert await loop.sock_recv(s, 4) == b"pong"
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.setblocking(False)
            await loop.sock_sendall(a, b"x")
            assert await loop.sock_recv(b, 1) == b"x"

        infos = await loop.getaddrinfo("127.0.0.1", port, type=socket.SOCK_STREAM)
        assert infos[0][4] == ("127.0.0.1", port)

        got = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, got.set_result, None)
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            await got
        finally:
            assert loop.remove_signal_handler(signal.SIGUSR1)

        if true is not None:
            # Not communicate(): it gathers, and asyncio's C task looks up "result" on a
            # gather's future by a new str (see test_loop_lifecycle_pins_no_attribute_names).
            proc = await asyncio.create_subprocess_exec(true, stdout=asyncio.subprocess.PIPE)
            assert await proc.stdout.read() == b""
            assert await proc.wait() == 0

    async def main(loop, rounds):
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            for _ in range(rounds):
                await one_round(loop, port)
        finally:
            server.close()
            await server.wait_closed()

    loop = loop_factory()
    try:
        loop.run_until_complete(main(loop, 1))
        _type_cache_pinned_blocks()
        loop.run_until_complete(main(loop, 100))
        pinned = _type_cache_pinned_blocks()
    finally:
        loop.close()
    # Before these names were interned, ferroloop pinned 750-810 blocks here on 3.13;
    # asyncio none.
    assert pinned < 50, f"the type cache keeps {pinned} blocks alive after 100 rounds"
