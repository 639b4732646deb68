"""Resource hygiene: file descriptors, ResourceWarning for unclosed loops, reference
cycles."""

import asyncio
import gc
import os
import signal
import socket
import warnings
import weakref

import pytest


def _open_fds():
    return set(os.listdir("/proc/self/fd"))


def test_create_and_close_many_loops_leaks_no_fds(loop_factory):
    gc.collect()
    before = _open_fds()
    for i in range(200):
        lp = loop_factory()
        if i % 2:
            lp.run_until_complete(asyncio.sleep(0))
        lp.close()
    del lp
    gc.collect()
    after = _open_fds()
    assert after - before == set(), f"leaked fds: {sorted(after - before)}"


def test_loops_with_readers_and_signals_leak_no_fds(loop_factory):
    saved = signal.getsignal(signal.SIGUSR1)
    try:
        gc.collect()
        before = _open_fds()
        for _ in range(20):
            lp = loop_factory()
            a, b = socket.socketpair()
            lp.add_reader(a, print)
            lp.add_writer(b, print)
            lp.add_signal_handler(signal.SIGUSR1, print)
            lp.call_soon(lp.stop)
            lp.run_forever()
            lp.close()
            a.close()
            b.close()
        del lp
        gc.collect()
        after = _open_fds()
        assert after - before == set(), f"leaked fds: {sorted(after - before)}"
    finally:
        signal.signal(signal.SIGUSR1, saved)
        signal.set_wakeup_fd(-1)


def test_unclosed_loop_resource_warning(loop_factory):
    gc.collect()
    before = _open_fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lp = loop_factory()
        lp.call_soon(print)
        r = repr(lp)
        del lp
        gc.collect()
    msgs = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert any(m.startswith("unclosed event loop") for m in msgs), msgs
    assert any(r in m for m in msgs), (r, msgs)
    # The recorded warning references the loop (source=loop); once it is gone, the
    # loop is freed and its fds are released.
    del caught
    gc.collect()
    assert _open_fds() - before == set()


def test_close_releases_fds_while_loop_still_referenced(loop_factory):
    gc.collect()
    before = _open_fds()
    loops = []
    for _ in range(10):
        lp = loop_factory()
        lp.run_until_complete(asyncio.sleep(0))
        lp.close()
        loops.append(lp)  # e.g. still referenced by a task, a Runner, a traceback
    leaked = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in _open_fds() - before}
    assert leaked == {}


def test_closed_loop_no_resource_warning(loop_factory):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lp = loop_factory()
        lp.close()
        del lp
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_closed_loop_is_collected(loop_factory):
    """A loop that ran tasks and callbacks and was closed does not stay alive."""
    lp = loop_factory()

    async def main():
        await asyncio.sleep(0.001)
        running = asyncio.get_running_loop()
        running.call_soon(lambda: None)
        running.call_later(10, lambda: None)

    lp.run_until_complete(main())
    lp.close()
    ref = weakref.ref(lp)
    del lp
    gc.collect()
    assert ref() is None


def test_callback_references_released_after_run(loop):
    class Payload:
        pass

    p = Payload()
    ref = weakref.ref(p)
    loop.call_soon(lambda x: None, p)
    h = loop.call_later(10, lambda x: None, p)
    del p
    loop.call_soon(loop.stop)
    loop.run_forever()
    h.cancel()  # cancelling drops the timer's callback and args
    del h
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("n", [5000])
def test_many_pending_timers_cancelled_then_closed(loop, n):
    handles = [loop.call_later(100 + i, print) for i in range(n)]
    for h in handles:
        h.cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.close()
    assert all(h.cancelled() for h in handles)


