"""Async generator hooks: finalization on the loop and shutdown_asyncgens()."""

import asyncio
import gc
import subprocess
import sys

import pytest

from conftest import run_with_timeout


def _make_agen(log):
    async def agen():
        try:
            for i in range(100):
                yield i
        finally:
            log.append(("closed", asyncio.get_running_loop()))
            await asyncio.sleep(0)  # an await in finally needs a running loop
            log.append("finally-done")

    return agen()


def test_shutdown_asyncgens_closes_unfinished_generator(loop):
    log = []
    keep = []

    async def main():
        g = _make_agen(log)
        keep.append(g)  # still referenced: only shutdown_asyncgens can close it
        assert await g.__anext__() == 0
        assert await g.__anext__() == 1

    loop.run_until_complete(main())
    assert log == []
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert log == [("closed", loop), "finally-done"]


def test_runner_closes_unfinished_generator(loop_factory):
    log = []
    keep = []

    async def main():
        g = _make_agen(log)
        keep.append(g)
        await g.__anext__()
        return "main-done"

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert runner.run(main()) == "main-done"
        lp = runner.get_loop()
        assert log == []
    assert log == [("closed", lp), "finally-done"]
    assert lp.is_closed()


def test_ferroloop_run_closes_unfinished_generator():
    import ferroloop

    log = []
    keep = []

    async def main():
        g = _make_agen(log)
        keep.append(g)
        await g.__anext__()
        return asyncio.get_running_loop()

    lp = ferroloop.run(main())
    assert isinstance(lp, ferroloop.Loop)
    assert log == [("closed", lp), "finally-done"]


def test_dropped_generator_is_finalized_on_loop(loop):
    """An unfinished async generator that is garbage-collected is closed by the loop's
    finalizer hook (aclose() scheduled as a task), not synchronously."""
    log = []

    async def main():
        g = _make_agen(log)
        await g.__anext__()
        del g
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)
        return log[:]

    assert run_with_timeout(loop, main()) == [("closed", loop), "finally-done"]


def test_asyncgen_hooks_installed_only_while_running(loop):
    before = sys.get_asyncgen_hooks()

    async def main():
        return sys.get_asyncgen_hooks()

    inside = loop.run_until_complete(main())
    assert inside.firstiter is not None and inside.finalizer is not None
    assert inside != before
    assert sys.get_asyncgen_hooks() == before


def test_shutdown_asyncgens_reports_errors(loop):
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))
    keep = []

    async def bad_agen():
        try:
            yield 1
        finally:
            raise ValueError("in aclose")

    async def main():
        g = bad_agen()
        keep.append(g)
        await g.__anext__()

    loop.run_until_complete(main())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert len(reports) == 1
    assert isinstance(reports[0]["exception"], ValueError)
    assert reports[0]["message"].startswith("an error occurred during closing of asynchronous generator")
    assert reports[0]["asyncgen"] is keep[0]


def test_asyncgen_after_shutdown_warns(loop):
    loop.run_until_complete(loop.shutdown_asyncgens())

    async def agen():
        yield 1

    async def main():
        g = agen()
        with pytest.warns(ResourceWarning, match="was scheduled after loop.shutdown_asyncgens"):
            await g.__anext__()
        await g.aclose()

    loop.run_until_complete(main())


_FINALIZED_IN_DEBUG_MODE = """
import asyncio, sys
import ferroloop

async def agen():
    try:
        while True:
            yield 1
    finally:
        print("finalized")

async def main():
    it = agen()
    await anext(it)
    # `it` dies as main's frame is cleared: the finalizer hook runs from C, between frames.

loop = ferroloop.new_event_loop() if sys.argv[1] == "ferroloop" else asyncio.new_event_loop()
loop.set_debug(True)
loop.run_until_complete(main())
loop.run_until_complete(asyncio.sleep(0.01))
loop.close()
print("done")
"""


def test_finalizer_in_debug_mode_when_the_frame_goes(loop_name):
    """An async generator dropped as its coroutine's frame is cleared: the finalizer hook
    is called from C while the thread's current frame is the interpreter's C-stack entry
    frame. In debug mode the aclose() task's source traceback starts at the caller's frame;
    on 3.13 ferroloop took that with sys._getframe(0) from native code, which made a frame
    object of the entry frame itself, pointing into a dead C stack frame: garbage
    ("'WeakSet' has no attribute 'f_lineno'", the aclose() never scheduled) or a
    segfault (websockets' test_aiter_mixed under IsolatedAsyncioTestCase). A subprocess,
    since the bug crashes."""
    r = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", _FINALIZED_IN_DEBUG_MODE, loop_name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, "finalized\ndone\n", "")
