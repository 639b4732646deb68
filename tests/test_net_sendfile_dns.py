"""sock_sendfile, loop.sendfile and the resolver methods (issue 8), with the stdlib
(socket.getaddrinfo/getnameinfo, stock asyncio) as the oracle."""

import asyncio
import hashlib
import io
import os
import socket

import pytest

from conftest import requires_native_net, run_with_timeout
from netutil import Recorder, background, close_all, tcp_pair

pytestmark = requires_native_net

MiB = 1024 * 1024


@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(3 * MiB + 123)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    with open(path, "rb") as f:
        yield f, data


async def recv_exactly(loop, sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, 256 * 1024)
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


# ---------------------------------------------------------------- sock_sendfile


@pytest.mark.parametrize("fallback", [True, False])
def test_sock_sendfile_whole_file(loop, sockpair, data_file, fallback):
    a, b = sockpair
    f, data = data_file

    async def main():
        async with background(recv_exactly(loop, b, len(data))) as receiving:
            sent = await loop.sock_sendfile(a, f, fallback=fallback)
            assert sent == len(data)
            assert f.tell() == len(data)
            got = await receiving
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()

    run_with_timeout(loop, main(), 5)


def test_sock_sendfile_offset_count(loop, sockpair, data_file):
    a, b = sockpair
    f, data = data_file

    async def main():
        async with background(recv_exactly(loop, b, MiB)) as receiving:
            sent = await loop.sock_sendfile(a, f, offset=1000, count=MiB)
            assert sent == MiB
            assert f.tell() == 1000 + MiB
            assert await receiving == data[1000:1000 + MiB]
        # count past the end of the file sends what there is.
        sent = await loop.sock_sendfile(a, f, offset=len(data) - 10, count=MiB)
        assert sent == 10
        assert f.tell() == len(data)
        assert await recv_exactly(loop, b, 10) == data[-10:]

    run_with_timeout(loop, main(), 5)


def test_sock_sendfile_over_tcp(loop, data_file):
    f, data = data_file

    async def main():
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen()
            lsock.setblocking(False)
            client = socket.socket()
            client.setblocking(False)
            async with background(loop.sock_accept(lsock)) as accepting:
                await loop.sock_connect(client, lsock.getsockname())
                conn, _ = await accepting
        with client, conn:
            async with background(recv_exactly(loop, conn, len(data))) as receiving:
                assert await loop.sock_sendfile(client, f) == len(data)
                assert await receiving == data

    run_with_timeout(loop, main(), 5)


def test_sock_sendfile_not_a_regular_file(loop, sockpair):
    a, b = sockpair

    async def main():
        with pytest.raises(asyncio.SendfileNotAvailableError) as info:
            await loop.sock_sendfile(a, io.BytesIO(b"abc"), fallback=False)
        assert str(info.value) == "not a regular file"
        # With the fallback, any binary file object works (read + sock_sendall).
        assert await loop.sock_sendfile(a, io.BytesIO(b"abc")) == 3
        assert await recv_exactly(loop, b, 3) == b"abc"

    run_with_timeout(loop, main(), 5)


def test_sock_sendfile_argument_errors(loop, sockpair, data_file, tmp_path):
    a, _ = sockpair
    f, _ = data_file

    async def main():
        cases = [
            ({"offset": -1}, ValueError, "offset must be a non-negative integer (got -1)"),
            ({"count": 0}, ValueError, "count must be a positive integer (got 0)"),
            ({"count": -1}, ValueError, "count must be a positive integer (got -1)"),
            ({"offset": "x"}, TypeError, "offset must be a non-negative integer (got 'x')"),
            ({"count": 1.5}, TypeError, "count must be a positive integer (got 1.5)"),
        ]
        for kwargs, exc_type, message in cases:
            with pytest.raises(exc_type) as info:
                await loop.sock_sendfile(a, f, **kwargs)
            assert type(info.value) is exc_type
            assert str(info.value) == message
        with open(tmp_path / "payload.bin", "r") as text:
            with pytest.raises(ValueError) as info:
                await loop.sock_sendfile(a, text)
            assert str(info.value) == "file should be opened in binary mode"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.setblocking(False)
            with pytest.raises(ValueError) as info:
                await loop.sock_sendfile(udp, f)
            assert str(info.value) == "only SOCK_STREAM type sockets are supported"

    run_with_timeout(loop, main(), 5)


