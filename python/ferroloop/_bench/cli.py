"""``ferroloop bench``: every benchmark workload, scheduling and networking, on each loop.

Each measurement runs in fresh processes (the scheduling workloads in a child of their own,
the network ones with the server and the load generator in two), repetitions interleaved so
every loop sees the machine's noise alike; the figure is the median over the repetitions,
as operations per second, with the ratio of ferroloop to each other loop. A loop that is not
installed (or cannot run a trivial coroutine) is reported and skipped; an HTTP workload
whose tools are missing (wrk, uvicorn, aiohttp) likewise.
"""

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import sys
import time

from ferroloop._bench import DEFAULT_LOOPS, add_arguments
from ferroloop._bench import net as N
from ferroloop._bench import sched as S
from ferroloop._bench import workloads as W
from ferroloop._bench.common import (Progress, child_python_version, interleave, machine,
                                     probe_loops, split_list, table)

SCHED = list(W.WORKLOADS)
NET = list(N.WORKLOADS)

# name -> (family, what the figure counts per second)
UNITS = {wl: ("scheduling", W.WORKLOADS[wl][4] + "s/s"
              + (" (CPU time)" if W.WORKLOADS[wl][3] == "cpu" else ""))
         for wl in SCHED}
UNITS.update({wl: ("network", "requests/s" if N.WORKLOADS[wl][2] == "http" else "round trips/s")
              for wl in NET})


class Settings:
    """How much each family runs: --quick keeps the whole suite to a minute or two on 2
    cores for the four default loops."""

    def __init__(self, quick, runs=None):
        self.quick = quick
        self.sched_runs = runs or (3 if quick else 5)
        self.net_runs = runs or (2 if quick else 5)
        self.sched_scale = 0.5 if quick else 1.0      # of each workload's quick/default N
        self.net_warmup = 0.2 if quick else 0.5
        self.net_duration = 0.5 if quick else 2.0

    def sched_sizes(self, workloads):
        return {wl: max(1000, int(n * self.sched_scale))
                for wl, n in S.sizes_for(workloads, self.quick).items()}

    def as_dict(self):
        return dict(vars(self))


def list_workloads():
    rows = []
    for wl in SCHED:
        f, n, nq, metric, unit = W.WORKLOADS[wl]
        doc = " ".join((f.__doc__ or "").strip().split("\n\n")[0].split())
        rows.append(["scheduling", wl, doc])
    for wl in NET:
        rows.append(["network", wl, N.WORKLOAD_DOCS[wl]])
    for fam, wl, doc in rows:
        print(f"{fam:10}  {wl:16}  {doc}")


def select_workloads(spec):
    if not spec:
        return SCHED + NET
    out = []
    for name in split_list(spec):
        if name == "scheduling":
            out += SCHED
        elif name == "network":
            out += NET
        elif name in UNITS:
            out.append(name)
        else:
            raise SystemExit(f"ferroloop bench: unknown workload {name!r}; known: "
                             + ", ".join(SCHED + NET) + " (or scheduling, network)")
    return list(dict.fromkeys(out))


def fmt_rate(x):
    if x is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            v = x / div
            return f"{v:.3g}{suffix}" if v < 100 else f"{v:.0f}{suffix}"
    return f"{x:.3g}"


def stats_of(runs):
    vals = [r["ops_per_s"] for r in runs if "ops_per_s" in r]
    errs = [r["error"] for r in runs if "error" in r]
    nas = [r["na"] for r in runs if "na" in r]
    if not vals:
        return {"ops_per_s": None, "errors": errs, "na": nas[:1]}
    med = statistics.median(vals)
    return {"ops_per_s": med, "min": min(vals), "max": max(vals), "runs": len(vals),
            "spread_pct": 100.0 * (max(vals) - min(vals)) / med, "errors": errs}


def report(stats, loops, workloads):
    """The table: ops/s per loop per workload, then ferroloop / each other loop."""
    others = [lp for lp in loops if lp != "ferroloop"] if "ferroloop" in loops else []
    headers = (["workload", "unit"] + list(loops)
               + [f"ferroloop/{lp}" for lp in others])
    rows = []
    for wl in workloads:
        st = stats[wl]
        row = [wl, UNITS[wl][1]]
        for lp in loops:
            s = st.get(lp)
            if s is None:
                row.append("")
            elif s["ops_per_s"] is None:
                row.append("n/a" if s.get("na") else "ERR")
            else:
                row.append(fmt_rate(s["ops_per_s"]))
        f = st.get("ferroloop", {}).get("ops_per_s")
        for lp in others:
            o = (st.get(lp) or {}).get("ops_per_s")
            row.append(f"{f / o:.2f}x" if f and o else "")
        rows.append(row)
    text = table(headers, rows, "ll" + "r" * (len(headers) - 2))
    notes = []
    for wl in workloads:
        for lp, s in stats[wl].items():
            if s["ops_per_s"] is None:
                why = (s.get("na") or s["errors"] or ["no data"])[0]
                notes.append(f"  {wl} on {lp}: {'n/a' if s.get('na') else 'ERR'}: {why}")
    if notes:
        text += "\n\nNot measured:\n" + "\n".join(notes)
    return text


