"""Bad and unusual arguments to the networking API, on stock asyncio and on ferroloop: each
case runs on a fresh loop of each and the outcomes must be the same, the result or the
exception's type and message, and for transports what their protocol saw.

The cases are what a program gets wrong (a port out of range, a str host, a socket of the
wrong type, a str written to a transport, a memoryview that is not contiguous) and what it
may do that is unusual but valid (a list as an address, float watermarks). Timing-dependent
outcomes are left out (see test_net_faults.py for those, checked on each loop alone).
Differences from asyncio that are on purpose are not cases here: asyncio's own failures of
``abort()`` on a transport that already closed (its ``_loop`` is None then) are not copied.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import struct
import sys

import pytest

import ferroloop

PY312 = sys.version_info >= (3, 12)


def norm(text: str) -> str:
    """What may differ between runs or loops without being a difference: addresses of
    objects, fd numbers, ports and the classes' own names."""
    text = re.sub(r"0x[0-9a-f]+", "0x?", text)
    text = re.sub(r"fd=\d+", "fd=?", text)
    text = re.sub(r"\('127\.0\.0\.1', \d+\)", "ADDR", text)
    for name in ("_SelectorSocketTransport", "_SocketTransport"):
        text = text.replace(name, "Transport")
    return text


def outcome_of(fn) -> str:
    """``fn()`` -> "ok <repr>" or "<exception type>: <message>"."""
    try:
        return "ok " + norm(repr(fn()))
    except Exception as e:  # noqa: BLE001 - the outcome is what is compared
        return f"{type(e).__name__}: {norm(str(e))}"


async def aoutcome_of(coro_fn) -> str:
    try:
        result = await asyncio.wait_for(coro_fn(), 5)
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {norm(str(e))}"
    if isinstance(result, tuple) and result and hasattr(result[0], "close"):
        result[0].close()
        return "ok " + type(result[1]).__name__
    return "ok " + norm(repr(result))


def nonblocking(sock: socket.socket) -> socket.socket:
    sock.setblocking(False)
    return sock


# ----- loop methods: create_*, sock_*, getaddrinfo (the result or the exception) ---------

