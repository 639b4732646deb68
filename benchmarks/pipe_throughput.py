"""Pipe throughput: N MiB through an ``os.pipe()``, written with ``loop.connect_write_pipe``
and read with ``loop.connect_read_pipe`` in the same loop, on every loop side by side.

Usage::

    python benchmarks/pipe_throughput.py                          # 256 MiB in 64 KiB writes + 32 MiB in 1 KiB writes
    python benchmarks/pipe_throughput.py --loops ferroloop,uvloop --runs 7
    python benchmarks/pipe_throughput.py --sizes 64:262144        # MiB:write-size pairs
    python benchmarks/pipe_throughput.py --child ferroloop 64 65536   # one measurement (JSON line)

Each measurement runs in a fresh child process (``sys.executable``). The child connects
both ends, does an untimed warm-up transfer of 4 MiB on another pipe, then times (wall
clock, ``time.perf_counter``) the transfer of N MiB: the writer writes ``chunk``-byte
``bytes`` as long as its protocol is not paused (``pause_writing``/``resume_writing``),
the reader counts the bytes in ``data_received``; the clock stops when the reader has
them all, and the byte count is checked. Runs are interleaved (run r of every loop
before run r+1); the table shows the median, MiB/s, and time relative to ferroloop
(> 1: slower than ferroloop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workloads import loop_version, new_loop  # noqa: E402

MiB = 1024 * 1024
DEFAULT_LOOPS = ("ferroloop", "asyncio", "uvloop", "rloop")
DEFAULT_SIZES = ((256, 64 * 1024), (32, 1024))


async def transfer(loop, total: int, chunk: int) -> float:
    """Seconds to move ``total`` bytes through a fresh pipe in ``chunk``-byte writes."""
    r, w = os.pipe()
    done = loop.create_future()
    data = b"\xa5" * chunk

    class Reader(asyncio.Protocol):
        n = 0

        def data_received(self, d):
            self.n += len(d)
            if self.n >= total and not done.done():
                done.set_result(self.n)

    class Writer(asyncio.BaseProtocol):
        def __init__(self):
            self.ok = None

        def pause_writing(self):
            self.ok = loop.create_future()

        def resume_writing(self):
            if self.ok is not None and not self.ok.done():
                self.ok.set_result(None)
            self.ok = None

    rt, _ = await loop.connect_read_pipe(Reader, open(r, "rb", 0))
    wt, wp = await loop.connect_write_pipe(Writer, open(w, "wb", 0))
    t0 = time.perf_counter()
    sent = 0
    while sent < total:
        if wp.ok is not None:
            await wp.ok
        wt.write(data)
        sent += chunk
    got = await done
    elapsed = time.perf_counter() - t0
    assert got == sent, (got, sent)
    wt.close()
    rt.close()
    await asyncio.sleep(0)
    return elapsed


def child(name: str, mib: int, chunk: int) -> None:
    loop = new_loop(name)
    try:
        loop.run_until_complete(transfer(loop, 4 * MiB, chunk))
        seconds = loop.run_until_complete(transfer(loop, mib * MiB, chunk))
    finally:
        loop.close()
    print(json.dumps({"loop": name, "mib": mib, "chunk": chunk, "seconds": seconds,
                      "version": loop_version(name)}))


def measure(python: str, name: str, mib: int, chunk: int, timeout: float):
    proc = subprocess.run(
        [python, os.path.abspath(__file__), "--child", name, str(mib), str(chunk)],
        capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return None, (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]
    return json.loads(proc.stdout.strip().splitlines()[-1]), None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", nargs=3, metavar=("LOOP", "MIB", "CHUNK"))
    ap.add_argument("--loops", default=",".join(DEFAULT_LOOPS))
    ap.add_argument("--sizes", default=",".join(f"{m}:{c}" for m, c in DEFAULT_SIZES),
                    help="comma-separated MIB:CHUNK pairs")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args()
    if args.child:
        name, mib, chunk = args.child
        child(name, int(mib), int(chunk))
        return

    loops = args.loops.split(",")
    sizes = [tuple(int(x) for x in s.split(":")) for s in args.sizes.split(",")]
    times: dict = {(n, s): [] for n in loops for s in sizes}
    versions, unavailable = {}, {}
    for _ in range(args.runs):
        for size in sizes:
            for name in loops:
                if name in unavailable:
                    continue
                res, err = measure(args.python, name, *size, args.timeout)
                if res is None:
                    unavailable[name] = err
                    continue
                versions[name] = res["version"]
                times[(name, size)].append(res["seconds"])

    print(f"Python {sys.version.split()[0]}; median of {args.runs} runs, each in a fresh process")
    for size in sizes:
        mib, chunk = size
        print(f"\n{mib} MiB through os.pipe() in {chunk}-byte writes")
        print(f"{'loop':<12}{'version':<10}{'seconds':>10}{'MiB/s':>10}{'vs ferroloop':>14}")
        base = times.get(("ferroloop", size)) or []
        base_med = statistics.median(base) if base else None
        for name in loops:
            ts = times[(name, size)]
            if not ts:
                continue
            med = statistics.median(ts)
            rel = f"{med / base_med:.2f}x" if base_med else "-"
            print(f"{name:<12}{versions.get(name, '?'):<10}{med:>10.3f}{mib / med:>10.0f}{rel:>14}")
    for name, err in unavailable.items():
        print(f"unavailable: {name}: {err}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{n}:{m}:{c}": ts for (n, (m, c)), ts in times.items()}, f, indent=1)


if __name__ == "__main__":
    main()
