"""create_connection / create_server / the unix variants / connect_accepted_socket and the
Server API (issue 8), checked against stock asyncio's observable behaviour."""

import asyncio
import os
import socket
import stat
import sys

import pytest

from conftest import requires_native_net, run_with_timeout
from netutil import (
    HAS_IPV6, Recorder, abstract_name, close_all, needs_ipv6, tcp_pair, unix_pair,
)

pytestmark = requires_native_net

PY313 = sys.version_info >= (3, 13)


def echo_factory(loop):
    return lambda: Recorder(loop, echo=True)


async def echo_roundtrip(loop, connect, payload=b"hello ferroloop"):
    tr, proto = await connect(lambda: Recorder(loop))
    await proto.made
    tr.write(payload)
    got = await proto.wait_bytes(len(payload))
    tr.close()
    await proto.lost
    return tr, proto, got


# ---------------------------------------------------------------- TCP


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)])
def test_tcp_echo(loop, host):
    async def main():
        server = await loop.create_server(echo_factory(loop), host, 0)
        sockname = server.sockets[0].getsockname()
        assert sockname[0] == host and sockname[1] != 0
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        assert server.sockets[0].family == family
        tr, proto, got = await echo_roundtrip(
            loop, lambda f: loop.create_connection(f, host, sockname[1]))
        assert got == b"hello ferroloop"
        assert proto.events[0] == "made" and proto.events[-1] == "lost"
        assert proto.events.count("lost") == 1
        assert proto.chunk_types == {bytes}
        assert tr.is_closing()
        server.close()
        await server.wait_closed()

    run_with_timeout(loop, main(), 5)


def test_transport_and_server_are_asyncio_types(loop, tmp_path):
    """asyncio's transports subclass asyncio.Transport and its servers
    asyncio.AbstractServer (kept in one test: if ferroloop's native classes end up not
    subclassing them, this is the one test to mark)."""

    async def main():
        server, tr, cp, sp = await tcp_pair(loop)
        assert isinstance(server, asyncio.AbstractServer)
        for t in (tr, sp.transport):
            assert isinstance(t, asyncio.Transport)
            assert isinstance(t, asyncio.ReadTransport)
            assert isinstance(t, asyncio.WriteTransport)
        await close_all(server, tr)
        userver, utr, _, _ = await unix_pair(loop, str(tmp_path / "t.sock"))
        assert isinstance(userver, asyncio.AbstractServer)
        assert isinstance(utr, asyncio.Transport)
        await close_all(userver, utr)

    run_with_timeout(loop, main(), 5)


