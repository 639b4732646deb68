"""Network benchmarks (benchmarks/net.py, and the network half of ``ferroloop bench``):
echo servers and HTTP/1.1 servers on each event loop, side by side, loaded from a separate
process over loopback.

    python benchmarks/net.py                        # everything, 5 runs each
    python benchmarks/net.py --quick                # 3 runs, shorter windows
    python benchmarks/net.py --loops ferroloop,uvloop --workloads tcp_1k,http_uvicorn
    python benchmarks/net.py --json net.json

Each measurement starts a fresh server process on the loop under test (``servers``) and a
fixed client in another process: the echo client of ``echo`` (a single-threaded Rust load
generator in the extension, ``src/bench/``) for the echo workloads, ``wrk`` for HTTP.
Runs are interleaved (``common.interleave``), so all loops share the machine's noise; the
figure is the median over the runs, and ratios are taken within the one invocation.

The pseudo-loop "mio" is the extension's pure-Rust echo server (single thread, no Python):
the floor for the protocol echo workloads.
"""

import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from ferroloop._bench import workloads as W
from ferroloop._bench.common import (CHILD_CWD, Progress, child_env, interleave, module_cmd,
                                     probe_loops, split_list, table)

FLOOR = "mio"

# name -> (server in servers.py, message size, client, mio floor applies)
WORKLOADS = {
    "tcp_1k": ("tcp_proto", 1024, "echo", True),
    "tcp_10k": ("tcp_proto", 10 * 1024, "echo", True),
    "tcp_100k": ("tcp_proto", 100 * 1024, "echo", True),
    "streams_1k": ("streams", 1024, "echo", False),
    "sock_1k": ("sock", 1024, "echo", False),
    "unix_1k": ("unix_proto", 1024, "echo", True),
    "udp_1k": ("udp_proto", 1024, "echo", True),
    "http_uvicorn": ("http_uvicorn", 0, "http", False),
    "http_aiohttp": ("http_aiohttp", 0, "http", False),
}

WORKLOAD_DOCS = {
    "tcp_1k": "TCP, asyncio.Protocol echo (data_received -> transport.write), 1 KiB messages",
    "tcp_10k": "the same, 10 KiB messages",
    "tcp_100k": "the same, 100 KiB messages",
    "streams_1k": "TCP, start_server + readexactly(1024) + write + drain",
    "sock_1k": "TCP, sock_accept + sock_recv + sock_sendall, 1 KiB",
    "unix_1k": "Unix stream socket, asyncio.Protocol echo, 1 KiB",
    "udp_1k": ("UDP, DatagramProtocol echo (datagram_received -> transport.sendto(data, "
               "addr)), 1 KiB datagrams, each client socket with one in flight"),
    "http_uvicorn": "uvicorn + httptools, bare ASGI hello world, wrk keep-alive GETs",
    "http_aiohttp": "aiohttp.web hello world, wrk keep-alive GETs",
}

CLK_TCK = os.sysconf("SC_CLK_TCK")


# What each HTTP workload needs besides wrk: modules importable by the servers' Python.
HTTP_MODULES = {"http_uvicorn": ("uvicorn", "httptools"), "http_aiohttp": ("aiohttp",)}


class Options:
    """The settings of a network run (the command-line flags of benchmarks/net.py)."""

    def __init__(self, quick=False, runs=None, duration=None, warmup=None, conns=10,
                 http_conns=50, pin=False, python=sys.executable, start_timeout=30.0):
        self.quick = quick
        self.runs = runs or (3 if quick else 5)
        self.duration = duration or (1.0 if quick else 2.0)
        self.warmup = warmup if warmup is not None else (0.3 if quick else 0.5)
        self.conns, self.http_conns, self.pin = conns, http_conns, pin
        self.python, self.start_timeout = python, start_timeout


def unrunnable(workloads, python):
    """{workload: reason} for the HTTP workloads that cannot run here: no wrk on PATH, or
    the server's framework not importable by ``python``."""
    out = {}
    for wl in workloads:
        mods = HTTP_MODULES.get(wl)
        if not mods:
            continue
        if not shutil.which("wrk"):
            out[wl] = "wrk not found (Debian: apt-get install wrk)"
            continue
        code = ("import importlib.util as u, sys; "
                "sys.exit(0 if all(u.find_spec(m) for m in sys.argv[1:]) else 1)")
        if python == sys.executable:
            ok = all(importlib.util.find_spec(m) for m in mods)
        else:
            ok = subprocess.run([python, "-c", code, *mods], capture_output=True).returncode == 0
        if not ok:
            out[wl] = f"needs {' and '.join(mods)} (pip install {' '.join(mods)})"
    return out


