"""Servers for the network benchmarks (``ferroloop bench``, benchmarks/net.py), one per
workload, each run in a fresh child process on the loop under test.

    python -m ferroloop._bench.servers LOOP SERVER [--size S] [--unix PATH]
    python -m ferroloop._bench.servers --list

SERVER is one of the keys of SERVERS below.  The server listens on 127.0.0.1
(an ephemeral port) or on the Unix socket PATH, checks itself once with a
blocking client in a thread (one echo of S bytes, or one HTTP request), and
then prints exactly one line on stdout:

    READY tcp 127.0.0.1:PORT        (or READY unix PATH)   and serves until killed
    NA <reason>                     the loop cannot run this server (exit 3):
                                    it is missing, lacks an API this server uses,
                                    or the self-check failed

The load comes from a separate process (the echo client of ``ferroloop._bench.echo``,
or wrk), so nothing here is timed.
"""

import asyncio
import os
import socket
import sys
import threading
import traceback

from ferroloop._bench import workloads as W  # the loop factory

SELF_CHECK_TIMEOUT = 10.0
READ_SIZE = 256 * 1024  # what asyncio's transports read at once (3.11: max_size)


class NotAvailable(Exception):
    pass


# ---------------------------------------------------------------------------
# Echo servers
# ---------------------------------------------------------------------------


