"""Signals: add/remove_signal_handler, Ctrl-C while the loop sleeps, Python handlers."""

import asyncio
import os
import signal
import threading
import time

import pytest

SIGNALS = [signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGALRM]


@pytest.fixture(autouse=True)
def _restore_signals():
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    yield
    for s, h in saved.items():
        signal.signal(s, h)
    signal.set_wakeup_fd(-1)


def _kill_later(sig, delay):
    """Send ``sig`` to this process from another thread after ``delay`` seconds."""

    def worker():
        time.sleep(delay)
        os.kill(os.getpid(), sig)

    th = threading.Thread(target=worker, daemon=True)
    th.start()
    return th


def test_add_signal_handler_runs_on_loop(loop):
    got = []

    def handler(*args):
        got.append((args, threading.get_ident()))
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, handler, "a", 2)
    assert signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None)
    loop.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR1)
    safety = loop.call_later(5, loop.stop)
    loop.run_forever()
    safety.cancel()
    assert got == [(("a", 2), threading.get_ident())]
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_wakes_blocked_loop(loop):
    """Signal from another thread while the loop blocks in its poll with no timer."""
    got = []
    loop.add_signal_handler(signal.SIGUSR2, lambda: (got.append(time.monotonic()), loop.stop()))
    th = _kill_later(signal.SIGUSR2, 0.05)
    t0 = time.monotonic()
    loop.run_forever()
    th.join()
    assert got and got[0] - t0 < 2
    assert loop.remove_signal_handler(signal.SIGUSR2) is True


def test_signal_handler_runs_in_loop_not_in_signal_context(loop):
    """The handler runs as a loop callback: it may schedule, and its errors go to the
    exception handler."""
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))

    def handler():
        loop.call_soon(loop.stop)
        raise ValueError("from signal handler")

    loop.add_signal_handler(signal.SIGUSR1, handler)
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    safety = loop.call_later(5, loop.stop)
    loop.run_forever()
    safety.cancel()
    assert [type(c["exception"]) for c in reports] == [ValueError]
    loop.remove_signal_handler(signal.SIGUSR1)


def test_replace_signal_handler(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "first")
    loop.add_signal_handler(signal.SIGUSR1, lambda: (got.append("second"), loop.stop()))
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    safety = loop.call_later(5, loop.stop)
    loop.run_forever()
    safety.cancel()
    assert got == ["second"]


def test_close_removes_signal_handlers(loop):
    loop.add_signal_handler(signal.SIGUSR1, print)
    loop.add_signal_handler(signal.SIGUSR2, print)
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    assert signal.set_wakeup_fd(-1) == -1  # the loop released the wakeup fd


