"""asyncio streams (open_connection/start_server and the unix variants) on the loop's
transports (issue 8). Streams are asyncio's own Python code: these check that they run
unchanged on top of the native transports."""

import asyncio
import hashlib
import socket
import struct

import pytest

from conftest import requires_native_net, run_with_timeout
from netutil import abstract_name

pytestmark = requires_native_net

MiB = 1024 * 1024


async def start(kind, handler, tmp_path, **kw):
    """``(server, connect)`` where ``connect()`` opens a client (reader, writer)."""
    if kind == "tcp":
        server = await asyncio.start_server(handler, "127.0.0.1", 0, **kw)
        addr = server.sockets[0].getsockname()
        return server, lambda **ckw: asyncio.open_connection(*addr, **ckw)
    path = str(tmp_path / "st.sock") if kind == "unix" else abstract_name()
    server = await asyncio.start_unix_server(handler, path, **kw)
    return server, lambda **ckw: asyncio.open_unix_connection(path, **ckw)


KINDS = ["tcp", "unix", "abstract"]


@pytest.mark.parametrize("kind", KINDS)
def test_line_echo(loop, kind, tmp_path):
    async def handler(reader, writer):
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server, connect = await start(kind, handler, tmp_path)
        async with server:
            reader, writer = await connect()
            for i in range(20):
                writer.write(b"line %d\n" % i)
                await writer.drain()
                assert await reader.readline() == b"LINE %d\n" % i
            writer.write(b"no newline")
            writer.write_eof()
            assert await reader.readline() == b"NO NEWLINE"
            assert await reader.readline() == b""
            assert reader.at_eof()
            writer.close()
            await writer.wait_closed()
            assert writer.is_closing()

    run_with_timeout(loop, main(), 5)


@pytest.mark.parametrize("kind", KINDS)
def test_readexactly_and_incomplete_read(loop, kind, tmp_path):
    async def handler(reader, writer):
        writer.write(b"0123456789abcde")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server, connect = await start(kind, handler, tmp_path)
        async with server:
            reader, writer = await connect()
            assert await reader.readexactly(10) == b"0123456789"
            with pytest.raises(asyncio.IncompleteReadError) as info:
                await reader.readexactly(10)
            assert info.value.partial == b"abcde"
            assert info.value.expected == 10
            assert str(info.value) == "5 bytes read on a total of 10 expected bytes"
            assert isinstance(info.value, EOFError)
            writer.close()
            await writer.wait_closed()

    run_with_timeout(loop, main(), 5)


def test_readuntil_and_limit(loop, tmp_path):
    async def handler(reader, writer):
        writer.write(b"key: value\r\n\r\n" + b"x" * 200 + b"\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server, connect = await start("tcp", handler, tmp_path)
        async with server:
            reader, writer = await connect(limit=100)
            assert await reader.readuntil(b"\r\n\r\n") == b"key: value\r\n\r\n"
            with pytest.raises(ValueError) as info:
                await reader.readline()
            # "... found, but chunk is longer than limit" or "... not found, and chunk
            # exceed the limit", depending on how much one read brought in.
            assert str(info.value).startswith("Separator is")
            writer.close()
            await writer.wait_closed()

    run_with_timeout(loop, main(), 5)


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_drain_under_back_pressure(loop, kind, tmp_path):
    total = 8 * MiB
    received = {}
    go = asyncio.Event()

    async def handler(reader, writer):
        sha = hashlib.sha256()
        count = 0
        # A slow start: the server reads nothing until the client had to wait in drain()
        # (or sent everything without ever waiting, which the test then reports).
        await go.wait()
        while chunk := await reader.read(256 * 1024):
            sha.update(chunk)
            count += len(chunk)
        received["sha"], received["count"] = sha.hexdigest(), count
        writer.write(b"done")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server, connect = await start(kind, handler, tmp_path)
        async with server:
            reader, writer = await connect()
            writer.transport.set_write_buffer_limits(high=128 * 1024)
            sha = hashlib.sha256()
            blocked = 0
            max_buffered = 0
            sent = 0
            while sent < total:
                block = struct.pack("!Q", sent) * 8192  # 64 KiB, varies with position
                sha.update(block)
                writer.write(block)
                sent += len(block)
                max_buffered = max(max_buffered, writer.transport.get_write_buffer_size())
                drain = asyncio.ensure_future(writer.drain())
                await asyncio.sleep(0)
                if not drain.done():
                    blocked += 1
                    go.set()
                await drain
                assert writer.transport.get_write_buffer_size() <= 128 * 1024
            go.set()
            writer.write_eof()
            assert await reader.read() == b"done"
            assert received == {"sha": sha.hexdigest(), "count": total}
            assert blocked > 0
            assert max_buffered > 128 * 1024
            writer.close()
            await writer.wait_closed()

    run_with_timeout(loop, main(), 10)


def test_reset_surfaces_in_reader_and_drain(loop, tmp_path):
    async def handler(reader, writer):
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def main():
        server, connect = await start("tcp", handler, tmp_path)
        async with server:
            reader, writer = await connect()
            with pytest.raises(ConnectionResetError) as info:
                await reader.read()
            exc = info.value
            writer.write(b"x")
            with pytest.raises(ConnectionResetError) as info:
                await writer.drain()
            assert info.value is exc
            writer.close()
            with pytest.raises(ConnectionResetError):
                await writer.wait_closed()

    run_with_timeout(loop, main(), 5)


def test_wait_closed_and_server_handler_sees_eof(loop, tmp_path):
    seen = []

    async def handler(reader, writer):
        seen.append(await reader.read())
        seen.append(writer.get_extra_info("peername"))
        writer.close()
        await writer.wait_closed()
        seen.append(writer.is_closing())

    async def main():
        server, connect = await start("tcp", handler, tmp_path)
        reader, writer = await connect()
        writer.write(b"bye")
        sockname = writer.get_extra_info("sockname")
        writer.close()
        assert writer.is_closing()
        await writer.wait_closed()
        for _ in range(100):
            if len(seen) == 3:
                break
            await asyncio.sleep(0.005)
        assert seen == [b"bye", sockname, True]
        server.close()
        await server.wait_closed()

    run_with_timeout(loop, main(), 5)


def test_start_server_serve_forever(loop, tmp_path):
    async def handler(reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0, start_serving=False)
        assert not server.is_serving()
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        assert server.is_serving()
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.write(b"ping\n")
        assert await reader.readline() == b"ping\n"
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()

    run_with_timeout(loop, main(), 5)
