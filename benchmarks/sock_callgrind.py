#!/usr/bin/env python3
"""Instructions per ``sock_recv`` + ``sock_sendall`` pair on each path, under callgrind.

``net_callgrind.py``'s ``sock_1k`` races a client in another process: whether a
``sock_recv`` finds its data already there or waits for it depends on timing under
valgrind, and a faster ``sock_*`` makes it wait more often, so its count mixes two paths
in proportions that change from run to run. Here one process drives both ends of a
socketpair, so each path is taken every time:

* ``at_once``: the peer's 1 KiB is there before ``sock_recv`` (no wait), and
  ``sock_sendall`` completes at once;
* ``wait``: the peer sends from a ``call_soon`` callback, so ``sock_recv`` waits for
  readiness (a reactor registration, a future, a loop iteration), then ``sock_sendall``
  completes at once.

Both include the peer's own ``socket.send``/``recv`` calls, the same on every loop.

    python benchmarks/sock_callgrind.py                         # ferroloop and asyncio
    python benchmarks/sock_callgrind.py --loops ferroloop,uvloop
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

from cgutil import callgrind_total  # noqa: E402

N1, N2 = 2000, 6000


def serve(loop_name, path, n):
    import asyncio
    import socket

    import workloads as W

    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        msg = b"x" * 1024
        for _ in range(n):
            if path == "at_once":
                a.send(msg)
            else:
                loop.call_soon(a.send, msg)
            data = await loop.sock_recv(b, 262144)
            await loop.sock_sendall(b, data)
            a.recv(262144)
        a.close()
        b.close()

    loop = W.new_loop(loop_name)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def instructions(loop_name, path, n):
    return callgrind_total([sys.executable, os.path.abspath(__file__), "--serve",
                            loop_name, path, n])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loops", default="ferroloop,asyncio")
    ap.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve[0], args.serve[1], int(args.serve[2]))
        return 0
    loops = args.loops.split(",")
    print("| path | " + " | ".join(loops) + " |")
    print("|---|" + "--:|" * len(loops))
    for path in ("at_once", "wait"):
        cells = []
        for name in loops:
            try:
                per = (instructions(name, path, N2) - instructions(name, path, N1)) / (N2 - N1)
                cells.append(f"{per:,.0f}")
            except Exception as e:  # noqa: BLE001 - a loop that is not installed
                cells.append(f"n/a ({e})")
        print(f"| {path} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
