"""Signals: add/remove_signal_handler, Ctrl-C while the loop sleeps, Python handlers."""

import asyncio
import errno
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

SIGNALS = [signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGALRM, signal.SIGCHLD]


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
    """Signals keep arriving while the loop goes idle between them: each wakes it. The
    sender waits for each handler call before the next signal (the kernel merges a signal
    sent while the same one is still pending, as can happen when a loaded machine does
    not schedule the process for a while), then lets the loop go idle."""
    got = []
    n = 20
    handled = threading.Event()

    def handler():
        got.append(time.monotonic())
        handled.set()
        if len(got) == n:
            loop.stop()

    def worker():
        for _ in range(n):
            handled.clear()
            os.kill(os.getpid(), signal.SIGUSR1)
            if not handled.wait(10):
                return
            time.sleep(0.005)  # the loop goes idle before the next signal

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



# --- issue 9: the complete add/remove_signal_handler contract, checked on both loops ---


def _run_until(loop, pred, timeout=5.0):
    """Run ``loop`` until ``pred()`` holds (checked every millisecond), or fail."""

    async def wait():
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, "condition never held"
            await asyncio.sleep(0.001)

    loop.run_until_complete(wait())


@pytest.mark.parametrize(
    "sig, exc, message",
    [
        (0, ValueError, "invalid signal number 0"),
        (999, ValueError, "invalid signal number 999"),
        (-1, ValueError, "invalid signal number -1"),
        ("SIGUSR1", TypeError, "sig must be an int, not 'SIGUSR1'"),
        (10.0, TypeError, "sig must be an int, not 10.0"),
        (None, TypeError, "sig must be an int, not None"),
    ],
)
def test_add_and_remove_signal_handler_reject_invalid_signals(loop, sig, exc, message):
    with pytest.raises(exc) as info:
        loop.add_signal_handler(sig, print)
    assert str(info.value) == message
    with pytest.raises(exc) as info:
        loop.remove_signal_handler(sig)
    assert str(info.value) == message
    assert signal.set_wakeup_fd(-1) == -1  # nothing was installed


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_uncatchable_signal_raises_runtime_error(loop, sig):
    """signal.signal() fails with EINVAL: RuntimeError('sig N cannot be caught') raised
    while handling that OSError, the handler forgotten and, none being left, the wakeup fd
    reset; remove_signal_handler() then finds nothing."""
    with pytest.raises(RuntimeError) as info:
        loop.add_signal_handler(sig, print)
    assert str(info.value) == f"sig {sig} cannot be caught"
    assert isinstance(info.value.__context__, OSError)
    assert info.value.__context__.errno == errno.EINVAL
    assert signal.set_wakeup_fd(-1) == -1
    assert loop.remove_signal_handler(sig) is False


def test_uncatchable_signal_keeps_the_other_handlers(loop):
    """A failed add_signal_handler leaves the wakeup fd in place while another handler is
    installed: that handler still runs."""
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "usr1")
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGKILL, print)
    loop.call_soon(signal.raise_signal, signal.SIGUSR1)
    _run_until(loop, lambda: got)
    assert got == ["usr1"]
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert signal.set_wakeup_fd(-1) == -1


async def _coroutine_function():
    pass


def test_coroutines_rejected(loop):
    coro = _coroutine_function()
    try:
        for cb in (_coroutine_function, coro):
            with pytest.raises(TypeError) as info:
                loop.add_signal_handler(signal.SIGUSR1, cb)
            assert str(info.value) == "coroutines cannot be used with add_signal_handler()"
    finally:
        coro.close()
    # The type check comes first: even an invalid signal gets the TypeError.
    with pytest.raises(TypeError, match="coroutines cannot be used"):
        loop.add_signal_handler(0, _coroutine_function)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_add_signal_handler_outside_the_main_thread(loop):
    """set_wakeup_fd() refuses outside the main thread: RuntimeError with its message,
    raised while handling its ValueError; nothing is installed."""
    got = {}

    def worker():
        try:
            loop.add_signal_handler(signal.SIGUSR1, print)
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            got["add"] = e
        got["remove"] = loop.remove_signal_handler(signal.SIGUSR1)

    th = threading.Thread(target=worker)
    th.start()
    th.join()
    assert type(got["add"]) is RuntimeError
    assert str(got["add"]) == "set_wakeup_fd only works in main thread of the main interpreter"
    assert type(got["add"].__context__) is ValueError
    assert got["remove"] is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_add_signal_handler_in_a_loop_running_in_another_thread(loop_factory):
    got = []

    def worker():
        lp = loop_factory()

        async def main():
            try:
                lp.add_signal_handler(signal.SIGUSR1, print)
            except RuntimeError as e:
                got.append(str(e))

        lp.run_until_complete(main())
        lp.close()

    th = threading.Thread(target=worker)
    th.start()
    th.join()
    assert got == ["set_wakeup_fd only works in main thread of the main interpreter"]


