#!/usr/bin/env python3
"""Instructions per operation under callgrind, per loop and workload.

Runs ``workloads.py LOOP WORKLOAD N`` under ``valgrind --tool=callgrind`` for
two sizes N1 < N2 and reports

    Ir/op = (Ir(N2) - Ir(N1)) / (N2 - N1)

which cancels interpreter start-up, imports and loop creation.  Instruction
counts are (nearly) deterministic, so this steers hot-path work far better
than wall-clock timings on a noisy machine; one run per size is enough.
Note that callgrind counts user-space instructions only: the cost of system
calls (e.g. one epoll_wait per loop iteration) is not included.

    python benchmarks/callgrind.py                              # all loops, call_soon + timers
    python benchmarks/callgrind.py --workloads all --quick
    python benchmarks/callgrind.py --loops ferroloop --workloads call_soon --keep /tmp/cg
    callgrind_annotate /tmp/cg/ferroloop-call_soon-120000.out | head -40
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS_PY = os.path.join(HERE, "workloads.py")
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # keep benchmarks/ free of __pycache__

import workloads as W  # noqa: E402
from ferroloop._bench.common import child_env, probe_loops, split_list, table  # noqa: E402

# (N1, N2) per workload; --quick divides both by 4.
SIZES = {
    "call_soon": (20_000, 120_000),
    "call_soon_args": (20_000, 120_000),
    "timers": (10_000, 60_000),
    "call_later_chain": (20_000, 120_000),
    "sleep0": (20_000, 120_000),
    "tasks": (10_000, 60_000),
    "gather": (10_000, 60_000),
    "future_chain": (20_000, 120_000),
}
DEFAULT_WORKLOADS = ["call_soon", "timers"]

_TOTAL_RE = re.compile(r"^(?:totals|summary):\s+(\d+)", re.M)


def callgrind_ir(python, valgrind, loop, workload, n, outdir, keep):
    """Run one child under callgrind; return (Ir, child JSON) or raise."""
    out = os.path.join(outdir, f"{loop}-{workload}-{n}.out")
    cmd = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}",
           python, WORKLOADS_PY, loop, workload, str(n), "--warmup", "0"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=child_env(),
                       cwd=HERE)
    if p.returncode != 0:
        tail = [ln for ln in p.stderr.splitlines() if not ln.startswith("==")]
        raise RuntimeError((tail or p.stderr.splitlines() or ["?"])[-1])
    with open(out) as f:
        text = f.read()
    if not keep:
        os.unlink(out)
    m = _TOTAL_RE.search(text)
    if not m:
        raise RuntimeError(f"no totals/summary line in {out}")
    child = json.loads(p.stdout.strip().splitlines()[-1])
    return int(m.group(1)), child


def fmt_k(x):
    return "-" if x is None else f"{x:,.0f}"


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Instructions per operation (callgrind Ir) per event loop.")
    ap.add_argument("--loops", help="comma list (default: all importable of "
                    + ",".join(W.LOOPS) + ")")
    ap.add_argument("--workloads", help="comma list or 'all' (default: "
                    + ",".join(DEFAULT_WORKLOADS) + ")")
    ap.add_argument("--n1", type=int, help="small size (overrides table)")
    ap.add_argument("--n2", type=int, help="large size (overrides table)")
    ap.add_argument("--quick", action="store_true", help="sizes / 4")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                    help="valgrind processes in parallel (default: CPUs)")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep the callgrind.out files in DIR "
                         "(for callgrind_annotate)")
    ap.add_argument("--json", metavar="OUT", help="write raw numbers here")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter (must be the real binary, not a shim)")
    ap.add_argument("--valgrind", default=shutil.which("valgrind") or "valgrind")
    a = ap.parse_args(argv)

    if not shutil.which(a.valgrind):
        print("valgrind not found (apt-get install valgrind)", file=sys.stderr)
        return 2
    python = os.path.abspath(a.python)  # not realpath: that would leave a venv

    wanted_loops = split_list(a.loops) or list(W.LOOPS)
    if a.workloads == "all":
        workloads = list(W.WORKLOADS)
    else:
        workloads = split_list(a.workloads) or DEFAULT_WORKLOADS
    for wl in workloads:
        if wl not in W.WORKLOADS:
            ap.error(f"unknown workload {wl!r}; known: {', '.join(W.WORKLOADS)}")
    info, unavailable = probe_loops(wanted_loops, python)
    loops = [lp for lp in wanted_loops if lp in info]
    for lp, err in unavailable.items():
        print(f"[skip] {lp}: unavailable ({err})", file=sys.stderr)
    if not loops:
        print("no loop available", file=sys.stderr)
        return 2

    sizes = {}
    for wl in workloads:
        n1, n2 = SIZES[wl]
        if a.quick:
            n1, n2 = n1 // 4, n2 // 4
        n1, n2 = a.n1 or n1, a.n2 or n2
        if n2 <= n1:
            ap.error(f"{wl}: need N2 > N1 (got {n1}, {n2})")
        sizes[wl] = (n1, n2)

    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
        outdir = a.keep
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ferroloop-cg-")
        outdir = tmp.name

    jobs = [(wl, lp, n) for wl in workloads for lp in loops for n in sizes[wl]]
    raw = {}
    builds = {}
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max(1, a.jobs)) as ex:
        futs = {ex.submit(callgrind_ir, python, a.valgrind, lp, wl, n, outdir,
                          bool(a.keep)): (wl, lp, n) for wl, lp, n in jobs}
        for fut in concurrent.futures.as_completed(futs):
            wl, lp, n = futs[fut]
            try:
                ir, child = fut.result()
                raw[(wl, lp, n)] = ir
                builds.setdefault(lp, set()).add(child.get("build"))
                msg = f"{ir:,} Ir"
            except Exception as e:  # report and carry on
                raw[(wl, lp, n)] = None
                msg = f"ERROR: {e}"
            print(f"[{len(raw):>3}/{len(jobs)}] {wl:<17} {lp:<10} N={n:<7} {msg}",
                  file=sys.stderr)

    stats = {}
    out = [f"## callgrind instructions per operation — "
           f"{datetime.date.today().isoformat()}\n",
           f"Python {platform.python_version()}; valgrind callgrind, "
           f"Ir = user-space instructions; per op = (Ir(N2)-Ir(N1))/(N2-N1); "
           f"{time.time() - t0:.0f}s total.",
           "Loops: " + ", ".join(
               f"{lp} {info[lp]['version']}"
               + (f" (build {info[lp]['build']})" if lp == "ferroloop" else "")
               for lp in loops)]
    if unavailable:
        out.append("Unavailable: " + ", ".join(
            f"{lp} ({err})" for lp, err in unavailable.items()))
    for wl in workloads:
        n1, n2 = sizes[wl]
        unit = W.WORKLOADS[wl][4]
        st = {}
        for lp in loops:
            i1, i2 = raw.get((wl, lp, n1)), raw.get((wl, lp, n2))
            per = (i2 - i1) / (n2 - n1) if i1 is not None and i2 is not None else None
            fixed = i1 - per * n1 if per is not None else None
            st[lp] = {"ir_n1": i1, "ir_n2": i2, "ir_per_op": per,
                      "fixed_ir": fixed}
        stats[wl] = st
        base_a = st.get("asyncio", {}).get("ir_per_op")
        base_u = st.get("uvloop", {}).get("ir_per_op")
        rows = []
        for lp in loops:
            s = st[lp]
            per = s["ir_per_op"]
            rows.append([
                lp, fmt_k(per), fmt_k(s["ir_n1"]), fmt_k(s["ir_n2"]),
                "-" if s["fixed_ir"] is None else f"{s['fixed_ir'] / 1e6:,.1f}M",
                f"{base_a / per:.2f}x" if per and base_a else "-",
                f"{base_u / per:.2f}x" if per and base_u else "-",
            ])
        out.append(f"\n### {wl}  (instructions per {unit}; "
                   f"N1={n1:,}, N2={n2:,})\n")
        out.append(table(["loop", "Ir/op", "Ir(N1)", "Ir(N2)", "fixed",
                          "vs asyncio", "vs uvloop"], rows, "lrrrrrr"))
    for lp, bs in builds.items():
        if len(bs) > 1:
            out.append(f"\nWARNING: {lp} changed during the run (builds "
                       f"{', '.join(sorted(map(str, bs)))}); figures mix builds.")
    print("\n".join(out))
    if a.keep:
        print(f"\ncallgrind files kept in {a.keep} "
              f"(callgrind_annotate FILE | head -50)", file=sys.stderr)

    if a.json:
        doc = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
               "python": platform.python_version(), "executable": python,
               "sizes": sizes, "loops": info, "unavailable": unavailable,
               "stats": stats}
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"raw numbers written to {a.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