# ---------------------------------------------------------------- loop.sendfile


@pytest.mark.parametrize("fallback", [True, False])
def test_loop_sendfile(loop, data_file, fallback):
    f, data = data_file

    async def main():
        server, tr, cp, sp = await tcp_pair(loop)
        tr.write(b"header:")
        sent = await loop.sendfile(tr, f, offset=5, count=2 * MiB, fallback=fallback)
        assert sent == 2 * MiB
        assert f.tell() == 5 + 2 * MiB
        # The transport is usable again afterwards, in order.
        tr.write(b":trailer")
        expected = b"header:" + data[5:5 + 2 * MiB] + b":trailer"
        got = await sp.wait_bytes(len(expected))
        assert hashlib.sha256(got).digest() == hashlib.sha256(expected).digest()
        assert sp.events.count("made") == 1 and "lost" not in sp.events
        await close_all(server, tr)

    run_with_timeout(loop, main(), 5)


def test_loop_sendfile_fallback_for_file_objects(loop):
    async def main():
        server, tr, cp, sp = await tcp_pair(loop)
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sendfile(tr, io.BytesIO(b"in memory"), fallback=False)
        sent = await loop.sendfile(tr, io.BytesIO(b"in memory"))
        assert sent == 9
        assert await sp.wait_bytes(9) == b"in memory"
        await close_all(server, tr)

    run_with_timeout(loop, main(), 5)


def test_loop_sendfile_blocks_writes_and_honours_back_pressure(loop, data_file):
    f, data = data_file

    async def main():
        server, tr, cp, sp = await tcp_pair(loop)
        sp.transport.pause_reading()
        async with background(loop.sendfile(tr, f, fallback=False)) as sending:
            await asyncio.sleep(0.02)
            assert not sending.done()  # the peer does not read: sendfile waits
            with pytest.raises(RuntimeError) as info:
                tr.write(b"x")
            assert str(info.value) == "unable to write; sendfile is in progress"
            sp.transport.resume_reading()
            assert await sending == len(data)
        got = await sp.wait_bytes(len(data))
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        await close_all(server, tr)

    run_with_timeout(loop, main(), 5)


def test_loop_sendfile_closing_transport(loop, data_file):
    f, _ = data_file

    async def main():
        server, tr, cp, sp = await tcp_pair(loop)
        tr.close()
        with pytest.raises(RuntimeError) as info:
            await loop.sendfile(tr, f)
        assert str(info.value) == "Transport is closing"
        await close_all(server)

    run_with_timeout(loop, main(), 5)


# ---------------------------------------------------------------- DNS


GAI_CASES = [
    ("localhost", 80),
    ("localhost", "http"),
    ("127.0.0.1", 0),
    ("127.0.0.1", None),
    ("::1", 443),
    (None, 8080),
    (b"localhost", b"80"),
    ("127.0.0.1", 70000),  # socket.getaddrinfo wraps the port; the loop returns the same
]


@pytest.mark.parametrize("host,port", GAI_CASES)
def test_getaddrinfo_equals_socket_getaddrinfo(loop, host, port):
    expected = socket.getaddrinfo(host, port)

    async def main():
        coro = loop.getaddrinfo(host, port)
        assert asyncio.iscoroutine(coro)
        return await coro

    assert run_with_timeout(loop, main(), 5) == expected