class Unavailable(Exception):
    """The loop cannot run this workload (reported as n/a, not as an error)."""


def child_setup(a, role):
    """preexec_fn for the server and client processes: each gets a session of
    its own, so with the kernel's autogroup scheduling (on by default) the
    server and the client are each scheduled as a group of their own against
    other work on the machine instead of sharing this script's share; --pin
    puts the server on the first allowed CPU and the client on the last."""
    cpu = None
    if a.pin:
        cpus = sorted(os.sched_getaffinity(0))
        cpu = cpus[0] if role == "server" else cpus[-1]

    def setup():
        os.setsid()
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    return setup


def proc_cpu(pid):
    """CPU time of a process, all its threads, in seconds: the sum of the
    threads' /proc schedstat run times (nanoseconds), or utime + stime (clock
    ticks) where schedstat is missing."""
    try:
        total = 0
        tasks = os.listdir(f"/proc/{pid}/task")
        for tid in tasks:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, IndexError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def read_line(proc, timeout):
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            return None
        return proc.stdout.readline()
    finally:
        sel.close()


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_server(a, loop, wl, tmpdir):
    server, size, _, _ = WORKLOADS[wl]
    unix = server.startswith("unix")
    path = os.path.join(tmpdir, f"{loop}-{wl}.sock")
    if unix and os.path.exists(path):
        os.unlink(path)
    if loop == FLOOR:
        cmd = module_cmd(a.python, "echo", "server",
                         *(["--unix", path] if unix
                           else ["--udp", "127.0.0.1:0"] if server.startswith("udp")
                           else ["--tcp", "127.0.0.1:0"]))
    else:
        cmd = module_cmd(a.python, "servers", loop, server, "--size", size or 1024)
        if unix:
            cmd += ["--unix", path]
    errf = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf,
                            stdin=subprocess.DEVNULL, text=True,
                            env=child_env(), cwd=CHILD_CWD,
                            preexec_fn=child_setup(a, "server"))
    line = read_line(proc, a.start_timeout)
    if line and line.startswith("READY "):
        _, kind, where = line.split(None, 2)
        return proc, errf, kind, where.strip()
    stop(proc)
    errf.seek(0)
    err = errf.read().strip().splitlines()
    errf.close()
    if line and line.startswith("NA "):
        raise Unavailable(line[3:].strip())
    if line is None:
        raise RuntimeError(f"server not ready after {a.start_timeout}s")
    raise RuntimeError(err[-1] if err else f"server exited {proc.returncode}")


def run_echo_client(a, kind, where, size):
    cmd = module_cmd(a.python, "echo", "client", f"--{kind}", where, "--conns", a.conns,
                     "--size", size, "--warmup", a.warmup, "--duration", a.duration)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=child_env(), cwd=CHILD_CWD,
                         preexec_fn=child_setup(a, "client"))
    return p, lambda out: json.loads(out.strip().splitlines()[-1])


WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_BAD = re.compile(r"(Non-2xx or 3xx responses:\s+\d+|Socket errors:[^\n]*)")


def run_http_client(a, kind, where):
    url = f"http://{where}/"
    # wrk has no warm-up phase of its own: a short untimed run first, of whole seconds
    # (all wrk takes), none for a warm-up under half a second (ferroloop bench --quick).
    if a.warmup >= 0.5:
        warm = max(1, round(a.warmup))
        subprocess.run(["wrk", "-t1", f"-c{a.http_conns}", f"-d{warm}s", url],
                       capture_output=True, timeout=warm + 30,
                       preexec_fn=child_setup(a, "client"))
    dur = max(1, round(a.duration))
    cmd = ["wrk", "-t1", f"-c{a.http_conns}", f"-d{dur}s", url]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=child_setup(a, "client"))

    def parse(out):
        m = WRK_RPS.search(out)
        if not m:
            raise RuntimeError(f"wrk output without Requests/sec: {out[-200:]!r}")
        bad = WRK_BAD.findall(out)
        res = {"msgs_per_s": float(m.group(1)), "secs": float(dur)}
        if bad:
            res["wrk_errors"] = "; ".join(b.strip() for b in bad)
        return res

    return p, parse