def run(args):
    settings = Settings(args.quick, args.runs)
    if args.list:
        list_workloads()
        return 0
    workloads = select_workloads(args.workloads)
    wanted = split_list(args.loops) or list(DEFAULT_LOOPS)
    if args.plot:  # fail now, not after the benchmark
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("ferroloop bench: --plot needs matplotlib: pip install 'ferroloop[bench]'"
                  " (or pip install matplotlib)", file=sys.stderr)
            return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stops running servers
    py_loops = [lp for lp in wanted if lp != N.FLOOR]
    info, unavailable = probe_loops(py_loops, args.python)
    loops = [lp for lp in py_loops if lp in info]
    floor = N.FLOOR in wanted
    skipped = N.unrunnable([wl for wl in workloads if wl in N.WORKLOADS], args.python)
    workloads = [wl for wl in workloads if wl not in skipped]
    for lp, err in unavailable.items():
        print(f"[skip] loop {lp}: not available ({err})", file=sys.stderr)
    for wl, why in skipped.items():
        print(f"[skip] workload {wl}: {why}", file=sys.stderr)
    if not loops and not floor:
        print("ferroloop bench: no loop available", file=sys.stderr)
        return 1

    sched_wls = [wl for wl in workloads if wl in W.WORKLOADS]
    net_wls = [wl for wl in workloads if wl in N.WORKLOADS]
    sizes = settings.sched_sizes(sched_wls)
    sched_cells = {wl: loops for wl in sched_wls}
    net_cells = {wl: loops + ([N.FLOOR] if floor and N.WORKLOADS[wl][3] else [])
                 for wl in net_wls}
    jobs = ([("sched", *j) for j in interleave(settings.sched_runs, sched_wls, sched_cells)]
            + [("net", *j) for j in interleave(settings.net_runs, net_wls, net_cells)])
    results = {wl: {lp: [] for lp in (sched_cells.get(wl) or net_cells.get(wl))}
               for wl in workloads}
    opts = N.Options(quick=args.quick, runs=settings.net_runs, duration=settings.net_duration,
                     warmup=settings.net_warmup, python=args.python)
    runner = N.Runner(opts) if net_wls else None
    t0 = time.time()
    load0 = os.getloadavg()
    try:
        with Progress(len(jobs), quiet=args.quiet, bar=False if args.no_bar else None) as prog:
            for family, rep, wl, lp in jobs:
                prog.running(f"{wl} on {lp}")
                if family == "sched":
                    r = S.run_child(args.python, lp, wl, sizes[wl], 600)
                    if "ns_per_op" in r:
                        r["ops_per_s"] = 1e9 / r["ns_per_op"]
                    text = S.describe(r)
                else:
                    r = runner.measure(rep, wl, lp)
                    if "msgs_per_s" in r and "error" not in r:
                        r["ops_per_s"] = r["msgs_per_s"]
                    text = N.describe(r)
                r["rep"] = rep
                results[wl][lp].append(r)
                prog.step(f"{wl} {lp}: {text}")
    finally:
        if runner is not None:
            runner.close()
    elapsed = time.time() - t0
    stats = {wl: {lp: stats_of(runs) for lp, runs in per.items()}
             for wl, per in results.items()}
    cols = loops + ([N.FLOOR] if floor and net_wls else [])
    mach = machine()
    pyver = child_python_version(args.python)
    print(f"ferroloop bench{' --quick' if args.quick else ''}: Python {pyver} "
          f"({args.python}); {mach['cpu']}, {mach['cores']} cores; "
          f"{datetime.datetime.now():%Y-%m-%d %H:%M}; {elapsed:.0f} s")
    print("Loops: " + ", ".join(f"{lp} {info[lp]['version']}" for lp in loops)
          + (f", {N.FLOOR} (pure-Rust echo floor)" if floor else ""))
    if unavailable:
        print("Skipped loops: " + "; ".join(f"{lp} ({err})" for lp, err in unavailable.items()))
    if skipped:
        print("Skipped workloads: " + "; ".join(f"{wl} ({why})" for wl, why in skipped.items()))
    runs = ([f"{settings.sched_runs} runs (scheduling)"] if sched_wls else []) + (
        [f"{settings.net_runs} runs (network: {settings.net_warmup} s warm-up + "
         f"{settings.net_duration} s each)"] if net_wls else [])
    print(f"Median of {' / '.join(runs)} per cell, every run in fresh processes; "
          "operations per second, higher is better.")
    print()
    print(report(stats, cols, workloads))

    doc = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
           "ferroloop": info.get("ferroloop", {}).get("version"),
           "python": pyver, "executable": args.python,
           "implementation": platform.python_implementation(),
           "machine": mach, "loadavg": [load0, os.getloadavg()],
           "elapsed_s": elapsed, "settings": settings.as_dict(), "sizes": sizes,
           "loops": info, "unavailable_loops": unavailable,
           "skipped_workloads": skipped,
           "workloads": {wl: {"family": UNITS[wl][0], "unit": UNITS[wl][1]}
                         for wl in workloads},
           "stats": stats, "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"\nraw numbers written to {args.json}", file=sys.stderr)
    if args.plot:
        from ferroloop._bench.plot import plot

        plot(args.plot, doc, cols, workloads)
        print(f"chart written to {args.plot}", file=sys.stderr)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="ferroloop bench", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))