@pytest.mark.parametrize("kwargs", [
    {"family": socket.AF_INET},
    {"type": socket.SOCK_STREAM},
    {"proto": socket.IPPROTO_UDP},
    {"flags": socket.AI_PASSIVE},
    {"family": socket.AF_UNSPEC, "type": socket.SOCK_DGRAM, "flags": socket.AI_CANONNAME},
])
def test_getaddrinfo_arguments(loop, kwargs):
    expected = socket.getaddrinfo("localhost", 80, **kwargs)
    assert run_with_timeout(loop, loop.getaddrinfo("localhost", 80, **kwargs), 5) == expected


def test_getaddrinfo_numerichost(loop):
    kwargs = {"family": socket.AF_INET, "type": socket.SOCK_STREAM,
              "flags": socket.AI_NUMERICHOST}
    expected = socket.getaddrinfo("127.0.0.1", 80, **kwargs)
    with pytest.raises(socket.gaierror) as ref:
        socket.getaddrinfo("localhost", 80, **kwargs)

    async def main():
        assert await loop.getaddrinfo("127.0.0.1", 80, **kwargs) == expected
        with pytest.raises(socket.gaierror) as info:
            await loop.getaddrinfo("localhost", 80, **kwargs)
        assert info.value.args == ref.value.args

    run_with_timeout(loop, main(), 5)


def test_getaddrinfo_errors_match_socket(loop):
    async def main():
        with pytest.raises(socket.gaierror) as info:
            await loop.getaddrinfo("no-such-host.invalid", 80)
        with pytest.raises(socket.gaierror) as ref:
            socket.getaddrinfo("no-such-host.invalid", 80)
        assert info.value.args == ref.value.args
        with pytest.raises(TypeError) as info:
            await loop.getaddrinfo(123, 80)
        assert str(info.value) == "getaddrinfo() argument 1 must be string or None"
        with pytest.raises(OSError) as info:
            await loop.getaddrinfo("127.0.0.1", 1.5)
        assert str(info.value) == "Int or String expected"

    run_with_timeout(loop, main(), 5)


@pytest.mark.parametrize("sockaddr,flags", [
    (("127.0.0.1", 80), 0),
    (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("::1", 443, 0, 0), 0),
    (("127.0.0.1", 22), socket.NI_NAMEREQD),
])
def test_getnameinfo_equals_socket_getnameinfo(loop, sockaddr, flags):
    expected = socket.getnameinfo(sockaddr, flags)
    assert run_with_timeout(loop, loop.getnameinfo(sockaddr, flags), 5) == expected


def test_getnameinfo_errors(loop):
    async def main():
        with pytest.raises(TypeError) as info:
            await loop.getnameinfo("x")
        assert str(info.value) == "getnameinfo() argument 1 must be a tuple"

    run_with_timeout(loop, main(), 5)


def test_patched_getaddrinfo_is_honoured(loop, monkeypatch):
    calls = []
    real = socket.getaddrinfo

    def fake(host, port, family=0, type=0, proto=0, flags=0):
        calls.append((host, port))
        if host == "ferroloop.test":
            host = "127.0.0.1"
        return real(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", fake)

    async def main():
        infos = await loop.getaddrinfo("ferroloop.test", 80, type=socket.SOCK_STREAM)
        assert [i[4] for i in infos] == [("127.0.0.1", 80)]
        assert ("ferroloop.test", 80) in calls
        # create_connection resolves through it too.
        server = await loop.create_server(lambda: Recorder(loop, echo=True), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        calls.clear()
        tr, proto = await loop.create_connection(lambda: Recorder(loop), "ferroloop.test", port)
        assert ("ferroloop.test", port) in calls
        tr.write(b"resolved")
        assert await proto.wait_bytes(8) == b"resolved"
        await close_all(server, tr)

    run_with_timeout(loop, main(), 5)


def test_patched_getnameinfo_is_honoured(loop, monkeypatch):
    monkeypatch.setattr(socket, "getnameinfo", lambda sockaddr, flags: ("patched", "yes"))

    async def main():
        return await loop.getnameinfo(("127.0.0.1", 80))

    assert run_with_timeout(loop, main(), 5) == ("patched", "yes")
