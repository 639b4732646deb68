"""Helpers shared by the networking tests (tests/test_net_*.py).

Every helper uses only asyncio's public API, so the same test runs on stock asyncio (the
reference) and on ferroloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid

import pytest


@contextlib.asynccontextmanager
async def background(coro):
    """Run ``coro`` as a task for the duration of the block; cancel and reap it after.

    A test that fails mid-way must not leave a task whose exception is never retrieved:
    its ``__del__`` logs a traceback during a later garbage collection, and on CPython
    3.11.7 that can re-enter ``ast.parse`` (traceback caret anchors) inside pytest's own
    ``ast.parse`` and crash the run with "AST constructor recursion depth mismatch".
    """
    task = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        try:
            await task
        except BaseException:
            pass


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = has_ipv6_loopback()
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback")


def abstract_name() -> str:
    """A fresh Linux abstract-namespace Unix socket name (leading NUL)."""
    return f"\0ferroloop-test-{os.getpid()}-{uuid.uuid4().hex}"


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


class Recorder(asyncio.Protocol):
    """A protocol recording every callback, in order, with futures to await them.

    ``events`` holds "made", "data", "eof", "lost" (one entry per call); ``data`` the bytes
    received; ``lost`` the exception given to ``connection_lost``.
    """

    def __init__(self, loop, *, eof_result=None, echo=False):
        self.loop = loop
        self.events: list[str] = []
        self.data = bytearray()
        self.chunk_types: set[type] = set()
        self.transport = None
        self.eof_result = eof_result
        self.echo = echo
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self.paused = 0
        self.resumed = 0
        self._data_waiter = None

    # -- protocol callbacks
    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data):
        self.events.append("data")
        self.chunk_types.add(type(data))
        self.data += data
        if self.echo:
            self.transport.write(data)
        self._wake()

    def eof_received(self):
        self.events.append("eof")
        if not self.eof.done():
            self.eof.set_result(None)
        self._wake()
        return self.eof_result

    def connection_lost(self, exc):
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)
        self._wake()

    def pause_writing(self):
        self.paused += 1

    def resume_writing(self):
        self.resumed += 1

    # -- helpers
    def _wake(self):
        w = self._data_waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait_bytes(self, n: int) -> bytes:
        """Wait until at least ``n`` bytes arrived (or the connection ended)."""
        while len(self.data) < n:
            if self.lost.done() or self.eof.done():
                break
            self._data_waiter = self.loop.create_future()
            await self._data_waiter
        return bytes(self.data)


async def tcp_pair(loop, *, host="127.0.0.1", server_kw=None, client_kw=None, **proto_kw):
    """A server (one connection accepted) and a connected client, both ``Recorder``.

    Returns ``(server, client_transport, client_proto, server_proto)``.
    """
    accepted = loop.create_future()

    def factory():
        proto = Recorder(loop, **proto_kw)
        if not accepted.done():
            accepted.set_result(proto)
        return proto

    server = await loop.create_server(factory, host, 0, **(server_kw or {}))
    port = server.sockets[0].getsockname()[1]
    tr, cp = await loop.create_connection(lambda: Recorder(loop), host, port, **(client_kw or {}))
    sp = await accepted
    await sp.made
    return server, tr, cp, sp


async def unix_pair(loop, path, **proto_kw):
    accepted = loop.create_future()

    def factory():
        proto = Recorder(loop, **proto_kw)
        if not accepted.done():
            accepted.set_result(proto)
        return proto

    server = await loop.create_unix_server(factory, path)
    tr, cp = await loop.create_unix_connection(lambda: Recorder(loop), path)
    sp = await accepted
    await sp.made
    return server, tr, cp, sp


async def stream_pair(loop, kind, tmp_path):
    """``(server, client_transport, client_proto, server_proto)`` over TCP or a Unix socket."""
    if kind == "tcp":
        return await tcp_pair(loop)
    return await unix_pair(loop, str(tmp_path / "s.sock"))


async def close_all(server, *transports):
    for tr in transports:
        if tr is not None:
            tr.close()
    server.close()
    # Give the peers' connection_lost a chance to run before the loop closes.
    for _ in range(3):
        await asyncio.sleep(0)


def write_goes_through_the_class(tr, data: bytes) -> list:
    """Writes ``data`` with ``type(tr).write`` patched by a spy, and returns what the spy
    saw: ``[data]`` when ``write`` is the class's (not an instance attribute hiding a
    subclass's or a patched ``write``), as on asyncio's transports."""
    from unittest import mock

    assert "write" not in getattr(tr, "__dict__", {})
    original = type(tr).write
    seen = []

    def spy(self, data):
        seen.append(bytes(data))
        return original(self, data)

    with mock.patch.object(type(tr), "write", spy):
        tr.write(data)
    return seen
