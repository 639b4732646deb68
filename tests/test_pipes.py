"""Pipe transports (issue 9): ``loop.connect_read_pipe`` / ``loop.connect_write_pipe`` over
pipes, FIFOs, sockets, character devices and PTYs, checked against stock asyncio's
``_UnixReadPipeTransport`` / ``_UnixWritePipeTransport``: data and EOF order, reading
paused and resumed, back-pressure, ``write_eof``/``close``/``abort``, the reader going
away, errors, the fd released at once, and the unclosed-transport warning."""

from __future__ import annotations

import asyncio
import errno
import gc
import hashlib
import logging
import os
import socket
import tty
import warnings

import pytest

from conftest import run_with_timeout
from netutil import write_goes_through_the_class

MiB = 1024 * 1024


def payload(n: int, seed: int = 0) -> bytes:
    """``n`` bytes that differ by position, so a reordering or a loss shows."""
    block = bytes((i * 31 + seed) & 0xFF for i in range(251))
    return (block * (n // len(block) + 1))[:n]


class ReadProto(asyncio.Protocol):
    """Records every callback, in order."""

    def __init__(self, loop):
        self.events = []
        self.data = bytearray()
        self.transport = None
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        assert isinstance(data, bytes)
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.data += data

    def eof_received(self):
        self.events.append("eof")
        return True  # ignored by pipe transports: they close anyway

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


class WriteProto(asyncio.BaseProtocol):
    def __init__(self, loop):
        self.events = []
        self.transport = None
        self.lost = loop.create_future()
        self.sizes_at_resume = []

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")
        self.sizes_at_resume.append(self.transport.get_write_buffer_size())

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


def ident(fd: int):
    """What ``fd`` names (its device and inode), to tell it from a later reuse of the number."""
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def is_open(fd: int, what) -> bool:
    """Whether ``fd`` still names ``what`` (from :func:`ident`)."""
    try:
        return ident(fd) == what
    except OSError as e:
        assert e.errno == errno.EBADF
        return False


def fill_pipe(tr, limit=64 * MiB) -> bytes:
    """Write until the transport queues bytes in user space (nobody reads the pipe)."""
    sent = bytearray()
    i = 0
    while tr.get_write_buffer_size() == 0:
        data = payload(256 * 1024, seed=i)
        tr.write(data)
        sent += data
        i += 1
        assert len(sent) < limit, "the kernel took everything: no back-pressure"
    return bytes(sent)


def drain_fd(fd: int) -> bytes:
    """Everything readable from non-blocking ``fd`` now."""
    out = bytearray()
    while True:
        try:
            chunk = os.read(fd, MiB)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


@pytest.fixture
def pipe_fds():
    """``(r, w)`` of an os.pipe(); whatever the test did not hand over is closed after."""
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


# ----- read pipes ----------------------------------------------------------------------


def test_read_pipe_data_then_eof_then_lost(loop, pipe_fds):
    r, w = pipe_fds
    pipeobj = open(r, "rb", 0)
    proto = ReadProto(loop)

    async def main():
        tr, p = await loop.connect_read_pipe(lambda: proto, pipeobj)
        assert p is proto and tr is proto.transport
        # connection_made ran before the waiter woke connect_read_pipe up.
        assert proto.events == ["made"]
        assert isinstance(tr, asyncio.ReadTransport)
        assert tr.get_extra_info("pipe") is pipeobj
        assert tr.get_extra_info("nope", 42) == 42
        assert tr.is_reading() and not tr.is_closing()
        assert not os.get_blocking(r)
        os.write(w, b"hello ")
        os.write(w, b"world")
        os.close(w)
        exc = await proto.lost
        assert exc is None
        assert proto.events == ["made", "data", "eof", "lost"]
        assert bytes(proto.data) == b"hello world"
        assert tr.is_closing() and not tr.is_reading()
        assert pipeobj.closed
        return tr

    tr = run_with_timeout(loop, main())
    assert "closed" in repr(tr)
    tr.close()  # a no-op once closed


def test_read_pipe_eof_received_runs_in_its_own_callback(loop, pipe_fds):
    """asyncio schedules eof_received() and connection_lost() with call_soon at EOF: a
    callback scheduled by data_received() runs before eof_received()."""
    r, w = pipe_fds
    order = []

    class P(ReadProto):
        def data_received(self, data):
            super().data_received(data)
            loop.call_soon(order.append, "soon")

        def eof_received(self):
            order.append("eof")

        def connection_lost(self, exc):
            order.append("lost")
            super().connection_lost(exc)

    async def main():
        proto = P(loop)
        await loop.connect_read_pipe(lambda: proto, open(r, "rb", 0))
        os.write(w, b"x")
        await asyncio.sleep(0.05)
        os.close(w)
        await proto.lost

    run_with_timeout(loop, main())
    assert order == ["soon", "eof", "lost"]


def test_read_pipe_pause_resume(loop, pipe_fds):
    r, w = pipe_fds
    proto = ReadProto(loop)

    async def main():
        tr, _ = await loop.connect_read_pipe(lambda: proto, open(r, "rb", 0))
        tr.pause_reading()
        assert not tr.is_reading()
        tr.pause_reading()  # idempotent
        os.write(w, b"abc")
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert proto.data == b""
        tr.resume_reading()
        assert tr.is_reading()
        tr.resume_reading()
        for _ in range(100):
            if proto.data:
                break
            await asyncio.sleep(0.01)
        assert proto.data == b"abc"
        # Paused at EOF: EOF is seen only once reading resumes.
        tr.pause_reading()
        os.close(w)
        await asyncio.sleep(0.05)
        assert not proto.lost.done()
        tr.resume_reading()
        assert await proto.lost is None
        assert proto.events == ["made", "data", "eof", "lost"]

    run_with_timeout(loop, main())


def test_read_pipe_close(loop, pipe_fds):
    r, w = pipe_fds
    proto = ReadProto(loop)

    async def main():
        tr, _ = await loop.connect_read_pipe(lambda: proto, open(r, "rb", 0))
        os.write(w, b"unread")
        tr.close()
        assert tr.is_closing() and not tr.is_reading()
        tr.pause_reading()  # no-ops once closing
        tr.resume_reading()
        assert not tr.is_reading()
        assert await proto.lost is None
        assert proto.events == ["made", "lost"]

    run_with_timeout(loop, main())


def test_read_pipe_protocol_error_goes_to_handler(loop, pipe_fds):
    r, w = pipe_fds
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))

    class P(ReadProto):
        def data_received(self, data):
            super().data_received(data)
            if data == b"boom":
                raise RuntimeError("boom")

    async def main():
        proto = P(loop)
        tr, _ = await loop.connect_read_pipe(lambda: proto, open(r, "rb", 0))
        os.write(w, b"boom")
        for _ in range(100):
            if errors:
                break
            await asyncio.sleep(0.01)
        # As asyncio's Handle._run reports the transport's _read_ready callback (asyncio's
        # class is _UnixReadPipeTransport, ferroloop's _ReadPipeTransport).
        ctx = errors[0]
        assert sorted(ctx) == ["exception", "handle", "message"]
        assert isinstance(ctx["handle"], asyncio.Handle)
        assert ctx["handle"]._callback == tr._read_ready
        assert ctx["message"] == f"Exception in callback {type(tr).__name__}._read_ready()"
        # The transport reads on (the error escaped a callback, not a fatal error).
        assert not tr.is_closing()
        os.write(w, b"more")
        os.close(w)
        assert await proto.lost is None
        assert proto.data == b"boommore"

    run_with_timeout(loop, main())
    assert len(errors) == 1
    assert isinstance(errors[0]["exception"], RuntimeError)


