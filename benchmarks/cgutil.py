"""What the *_callgrind.py scripts share: run a command under valgrind's callgrind and
return the instructions it executed (callgrind's ``totals``/``summary`` line)."""

import os
import re
import subprocess
import tempfile


def callgrind_total(argv):
    """Instructions executed by ``argv`` (user space, every thread) under callgrind.

    With ``CALLGRIND_KEEP=DIR`` in the environment the profile is kept there (one file per
    run, ``cg.N.out``), for ``callgrind_annotate`` per function."""
    with tempfile.TemporaryDirectory() as tmp:
        keep = os.environ.get("CALLGRIND_KEEP")
        if keep:
            os.makedirs(keep, exist_ok=True)
            out = os.path.join(keep, f"cg.{len(os.listdir(keep))}.out")
        else:
            out = os.path.join(tmp, "cg.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *map(str, argv)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(res.stderr.strip().splitlines()[-1:] or res.returncode)
        with open(out) as f:
            for line in f:
                m = re.match(r"(?:summary|totals): (\d+)", line)
                if m:
                    return int(m.group(1))
    raise RuntimeError("no instruction total in callgrind's output")
