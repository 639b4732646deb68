"""Fork safety: a child made with os.fork() does not inherit a loop's running state.

asyncio (3.12+) registers ``os.register_at_fork(after_in_child=...)``: the child sees no
running loop, the policy forgets its loop and the signal wakeup fd is reset, so a signal
sent to the child never reaches the parent's loop. ferroloop does the same for its loops on
every version it supports (3.11 included), and its reactor (epoll fd, eventfd waker, signal
socket) is never shared: a loop the child makes is its own, and what the child does to the
inherited loop object leaves the parent's loop working.

Each test forks, runs a function in the child, and reads back what it returned (pickled
through a pipe; the child always ends with ``os._exit``).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import select
import signal
import socket
import sys
import threading
import time
import warnings

import pytest

import ferroloop

pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)

SIGNALS = [signal.SIGUSR1, signal.SIGUSR2]


@pytest.fixture(autouse=True)
def _restore_signals():
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    yield
    for s, h in saved.items():
        signal.signal(s, h)
    signal.set_wakeup_fd(-1)


def in_child(fn, timeout=30.0):
    """Fork; run ``fn()`` in the child and return its result (or re-raise its error
    as an AssertionError carrying the child's repr)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            try:
                data = pickle.dumps(("ok", fn()))
            except BaseException as e:  # noqa: BLE001 - everything goes to the parent
                data = pickle.dumps(("error", f"{type(e).__name__}: {e}"))
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "the child did not finish"
            ready, _, _ = select.select([r], [], [], left)
            if not ready:
                continue
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)   # a hung child: the assertion above reports it
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    kind, value = pickle.loads(b"".join(chunks))
    assert kind == "ok", value
    return value


def work_on_a_new_loop(loop_factory):
    """What a child does with a loop of its own: timers, a socketpair, a reader,
    call_soon_threadsafe from a thread, a signal handler."""

    async def main():
        loop = asyncio.get_running_loop()
        out = [type(loop).__name__]
        await asyncio.sleep(0.01)
        fut = loop.create_future()
        loop.call_later(0.01, fut.set_result, "timer")
        out.append(await fut)
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        try:
            await loop.sock_sendall(a, b"ping")
            out.append(await loop.sock_recv(b, 10))
            got = loop.create_future()
            loop.add_reader(b.fileno(), lambda: got.done() or got.set_result(b.recv(10)))
            a.send(b"reader")
            out.append(await asyncio.wait_for(got, 5))
            loop.remove_reader(b.fileno())
        finally:
            a.close()
            b.close()
        woke = loop.create_future()
        threading.Thread(target=loop.call_soon_threadsafe, args=(woke.set_result, "thread")).start()
        out.append(await asyncio.wait_for(woke, 5))
        sig = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR2, lambda: sig.done() or sig.set_result("signal"))
        signal.raise_signal(signal.SIGUSR2)
        out.append(await asyncio.wait_for(sig, 5))
        loop.remove_signal_handler(signal.SIGUSR2)
        return out

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


EXPECTED_WORK = [b"ping", b"reader", "thread", "signal"]


def loop_works(loop):
    """The parent's loop after the child is gone: timers, I/O, wake-ups, signals."""

    async def main():
        await asyncio.sleep(0.01)
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        try:
            await loop.sock_sendall(a, b"parent")
            data = await asyncio.wait_for(loop.sock_recv(b, 10), 5)
        finally:
            a.close()
            b.close()
        woke = loop.create_future()
        threading.Thread(target=loop.call_soon_threadsafe, args=(woke.set_result, 1)).start()
        await asyncio.wait_for(woke, 5)
        return data

    return loop.run_until_complete(asyncio.wait_for(main(), 10)) == b"parent"


def test_child_runs_a_new_loop_forked_from_a_running_loop(loop_factory):
    """Forked from inside a callback of a running loop: the child makes and runs a new
    loop (timers, sockets, wake-ups, signals); the parent's loop goes on."""
    loop = loop_factory()
    try:

        async def main():
            return in_child(lambda: work_on_a_new_loop(loop_factory))

        out = loop.run_until_complete(main())
        assert out[0] == type(loop).__name__
        assert out[1:] == ["timer", *EXPECTED_WORK]
        assert loop_works(loop)
    finally:
        loop.close()