def test_read_pipe_fd_released_at_once(loop, pipe_fds):
    r, w = pipe_fds

    async def main():
        proto = ReadProto(loop)
        tr, _ = await loop.connect_read_pipe(lambda: proto, open(r, "rb", 0))
        tr.close()
        assert is_open(r, what)
        await proto.lost
        # Closed by the time connection_lost() returned, in the same callback.
        assert not is_open(r, what)

    what = ident(r)
    run_with_timeout(loop, main())


# ----- write pipes ---------------------------------------------------------------------


def test_write_pipe_basics(loop, pipe_fds):
    r, w = pipe_fds
    pipeobj = open(w, "wb", 0)
    proto = WriteProto(loop)

    async def main():
        tr, p = await loop.connect_write_pipe(lambda: proto, pipeobj)
        assert p is proto and proto.events == ["made"]
        assert isinstance(tr, asyncio.WriteTransport)
        assert tr.get_extra_info("pipe") is pipeobj
        assert tr.can_write_eof()
        assert tr.get_write_buffer_size() == 0
        assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        tr.set_write_buffer_limits(high=1000)
        assert tr.get_write_buffer_limits() == (250, 1000)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=1, low=2)
        tr.write(b"a")
        tr.write(bytearray(b"bc"))
        tr.write(memoryview(b"xdefx")[1:4])
        tr.writelines([b"g", bytearray(b"h"), memoryview(b"i")])
        tr.write(b"")
        # Written at once: nothing queued.
        assert tr.get_write_buffer_size() == 0
        assert os.read(r, 100) == b"abcdefghi"
        with pytest.raises(AssertionError):
            tr.write("text")
        assert "idle" in repr(tr) and "bufsize=0" in repr(tr) and f"fd={w}" in repr(tr)
        tr.close()
        assert tr.is_closing()
        assert await proto.lost is None
        assert proto.events == ["made", "lost"]
        assert pipeobj.closed
        assert os.read(r, 100) == b""  # EOF for the reader

    run_with_timeout(loop, main())


