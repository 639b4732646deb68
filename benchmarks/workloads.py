"""The scheduling workloads live in the package now: ``ferroloop/_bench/workloads.py``
(``python -m ferroloop._bench.workloads LOOP WORKLOAD N``). This shim keeps
``import workloads`` in the other benchmark scripts (callgrind.py, tls.py, ...) and
``python benchmarks/workloads.py LOOP WORKLOAD N`` working; ferroloop must be installed."""

import sys

from ferroloop._bench import workloads as _impl

if __name__ == "__main__":
    _impl.main(sys.argv[1:])
else:
    sys.modules[__name__] = _impl