def test_remove_sigint_handler_restores_default_int_handler(loop):
    loop.add_signal_handler(signal.SIGINT, print)
    assert loop.remove_signal_handler(signal.SIGINT) is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_add_signal_handler_on_closed_loop(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.add_signal_handler(signal.SIGUSR1, print)


def test_keyboard_interrupt_while_blocked(loop):
    """Ctrl-C (SIGINT, no loop handler) while the loop sleeps on a far timer raises
    KeyboardInterrupt out of run_forever; the loop is usable afterwards."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    far = loop.call_later(30, loop.stop)
    th = _kill_later(signal.SIGINT, 0.1)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    th.join()
    assert time.monotonic() - t0 < 5
    assert not loop.is_running()
    far.cancel()
    calls = []
    loop.call_soon(calls.append, "again")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["again"]


def test_keyboard_interrupt_while_blocked_without_timers(loop):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    th = _kill_later(signal.SIGINT, 0.05)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    th.join()
    assert loop.run_until_complete(_sleep_value(loop)) == "ok"


async def _sleep_value(loop):
    import asyncio

    await asyncio.sleep(0.001)
    return "ok"


def test_keyboard_interrupt_raise_signal_in_callback(loop):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    calls = []
    loop.call_soon(signal.raise_signal, signal.SIGINT)
    loop.call_soon(calls.append, "next")
    safety = loop.call_later(5, loop.stop)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    safety.cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["next"]


def test_python_signal_handler_runs_while_loop_blocked(loop):
    """A plain signal.signal() handler runs while the loop blocks in its poll, and can
    wake the loop with call_soon_threadsafe."""
    ran = []

    def py_handler(signum, frame):
        ran.append((signum, threading.get_ident()))
        loop.call_soon_threadsafe(loop.stop)

    signal.signal(signal.SIGUSR1, py_handler)
    far = loop.call_later(30, loop.stop)
    th = _kill_later(signal.SIGUSR1, 0.1)
    t0 = time.monotonic()
    loop.run_forever()
    th.join()
    far.cancel()
    assert ran == [(signal.SIGUSR1, threading.get_ident())]
    assert time.monotonic() - t0 < 5


def test_python_signal_handler_exception_propagates(loop):
    """An exception raised by a Python-level signal handler while the loop is blocked
    propagates out of run_forever, as it does from asyncio's select()."""

    class Boom(Exception):
        pass

    def py_handler(signum, frame):
        raise Boom

    signal.signal(signal.SIGUSR1, py_handler)
    far = loop.call_later(30, loop.stop)
    th = _kill_later(signal.SIGUSR1, 0.05)
    with pytest.raises(Boom):
        loop.run_forever()
    th.join()
    far.cancel()
    assert not loop.is_running()


def test_runner_sigint_cancels_main_task(loop_factory):
    """asyncio.Runner installs its own SIGINT handler (signal.signal) that cancels the
    main task: KeyboardInterrupt comes out of runner.run()."""
    import asyncio

    signal.signal(signal.SIGINT, signal.default_int_handler)
    cancelled = []

    async def main():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    th = _kill_later(signal.SIGINT, 0.1)
    t0 = time.monotonic()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        with pytest.raises(KeyboardInterrupt):
            runner.run(main())
    th.join()
    assert cancelled == [True]
    assert time.monotonic() - t0 < 5


def test_signal_handler_not_starved_by_busy_loop(loop):
    got = []
    spins = [0]

    def spin():
        spins[0] += 1
        if got or spins[0] > 5_000_000:
            loop.stop()
        else:
            loop.call_soon(spin)

    loop.add_signal_handler(signal.SIGUSR1, lambda: got.append(time.monotonic()))
    th = _kill_later(signal.SIGUSR1, 0.05)
    t0 = time.monotonic()
    loop.call_soon(spin)
    loop.run_forever()
    th.join()
    assert got, "signal handler never ran while the loop was busy"
    assert got[0] - t0 < 1


def test_keyboard_interrupt_while_busy(loop):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    spins = [0]

    def spin():
        spins[0] += 1
        if spins[0] > 20_000_000:
            loop.stop()
        else:
            loop.call_soon(spin)

    th = _kill_later(signal.SIGINT, 0.05)
    loop.call_soon(spin)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    th.join()
    assert spins[0] <= 20_000_000
    assert loop.run_until_complete(_sleep_value(loop)) == "ok"


def test_repeated_signals_while_idle(loop):
    """Signals keep arriving while the loop goes idle between them: each wakes it."""
    got = []
    n = 20

    def handler():
        got.append(time.monotonic())
        if len(got) == n:
            loop.stop()

    def worker():
        for _ in range(n):
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.005)  # longer than the loop needs: signals do not coalesce

    loop.add_signal_handler(signal.SIGUSR1, handler)
    safety = loop.call_later(15, loop.stop)
    th = threading.Thread(target=worker)
    t0 = time.monotonic()
    th.start()
    loop.run_forever()
    th.join()
    safety.cancel()
    assert len(got) == n
    assert time.monotonic() - t0 < 10


def test_signal_handler_runs_in_asyncio_order_while_busy(loop):
    """A signal that arrives while callbacks keep the loop busy: asyncio's poll finds the
    self-pipe readable on the next iteration, its reader (_read_from_self) runs after the
    callbacks already ready and appends the handler, which runs one iteration later."""
    out = []
    loop.add_signal_handler(signal.SIGUSR1, out.append, "sig")

    def step(i):
        out.append(i)
        if i == 5:
            os.kill(os.getpid(), signal.SIGUSR1)
        if i < 200:
            loop.call_soon(step, i + 1)
        else:
            loop.stop()

    loop.call_soon(step, 0)
    loop.run_forever()
    assert out[: out.index("sig") + 2] == [0, 1, 2, 3, 4, 5, 6, 7, "sig", 8]
    assert out.count("sig") == 1


def test_signal_handler_across_run_until_complete(loop):
    """The issue's reproducer: each signal's handler runs at the start of the next
    run_until_complete, before the handler is replaced."""
    out = []

    def h(tag):
        out.append(f"sig {tag} rm={loop.remove_signal_handler(signal.SIGUSR2)}")

    async def main(tag):
        loop.add_signal_handler(signal.SIGUSR2, h, tag)
        os.kill(os.getpid(), signal.SIGUSR2)
        return tag

    for tag in "ABC":
        out.append(loop.run_until_complete(main(tag)))
    loop.run_until_complete(asyncio.sleep(0.05))
    assert out == ["A", "sig A rm=True", "B", "sig B rm=True", "C", "sig C rm=True"]


