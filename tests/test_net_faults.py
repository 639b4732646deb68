"""Fault cases of the stream transports (issue 8): a peer that resets, half-close in both
directions, back-pressure with a checksum of every byte, fd count under connect/close
churn. Stock asyncio is the reference."""

import asyncio
import hashlib
import socket
import struct
import sys
import time

import pytest

from conftest import requires_native_net, run_with_timeout
from netutil import Recorder, close_all, fd_count, stream_pair, tcp_pair, unix_pair

pytestmark = requires_native_net

KINDS = ["tcp", "unix"]
MiB = 1024 * 1024


def linger0(sock):
    """Make ``close()`` send a RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def record_errors(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    return contexts


# ---------------------------------------------------------------- peer reset


def test_peer_reset_while_reading(loop):
    """The server's peer (a plain socket) resets: connection_lost(ConnectionResetError),
    no eof_received, and nothing for the exception handler."""

    async def main():
        contexts = record_errors(loop)
        accepted = loop.create_future()
        server = await loop.create_server(
            lambda: accepted.set_result(Recorder(loop)) or accepted.result(), "127.0.0.1", 0)
        raw = socket.create_connection(server.sockets[0].getsockname())
        sp = await accepted
        await sp.made
        raw.sendall(b"before the reset")
        await sp.wait_bytes(16)
        linger0(raw)
        raw.close()
        exc = await sp.lost
        assert type(exc) is ConnectionResetError
        assert exc.errno == 104
        assert sp.events == ["made", "data", "lost"]
        assert bytes(sp.data) == b"before the reset"
        assert sp.transport.is_closing()
        assert contexts == []
        await close_all(server)

    run_with_timeout(loop, main(), 5)


def test_peer_reset_client_side(loop):
    """A client transport whose server resets gets connection_lost(ConnectionResetError)."""

    async def main():
        contexts = record_errors(loop)
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen()
            lsock.setblocking(False)
            tr, cp = await loop.create_connection(
                lambda: Recorder(loop), *lsock.getsockname())
            conn, _ = await loop.sock_accept(lsock)
        linger0(conn)
        conn.close()
        exc = await cp.lost
        assert type(exc) is ConnectionResetError
        assert cp.events == ["made", "lost"]
        assert contexts == []
        # Writes after the loss are dropped silently.
        tr.write(b"into the void")
        tr.close()

    run_with_timeout(loop, main(), 5)


def test_peer_reset_with_writes_pending(loop):
    """Pending writes to a peer that resets end in connection_lost with a connection
    error, the buffer dropped, and no exception-handler call."""

    async def main():
        contexts = record_errors(loop)
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen()
            lsock.setblocking(False)
            tr, cp = await loop.create_connection(
                lambda: Recorder(loop), *lsock.getsockname())
            conn, _ = await loop.sock_accept(lsock)
        chunk = b"z" * MiB
        while tr.get_write_buffer_size() == 0:
            tr.write(chunk)
        linger0(conn)
        conn.close()
        exc = await cp.lost
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
        assert cp.events == ["made", "lost"]
        assert tr.get_write_buffer_size() == 0
        assert contexts == []
        tr.close()

    run_with_timeout(loop, main(), 5)


# ---------------------------------------------------------------- half-close


@pytest.mark.parametrize("kind", KINDS)
def test_half_close_client_first(loop, kind, tmp_path):
    async def main():
        if kind == "tcp":
            server, tr, cp, sp = await tcp_pair(loop, eof_result=True)
        else:
            server, tr, cp, sp = await unix_pair(loop, str(tmp_path / "h.sock"), eof_result=True)
        cp.eof_result = True
        tr.write(b"request")
        tr.write_eof()
        await sp.eof
        assert bytes(sp.data) == b"request"
        # The server's write half still works after its read half saw EOF.
        for i in range(50):
            sp.transport.write(b"reply %d;" % i)
        sp.transport.write_eof()
        await cp.eof
        expected = b"".join(b"reply %d;" % i for i in range(50))
        assert bytes(cp.data) == expected
        await asyncio.sleep(0.01)
        # Both returned True from eof_received: nobody closed yet.
        assert not cp.lost.done() and not sp.lost.done()
        tr.close()
        sp.transport.close()
        assert await cp.lost is None
        assert await sp.lost is None
        assert cp.events == ["made", "data", "eof", "lost"] or (
            cp.events[0] == "made" and cp.events[-2:] == ["eof", "lost"])
        assert sp.events[-2:] == ["eof", "lost"]
        await close_all(server)

    run_with_timeout(loop, main(), 5)


@pytest.mark.parametrize("kind", KINDS)
def test_half_close_server_first(loop, kind, tmp_path):
    async def main():
        server, tr, cp, sp = await stream_pair(loop, kind, tmp_path)
        cp.eof_result = True
        sp.transport.write(b"banner")
        sp.transport.write_eof()
        await cp.eof
        assert bytes(cp.data) == b"banner"
        # The client keeps writing after it saw the server's EOF.
        tr.write(b"late request")
        await sp.wait_bytes(12)
        assert bytes(sp.data) == b"late request"
        tr.write_eof()
        # The server's eof_received returned None: it closes, the client sees that.
        assert await sp.lost is None
        tr.close()
        assert await cp.lost is None
        assert cp.events == ["made", "data", "eof", "lost"]
        await close_all(server)

    run_with_timeout(loop, main(), 5)


# ---------------------------------------------------------------- back-pressure


class FlowWriter(Recorder):
    """Writes ``total`` bytes in chunks, honouring pause_writing/resume_writing."""

    def __init__(self, loop, total, chunk=64 * 1024):
        super().__init__(loop)
        self.total = total
        self.chunk = chunk
        self.sha = hashlib.sha256()
        self.sent = 0
        self.is_paused = False
        self.max_buffered = 0
        self.done = loop.create_future()
        self.pauses = 0

    def connection_made(self, transport):
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=256 * 1024)
        self.loop.call_soon(self.pump)

    def pump(self):
        tr = self.transport
        while not self.is_paused and self.sent < self.total:
            n = min(self.chunk, self.total - self.sent)
            # Bytes that vary with their position: a lost or reordered chunk changes the hash.
            block = (struct.pack("!Q", self.sent) * (n // 8 + 1))[:n]
            self.sha.update(block)
            tr.write(block)
            self.sent += n
            self.max_buffered = max(self.max_buffered, tr.get_write_buffer_size())
        if self.sent >= self.total and not self.done.done():
            tr.write_eof()
            self.done.set_result(None)

    def pause_writing(self):
        assert not self.is_paused
        self.is_paused = True
        self.pauses += 1

    def resume_writing(self):
        assert self.is_paused
        self.is_paused = False
        self.pump()


class SlowReader(asyncio.Protocol):
    """Hashes what it gets and pauses reading for a moment every ``every`` bytes."""

    def __init__(self, loop, every=512 * 1024):
        self.loop = loop
        self.sha = hashlib.sha256()
        self.count = 0
        self.every = every
        self.next_pause = every
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self.events = []

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport

    def data_received(self, data):
        if self.events[-1] != "data":
            self.events.append("data")
        self.sha.update(data)
        self.count += len(data)
        if self.count >= self.next_pause:
            self.next_pause += self.every
            self.transport.pause_reading()
            self.loop.call_later(0.002, self.transport.resume_reading)

    def eof_received(self):
        self.events.append("eof")
        self.eof.set_result(None)

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("direction", ["client_sends", "server_sends"])
def test_back_pressure_checksum(loop, kind, direction, tmp_path):
    total = 8 * MiB

    async def main():
        holder = {}

        def writer():
            holder["w"] = FlowWriter(loop, total)
            return holder["w"]

        def reader():
            holder["r"] = SlowReader(loop)
            return holder["r"]

        server_factory, client_factory = (
            (reader, writer) if direction == "client_sends" else (writer, reader))
        if kind == "tcp":
            server = await loop.create_server(server_factory, "127.0.0.1", 0)
            tr, _ = await loop.create_connection(
                client_factory, *server.sockets[0].getsockname())
        else:
            path = str(tmp_path / "bp.sock")
            server = await loop.create_unix_server(server_factory, path)
            tr, _ = await loop.create_unix_connection(client_factory, path)
        while "w" not in holder or "r" not in holder:
            await asyncio.sleep(0)
        w, r = holder["w"], holder["r"]
        await w.done
        await r.eof
        assert r.count == total
        assert r.sha.hexdigest() == w.sha.hexdigest()
        assert w.pauses >= 1
        # pause_writing was honoured: the buffer never grew past high water + one chunk.
        assert w.max_buffered <= 256 * 1024 + w.chunk
        assert r.events == ["made", "data", "eof"]
        tr.close()
        await close_all(server)
        await r.lost

    run_with_timeout(loop, main(), 10)


# ---------------------------------------------------------------- fd churn


def test_fd_count_flat_over_connect_close_cycles(loop):
    cycles = 5000
    warmup = 50

    async def main():
        counts = {"made": 0, "lost": 0}

        class Server(asyncio.Protocol):
            def connection_made(self, transport):
                counts["made"] += 1

            def connection_lost(self, exc):
                counts["lost"] += 1

        server = await loop.create_server(Server, "127.0.0.1", 0)
        host, port = server.sockets[0].getsockname()

        async def cycle(n):
            for _ in range(n):
                tr, proto = await loop.create_connection(asyncio.Protocol, host, port)
                tr.close()

        async def all_served(n):
            # Every connection was accepted and has seen connection_lost on the server.
            deadline = time.monotonic() + 5
            while counts["lost"] < n and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            assert counts == {"made": n, "lost": n}

        await cycle(warmup)
        await all_served(warmup)
        before = fd_count()
        # Four connections in flight at a time, as a real server sees them.
        await asyncio.gather(*(cycle(cycles // 4) for _ in range(4)))
        await all_served(warmup + cycles)
        after = fd_count()
        server.close()
        await server.wait_closed()
        return before, after

    before, after = run_with_timeout(loop, main(), 30)
    assert after <= before, (before, after)


def test_error_in_connection_made_is_reported_with_its_handle(loop):
    """asyncio schedules ``protocol.connection_made(transport)`` with call_soon: an error
    it raises goes to the exception handler from Handle._run, with that Handle, and the
    connection stays up."""
    ctxs = []

    class Boom(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            raise ZeroDivisionError("made")

    async def main():
        loop.set_exception_handler(lambda lp, ctx: ctxs.append(ctx))
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        proto = Boom()
        tr, _ = await loop.create_connection(lambda: proto, "127.0.0.1", port)
        for _ in range(100):
            if ctxs:
                break
            await asyncio.sleep(0.01)
        closing = tr.is_closing()
        tr.close()
        server.close()
        await server.wait_closed()
        return tr, proto, closing

    tr, proto, closing = run_with_timeout(loop, main())
    assert not closing
    assert len(ctxs) == 1
    ctx = ctxs[0]
    assert sorted(ctx) == ["exception", "handle", "message"]
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert isinstance(ctx["handle"], asyncio.Handle)
    assert ctx["handle"]._callback == proto.connection_made
    assert ctx["handle"]._args == (tr,)
    prefix = f"Exception in callback {Boom.__qualname__}.connection_made("
    if sys.version_info >= (3, 13):
        # asyncio 3.13 shows a callback's arguments in debug mode only.
        assert ctx["message"] == prefix + ")"
    else:
        # The transport's repr in it is reprlib's, shortened.
        assert ctx["message"].startswith(prefix + "<")


def test_failing_pause_and_resume_writing_go_to_the_exception_handler(loop):
    """``_FlowControlMixin``: a protocol whose pause_writing()/resume_writing() raises is
    reported to the exception handler ("protocol.pause_writing() failed", with the
    transport and the protocol), and the transport goes on writing."""
    ctxs = []

    class Flaky(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def pause_writing(self):
            raise ZeroDivisionError("pause")

        def resume_writing(self):
            raise ZeroDivisionError("resume")

    async def main():
        loop.set_exception_handler(lambda lp, ctx: ctxs.append(ctx))
        got = bytearray()
        done = loop.create_future()
        total = 4 * 1024 * 1024

        class Sink(asyncio.Protocol):
            def data_received(self, data):
                got.extend(data)
                if len(got) >= total and not done.done():
                    done.set_result(None)

        server = await loop.create_server(Sink, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        proto = Flaky()
        tr, _ = await loop.create_connection(lambda: proto, "127.0.0.1", port)
        tr.set_write_buffer_limits(high=1, low=0)
        tr.write(b"x" * total)  # more than the socket takes at once: queued, paused
        await asyncio.wait_for(done, 20)
        for _ in range(100):  # the queue drains: resume_writing
            if len(ctxs) >= 2:
                break
            await asyncio.sleep(0.01)
        tr.close()
        server.close()
        await server.wait_closed()
        return tr, proto, bytes(got)

    tr, proto, got = run_with_timeout(loop, main())
    assert got == b"x" * (4 * 1024 * 1024)
    assert [c["message"] for c in ctxs] == [
        "protocol.pause_writing() failed", "protocol.resume_writing() failed"]
    for ctx in ctxs:
        assert isinstance(ctx["exception"], ZeroDivisionError)
        assert ctx["transport"] is tr and ctx["protocol"] is proto


def test_fatal_protocol_error_keeps_its_traceback(loop):
    """A protocol's data_received() that raises is a fatal error of the transport
    ("Fatal error: protocol.data_received() call failed."): the exception handler gets
    the exception with its ``__traceback__``, holding the frame that raised, as asyncio's
    ``except BaseException as exc:`` hands it over (ferroloop on 3.11 handed the bare
    exception, whose traceback PyO3 keeps apart)."""
    import traceback

    ctxs = []

    class Boom(asyncio.Protocol):
        def data_received(self, data):
            raise ZeroDivisionError("in data_received")

    async def main():
        loop.set_exception_handler(lambda lp, ctx: ctxs.append(ctx))
        server = await loop.create_server(Boom, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        tr.write(b"x")
        for _ in range(200):
            if ctxs:
                break
            await asyncio.sleep(0.01)
        tr.close()
        server.close()
        await server.wait_closed()

    run_with_timeout(loop, main())
    assert [c["message"] for c in ctxs] == ["Fatal error: protocol.data_received() call failed."]
    exc = ctxs[0]["exception"]
    assert isinstance(exc, ZeroDivisionError)
    assert "data_received" in [f.name for f in traceback.extract_tb(exc.__traceback__)]