def test_create_connection_returns_factory_protocol(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        made = []

        class P(asyncio.Protocol):
            def connection_made(self, transport):
                made.append(transport)

        tr, proto = await loop.create_connection(P, "127.0.0.1", port)
        assert type(proto) is P
        # connection_made has run by the time create_connection returns.
        assert made == [tr]
        assert tr.get_protocol() is proto
        tr.close()
        await close_all(server)

    run_with_timeout(loop, main(), 5)


def test_connect_by_name_localhost(loop):
    async def main():
        server = await loop.create_server(echo_factory(loop), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # "localhost" may resolve to ::1 first: create_connection tries every address.
        _, _, got = await echo_roundtrip(
            loop, lambda f: loop.create_connection(f, "localhost", port))
        assert got == b"hello ferroloop"
        await close_all(server)

    run_with_timeout(loop, main(), 5)


def test_connect_refused(loop):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connect is refused

        async def main():
            with pytest.raises(ConnectionRefusedError) as info:
                await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            assert info.value.errno == 111
            assert str(info.value) == f"[Errno 111] Connect call failed ('127.0.0.1', {port})"

        run_with_timeout(loop, main(), 5)


def test_tcp_nodelay_and_reuseaddr(loop):
    async def main():
        server, tr, cp, sp = await tcp_pair(loop)
        for sock in (tr.get_extra_info("socket"), sp.transport.get_extra_info("socket")):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        # reuse_address defaults to True on POSIX.
        lsock = server.sockets[0]
        assert lsock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
        await close_all(server, tr)

    run_with_timeout(loop, main(), 5)


def test_create_server_and_connection_with_sock(loop):
    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        server = await loop.create_server(echo_factory(loop), sock=lsock)
        assert server.sockets[0].fileno() == lsock.fileno()
        # asyncio makes the given socket non-blocking.
        assert lsock.getblocking() is False
        addr = lsock.getsockname()

        csock = socket.socket()
        csock.connect(addr)  # already connected, blocking
        tr, proto = await loop.create_connection(lambda: Recorder(loop), sock=csock)
        assert csock.getblocking() is False
        assert tr.get_extra_info("socket").fileno() == csock.fileno()
        assert tr.get_extra_info("peername") == addr
        tr.write(b"via sock=")
        assert await proto.wait_bytes(9) == b"via sock="
        tr.close()
        await proto.lost
        # The transport owned the socket: it is closed now.
        assert csock.fileno() == -1
        server.close()
        await server.wait_closed()
        assert lsock.fileno() == -1

    run_with_timeout(loop, main(), 5)


def test_local_addr(loop):
    async def main():
        server, tr, cp, sp = await tcp_pair(
            loop, client_kw={"local_addr": ("127.0.0.2", 0)})
        sockname = tr.get_extra_info("sockname")
        assert sockname[0] == "127.0.0.2" and sockname[1] != 0
        assert sp.transport.get_extra_info("peername") == sockname
        await close_all(server, tr)

    run_with_timeout(loop, main(), 5)


def test_several_hosts(loop):
    hosts = ["127.0.0.1", "127.0.0.2"] + (["::1"] if HAS_IPV6 else [])

    async def main():
        server = await loop.create_server(echo_factory(loop), hosts, 0)
        socks = server.sockets
        assert sorted(s.getsockname()[0] for s in socks) == sorted(hosts)
        for s in socks:
            host, port = s.getsockname()[:2]
            _, _, got = await echo_roundtrip(
                loop, lambda f: loop.create_connection(f, host, port), host.encode())
            assert got == host.encode()
        server.close()
        await server.wait_closed()

    run_with_timeout(loop, main(), 5)


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
def test_reuse_port(loop):
    async def main():
        s1 = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, reuse_port=True)
        port = s1.sockets[0].getsockname()[1]
        assert s1.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
        s2 = await loop.create_server(asyncio.Protocol, "127.0.0.1", port, reuse_port=True)
        assert s2.sockets[0].getsockname()[1] == port
        # Without reuse_port the port is taken.
        with pytest.raises(OSError) as info:
            await loop.create_server(asyncio.Protocol, "127.0.0.1", port)
        assert info.value.errno == 98
        for s in (s1, s2):
            s.close()
            await s.wait_closed()

    run_with_timeout(loop, main(), 5)


def test_bind_in_use_error(loop):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def main():
            with pytest.raises(OSError) as info:
                await loop.create_server(asyncio.Protocol, "127.0.0.1", port)
            assert type(info.value) is OSError
            assert info.value.errno == 98
            # 3.13 repeats the errno inside the message; 3.11 does not.
            detail = "[errno 98] address already in use" if PY313 else "address already in use"
            assert str(info.value) == (
                f"[Errno 98] error while attempting to bind on address "
                f"('127.0.0.1', {port}): {detail}")

        run_with_timeout(loop, main(), 5)


def test_start_serving_false(loop):
    async def main():
        server = await loop.create_server(
            echo_factory(loop), "127.0.0.1", 0, start_serving=False)
        assert not server.is_serving()
        port = server.sockets[0].getsockname()[1]
        # asyncio only listen()s when serving starts: a connect now is refused.
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        await server.start_serving()
        assert server.is_serving()
        await server.start_serving()  # a second call is a no-op
        assert server.is_serving()
        _, _, got = await echo_roundtrip(
            loop, lambda f: loop.create_connection(f, "127.0.0.1", port))
        assert got == b"hello ferroloop"
        server.close()
        assert not server.is_serving()
        await server.wait_closed()

    run_with_timeout(loop, main(), 5)


# ---------------------------------------------------------------- Server API


def test_server_api(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        assert server.get_loop() is loop
        assert server.is_serving()
        socks = server.sockets
        assert isinstance(socks, tuple) and len(socks) == 1
        s = socks[0]
        assert s.family == socket.AF_INET and s.type == socket.SOCK_STREAM
        assert s.fileno() >= 0
        fd = s.fileno()
        server.close()
        assert not server.is_serving()
        assert server.sockets == ()
        server.close()  # idempotent
        await server.wait_closed()
        # The listening socket was closed (its fd released).
        with pytest.raises(OSError):
            os.fstat(fd)

    run_with_timeout(loop, main(), 5)


def test_server_async_with(loop):
    async def main():
        async with await loop.create_server(asyncio.Protocol, "127.0.0.1", 0) as server:
            assert server.is_serving()
            port = server.sockets[0].getsockname()[1]
        assert not server.is_serving()
        assert server.sockets == ()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)

    run_with_timeout(loop, main(), 5)


def test_serve_forever_cancelled_closes_server(loop):
    async def main():
        server = await loop.create_server(
            echo_factory(loop), "127.0.0.1", 0, start_serving=False)
        port = server.sockets[0].getsockname()[1]
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0.01)
        assert server.is_serving()
        _, _, got = await echo_roundtrip(
            loop, lambda f: loop.create_connection(f, "127.0.0.1", port))
        assert got == b"hello ferroloop"

        # A second serve_forever while one runs is a RuntimeError.
        with pytest.raises(RuntimeError) as info:
            await server.serve_forever()
        assert str(info.value) == (
            f"server {server!r} is already being awaited on serve_forever()")

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()
        assert server.sockets == ()
        with pytest.raises(RuntimeError) as info:
            await server.serve_forever()
        assert str(info.value) == f"server {server!r} is closed"

    run_with_timeout(loop, main(), 5)