def test_closed_loop_checks_the_signal_first(loop):
    loop.close()
    with pytest.raises(ValueError, match="invalid signal number 0"):
        loop.add_signal_handler(0, print)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.add_signal_handler(signal.SIGUSR1, print)
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.set_wakeup_fd(-1) == -1


def test_several_handlers_on_different_signals(loop):
    """Each signal runs its own handler with its own arguments, in arrival order."""
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "usr1")
    loop.add_signal_handler(signal.SIGUSR2, lambda *a: got.append(a), "usr2", 2)
    loop.add_signal_handler(signal.SIGALRM, got.append, "alrm")

    def raise_all():
        signal.raise_signal(signal.SIGALRM)
        signal.raise_signal(signal.SIGUSR1)
        signal.raise_signal(signal.SIGUSR2)
        signal.raise_signal(signal.SIGUSR1)

    loop.call_soon(raise_all)
    _run_until(loop, lambda: len(got) == 4)
    assert got == ["alrm", "usr1", ("usr2", 2), "usr1"]
    assert sorted(loop._signal_handlers) == sorted(
        [signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM]
    )
    # Removing one leaves the others working.
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    got.clear()
    loop.call_soon(signal.raise_signal, signal.SIGUSR2)
    _run_until(loop, lambda: got)
    assert got == [("usr2", 2)]
    assert signal.set_wakeup_fd(-1) != -1  # still installed for SIGUSR2 / SIGALRM


def test_reregistering_replaces_handler_and_arguments(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "first")
    first = loop._signal_handlers[signal.SIGUSR1]
    loop.add_signal_handler(signal.SIGUSR1, lambda *a: got.append(a), "second", 2)
    assert loop._signal_handlers[signal.SIGUSR1] is not first
    assert len(loop._signal_handlers) == 1
    loop.call_soon(signal.raise_signal, signal.SIGUSR1)
    _run_until(loop, lambda: got)
    assert got == [("second", 2)]
    # One removal undoes both registrations.
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.set_wakeup_fd(-1) == -1


def test_removing_the_last_handler_resets_the_wakeup_fd_only_then(loop):
    loop.add_signal_handler(signal.SIGUSR1, print)
    loop.add_signal_handler(signal.SIGINT, print)
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    fd = signal.set_wakeup_fd(-1)
    assert fd != -1
    signal.set_wakeup_fd(fd)
    assert loop.remove_signal_handler(signal.SIGINT) is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.set_wakeup_fd(-1) == -1


def test_raising_handlers_go_to_the_exception_handler(loop):
    """A handler that raises is reported like any callback (message, exception, handle)
    and the loop goes on: the next signal runs it again."""
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))

    def handler(tag):
        raise ZeroDivisionError(tag)

    loop.add_signal_handler(signal.SIGUSR1, handler, "a")
    loop.call_soon(signal.raise_signal, signal.SIGUSR1)
    _run_until(loop, lambda: len(reports) == 1)
    loop.call_soon(signal.raise_signal, signal.SIGUSR1)
    _run_until(loop, lambda: len(reports) == 2)
    for ctx in reports:
        assert type(ctx["exception"]) is ZeroDivisionError
        assert ctx["exception"].args == ("a",)
        assert ctx["message"].startswith("Exception in callback ")
        assert ctx["handle"] is loop._signal_handlers[signal.SIGUSR1]
    assert loop.run_until_complete(_sleep_value(loop)) == "ok"


def test_keyboard_interrupt_from_a_handler_leaves_run_forever(loop):
    """BaseExceptions raised by a handler are not reported: they leave run_forever."""

    def handler():
        raise KeyboardInterrupt

    loop.add_signal_handler(signal.SIGUSR1, handler)
    loop.call_soon(signal.raise_signal, signal.SIGUSR1)
    safety = loop.call_later(5, loop.stop)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    safety.cancel()
    assert loop.run_until_complete(_sleep_value(loop)) == "ok"


