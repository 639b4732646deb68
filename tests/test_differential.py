"""Differential test, short form: seeded random asyncio programs must leave the same trace on
stock asyncio and on ferroloop (tests/difftest/: dt_gen.py writes the programs, dt_harness.py
traces and normalises, run.py runs them in fresh subprocesses and compares).

DIFFTEST_COUNT / DIFFTEST_START change the seeds (default 200 programs from seed 0);
the long form is ``python tests/difftest/run.py --count 5000 --start N -j 2``.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "difftest")
_spec = importlib.util.spec_from_file_location("difftest_run", os.path.join(_DIR, "run.py"))
difftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(difftest)  # puts tests/difftest on sys.path for dt_gen / dt_harness

COUNT = int(os.environ.get("DIFFTEST_COUNT", "200"))
START = int(os.environ.get("DIFFTEST_START", "0"))
# in chunks: each test stays well under conftest's per-test watchdog (60 s)
CHUNK = 50
CHUNKS = [(s, min(CHUNK, START + COUNT - s)) for s in range(START, START + COUNT, CHUNK)]
SHOW_DIFFS = 5  # full diffs in the failure message; every failing seed is listed


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("start,count", CHUNKS, ids=["seeds%d+%d" % c for c in CHUNKS])
def test_random_programs_trace_like_asyncio(start, count):
    seeds = list(range(start, start + count))
    failures = difftest.run_many(seeds, jobs=2, batch=(count + 3) // 4)
    if failures:
        parts = ["%d of %d programs differ from stock asyncio (Python %d.%d); seeds: %s"
                 % (len(failures), len(seeds), *sys.version_info[:2],
                    " ".join(map(str, sorted(failures))))]
        for seed in sorted(failures)[:SHOW_DIFFS]:
            parts.append("=" * 70)
            parts.append("seed %d; replay: %s" % (seed, difftest.replay_cmd(seed)))
            parts.append(failures[seed])
        pytest.fail("\n".join(parts), pytrace=False)


def test_generator_is_deterministic():
    """The same seed gives the same program (replaying a failing seed must be possible)."""
    import dt_gen as gen

    for seed in (0, 1, 12345):
        assert gen.generate(seed, sys.version_info[:2]) == gen.generate(seed, sys.version_info[:2])


def test_a_difference_is_reported():
    """The comparison is not vacuous: a changed trace line makes a diff naming the seed."""
    a = ["== stage st1", "f1 cb 0", "f1 cb 1"]
    b = ["== stage st1", "f1 cb 1", "f1 cb 0"]
    d = difftest.compare(7, a, b)
    assert d is not None and "seed=7" in d and "+f1 cb 1" in d and "-f1 cb 1" in d
    assert difftest.compare(7, a, list(a)) is None


def test_normalisation_keeps_real_differences():
    import dt_harness as harness

    n = harness.normalise
    # what may differ: addresses, module prefix, deadlines, task counter base
    assert n("<ferroloop.Future object at 0x7f00aa>", None) == n("<_asyncio.Future object at 0x55bb>", None)
    assert n("<TimerHandle when=123.4 f()>", None) == n("<TimerHandle when=99.9 f()>", None)
    assert n("Task-12", 10) == n("Task-5", 3) == "Task-+2"
    # what may not: messages, order, counters relative to the program's first task
    assert n("Result is not set.", None) != n("Result is not ready.", None)
    assert n("Task-12", 10) != n("Task-12", 11)
