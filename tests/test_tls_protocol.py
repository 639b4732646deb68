"""The TLS protocol's contract, on both loops: large transfers both ways, flow control on
the app side (pause_writing / resume_writing, pause_reading / resume_reading), an app
BufferedProtocol, write_eof, close and abort during the handshake and during shutdown,
a failing app callback, and (ferroloop) that the protocol under ``ssl=`` and
``start_tls`` is the native one.

On ferroloop TLS is a native port of asyncio's ``sslproto.SSLProtocol``
(``src/net/tls.rs``); asyncio's own is the reference.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import ssl
import subprocess

import pytest

import ferroloop
from conftest import requires_native_net, run_with_timeout

pytestmark = [
    requires_native_net,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command"),
]

BIG = 8 * 1024 * 1024 + 123


@pytest.fixture(scope="module")
def certfiles(tmp_path_factory):
    d = tmp_path_factory.mktemp("tlsproto")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@pytest.fixture
def server_ctx(certfiles):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*certfiles)
    return ctx


@pytest.fixture
def client_ctx(certfiles):
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certfiles[0]))


def _payload(n, seed):
    # Not compressible and not periodic, so a reordered or dropped record shows.
    out = bytearray()
    h = hashlib.sha256(seed)
    while len(out) < n:
        h = hashlib.sha256(h.digest())
        out += h.digest() * 64
    return bytes(out[:n])


def test_large_transfer_both_directions(loop, server_ctx, client_ctx):
    """8 MiB each way at once, checksummed: the server sends its own payload while it
    reads the client's."""
    up, down = _payload(BIG, b"up"), _payload(BIG, b"down")

    async def handler(reader, writer):
        writer.write(down)
        got = await reader.readexactly(BIG)
        await writer.drain()
        writer.write(hashlib.sha256(got).digest())
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
            writer.write(up)
            got = await reader.readexactly(BIG)
            digest = await reader.readexactly(32)
            rest = await reader.read()
            writer.close()
            await writer.wait_closed()
            return hashlib.sha256(got).digest(), digest, rest

    got_down, server_digest, rest = run_with_timeout(loop, main(), timeout=60)
    assert got_down == hashlib.sha256(down).digest()
    assert server_digest == hashlib.sha256(up).digest()
    assert rest == b""


class _Recorder(asyncio.Protocol):
    def __init__(self, loop):
        self.loop = loop
        self.events = []
        self.data = bytearray()
        self.transport = None
        self.made = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")
        self.made.set_result(None)

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.events.append("eof")

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc).__name__ if exc else None))
        if not self.lost.done():
            self.lost.set_result(exc)


async def _pair(loop, server_ctx, client_ctx, server_factory=None, client_factory=None):
    """A TLS server (protocol from server_factory) and a connected client; returns
    (server, client protocol, a future of the server protocol once connected)."""
    srv_proto = loop.create_future()

    def factory():
        p = (server_factory or (lambda: _Recorder(loop)))()
        if not srv_proto.done():
            srv_proto.set_result(p)
        return p

    server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    _, client = await loop.create_connection(
        client_factory or (lambda: _Recorder(loop)), "127.0.0.1", port, ssl=client_ctx,
        server_hostname="localhost")

    async def connected():
        p = await srv_proto
        await p.made
        return p

    return server, client, loop.create_task(connected())


def test_app_write_flow_control(loop, server_ctx, client_ctx):
    """The app transport pauses the app protocol over its high-water mark (SSL write
    backlog + outgoing BIO) and resumes it under the low one, when the peer reads."""

    async def main():
        server, client, srv_proto = await _pair(loop, server_ctx, client_ctx)
        async with server:
            srv = await srv_proto
            srv.transport.pause_reading()
            tr = client.transport
            assert tr.get_write_buffer_limits() == (128 * 1024, 512 * 1024)
            tr.set_write_buffer_limits(high=64 * 1024)
            assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
            chunk = b"x" * 65536
            sent = 0
            for _ in range(200):
                tr.write(chunk)
                sent += len(chunk)
                await asyncio.sleep(0)
                if "pause" in client.events:
                    break
            paused_at = tr.get_write_buffer_size()
            assert "pause" in client.events
            assert paused_at >= 64 * 1024
            assert tr._protocol_paused
            srv.transport.resume_reading()
            while len(srv.data) < sent:
                await asyncio.sleep(0.01)
            for _ in range(100):
                if "resume" in client.events:
                    break
                await asyncio.sleep(0.01)
            size_after = tr.get_write_buffer_size()
            tr.close()
            await client.lost
            return client.events, size_after, bytes(srv.data) == b"x" * sent

    events, size_after, intact = run_with_timeout(loop, main(), timeout=60)
    assert events[:3] == ["made", "pause", "resume"]
    assert size_after <= 16 * 1024
    assert intact


