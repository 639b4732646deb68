"""The scheduling benchmarks (benchmarks/run.py, and the scheduling half of ``ferroloop
bench``): wall-clock (or CPU) time per operation of each workload of ``workloads``, every
measurement in a fresh child process (``python -m ferroloop._bench.workloads LOOP WORKLOAD
N``), repetitions interleaved (``common.interleave``), medians and ratios reported.

    python benchmarks/run.py                       # everything, 5 runs each
    python benchmarks/run.py --quick --runs 3
    python benchmarks/run.py --loops ferroloop,uvloop --workloads call_soon,timers
    python benchmarks/run.py --json results.json
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from ferroloop._bench import workloads as W
from ferroloop._bench.common import (CHILD_CWD, Progress, child_env, interleave, last_line,
                                     module_cmd, probe_loops, split_list, table)


def sizes_for(workloads, quick, size=None):
    """N of each workload: ``size`` if given, else its quick or default N."""
    return {wl: size or W.WORKLOADS[wl][2 if quick else 1] for wl in workloads}


def run_child(python, loop, workload, n, timeout, warmup=None):
    cmd = module_cmd(python, "workloads", loop, workload, n)
    if warmup is not None:
        cmd += ["--warmup", str(warmup)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=timeout, env=child_env(), cwd=CHILD_CWD)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout}s"}
    if p.returncode != 0:
        return {"error": last_line(p.stderr or p.stdout, f"exit {p.returncode}")}
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"bad child output: {p.stdout[-200:]!r}"}


def describe(r):
    """One measurement, for the progress lines."""
    return f"{r['ns_per_op']:,.1f} ns/op" if "ns_per_op" in r else "ERROR: " + r["error"]


def fmt_ns(x):
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}"


def fmt_ratio(num, den):
    if not num or not den:
        return "-"
    return f"{num / den:.2f}x"


def summarize(results, loops, workloads, sizes):
    """results[workload][loop] -> list of child dicts. Returns text + stats."""
    out = []
    stats = {}
    for wl in workloads:
        _, _, _, metric, unit = W.WORKLOADS[wl]
        st = {}
        for lp in loops:
            runs = results[wl][lp]
            vals = [r["ns_per_op"] for r in runs if "ns_per_op" in r]
            errs = [r["error"] for r in runs if "error" in r]
            if vals:
                med = statistics.median(vals)
                st[lp] = {"median": med, "min": min(vals), "max": max(vals),
                          "runs": len(vals), "errors": errs,
                          "spread_pct": 100.0 * (max(vals) - min(vals)) / med}
            else:
                st[lp] = {"median": None, "errors": errs}
        stats[wl] = st
        base_a = st.get("asyncio", {}).get("median")
        base_u = st.get("uvloop", {}).get("median")
        mlabel = "CPU" if metric == "cpu" else "wall"
        out.append(f"\n### {wl}  (N={sizes[wl]:,}; {mlabel} ns per {unit}, "
                   f"median of runs)\n")
        headers = ["loop", "ns/op", "min", "max", "spread", "vs asyncio",
                   "vs uvloop"]
        rows = []
        for lp in loops:
            s = st[lp]
            if s["median"] is None:
                err = s["errors"][0] if s["errors"] else "no data"
                rows.append([lp, "ERR", "-", "-", "-", "-", err[:60]])
                continue
            rows.append([
                lp, fmt_ns(s["median"]), fmt_ns(s["min"]), fmt_ns(s["max"]),
                f"{s['spread_pct']:.0f}%" + ("" if not s["errors"]
                                             else f" ({len(s['errors'])} err)"),
                fmt_ratio(base_a, s["median"]),
                fmt_ratio(base_u, s["median"]),
            ])
        out.append(table(headers, rows, "lrrrrrr"))
    # Compact summary: rows = workloads, columns = loops (median ns/op).
    out.append("\n### summary (median ns/op; speed-up vs asyncio in brackets)\n")
    headers = ["workload"] + list(loops)
    rows = []
    for wl in workloads:
        st = stats[wl]
        base_a = st.get("asyncio", {}).get("median")
        row = [wl]
        for lp in loops:
            m = st[lp]["median"]
            if m is None:
                row.append("ERR")
            elif base_a and lp != "asyncio":
                row.append(f"{fmt_ns(m)} ({base_a / m:.2f}x)")
            else:
                row.append(fmt_ns(m))
        rows.append(row)
    out.append(table(headers, rows, "l" + "r" * len(loops)))
    return "\n".join(out), stats


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Compare event loops side by side (fresh process per run).")
    ap.add_argument("--loops", help="comma list (default: all importable of "
                    + ",".join(W.LOOPS) + "; a loop that does not import is "
                    "reported and skipped)")
    ap.add_argument("--workloads", help="comma list (default: all: "
                    + ",".join(W.WORKLOADS) + ")")
    ap.add_argument("--runs", "-r", type=int, default=5,
                    help="repetitions per (loop, workload) (default 5)")
    ap.add_argument("--quick", action="store_true",
                    help="smaller N per workload (see python -m "
                    "ferroloop._bench.workloads --list)")
    ap.add_argument("-n", "--size", type=int,
                    help="override N for every selected workload")
    ap.add_argument("--warmup", type=int,
                    help="warm-up size passed to children (default N//10, "
                         "max 20000; 0 disables)")
    ap.add_argument("--json", metavar="OUT", help="write raw numbers here")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter for the children (default: this one)")
    ap.add_argument("--timeout", type=float, default=600,
                    help="per-child timeout in seconds (default 600)")
    ap.add_argument("-q", "--quiet", action="store_true",
                    help="no per-run progress on stderr")
    a = ap.parse_args(argv)

    wanted_loops = split_list(a.loops) or list(W.LOOPS)
    workloads = split_list(a.workloads) or list(W.WORKLOADS)
    for wl in workloads:
        if wl not in W.WORKLOADS:
            ap.error(f"unknown workload {wl!r}; known: {', '.join(W.WORKLOADS)}")

    info, unavailable = probe_loops(wanted_loops, a.python)
    loops = [lp for lp in wanted_loops if lp in info]
    for lp, err in unavailable.items():
        print(f"[skip] {lp}: unavailable ({err})", file=sys.stderr)
    if not loops:
        print("no loop available", file=sys.stderr)
        return 2

    sizes = sizes_for(workloads, a.quick, a.size)
    results = {wl: {lp: [] for lp in loops} for wl in workloads}
    t_start = time.time()
    cells = {wl: loops for wl in workloads}
    with Progress(a.runs * len(workloads) * len(loops), quiet=a.quiet, bar=False) as prog:
        for rep, wl, lp in interleave(a.runs, workloads, cells):
            r = run_child(a.python, lp, wl, sizes[wl], a.timeout, a.warmup)
            r["rep"] = rep
            results[wl][lp].append(r)
            prog.step(f"run {rep + 1}/{a.runs} {wl:<17} {lp:<10} {describe(r)}")

    text, stats = summarize(results, loops, workloads, sizes)
    for lp in loops:
        builds = {r["build"] for wl in workloads for r in results[wl][lp]
                  if "build" in r}
        if len(builds) > 1:
            text += (f"\n\nWARNING: {lp} changed during the run (builds "
                     f"{', '.join(sorted(builds))}); its figures mix builds.")
            print(f"WARNING: {lp} was reinstalled during the run", file=sys.stderr)
    elapsed = time.time() - t_start
    header = (f"## ferroloop benchmarks — {datetime.date.today().isoformat()}\n\n"
              f"Python {platform.python_version()} ({a.python}); "
              f"{platform.machine()} {platform.system()} {platform.release()}, "
              f"{os.cpu_count()} CPUs; {a.runs} runs per cell, "
              f"fresh process each, interleaved; {elapsed:.0f}s total.\n"
              "Loops: " + ", ".join(
               f"{lp} {info[lp]['version']}"
               + (f" (build {info[lp]['build']})" if lp == "ferroloop" else "")
               for lp in loops))
    if unavailable:
        header += "\nUnavailable: " + ", ".join(
            f"{lp} ({err})" for lp, err in unavailable.items())
    print(header)
    print(text)

    if a.json:
        doc = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "executable": a.python,
            "machine": {"arch": platform.machine(), "system": platform.system(),
                        "release": platform.release(), "cpus": os.cpu_count()},
            "runs": a.runs,
            "quick": a.quick,
            "sizes": sizes,
            "loops": info,
            "unavailable": unavailable,
            "stats": stats,
            "results": results,
        }
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"\nraw numbers written to {a.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
