#!/usr/bin/env python3
"""Subprocess benchmarks: ferroloop vs asyncio, uvloop, rloop.

Workloads (each loop in a fresh child process, runs interleaved, median reported):

* ``spawn_wait``: ``asyncio.create_subprocess_exec('/bin/true')`` then ``wait()``, N times
  in sequence (no pipes): spawning plus the child watching, one child at a time.
* ``spawn_wait_10``: the same with 10 children at once (``gather``), N/10 rounds.
* ``communicate``: ``/bin/cat`` with stdin/stdout pipes, ``communicate(4 KiB)``, N times:
  spawning, three pipe transports and the exit.

    python benchmarks/spawn.py                  # 5 runs, N=300
    python benchmarks/spawn.py --runs 3 --n 200 --loops ferroloop,asyncio

Prints microseconds per child (lower is better) and the ratio to uvloop, wall-clock and the
parent's CPU time. Most of the wall-clock is fork/exec and the child's own run; the parent's
CPU is what the loop (and Popen in it) spends per child.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True

LOOPS = ["ferroloop", "asyncio", "uvloop", "rloop"]
WORKLOADS = ["spawn_wait", "spawn_wait_10", "communicate"]


def new_loop(name):
    import asyncio
    if name == "asyncio":
        return asyncio.new_event_loop()
    if name == "ferroloop":
        import ferroloop
        return ferroloop.new_event_loop()
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    if name == "rloop":
        import rloop
        return rloop.new_event_loop()
    raise SystemExit(f"unknown loop {name}")


def child(loop_name, workload, n):
    import asyncio
    loop = new_loop(loop_name)
    asyncio.set_event_loop(loop)
    payload = b"x" * 4096

    async def spawn_wait():
        p = await asyncio.create_subprocess_exec("/bin/true")
        rc = await p.wait()
        assert rc == 0, rc

    async def communicate():
        p = await asyncio.create_subprocess_exec(
            "/bin/cat", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out, _ = await p.communicate(payload)
        assert out == payload and p.returncode == 0

    async def main():
        # Warm-up (imports, first fork).
        for _ in range(5):
            await spawn_wait()
        t0 = time.perf_counter()
        c0 = time.process_time()
        if workload == "spawn_wait":
            for _ in range(n):
                await spawn_wait()
        elif workload == "spawn_wait_10":
            for _ in range(n // 10):
                await asyncio.gather(*(spawn_wait() for _ in range(10)))
        elif workload == "communicate":
            for _ in range(n):
                await communicate()
        return time.perf_counter() - t0, time.process_time() - c0

    elapsed, cpu = loop.run_until_complete(main())
    loop.close()
    count = n // 10 * 10 if workload == "spawn_wait_10" else n
    print(json.dumps({"us_per_child": elapsed / count * 1e6,
                      "cpu_us_per_child": cpu / count * 1e6}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--loops", default=",".join(LOOPS))
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--child", nargs=3, metavar=("LOOP", "WORKLOAD", "N"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    loops = args.loops.split(",")
    workloads = args.workloads.split(",")
    available = []
    for name in loops:
        p = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True)
        if p.returncode == 0:
            available.append(name)
        else:
            print(f"{name}: not installed, skipped", file=sys.stderr)
    results = {(w, lp): [] for w in workloads for lp in available}
    cpu = {(w, lp): [] for w in workloads for lp in available}
    for r in range(args.runs):
        for w in workloads:
            order = available[r % len(available):] + available[:r % len(available)]
            for lp in order:
                p = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--child", lp, w, str(args.n)],
                    capture_output=True, text=True, timeout=600)
                if p.returncode != 0:
                    print(f"{lp} {w} failed: {p.stderr.strip().splitlines()[-1:]}",
                          file=sys.stderr)
                    continue
                got = json.loads(p.stdout.strip().splitlines()[-1])
                results[(w, lp)].append(got["us_per_child"])
                cpu[(w, lp)].append(got["cpu_us_per_child"])
    for title, table in (("wall-clock", results), ("the parent's CPU (user+sys)", cpu)):
        print(f"Python {sys.version.split()[0]}, {args.runs} runs, N={args.n}; {title}: "
              "median us per child (ratio to uvloop, < 1 is faster)")
        print(f"{'workload':<16}" + "".join(f"{lp:>20}" for lp in available))
        for w in workloads:
            base = table.get((w, "uvloop"))
            base = statistics.median(base) if base else None
            row = f"{w:<16}"
            for lp in available:
                vals = table[(w, lp)]
                if not vals:
                    row += f"{'failed':>20}"
                    continue
                med = statistics.median(vals)
                ratio = f" ({med / base:.2f}x)" if base else ""
                row += f"{med:>12.1f}{ratio:>8}"
            print(row)
        print()


if __name__ == "__main__":
    main()
