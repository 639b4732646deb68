"""The hottest transport and sock_* methods in every call shape, on both loops.

ferroloop takes the common call of ``transport.write(data)``, ``loop.sock_recv(sock, n)``
and ``loop.sock_sendall(sock, data)`` (positional arguments, from the running loop's
thread) on a shortcut and hands every other shape to its general code: these check that
the other shapes behave as on asyncio (a keyword argument, a call while the loop is not
running or from another thread, an ``n`` that is a bool, an ``__index__`` object or out of
range, argument errors)."""

import asyncio
import socket
import threading

import pytest

from conftest import requires_native_net, run_with_timeout
from netutil import close_all, tcp_pair


class Index:
    def __init__(self, n):
        self.n = n

    def __index__(self):
        return self.n


@requires_native_net
def test_transport_write_call_shapes(loop):
    state = {}

    async def start():
        server, tr, cp, sp = await tcp_pair(loop)
        state.update(server=server, tr=tr, sp=sp)
        tr.write(b"a")
        tr.write(data=b"b")
        with pytest.raises(TypeError):
            tr.write()
        with pytest.raises(TypeError):
            tr.write(b"x", b"y")
        with pytest.raises(TypeError):
            tr.write(b"x", bogus=1)
        with pytest.raises(TypeError):
            tr.write("text")
        assert await sp.wait_bytes(2) == b"ab"

    run_with_timeout(loop, start(), 5)
    tr, sp = state["tr"], state["sp"]
    # The loop is not running: the write is sent all the same.
    tr.write(b"c")
    tr.write(data=b"d")
    errors = []

    def from_thread():
        try:
            tr.write(b"e")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=from_thread)
    t.start()
    t.join()
    assert errors == []

    async def finish():
        assert await sp.wait_bytes(5) == b"abcde"
        await close_all(state["server"], tr)

    run_with_timeout(loop, finish(), 5)


def test_sock_recv_sendall_call_shapes(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)

    async def main():
        got = []
        for n in (True, Index(2), 3):
            a.send(b"xyz")
            got.append(await loop.sock_recv(b, n))
            if len(got[-1]) < 3:
                b.recv(100)
        assert got == [b"x", b"xy", b"xyz"]
        for bad in (2 ** 80, -(2 ** 80)):
            with pytest.raises(OverflowError):
                await loop.sock_recv(b, bad)
        with pytest.raises(TypeError):
            await loop.sock_recv(b, "3")
        with pytest.raises(TypeError):
            await loop.sock_recv(b, 1.0)
        await loop.sock_sendall(b, b"ok")
        await loop.sock_sendall(b, memoryview(b"ok2"))
        await loop.sock_sendall(sock=b, data=bytearray(b"ok3"))
        assert await loop.sock_recv(sock=a, n=100) == b"okok2ok3"
        with pytest.raises(TypeError):
            await loop.sock_sendall(b, "text")

    try:
        run_with_timeout(loop, main(), 5)
    finally:
        a.close()
        b.close()