def test_app_pause_reading_holds_data(loop, server_ctx, client_ctx):
    """pause_reading() on the app transport stops data_received until resume_reading();
    nothing is lost."""

    async def main():
        server, client, srv_proto = await _pair(loop, server_ctx, client_ctx)
        async with server:
            srv = await srv_proto
            tr = client.transport
            assert tr.is_reading()
            tr.pause_reading()
            assert not tr.is_reading()
            payload = _payload(1024 * 1024, b"r")
            srv.transport.write(payload)
            await asyncio.sleep(0.2)
            held = len(client.data)
            tr.resume_reading()
            assert tr.is_reading()
            while len(client.data) < len(payload):
                await asyncio.sleep(0.01)
            tr.close()
            await client.lost
            return held, bytes(client.data) == payload

    held, intact = run_with_timeout(loop, main(), timeout=60)
    assert held == 0
    assert intact


class _BufProto(asyncio.BufferedProtocol):
    def __init__(self, loop, bufsize=1000):
        self.buf = bytearray(bufsize)
        self.data = bytearray()
        self.sizes = []
        self.lost = loop.create_future()
        self.eof = False
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        self.sizes.append(sizehint)
        # A memoryview: asyncio's SSLProtocol fills a buffer smaller than the record
        # through buf[offset:], which copies a bytearray (its bytes are lost then);
        # ferroloop's writes into the buffer itself, as uvloop does.
        return memoryview(self.buf)

    def buffer_updated(self, nbytes):
        assert 0 < nbytes <= len(self.buf)
        self.data += self.buf[:nbytes]

    def eof_received(self):
        self.eof = True

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_app_buffered_protocol(loop, server_ctx, client_ctx):
    """An app BufferedProtocol smaller than a record gets it in pieces (the rest on the
    next iteration), in order, then eof_received and connection_lost."""
    payload = _payload(300_000, b"buf")

    async def main():
        server, client, srv_proto = await _pair(
            loop, server_ctx, client_ctx, client_factory=lambda: _BufProto(loop))
        async with server:
            srv = await srv_proto
            srv.transport.write(payload)
            srv.transport.close()
            exc = await client.lost
            return bytes(client.data) == payload, client.eof, exc, client.sizes

    intact, eof, exc, sizes = run_with_timeout(loop, main(), timeout=60)
    assert intact
    assert eof
    assert exc is None
    assert len(sizes) > 300  # 1000-byte buffer: many get_buffer() calls
    assert all(isinstance(s, int) for s in sizes)


def test_write_eof_not_supported(loop, server_ctx, client_ctx):
    async def main():
        server, client, _ = await _pair(loop, server_ctx, client_ctx)
        async with server:
            tr = client.transport
            can = tr.can_write_eof()
            with pytest.raises(NotImplementedError):
                tr.write_eof()
            with pytest.raises(TypeError, match="data: expecting a bytes-like instance, got str"):
                tr.write("text")
            tr.write(b"")  # nothing, no error
            assert tr.get_write_buffer_size() == 0
            tr.close()
            await client.lost
            return can

    assert run_with_timeout(loop, main()) is False


def test_close_during_handshake(loop, client_ctx):
    """close() on the app transport before the handshake completes aborts: the waiter
    of create_connection fails, the socket is closed."""

    async def main():
        lsock = socket.create_server(("127.0.0.1", 0))
        lsock.setblocking(False)
        port = lsock.getsockname()[1]
        protos = []

        def factory():
            p = _Recorder(loop)
            protos.append(p)
            return p

        task = loop.create_task(loop.create_connection(
            factory, "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"))
        conn, _ = await loop.sock_accept(lsock)
        await asyncio.sleep(0.05)
        # The client sent its ClientHello and waits: cancel the connection.
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        # The client's socket is closed: the server sees EOF/RST.
        conn.setblocking(False)
        got = b"x"
        for _ in range(200):
            try:
                got = conn.recv(65536)
                if got == b"":
                    break
            except BlockingIOError:
                await asyncio.sleep(0.01)
            except ConnectionResetError:
                got = b""
                break
        conn.close()
        lsock.close()
        return task.cancelled(), protos, got

    cancelled, protos, last = run_with_timeout(loop, main())
    assert cancelled
    assert protos and protos[0].events == []  # connection_made never called
    assert last == b""


