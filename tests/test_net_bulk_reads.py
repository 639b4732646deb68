"""Large reads (issue 8): a transport whose reads are large reads straight into the
``bytes`` object it hands to ``data_received`` (sized by what the fd holds from 16 KiB,
by twice the last read from 4 KiB, joined with what follows when that fills it); small
reads go through a buffer. These tests cross
those switches both ways (bulk -> small -> EOF, bulk -> reset, medium -> bulk -> medium,
a read that fills its object) on TCP, Unix sockets and pipes, and check every byte, the
order, the chunk type and asyncio's 256 KiB bound per ``data_received``. Stock asyncio is
the reference."""

import asyncio
import hashlib
import os
import socket
import struct
import threading

import pytest

from conftest import requires_native_net, run_with_timeout
from netutil import close_all

pytestmark = requires_native_net

KiB = 1024
MiB = 1024 * KiB
MAX_READ = 256 * KiB  # asyncio's max_size per read (socket and pipe transports)


def payload(n, seed=0):
    """Bytes that vary with their position: a lost or reordered chunk changes them."""
    return b"".join(struct.pack("!Q", seed + i) for i in range(n // 8 + 1))[:n]


class Collector(asyncio.Protocol):
    """Records chunk sizes and types, the bytes, EOF and connection_lost. Starts paused
    (``start_paused``) so the first read finds a full socket buffer: a large read."""

    def __init__(self, loop, start_paused=False):
        self.loop = loop
        self.start_paused = start_paused
        self.sizes = []
        self.types = set()
        self.data = bytearray()
        self.events = []
        self.transport = None
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self.waiter = None
        self.want = 0

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")
        if self.start_paused:
            transport.pause_reading()
        self.made.set_result(transport)

    def data_received(self, data):
        if self.events[-1] != "data":
            self.events.append("data")
        self.types.add(type(data))
        self.sizes.append(len(data))
        self.data += data
        if self.waiter is not None and len(self.data) >= self.want and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait_bytes(self, n):
        if len(self.data) < n:
            self.want = n
            self.waiter = self.loop.create_future()
            await self.waiter

    def eof_received(self):
        self.events.append("eof")
        self.eof.set_result(None)

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


class BytesEcho(asyncio.Protocol):
    """Echoes what it reads (each chunk a ``bytes``), and EOF."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        assert type(data) is bytes
        self.transport.write(data)

    def eof_received(self):
        self.transport.write_eof()


def check_chunks(c, expected):
    assert c.types == {bytes}
    assert max(c.sizes) <= MAX_READ
    assert len(c.data) == len(expected)
    assert hashlib.sha256(c.data).digest() == hashlib.sha256(expected).digest()


async def connected_pair(loop, kind, tmp_path, factory):
    """(raw peer socket, transport, protocol): the transport on the loop, the peer a
    plain blocking socket."""
    if kind == "tcp":
        lsock = socket.create_server(("127.0.0.1", 0))
        peer = socket.create_connection(lsock.getsockname())
        conn, _ = lsock.accept()
        lsock.close()
    else:
        peer, conn = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.setblocking(False)
    tr, proto = await loop.connect_accepted_socket(factory, conn)
    await proto.made
    return peer, tr, proto


def sender(sock, chunks):
    """Sends each chunk in turn from a thread; ``None`` shuts the write side down."""

    def run():
        for chunk in chunks:
            if chunk is None:
                sock.shutdown(socket.SHUT_WR)
            else:
                sock.sendall(chunk)

    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_bulk_then_small_then_eof(loop, kind, tmp_path):
    """Large reads, then 1-byte and 100-byte writes, then EOF: every byte in order, each
    chunk a bytes of at most 256 KiB, eof_received once after the last byte."""
    big = payload(3 * MiB)
    small = [b"x", payload(100, seed=7), b"yz"]

    async def main():
        peer, tr, c = await connected_pair(loop, kind, tmp_path, lambda: Collector(loop, True))
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 * MiB)
        t = sender(peer, [big])
        await asyncio.sleep(0.05)  # let the socket buffers fill: the first read is large
        tr.resume_reading()
        await c.wait_bytes(len(big))
        await asyncio.to_thread(t.join)
        assert max(c.sizes) >= 64 * KiB  # the bulk path was taken
        for i, chunk in enumerate(small):
            peer.sendall(chunk)
            await c.wait_bytes(len(big) + sum(map(len, small[: i + 1])))
        peer.shutdown(socket.SHUT_WR)
        await c.eof
        check_chunks(c, big + b"".join(small))
        assert c.sizes[-3:] == [len(s) for s in small]
        # eof_received() returned None: the transport closes itself.
        assert await c.lost is None
        assert c.events == ["made", "data", "eof", "lost"]
        peer.close()

    run_with_timeout(loop, main(), 20)


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_eof_right_after_bulk(loop, kind, tmp_path):
    """The peer sends a large block and shuts down at once: the reads that drain it are
    large, and the EOF behind them is still seen."""
    big = payload(2 * MiB + 12345, seed=3)

    async def main():
        peer, tr, c = await connected_pair(loop, kind, tmp_path, lambda: Collector(loop))
        t = sender(peer, [big, None])
        await c.eof
        await asyncio.to_thread(t.join)
        check_chunks(c, big)
        assert await c.lost is None
        assert c.events == ["made", "data", "eof", "lost"]
        peer.close()

    run_with_timeout(loop, main(), 20)


# Message sizes that walk every read plan, one message at a time: copied (< 4 KiB),
# straight into an object of twice the last read (4-16 KiB), sized by FIONREAD (16 KiB+),
# and a message larger than the object the last read asks for (10 KiB -> 100 KiB: the
# read fills its 32 KiB object and is joined with the rest).
MEDIUM_SIZES = [5 * KiB, 10 * KiB, 10 * KiB, 30 * KiB, 2 * KiB, 10 * KiB, 100 * KiB,
                10 * KiB, 60 * KiB, 1, 4 * KiB, 64 * KiB, 63 * KiB, 300 * KiB, 7 * KiB]


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_medium_reads_walk_every_plan(loop, kind, tmp_path):
    """Messages of 1 byte to 300 KiB, each sent whole once the previous one has arrived
    (so each read's size follows the message's): every byte in order, then EOF."""
    msgs = [payload(n, seed=i * 77) for i, n in enumerate(MEDIUM_SIZES)]

    async def main():
        peer, tr, c = await connected_pair(loop, kind, tmp_path, lambda: Collector(loop))
        total = 0
        for m in msgs:
            await asyncio.to_thread(peer.sendall, m)
            total += len(m)
            await c.wait_bytes(total)
        peer.shutdown(socket.SHUT_WR)
        await c.eof
        check_chunks(c, b"".join(msgs))
        assert await c.lost is None
        assert c.events == ["made", "data", "eof", "lost"]
        peer.close()

    run_with_timeout(loop, main(), 20)


def test_medium_echo_checksums(loop):
    """An echo server on the loop, four clients each sending messages of the sizes above
    in turn (each after the last one came back): each gets exactly its own bytes back."""

    async def main():
        server = await loop.create_server(BytesEcho, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()

        def client(seed):
            digest = hashlib.sha256()
            with socket.create_connection(addr) as s:
                for i, n in enumerate(MEDIUM_SIZES * 3):
                    m = payload(n, seed=seed + i)
                    s.sendall(m)
                    got = bytearray()
                    while len(got) < n:
                        chunk = s.recv(1 * MiB)
                        assert chunk
                        got += chunk
                    assert bytes(got) == m
                    digest.update(got)
                s.shutdown(socket.SHUT_WR)
                assert s.recv(10) == b""
            return digest.hexdigest()

        want = []
        for k in range(4):
            d = hashlib.sha256()
            for i, n in enumerate(MEDIUM_SIZES * 3):
                d.update(payload(n, seed=k * 1000 + i))
            want.append(d.hexdigest())
        got = await asyncio.gather(*(asyncio.to_thread(client, k * 1000) for k in range(4)))
        assert got == want
        await close_all(server)

    run_with_timeout(loop, main(), 30)


def test_pipe_medium_reads(loop):
    """The medium plans on a read pipe: each message written once the last one arrived."""
    msgs = [payload(n, seed=i * 13) for i, n in enumerate(MEDIUM_SIZES)]

    async def main():
        rfd, wfd = os.pipe()
        c = Collector(loop)
        tr, _ = await loop.connect_read_pipe(lambda: c, os.fdopen(rfd, "rb", 0))
        w = os.fdopen(wfd, "wb", 0)
        total = 0
        for m in msgs:
            await asyncio.to_thread(w.write, m)
            total += len(m)
            await c.wait_bytes(total)
        w.close()
        await c.lost
        check_chunks(c, b"".join(msgs))
        assert c.events == ["made", "data", "eof", "lost"]

    run_with_timeout(loop, main(), 20)


def test_reset_after_bulk(loop):
    """A TCP peer resets right after a large block and a short one: the bytes before the
    reset arrive in order, then connection_lost(ConnectionResetError), no EOF."""
    big = payload(1 * MiB, seed=11)
    tail = b"last words"

    async def main():
        peer, tr, c = await connected_pair(loop, "tcp", None, lambda: Collector(loop))
        t = sender(peer, [big])
        await c.wait_bytes(len(big))
        await asyncio.to_thread(t.join)
        assert max(c.sizes) >= 64 * KiB
        peer.sendall(tail)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        exc = await c.lost
        assert type(exc) is ConnectionResetError
        assert "eof" not in c.events
        sent = big + tail
        assert len(c.data) >= len(big)
        assert bytes(c.data) == sent[: len(c.data)]
        assert c.types == {bytes}

    run_with_timeout(loop, main(), 20)


def test_pipe_bulk_then_small_then_eof(loop):
    """The same switch on a read pipe: large reads, small ones, then EOF."""
    big = payload(3 * MiB, seed=5)
    small = [b"a", payload(300, seed=9)]

    async def main():
        rfd, wfd = os.pipe()
        c = Collector(loop, start_paused=True)
        tr, _ = await loop.connect_read_pipe(lambda: c, os.fdopen(rfd, "rb", 0))
        w = os.fdopen(wfd, "wb", 0)
        t = threading.Thread(target=w.write, args=(big,))
        t.start()
        await asyncio.sleep(0.05)  # the pipe's buffer fills: the first read is large
        tr.resume_reading()
        await c.wait_bytes(len(big))
        await asyncio.to_thread(t.join)
        assert max(c.sizes) >= 64 * KiB
        for i, chunk in enumerate(small):
            w.write(chunk)
            await c.wait_bytes(len(big) + sum(map(len, small[: i + 1])))
        w.close()
        await c.lost
        check_chunks(c, big + b"".join(small))
        assert c.sizes[-2:] == [len(s) for s in small]
        assert c.events == ["made", "data", "eof", "lost"]

    run_with_timeout(loop, main(), 20)


def test_many_connections_alternate_bulk_and_small(loop):
    """Several TCP connections at once, each alternating a large and a small message,
    echoed back by a server on the loop: each client gets exactly its own bytes back."""

    messages = [payload(300 * KiB if i % 2 == 0 else 1000, seed=i * 1000) for i in range(8)]

    async def main():
        server = await loop.create_server(BytesEcho, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()

        def client(seed):
            out = bytearray()
            with socket.create_connection(addr) as s:
                for m in messages:
                    m = payload(len(m), seed=seed + len(m))
                    s.sendall(m)
                    got = bytearray()
                    while len(got) < len(m):
                        got += s.recv(1 * MiB)
                    out += got
                    assert bytes(got) == m
                s.shutdown(socket.SHUT_WR)
                assert s.recv(10) == b""
            return len(out)

        totals = await asyncio.gather(*(asyncio.to_thread(client, k * 7) for k in range(4)))
        assert totals == [sum(map(len, messages))] * 4
        await close_all(server)

    run_with_timeout(loop, main(), 30)


# Small reads of 512 bytes to 64 KiB are copied into a `bytes` object that ferroloop reuses
# for a later read once the protocol has dropped it (only then: nobody can see it change).
# Sizes that reuse one object for shorter reads, grow past it, shrink below half of it
# (none over 4 KiB: each message arrives whole, in one read, on TCP and on a pipe).
REUSE_SIZES = [1024, 700, 1000, 513, 1024, 2000, 1500, 1025, 600, 4000, 2500, 512, 511,
               4096, 3000, 1024, 1024]


class Keeper(asyncio.Protocol):
    """Keeps every other chunk it gets (the others it drops) and records, for each, its
    length, its hash() (which CPython caches in the object) and a digest of its bytes."""

    def __init__(self, loop):
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self.kept = []
        self.seen = []
        self.arrived = asyncio.Event()

    def connection_made(self, transport):
        self.made.set_result(transport)

    def data_received(self, data):
        assert type(data) is bytes
        self.seen.append((len(data), hash(data), hashlib.sha256(data).digest()))
        if len(self.seen) % 2:
            self.kept.append(data)
        self.arrived.set()

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def check_kept(k, msgs):
    """Each chunk was its message when it arrived, and the kept ones still are."""
    assert k.seen == [(len(m), hash(m), hashlib.sha256(m).digest()) for m in msgs]
    assert k.kept == msgs[::2]


async def send_each_after_the_last(k, send, msgs):
    for m in msgs:
        k.arrived.clear()
        await asyncio.to_thread(send, m)
        await k.arrived.wait()


# Reads of 4 KiB and more go straight into an object of 1.5 times the last read, which is
# reused as well: sizes that fill it, stay above half of it, fall below half of it.
DIRECT_REUSE_SIZES = [5000, 10240, 6000, 10240, 15000, 9000, 4096, 8000, 12000, 7000,
                      10240, 3000, 10240, 10240, 16000, 10240]


@pytest.mark.parametrize("sizes", ["small", "medium"])
@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_reused_read_objects_are_invisible(loop, kind, sizes, tmp_path):
    """One message per read, each different: every chunk has its message's length, hash
    and bytes when it arrives, and the chunks the protocol kept never change after."""
    sizes = REUSE_SIZES if sizes == "small" else DIRECT_REUSE_SIZES
    msgs = [payload(n, seed=i * 1000) for i, n in enumerate(sizes * 2)]

    async def main():
        peer, tr, k = await connected_pair(loop, kind, tmp_path, lambda: Keeper(loop))
        await send_each_after_the_last(k, peer.sendall, msgs)
        check_kept(k, msgs)
        peer.close()
        await k.lost
        check_kept(k, msgs)

    run_with_timeout(loop, main(), 20)


def test_pipe_reused_read_objects_are_invisible(loop):
    msgs = [payload(n, seed=i * 1000) for i, n in enumerate(REUSE_SIZES * 2)]

    async def main():
        rfd, wfd = os.pipe()
        k = Keeper(loop)
        await loop.connect_read_pipe(lambda: k, os.fdopen(rfd, "rb", 0))
        w = os.fdopen(wfd, "wb", 0)
        await send_each_after_the_last(k, w.write, msgs)
        w.close()
        await k.lost
        check_kept(k, msgs)

    run_with_timeout(loop, main(), 20)
