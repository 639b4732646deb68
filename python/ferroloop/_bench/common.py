"""What the scheduling and network benchmarks share: child processes, probing loops,
interleaved repetitions, text tables, progress, the machine's description."""

import json
import os
import platform
import subprocess
import sys
import tempfile


def child_env():
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    # Never let a source checkout shadow the installed packages.
    env.pop("PYTHONPATH", None)
    return env


# Children start with ``python -m ferroloop._bench...``; ``-m`` puts the working directory
# first on sys.path, so it must not hold a ``ferroloop`` directory (a checkout's root does
# not, but a user's working directory might).
CHILD_CWD = tempfile.gettempdir()


def module_cmd(python, module, *args):
    return [python, "-m", f"ferroloop._bench.{module}", *map(str, args)]


def last_line(text, default):
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else default


def probe_loops(names, python):
    """Return ({name: info}, {name: error}) for the loops that work: each is imported, makes
    a loop and runs a trivial coroutine in a fresh child process."""
    ok, bad = {}, {}
    for name in names:
        try:
            p = subprocess.run(module_cmd(python, "workloads", "--check", name),
                               capture_output=True, text=True, timeout=60,
                               env=child_env(), cwd=CHILD_CWD)
        except subprocess.TimeoutExpired:
            bad[name] = "probe timed out"
            continue
        except OSError as exc:
            bad[name] = f"cannot run {python}: {exc}"
            continue
        if p.returncode == 0:
            ok[name] = json.loads(last_line(p.stdout, "{}"))
        else:
            bad[name] = last_line(p.stderr or p.stdout, f"exit {p.returncode}")
    return ok, bad


def interleave(runs, workloads, cells):
    """The order of the measurements: repetition r runs every workload, and for each
    workload every loop of ``cells[workload]`` in an order rotated by r + the workload's
    index, before repetition r + 1 starts; so every loop sees the machine's noise alike.
    Yields (rep, workload, loop)."""
    for rep in range(runs):
        for wi, wl in enumerate(workloads):
            lps = cells[wl]
            if not lps:
                continue
            k = (rep + wi) % len(lps)
            for lp in lps[k:] + lps[:k]:
                yield rep, wl, lp


def split_list(s):
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def table(headers, rows, align):
    widths = [max(len(str(r[i])) for r in [headers] + rows)
              for i in range(len(headers))]

    def line(cells):
        out = []
        for c, w, a in zip(cells, widths, align):
            out.append(str(c).rjust(w) if a == "r" else str(c).ljust(w))
        return "| " + " | ".join(out) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
                         for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine():
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count()
    return {"cpu": cpu_model(), "cores": cores, "cpus": os.cpu_count(),
            "arch": platform.machine(), "system": platform.system(),
            "release": platform.release()}


def child_python_version(python):
    if python == sys.executable:
        return platform.python_version()
    try:
        return subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                              capture_output=True, text=True, timeout=30).stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


class Progress:
    """A progress bar (rich, when installed and stderr is a terminal) or one plain line per
    measurement on stderr; ``quiet`` prints nothing."""

    def __init__(self, total, quiet=False, bar=None):
        self.total, self.done, self.quiet = total, 0, quiet
        self._rich = None
        if quiet:
            return
        if bar is None:
            bar = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        if bar:
            try:
                from rich.console import Console
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RP,
                                           TextColumn, TimeElapsedColumn,
                                           TimeRemainingColumn)
            except ImportError:
                return
            self._rich = RP(TextColumn("[bold]bench"), BarColumn(bar_width=30),
                            MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                            TextColumn("{task.description}"),
                            console=Console(stderr=True), transient=True)
            self._task = self._rich.add_task("", total=total)
            self._rich.start()

    def step(self, text):
        """One measurement done; ``text`` describes it."""
        self.done += 1
        if self.quiet:
            return
        if self._rich is not None:
            self._rich.update(self._task, advance=1)
        else:
            print(f"[{self.done:>4}/{self.total}] {text}", file=sys.stderr, flush=True)

    def running(self, label):
        """Shows on the bar what is being measured now."""
        if self._rich is not None:
            self._rich.update(self._task, description=label[:40])

    def note(self, text):
        if self.quiet:
            return
        if self._rich is not None:
            self._rich.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self):
        if self._rich is not None:
            self._rich.stop()
            self._rich = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