def loop_method_cases():
    P = asyncio.Protocol
    D = asyncio.DatagramProtocol
    tcp = lambda: nonblocking(socket.socket())  # noqa: E731
    udp = lambda: nonblocking(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))  # noqa: E731
    this_file = lambda mode="rb": open(__file__, mode)  # noqa: E731
    return {
        "create_connection host int": lambda lp, port: lp.create_connection(P, 123, 80),
        "create_connection port 70000": lambda lp, port: lp.create_connection(P, "127.0.0.1", 70000),
        "create_connection port -1": lambda lp, port: lp.create_connection(P, "127.0.0.1", -1),
        "create_connection port str": lambda lp, port: lp.create_connection(P, "127.0.0.1", "abc"),
        "create_connection port float": lambda lp, port: lp.create_connection(P, "127.0.0.1", 80.5),
        "create_connection nothing": lambda lp, port: lp.create_connection(P),
        "create_connection host and sock": lambda lp, port: lp.create_connection(P, "h", 1, sock=tcp()),
        "create_connection udp sock": lambda lp, port: lp.create_connection(P, sock=udp()),
        "create_connection handshake timeout without ssl":
            lambda lp, port: lp.create_connection(P, "127.0.0.1", port, ssl_handshake_timeout=1),
        "create_connection server_hostname without ssl":
            lambda lp, port: lp.create_connection(P, "127.0.0.1", port, server_hostname="x"),
        "create_connection bad local_addr":
            lambda lp, port: lp.create_connection(P, "127.0.0.1", port, local_addr=("256.1.1.1", 0)),
        "create_connection local_addr list":
            lambda lp, port: lp.create_connection(P, "127.0.0.1", port, local_addr=["127.0.0.1", 0]),
        "create_connection refused": lambda lp, port: lp.create_connection(P, "127.0.0.1", 1),
        "create_connection host bytes": lambda lp, port: lp.create_connection(P, b"127.0.0.1", port),
        "create_server port 70000": lambda lp, port: lp.create_server(P, "127.0.0.1", 70000),
        "create_server host int": lambda lp, port: lp.create_server(P, 5, 0),
        "create_server host and sock": lambda lp, port: lp.create_server(P, "127.0.0.1", 0, sock=tcp()),
        "create_server udp sock": lambda lp, port: lp.create_server(P, sock=udp()),
        "create_server handshake timeout without ssl":
            lambda lp, port: lp.create_server(P, "127.0.0.1", 0, ssl_handshake_timeout=1),
        "create_server backlog str": lambda lp, port: lp.create_server(P, "127.0.0.1", 0, backlog="x"),
        "create_server port str": lambda lp, port: lp.create_server(P, "127.0.0.1", "abc"),
        "create_server a host int in the list": lambda lp, port: lp.create_server(P, ["127.0.0.1", 5], 0),
        "create_unix_connection nothing": lambda lp, port: lp.create_unix_connection(P),
        "create_unix_connection path and sock":
            lambda lp, port: lp.create_unix_connection(P, "/tmp/x", sock=tcp()),
        "create_unix_connection tcp sock": lambda lp, port: lp.create_unix_connection(P, sock=tcp()),
        "create_unix_connection missing path":
            lambda lp, port: lp.create_unix_connection(P, "/nonexistent/x.sock"),
        "create_unix_connection path int": lambda lp, port: lp.create_unix_connection(P, 5),
        "create_unix_server tcp sock": lambda lp, port: lp.create_unix_server(P, sock=tcp()),
        "create_unix_server path int": lambda lp, port: lp.create_unix_server(P, 5),
        "create_unix_server nothing": lambda lp, port: lp.create_unix_server(P),
        "create_unix_server missing dir": lambda lp, port: lp.create_unix_server(P, "/nonexistent/x.sock"),
        "create_datagram_endpoint nothing": lambda lp, port: lp.create_datagram_endpoint(D),
        "create_datagram_endpoint tcp sock": lambda lp, port: lp.create_datagram_endpoint(D, sock=tcp()),
        "create_datagram_endpoint remote port 70000":
            lambda lp, port: lp.create_datagram_endpoint(D, remote_addr=("127.0.0.1", 70000)),
        "create_datagram_endpoint reuse_address":
            lambda lp, port: lp.create_datagram_endpoint(D, local_addr=("127.0.0.1", 0), reuse_address=True),
        "create_datagram_endpoint local str": lambda lp, port: lp.create_datagram_endpoint(D, local_addr="x"),
        "create_datagram_endpoint remote list":
            lambda lp, port: lp.create_datagram_endpoint(D, remote_addr=["127.0.0.1", port]),
        "create_datagram_endpoint local list":
            lambda lp, port: lp.create_datagram_endpoint(D, local_addr=["127.0.0.1", 0]),
        "create_datagram_endpoint family mismatch":
            lambda lp, port: lp.create_datagram_endpoint(D, local_addr=("127.0.0.1", 0), family=socket.AF_INET6),
        "sock_recv blocking socket": lambda lp, port: lp.sock_recv(socket.socket(), 10),
        "sock_recv negative size": lambda lp, port: lp.sock_recv(tcp(), -1),
        "sock_recv unconnected": lambda lp, port: lp.sock_recv(tcp(), 10),
        "sock_sendall unconnected": lambda lp, port: lp.sock_sendall(tcp(), b"x"),
        "sock_sendall str": lambda lp, port: lp.sock_sendall(tcp(), "x"),
        "sock_connect port 70000": lambda lp, port: lp.sock_connect(tcp(), ("127.0.0.1", 70000)),
        "sock_connect refused": lambda lp, port: lp.sock_connect(tcp(), ("127.0.0.1", 1)),
        "sock_connect list": lambda lp, port: lp.sock_connect(tcp(), ["127.0.0.1", port]),
        "sock_connect str": lambda lp, port: lp.sock_connect(tcp(), "x"),
        "sock_connect two-char str": lambda lp, port: lp.sock_connect(tcp(), "xy"),
        "sock_connect empty tuple": lambda lp, port: lp.sock_connect(tcp(), ()),
        "sock_connect int": lambda lp, port: lp.sock_connect(tcp(), 5),
        "sock_connect None host": lambda lp, port: lp.sock_connect(tcp(), (None, port)),
        "sock_connect str port": lambda lp, port: lp.sock_connect(tcp(), ("127.0.0.1", str(port))),
        "sock_connect three items": lambda lp, port: lp.sock_connect(tcp(), ("127.0.0.1", port, 0)),
        "sock_connect bytes host": lambda lp, port: lp.sock_connect(tcp(), (b"127.0.0.1", port)),
        "sock_connect udp list": lambda lp, port: lp.sock_connect(udp(), ["127.0.0.1", port]),
        "sock_accept not listening": lambda lp, port: lp.sock_accept(tcp()),
        "sock_sendto tcp": lambda lp, port: lp.sock_sendto(tcp(), b"x", ("127.0.0.1", 1)),
        "sock_sendto str address": lambda lp, port: lp.sock_sendto(udp(), b"x", "x"),
        "sock_recvfrom negative size": lambda lp, port: lp.sock_recvfrom(udp(), -5),
        "sock_recv_into bytes": lambda lp, port: lp.sock_recv_into(tcp(), b"abc"),
        "sock_recvfrom_into nbytes beyond the buffer":
            lambda lp, port: lp.sock_recvfrom_into(udp(), bytearray(4), 10),
        "sock_sendfile udp": lambda lp, port: lp.sock_sendfile(udp(), this_file()),
        "sock_sendfile text file": lambda lp, port: lp.sock_sendfile(tcp(), this_file("r")),
        "sock_sendfile blocking socket": lambda lp, port: lp.sock_sendfile(socket.socket(), this_file()),
        "sock_sendfile negative offset": lambda lp, port: lp.sock_sendfile(tcp(), this_file(), -1),
        "sock_sendfile count 0": lambda lp, port: lp.sock_sendfile(tcp(), this_file(), 0, 0),
        "sock_sendfile count str": lambda lp, port: lp.sock_sendfile(tcp(), this_file(), 0, "x"),
        "getaddrinfo host int": lambda lp, port: lp.getaddrinfo(5, 80),
        "getaddrinfo port 70000": lambda lp, port: lp.getaddrinfo("127.0.0.1", 70000),
        "getaddrinfo family str": lambda lp, port: lp.getaddrinfo("127.0.0.1", 80, family="x"),
        "getaddrinfo port list": lambda lp, port: lp.getaddrinfo("127.0.0.1", [1]),
        "getaddrinfo port None": lambda lp, port: lp.getaddrinfo("127.0.0.1", None),
        "getaddrinfo host None": lambda lp, port: lp.getaddrinfo(None, port),
        "getaddrinfo port bytes": lambda lp, port: lp.getaddrinfo("127.0.0.1", b"80"),
        "getaddrinfo both None": lambda lp, port: lp.getaddrinfo(None, None),
        "getnameinfo one item": lambda lp, port: lp.getnameinfo(("127.0.0.1",)),
        "getnameinfo str": lambda lp, port: lp.getnameinfo("x"),
        "getnameinfo list": lambda lp, port: lp.getnameinfo(["127.0.0.1", port]),
        "connect_accepted_socket udp": lambda lp, port: lp.connect_accepted_socket(P, udp()),
        "connect_accepted_socket int": lambda lp, port: lp.connect_accepted_socket(P, 5),
        "connect_accepted_socket handshake timeout without ssl":
            lambda lp, port: lp.connect_accepted_socket(P, tcp(), ssl_handshake_timeout=1),
        "open_connection refused": lambda lp, port: asyncio.open_connection("127.0.0.1", 1),
        "start_server port 70000":
            lambda lp, port: asyncio.start_server(lambda r, w: None, "127.0.0.1", 70000),
        "connect_read_pipe int": lambda lp, port: lp.connect_read_pipe(P, 5),
        "connect_read_pipe regular file": lambda lp, port: lp.connect_read_pipe(P, this_file()),
        "connect_write_pipe regular file": lambda lp, port: lp.connect_write_pipe(P, this_file()),
    }