def test_server_close_ends_serve_forever(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        loop.call_soon(server.close)
        with pytest.raises(asyncio.CancelledError):
            await task

    run_with_timeout(loop, main(), 5)


def test_close_keeps_accepted_connections(loop):
    async def main():
        server, tr, cp, sp = await tcp_pair(loop, echo=True)
        server.close()
        await asyncio.sleep(0.01)
        # Closing the server stops accepting; the connection it accepted lives on.
        tr.write(b"still here")
        assert await cp.wait_bytes(10) == b"still here"
        assert not sp.lost.done()
        tr.close()
        await sp.lost
        await server.wait_closed()

    run_with_timeout(loop, main(), 5)


def test_wait_closed_waits_for_connections(loop):
    async def main():
        server, tr, cp, sp = await tcp_pair(loop)
        server.close()
        waiter = asyncio.ensure_future(server.wait_closed())
        await asyncio.sleep(0.05)
        if sys.version_info >= (3, 12, 1):
            # 3.12.1+: wait_closed waits until every connection is dropped.
            assert not waiter.done()
        else:
            # Before: once closed, wait_closed returns at once (asyncio's documented bug).
            assert waiter.done()
        tr.close()
        await sp.lost
        await asyncio.wait_for(waiter, 1)

    run_with_timeout(loop, main(), 5)


def test_wait_closed_before_close_waits(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        waiter = asyncio.ensure_future(server.wait_closed())
        await asyncio.sleep(0.02)
        assert not waiter.done()
        server.close()
        await asyncio.wait_for(waiter, 1)

    run_with_timeout(loop, main(), 5)


@pytest.mark.skipif(sys.version_info < (3, 13), reason="close_clients/abort_clients are 3.13+")
def test_close_clients(loop):
    async def main():
        server, tr, cp, sp = await tcp_pair(loop)
        sp.transport.write(b"flushed before FIN")
        server.close()
        server.close_clients()
        # close() flushes then sends FIN: the client gets the bytes, then EOF.
        await cp.eof
        assert bytes(cp.data) == b"flushed before FIN"
        assert await sp.lost is None
        tr.close()
        await cp.lost
        await asyncio.wait_for(server.wait_closed(), 1)

    run_with_timeout(loop, main(), 5)


@pytest.mark.skipif(sys.version_info < (3, 13), reason="close_clients/abort_clients are 3.13+")
def test_abort_clients(loop):
    async def main():
        server, tr, cp, sp = await tcp_pair(loop)
        server.close()
        server.abort_clients()
        assert await sp.lost is None
        await cp.lost
        assert "lost" in cp.events
        await asyncio.wait_for(server.wait_closed(), 1)

    run_with_timeout(loop, main(), 5)


# ---------------------------------------------------------------- Unix


def test_unix_path(loop, tmp_path):
    path = str(tmp_path / "echo.sock")

    async def main():
        server = await loop.create_unix_server(echo_factory(loop), path)
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert server.sockets[0].family == socket.AF_UNIX
        assert server.sockets[0].getsockname() == path
        tr, proto, got = await echo_roundtrip(
            loop, lambda f: loop.create_unix_connection(f, path))
        assert got == b"hello ferroloop"
        assert tr.get_extra_info("peername") == path
        assert tr.get_extra_info("sockname") == ""
        server.close()
        await server.wait_closed()
        # cleanup_socket (3.13, default True) removes the socket file; 3.11 leaves it.
        assert os.path.exists(path) is (not PY313)

    run_with_timeout(loop, main(), 5)


def test_unix_pathlike_and_stale_file(loop, tmp_path):
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # leaves a socket file nobody listens on

    async def main():
        server = await loop.create_unix_server(echo_factory(loop), path)
        _, _, got = await echo_roundtrip(
            loop, lambda f: loop.create_unix_connection(f, path))
        assert got == b"hello ferroloop"
        server.close()
        await server.wait_closed()

    run_with_timeout(loop, main(), 5)


@pytest.mark.skipif(sys.version_info < (3, 13), reason="cleanup_socket is 3.13+")
def test_unix_cleanup_socket_false(loop, tmp_path):
    path = str(tmp_path / "kept.sock")

    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, path, cleanup_socket=False)
        server.close()
        await server.wait_closed()
        assert os.path.exists(path)

    run_with_timeout(loop, main(), 5)


def test_unix_abstract_namespace(loop):
    name = abstract_name()

    async def main():
        server = await loop.create_unix_server(echo_factory(loop), name)
        assert server.sockets[0].getsockname() == name.encode()
        tr, proto, got = await echo_roundtrip(
            loop, lambda f: loop.create_unix_connection(f, name))
        assert got == b"hello ferroloop"
        assert tr.get_extra_info("peername") == name.encode()
        server.close()
        await server.wait_closed()

    run_with_timeout(loop, main(), 5)


def test_unix_connect_missing_path(loop, tmp_path):
    async def main():
        with pytest.raises(FileNotFoundError) as info:
            await loop.create_unix_connection(asyncio.Protocol, str(tmp_path / "nope"))
        assert info.value.errno == 2

    run_with_timeout(loop, main(), 5)


def test_unix_server_and_connection_with_sock(loop, tmp_path):
    path = str(tmp_path / "s.sock")

    async def main():
        lsock = socket.socket(socket.AF_UNIX)
        lsock.bind(path)
        server = await loop.create_unix_server(echo_factory(loop), sock=lsock)
        csock = socket.socket(socket.AF_UNIX)
        csock.connect(path)
        tr, proto = await loop.create_unix_connection(lambda: Recorder(loop), sock=csock)
        tr.write(b"unix sock=")
        assert await proto.wait_bytes(10) == b"unix sock="
        tr.close()
        await proto.lost
        assert csock.fileno() == -1
        server.close()
        await server.wait_closed()

    run_with_timeout(loop, main(), 5)


def test_unix_pair_callbacks(loop, tmp_path):
    async def main():
        server, tr, cp, sp = await unix_pair(loop, str(tmp_path / "p.sock"))
        tr.write(b"abc")
        await sp.wait_bytes(3)
        tr.close()
        assert await sp.lost is None
        assert sp.events == ["made", "data", "eof", "lost"]
        assert cp.events == ["made", "lost"]
        await close_all(server)

    run_with_timeout(loop, main(), 5)


# ---------------------------------------------------------------- connect_accepted_socket


def test_connect_accepted_socket(loop):
    async def main():
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen()
            csock = socket.create_connection(lsock.getsockname())
            conn, _ = lsock.accept()
        tr, proto = await loop.connect_accepted_socket(lambda: Recorder(loop, echo=True), conn)
        assert proto.events == ["made"]
        assert conn.getblocking() is False
        assert tr.get_extra_info("peername") == csock.getsockname()
        csock.setblocking(False)
        await loop.sock_sendall(csock, b"accepted")
        got = b""
        while len(got) < 8:
            got += await loop.sock_recv(csock, 100)
        assert got == b"accepted"
        csock.close()
        assert await proto.lost is None
        assert proto.events[-2:] == ["eof", "lost"]

    run_with_timeout(loop, main(), 5)


# ---------------------------------------------------------------- argument errors


@pytest.mark.parametrize("port", [70000, -1])
def test_bad_port(loop, port):
    async def main():
        with pytest.raises(OverflowError) as info:
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        assert str(info.value) == "connect(): port must be 0-65535."
        with pytest.raises(OverflowError) as info:
            await loop.create_server(asyncio.Protocol, "127.0.0.1", port)
        assert str(info.value) == "bind(): port must be 0-65535."

    run_with_timeout(loop, main(), 5)


def test_non_str_host(loop):
    async def main():
        with pytest.raises(TypeError):
            await loop.create_connection(asyncio.Protocol, 123, 80)
        with pytest.raises(TypeError):
            await loop.create_server(asyncio.Protocol, 123, 0)

    run_with_timeout(loop, main(), 5)


def test_unknown_service(loop):
    async def main():
        with pytest.raises(socket.gaierror):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", "no-such-service")

    run_with_timeout(loop, main(), 5)


def test_argument_errors(loop):
    async def main():
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket()
        try:
            cases = [
                (loop.create_connection(asyncio.Protocol, "127.0.0.1", 80, sock=tcp),
                 "host/port and sock can not be specified at the same time"),
                (loop.create_connection(asyncio.Protocol),
                 "host and port was not specified and no sock specified"),
                (loop.create_server(asyncio.Protocol, "127.0.0.1", 0, sock=tcp),
                 "host/port and sock can not be specified at the same time"),
                (loop.create_server(asyncio.Protocol),
                 "Neither host/port nor sock were specified"),
                (loop.create_connection(asyncio.Protocol, sock=udp),
                 f"A Stream Socket was expected, got {udp!r}"),
                (loop.create_server(asyncio.Protocol, sock=udp),
                 f"A Stream Socket was expected, got {udp!r}"),
                (loop.connect_accepted_socket(asyncio.Protocol, udp),
                 f"A Stream Socket was expected, got {udp!r}"),
                (loop.create_unix_connection(asyncio.Protocol, sock=udp),
                 f"A UNIX Domain Stream Socket was expected, got {udp!r}"),
                (loop.create_unix_server(asyncio.Protocol, sock=udp),
                 f"A UNIX Domain Stream Socket was expected, got {udp!r}"),
                (loop.create_unix_connection(asyncio.Protocol),
                 "no path and sock were specified"),
                (loop.create_unix_server(asyncio.Protocol),
                 "path was not specified, and no sock specified"),
                (loop.create_unix_connection(asyncio.Protocol, "/x", sock=udp),
                 "path and sock can not be specified at the same time"),
                (loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, server_hostname="x"),
                 "server_hostname is only meaningful with ssl"),
            ]
            for coro, message in cases:
                with pytest.raises(ValueError) as info:
                    await coro
                assert str(info.value) == message
        finally:
            udp.close()
            tcp.close()

    run_with_timeout(loop, main(), 5)