def test_write_pipe_write_is_the_class_method(loop, pipe_fds):
    """``write`` is found on the transport's class, as asyncio's is: not an instance
    attribute that would hide a subclass's or a patched ``write``; and it takes asyncio's
    arguments only."""
    r, w = pipe_fds

    async def main():
        tr, _ = await loop.connect_write_pipe(lambda: WriteProto(loop), open(w, "wb", 0))
        assert write_goes_through_the_class(tr, b"via the class") == [b"via the class"]
        tr.write(data=b"+kw")
        with pytest.raises(TypeError):
            tr.write()
        with pytest.raises(TypeError):
            tr.write(b"a", b"b")
        assert os.read(r, 100) == b"via the class+kw"
        tr.close()

    run_with_timeout(loop, main())


def test_write_pipe_non_contiguous_memoryview_is_fatal(loop, pipe_fds):
    # asyncio's os.write(fd, data) raises the BufferError inside its try: a fatal error of
    # the pipe ("Fatal write error on pipe transport"), the write call itself returns.
    r, w = pipe_fds
    proto = WriteProto(loop)

    async def main():
        errors = []
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
        tr, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        tr.write(memoryview(b"")[::2])
        assert tr.write(memoryview(b"abcdef")[::2]) is None
        assert isinstance(await proto.lost, BufferError)
        assert [e["message"] for e in errors] == ["Fatal write error on pipe transport"]
        assert os.read(r, 100) == b""

    run_with_timeout(loop, main())


def test_write_pipe_backpressure_8mib_checksum(loop, pipe_fds):
    """8 MiB through a pipe to a slow reader: every byte arrives in order, the writer is
    paused above the high watermark and resumed once its queue is empty."""
    r, w = pipe_fds
    total = 8 * MiB
    data = payload(total, seed=7)

    async def main():
        wproto = WriteProto(loop)
        rproto = ReadProto(loop)
        wtr, _ = await loop.connect_write_pipe(lambda: wproto, open(w, "wb", 0))
        rtr, _ = await loop.connect_read_pipe(lambda: rproto, open(r, "rb", 0))
        can_write = asyncio.Event()
        can_write.set()
        max_queued = 0

        orig_pause, orig_resume = wproto.pause_writing, wproto.resume_writing

        def pause():
            orig_pause()
            can_write.clear()

        def resume():
            orig_resume()
            can_write.set()

        wproto.pause_writing, wproto.resume_writing = pause, resume

        async def slow_reader():
            # Pause reading for a moment after every 512 KiB received.
            mark = 0
            while not rproto.lost.done():
                if len(rproto.data) - mark >= 512 * 1024:
                    mark = len(rproto.data)
                    rtr.pause_reading()
                    await asyncio.sleep(0.002)
                    rtr.resume_reading()
                await asyncio.sleep(0)

        reader = asyncio.ensure_future(slow_reader())
        chunk = 100_000
        for off in range(0, total, chunk):
            await can_write.wait()
            wtr.write(data[off:off + chunk])
            max_queued = max(max_queued, wtr.get_write_buffer_size())
        wtr.close()
        assert await wproto.lost is None
        assert await rproto.lost is None
        await reader
        return max_queued, wproto

    max_queued, wproto = run_with_timeout(loop, main(), timeout=60)
    assert "pause" in wproto.events and "resume" in wproto.events
    # The writer stopped writing once paused: never much more than the high watermark.
    assert max_queued <= 64 * 1024 + 100_000
    # asyncio's pipe transport resumes the protocol only once its queue is empty.
    assert set(wproto.sizes_at_resume) == {0}


