#!/usr/bin/env python3
"""Interleaved A/B of echo servers: the server's user and system CPU per round trip.

On a host with shared cores single benchmark cells move by 5-15 % (up to 2x on 3.13) from run
to run, more than most changes to the loop. This runs the loops in turn, round after round,
each in a fresh server process loaded by the same Rust echo client, and reports the medians
of round trips per second and of the server's user and system CPU per round trip (from
``/proc/PID/stat`` over the measured window). The split tells a change in the loop's own
work (user) from the kernel's share (system), which no instruction count sees.

    python benchmarks/net_ab.py tcp_proto 1024 10 ferroloop rloop mio
    python benchmarks/net_ab.py streams 1024 8 ferroloop rloop rsloop
    python benchmarks/net_ab.py tcp_proto 1024 8 new=.venv/bin/python:ferroloop \\
        old=/tmp/old/bin/python:ferroloop

A loop is ``NAME`` (this Python) or ``LABEL=PYTHON:NAME``; ``mio`` is the pure-Rust echo
server (the floor); ``mio-py`` (``tcp_proto`` only) is the floor's loop calling the Python
protocol's ``data_received`` per read: the floor plus Python's protocol call, no event loop. Servers are ``ferroloop._bench.servers`` workloads: ``tcp_proto``,
``unix_proto``, ``streams``, ``sock``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys


def cpu_seconds(pid):
    """(user, system) CPU seconds of process ``pid`` so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def one_round(python, loop, workload, size, conns, duration, pin=False):
    """Round trips per second, user and system µs per round trip of one server run.
    ``pin``: the server on the first allowed CPU, the client on the last."""
    cpus = sorted(os.sched_getaffinity(0))

    def on_cpu(cpu):
        return (lambda: os.sched_setaffinity(0, {cpu})) if pin else None
    unix = workload.startswith("unix")
    path = f"/tmp/net_ab.{os.getpid()}.sock"
    if unix and os.path.exists(path):
        os.unlink(path)
    if loop == "mio":
        server_cmd = [python, "-m", "ferroloop._bench.echo", "server",
                      *(["--unix", path] if unix else ["--tcp", "127.0.0.1:0"])]
    elif loop == "mio-py":
        if unix or workload != "tcp_proto":
            raise SystemExit("mio-py serves the tcp_proto workload only")
        server_cmd = [python, "-m", "ferroloop._bench.echo", "server", "--protocol",
                      "--tcp", "127.0.0.1:0"]
    else:
        server_cmd = [python, "-m", "ferroloop._bench.servers", loop, workload,
                      "--size", str(size), *(["--unix", path] if unix else [])]
    server = subprocess.Popen(server_cmd, stdout=subprocess.PIPE, text=True, cwd="/tmp",
                              preexec_fn=on_cpu(cpus[0]))
    try:
        addr = server.stdout.readline().split()[2]
        kind = "--unix" if unix else "--tcp"
        client = subprocess.Popen(
            [sys.executable, "-m", "ferroloop._bench.echo", "client", kind, addr,
             "--conns", str(conns), "--size", str(size), "--warmup", "0.5",
             "--duration", str(duration)],
            stdout=subprocess.PIPE, text=True, cwd="/tmp", preexec_fn=on_cpu(cpus[-1]))
        if client.stdout.readline().strip() != "WINDOW":
            raise RuntimeError("the echo client did not start its window")
        user0, sys0 = cpu_seconds(server.pid)
        out = client.communicate()[0]
        user1, sys1 = cpu_seconds(server.pid)
    finally:
        server.kill()
        server.wait()
    result = json.loads(out.strip().splitlines()[-1])
    n = result["msgs"]
    return result["msgs_per_s"], (user1 - user0) / n * 1e6, (sys1 - sys0) / n * 1e6


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workload")
    ap.add_argument("size", type=int)
    ap.add_argument("rounds", type=int)
    ap.add_argument("loops", nargs="+")
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--pin", action="store_true",
                    help="server on the first allowed CPU, client on the last")
    a = ap.parse_args(argv)
    specs = []
    for spec in a.loops:
        label, _, rest = spec.rpartition("=")
        python, _, loop = rest.rpartition(":")
        specs.append((label or loop, python or sys.executable, loop))
    results = {label: [] for label, _, _ in specs}
    for r in range(a.rounds):
        for label, python, loop in specs:
            rate, user, system = one_round(python, loop, a.workload, a.size, a.conns,
                                           a.duration, a.pin)
            results[label].append((rate, user, system))
            print(f"round {r + 1} {label}: {rate:,.0f}/s user {user:.2f} µs "
                  f"sys {system:.2f} µs", flush=True)
    print(f"\nmedians of {a.rounds} rounds, server CPU per round trip:")
    print("| loop | round trips/s | user µs | sys µs |")
    print("|---|--:|--:|--:|")
    for label, rows in results.items():
        rate, user, system = (statistics.median(col) for col in zip(*rows))
        print(f"| {label} | {rate:,.0f} | {user:.2f} | {system:.2f} |")


if __name__ == "__main__":
    main()
