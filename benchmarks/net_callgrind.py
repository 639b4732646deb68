#!/usr/bin/env python3
"""Instructions per network operation in the server process, under callgrind.

The server runs on the loop under test inside ``valgrind --tool=callgrind``; its client is
a plain blocking-socket Python process that valgrind does not trace. Each workload runs
for two sizes N1 < N2 and the report is

    Ir/op = (Ir(N2) - Ir(N1)) / (N2 - N1)

which cancels start-up, imports and loop creation (as ``callgrind.py`` does for the
scheduling workloads). User-space instructions only: the kernel's share of a syscall is
not counted, so check a change against wall-clock (``net.py``) too.

    python benchmarks/net_callgrind.py                          # all workloads and loops
    python benchmarks/net_callgrind.py --loops ferroloop,uvloop --workloads echo_1k

Workloads: ``echo_1k`` / ``echo_10k`` / ``echo_100k`` (an ``asyncio.Protocol`` echo, one connection,
ping-pong), ``sock_1k`` (``sock_recv`` + ``sock_sendall`` in a task), ``stream_1k`` (the
streams API: ``start_server``, ``reader.read`` + ``writer.write`` + ``drain``), ``accept``
(connect, one byte echoed, close: the cost of an accepted connection), ``udp_1k`` (a
``DatagramProtocol`` echo, ``datagram_received`` -> ``sendto(data, addr)``, ping-pong).
"""

import argparse
import asyncio
import os
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

from cgutil import callgrind_total  # noqa: E402

import workloads as W  # noqa: E402

CLIENT = r"""
import socket, sys
port, kind, n, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
msg = b"x" * size
if kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    s.settimeout(5)
    for _ in range(n):
        s.send(msg)
        s.recv(65536)
    s.close()
elif kind == "accept":
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"x"); s.recv(10); s.close()
else:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(n):
        s.sendall(msg)
        got = 0
        while got < size:
            got += len(s.recv(262144))
    s.close()
"""

# name: (client kind, message size, (N1, N2))
WORKLOADS = {
    "echo_1k": ("echo", 1024, (2000, 6000)),
    "echo_10k": ("echo", 10240, (1000, 3000)),
    "echo_100k": ("echo", 102400, (300, 900)),
    "sock_1k": ("sock", 1024, (2000, 6000)),
    "stream_1k": ("stream", 1024, (2000, 6000)),
    "accept": ("accept", 1, (500, 1500)),
    "udp_1k": ("udp", 1024, (2000, 6000)),
}


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class EchoDatagram(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class EchoOnce(Echo):
    def data_received(self, data):
        self.transport.write(data)
        self.transport.close()


async def serve(kind, n, size):
    """The server side of one run: serves the client until it is done."""
    loop = asyncio.get_running_loop()
    tasks = []
    if kind == "sock":
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        lsock.setblocking(False)
        port = lsock.getsockname()[1]

        async def echo(conn):
            while data := await loop.sock_recv(conn, 262144):
                await loop.sock_sendall(conn, data)
            conn.close()

        async def acceptor():
            conn, _ = await loop.sock_accept(lsock)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await echo(conn)

        tasks.append(loop.create_task(acceptor()))
    elif kind == "udp":
        transport, _ = await loop.create_datagram_endpoint(
            EchoDatagram, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
    elif kind == "stream":
        async def handle(reader, writer):
            while data := await reader.read(262144):
                writer.write(data)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    else:
        server = await loop.create_server(
            EchoOnce if kind == "accept" else Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    argv = [sys.executable, "-c", CLIENT, str(port), kind, str(n), str(size)]
    await loop.run_in_executor(None, lambda: subprocess.run(argv, check=True))
    for t in tasks:
        await t
    if kind == "udp":
        transport.close()
    elif kind != "sock":
        server.close()
        await server.wait_closed()


def server_main(loop_name, workload, n):
    kind, size, _ = WORKLOADS[workload]
    loop = W.new_loop(loop_name)
    try:
        loop.run_until_complete(serve(kind, n, size))
    finally:
        loop.close()


def instructions(loop_name, workload, n):
    return callgrind_total([sys.executable, os.path.abspath(__file__), "--serve",
                            loop_name, workload, n])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loops", default="ferroloop,uvloop,rloop,asyncio")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--serve", nargs=3, metavar=("LOOP", "WORKLOAD", "N"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve:
        loop_name, workload, n = a.serve
        return server_main(loop_name, workload, int(n))
    loops = [x for x in a.loops.split(",") if x]
    print("| workload | " + " | ".join(loops) + " |")
    print("|---|" + "--:|" * len(loops))
    for wl in a.workloads.split(","):
        n1, n2 = WORKLOADS[wl][2]
        cells = []
        for lp in loops:
            try:
                per_op = (instructions(lp, wl, n2) - instructions(lp, wl, n1)) / (n2 - n1)
                cells.append(f"{per_op:,.0f}")
            except Exception as e:  # a loop not installed or lacking an API
                cells.append(f"n/a ({type(e).__name__})")
        print(f"| {wl} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
