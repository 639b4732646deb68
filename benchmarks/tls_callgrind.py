#!/usr/bin/env python3
"""Instructions per TLS operation in the server process, under callgrind.

As ``net_callgrind.py``: the server (an ``asyncio.Protocol`` echo behind
``create_server(..., ssl=ctx)``) runs on the loop under test inside
``valgrind --tool=callgrind``; the client is a blocking-``ssl`` Python process valgrind does
not trace. Each workload runs for two counts N1 < N2 and the report is

    Ir/op = (Ir(N2) - Ir(N1)) / (N2 - N1)

which cancels start-up and imports. User-space instructions only (OpenSSL's included: the
cryptography is the same for every loop, so differences are the loops' own).

    python benchmarks/tls_callgrind.py                       # both workloads, all loops
    python benchmarks/tls_callgrind.py --loops ferroloop,uvloop --workloads tls_echo_1k

Workloads: ``tls_echo_1k`` (one TLS 1.3 connection, 1 KiB ping-pong), ``tls_handshake``
(connect, full handshake, one 1 KiB echo, close). EC P-256 certificate made with openssl.
"""

import argparse
import asyncio
import os
import ssl
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

from cgutil import callgrind_total  # noqa: E402

import workloads as W  # noqa: E402

CLIENT = r"""
import socket, ssl, sys
port, kind, n, cafile = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
msg = b"x" * 1024

def echo(s):
    s.sendall(msg)
    got = 0
    while got < len(msg):
        got += len(s.recv(65536))

def conn():
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, server_hostname="localhost")

if kind == "handshake":
    for _ in range(n):
        s = conn(); echo(s); s.close()
else:
    s = conn()
    for _ in range(n):
        echo(s)
    s.close()
"""

# name: (client kind, (N1, N2))
WORKLOADS = {
    "tls_echo_1k": ("echo", (1000, 3000)),
    "tls_handshake": ("handshake", (100, 300)),
}


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def serve(kind, n, cert, key):
    loop = asyncio.get_running_loop()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    argv = [sys.executable, "-c", CLIENT, str(port), kind, str(n), cert]
    await loop.run_in_executor(None, lambda: subprocess.run(argv, check=True))
    server.close()
    await server.wait_closed()


def make_cert(directory):
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-keyout", key,
         "-out", cert, "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


def instructions(loop_name, workload, n, cert, key):
    return callgrind_total([sys.executable, os.path.abspath(__file__), "--serve",
                            loop_name, workload, n, cert, key])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loops", default="ferroloop,uvloop,asyncio")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--serve", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve:
        loop_name, workload, n, cert, key = a.serve
        loop = W.new_loop(loop_name)
        try:
            loop.run_until_complete(serve(WORKLOADS[workload][0], int(n), cert, key))
        finally:
            loop.close()
        return
    loops = [x for x in a.loops.split(",") if x]
    with tempfile.TemporaryDirectory() as d:
        cert, key = make_cert(d)
        print("| workload | " + " | ".join(loops) + " |")
        print("|---|" + "--:|" * len(loops))
        for wl in a.workloads.split(","):
            n1, n2 = WORKLOADS[wl][1]
            cells = []
            for lp in loops:
                try:
                    hi = instructions(lp, wl, n2, cert, key)
                    lo = instructions(lp, wl, n1, cert, key)
                    cells.append(f"{(hi - lo) / (n2 - n1):,.0f}")
                except Exception as e:  # a loop not installed or lacking TLS
                    cells.append(f"n/a ({type(e).__name__})")
            print(f"| {wl} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