def test_cancelled_handle_removes_the_handler_when_the_signal_comes(loop):
    """asyncio's _handle_signal: a cancelled handler is removed properly (SIG_DFL back,
    wakeup fd reset) when its signal next arrives, and does not run."""
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "x")
    loop._signal_handlers[signal.SIGUSR1].cancel()
    assert signal.SIGUSR1 in loop._signal_handlers
    loop.call_soon(signal.raise_signal, signal.SIGUSR1)
    _run_until(loop, lambda: signal.SIGUSR1 not in loop._signal_handlers)
    assert got == []
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.set_wakeup_fd(-1) == -1


def test_handler_runs_in_the_context_of_add_signal_handler(loop):
    import contextvars

    var = contextvars.ContextVar("var", default="unset")
    got = []
    var.set("at add")
    loop.add_signal_handler(signal.SIGUSR1, lambda: got.append(var.get()))
    var.set("later")
    loop.call_soon(signal.raise_signal, signal.SIGUSR1)
    _run_until(loop, lambda: got)
    assert got == ["at add"]


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_user_sigchld_handler(loop):
    """A SIGCHLD handler runs when a child exits; the child can then be reaped."""
    got = []
    loop.add_signal_handler(signal.SIGCHLD, got.append, "chld")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os._exit(7)
    try:
        _run_until(loop, lambda: got)
    finally:
        _, status = os.waitpid(pid, 0)
    assert got[0] == "chld"
    assert os.waitstatus_to_exitcode(status) == 7
    assert loop.remove_signal_handler(signal.SIGCHLD) is True
    assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL


def test_burst_of_raised_signals_runs_the_handler_once_per_signal(loop):
    """raise_signal delivers each signal at once: one wakeup byte, one handler call per
    signal (200 bytes fit in the signal socket's buffer on both loops)."""
    count = [0]
    loop.add_signal_handler(signal.SIGUSR1, lambda: count.__setitem__(0, count[0] + 1))

    def burst():
        for _ in range(200):
            signal.raise_signal(signal.SIGUSR1)

    loop.call_soon(burst)
    _run_until(loop, lambda: count[0] == 200)
    loop.run_until_complete(asyncio.sleep(0.05))
    assert count[0] == 200


def test_burst_overflowing_the_wakeup_socket(loop):
    """1,000 signals raised faster than the loop reads: the bytes that do not fit are
    reported as unraisable BlockingIOErrors by Python's signal module; every other one
    runs the handler, and the loop keeps working."""
    count = [0]
    unraisable = []
    loop.add_signal_handler(signal.SIGUSR1, lambda: count.__setitem__(0, count[0] + 1))
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: unraisable.append(u.exc_type)
    try:

        def burst():
            for _ in range(1000):
                signal.raise_signal(signal.SIGUSR1)

        loop.call_soon(burst)
        _run_until(loop, lambda: count[0] + len(unraisable) == 1000)
        loop.run_until_complete(asyncio.sleep(0.05))
    finally:
        sys.unraisablehook = old_hook
    assert count[0] + len(unraisable) == 1000
    assert count[0] > 0
    assert set(unraisable) <= {BlockingIOError}
    assert loop.run_until_complete(_sleep_value(loop)) == "ok"


_COALESCE_PROGRAM = r"""
import asyncio, os, signal, sys
import ferroloop

loop = ferroloop.new_event_loop() if sys.argv[1] == "ferroloop" else asyncio.new_event_loop()
count = [0]
loop.add_signal_handler(signal.SIGUSR1, lambda: count.__setitem__(0, count[0] + 1))

async def main():
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    for _ in range(1000):
        os.kill(os.getpid(), signal.SIGUSR1)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR1])
    await asyncio.sleep(0.1)

loop.run_until_complete(main())
loop.close()
print(count[0])
"""


