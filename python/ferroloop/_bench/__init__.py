"""ferroloop's benchmark suite (``ferroloop bench``; benchmarks/run.py and net.py are thin
wrappers over it). Every measurement runs in a child process of its own:

* ``workloads``: the scheduling workloads (one function each), the loop factory, the probe;
  ``python -m ferroloop._bench.workloads LOOP WORKLOAD N`` prints one JSON line.
* ``servers``: the servers of the network workloads, run on the loop under test.
* ``echo``: the network load generator and the pure-Rust floor server (the pseudo-loop
  ``mio``), both in the extension (``src/bench.rs``), run in a process of their own.
* ``common``: child processes, probing loops, interleaving, tables, machine description.
* ``sched`` / ``net``: measuring and reporting each family (benchmarks/run.py, net.py).
* ``cli``: ``ferroloop bench``: both families, progress, the ops/s table, ``--json``, ``--plot``.
* ``plot``: the PNG chart (matplotlib, imported only when asked for).
"""