def test_child_does_not_see_the_parents_running_loop(loop_factory):
    loop = loop_factory()

    def child():
        out = {"running": asyncio._get_running_loop()}
        try:
            asyncio.get_running_loop()
        except RuntimeError as e:
            out["get_running_loop"] = str(e)

        async def coro():
            return "run"

        # asyncio.run refuses to run inside a running loop: the child has none.
        out["asyncio.run"] = asyncio.run(coro())
        out["ferroloop.run"] = ferroloop.run(coro())
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            out["runner"] = runner.run(coro())
        return out

    async def main():
        return in_child(child)

    try:
        out = loop.run_until_complete(main())
    finally:
        loop.close()
    assert out == {
        "running": None,
        "get_running_loop": "no running event loop",
        "asyncio.run": "run",
        "ferroloop.run": "run",
        "runner": "run",
    }


def test_asyncio_run_in_a_child_of_asyncio_run(loop_factory):
    """CPython's TestFork.test_fork_asyncio_run, in both directions."""

    async def child_main():
        await asyncio.sleep(0.05)
        return 42

    async def main():
        return in_child(lambda: asyncio.run(child_main()))

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert runner.run(main()) == 42


def test_parent_keeps_working_after_the_child_exits(loop_factory):
    """The child runs the parent's code path (timers, reader) on a loop of its own and
    exits normally; the parent's loop, watching an fd and a signal, is unaffected."""
    loop = loop_factory()
    a, b = socket.socketpair()
    got = []
    try:
        loop.add_reader(b.fileno(), lambda: got.append(b.recv(100)))
        loop.add_signal_handler(signal.SIGUSR1, got.append, "sig")

        async def main():
            out = in_child(lambda: work_on_a_new_loop(loop_factory))
            await asyncio.sleep(0.05)
            return out

        assert loop.run_until_complete(main())[2:] == EXPECTED_WORK
        a.send(b"after")
        loop.call_soon(signal.raise_signal, signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            loop.run_until_complete(asyncio.sleep(0.01))
        assert sorted(got, key=str) == [b"after", "sig"]
        assert loop_works(loop)
    finally:
        loop.close()
        a.close()
        b.close()


def test_child_closing_the_inherited_loop_leaves_the_parents_alone(loop_factory, loop_name):
    """The child closes its copy of a loop that was not running at the fork: the
    parent's loop still gets its fd events, signals and wake-ups. (ferroloop's close()
    deregisters the loop's fds; in a forked child the epoll instance is the parent's, so
    it must not.) A known difference: asyncio's close() unregisters its self-pipe from
    that shared epoll instance, so its parent loop no longer hears signals (nor
    call_soon_threadsafe wake-ups)."""
    loop = loop_factory()
    a, b = socket.socketpair()
    got = []
    try:
        loop.add_reader(b.fileno(), lambda: got.append(b.recv(100)))
        loop.add_signal_handler(signal.SIGUSR1, got.append, "sig")

        def child():
            loop.close()
            return loop.is_closed()

        assert in_child(child) is True
        assert not loop.is_closed()
        a.send(b"after")
        loop.call_soon(signal.raise_signal, signal.SIGUSR1)
        deadline = time.monotonic() + (0.5 if loop_name == "asyncio" else 5)
        while len(got) < 2 and time.monotonic() < deadline:
            loop.run_until_complete(asyncio.sleep(0.01))
        if loop_name == "asyncio":
            assert got == [b"after"]  # the signal byte sits in an fd epoll no longer watches
            return
        assert sorted(got, key=str) == [b"after", "sig"]
        assert loop_works(loop)
    finally:
        loop.close()
        a.close()
        b.close()


# asyncio resets the wakeup fd and the policy's loop in a forked child since 3.12
# (events.on_fork); ferroloop does it for its loops on 3.11 too.
stock_resets_at_fork = sys.version_info >= (3, 12)


def _skip_stock_311(loop_name):
    if loop_name == "asyncio" and not stock_resets_at_fork:
        pytest.skip("asyncio resets its state in a forked child only since 3.12")


def test_signal_in_the_child_does_not_reach_the_parent(loop_factory, loop_name):
    """CPython's TestFork.test_fork_signal_handling: the parent's loop handles SIGUSR1; a
    SIGUSR1 raised in the child (whose handler is still the loop's no-op) must not be
    written to the parent's signal socket."""
    _skip_stock_311(loop_name)
    loop = loop_factory()
    got = []
    try:
        loop.add_signal_handler(signal.SIGUSR1, got.append, "parent")

        def child():
            wakeup = signal.set_wakeup_fd(-1)
            signal.raise_signal(signal.SIGUSR1)
            return wakeup

        async def main():
            out = in_child(child)
            await asyncio.sleep(0.1)
            return out

        assert loop.run_until_complete(main()) == -1
        assert got == []
        # The parent's own signals still arrive.
        loop.call_soon(signal.raise_signal, signal.SIGUSR1)
        loop.run_until_complete(asyncio.sleep(0.05))
        assert got == ["parent"]
    finally:
        loop.close()


def test_signal_handlers_in_the_child(loop_factory):
    """The child installs its own handlers on a loop of its own: they run there, and the
    parent's handler for the same signal does not."""
    loop = loop_factory()
    got = []
    try:
        loop.add_signal_handler(signal.SIGUSR1, got.append, "parent")

        def child():
            async def main():
                lp = asyncio.get_running_loop()
                hits = []
                lp.add_signal_handler(signal.SIGUSR1, hits.append, "child")
                for _ in range(3):
                    os.kill(os.getpid(), signal.SIGUSR1)
                    await asyncio.sleep(0.02)
                lp.remove_signal_handler(signal.SIGUSR1)
                return hits, signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL

            with asyncio.Runner(loop_factory=loop_factory) as runner:
                out = runner.run(main())
            return out, signal.set_wakeup_fd(-1)

        async def main():
            out = in_child(child)
            await asyncio.sleep(0.1)
            return out

        assert loop.run_until_complete(main()) == ((["child"] * 3, True), -1)
        assert got == []
    finally:
        loop.close()


def test_policy_forgets_its_loop_in_the_child(loop_factory, loop_name):
    """CPython's TestFork.test_fork_not_share_event_loop: the policy's current loop is not
    the parent's in the child."""
    _skip_stock_311(loop_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if loop_name == "ferroloop":
            ferroloop.install()
        loop = asyncio.new_event_loop()
        assert type(loop) is type(loop_factory())
        asyncio.set_event_loop(loop)

    def child():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            lp = asyncio.get_event_loop_policy().get_event_loop()
        try:
            return lp is not loop, type(lp) is type(loop)
        finally:
            lp.close()

    try:
        assert in_child(child) == (True, True)
        assert asyncio.get_event_loop_policy().get_event_loop() is loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_child_resolves_names_after_the_parent_did(loop_factory):
    """ferroloop resolves names in a pool of native threads; a forked child has none of
    the parent's threads, so its lookups must start threads of its own."""
    loop = loop_factory()

    def child():
        async def main():
            lp = asyncio.get_running_loop()
            infos = await asyncio.wait_for(
                lp.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM), 10
            )
            return sorted({info[4][1] for info in infos})

        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main())

    async def main():
        await loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
        return in_child(child)

    try:
        assert loop.run_until_complete(main()) == [80]
    finally:
        loop.close()


def test_child_resolves_names_when_forked_while_a_resolver_thread_holds_the_pool():
    """A resolver thread holds the pool's lock briefly; a fork at that moment used to give
    the child a lock nobody would release, and its first lookup hung. ferroloop's
    before-fork hook waits for the lock, so the child starts with it free."""
    from ferroloop import _ferroloop

    def child():
        async def main():
            lp = asyncio.get_running_loop()
            infos = await asyncio.wait_for(
                lp.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM), 10
            )
            return sorted({info[4][1] for info in infos})

        with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
            return runner.run(main())

    _ferroloop._resolver_hold_lock(0.3)   # returns once the lock is held
    assert in_child(child, timeout=20) == [80]
