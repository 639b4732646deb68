#!/usr/bin/env python3
"""Network benchmarks: echo servers and HTTP/1.1 servers on each event loop, side by side,
loaded from a separate process over loopback.

A thin wrapper: the code lives in the installed package (``ferroloop._bench.net``, the
network half of ``ferroloop bench``; the echo load generator and the pure-Rust floor "mio"
are in the extension), so install ferroloop first (``pip install .``).

    python benchmarks/net.py                        # everything, 5 runs each
    python benchmarks/net.py --quick                # 3 runs, shorter windows
    python benchmarks/net.py --loops ferroloop,uvloop --workloads tcp_1k,http_uvicorn
    python benchmarks/net.py --json net.json
"""

import sys

from ferroloop._bench.net import main

if __name__ == "__main__":
    sys.exit(main())
