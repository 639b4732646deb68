#!/usr/bin/env python3
"""Differential test: seeded random asyncio programs on stock asyncio vs ferroloop.

Each program (dt_gen.py) runs on stock asyncio and on ferroloop, in fresh subprocesses of this
interpreter (a batch of programs per subprocess, each program on its own new loop); the
traces of observable events (dt_harness.py) must be identical.

    python tests/difftest/run.py --count 5000 --start 0 -j 2     # long form
    python tests/difftest/run.py --seed 123 --show                # replay one program
    python tests/difftest/run.py --count 300 --self-check         # asyncio vs asyncio:
                                                                  # checks the generator
Exit status 1 when a program's traces differ (each failure prints its seed, a unified diff
of the traces, and the replay command).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import difflib
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import dt_gen as gen  # noqa: E402

VERSION = sys.version_info[:2]
PROGRAM_TIMEOUT = float(os.environ.get("DIFFTEST_PROGRAM_TIMEOUT", "20"))


def program_name(seed: int) -> str:
    # the same file name on both implementations: it shows up in debug-mode reprs
    return "difftest_%d.py" % seed


# ---------------------------------------------------------------------------------------
# worker side: run programs, one JSON line per program on the protocol fd
# ---------------------------------------------------------------------------------------


def worker(impl: str, seeds: list[int]) -> None:
    import faulthandler

    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever a program prints must not corrupt the protocol
    sys.stdout = sys.stderr
    import asyncio

    import dt_harness as harness

    if impl == "ferroloop":
        import ferroloop

        new_loop = ferroloop.new_event_loop
    else:
        new_loop = asyncio.new_event_loop
    for seed in seeds:
        src = gen.generate(seed, VERSION)
        faulthandler.dump_traceback_later(PROGRAM_TIMEOUT, exit=True)
        lines = harness.run_program(src, program_name(seed), new_loop)
        faulthandler.cancel_dump_traceback_later()
        proto.write(json.dumps({"seed": seed, "trace": lines}) + "\n")
        proto.flush()


# ---------------------------------------------------------------------------------------
# parent side
# ---------------------------------------------------------------------------------------


def run_impl(impl: str, seeds: list[int], python: str = sys.executable) -> dict[int, list[str]]:
    """Trace of every seed on ``impl``; a crashing/hanging program gets a CRASH line and the
    rest of its batch runs in a new subprocess."""
    out: dict[int, list[str]] = {}
    todo = list(seeds)
    while todo:
        cmd = [python, "-X", "faulthandler", os.path.abspath(__file__), "--worker", impl,
               "--seeds", ",".join(map(str, todo))]
        env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
        env.pop("PYTHONASYNCIODEBUG", None)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=env,
                               timeout=PROGRAM_TIMEOUT * len(todo) + 30)
            stdout, stderr, rc = p.stdout, p.stderr, p.returncode
        except subprocess.TimeoutExpired as e:
            stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            stderr = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            rc = "timeout"
        for line in stdout.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            out[rec["seed"]] = rec["trace"]
        todo = [s for s in todo if s not in out]
        if todo:
            bad = todo.pop(0)
            tail = [ln for ln in stderr.splitlines() if ln.strip()][-12:]
            out[bad] = ["CRASH rc=%s" % rc] + ["  stderr: " + ln for ln in tail]
    return out


def compare(seed: int, a: list[str], b: list[str], names=("asyncio", "ferroloop")) -> str | None:
    if a == b:
        return None
    # the stderr tail of a crash is informative but never part of the comparison text
    diff = difflib.unified_diff(a, b, fromfile="%s seed=%d" % (names[0], seed),
                                tofile="%s seed=%d" % (names[1], seed), lineterm="", n=3)
    return "\n".join(diff)


def replay_cmd(seed: int) -> str:
    ex = os.environ.get("DIFFTEST_EXCLUDE")
    return "%s tests/difftest/run.py --seed %d --show%s" % (
        os.path.relpath(sys.executable), seed, " --exclude " + ex if ex else "")


def run_many(seeds: list[int], jobs: int = 2, batch: int = 20, impls=("asyncio", "ferroloop"),
             progress=None, dump=None) -> dict[int, str]:
    """Run every seed on both implementations; return {seed: diff} for the ones that differ."""
    dump_lock = threading.Lock()
    batches = [seeds[i:i + batch] for i in range(0, len(seeds), batch)]
    failures: dict[int, str] = {}

    def one(b):
        # both implementations at once: the programs mostly wait on timers
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as side:
            fa = side.submit(run_impl, impls[0], b)
            tb = run_impl(impls[1], b)
            ta = fa.result()
        res = {}
        if dump:
            with dump_lock, open(dump, "a") as f:
                for s in b:
                    f.write(json.dumps({"seed": s, "a": ta[s], "b": tb[s]}) + "\n")
        for s in b:
            d = compare(s, ta[s], tb[s], impls)
            if d is not None:
                res[s] = d
        return b, res

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        for b, res in ex.map(one, batches):
            failures.update(res)
            if progress:
                progress(b, res)
    return failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--seeds", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help="run this one program")
    ap.add_argument("--show", action="store_true", help="print the program and both traces")
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--self-check", action="store_true",
                    help="compare stock asyncio with itself (finds nondeterministic programs)")
    ap.add_argument("--list", metavar="FILE", help="append failing seeds to FILE")
    ap.add_argument("--dump", metavar="FILE", help="append every trace pair to FILE (JSON lines)")
    ap.add_argument("--exclude", metavar="AREA,...",
                    help="leave areas out of the programs (triage; see MISUSE_TAGS in dt_gen.py)")
    ap.add_argument("-q", "--quiet", action="store_true", help="only the summary and failing seeds")
    args = ap.parse_args(argv)

    if args.worker:
        worker(args.worker, [int(s) for s in args.seeds.split(",") if s])
        return 0

    if args.exclude:
        os.environ["DIFFTEST_EXCLUDE"] = args.exclude  # inherited by the workers
    impls = ("asyncio", "asyncio") if args.self_check else ("asyncio", "ferroloop")
    if args.seed is not None:
        src = gen.generate(args.seed, VERSION)
        ta = run_impl(impls[0], [args.seed])[args.seed]
        tb = run_impl(impls[1], [args.seed])[args.seed]
        if args.show:
            print("#" * 30, "program (Python %d.%d)" % VERSION)
            print(src)
            print("#" * 30, "trace on", impls[0])
            print("\n".join(ta))
            print("#" * 30, "trace on", impls[1])
            print("\n".join(tb))
        d = compare(args.seed, ta, tb, impls)
        print("#" * 30, "seed %d: %s" % (args.seed, "SAME" if d is None else "DIFFERENT"))
        if d:
            print(d)
        return 1 if d else 0

    seeds = list(range(args.start, args.start + args.count))
    t0 = time.monotonic()
    done = [0]

    def progress(b, res):
        done[0] += len(b)
        for s, d in sorted(res.items()):
            if not args.quiet:
                print("=" * 78)
                print("seed %d differs (Python %d.%d); replay: %s" % (s, *VERSION, replay_cmd(s)))
                print(d)
            else:
                print("seed %d differs" % s)
            if args.list:
                with open(args.list, "a") as f:
                    f.write("%d\n" % s)
        sys.stdout.flush()

    failures = run_many(seeds, args.jobs, args.batch, impls, progress, args.dump)
    print("difftest: Python %d.%d, %s vs %s, seeds %d..%d%s: %d programs, %d passed, %d differ (%.1f s)"
          % (*VERSION, impls[0], impls[1], seeds[0], seeds[-1],
             " (excluding %s)" % args.exclude if args.exclude else "", len(seeds),
             len(seeds) - len(failures), len(failures), time.monotonic() - t0))
    if failures:
        print("failing seeds:", " ".join(map(str, sorted(failures))))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