def test_write_pipe_backpressure_checksum_end_to_end(loop, pipe_fds):
    """The same payload, read back by a plain reader, hashed."""
    r, w = pipe_fds
    data = os.urandom(2 * MiB)

    async def main():
        wproto = WriteProto(loop)
        rproto = ReadProto(loop)
        wtr, _ = await loop.connect_write_pipe(lambda: wproto, open(w, "wb", 0))
        await loop.connect_read_pipe(lambda: rproto, open(r, "rb", 0))
        wtr.write(data)  # far more than the pipe holds: queued
        assert wtr.get_write_buffer_size() > 0
        assert wproto.events == ["made", "pause"]
        wtr.write_eof()
        assert await rproto.lost is None
        assert await wproto.lost is None
        return hashlib.sha256(rproto.data).hexdigest()

    assert run_with_timeout(loop, main()) == hashlib.sha256(data).hexdigest()


def test_write_eof_flushes_then_closes(loop, pipe_fds):
    r, w = pipe_fds
    os.set_blocking(r, False)
    proto = WriteProto(loop)
    pipeobj = open(w, "wb", 0)

    async def main():
        tr, _ = await loop.connect_write_pipe(lambda: proto, pipeobj)
        sent = fill_pipe(tr)
        queued = tr.get_write_buffer_size()
        assert queued > 0
        assert "polling" in repr(tr)
        tr.write_eof()
        assert tr.is_closing()
        tr.write_eof()  # once only
        # Writes after write_eof()/close() are dropped, not queued, no exception.
        tr.write(b"dropped")
        assert tr.get_write_buffer_size() == queued
        assert not proto.lost.done()
        received = bytearray()
        while not proto.lost.done():
            received += drain_fd(r)
            await asyncio.sleep(0.001)
        assert proto.lost.result() is None
        received += drain_fd(r)
        assert bytes(received) == sent
        assert pipeobj.closed
        assert os.read(r, 10) == b""

    run_with_timeout(loop, main())


def test_queued_data_survives_mutation_of_the_written_buffer(loop, pipe_fds):
    """Queued bytes are the bytes at write() time: a bytearray/memoryview is copied (a
    large ``bytes`` object, immutable, may be kept by reference)."""
    r, w = pipe_fds
    os.set_blocking(r, False)

    async def main():
        proto = WriteProto(loop)
        tr, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        sent = bytearray(fill_pipe(tr))
        for kind in (bytearray, memoryview, bytes):
            buf = bytearray(payload(100_000, seed=len(sent)))
            obj = buf if kind is bytearray else memoryview(buf) if kind is memoryview else bytes(buf)
            tr.write(obj)
            sent += buf
            buf[:] = b"\0" * len(buf)  # a bytes object is unaffected; the others were copied
        tr.close()
        received = bytearray()
        while not proto.lost.done():
            received += drain_fd(r)
            await asyncio.sleep(0.001)
        received += drain_fd(r)
        assert received == sent

    run_with_timeout(loop, main())


def test_queued_bytes_subclass_with_del(loop, pipe_fds):
    """A queued bytes subclass whose __del__ touches the transport when abort() drops it."""
    r, w = pipe_fds
    seen = []

    async def main():
        proto = WriteProto(loop)
        tr, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))

        class B(bytes):
            def __del__(self):
                seen.append(tr.get_write_buffer_size())

        fill_pipe(tr)
        tr.write(B(payload(100_000)))
        tr.abort()
        assert await proto.lost is None

    run_with_timeout(loop, main())
    assert len(seen) == 1


def test_writes_after_close_warn_from_the_sixth(loop, pipe_fds, caplog):
    r, w = pipe_fds

    async def main():
        proto = WriteProto(loop)
        tr, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        tr.close()
        await proto.lost
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(5):
                tr.write(b"x")
            assert not caplog.records
            tr.write(b"x")
        assert [rec.getMessage() for rec in caplog.records] == [
            "pipe closed by peer or os.write(pipe, data) raised exception."]

    run_with_timeout(loop, main())