LOOP_METHOD_CASES = loop_method_cases()


def run_loop_method_case(factory, name):
    loop = factory()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        asyncio.set_event_loop(loop)
        call = LOOP_METHOD_CASES[name]
        outcome = loop.run_until_complete(aoutcome_of(lambda: call(loop, port)))
        return outcome.replace(str(port), "PORT")
    finally:
        asyncio.set_event_loop(None)
        listener.close()
        loop.close()


# ----- transports: the call's outcome and what the protocol saw ------------------------

class Events(asyncio.Protocol):
    def __init__(self):
        self.events = []

    def connection_made(self, transport):
        self.events.append("made")

    def data_received(self, data):
        self.events.append(("data", len(data)))

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc).__name__ if exc else None))

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")


class DatagramEvents(asyncio.DatagramProtocol):
    def __init__(self):
        self.events = []

    def connection_made(self, transport):
        self.events.append("made")

    def datagram_received(self, data, addr):
        self.events.append(("datagram", len(data)))

    def error_received(self, exc):
        self.events.append(("error", type(exc).__name__, getattr(exc, "errno", None)))

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc).__name__ if exc else None))


async def call_and_observe(tr, proto, call):
    """``call()``'s outcome and what ``proto`` saw by shortly after it; then ``tr`` is
    aborted unless it is closing already."""
    result = outcome_of(call)
    await asyncio.sleep(0.01)
    seen = list(proto.events)
    if not tr.is_closing():
        tr.abort()
    await asyncio.sleep(0)
    return result, seen


