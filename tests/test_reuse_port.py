"""Scale-out on one machine: servers sharing a port with ``reuse_port=True``.

In-process, on both loops: two servers bound to one port with ``reuse_port=True`` both
accept connections; without it the second bind fails as asyncio's does. Then the recipe
itself, ``examples/reuse_port_server.py``: two worker processes on one port, both serving,
and a clean stop on SIGTERM and on SIGINT with no process left behind.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import run_with_timeout

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "reuse_port_server.py"

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Tagged(asyncio.Protocol):
    """Answers every connection with the tag of the server that accepted it."""

    def __init__(self, tag: bytes) -> None:
        self.tag = tag

    def connection_made(self, transport) -> None:
        transport.write(self.tag)
        transport.close()


async def _tags_of_connections(port: int, count: int) -> list[bytes]:
    tags = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        tags.append(await reader.read())
        writer.close()
        await writer.wait_closed()
    return tags


def test_two_servers_share_a_port_with_reuse_port(loop):
    port = _free_port()

    async def main():
        a = await loop.create_server(lambda: _Tagged(b"a"), "127.0.0.1", port, reuse_port=True)
        b = await loop.create_server(lambda: _Tagged(b"b"), "127.0.0.1", port, reuse_port=True)
        try:
            for server in (a, b):
                sock = server.sockets[0]
                assert sock.getsockname() == ("127.0.0.1", port)
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
            # The kernel spreads connections over the two listening sockets by a hash of
            # the connection's addresses (the client port varies): with 64 connections the
            # chance that one server gets them all is 2**-63.
            tags = await _tags_of_connections(port, 64)
        finally:
            a.close()
            b.close()
            await a.wait_closed()
            await b.wait_closed()
        return tags

    tags = run_with_timeout(loop, main())
    assert set(tags) == {b"a", b"b"}, tags


def _second_binds(loop) -> list[tuple[type, int, str]]:
    """What a second server on a port bound without reuse_port raises: without reuse_port,
    and with it for the second only."""
    port = _free_port()

    async def main():
        a = await loop.create_server(asyncio.Protocol, "127.0.0.1", port)
        errors = []
        try:
            for reuse_port in (None, True):
                with pytest.raises(OSError) as info:
                    await loop.create_server(asyncio.Protocol, "127.0.0.1", port,
                                             reuse_port=reuse_port)
                errors.append(info.value)
        finally:
            a.close()
            await a.wait_closed()
        return errors

    return [(type(e), e.errno, str(e).replace(str(port), "PORT"))
            for e in run_with_timeout(loop, main())]


def test_second_bind_without_reuse_port_fails_as_in_asyncio(loop):
    stock = asyncio.SelectorEventLoop()  # the reference, whichever loop the param is
    try:
        expected = _second_binds(stock)
    finally:
        stock.close()
    got = _second_binds(loop)
    assert got == expected
    for _, errno, message in got:
        assert errno == 98  # EADDRINUSE
        assert message.startswith("[Errno 98] error while attempting to bind on address "
                                  "('127.0.0.1', PORT): "), message


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _ask(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        data = b""
        while chunk := s.recv(256):
            data += chunk
    return data.decode()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_example_two_workers_both_serve(stop_signal):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--workers", "2", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # printed once both workers listen
        assert line.startswith(f"serving on 127.0.0.1:{port} with 2 workers: "), (
            line, proc.stderr.read() if proc.poll() is not None else "")
        workers = {int(pid) for pid in line.split(":")[-1].split()}
        assert len(workers) == 2 and proc.pid not in workers

        seen: dict[int, int] = {}
        deadline = time.monotonic() + 20
        for _ in range(200):
            reply = _ask(port)
            words = reply.split()
            assert words[0] == "pid" and words[2:] == ["on", "ferroloop.Loop"], reply
            seen[int(words[1])] = seen.get(int(words[1]), 0) + 1
            if len(seen) == 2 or time.monotonic() > deadline:
                break
        assert set(seen) == workers, seen

        proc.send_signal(stop_signal)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert err == "" and out == ""
        for pid in workers:
            assert not _alive(pid), f"worker {pid} outlived the supervisor"
        with pytest.raises(ConnectionRefusedError):
            _ask(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