def measure(a, loop, wl, tmpdir):
    """One run: fresh server, client in its own process. Returns a dict."""
    server, size, client, _ = WORKLOADS[wl]
    try:
        srv, errf, kind, where = start_server(a, loop, wl, tmpdir)
    except Unavailable as exc:
        return {"na": str(exc)}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    try:
        if client == "echo":
            p, parse = run_echo_client(a, kind, where, size)
            # Server CPU over the client's measuring window: the client says when it
            # opens ("WINDOW"); the rest of its output is read after it exits.
            first = read_line(p, a.warmup + a.start_timeout) or ""
        else:
            p, parse = run_http_client(a, kind, where)
            first = ""
        c0, t0 = proc_cpu(srv.pid), time.perf_counter()
        _, status, client_ru = os.wait4(p.pid, 0)
        c1, t1 = proc_cpu(srv.pid), time.perf_counter()
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4
        out, err = p.stdout.read(), p.stderr.read()
        if first and not first.startswith("WINDOW"):
            out = first + out
        if p.returncode != 0 or srv.poll() is not None:
            errf.seek(0)
            serr = errf.read().strip().splitlines()
            why = (err.strip().splitlines() or [f"client exited {p.returncode}"])[-1]
            if srv.poll() is not None:
                why += f"; server exited {srv.returncode}"
            if serr:
                why += f"; server: {serr[-1][:120]}"
            return {"error": why}
        res = parse(out)
        if client == "http":
            cpu = client_ru.ru_utime + client_ru.ru_stime
            res["client_cpu"] = cpu / max(t1 - t0, 1e-9)
        if c0 is not None and c1 is not None and t1 > t0:
            res["server_cpu"] = (c1 - c0) / (t1 - t0)
            if res.get("msgs_per_s"):
                res["server_us_per_op"] = res["server_cpu"] / res["msgs_per_s"] * 1e6
        if res.get("client_cpu") and res.get("msgs_per_s"):
            res["client_us_per_op"] = res["client_cpu"] / res["msgs_per_s"] * 1e6
        if "wrk_errors" in res:
            res["error"] = "wrk: " + res["wrk_errors"]
        return res
    except Exception as exc:  # a client that could not run: this cell fails
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        stop(srv)
        errf.close()


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def fmt_rate(x):
    if x is None:
        return "-"
    return f"{x:,.0f}"


def ratio(num, den):
    if not num or not den:
        return "-"
    return f"{num / den:.2f}x"