def eof_twice(tr):
    tr.write_eof()
    tr.write_eof()
    return tr.can_write_eof()


TCP_TRANSPORT_CASES = {
    "write str": lambda tr: tr.write("x"),
    "write int": lambda tr: tr.write(5),
    "write memoryview": lambda tr: tr.write(memoryview(b"abc")),
    "write bytearray": lambda tr: tr.write(bytearray(b"abc")),
    "write empty": lambda tr: tr.write(b""),
    "write non-contiguous memoryview": lambda tr: tr.write(memoryview(b"abcdef")[::2]),
    "writelines str": lambda tr: tr.writelines(["x"]),
    "writelines generator": lambda tr: tr.writelines(x for x in [b"a", b"b"]),
    "writelines int": lambda tr: tr.writelines(5),
    "writelines bytes and str": lambda tr: tr.writelines([b"a", "b"]),
    "write after close": lambda tr: (tr.close(), tr.write(b"x")),
    "write_eof twice": eof_twice,
    "write after write_eof": lambda tr: (tr.write_eof(), tr.write(b"x")),
    "limits high below low": lambda tr: tr.set_write_buffer_limits(high=1, low=5),
    "limits high -1": lambda tr: tr.set_write_buffer_limits(high=-1),
    "limits only low": lambda tr: (tr.set_write_buffer_limits(low=10), tr.get_write_buffer_limits()),
    "limits only high": lambda tr: (tr.set_write_buffer_limits(high=10), tr.get_write_buffer_limits()),
    "limits float": lambda tr: (tr.set_write_buffer_limits(high=10.5), tr.get_write_buffer_limits()),
    "limits str": lambda tr: tr.set_write_buffer_limits(high="x"),
    "limits positional": lambda tr: (tr.set_write_buffer_limits(5, 1), tr.get_write_buffer_limits()),
    "get_extra_info unknown": lambda tr: tr.get_extra_info("nope", 42),
    "get_extra_info peername": lambda tr: tr.get_extra_info("peername"),
    "get_extra_info sslcontext": lambda tr: tr.get_extra_info("sslcontext"),
    "pause_reading twice": lambda tr: (tr.pause_reading(), tr.pause_reading(), tr.is_reading()),
    "resume_reading unpaused": lambda tr: (tr.resume_reading(), tr.is_reading()),
    "pause_reading after close":
        lambda tr: (tr.close(), tr.pause_reading(), tr.resume_reading(), tr.is_reading()),
    "abort twice then close": lambda tr: (tr.abort(), tr.abort(), tr.close(), tr.is_closing()),
    "set_protocol int": lambda tr: (tr.set_protocol(5), tr.get_protocol()),
    "sendto": lambda tr: tr.sendto(b"x"),
}


