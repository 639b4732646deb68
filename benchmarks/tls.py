#!/usr/bin/env python3
"""TLS benchmarks: a TLS echo server on each event loop, loaded from another process.

    python benchmarks/tls.py                               # every loop, 5 runs
    python benchmarks/tls.py --loops ferroloop,uvloop --runs 3 --seconds 2
    python benchmarks/tls.py --key rsa                     # RSA-2048 instead of ECDSA P-256
    python benchmarks/tls.py --json tls.json

Workloads (the server is an ``asyncio.Protocol`` echo, ``data_received -> write``, behind
``loop.create_server(..., ssl=ctx)``; TLS 1.3, certificate made once with ``openssl``):

* ``tls_echo_1k``: one connection, the client sends 1 KiB and reads it back, over and over;
  round trips/s.
* ``tls_echo_1k_x8``: the same over 8 connections at once (one message in flight on each),
  so the server, not the client's round-trip latency, is the bottleneck; round trips/s.
* ``tls_handshake``: a new connection per operation: TCP connect, full TLS handshake (no
  session resumption), one 1 KiB echo, close; connections/s.

Each measurement starts a fresh server process on the loop under test and a fixed client in
another process, each in a session of its own (as net.py does, for autogroup scheduling) (blocking ``ssl`` sockets, no event loop), interleaved as in run.py: run r
measures every workload, and for each workload every loop in an order rotated by r. The
figures are medians over the runs; besides the client's rate, the server's CPU time per
operation (every thread's run time, from /proc/PID/task/*/schedstat) is reported, which is the loop's cost even when the
client is the bottleneck. Loops that cannot do TLS are reported as n/a.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

import workloads as W  # noqa: E402  (new_loop, loop_version)

WORKLOADS = ("tls_echo_1k", "tls_echo_1k_x8", "tls_handshake")
CONNECTIONS = 8  # tls_echo_1k_x8
DEFAULT_LOOPS = ("ferroloop", "asyncio", "uvloop", "rloop")
MSG = 1024


def make_cert(directory, key_kind):
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    newkey = ["-newkey", "rsa:2048"] if key_kind == "rsa" else [
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    subprocess.run(
        ["openssl", "req", "-x509", *newkey, "-nodes", "-days", "2", "-keyout", key,
         "-out", cert, "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


# --- the server (runs in its own process on the loop under test) ---


def serve(loop_name, cert, key):
    import asyncio

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

        def connection_lost(self, exc):
            pass

    loop = W.new_loop(loop_name)
    asyncio.set_event_loop(loop)
    loop.set_exception_handler(lambda lp, c: None)  # clients closing without close_notify
    try:
        server = loop.run_until_complete(
            loop.create_server(Echo, "127.0.0.1", 0, ssl=ctx, backlog=1024))
    except Exception as e:  # noqa: BLE001 - reported to the parent as n/a
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port, "version": W.loop_version(loop_name)}), flush=True)
    loop.run_forever()


# --- the client (a fixed, loop-free load generator in another process) ---


def client(workload, port, cert, seconds, warmup):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cert)
    payload = b"x" * MSG

    def echo_once(s):
        s.sendall(payload)
        got = 0
        while got < MSG:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("server closed")
            got += len(chunk)

    def connect():
        raw = socket.create_connection(("127.0.0.1", port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ctx.wrap_socket(raw, server_hostname="localhost")

    total = measured = 0
    start = time.perf_counter()
    t_measure = start + warmup
    end = t_measure + seconds
    if workload == "tls_echo_1k":
        s = connect()
        try:
            while True:
                now = time.perf_counter()
                if now >= end:
                    break
                echo_once(s)
                total += 1
                if now >= t_measure:
                    measured += 1
        finally:
            s.close()
    elif workload == "tls_echo_1k_x8":
        import selectors

        sel = selectors.DefaultSelector()
        socks = [connect() for _ in range(CONNECTIONS)]
        got = {}
        try:
            for s in socks:
                sel.register(s, selectors.EVENT_READ)
                got[s] = 0
                s.sendall(payload)
            while True:
                now = time.perf_counter()
                if now >= end:
                    break
                for key, _ in sel.select(1.0):
                    s = key.fileobj
                    while True:  # a readable socket holds a record: read what TLS has
                        chunk = s.recv(65536)
                        if not chunk:
                            raise ConnectionError("server closed")
                        got[s] += len(chunk)
                        if not s.pending():
                            break
                    if got[s] >= MSG:
                        got[s] -= MSG
                        total += 1
                        if now >= t_measure:
                            measured += 1
                        s.sendall(payload)
        finally:
            for s in socks:
                s.close()
    else:
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            s = connect()
            try:
                echo_once(s)
            finally:
                s.close()
            total += 1
            if now >= t_measure:
                measured += 1
    print(json.dumps({"total": total, "rate": measured / seconds}), flush=True)


# --- the driver ---


def cpu_ns(pid):
    """CPU time of every thread of ``pid`` so far, in ns (schedstat: finer than the
    clock ticks of /proc/PID/stat)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that just ended
    return total


