"""The transport feeds asyncio's own StreamReader itself (src/net/stream/reader.rs): what
``StreamReaderProtocol.data_received`` -> ``StreamReader.feed_data`` do, without their
Python frames. Each test runs on stock asyncio too (the reference): overrides of those
methods are still called, back-pressure, cancelled reads and the error cases behave as
asyncio's."""

import asyncio
import contextlib
import hashlib
import shutil
import sys

import pytest

from conftest import requires_native_net, run_with_timeout
from test_tls import certfiles, client_ctx, server_ctx  # noqa: F401 (fixtures)

pytestmark = requires_native_net

StreamReader = asyncio.StreamReader
StreamReaderProtocol = asyncio.StreamReaderProtocol


async def connected_pair(tls=None):
    """A client (reader, writer) and the server's (reader, writer), over TCP; over TLS
    with ``tls=(server_ctx, client_ctx)``."""
    accepted = asyncio.get_running_loop().create_future()

    def on_client(reader, writer):
        accepted.set_result((reader, writer))

    server_ssl, client_ssl = tls or (None, None)
    server = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=server_ssl)
    reader, writer = await asyncio.open_connection(
        *server.sockets[0].getsockname(), ssl=client_ssl,
        server_hostname="localhost" if client_ssl else None)
    peer = await accepted
    return server, (reader, writer), peer


async def close_all(server, *writers):
    for w in writers:
        w.close()
    server.close()
    await server.wait_closed()


def payload(n, seed=0):
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


@contextlib.contextmanager
def stream_frames():
    """Counts the calls of asyncio's streams.py data_received and feed_data meanwhile."""
    calls = {"data_received": 0, "feed_data": 0}
    streams_file = asyncio.streams.__file__

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == streams_file:
            if frame.f_code.co_name in calls:
                calls[frame.f_code.co_name] += 1

    sys.setprofile(profile)
    try:
        yield calls
    finally:
        sys.setprofile(None)


def assert_stream_frames(calls, loop_name, reads):
    """asyncio ran data_received and feed_data for each of ``reads`` reads; ferroloop's
    transport did their work without them."""
    if loop_name == "asyncio":
        assert calls["data_received"] >= reads and calls["feed_data"] >= reads
    else:
        assert calls == {"data_received": 0, "feed_data": 0}


def record_feed_data(reader, seen):
    """Overrides ``reader.feed_data`` on the instance (as public code does to meter a
    connection): each chunk goes to ``seen``, then to the original."""
    original = reader.feed_data

    def feed_data(data):
        seen.append(bytes(data))
        original(data)

    reader.feed_data = feed_data


OVERRIDES = [
    "instance_feed_data",
    "instance_data_received",
    "class_feed_data",
    "class_data_received",
    "class_wakeup_waiter",
    "reader_subclass",
]