def test_close_flushes_then_releases_fd(loop, pipe_fds):
    r, w = pipe_fds
    os.set_blocking(r, False)

    async def main():
        proto = WriteProto(loop)
        tr, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        sent = fill_pipe(tr)
        tr.close()
        assert "closing" in repr(tr)
        received = bytearray()
        while not proto.lost.done():
            received += drain_fd(r)
            await asyncio.sleep(0.001)
        received += drain_fd(r)
        assert bytes(received) == sent
        assert not is_open(w, what)
        assert proto.events[-1] == "lost"

    what = ident(w)
    run_with_timeout(loop, main())


def test_abort_drops_queued_data(loop, pipe_fds):
    r, w = pipe_fds
    os.set_blocking(r, False)

    async def main():
        proto = WriteProto(loop)
        tr, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        sent = fill_pipe(tr)
        assert tr.get_write_buffer_size() > 0
        tr.abort()
        assert tr.is_closing()
        assert tr.get_write_buffer_size() == 0
        assert await proto.lost is None
        received = drain_fd(r)
        assert len(received) < len(sent)
        assert sent.startswith(received)
        assert not is_open(w, what)

    what = ident(w)
    run_with_timeout(loop, main())


def test_reader_closes_with_queued_data_broken_pipe(loop, pipe_fds):
    r, w = pipe_fds
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))

    async def main():
        proto = WriteProto(loop)
        tr, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        fill_pipe(tr)
        os.close(r)
        exc = await proto.lost
        assert isinstance(exc, BrokenPipeError)
        assert tr.get_write_buffer_size() == 0
        assert not is_open(w, what)

    what = ident(w)
    run_with_timeout(loop, main())
    assert errors == []  # an OSError of a pipe is not reported outside debug mode


def test_reader_closes_with_nothing_queued(loop, pipe_fds):
    """The write pipe watches its fd for reading: it notices the reader's close at once,
    with no write, and closes without error."""
    r, w = pipe_fds

    async def main():
        proto = WriteProto(loop)
        tr, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        os.close(r)
        assert await proto.lost is None
        assert tr.is_closing()

    run_with_timeout(loop, main())


def test_write_pipe_over_socket_peer_closes(loop):
    rsock, wsock = socket.socketpair()
    proto = WriteProto(loop)

    async def main():
        tr, _ = await loop.connect_write_pipe(lambda: proto, open(wsock.detach(), "wb", 0))
        tr.write(b"1")
        rsock.setblocking(False)
        assert await loop.sock_recv(rsock, 10) == b"1"
        rsock.close()
        assert await proto.lost is None

    try:
        run_with_timeout(loop, main())
    finally:
        rsock.close()


def test_write_error_after_reader_gone_is_broken_pipe(loop):
    """A write that fails (EPIPE) closes the transport with the error; only a debug log."""
    rsock, wsock = socket.socketpair()
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    proto = WriteProto(loop)
    rsock.close()

    async def main():
        tr, _ = await loop.connect_write_pipe(lambda: proto, open(wsock.detach(), "wb", 0))
        # The watch for reading fires at the first poll; write before it.
        tr.write(b"x")
        exc = await proto.lost
        assert isinstance(exc, BrokenPipeError)

    run_with_timeout(loop, main())
    assert errors == []


# ----- other kinds of fds ---------------------------------------------------------------


def test_fifo(loop, tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    data = payload(MiB, seed=3)

    async def main():
        rproto, wproto = ReadProto(loop), WriteProto(loop)
        await loop.connect_read_pipe(lambda: rproto, open(rfd, "rb", 0))
        wtr, _ = await loop.connect_write_pipe(lambda: wproto, open(wfd, "wb", 0))
        wtr.write(data)
        wtr.close()
        assert await wproto.lost is None
        assert await rproto.lost is None
        assert bytes(rproto.data) == data
        assert rproto.events == ["made", "data", "eof", "lost"]

    run_with_timeout(loop, main())


def test_pty_both_ways_and_eio_at_close(loop):
    """A PTY: a write pipe on the slave, a read pipe on the master. When the slave side
    closes, reading the master fails with EIO: connection_lost(OSError(EIO)), with no
    report to the exception handler outside debug mode."""
    master, slave = os.openpty()
    tty.setraw(slave)
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))

    async def main():
        rproto, wproto = ReadProto(loop), WriteProto(loop)
        rtr, _ = await loop.connect_read_pipe(lambda: rproto, open(master, "rb", 0))
        wtr, _ = await loop.connect_write_pipe(lambda: wproto, open(slave, "wb", 0))
        wtr.write(b"through the pty")
        for _ in range(200):
            if len(rproto.data) >= 15:
                break
            await asyncio.sleep(0.01)
        assert bytes(rproto.data) == b"through the pty"
        wtr.close()
        assert await wproto.lost is None
        exc = await rproto.lost
        assert isinstance(exc, OSError) and exc.errno == errno.EIO
        assert rproto.events == ["made", "data", "lost"]
        assert rtr.is_closing()

    run_with_timeout(loop, main())
    assert errors == []


