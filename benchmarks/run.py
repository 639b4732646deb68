#!/usr/bin/env python3
"""Side-by-side scheduling benchmarks: ferroloop vs asyncio, uvloop, rloop, rsloop.

A thin wrapper: the code lives in the installed package (``ferroloop._bench.sched``, the
scheduling half of ``ferroloop bench``), so install ferroloop first (``pip install .``).

    python benchmarks/run.py                       # everything, 5 runs each
    python benchmarks/run.py --quick --runs 3
    python benchmarks/run.py --loops ferroloop,uvloop --workloads call_soon,timers
    python benchmarks/run.py --json results.json
"""

import sys

from ferroloop._bench.sched import main

if __name__ == "__main__":
    sys.exit(main())