def summarize(results, loops, workloads):
    out, stats = [], {}
    for wl in workloads:
        server, size, client, floor = WORKLOADS[wl]
        st = {}
        for lp in results[wl]:
            runs = results[wl][lp]
            vals = [r["msgs_per_s"] for r in runs
                    if "msgs_per_s" in r and "error" not in r]
            errs = [r["error"] for r in runs if "error" in r]
            nas = [r["na"] for r in runs if "na" in r]
            if vals:
                med = statistics.median(vals)
                scpu = [r["server_cpu"] for r in runs if "server_cpu" in r]
                sus = [r["server_us_per_op"] for r in runs
                       if "server_us_per_op" in r and "error" not in r]
                cus = [r["client_us_per_op"] for r in runs
                       if "client_us_per_op" in r and "error" not in r]
                ccpu = [r["client_cpu"] for r in runs if "client_cpu" in r]
                st[lp] = {"median": med, "min": min(vals), "max": max(vals),
                          "runs": len(vals), "errors": errs,
                          "spread_pct": 100.0 * (max(vals) - min(vals)) / med,
                          "server_cpu": statistics.median(scpu) if scpu else None,
                          "client_cpu": statistics.median(ccpu) if ccpu else None,
                          "server_us_per_op": statistics.median(sus) if sus else None,
                          "client_us_per_op": statistics.median(cus) if cus else None}
            else:
                st[lp] = {"median": None, "errors": errs, "na": nas}
        stats[wl] = st
        base_a = st.get("asyncio", {}).get("median")
        base_u = st.get("uvloop", {}).get("median")
        base_f = st.get(FLOOR, {}).get("median")
        unit = "requests/s" if client == "http" else "round trips/s"
        out.append(f"\n### {wl}: {WORKLOAD_DOCS[wl]}  ({unit}, median of runs)\n")
        headers = ["loop", unit, "min", "max", "spread", "srv CPU", "cli CPU",
                   "srv µs/op", "cli µs/op", "vs asyncio", "vs uvloop"] + (["vs mio"] if floor else [])
        rows = []
        for lp in results[wl]:
            s = st[lp]
            if s["median"] is None:
                if s.get("na"):
                    why = "n/a: " + s["na"][0]
                else:
                    why = "ERR: " + (s["errors"][0] if s["errors"] else "no data")
                rows.append([lp, why[:70]] + ["-"] * (len(headers) - 2))
                continue
            cpu = (lambda v: "-" if v is None else f"{v:.2f}")
            us = (lambda v: "-" if v is None else f"{v:.1f}")
            row = [lp, fmt_rate(s["median"]), fmt_rate(s["min"]),
                   fmt_rate(s["max"]),
                   f"{s['spread_pct']:.0f}%" + (f" ({len(s['errors'])} err)"
                                                if s["errors"] else ""),
                   cpu(s["server_cpu"]), cpu(s["client_cpu"]),
                   us(s["server_us_per_op"]), us(s["client_us_per_op"]),
                   ratio(s["median"], base_a), ratio(s["median"], base_u)]
            if floor:
                row.append(ratio(s["median"], base_f))
            rows.append(row)
        out.append(table(headers, rows, "l" + "r" * (len(headers) - 1)))

    # Summary: rows = workloads, columns = loops; median, ratio vs uvloop.
    cols = [lp for lp in loops] + ([FLOOR] if any(
        FLOOR in results[wl] for wl in workloads) else [])
    out.append("\n### summary (median per second; ratio to uvloop in brackets)\n")
    headers = ["workload"] + cols
    rows = []
    for wl in workloads:
        st = stats[wl]
        base_u = st.get("uvloop", {}).get("median")
        row = [wl]
        for lp in cols:
            s = st.get(lp)
            if s is None:
                row.append("")
            elif s["median"] is None:
                row.append("n/a" if s.get("na") else "ERR")
            elif base_u and lp != "uvloop":
                row.append(f"{fmt_rate(s['median'])} ({s['median'] / base_u:.2f}x)")
            else:
                row.append(fmt_rate(s["median"]))
        rows.append(row)
    out.append(table(headers, rows, "l" + "r" * len(cols)))

    out.append("\n### server CPU per round trip / request (µs, median of runs; "
               "uvloop's figure divided by this loop's in brackets, above 1 = "
               "cheaper than uvloop)\n")
    rows = []
    for wl in workloads:
        st = stats[wl]
        base_u = st.get("uvloop", {}).get("server_us_per_op")
        row = [wl]
        for lp in cols:
            s = st.get(lp)
            v = None if s is None else s.get("server_us_per_op")
            if s is None:
                row.append("")
            elif v is None:
                row.append("n/a" if s.get("na") else "ERR" if s["median"] is None else "-")
            elif base_u and lp != "uvloop":
                row.append(f"{v:.1f} ({base_u / v:.2f}x)")
            else:
                row.append(f"{v:.1f}")
        rows.append(row)
    out.append(table(headers, rows, "l" + "r" * len(cols)))

    notes = []
    for wl in workloads:
        st = stats[wl]
        f = st.get("ferroloop", {}).get("median")
        m = st.get(FLOOR, {}).get("median")
        if f and m:
            fc = st["ferroloop"].get("server_us_per_op")
            mc = st[FLOOR].get("server_us_per_op")
            cpu = (f"; server CPU per round trip: mio {mc:.1f} µs, ferroloop "
                   f"{fc:.1f} µs" if fc and mc else "")
            notes.append(f"ferroloop / mio floor on {wl}: {f / m:.1%} of its "
                         f"throughput{cpu}")
    # Client check: with a core each, the client limits a server whose CPU per
    # operation is not clearly above the client's own.
    limited = []
    for wl in workloads:
        hits = []
        for lp, st in stats[wl].items():
            sv, cv = st.get("server_us_per_op"), st.get("client_us_per_op")
            if sv and cv and cv > 0.8 * sv:
                hits.append(f"{lp} {cv:.1f}/{sv:.1f}")
        if hits:
            limited.append(f"{wl}: " + ", ".join(hits))
    if limited:
        notes.append("Client check: were the server and the client given a core "
                     "each, the client would be (nearly) the bottleneck where its "
                     "CPU per op exceeds 0.8x the server's (client/server µs per "
                     "op):\n  " + "\n  ".join(limited))
    else:
        notes.append("Client check: the client's CPU per op is below 0.8x the "
                     "server's everywhere; with a core each, the server is the "
                     "bottleneck.")
    if notes:
        out.append("\n" + "\n".join(notes))
    return "\n".join(out), stats