def test_pty_master_both_ways_through_a_dup(loop):
    """One PTY master read and written by two transports, the writer on a dup of the fd."""
    master, slave = os.openpty()
    tty.setraw(slave)
    wmaster = os.dup(master)

    async def main():
        rproto, wproto = ReadProto(loop), WriteProto(loop)
        rtr, _ = await loop.connect_read_pipe(lambda: rproto, open(master, "rb", 0))
        wtr, _ = await loop.connect_write_pipe(lambda: wproto, open(wmaster, "wb", 0))
        wtr.write(b"ping")
        os.set_blocking(slave, False)
        got = b""
        while len(got) < 4:
            await asyncio.sleep(0.01)
            got += drain_fd(slave)
        assert got == b"ping"
        os.write(slave, b"pong")
        for _ in range(200):
            if len(rproto.data) >= 4:
                break
            await asyncio.sleep(0.01)
        assert rproto.data == b"pong"
        wtr.close()
        rtr.close()
        await wproto.lost
        await rproto.lost

    try:
        run_with_timeout(loop, main())
    finally:
        os.close(slave)


def test_one_fd_for_two_pipe_transports(loop, loop_name):
    """Known difference: the reactor keeps one owner per fd, so ferroloop refuses a second
    transport over an fd another transport uses (RuntimeError, as add_reader on it);
    asyncio's selector lets a reader and a writer share it. A dup of the fd works on both
    (test above)."""
    master, slave = os.openpty()
    rpipe, wpipe = open(master, "rb", 0), open(master, "wb", 0, closefd=False)

    async def main():
        rproto, wproto = ReadProto(loop), WriteProto(loop)
        rtr, _ = await loop.connect_read_pipe(lambda: rproto, rpipe)
        if loop_name == "ferroloop":
            with pytest.raises(RuntimeError, match=f"^File descriptor {master} is used by transport "):
                await loop.connect_write_pipe(lambda: wproto, wpipe)
            assert rtr.is_reading()
        else:
            wtr, _ = await loop.connect_write_pipe(lambda: wproto, wpipe)
            wtr.close()
            await wproto.lost
        rtr.close()
        await rproto.lost

    try:
        run_with_timeout(loop, main())
    finally:
        os.close(slave)


def test_char_device_write(loop):
    """A write pipe over a character device (/dev/null): written at once, never polled
    (epoll refuses /dev/null), closed with no error."""
    null = open("/dev/null", "wb", 0)

    async def main():
        wproto = WriteProto(loop)
        wtr, _ = await loop.connect_write_pipe(lambda: wproto, null)
        wtr.write(b"x" * MiB)
        assert wtr.get_write_buffer_size() == 0
        wtr.close()
        assert await wproto.lost is None
        assert null.closed

    run_with_timeout(loop, main())


def test_char_device_epoll_refuses_is_reported(loop):
    """A read pipe over /dev/zero, which epoll refuses: asyncio's add_reader (called soon
    after connection_made) raises PermissionError into the exception handler, and nothing
    is ever read. The transport stays open until closed."""
    zero = open("/dev/zero", "rb", 0)
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx.get("exception")))

    async def main():
        proto = asyncio.Protocol()
        tr, _ = await loop.connect_read_pipe(lambda: proto, zero)
        for _ in range(5):
            await asyncio.sleep(0)
        assert not tr.is_closing()
        tr.close()
        await asyncio.sleep(0)

    try:
        run_with_timeout(loop, main())
    finally:
        zero.close()
    assert len(errors) == 1 and isinstance(errors[0], PermissionError), errors


