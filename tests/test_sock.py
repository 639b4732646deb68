"""The loop's sock_* coroutines on plain sockets (asyncio's selector_events semantics)."""

import asyncio
import hashlib
import socket

import pytest

from conftest import run_with_timeout



@pytest.fixture
def listener():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.setblocking(False)
    yield srv
    srv.close()


def test_sock_methods_are_coroutines(loop, sockpair):
    a, _ = sockpair
    coro = loop.sock_recv(a, 1)
    assert asyncio.iscoroutine(coro)
    coro.close()


def test_echo_over_socketpair(loop, sockpair):
    a, b = sockpair

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(b, 100))
        await asyncio.sleep(0)
        assert not task.done()
        await loop.sock_sendall(a, b"ping")
        data = await task
        await loop.sock_sendall(b, data.upper())
        return await loop.sock_recv(a, 100)

    assert run_with_timeout(loop, main()) == b"PING"


def test_create_task_takes_a_sock_call(loop, sockpair):
    a, b = sockpair

    async def main():
        task = asyncio.create_task(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        b.send(b"x")
        return await task

    assert run_with_timeout(loop, main()) == b"x"


def test_recv_at_eof_and_zero(loop, sockpair):
    a, b = sockpair

    async def main():
        assert await loop.sock_recv(a, 0) == b""
        b.close()
        return await loop.sock_recv(a, 10)

    assert run_with_timeout(loop, main()) == b""


def test_recv_negative_size(loop, sockpair):
    a, _ = sockpair

    async def main():
        await loop.sock_recv(a, -1)

    with pytest.raises(ValueError, match="negative buffersize in recv"):
        run_with_timeout(loop, main())


def test_recv_into(loop, sockpair):
    a, b = sockpair
    buf = bytearray(8)

    async def main():
        task = asyncio.ensure_future(loop.sock_recv_into(a, buf))
        await asyncio.sleep(0)
        b.send(b"hello")
        n = await task
        # Data already there: at once.
        b.send(b"xyz")
        await asyncio.sleep(0.01)
        m = await loop.sock_recv_into(a, memoryview(buf)[5:])
        return n, m

    assert run_with_timeout(loop, main()) == (5, 3)
    assert buf == b"helloxyz"


def test_recv_into_readonly_buffer(loop, sockpair):
    a, b = sockpair
    b.send(b"x")

    async def main():
        await loop.sock_recv_into(a, b"immutable")

    with pytest.raises(TypeError, match=r"recv_into\(\) argument 1 must be read-write bytes-like object, not bytes"):
        run_with_timeout(loop, main())


def test_sendall_str_is_type_error(loop, sockpair):
    a, _ = sockpair

    async def main():
        await loop.sock_sendall(a, "text")

    with pytest.raises(TypeError, match="bytes-like object is required"):
        run_with_timeout(loop, main())


def test_large_sendall_with_back_pressure(loop, sockpair):
    a, b = sockpair
    size = 16 * 1024 * 1024
    data = bytes(range(256)) * (size // 256)

    async def reader():
        h = hashlib.sha256()
        got = 0
        while got < size:
            chunk = await loop.sock_recv(b, 65536)
            assert chunk
            got += len(chunk)
            h.update(chunk)
            if got % (1 << 20) < 65536:
                await asyncio.sleep(0.001)  # a slow reader: the writer must wait
        return h.hexdigest()

    async def main():
        r = asyncio.ensure_future(reader())
        await loop.sock_sendall(a, data)
        return await r

    assert run_with_timeout(loop, main(), timeout=60) == hashlib.sha256(data).hexdigest()


def test_tcp_accept_connect_echo(loop, listener):
    addr = listener.getsockname()

    async def main():
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setblocking(False)
        accepting = asyncio.ensure_future(loop.sock_accept(listener))
        await loop.sock_connect(client, addr)
        conn, peer = await accepting
        try:
            assert peer == client.getsockname()
            assert conn.gettimeout() == 0
            assert conn.family == socket.AF_INET and conn.type == socket.SOCK_STREAM
            await loop.sock_sendall(client, b"hello")
            data = await loop.sock_recv(conn, 100)
            await loop.sock_sendall(conn, data[::-1])
            return await loop.sock_recv(client, 100)
        finally:
            conn.close()
            client.close()

    assert run_with_timeout(loop, main()) == b"olleh"


def test_connect_by_name(loop, listener):
    port = listener.getsockname()[1]

    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            client.setblocking(False)
            await loop.sock_connect(client, ("localhost", port))
            conn, _ = await loop.sock_accept(listener)
            conn.close()
            return client.getpeername()

    assert run_with_timeout(loop, main()) == ("127.0.0.1", port)


def test_connect_refused(loop):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    addr = probe.getsockname()
    probe.close()  # nothing listens there now

    async def main():
        with socket.socket() as client:
            client.setblocking(False)
            await loop.sock_connect(client, addr)

    with pytest.raises(ConnectionRefusedError) as info:
        run_with_timeout(loop, main())
    assert info.value.errno == 111


def test_connect_unix(loop, tmp_path):
    path = str(tmp_path / "sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.setblocking(False)

    async def main():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.setblocking(False)
            await loop.sock_connect(client, path)
            conn, peer = await loop.sock_accept(srv)
            with conn:
                await loop.sock_sendall(client, b"u")
                return peer, await loop.sock_recv(conn, 1)

    try:
        assert run_with_timeout(loop, main()) == ("", b"u")
    finally:
        srv.close()


def test_cancelled_recv_leaves_no_registration(loop, sockpair):
    a, b = sockpair

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)  # the future's done-callback runs
        # Nothing left: the reader is gone, and data sent now stays unread.
        assert loop.remove_reader(a) is False
        b.send(b"late")
        await asyncio.sleep(0.01)
        return await loop.sock_recv(a, 10)

    assert run_with_timeout(loop, main()) == b"late"


def test_cancelled_sendall_leaves_no_registration(loop, sockpair):
    a, b = sockpair

    async def main():
        task = asyncio.ensure_future(loop.sock_sendall(a, b"x" * (8 << 20)))
        await asyncio.sleep(0.01)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        return loop.remove_writer(a)

    assert run_with_timeout(loop, main()) is False


def test_recv_and_sendall_wait_on_one_socket(loop, sockpair):
    a, b = sockpair

    async def main():
        recv = asyncio.ensure_future(loop.sock_recv(a, 10))
        send = asyncio.ensure_future(loop.sock_sendall(a, b"y" * (4 << 20)))
        await asyncio.sleep(0.01)
        assert not recv.done() and not send.done()
        b.send(b"x")
        got = 0
        while got < (4 << 20):
            got += len(await loop.sock_recv(b, 1 << 16))
        await send
        return await recv

    assert run_with_timeout(loop, main()) == b"x"


def test_second_recv_replaces_the_first(loop, sockpair):
    # asyncio: the second sock_recv's reader replaces the first one's, which stays pending.
    a, b = sockpair

    async def main():
        first = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        b.send(b"z")
        data = await second
        await asyncio.sleep(0.01)
        assert not first.done()
        first.cancel()
        return data

    assert run_with_timeout(loop, main()) == b"z"


def test_blocking_socket_in_debug_mode(loop, sockpair):
    a, _ = sockpair
    a.setblocking(True)
    loop.set_debug(True)

    async def main(call):
        await call

    for call in (
        loop.sock_recv(a, 1),
        loop.sock_recv_into(a, bytearray(1)),
        loop.sock_sendall(a, b"x"),
        loop.sock_accept(a),
        loop.sock_connect(a, ("127.0.0.1", 1)),
    ):
        with pytest.raises(ValueError, match="the socket must be non-blocking"):
            loop.run_until_complete(main(call))


def test_closed_loop(loop, sockpair):
    a, _ = sockpair
    loop.close()

    async def main():
        # Nothing to read: the wait needs the (closed) loop.
        await loop.sock_recv(a, 1)

    with pytest.raises(RuntimeError, match="Event loop is closed"):
        asyncio.run(main())


def test_recv_sizes_around_the_read_buffer(loop, sockpair):
    """``sock_recv(n)`` returns at most ``n`` bytes, in order, whether ``n`` is below, at
    or above the 256 KiB buffer ferroloop receives small reads into."""
    a, b = sockpair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    data = hashlib.sha256(b"seed").digest() * (3 * 65536 // 32)   # 6 MiB / 32 * 32
    sizes = (1, 1000, 262144, 262145, 1 << 20, 3 << 20)

    writer_done = []

    async def both():
        got = asyncio.ensure_future(main_reader())
        await loop.sock_sendall(a, data)
        writer_done.append(True)
        a.shutdown(socket.SHUT_WR)
        return await got

    async def main_reader():
        chunks = []
        for n in sizes * 200:
            chunk = await loop.sock_recv(b, n)
            if not chunk:
                break
            assert len(chunk) <= n
            chunks.append(chunk)
        return b"".join(chunks)

    assert run_with_timeout(loop, both(), timeout=60) == data
    assert writer_done == [True]


def test_results_at_once_and_after_waiting(loop, sockpair):
    """Each sock_* coroutine gives the same kind of result whether its syscall completed at
    once or after waiting for readiness: bytes, a count, ``None`` for sock_sendall."""
    a, b = sockpair

    async def main():
        results = []
        results.append(await loop.sock_sendall(a, b"abc"))            # at once
        results.append(await loop.sock_recv(b, 10))                   # at once
        waiting = asyncio.ensure_future(loop.sock_recv(b, 10))
        await asyncio.sleep(0)
        assert not waiting.done()
        a.send(b"def")
        results.append(await waiting)                                 # after waiting
        buf = bytearray(8)
        a.send(b"gh")
        results.append(await loop.sock_recv_into(b, buf))             # at once
        waiting = asyncio.ensure_future(loop.sock_recv_into(b, buf))
        await asyncio.sleep(0)
        a.send(b"ijk")
        results.append(await waiting)                                 # after waiting
        results.append(bytes(buf[:3]))
        # A send that must wait for the peer to read.
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = b"x" * (4 << 20)
        sending = asyncio.ensure_future(loop.sock_sendall(a, big))
        await asyncio.sleep(0)
        assert not sending.done()
        got = 0
        while got < len(big):
            got += len(await loop.sock_recv(b, 1 << 20))
        results.append(await sending)
        return results

    assert run_with_timeout(loop, main(), timeout=30) == [
        None, b"abc", b"def", 2, 3, b"ijk", None]


def test_socket_subclass_fileno_is_called(loop, sockpair):
    """A socket of another class than socket.socket gets its fd from ``fileno()`` (the
    fd is read from the object only for exactly socket.socket)."""
    a, b = sockpair
    calls = []

    class Sock(socket.socket):
        def fileno(self):
            calls.append(1)
            return super().fileno()

    c = Sock(fileno=b.detach())
    try:
        async def main():
            a.send(b"x")
            return await loop.sock_recv(c, 1)

        assert run_with_timeout(loop, main()) == b"x"
    finally:
        c.close()
    if type(loop).__module__.startswith("ferroloop"):
        assert calls
    # asyncio calls c.recv() directly.


def test_closed_socket(loop, sockpair):
    a, _ = sockpair
    a.close()

    async def main():
        await loop.sock_recv(a, 1)

    with pytest.raises(OSError) as info:
        run_with_timeout(loop, main())
    assert info.value.errno == 9
    assert str(info.value) == "[Errno 9] Bad file descriptor"


def test_connection_reset(loop, listener):
    async def main():
        with socket.socket() as client:
            client.setblocking(False)
            await loop.sock_connect(client, listener.getsockname())
            conn, _ = await loop.sock_accept(listener)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()  # RST
            await asyncio.sleep(0.01)
            await loop.sock_recv(client, 10)

    with pytest.raises(ConnectionResetError):
        run_with_timeout(loop, main())


@pytest.fixture
def udp_pair():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_datagrams(loop, udp_pair):
    a, b = udp_pair

    async def main():
        waiting = asyncio.ensure_future(loop.sock_recvfrom(b, 100))
        await asyncio.sleep(0)
        assert not waiting.done()
        assert await loop.sock_sendto(a, b"one", b.getsockname()) == 3
        first = await waiting
        buf = bytearray(10)
        into = asyncio.ensure_future(loop.sock_recvfrom_into(b, buf, 2))
        await asyncio.sleep(0)
        await loop.sock_sendto(a, b"two", b.getsockname())
        second = await into
        return first, second, bytes(buf)

    first, second, buf = run_with_timeout(loop, main())
    assert first == (b"one", a.getsockname())
    assert second == (2, a.getsockname())
    assert buf == b"tw" + bytes(8)


def test_cancelled_recvfrom_leaves_no_registration(loop, udp_pair):
    _, b = udp_pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recvfrom(b, 10))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        return loop.remove_reader(b)

    assert run_with_timeout(loop, main()) is False


def test_debug_mode_echo(loop, sockpair):
    a, b = sockpair
    loop.set_debug(True)

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(b, 10))
        await asyncio.sleep(0)
        await loop.sock_sendall(a, b"dbg")
        return await task

    assert run_with_timeout(loop, main()) == b"dbg"


def test_close_with_a_call_waiting(loop, sockpair):
    a, b = sockpair

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        return task

    task = loop.run_until_complete(main())
    assert not task.done()
    task.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    assert task.cancelled()


def test_recv_size_too_large_for_memory(loop, sockpair):
    a, b = sockpair
    b.send(b"x")

    async def main():
        await loop.sock_recv(a, 2**62)

    with pytest.raises(MemoryError):
        run_with_timeout(loop, main())


def test_fd_count_flat_over_connect_accept_cycles(loop, listener):
    import os

    def fds():
        return len(os.listdir("/proc/self/fd"))

    async def cycle():
        with socket.socket() as client:
            client.setblocking(False)
            accepting = asyncio.ensure_future(loop.sock_accept(listener))
            await loop.sock_connect(client, listener.getsockname())
            conn, _ = await accepting
            with conn:
                await loop.sock_sendall(client, b"p")
                assert await loop.sock_recv(conn, 1) == b"p"

    async def main():
        for _ in range(50):
            await cycle()
        before = fds()
        for _ in range(500):
            await cycle()
        return before, fds()

    before, after = run_with_timeout(loop, main(), timeout=60)
    assert after <= before


def test_sock_connect_resolves_through_loop_getaddrinfo(loop, listener):
    # asyncio's sock_connect resolves a host name with loop.getaddrinfo (_ensure_resolved):
    # a patched one is called, with the socket's family, type and proto.
    port = listener.getsockname()[1]
    calls = []

    async def fake_getaddrinfo(host, port, *, family=0, type=0, proto=0, flags=0):
        calls.append((host, port, family, type, proto, flags))
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    loop.getaddrinfo = fake_getaddrinfo

    async def main():
        with socket.socket() as s:
            s.setblocking(False)
            await loop.sock_connect(s, ("no-such-host.invalid", port))
            return s.getpeername()

    assert run_with_timeout(loop, main()) == ("127.0.0.1", port)
    assert calls == [
        ("no-such-host.invalid", port, socket.AF_INET, socket.SOCK_STREAM, 0, 0)
    ]


def test_sock_connect_to_a_host_name(loop, listener):
    port = listener.getsockname()[1]

    async def main():
        with socket.socket() as s:
            s.setblocking(False)
            await loop.sock_connect(s, ("localhost", port))
            return s.getpeername()

    assert run_with_timeout(loop, main()) == ("127.0.0.1", port)


def test_sock_connect_address_is_unpacked_as_asyncio_does(loop, listener):
    # asyncio's _ensure_resolved does `host, port = address[:2]`: a list works as a
    # tuple does, and a sequence of fewer than two items is unpacking's ValueError.
    port = listener.getsockname()[1]

    async def connect(address):
        with socket.socket() as s:
            s.setblocking(False)
            await loop.sock_connect(s, address)
            return s.getpeername()

    assert run_with_timeout(loop, connect(["127.0.0.1", port])) == ("127.0.0.1", port)
    for address, got in [((), 0), ("x", 1), (["127.0.0.1"], 1)]:
        with pytest.raises(ValueError, match=rf"^not enough values to unpack \(expected 2, got {got}\)$"):
            run_with_timeout(loop, connect(address))
    with pytest.raises(TypeError, match="not subscriptable"):
        run_with_timeout(loop, connect(5))