# ---------------------------------------------------------------- several addresses


@pytest.fixture
def fake_resolver(monkeypatch):
    """``several.test`` resolves to the given IPv4 addresses, in order."""
    real = socket.getaddrinfo
    table = {}

    def fake(host, port, family=0, type=0, proto=0, flags=0):
        if host in table:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in table[host]]
        return real(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return table


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that refuses connections (bound elsewhere, not listening)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.mark.parametrize("kw", [{}, {"happy_eyeballs_delay": 0.05},
                                {"happy_eyeballs_delay": 0.05, "interleave": 1}])
def test_connect_tries_every_address(loop, fake_resolver, kw):
    fake_resolver["several.test"] = ["127.0.0.2", "127.0.0.1"]

    async def main():
        server = await loop.create_server(echo_factory(loop), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # 127.0.0.2 refuses (nobody listens there on that port), 127.0.0.1 answers.
        tr, proto, got = await echo_roundtrip(
            loop, lambda f: loop.create_connection(f, "several.test", port, **kw))
        assert got == b"hello ferroloop"
        assert tr.get_extra_info("peername") == ("127.0.0.1", port)
        await close_all(server)

    run_with_timeout(loop, main(), 5)


@pytest.mark.parametrize("kw", [{}, {"happy_eyeballs_delay": 0.05}])
def test_connect_every_address_fails(loop, fake_resolver, closed_port, kw):
    fake_resolver["several.test"] = ["127.0.0.2", "127.0.0.3"]
    port = closed_port

    async def main():
        with pytest.raises(OSError) as info:
            await loop.create_connection(asyncio.Protocol, "several.test", port, **kw)
        assert type(info.value) is OSError
        assert str(info.value) == (
            f"Multiple exceptions: [Errno 111] Connect call failed ('127.0.0.2', {port}), "
            f"[Errno 111] Connect call failed ('127.0.0.3', {port})")

    run_with_timeout(loop, main(), 5)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="all_errors is 3.12+")
def test_connect_all_errors(loop, fake_resolver, closed_port):
    fake_resolver["several.test"] = ["127.0.0.2", "127.0.0.3"]
    port = closed_port

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            await loop.create_connection(asyncio.Protocol, "several.test", port, all_errors=True)
        group = info.value
        assert group.message == "create_connection failed"
        assert [type(e) for e in group.exceptions] == [ConnectionRefusedError] * 2
        assert [str(e) for e in group.exceptions] == [
            f"[Errno 111] Connect call failed ('127.0.0.{i}', {port})" for i in (2, 3)]

    run_with_timeout(loop, main(), 5)


def test_connect_family(loop):
    async def main():
        server = await loop.create_server(echo_factory(loop), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, proto, got = await echo_roundtrip(
            loop, lambda f: loop.create_connection(f, "localhost", port, family=socket.AF_INET))
        assert got == b"hello ferroloop"
        assert tr.get_extra_info("socket").family == socket.AF_INET
        await close_all(server)

    run_with_timeout(loop, main(), 5)


@pytest.mark.skipif(sys.version_info < (3, 13), reason="keep_alive is 3.13+")
def test_server_keep_alive(loop):
    async def main():
        server, tr, cp, sp = await tcp_pair(loop, server_kw={"keep_alive": True})
        assert server.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
        accepted = sp.transport.get_extra_info("socket")
        assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
        await close_all(server, tr)

    run_with_timeout(loop, main(), 5)


def test_unix_path_taken_by_a_regular_file(loop, tmp_path):
    path = tmp_path / "regular"
    path.write_text("not a socket")

    async def main():
        with pytest.raises(OSError) as info:
            await loop.create_unix_server(asyncio.Protocol, str(path))
        assert info.value.errno == 98
        assert str(info.value) == f"[Errno 98] Address {str(path)!r} is already in use"
        assert path.read_text() == "not a socket"  # asyncio only removes stale sockets

    run_with_timeout(loop, main(), 5)


def test_unix_abstract_refused(loop):
    async def main():
        with pytest.raises(ConnectionRefusedError) as info:
            await loop.create_unix_connection(asyncio.Protocol, abstract_name())
        assert info.value.errno == 111

    run_with_timeout(loop, main(), 5)