def test_abort_during_handshake_from_app_transport(loop, server_ctx):
    """start_tls over a server-side connection whose peer never speaks TLS: abort()
    of the plain transport mid-handshake ends the upgrade (asyncio's waiter gets a result,
    and start_tls returns None: the app transport is gone) and closes the socket."""

    async def main():
        accepted = loop.create_future()

        class Plain(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport
                accepted.set_result(self)

        server = await loop.create_server(Plain, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            csock = socket.create_connection(("127.0.0.1", port))
            p = await accepted
            upgrade = loop.create_task(
                loop.start_tls(p.transport, p, server_ctx, server_side=True))
            await asyncio.sleep(0.05)
            p.transport.abort()
            try:
                outcome = await asyncio.wait_for(upgrade, 5)
            except (ConnectionError, asyncio.CancelledError) as e:
                outcome = type(e).__name__
            csock.settimeout(5)
            try:
                tail = csock.recv(100)
            except ConnectionResetError:
                tail = b""
            csock.close()
            return outcome, tail, p.transport.is_closing()

    outcome, tail, closing = run_with_timeout(loop, main())
    assert outcome is None
    assert tail == b""
    assert closing


def test_close_and_abort_during_shutdown(loop, server_ctx, client_ctx):
    """close() starts the TLS shutdown (close_notify); abort() while it waits for the
    peer's close_notify ends it at once: connection_lost once, without an error. (A
    second close() would drop the transport's protocol: abort() does nothing then.)"""

    async def main():
        server, client, srv_proto = await _pair(loop, server_ctx, client_ctx)
        async with server:
            srv = await srv_proto
            srv.transport.pause_reading()  # the peer will not answer close_notify
            tr = client.transport
            tr.close()
            assert tr.is_closing()
            await asyncio.sleep(0.05)
            before = list(client.events)
            tr.abort()
            exc = await client.lost
            await asyncio.sleep(0.05)
            srv.transport.resume_reading()
            await asyncio.wait_for(srv.lost, 5)
            return before, client.events, exc

    before, events, exc = run_with_timeout(loop, main())
    assert before == ["made"]
    assert events == ["made", ("lost", None)]
    assert exc is None


def test_shutdown_timeout(loop, server_ctx, client_ctx):
    """A peer that never answers close_notify: the transport is closed after
    ssl_shutdown_timeout with TimeoutError('SSL shutdown timed out')."""

    async def main():
        srv_proto = loop.create_future()

        def factory():
            p = _Recorder(loop)
            srv_proto.set_result(p)
            return p

        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            _, client = await loop.create_connection(
                lambda: _Recorder(loop), "127.0.0.1", port, ssl=client_ctx,
                server_hostname="localhost", ssl_shutdown_timeout=0.2)
            srv = await srv_proto
            await srv.made
            srv.transport.pause_reading()
            t0 = loop.time()
            client.transport.close()
            exc = await client.lost
            elapsed = loop.time() - t0
            srv.transport.resume_reading()
            await asyncio.wait_for(srv.lost, 5)
            return exc, elapsed

    exc, elapsed = run_with_timeout(loop, main())
    assert type(exc) is TimeoutError
    assert str(exc) == "SSL shutdown timed out"
    assert 0.15 < elapsed < 3


def test_app_data_received_error(loop, server_ctx, client_ctx):
    """An exception from the app's data_received is a fatal error: the exception
    handler gets 'Fatal error on SSL protocol', connection_lost gets the exception."""

    class Boom(_Recorder):
        def data_received(self, data):
            raise ZeroDivisionError("boom")

    async def main():
        contexts = []
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        server, client, srv_proto = await _pair(
            loop, server_ctx, client_ctx, client_factory=lambda: Boom(loop))
        async with server:
            srv = await srv_proto
            srv.transport.write(b"hello")
            exc = await client.lost
            await asyncio.wait_for(srv.lost, 5)
            return contexts, exc

    contexts, exc = run_with_timeout(loop, main())
    assert [c["message"] for c in contexts] == ["Fatal error on SSL protocol"]
    assert isinstance(contexts[0]["exception"], ZeroDivisionError)
    assert isinstance(exc, ZeroDivisionError)
    assert contexts[0]["protocol"].__class__.__name__ in ("SSLProtocol", "_SSLProtocol")


def test_writes_after_close_are_dropped(loop, server_ctx, client_ctx, caplog):
    """Writes after close() are dropped, with asyncio's 'SSL connection is closed'
    warning from the sixth on."""

    async def main():
        server, client, _ = await _pair(loop, server_ctx, client_ctx)
        async with server:
            tr = client.transport
            tr.close()
            for _ in range(7):
                tr._ssl_protocol._write_appdata([b"late"])
            await client.lost

    with caplog.at_level("WARNING", logger="asyncio"):
        run_with_timeout(loop, main())
    assert [r.getMessage() for r in caplog.records].count("SSL connection is closed") == 2


def test_ssl_protocol_is_native_on_ferroloop(loop, server_ctx, client_ctx):
    """On ferroloop both ssl= and start_tls use the native protocol."""

    async def main():
        server, client, srv_proto = await _pair(loop, server_ctx, client_ctx)
        async with server:
            srv = await srv_proto
            kinds = [type(client.transport._ssl_protocol), type(srv.transport._ssl_protocol)]
            client.transport.close()
            await client.lost
        plain = await loop.create_server(lambda: _Recorder(loop), "127.0.0.1", 0)
        port = plain.sockets[0].getsockname()[1]
        async with plain:
            tr, pr = await loop.create_connection(lambda: _Recorder(loop), "127.0.0.1", port)
            upgrade = loop.create_task(loop.start_tls(tr, pr, client_ctx,
                                                      server_hostname="localhost",
                                                      ssl_handshake_timeout=0.3))
            await asyncio.sleep(0)
            kinds.append(type(tr.get_protocol()))
            try:
                await upgrade
            except (ConnectionError, TimeoutError):
                pass
            tr.close()
        return kinds

    kinds = run_with_timeout(loop, main())
    if isinstance(loop, ferroloop.Loop):
        assert kinds == [ferroloop._SSLProtocol] * 3
    else:
        assert kinds == [asyncio.sslproto.SSLProtocol] * 3


def test_bad_timeouts(loop, client_ctx):
    async def main():
        out = []
        plain = await loop.create_server(lambda: _Recorder(loop), "127.0.0.1", 0)
        port = plain.sockets[0].getsockname()[1]
        async with plain:
            tr, pr = await loop.create_connection(lambda: _Recorder(loop), "127.0.0.1", port)
            for kw in ({"ssl_handshake_timeout": 0}, {"ssl_shutdown_timeout": -1}):
                try:
                    await loop.start_tls(tr, pr, client_ctx, server_hostname="x", **kw)
                except ValueError as e:
                    out.append(str(e))
            tr.close()
        return out

    assert run_with_timeout(loop, main()) == [
        "ssl_handshake_timeout should be a positive number, got 0",
        "ssl_shutdown_timeout should be a positive number, got -1",
    ]


def test_write_after_second_close(loop, server_ctx, client_ctx):
    """A second close() drops the app transport's protocol (asyncio's
    _SSLProtocolTransport): write() raises AttributeError then, abort() does nothing."""

    async def main():
        server, client, _ = await _pair(loop, server_ctx, client_ctx)
        async with server:
            tr = client.transport
            tr.write(b"before")
            tr.close()
            tr.write(b"after first close")  # dropped, no error
            tr.close()
            with pytest.raises(AttributeError):
                tr.write(b"after second close")
            tr.abort()
            await client.lost

    run_with_timeout(loop, main())


class _SmallBytearrayProto(_BufProto):
    def get_buffer(self, sizehint):
        self.sizes.append(sizehint)
        return self.buf  # a bytearray, not a view


def test_app_buffered_protocol_bytearray_smaller_than_a_record(loop, server_ctx, client_ctx):
    """Known difference: an app BufferedProtocol whose get_buffer() returns a bytearray
    smaller than a decrypted record. asyncio reads the rest of the buffer through
    ``buf[offset:]``, a copy of a bytearray, so those bytes are lost (while counted in
    buffer_updated); ferroloop reads into the buffer itself, as uvloop does."""
    payload = _payload(100_000, b"small")

    async def main():
        server, client, srv_proto = await _pair(
            loop, server_ctx, client_ctx, client_factory=lambda: _SmallBytearrayProto(loop))
        async with server:
            srv = await srv_proto
            srv.transport.write(payload)
            srv.transport.close()
            await client.lost
            return bytes(client.data)

    got = run_with_timeout(loop, main(), timeout=30)
    assert len(got) == len(payload)
    if isinstance(loop, ferroloop.Loop):
        assert got == payload
    else:
        assert got != payload


def test_tls_accepted_connection_protocol_made_in_the_accept_callback(
        loop, server_ctx, client_ctx):
    """Known difference (as for plain connections): asyncio calls a TLS server's protocol
    factory in a Task per accepted connection (``_accept_connection2``); ferroloop, outside
    debug mode, in the accept callback."""
    seen = []

    def factory():
        seen.append(asyncio.current_task())
        return _Recorder(loop)

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            tr, pr = await loop.create_connection(
                lambda: _Recorder(loop), "127.0.0.1", port, ssl=client_ctx,
                server_hostname="localhost")
            tr.close()
            await pr.lost

    run_with_timeout(loop, main())
    assert len(seen) == 1
    if isinstance(loop, ferroloop.Loop):
        assert seen == [None]
    else:
        assert isinstance(seen[0], asyncio.Task)


def test_server_side_failed_handshake_closes_the_connection(loop, server_ctx, certfiles):
    """A client that rejects the server's certificate: the server's waiter fails, the
    accepted connection is closed (asyncio's Task closes the transport after ``await
    waiter``), the app protocol never sees connection_made, nothing is reported outside
    debug mode, and no "exception was never retrieved"."""
    made = []
    contexts = []

    def factory():
        p = _Recorder(loop)
        made.append(p)
        return p

    async def main():
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            for _ in range(3):
                bad = ssl.create_default_context()  # does not trust the self-signed cert
                with pytest.raises(ssl.SSLCertVerificationError):
                    await loop.create_connection(
                        asyncio.Protocol, "127.0.0.1", port, ssl=bad,
                        server_hostname="localhost")
            for _ in range(50):
                await asyncio.sleep(0.01)
                if all(p.transport is None for p in made) and len(made) == 3:
                    break
        await asyncio.sleep(0.05)
        import gc
        gc.collect()
        await asyncio.sleep(0)

    run_with_timeout(loop, main())
    assert len(made) == 3
    assert all(p.events == [] for p in made)
    assert contexts == []


def test_switch_from_buffered_to_plain_protocol_keeps_decrypted_bytes(
        loop, server_ctx, client_ctx):
    """A BufferedProtocol that fills its small buffer with part of a record and then
    switches the transport to a plain Protocol: the rest of the record, already decrypted
    inside the SSL object while the incoming BIO is empty, still reaches the new protocol
    (nothing more arrives to trigger a read: the server keeps the connection open)."""
    payload = _payload(5000, b"switch")

    class Switcher(_BufProto):
        def __init__(self, loop):
            super().__init__(loop)
            self.plain = _Recorder(loop)
            self.got_all = loop.create_future()

        def buffer_updated(self, nbytes):
            super().buffer_updated(nbytes)
            self.plain.data = self.data  # one byte stream across both protocols
            self.plain.data_received = self.on_plain_data
            self.transport.set_protocol(self.plain)

        def on_plain_data(self, data):
            self.data += data
            if len(self.data) >= len(payload) and not self.got_all.done():
                self.got_all.set_result(None)

    async def main():
        server, client, srv_proto = await _pair(
            loop, server_ctx, client_ctx, client_factory=lambda: Switcher(loop))
        async with server:
            srv = await srv_proto
            srv.transport.write(payload)  # one record, larger than the 1000-byte buffer
            await asyncio.wait_for(client.got_all, 10)
            got = bytes(client.data)
            client.transport.close()
            srv.transport.close()
            return got

    assert run_with_timeout(loop, main(), timeout=30) == payload