@pytest.mark.parametrize("with_timer", [False, True])
def test_unclosed_loop_at_interpreter_exit(loop_name, with_timer):
    import subprocess
    import sys

    code = (
        "import asyncio, ferroloop\n"
        f"loop = {'asyncio' if loop_name == 'asyncio' else 'ferroloop'}.new_event_loop()\n"
        + ("loop.call_later(10, print)\n" if with_timer else "")
    )
    for flags in ([], ["-W", "always::ResourceWarning"]):
        proc = subprocess.run(
            [sys.executable, *flags, "-c", code], capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 0
        assert "Exception ignored" not in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        if flags:
            assert "ResourceWarning: unclosed event loop" in proc.stderr, proc.stderr


class _Obj:
    def method(self):
        pass


def _collected(make):
    wr = make()
    gc.collect()
    gc.collect()
    return wr() is None


def test_cycle_through_fired_timer_is_collected(loop):
    def make():
        o = _Obj()
        o.h = loop.call_later(0, o.method)  # o -> handle -> bound method -> o
        loop.call_later(0.005, loop.stop)
        loop.run_forever()
        return weakref.ref(o)

    assert _collected(make)


def test_cycle_through_pending_timer_collected_after_close(loop):
    def make():
        o = _Obj()
        o.h = loop.call_later(100, o.method)
        loop.close()
        return weakref.ref(o)

    assert _collected(make)


def test_cycle_through_timer_context_is_collected(loop):
    import contextvars

    var = contextvars.ContextVar("var")

    def make(cancel):
        o = _Obj()
        ctx = contextvars.copy_context()
        ctx.run(var.set, o)
        o.ctx = ctx  # o -> ctx -> o
        h = loop.call_later(0 if not cancel else 100, o.method, context=ctx)
        loop.call_later(0.005, loop.stop)
        loop.run_forever()
        if cancel:
            h.cancel()
            # A cancelled timer may stay in the heap (with its context) until it reaches
            # the top or the heap is rebuilt, in asyncio too; close() drops it.
            loop.close()
        return weakref.ref(o)

    assert _collected(lambda: make(cancel=False))
    assert _collected(lambda: make(cancel=True))


def test_pending_timer_keeps_its_callback_alive(loop):
    def make():
        o = _Obj()
        o.h = loop.call_later(100, o.method)
        return weakref.ref(o)

    wr = make()
    gc.collect()
    assert wr() is not None  # the loop still holds the scheduled timer
    wr().h.cancel()
    gc.collect()
    assert wr() is None


def test_unreachable_unclosed_loop_with_pending_timer_is_collected(loop_factory):
    lp = loop_factory()
    lp.call_later(100, lp.stop)  # loop -> timer -> bound method -> loop
    lp.call_soon(lp.stop)
    lp.run_forever()
    wr = weakref.ref(lp)
    del lp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
        gc.collect()
    assert wr() is None


class _Rescheduler:
    """An argument whose finalizer schedules more work on the loop (re-entrancy)."""

    def __init__(self, loop, log, n, how):
        self.loop, self.log, self.n, self.how = loop, log, n, how

    def __del__(self):
        self.log.append(self.n)
        if self.n and not self.loop.is_closed():
            nxt = _Rescheduler(self.loop, self.log, self.n - 1, self.how)
            if self.how == "call_soon":
                self.loop.call_soon(_ignore, nxt)
            elif self.how == "call_later":
                self.loop.call_later(0, _ignore, nxt)
            else:
                self.loop.call_soon_threadsafe(_ignore, nxt)


def _ignore(*args):
    pass


@pytest.mark.parametrize("how", ["call_soon", "call_later", "call_soon_threadsafe"])
def test_finalizers_that_schedule_callbacks(loop, how):
    log = []
    loop.call_soon(_ignore, _Rescheduler(loop, log, 200, how))
    deadline = loop.time() + 10

    def check():
        if len(log) >= 201 or loop.time() > deadline:
            loop.stop()
        else:
            loop.call_soon(check)

    loop.call_soon(check)
    loop.run_forever()
    assert log == list(range(200, -1, -1))


def test_close_with_finalizers_that_schedule(loop):
    log = []
    for how in ("call_soon", "call_later", "call_soon_threadsafe"):
        loop.call_soon(_ignore, _Rescheduler(loop, log, 5, how))
        loop.call_later(100, _ignore, _Rescheduler(loop, log, 5, how))
    loop.close()  # must neither deadlock nor raise
    gc.collect()
    assert loop.is_closed()
    assert sorted(log) == [5] * 6


def test_no_script_in_a_run_directory_shadows_a_stdlib_module():
    """`python benchmarks/net.py` puts benchmarks/ first on sys.path: a script there named
    like a stdlib module (a benchmarks/subprocess.py once) replaces that module for every
    other script of the directory, and asyncio's import fails."""
    import pathlib
    import sys

    repo = pathlib.Path(__file__).resolve().parent.parent
    shadowing = sorted(
        str(p.relative_to(repo))
        for d in ("benchmarks", "examples", "tests", "tests/cpython", "tests/difftest")
        for p in (repo / d).glob("*.py")
        if p.stem in sys.stdlib_module_names
    )
    assert shadowing == []