def test_signal_left_when_last_handler_removed_is_dropped(loop):
    """A signal that arrived just before its last handler was removed is read (and dropped,
    no handler) by the next poll, as asyncio's self-pipe reader does: a handler installed
    for it a few busy iterations later must not see it."""
    out = []

    async def main():
        loop.add_signal_handler(signal.SIGUSR1, out.append, "old")
        await asyncio.sleep(0)
        # In one batch: the signal arrives, then its only handler goes.
        loop.call_soon(signal.raise_signal, signal.SIGUSR1)
        loop.call_soon(lambda: out.append(("removed", loop.remove_signal_handler(signal.SIGUSR1))))
        for _ in range(10):  # busy iterations, no fd watched
            await asyncio.sleep(0)
        loop.add_signal_handler(signal.SIGUSR1, out.append, "new")
        for _ in range(10):
            await asyncio.sleep(0)
        loop.remove_signal_handler(signal.SIGUSR1)

    loop.run_until_complete(main())
    assert out == [("removed", True)]


def test_signal_read_after_a_threadsafe_wakeup(loop):
    """asyncio's call_soon_threadsafe wakes its loop through the self-pipe that carries
    signal numbers too, so the next poll queues the pipe's reader: a signal raised by a
    callback of that iteration is read there, and goes to the handler installed at that
    moment, before a later step replaces it (found by the differential test)."""
    out = []

    async def main():
        loop.add_signal_handler(signal.SIGUSR1, out.append, "old")
        loop.call_soon_threadsafe(lambda: None)
        await asyncio.sleep(0)
        signal.raise_signal(signal.SIGUSR1)
        await asyncio.sleep(0)
        loop.add_signal_handler(signal.SIGUSR1, out.append, "new")
        for _ in range(5):
            await asyncio.sleep(0)
        loop.remove_signal_handler(signal.SIGUSR1)

    loop.run_until_complete(main())
    assert out == ["old"]


@pytest.mark.parametrize("wake", ["call_soon_threadsafe", "set_debug"])
def test_signal_read_after_a_wakeup_made_before_any_handler(loop, wake):
    """asyncio writes call_soon_threadsafe's wake-up byte to its self-pipe whether or not a
    signal handler is installed (set_debug on a running loop goes through
    call_soon_threadsafe), so the next poll queues the pipe's reader; a handler installed
    and a signal raised by a step of that iteration are read there, before a later step
    replaces the handler (differential test seeds 2664 and 3526 on 3.11, 3717 on 3.13)."""
    out = []

    async def main():
        if wake == "set_debug":
            loop.set_debug(True)
            loop.set_debug(False)
        else:
            loop.call_soon_threadsafe(lambda: None)
        await asyncio.sleep(0)
        loop.add_signal_handler(signal.SIGUSR1, out.append, "old")
        signal.raise_signal(signal.SIGUSR1)
        await asyncio.sleep(0)
        loop.add_signal_handler(signal.SIGUSR1, out.append, "new")
        for _ in range(5):
            await asyncio.sleep(0)
        loop.remove_signal_handler(signal.SIGUSR1)

    loop.run_until_complete(main())
    assert out == ["old"]


def test_signal_pipe_read_consumes_earlier_wakeups(loop):
    """asyncio's self-pipe reader drains the pipe, wake-up bytes included: a
    call_soon_threadsafe made before the read in the same iteration leaves nothing for the
    next poll, so a signal raised in the next iteration is read one iteration later, after
    the step that replaces its handler."""
    out = []

    async def main():
        loop.add_signal_handler(signal.SIGUSR1, out.append, "first")
        signal.raise_signal(signal.SIGUSR1)
        await asyncio.sleep(0)
        # this iteration reads the pipe after this step: the wake-up byte goes with it
        loop.call_soon_threadsafe(lambda: None)
        await asyncio.sleep(0)
        signal.raise_signal(signal.SIGUSR1)
        await asyncio.sleep(0)
        loop.add_signal_handler(signal.SIGUSR1, out.append, "new")
        for _ in range(5):
            await asyncio.sleep(0)
        loop.remove_signal_handler(signal.SIGUSR1)

    loop.run_until_complete(main())
    assert out == ["first", "new"]
