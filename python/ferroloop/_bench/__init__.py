"""ferroloop's benchmark suite (``ferroloop bench``; benchmarks/run.py and net.py are thin
wrappers over it). Every measurement runs in a child process of its own:

* ``workloads``: the scheduling workloads (one function each), the loop factory, the probe;
  ``python -m ferroloop._bench.workloads LOOP WORKLOAD N`` prints one JSON line.
* ``servers``: the servers of the network workloads, run on the loop under test.
* ``echo``: the network load generator and the pure-Rust floor server (the pseudo-loop
  ``mio``), both in the extension (``src/bench/``), run in a process of their own.
* ``common``: child processes, probing loops, interleaving, tables, machine description.
* ``sched`` / ``net``: measuring and reporting each family (benchmarks/run.py, net.py).
* ``cli``: ``ferroloop bench``: both families, progress, the ops/s table, ``--json``, ``--plot``.
* ``plot``: the PNG chart (matplotlib, imported only when asked for).
"""

import sys

# The options of ``ferroloop bench``, here so that the command line can declare them without
# importing the benchmark modules (``ferroloop run`` does not pay for them).

DEFAULT_LOOPS = ("ferroloop", "asyncio", "uvloop", "rloop")


def add_arguments(p):
    p.add_argument("--quick", action="store_true",
                   help="fewer and shorter runs (about a minute or two on 2 cores)")
    p.add_argument("--loops", metavar="L1,L2",
                   help="comma list (default: " + ",".join(DEFAULT_LOOPS) + "); asyncio or "
                        "any module with new_event_loop(); 'mio' adds the pure-Rust echo "
                        "floor to the echo workloads; a loop that is not installed is "
                        "reported and skipped")
    p.add_argument("--workloads", metavar="W1,W2",
                   help="comma list, or 'scheduling' / 'network' (default: all; --list "
                        "lists them)")
    p.add_argument("--runs", type=int, help="repetitions per cell (default 5; with "
                   "--quick 3 scheduling, 2 network)")
    p.add_argument("--json", metavar="OUT", help="write the raw numbers, versions and "
                   "machine here")
    p.add_argument("--plot", metavar="OUT.png", help="write a bar chart (needs matplotlib: "
                   "pip install 'ferroloop[bench]')")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter the benchmarks run on, with ferroloop installed "
                        "(default: this one)")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--no-bar", action="store_true",
                   help="plain progress lines even on a terminal")