async def tcp_transport_case(loop, name):
    server = await loop.create_server(Events, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tr, proto = await loop.create_connection(Events, "127.0.0.1", port)
    result, seen = await call_and_observe(tr, proto, lambda: TCP_TRANSPORT_CASES[name](tr))
    server.close()
    await server.wait_closed()
    return result, seen


def udp_cases():
    def many_after_abort(tr, addr):
        tr.abort()
        for _ in range(7):
            tr.sendto(b"x", addr)

    return {
        "sendto str": ({}, lambda tr, a: tr.sendto("x", a)),
        "sendto int": ({}, lambda tr, a: tr.sendto(5, a)),
        "sendto no address, unconnected": ({}, lambda tr, a: tr.sendto(b"x")),
        "sendto another address, connected":
            ({"remote": True}, lambda tr, a: tr.sendto(b"x", ("127.0.0.1", 9))),
        "sendto the address, connected": ({"remote": True}, lambda tr, a: tr.sendto(b"x", a)),
        "sendto empty": ({}, lambda tr, a: tr.sendto(b"", a)),
        "sendto too large": ({}, lambda tr, a: tr.sendto(b"x" * 70000, a)),
        "sendto port 70000": ({}, lambda tr, a: tr.sendto(b"x", ("127.0.0.1", 70000))),
        "sendto IPv6 address on IPv4": ({}, lambda tr, a: tr.sendto(b"x", ("::1", 5))),
        "sendto host name": ({}, lambda tr, a: tr.sendto(b"x", ("localhost", a[1]))),
        "sendto list address": ({}, lambda tr, a: tr.sendto(b"x", list(a))),
        "sendto after close": ({}, lambda tr, a: (tr.close(), tr.sendto(b"x", a))),
        "sendto after abort, 7 times": ({}, many_after_abort),
        "sendto non-contiguous memoryview": ({}, lambda tr, a: tr.sendto(memoryview(b"abcdef")[::2], a)),
        "sendto bytearray": ({}, lambda tr, a: tr.sendto(bytearray(b"ab"), a)),
        "get_extra_info peername, connected": ({"remote": True}, lambda tr, a: tr.get_extra_info("peername")),
        "get_extra_info peername, unconnected": ({}, lambda tr, a: tr.get_extra_info("peername")),
        "limits float": ({}, lambda tr, a: (tr.set_write_buffer_limits(high=10.5), tr.get_write_buffer_limits())),
        "limits high -1": ({}, lambda tr, a: tr.set_write_buffer_limits(high=-1)),
    }


UDP_CASES = udp_cases()


async def udp_transport_case(loop, name):
    opts, call = UDP_CASES[name]
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    addr = peer.getsockname()
    kw = {"remote_addr": addr} if opts.get("remote") else {"local_addr": ("127.0.0.1", 0)}
    tr, proto = await loop.create_datagram_endpoint(DatagramEvents, **kw)
    result, seen = await call_and_observe(tr, proto, lambda: call(tr, addr))
    peer.close()
    return result, seen


WRITE_PIPE_CASES = {
    "write str": lambda tr, r: tr.write("x"),
    "write int": lambda tr, r: tr.write(5),
    "write non-contiguous memoryview": lambda tr, r: tr.write(memoryview(b"abcdef")[::2]),
    "write empty": lambda tr, r: tr.write(b""),
    "writelines": lambda tr, r: (tr.writelines([b"a", bytearray(b"b"), memoryview(b"c")]), os.read(r, 10)),
    "writelines str": lambda tr, r: tr.writelines(["a"]),
    "write_eof": lambda tr, r: (tr.write_eof(), tr.can_write_eof(), tr.is_closing()),
    "write after write_eof": lambda tr, r: (tr.write_eof(), tr.write(b"x")),
    "write after close": lambda tr, r: (tr.close(), tr.write(b"x")),
    "write with the reader closed": lambda tr, r: (os.close(r), tr.write(b"x")),
    "limits float": lambda tr, r: (tr.set_write_buffer_limits(high=10.5), tr.get_write_buffer_limits()),
    "limits high -1": lambda tr, r: tr.set_write_buffer_limits(high=-1),
    "pause_reading": lambda tr, r: tr.pause_reading(),
}


async def write_pipe_case(loop, name):
    r, w = os.pipe()
    tr, proto = await loop.connect_write_pipe(Events, open(w, "wb", 0))
    result, seen = await call_and_observe(tr, proto, lambda: WRITE_PIPE_CASES[name](tr, r))
    try:
        os.close(r)
    except OSError:
        pass
    return result, seen


# ----- streams over a connection the peer breaks -------------------------------------

def reset(writer):
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def server_resets(r, w):
    await r.readexactly(1)
    reset(w)
    return "reset"


async def write_after_reset(r, w):
    w.write(b"x")
    await w.drain()
    await asyncio.sleep(0.05)
    outcomes = []
    for _ in range(3):
        try:
            w.write(b"y" * 100000)
            await w.drain()
            outcomes.append("ok")
        except Exception as e:  # noqa: BLE001
            outcomes.append(type(e).__name__)
        await asyncio.sleep(0.01)
    return outcomes


async def read_after_reset(r, w):
    w.write(b"x")
    await w.drain()
    return await r.read(10)


async def server_echoes_reversed_at_eof(r, w):
    data = await r.read()
    w.write(data[::-1])
    await w.drain()
    w.close()
    await w.wait_closed()
    return len(data)


async def half_close(r, w):
    w.write(b"abc" * 1000)
    w.write_eof()
    return len(await r.read()), w.can_write_eof(), w.is_closing()


async def server_closes_with_5mb_pending(r, w):
    await r.readexactly(1)
    w.transport.set_write_buffer_limits(high=10**9)
    w.write(os.urandom(5_000_000))
    w.close()
    await w.wait_closed()
    return "closed"


async def read_all(r, w):
    w.write(b"x")
    await w.drain()
    await asyncio.sleep(0.05)
    return len(await r.read())


async def server_reads_10(r, w):
    try:
        await r.readexactly(10)
    except asyncio.IncompleteReadError as e:
        return f"partial={e.partial!r} expected={e.expected}"


async def send_3_and_close(r, w):
    w.write(b"abc")
    w.close()
    await w.wait_closed()
    return "ok"


async def server_readuntil(r, w):
    await r.readuntil(b"\n")


async def send_200k_no_newline(r, w):
    w.write(b"a" * 200_000)
    await w.drain()
    await asyncio.sleep(0.05)
    return "sent"


async def server_aborts_then_reads(r, w):
    w.transport.abort()
    return await r.read()


async def read_to_eof(r, w):
    return await r.read()


async def server_writes_after_eof(r, w):
    data = await r.read()
    w.write(b"after eof")
    await w.drain()
    w.close()
    return data


async def eof_then_read(r, w):
    w.write_eof()
    return await r.read()


async def server_drains_after_close(r, w):
    w.close()
    await w.drain()
    return "drained"


STREAM_CASES = {
    "write after the peer reset": (server_resets, write_after_reset),
    "read after the peer reset": (server_resets, read_after_reset),
    "half close": (server_echoes_reversed_at_eof, half_close),
    "close with 5 MB pending": (server_closes_with_5mb_pending, read_all),
    "readexactly short": (server_reads_10, send_3_and_close),
    "readuntil past the limit": (server_readuntil, send_200k_no_newline),
    "abort then read": (server_aborts_then_reads, read_to_eof),
    "write after the peer's eof": (server_writes_after_eof, eof_then_read),
    "drain after close": (server_drains_after_close, read_to_eof),
}


async def stream_case(loop, name):
    server_fn, client_fn = STREAM_CASES[name]
    done = loop.create_future()

    async def handler(r, w):
        res = await aoutcome_of(lambda: server_fn(r, w))
        # From 3.12.1 Server.wait_closed() waits for the connections too.
        w.close()
        if not done.done():
            done.set_result(res)

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    client = await aoutcome_of(lambda: client_fn(r, w))
    served = await asyncio.wait_for(done, 5)
    w.close()
    server.close()
    await server.wait_closed()
    return client, served


# ----- the test ---------------------------------------------------------------------

KINDS = {
    "tcp": (TCP_TRANSPORT_CASES, tcp_transport_case),
    "udp": (UDP_CASES, udp_transport_case),
    "write_pipe": (WRITE_PIPE_CASES, write_pipe_case),
    "streams": (STREAM_CASES, stream_case),
}


def run_case(factory, kind, name):
    loop = factory()
    loop.set_exception_handler(lambda lp, ctx: None)
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(asyncio.wait_for(KINDS[kind][1](loop, name), 10))
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.mark.filterwarnings("ignore::ResourceWarning")
# asyncio's pipe transport refused for a regular file fails in its __del__ (no _closing).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("name", sorted(LOOP_METHOD_CASES))
def test_loop_method_outcome(name):
    expected = run_loop_method_case(asyncio.new_event_loop, name)
    assert run_loop_method_case(ferroloop.new_event_loop, name) == expected


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.parametrize("kind,name", [(k, n) for k, (cases, _) in KINDS.items() for n in sorted(cases)])
def test_transport_outcome(kind, name):
    expected = run_case(asyncio.new_event_loop, kind, name)
    assert run_case(ferroloop.new_event_loop, kind, name) == expected
