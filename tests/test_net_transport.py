"""The stream Transport API on TCP and Unix sockets (issue 8), checked against stock
asyncio's observable behaviour: writes, EOF, close/abort, flow control, extra info,
protocols (plain and buffered) and the order of protocol callbacks."""

import array
import asyncio
import os
import socket
import sys

import pytest

from conftest import requires_native_net, run_with_timeout
from netutil import Recorder, close_all, stream_pair, tcp_pair

pytestmark = requires_native_net

PY313 = sys.version_info >= (3, 13)
KINDS = ["tcp", "unix"]
MiB = 1024 * 1024


def payload(n: int, seed: int = 0) -> bytes:
    """``n`` bytes that differ by position, so a reordering or a loss shows."""
    block = bytes((i * 31 + seed) & 0xFF for i in range(251))
    return (block * (n // len(block) + 1))[:n]


def fill_write_buffer(tr, chunk=MiB, limit=64 * MiB) -> bytes:
    """Write until the transport buffers in user space (the peer does not read)."""
    sent = bytearray()
    i = 0
    while tr.get_write_buffer_size() == 0:
        data = payload(chunk, seed=i)
        tr.write(data)
        sent += data
        i += 1
        assert len(sent) < limit, "the kernel took everything: no back-pressure"
    return bytes(sent)


@pytest.mark.parametrize("kind", KINDS)
def test_write_writelines_order(loop, kind, tmp_path):
    async def main():
        server, tr, cp, sp = await stream_pair(loop, kind, tmp_path)
        expected = bytearray()
        big = payload(3 * MiB, 1)
        pieces = [
            ("w", b"a"), ("wl", [b"b", bytearray(b"cd"), memoryview(b"efg")]),
            ("w", big), ("w", bytearray(b"h")), ("wl", [memoryview(big)[:1000], b"i"]),
            ("w", memoryview(b"xjx")[1:2]), ("wl", []), ("w", b""), ("wl", [b"", b"k"]),
        ]
        for op, data in pieces:
            if op == "w":
                tr.write(data)
                expected += data
            else:
                tr.writelines(data)
                for d in data:
                    expected += d
        got = await sp.wait_bytes(len(expected))
        assert got == bytes(expected)
        assert sp.chunk_types == {bytes}
        await close_all(server, tr)

    run_with_timeout(loop, main(), 5)


@pytest.mark.parametrize("kind", KINDS)
def test_write_eof(loop, kind, tmp_path):
    async def main():
        server, tr, cp, sp = await stream_pair(loop, kind, tmp_path)
        assert tr.can_write_eof() is True
        tr.write(b"last words")
        tr.write_eof()
        tr.write_eof()  # a second call is a no-op
        await sp.eof
        assert bytes(sp.data) == b"last words"
        # eof_received returned None (false): asyncio closes the server side.
        assert await sp.lost is None
        assert sp.events == ["made", "data", "eof", "lost"]
        # ... so the client sees EOF then connection_lost.
        assert await cp.lost is None
        assert cp.events == ["made", "eof", "lost"]

        with pytest.raises(RuntimeError) as info:
            tr.write(b"x")
        assert str(info.value) == "Cannot call write() after write_eof()"
        with pytest.raises(RuntimeError) as info:
            tr.writelines([b"x"])
        # 3.12+ has a writelines() of its own; before, writelines() was write(b"".join()).
        which = "writelines" if sys.version_info >= (3, 12) else "write"
        assert str(info.value) == f"Cannot call {which}() after write_eof()"
        await close_all(server, tr)

    run_with_timeout(loop, main(), 5)


@pytest.mark.parametrize("kind", KINDS)
def test_eof_received_true_keeps_the_transport_open(loop, kind, tmp_path):
    async def main():
        if kind == "tcp":
            server, tr, cp, sp = await tcp_pair(loop, eof_result=True)
        else:
            from netutil import unix_pair
            server, tr, cp, sp = await unix_pair(loop, str(tmp_path / "s.sock"), eof_result=True)
        tr.write(b"question")
        tr.write_eof()
        await sp.eof
        await asyncio.sleep(0.02)
        assert not sp.lost.done()
        assert not sp.transport.is_closing()
        # The server can still answer over its half of the connection.
        sp.transport.write(b"answer")
        assert await cp.wait_bytes(6) == b"answer"
        sp.transport.close()
        assert await cp.lost is None
        assert cp.events == ["made", "data", "eof", "lost"]
        assert await sp.lost is None
        assert sp.events == ["made", "data", "eof", "lost"]
        await close_all(server, tr)

    run_with_timeout(loop, main(), 5)


def test_write_type_errors(loop):
    async def main():
        server, tr, cp, sp = await tcp_pair(loop)
        for bad, name in [("text", "str"), (None, "NoneType"), (42, "int"),
                          (array.array("b", b"ab"), "array")]:
            with pytest.raises(TypeError) as info:
                tr.write(bad)
            assert str(info.value) == f"data argument must be a bytes-like object, not {name!r}"
        with pytest.raises(TypeError):
            tr.writelines(["text"])
        # Nothing was sent by the failed calls.
        tr.write(b"ok")
        assert await sp.wait_bytes(2) == b"ok"
        await asyncio.sleep(0.01)
        assert bytes(sp.data) == b"ok"
        await close_all(server, tr)

    run_with_timeout(loop, main(), 5)


@pytest.mark.parametrize("kind", KINDS)
def test_close_flushes_pending_writes_then_fin(loop, kind, tmp_path):
    async def main():
        server, tr, cp, sp = await stream_pair(loop, kind, tmp_path)
        sp.transport.pause_reading()
        sent = fill_write_buffer(tr)
        assert tr.get_write_buffer_size() > 0
        assert not tr.is_closing()
        tr.close()
        assert tr.is_closing()
        tr.close()  # idempotent
        await asyncio.sleep(0.01)
        assert not cp.lost.done()  # still flushing
        sp.transport.resume_reading()
        await sp.eof
        assert bytes(sp.data) == sent
        assert await cp.lost is None
        assert cp.events == ["made", "lost"]
        assert await sp.lost is None
        assert sp.events[-2:] == ["eof", "lost"]
        assert sp.events.count("lost") == 1
        await close_all(server)

    run_with_timeout(loop, main(), 5)


@pytest.mark.parametrize("kind", KINDS)
def test_abort_drops_pending_data(loop, kind, tmp_path):
    async def main():
        server, tr, cp, sp = await stream_pair(loop, kind, tmp_path)
        sp.transport.pause_reading()
        sent = fill_write_buffer(tr)
        pending = tr.get_write_buffer_size()
        assert pending > 0
        tr.abort()
        assert tr.is_closing()
        # connection_lost comes from the loop, not from inside abort().
        assert "lost" not in cp.events
        assert await cp.lost is None
        assert cp.events == ["made", "lost"]
        tr.abort()
        tr.close()
        await asyncio.sleep(0.01)
        assert cp.events.count("lost") == 1
        # Writing to a closed transport is silently dropped.
        tr.write(b"dropped")
        sp.transport.resume_reading()
        exc = await sp.lost
        # What reached the kernel arrives; what was queued in user space is gone.
        received = bytes(sp.data)
        assert len(received) <= len(sent) - pending
        assert sent.startswith(received)
        assert exc is None or isinstance(exc, ConnectionResetError)
        await close_all(server)

    run_with_timeout(loop, main(), 5)


@pytest.mark.parametrize("kind", KINDS)
def test_pause_resume_reading(loop, kind, tmp_path):
    async def main():
        server, tr, cp, sp = await stream_pair(loop, kind, tmp_path)
        st = sp.transport
        assert st.is_reading() is True
        st.pause_reading()
        assert st.is_reading() is False
        st.pause_reading()  # no-op
        tr.write(b"held back")
        await asyncio.sleep(0.05)
        assert sp.events == ["made"]
        st.resume_reading()
        assert st.is_reading() is True
        st.resume_reading()  # no-op
        assert await sp.wait_bytes(9) == b"held back"
        st.close()
        assert st.is_reading() is False
        await close_all(server, tr)

    run_with_timeout(loop, main(), 5)


def test_write_buffer_limits(loop):
    async def main():
        server, tr, cp, sp = await tcp_pair(loop)
        assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        assert tr.get_write_buffer_size() == 0
        tr.set_write_buffer_limits(high=100)
        assert tr.get_write_buffer_limits() == (25, 100)
        tr.set_write_buffer_limits(low=10)
        assert tr.get_write_buffer_limits() == (10, 40)
        tr.set_write_buffer_limits(high=50, low=50)
        assert tr.get_write_buffer_limits() == (50, 50)
        tr.set_write_buffer_limits(high=0)
        assert tr.get_write_buffer_limits() == (0, 0)
        tr.set_write_buffer_limits()
        assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        for kwargs, msg in [({"high": 1, "low": 2}, "high (1) must be >= low (2) must be >= 0"),
                            ({"high": 10, "low": -1}, "high (10) must be >= low (-1) must be >= 0"),
                            ({"high": -4}, "high (-4) must be >= low (-1) must be >= 0"),
                            # low = high // 4 is a floor division, as in asyncio.
                            ({"high": -1}, "high (-1) must be >= low (-1) must be >= 0"),
                            ({"high": -1.0}, "high (-1.0) must be >= low (-1.0) must be >= 0")]:
            with pytest.raises(ValueError) as info:
                tr.set_write_buffer_limits(**kwargs)
            assert str(info.value) == msg
        assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        # asyncio takes any number, works with Python's operators and keeps what it got.
        tr.set_write_buffer_limits(high=10.5)
        assert tr.get_write_buffer_limits() == (2.0, 10.5)
        assert type(tr.get_write_buffer_limits()[0]) is float
        tr.set_write_buffer_limits(low=2.5)
        assert tr.get_write_buffer_limits() == (2.5, 10.0)
        tr.set_write_buffer_limits(high=2**70)
        assert tr.get_write_buffer_limits() == (2**68, 2**70)
        tr.set_write_buffer_limits(high=float("inf"), low=0)
        assert tr.get_write_buffer_limits() == (0, float("inf"))
        for kwargs, msg in [({"high": "x"}, "unsupported operand type(s) for //: 'str' and 'int'"),
                            # high = 4 * low repeats the str; its comparison with 0 fails.
                            ({"low": "x"}, "'>=' not supported between instances of 'str' and 'int'")]:
            with pytest.raises(TypeError) as info:
                tr.set_write_buffer_limits(**kwargs)
            assert str(info.value) == msg
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=float("nan"))
        tr.set_write_buffer_limits()
        assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        await close_all(server, tr)

    run_with_timeout(loop, main(), 5)


@pytest.mark.parametrize("kind", KINDS)
def test_pause_resume_writing_at_watermarks(loop, kind, tmp_path):
    async def main():
        server, tr, cp, sp = await stream_pair(loop, kind, tmp_path)
        high, low = 256 * 1024, 64 * 1024
        tr.set_write_buffer_limits(high=high, low=low)
        sizes = []
        cp.pause_writing = lambda: sizes.append(("pause", tr.get_write_buffer_size()))
        cp.resume_writing = lambda: sizes.append(("resume", tr.get_write_buffer_size()))
        sp.transport.pause_reading()
        total = 0
        chunk = payload(64 * 1024)
        while not sizes:
            tr.write(chunk)
            total += len(chunk)
            assert total < 64 * MiB
        assert sizes[0][0] == "pause" and sizes[0][1] > high
        assert tr.get_write_buffer_size() > high
        # Writes past the high-water mark are still accepted (and no second pause).
        tr.write(chunk)
        total += len(chunk)
        assert len(sizes) == 1
        sp.transport.resume_reading()
        await sp.wait_bytes(total)
        assert len(sp.data) == total
        await asyncio.sleep(0.01)
        assert [k for k, _ in sizes] == ["pause", "resume"]
        assert sizes[1][1] <= low
        # Lowering the limits below the buffered size pauses at once.
        sp.transport.pause_reading()
        tr.set_write_buffer_limits(high=256 * MiB)
        fill_write_buffer(tr)
        tr.write(b"x")
        assert len(sizes) == 2
        tr.set_write_buffer_limits(high=1)
        del sizes[:2]
        assert [k for k, _ in sizes] == ["pause"]
        tr.abort()
        sp.transport.abort()
        await close_all(server)

    run_with_timeout(loop, main(), 5)


@pytest.mark.parametrize("kind", KINDS)
def test_get_extra_info(loop, kind, tmp_path):
    async def main():
        server, tr, cp, sp = await stream_pair(loop, kind, tmp_path)
        st = sp.transport
        sock = tr.get_extra_info("socket")
        assert sock.fileno() >= 0
        os.fstat(sock.fileno())
        assert sock.family == (socket.AF_INET if kind == "tcp" else socket.AF_UNIX)
        assert sock.type == socket.SOCK_STREAM
        assert tr.get_extra_info("sockname") == sock.getsockname()
        assert tr.get_extra_info("peername") == sock.getpeername()
        if kind == "tcp":
            assert tr.get_extra_info("peername") == st.get_extra_info("sockname")
            assert tr.get_extra_info("sockname") == st.get_extra_info("peername")
            assert tr.get_extra_info("peername") == server.sockets[0].getsockname()
        else:
            path = str(tmp_path / "s.sock")
            assert tr.get_extra_info("peername") == path
            assert st.get_extra_info("sockname") == path
        assert tr.get_extra_info("no such key") is None
        assert tr.get_extra_info("no such key", "dflt") == "dflt"
        # The socket keeps answering after the transport closed, as asyncio's.
        await close_all(server, tr, st)

    run_with_timeout(loop, main(), 5)


@pytest.mark.parametrize("kind", ["tcp", "unix", "udp", "pipe"])
def test_get_extra_info_is_base_transports(loop, kind, tmp_path, monkeypatch):
    """asyncio's socket, datagram and pipe transports inherit BaseTransport.get_extra_info,
    which reads self._extra (a dict): patching it (websockets' test_local_address patches
    asyncio.BaseTransport.get_extra_info) reaches them, and _extra answers get, [] and in."""
    from unittest.mock import patch

    async def main():
        server = peer = None
        if kind in ("tcp", "unix"):
            server, tr, _, sp = await stream_pair(loop, kind, tmp_path)
            peer = sp.transport
        elif kind == "udp":
            tr, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
            )
        else:
            r, w = os.pipe()
            tr, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(w, "wb"))
        try:
            names = ["pipe"] if kind == "pipe" else ["sockname", "socket"]
            for name in names:
                v = tr.get_extra_info(name)
                assert v is not None
                assert tr._extra.get(name) is v or tr._extra.get(name) == v
                assert tr._extra[name] == v and name in tr._extra
            assert tr._extra.get("nope", 7) == 7 and "nope" not in tr._extra
            with pytest.raises(KeyError):
                tr._extra["nope"]
            with patch("asyncio.BaseTransport.get_extra_info", return_value=("sock", 1234)) as m:
                assert tr.get_extra_info("sockname") == ("sock", 1234)
            m.assert_called_with("sockname")
        finally:
            if server is not None:
                await close_all(server, tr, peer)
            else:
                tr.close()
                await asyncio.sleep(0)
            if kind == "pipe":
                os.close(r)

    run_with_timeout(loop, main(), 5)