class EchoProtocol(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.transport = None


def _listen_tcp():
    # proto=IPPROTO_TCP as create_server(host, port) gets from getaddrinfo():
    # asyncio sets TCP_NODELAY on accepted sockets only when sock.proto says
    # TCP, and a socket made with proto 0 would leave Nagle on (40 ms stalls).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def srv_tcp_proto(loop, ctx):
    """asyncio.Protocol echo: data_received() -> transport.write(data)."""
    sock = _listen_tcp()
    addr = ("tcp", sock.getsockname())  # before: a loop may detach the socket
    ctx.keep(await loop.create_server(EchoProtocol, sock=sock))
    return addr


async def srv_unix_proto(loop, ctx):
    """asyncio.Protocol echo over a Unix stream socket (create_unix_server)."""
    ctx.keep(await loop.create_unix_server(EchoProtocol, path=ctx.unix_path))
    return ("unix", ctx.unix_path)


async def srv_streams(loop, ctx):
    """Streams echo: start_server(); reader.readexactly(size); writer.write();
    await writer.drain()."""
    size = ctx.size

    async def handle(reader, writer):
        readexactly = reader.readexactly
        write = writer.write
        drain = writer.drain
        try:
            while True:
                write(await readexactly(size))
                await drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception as exc:  # an API the loop lacks shows up here
            ctx.fail(exc)
        finally:
            writer.close()

    sock = _listen_tcp()
    addr = ("tcp", sock.getsockname())
    ctx.keep(await asyncio.start_server(handle, sock=sock))
    return addr


async def srv_sock(loop, ctx):
    """Low-level echo: loop.sock_accept(); loop.sock_recv(); loop.sock_sendall()."""
    sock = _listen_tcp()

    async def handle(conn):
        sock_recv = loop.sock_recv
        sock_sendall = loop.sock_sendall
        try:
            while True:
                data = await sock_recv(conn, READ_SIZE)
                if not data:
                    break
                await sock_sendall(conn, data)
        except ConnectionError:
            pass
        except Exception as exc:
            ctx.fail(exc)
        finally:
            conn.close()

    async def acceptor():
        try:
            while True:
                conn, _ = await loop.sock_accept(sock)
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                ctx.keep(loop.create_task(handle(conn)))
        except Exception as exc:
            ctx.fail(exc)

    addr = ("tcp", sock.getsockname())
    ctx.keep(loop.create_task(acceptor()))
    return addr


class EchoDatagramProtocol(asyncio.DatagramProtocol):
    __slots__ = ("transport",)

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def srv_udp_proto(loop, ctx):
    """asyncio.DatagramProtocol echo: datagram_received() -> transport.sendto(data, addr)."""
    transport, _ = await loop.create_datagram_endpoint(
        EchoDatagramProtocol, local_addr=("127.0.0.1", 0))
    ctx.keep(transport)
    # A burst of the client's datagrams must not be dropped for want of buffer.
    transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return ("udp", transport.get_extra_info("sockname"))


# ---------------------------------------------------------------------------
# HTTP/1.1 servers ("hello world"), loaded by wrk
# ---------------------------------------------------------------------------

HELLO = b"Hello, world!"


async def srv_http_uvicorn(loop, ctx):
    """uvicorn (httptools parser) serving a bare ASGI "hello world" app."""
    try:
        import uvicorn
    except ImportError as exc:
        raise NotAvailable(f"uvicorn not installed ({exc})")

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", b"%d" % len(HELLO))]})
        await send({"type": "http.response.body", "body": HELLO})

    config = uvicorn.Config(app, http="httptools", lifespan="off",
                            access_log=False, log_level="warning",
                            loop="none")
    server = uvicorn.Server(config)
    sock = _listen_tcp()
    addr = ("tcp", sock.getsockname())

    async def serve():
        try:
            await server.serve(sockets=[sock])
        except Exception as exc:
            ctx.fail(exc)

    ctx.keep(loop.create_task(serve()))
    # serve() binds asynchronously: wait until it is started (or failed).
    for _ in range(1000):
        if server.started or ctx.failed.done():
            break
        await asyncio.sleep(0.005)
    return addr


async def srv_http_aiohttp(loop, ctx):
    """aiohttp.web with one GET route returning "hello world"."""
    try:
        from aiohttp import web
    except ImportError as exc:
        raise NotAvailable(f"aiohttp not installed ({exc})")

    async def hello(request):
        return web.Response(body=HELLO, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = _listen_tcp()
    addr = ("tcp", sock.getsockname())
    site = web.SockSite(runner, sock)
    await site.start()
    ctx.keep(runner)
    return addr


# name -> (setup coroutine, kind of self-check)
SERVERS = {
    "tcp_proto": (srv_tcp_proto, "echo"),
    "unix_proto": (srv_unix_proto, "echo"),
    "udp_proto": (srv_udp_proto, "echo"),
    "streams": (srv_streams, "echo"),
    "sock": (srv_sock, "echo"),
    "http_uvicorn": (srv_http_uvicorn, "http"),
    "http_aiohttp": (srv_http_aiohttp, "http"),
}


# ---------------------------------------------------------------------------
# Self-check and main
# ---------------------------------------------------------------------------


def _client_socket(addr):
    kind, where = addr
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    elif kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(SELF_CHECK_TIMEOUT)
    s.connect(where)
    return s


def _recv_exactly(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"server closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def self_check_echo(addr, size):
    msg = bytes((i * 31) & 0xFF for i in range(size))
    with _client_socket(addr) as s:
        for _ in range(2):
            s.sendall(msg)
            got = _recv_exactly(s, size)
            if got != msg:
                raise RuntimeError("echo differs from what was sent")


def self_check_http(addr, size):
    with _client_socket(addr) as s:
        for _ in range(2):  # two requests on one keep-alive connection
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while not (b"\r\n\r\n" in data and data.endswith(HELLO)):
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError(f"server closed; got {data[:200]!r}")
                data += chunk
            if not data.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"bad response {data[:200]!r}")


class Ctx:
    def __init__(self, loop, size, unix_path):
        self.loop = loop
        self.size = size
        self.unix_path = unix_path
        self.failed = loop.create_future()
        self._keep = []

    def keep(self, obj):
        self._keep.append(obj)

    def fail(self, exc):
        if not self.failed.done():
            self.failed.set_result(exc)
        else:
            print(f"server error: {exc!r}", file=sys.stderr, flush=True)


async def start(loop, name, size, unix_path):
    ctx = Ctx(loop, size, unix_path)

    def on_error(lp, context):
        exc = context.get("exception") or RuntimeError(context.get("message"))
        ctx.fail(exc)

    loop.set_exception_handler(on_error)
    setup, check_kind = SERVERS[name]
    addr = await setup(loop, ctx)
    check = self_check_echo if check_kind == "echo" else self_check_http
    done = loop.create_future()

    def run_check():
        try:
            check(addr, size)
            res = None
        except BaseException as exc:  # reported through the future
            res = exc
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(res))

    threading.Thread(target=run_check, daemon=True).start()
    finished, _ = await asyncio.wait([done, ctx.failed],
                                     timeout=SELF_CHECK_TIMEOUT,
                                     return_when=asyncio.FIRST_COMPLETED)
    if ctx.failed in finished:
        raise ctx.failed.result()
    if done not in finished:
        raise TimeoutError("self-check timed out")
    if done.result() is not None:
        raise done.result()
    # From now on, errors are only logged (the client's run fails if they matter).
    loop.set_exception_handler(
        lambda lp, c: print(f"server error: {c.get('message')} "
                            f"{c.get('exception')!r}", file=sys.stderr, flush=True))
    ctx.failed = loop.create_future()
    ctx.failed.set_result(None)
    return addr, ctx


def describe(exc):
    s = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:  # where it was raised says which API is missing
        s += f" (in {tb[-1].name})"
    return " ".join(s.split())[:160]


def main(argv):
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--list", action="store_true")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--unix", dest="unix_path")
    p.add_argument("loop", nargs="?")
    p.add_argument("server", nargs="?")
    a = p.parse_args(argv)
    if a.list:
        for k, (f, _) in SERVERS.items():
            print(f"{k:14} {(f.__doc__ or '').strip()}")
        return 0
    if a.server not in SERVERS:
        p.error(f"unknown server {a.server!r}; known: {', '.join(SERVERS)}")
    if a.server.startswith("unix") and not a.unix_path:
        p.error("--unix PATH is required")

    def na(reason):
        sys.stdout.write(f"NA {reason}\n")
        sys.stdout.flush()
        return 3

    try:
        loop = W.new_loop(a.loop)
    except BaseException as exc:
        return na(f"loop unavailable ({describe(exc)})")
    asyncio.set_event_loop(loop)
    try:
        addr, ctx = loop.run_until_complete(
            start(loop, a.server, a.size, a.unix_path))
    except BaseException as exc:
        if os.environ.get("NETBENCH_DEBUG"):
            traceback.print_exc()
        return na(describe(exc))
    kind, where = addr
    where = f"{where[0]}:{where[1]}" if kind in ("tcp", "udp") else where
    sys.stdout.write(f"READY {kind} {where}\n")
    sys.stdout.flush()
    loop.run_forever()  # until the benchmark driver kills us
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