def test_blocked_signals_coalesce_into_one_handler_call(loop_name):
    """The kernel keeps one pending instance of a blocked standard signal: 1,000 kills
    while it is blocked are one delivery, so one handler call, on both loops. (In a fresh
    process: with other threads running, a thread that does not block the signal would
    take the deliveries.)"""
    out = subprocess.run(
        [sys.executable, "-c", _COALESCE_PROGRAM, loop_name],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1"]


@pytest.mark.parametrize("sender", ["thread", "child"])
def test_burst_from_another_thread_or_process(loop, sender):
    """1,000 SIGUSR1 from a thread or a child process: deliveries may coalesce, each
    delivery runs the handler once (at least one, at most 1,000), and a SIGUSR2 sent
    afterwards still gets through."""
    count = [0]
    done = []
    loop.add_signal_handler(signal.SIGUSR1, lambda: count.__setitem__(0, count[0] + 1))
    loop.add_signal_handler(signal.SIGUSR2, done.append, True)
    pid = os.getpid()

    async def main():
        if sender == "thread":

            def worker():
                for _ in range(1000):
                    os.kill(pid, signal.SIGUSR1)
                os.kill(pid, signal.SIGUSR2)

            th = threading.Thread(target=worker)
            th.start()
            await loop.run_in_executor(None, th.join)
        else:
            code = (
                "import os, signal, sys\n"
                "pid = int(sys.argv[1])\n"
                "for _ in range(1000): os.kill(pid, signal.SIGUSR1)\n"
                "os.kill(pid, signal.SIGUSR2)\n"
            )
            proc = await loop.run_in_executor(
                None, lambda: subprocess.run([sys.executable, "-c", code, str(pid)])
            )
            assert proc.returncode == 0
        deadline = time.monotonic() + 5
        while not done:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)

    unraisable = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: unraisable.append(u.exc_type)
    try:
        loop.run_until_complete(main())
    finally:
        sys.unraisablehook = old_hook
    assert 1 <= count[0] <= 1000
    assert count[0] + len(unraisable) <= 1000
    assert done == [True]


def test_two_loops_share_the_process_wakeup_fd(loop_factory):
    """The wakeup fd is process-wide: the loop that added a handler last receives every
    signal and drops those it has no handler for (as asyncio does)."""
    a, b = loop_factory(), loop_factory()
    got = []
    try:
        a.add_signal_handler(signal.SIGUSR1, got.append, "a")
        b.add_signal_handler(signal.SIGUSR2, got.append, "b")
        a.call_soon(signal.raise_signal, signal.SIGUSR1)
        a.run_until_complete(asyncio.sleep(0.05))
        b.call_soon(signal.raise_signal, signal.SIGUSR2)
        b.run_until_complete(asyncio.sleep(0.05))
        assert got == ["b"]
        a.run_until_complete(asyncio.sleep(0.01))
        assert got == ["b"]
    finally:
        a.close()
        b.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    assert signal.set_wakeup_fd(-1) == -1


def test_signals_after_close_and_a_new_loop(loop_factory):
    """close() removes the handlers and resets the wakeup fd; a new loop then installs
    its own and receives the signals."""
    a = loop_factory()
    a.add_signal_handler(signal.SIGUSR1, print)
    a.add_signal_handler(signal.SIGINT, print)
    a.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.set_wakeup_fd(-1) == -1
    assert a._signal_handlers == {}
    b = loop_factory()
    try:
        got = []
        b.add_signal_handler(signal.SIGUSR1, got.append, "b")
        b.call_soon(signal.raise_signal, signal.SIGUSR1)
        _run_until(b, lambda: got)
        assert got == ["b"]
    finally:
        b.close()
    assert signal.set_wakeup_fd(-1) == -1


def test_remove_signal_handler_outside_the_main_thread(loop):
    """asyncio forgets the handler, then signal.signal() refuses outside the main thread:
    the ValueError propagates and the handler is gone anyway."""
    loop.add_signal_handler(signal.SIGUSR1, print)
    got = {}

    def worker():
        try:
            got["remove"] = loop.remove_signal_handler(signal.SIGUSR1)
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            got["remove"] = e

    th = threading.Thread(target=worker)
    th.start()
    th.join()
    assert type(got["remove"]) is ValueError
    assert "main thread" in str(got["remove"])
    assert signal.SIGUSR1 not in loop._signal_handlers
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_raising_handler_in_debug_mode_reports_where_it_was_added(loop):
    reports = []
    loop.set_debug(True)
    loop.slow_callback_duration = 100
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))

    def handler():
        raise ZeroDivisionError

    loop.add_signal_handler(signal.SIGUSR1, handler)  # this line is in the traceback
    loop.call_soon(signal.raise_signal, signal.SIGUSR1)
    _run_until(loop, lambda: reports)
    ctx = reports[0]
    assert type(ctx["exception"]) is ZeroDivisionError
    # asyncio's own add_signal_handler frame ends asyncio's list; ferroloop's is native (a
    # known difference, see README): the caller's frame is in both.
    frames = [f for f in ctx["source_traceback"] if f.filename == __file__]
    assert frames[-1].name == "test_raising_handler_in_debug_mode_reports_where_it_was_added"
    assert "add_signal_handler" in frames[-1].line
    loop.set_debug(False)