def test_set_protocol(loop):
    async def main():
        server, tr, cp, sp = await tcp_pair(loop)
        st = sp.transport
        assert st.get_protocol() is sp
        tr.write(b"one")
        await sp.wait_bytes(3)
        other = Recorder(loop)
        st.set_protocol(other)
        assert st.get_protocol() is other
        tr.write(b"two")
        await other.wait_bytes(3)
        assert bytes(sp.data) == b"one"
        assert bytes(other.data) == b"two"
        assert other.events == ["data"]  # set_protocol does not call connection_made
        tr.close()
        assert await other.lost is None
        assert "lost" not in sp.events
        await close_all(server)

    run_with_timeout(loop, main(), 5)


class BufProto(asyncio.BufferedProtocol):
    def __init__(self, loop, size):
        self.loop = loop
        self.buf = bytearray(size)
        self.data = bytearray()
        self.events = []
        self.updates = []
        self.lost = loop.create_future()
        self.transport = None

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport

    def get_buffer(self, sizehint):
        self.events.append("get_buffer")
        return self.buf

    def buffer_updated(self, nbytes):
        self.events.append("buffer_updated")
        self.updates.append(nbytes)
        self.data += self.buf[:nbytes]

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


@pytest.mark.parametrize("kind", KINDS)
def test_buffered_protocol(loop, kind, tmp_path):
    async def main():
        accepted = loop.create_future()

        def factory():
            p = BufProto(loop, 7)
            accepted.set_result(p)
            return p

        if kind == "tcp":
            server = await loop.create_server(factory, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        else:
            path = str(tmp_path / "b.sock")
            server = await loop.create_unix_server(factory, path)
            tr, _ = await loop.create_unix_connection(asyncio.Protocol, path)
        data = payload(30_000, 3)
        tr.write(data)
        tr.write_eof()
        p = await accepted
        exc = await p.lost
        assert exc is None
        assert bytes(p.data) == data
        assert all(1 <= n <= 7 for n in p.updates)
        assert p.events[0] == "made" and p.events[-2:] == ["eof", "lost"]
        # Every buffer_updated() follows its own get_buffer() (a read that finds EOF
        # calls get_buffer() and no buffer_updated()).
        body = p.events[1:-2]
        assert body.count("buffer_updated") == len(p.updates) >= 30_000 // 7
        for i, event in enumerate(body):
            if event == "buffer_updated":
                assert body[i - 1] == "get_buffer"
        await close_all(server, tr)

    run_with_timeout(loop, main(), 5)


def test_buffered_protocol_empty_buffer_is_fatal(loop):
    async def main():
        contexts = []
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        protos = []

        def factory():
            p = BufProto(loop, 0)
            protos.append(p)
            return p

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, cp = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        tr.write(b"data")
        await asyncio.sleep(0.01)
        exc = await protos[0].lost
        assert type(exc) is RuntimeError
        assert str(exc) == "get_buffer() returned an empty buffer"
        assert [c["message"] for c in contexts] == [
            "Fatal error: protocol.get_buffer() call failed."]
        assert contexts[0]["exception"] is exc
        assert contexts[0]["protocol"] is protos[0]
        await cp.lost
        await close_all(server, tr)

    run_with_timeout(loop, main(), 5)


def test_data_received_raising_is_fatal(loop):
    async def main():
        contexts = []
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        boom = ValueError("boom")

        class Bad(Recorder):
            def data_received(self, data):
                super().data_received(data)
                raise boom

        protos = []
        server = await loop.create_server(
            lambda: protos.append(Bad(loop)) or protos[-1], "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, cp = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        tr.write(b"x")
        assert await protos[0].lost is boom
        assert protos[0].events == ["made", "data", "lost"]
        assert [c["message"] for c in contexts] == [
            "Fatal error: protocol.data_received() call failed."]
        assert contexts[0]["exception"] is boom
        assert contexts[0]["transport"] is protos[0].transport
        await cp.lost
        await close_all(server, tr)

    run_with_timeout(loop, main(), 5)


def test_callback_order_over_a_conversation(loop):
    async def main():
        server, tr, cp, sp = await tcp_pair(loop, echo=True)
        for i in range(20):
            msg = f"message {i};".encode()
            tr.write(msg)
            await cp.wait_bytes(len(cp.data) + len(msg))
        tr.write_eof()
        await cp.lost
        await sp.lost
        for p in (cp, sp):
            assert p.events[0] == "made"
            assert p.events.count("made") == 1
            assert p.events[-1] == "lost"
            assert p.events.count("lost") == 1
            assert p.events.count("eof") == 1
            assert p.events.index("eof") > max(i for i, e in enumerate(p.events) if e == "data")
        assert bytes(cp.data) == bytes(sp.data)
        await close_all(server)

    run_with_timeout(loop, main(), 5)


def test_add_reader_on_transport_fd(loop, tmp_path):
    async def main():
        server, tr, cp, sp = await tcp_pair(loop)
        fd = tr.get_extra_info("socket").fileno()
        for method, args in [(loop.add_reader, (fd, print)), (loop.add_writer, (fd, print)),
                             (loop.remove_reader, (fd,)), (loop.remove_writer, (fd,))]:
            with pytest.raises(RuntimeError) as info:
                method(*args)
            assert str(info.value) == f"File descriptor {fd!r} is used by transport {tr!r}"
        # The server side's accepted socket is guarded too.
        sfd = sp.transport.get_extra_info("socket").fileno()
        with pytest.raises(RuntimeError):
            loop.add_reader(sfd, print)
        # Once the transport is closed the fd is free again.
        tr.write(b"ping")
        await sp.wait_bytes(4)
        await close_all(server, tr)
        await cp.lost

    run_with_timeout(loop, main(), 5)


def test_float_watermarks_pause_and_resume_at_their_floors(loop):
    # A buffered size exceeds 10.5 exactly when it exceeds 10: pause_writing at 11 bytes,
    # resume_writing once down to low (2.5 -> 2 bytes or fewer).
    async def main():
        server, tr, cp, sp = await tcp_pair(loop)
        events = []
        cp.pause_writing = lambda: events.append(("pause", tr.get_write_buffer_size()))
        cp.resume_writing = lambda: events.append(("resume", tr.get_write_buffer_size()))
        sp.transport.pause_reading()
        tr.set_write_buffer_limits(high=256 * MiB)
        fill_write_buffer(tr)
        tr.set_write_buffer_limits(high=float(tr.get_write_buffer_size()) + 0.5, low=2.5)
        assert events == []
        tr.write(b"x")
        assert [k for k, _ in events] == ["pause"]
        sp.transport.resume_reading()
        await sp.wait_bytes(1)
        for _ in range(500):
            if len(events) == 2:
                break
            await asyncio.sleep(0.01)
        assert events[1] == ("resume", 0)
        tr.abort()
        await close_all(server)

    run_with_timeout(loop, main(), 10)


def test_non_contiguous_memoryview_is_a_fatal_write_error(loop):
    # asyncio's write() hands a non-C-contiguous memoryview to sock.send() inside its try:
    # the BufferError closes the connection through _fatal_error, the call returns.
    async def main():
        server, tr, cp, sp = await tcp_pair(loop)
        errors = []
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
        assert tr.write(memoryview(b"abcdef")[::2]) is None
        assert isinstance(await cp.lost, BufferError)
        assert [e["message"] for e in errors] == ["Fatal write error on socket transport"]
        assert tr.is_closing()
        await close_all(server)

    run_with_timeout(loop, main(), 5)