@pytest.mark.parametrize("how", OVERRIDES)
def test_overrides_of_the_stream_methods_are_called(loop, how, monkeypatch):
    """Public code wraps reader.feed_data or protocol.data_received (to meter or log a
    connection); each wrapper sees every byte, in order, and reads still work."""
    seen = []

    def recording(original):
        wakeup = original.__name__ == "_wakeup_waiter"

        def wrapper(self, *args):
            if wakeup:
                seen.append(len(self._buffer))
            else:
                seen.append(bytes(args[0]))
            return original(self, *args)

        return wrapper

    async def main():
        if how == "reader_subclass":
            # A reader of one's own class, on a connection made by hand.
            class Recording(StreamReader):
                feed_data = recording(StreamReader.feed_data)

            async def send_and_close(r, w):
                w.write(b"abc" * 1000)
                await w.drain()
                w.close()

            lp = asyncio.get_running_loop()
            server = await asyncio.start_server(send_and_close, "127.0.0.1", 0)
            sub_reader = Recording(loop=lp)
            transport, _ = await lp.create_connection(
                lambda: StreamReaderProtocol(sub_reader, loop=lp),
                *server.sockets[0].getsockname(),
            )
            got = await sub_reader.read()
            assert got == b"abc" * 1000
            assert b"".join(seen) == got
            transport.close()
            server.close()
            await server.wait_closed()
            return
        if how.startswith("class_"):
            cls, name = {
                "class_feed_data": (StreamReader, "feed_data"),
                "class_data_received": (StreamReaderProtocol, "data_received"),
                "class_wakeup_waiter": (StreamReader, "_wakeup_waiter"),
            }[how]
            monkeypatch.setattr(cls, name, recording(getattr(cls, name)))
        server, (reader, writer), (peer_reader, peer_writer) = await connected_pair()
        if how == "instance_feed_data":
            reader.feed_data = recording(StreamReader.feed_data).__get__(reader)
        elif how == "instance_data_received":
            proto = writer.transport.get_protocol()
            proto.data_received = recording(StreamReaderProtocol.data_received).__get__(proto)
        sent = b""
        for i in range(20):
            chunk = payload(100 + 37 * i, i)
            peer_writer.write(chunk)
            sent += chunk
            assert await reader.readexactly(len(chunk)) == chunk
        if how == "class_wakeup_waiter":
            # Called with the buffer already grown, once per wake-up.
            assert seen and all(n > 0 for n in seen)
        else:
            assert b"".join(seen) == sent
        await close_all(server, writer, peer_writer)

    run_with_timeout(loop, main(), 10)


def test_stock_streams_skip_the_python_frames(loop, loop_name):
    """On ferroloop the stock classes' data_received/feed_data do not run (the transport
    does their work); on asyncio they do. Guards the fast path against going unnoticed."""
    async def main():
        server, (reader, writer), (peer_reader, peer_writer) = await connected_pair()
        with stream_frames() as calls:
            for i in range(10):
                peer_writer.write(payload(1000, i))
                assert await reader.readexactly(1000) == payload(1000, i)
        await close_all(server, writer, peer_writer)
        return calls

    assert_stream_frames(run_with_timeout(loop, main(), 10), loop_name, 10)