def describe(r):
    """One measurement, for the progress lines."""
    if "na" in r:
        return "n/a: " + r["na"]
    if "error" in r:
        return "ERROR: " + r["error"]
    return (f"{r['msgs_per_s']:>10,.0f}/s  server CPU {r.get('server_cpu', 0):.2f}  "
            f"client CPU {r.get('client_cpu', 0):.2f}")


class Runner:
    """Measures (workload, loop) cells one at a time; a loop found unable to run a workload
    (n/a) is not retried in later repetitions."""

    def __init__(self, a):
        self.a = a
        self.na = {}
        self.tmpdir = tempfile.mkdtemp(prefix="ferroloop-net-")

    def measure(self, rep, wl, lp):
        if (wl, lp) in self.na:
            return {"na": self.na[wl, lp], "rep": rep}
        r = measure(self.a, lp, wl, self.tmpdir)
        r["rep"] = rep
        if "na" in r:
            self.na[wl, lp] = r["na"]
        return r

    def close(self):
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Network benchmarks, every loop side by side "
                    "(server and client in separate processes, loopback only).")
    all_loops = list(W.LOOPS) + [FLOOR]
    ap.add_argument("--loops", help="comma list (default: " + ",".join(all_loops)
                    + "; mio runs only where it applies; a loop that does not import "
                    "is reported and skipped)")
    ap.add_argument("--workloads", help="comma list (default: all: "
                    + ",".join(WORKLOADS) + ")")
    ap.add_argument("--runs", "-r", type=int, default=None,
                    help="repetitions (default 5; 3 with --quick)")
    ap.add_argument("--duration", type=float, default=None,
                    help="measured seconds per run (default 2; 1 with --quick)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="unmeasured seconds first (default 0.5; echo only, "
                         "wrk warms up for max(1, round(W)) s)")
    ap.add_argument("--conns", type=int, default=10,
                    help="echo client connections (default 10)")
    ap.add_argument("--http-conns", type=int, default=50,
                    help="wrk connections (default 50; one wrk thread)")
    ap.add_argument("--pin", action="store_true",
                    help="pin the server to the first allowed CPU and the "
                         "client to the last")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter for the servers and the echo client, with ferroloop "
                         "installed (default: this one)")
    ap.add_argument("--json", metavar="OUT", help="write raw numbers here")
    ap.add_argument("--start-timeout", type=float, default=30)
    ap.add_argument("--list", action="store_true", help="list the workloads")
    ap.add_argument("--from-json", metavar="IN",
                    help="print the report of a run saved with --json")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)

    if args.list:
        for k, v in WORKLOAD_DOCS.items():
            print(f"{k:13} {v}")
        return 0
    if args.from_json:
        with open(args.from_json) as f:
            doc = json.load(f)
        results = doc["results"]
        for per_loop in results.values():
            for runs in per_loop.values():
                for r in runs:
                    for k in ("server", "client"):
                        if (f"{k}_us_per_op" not in r and r.get(f"{k}_cpu")
                                and r.get("msgs_per_s")):
                            r[f"{k}_us_per_op"] = r[f"{k}_cpu"] / r["msgs_per_s"] * 1e6
        text, _ = summarize(results, list(doc["loops"]), list(results))
        print(f"## {doc['date']}: {doc['executable']}, {doc['runs']} runs, "
              f"load average {doc['loadavg'][0][0]:.2f} -> {doc['loadavg'][1][0]:.2f}\n"
              "Loops: " + ", ".join(f"{k} {v['version']}" for k, v in doc["loops"].items()))
        print(text)
        return 0
    a = Options(quick=args.quick, runs=args.runs, duration=args.duration, warmup=args.warmup,
                conns=args.conns, http_conns=args.http_conns, pin=args.pin,
                python=args.python, start_timeout=args.start_timeout)

    wanted = split_list(args.loops) or all_loops
    workloads = split_list(args.workloads) or list(WORKLOADS)
    for wl in workloads:
        if wl not in WORKLOADS:
            ap.error(f"unknown workload {wl!r}; known: {', '.join(WORKLOADS)}")
    skipped = unrunnable(workloads, a.python)
    for wl, why in skipped.items():
        print(f"[skip] {wl}: {why}", file=sys.stderr)
    workloads = [wl for wl in workloads if wl not in skipped]

    # SIGTERM unwinds like Ctrl-C, so the running server (in a session of its
    # own, out of reach of the terminal's signals) is stopped by measure().
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    py_loops = [lp for lp in wanted if lp != FLOOR]
    info, unavailable = probe_loops(py_loops, a.python)
    loops = [lp for lp in py_loops if lp in info]
    for lp, err in unavailable.items():
        print(f"[skip] {lp}: unavailable ({err})", file=sys.stderr)

    # Per workload, the loops that run it (the floor only where it applies).
    cells = {wl: loops + ([FLOOR] if FLOOR in wanted and WORKLOADS[wl][3] else [])
             for wl in workloads}
    results = {wl: {lp: [] for lp in cells[wl]} for wl in workloads}
    load0 = os.getloadavg()
    t_start = time.time()
    runner = Runner(a)
    total = a.runs * sum(len(c) for c in cells.values())
    try:
        with Progress(total, quiet=args.quiet, bar=False) as prog:
            for rep, wl, lp in interleave(a.runs, workloads, cells):
                r = runner.measure(rep, wl, lp)
                results[wl][lp].append(r)
                prog.step(f"run {rep + 1}/{a.runs} {wl:<13} {lp:<10} {describe(r)}")
    finally:
        runner.close()
    load1 = os.getloadavg()

    text, stats = summarize(results, loops, workloads)
    changed = []
    if loops:
        later, _ = probe_loops(loops, a.python)
        changed = [lp for lp in loops
                   if lp in later and later[lp]["build"] != info[lp]["build"]]
        for lp in changed:
            text += (f"\n\nWARNING: {lp} was reinstalled during the run; "
                     "its figures mix builds.")
    elapsed = time.time() - t_start
    header = (f"## ferroloop network benchmarks — {datetime.date.today().isoformat()}\n\n"
              f"Python {platform.python_version_tuple()[0]}."
              f"{platform.python_version_tuple()[1]} servers ({a.python}); "
              f"{platform.machine()} {platform.system()} {platform.release()}, "
              f"{os.cpu_count()} CPUs; {a.runs} runs per cell, fresh server "
              f"process each, interleaved; {a.warmup}s warm-up + {a.duration}s "
              f"measured per run; echo client: ferroloop._bench.echo (Rust, mio), "
              f"{a.conns} connections, ping-pong; HTTP client: wrk -t1 -c{a.http_conns}; "
              f"{'server and client pinned to a CPU each; ' if a.pin else ''}"
              f"{elapsed:.0f}s total.\n"
              f"Load average (1 min) {load0[0]:.2f} at the start, "
              f"{load1[0]:.2f} at the end.\n"
              "Loops: " + ", ".join(
               f"{lp} {info[lp]['version']}"
               + (f" (build {info[lp]['build']})" if lp == "ferroloop" else "")
               for lp in loops))
    if unavailable:
        header += "\nUnavailable: " + ", ".join(
            f"{lp} ({err})" for lp, err in unavailable.items())
    if skipped:
        header += "\nSkipped: " + ", ".join(f"{wl} ({why})" for wl, why in skipped.items())
    print(header)
    print(text)
    if args.json:
        doc = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
               "executable": a.python, "runs": a.runs, "duration": a.duration,
               "warmup": a.warmup, "conns": a.conns, "http_conns": a.http_conns,
               "loadavg": [load0, load1], "loops": info,
               "unavailable": unavailable, "skipped_workloads": skipped,
               "stats": stats, "results": results}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"\nraw numbers written to {args.json}", file=sys.stderr)
    return 0