def measure(python, loop_name, workload, cert, key, seconds, warmup):
    env = dict(os.environ, PYTHONHASHSEED="0")
    server = subprocess.Popen([python, __file__, "--serve", loop_name, cert, key],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=HERE, start_new_session=True)
    try:
        line = server.stdout.readline()
        if not line:
            err = server.stderr.read().strip().splitlines()
            return {"error": err[-1] if err else f"server exit {server.poll()}"}
        hello = json.loads(line)
        if "error" in hello:
            return hello
        cpu0 = cpu_ns(server.pid)
        out = subprocess.run(
            [python, __file__, "--client", workload, str(hello["port"]), cert,
             str(seconds), str(warmup)],
            capture_output=True, text=True, env=env, cwd=HERE, timeout=seconds * 10 + 60,
            start_new_session=True)
        cpu1 = cpu_ns(server.pid)
        if out.returncode != 0:
            err = out.stderr.strip().splitlines()
            return {"error": err[-1] if err else f"client exit {out.returncode}"}
        res = json.loads(out.stdout.strip().splitlines()[-1])
        cpu_us = (cpu1 - cpu0) / 1e3 / max(res["total"], 1)
        return {"rate": res["rate"], "server_cpu_us": cpu_us, "version": hello["version"]}
    finally:
        server.kill()
        server.wait()


def table(headers, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = lambda cells: "| " + " | ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
    ) + " |"
    lines = [fmt(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(lines + [fmt(r) for r in rows])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loops", default=",".join(DEFAULT_LOOPS))
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--warmup", type=float, default=0.3)
    ap.add_argument("--key", choices=("ec", "rsa"), default="ec")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    loops = [x for x in a.loops.split(",") if x]
    workloads = [x for x in a.workloads.split(",") if x]
    results = {w: {lp: [] for lp in loops} for w in workloads}
    cpu = {w: {lp: [] for lp in loops} for w in workloads}
    errors, versions = {}, {}
    with tempfile.TemporaryDirectory() as d:
        cert, key = make_cert(d, a.key)
        for r in range(a.runs):
            for w in workloads:
                order = loops[r % len(loops):] + loops[:r % len(loops)]
                for lp in order:
                    if lp in errors:
                        continue
                    res = measure(a.python, lp, w, cert, key, a.seconds, a.warmup)
                    if "error" in res:
                        errors[lp] = res["error"]
                        print(f"{lp}: n/a ({res['error']})", file=sys.stderr)
                        continue
                    versions[lp] = res["version"]
                    results[w][lp].append(res["rate"])
                    cpu[w][lp].append(res["server_cpu_us"])
                    print(f"run {r + 1}/{a.runs} {w:14} {lp:10} {res['rate']:10.0f}/s "
                          f"server {res['server_cpu_us']:7.1f} us/op", file=sys.stderr)
    print(f"\nPython {sys.version.split()[0]}, {a.key.upper()} certificate, TLS 1.3, "
          f"{a.runs} runs x {a.seconds:g} s, medians; ratios to uvloop (higher is better "
          f"for ops/s, lower for server CPU).\n")
    base = "uvloop" if "uvloop" in loops and "uvloop" not in errors else None
    for w in workloads:
        rows = []
        med = {lp: statistics.median(v) for lp, v in results[w].items() if v}
        mcpu = {lp: statistics.median(v) for lp, v in cpu[w].items() if v}
        for lp in loops:
            if lp not in med:
                rows.append([lp, "n/a", "", "n/a", ""])
                continue
            ratio = f"{med[lp] / med[base]:.2f}x" if base in med else ""
            cratio = f"{mcpu[lp] / mcpu[base]:.2f}x" if base in mcpu else ""
            rows.append([f"{lp} {versions.get(lp, '')}", f"{med[lp]:,.0f}", ratio,
                         f"{mcpu[lp]:.1f}", cratio])
        unit = "connections/s" if w == "tls_handshake" else "round trips/s"
        print(f"{w}:")
        print(table(["loop", unit, "vs uvloop", "server CPU us/op", "vs uvloop"], rows))
        print()
    for lp, e in errors.items():
        print(f"{lp}: n/a: {e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"python": sys.version.split()[0], "key": a.key, "runs": a.runs,
                       "seconds": a.seconds, "rates": results, "server_cpu_us": cpu,
                       "versions": versions, "errors": errors}, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) > 1 and sys.argv[1] == "--client":
        client(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]),
               float(sys.argv[6]))
    else:
        main()