def test_regular_file_is_refused(loop, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")

    async def main():
        with open(path, "rb") as f:
            with pytest.raises(ValueError, match=r"^Pipe transport is for pipes/sockets only\.$"):
                await loop.connect_read_pipe(asyncio.Protocol, f)
            assert not f.closed
        with open(path, "wb") as f:
            with pytest.raises(
                    ValueError,
                    match=r"^Pipe transport is only for pipes, sockets and character devices$"):
                await loop.connect_write_pipe(asyncio.BaseProtocol, f)
            assert not f.closed

    run_with_timeout(loop, main())


# ----- lifetime ---------------------------------------------------------------------------


def test_unclosed_transports_warn(loop_factory, pipe_fds):
    r, w = pipe_fds
    what = ident(r), ident(w)
    gc.collect()
    loop = loop_factory()
    try:
        async def main():
            await loop.connect_read_pipe(lambda: ReadProto(loop), open(r, "rb", 0))
            await loop.connect_write_pipe(lambda: WriteProto(loop), open(w, "wb", 0))

        loop.run_until_complete(main())
    finally:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loop.close()
            del loop
            gc.collect()
    messages = [str(c.message) for c in caught if c.category is ResourceWarning]
    unclosed = [m for m in messages if m.startswith("unclosed transport <")
                and (f"fd={r} " in m or f"fd={w} " in m)]
    assert len(unclosed) == 2, messages
    # The transports closed their pipes.
    assert not is_open(r, what[0]) and not is_open(w, what[1])


def test_repr_after_loop_closed_and_pipe_forgotten(loop_factory, pipe_fds):
    """asyncio's test_unclosed_pipe_transport: repr says 'open' once the loop is closed, and
    ``transport._pipe = None`` silences the unclosed warning of a pipe closed by hand."""
    r, w = pipe_fds
    loop = loop_factory()
    rpipe, wpipe = open(r, "rb", 0), open(w, "wb", 0)

    async def main():
        rt, _ = await loop.connect_read_pipe(lambda: ReadProto(loop), rpipe)
        wt, _ = await loop.connect_write_pipe(lambda: WriteProto(loop), wpipe)
        return rt, wt

    rt, wt = loop.run_until_complete(main())
    assert "polling" in repr(rt) and "idle" in repr(wt)
    loop.close()
    assert "open" in repr(rt) and "open" in repr(wt)
    rpipe.close()
    wpipe.close()
    rt._pipe = None
    wt._pipe = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del rt, wt
        gc.collect()
    assert not [c for c in caught if c.category is ResourceWarning]


def test_pipe_transports_for_subprocess_code(loop, pipe_fds):
    """What asyncio's base_subprocess and subprocess modules use of a pipe transport."""
    r, w = pipe_fds

    async def main():
        rproto, wproto = ReadProto(loop), WriteProto(loop)
        rt, _ = await loop.connect_read_pipe(lambda: rproto, open(r, "rb", 0))
        wt, _ = await loop.connect_write_pipe(lambda: wproto, open(w, "wb", 0))
        assert rt._protocol is rproto and rt.get_protocol() is rproto
        assert wt._protocol is wproto
        other = ReadProto(loop)
        rt.set_protocol(other)
        assert rt.get_protocol() is other
        rt.set_protocol(rproto)
        wt.write(b"abc")
        wt.close()
        assert await rproto.lost is None
        assert rproto.data == b"abc"
        assert rt.is_closing() and wt.is_closing()

    run_with_timeout(loop, main())


def test_stream_reader_over_pipe(loop, pipe_fds):
    """asyncio.StreamReader over a read pipe, with pause/resume from its limit."""
    r, w = pipe_fds
    data = payload(MiB, seed=5)

    async def main():
        reader = asyncio.StreamReader(limit=1024)
        proto = asyncio.StreamReaderProtocol(reader)
        tr, _ = await loop.connect_read_pipe(lambda: proto, open(r, "rb", 0))
        wproto = WriteProto(loop)
        wt, _ = await loop.connect_write_pipe(lambda: wproto, open(w, "wb", 0))
        wt.write(data)
        wt.close()
        got = bytearray()
        while chunk := await reader.read(10_000):
            got += chunk
        assert bytes(got) == data
        assert await wproto.lost is None

    run_with_timeout(loop, main())