def test_reader_pauses_the_transport_past_twice_its_limit(loop):
    """feed_data pauses reading once more than 2 * limit bytes are buffered; read()
    resumes it; every byte arrives once, in order."""
    total = 1024 * 1024

    async def main():
        accepted = asyncio.get_running_loop().create_future()
        server = await asyncio.start_server(
            lambda r, w: accepted.set_result((r, w)), "127.0.0.1", 0, limit=4096
        )
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        srv_reader, srv_writer = await accepted
        data = b"".join(payload(4096, i) for i in range(total // 4096))
        writer.write(data)
        # The server reads nothing until its transport paused itself.
        for _ in range(200):
            if not srv_writer.transport.is_reading():
                break
            await asyncio.sleep(0.005)
        assert not srv_writer.transport.is_reading()
        assert srv_reader._paused
        assert 2 * 4096 < len(srv_reader._buffer) < total
        sha = hashlib.sha256()
        count = 0
        while count < total:
            chunk = await srv_reader.read(65536)
            assert chunk
            sha.update(chunk)
            count += len(chunk)
        assert count == total
        assert sha.digest() == hashlib.sha256(data).digest()
        assert srv_writer.transport.is_reading()
        await close_all(server, writer, srv_writer)

    run_with_timeout(loop, main(), 10)


def test_cancelled_read_keeps_the_bytes_for_the_next(loop):
    async def main():
        server, (reader, writer), (peer_reader, peer_writer) = await connected_pair()
        pending = asyncio.ensure_future(reader.read(100))
        await asyncio.sleep(0.01)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        peer_writer.write(b"after the cancel")
        assert await reader.readexactly(16) == b"after the cancel"
        await close_all(server, writer, peer_writer)

    run_with_timeout(loop, main(), 10)


def test_a_waiter_of_another_kind_is_woken(loop):
    """_wakeup_waiter calls the waiter's own cancelled() and set_result(None)."""

    class Waiter:
        def __init__(self):
            self.calls = []

        def cancelled(self):
            self.calls.append("cancelled")
            return False

        def set_result(self, value):
            self.calls.append(("set_result", value))

    async def main():
        server, (reader, writer), (peer_reader, peer_writer) = await connected_pair()
        waiter = reader._waiter = Waiter()
        peer_writer.write(b"x")
        for _ in range(200):
            if waiter.calls:
                break
            await asyncio.sleep(0.005)
        assert waiter.calls == ["cancelled", ("set_result", None)]
        assert reader._waiter is None
        assert await reader.read(1) == b"x"
        await close_all(server, writer, peer_writer)

    run_with_timeout(loop, main(), 10)


@pytest.mark.parametrize("case", ["exported_buffer", "after_feed_eof"])
def test_feed_data_errors_are_fatal_like_asyncio(loop, case):
    """An error inside feed_data (a view of the buffer held: BufferError; data after
    feed_eof(): its assertion) is the transport's fatal error, reported as asyncio does."""
    contexts = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        server, (reader, writer), (peer_reader, peer_writer) = await connected_pair()
        if case == "exported_buffer":
            view = memoryview(reader._buffer)
        else:
            reader.feed_eof()
        peer_writer.write(b"data")
        for _ in range(200):
            if writer.transport.is_closing():
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.01)
        assert writer.transport.is_closing()
        if case == "exported_buffer":
            view.release()
            assert isinstance(reader.exception(), BufferError)
        await close_all(server, writer, peer_writer)

    run_with_timeout(loop, main(), 10)
    expected = BufferError if case == "exported_buffer" else AssertionError
    fatal = [c for c in contexts if isinstance(c.get("exception"), expected)]
    assert fatal, contexts
    assert fatal[0]["message"] == "Fatal error: protocol.data_received() call failed."


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
@pytest.mark.parametrize("how", ["stock", "instance_feed_data"])
def test_tls_streams_feed_the_reader(loop, loop_name, how, server_ctx, client_ctx):  # noqa: F811
    """Over TLS the decrypted bytes go to asyncio's stock reader the same way: every byte
    in order, an override on the instance still called, no Python frames otherwise."""
    seen = []

    async def main():
        server, (reader, writer), (peer_reader, peer_writer) = await connected_pair(
            (server_ctx, client_ctx))
        if how == "instance_feed_data":
            record_feed_data(reader, seen)
        sent = b""
        with stream_frames() as calls:
            for i in range(30):
                chunk = payload(50 + 997 * i, i)
                peer_writer.write(chunk)
                sent += chunk
                assert await reader.readexactly(len(chunk)) == chunk
        if how == "instance_feed_data":
            assert b"".join(seen) == sent
        await close_all(server, writer, peer_writer)
        return calls

    calls = run_with_timeout(loop, main(), 20)
    if how == "stock":
        assert_stream_frames(calls, loop_name, 30)


@pytest.mark.parametrize("how", ["stock", "instance_feed_data"])
def test_read_pipe_feeds_the_reader(loop, loop_name, how):
    """connect_read_pipe() of a StreamReaderProtocol (how programs read stdin): every byte
    in order, an override on the instance called, no Python frames otherwise; EOF ends it."""
    import os

    seen = []

    async def main():
        lp = asyncio.get_running_loop()
        rfd, wfd = os.pipe()
        reader = asyncio.StreamReader(loop=lp)
        if how == "instance_feed_data":
            record_feed_data(reader, seen)
        transport, _ = await lp.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=lp), os.fdopen(rfd, "rb", 0))
        sent = b""
        with stream_frames() as calls:
            for i in range(30):
                chunk = payload(10 + 333 * i, i)
                os.write(wfd, chunk)
                sent += chunk
                assert await reader.readexactly(len(chunk)) == chunk
        os.close(wfd)
        assert await reader.read() == b""
        assert reader.at_eof()
        if how == "instance_feed_data":
            assert b"".join(seen) == sent
        transport.close()
        return calls

    calls = run_with_timeout(loop, main(), 10)
    if how == "stock":
        assert_stream_frames(calls, loop_name, 30)
