"""loop.getaddrinfo / loop.getnameinfo: socket.getaddrinfo's and socket.getnameinfo's exact
results and errors (asyncio runs those in its executor), on both loops."""

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
import time
import warnings

import pytest

import ferroloop
from conftest import run_with_timeout

# (args, kwargs) of getaddrinfo calls that need no network: literals, /etc/hosts,
# /etc/services, and the socket module's argument errors.
GAI_CASES = [
    (("127.0.0.1", 80), {}),
    (("127.0.0.1", 80), {"type": socket.SOCK_STREAM}),
    (("127.0.0.1", 80), {"type": socket.SOCK_DGRAM, "proto": socket.IPPROTO_UDP}),
    (("127.0.0.1", 80), {"family": socket.AF_INET, "flags": socket.AI_PASSIVE}),
    (("::1", 443), {}),
    (("::ffff:1.2.3.4", 80), {}),
    (("::1.2.3.4", 80), {}),  # C's text, not Rust's (::102:304)
    (("fe80::1%lo", 80), {}),
    ((None, 80), {}),
    ((None, 80), {"flags": socket.AI_PASSIVE}),
    ((None, None), {}),
    (("127.0.0.1", None), {}),
    (("127.0.0.1", "80"), {}),
    (("127.0.0.1", b"80"), {}),
    (("127.0.0.1", "080"), {}),
    ((b"127.0.0.1", 80), {}),
    ((b"127.0.0.1\0zzz", 80), {}),  # a C string: cut at the NUL
    (("127.0.0.1", "8\x000"), {}),
    (("127.0.0.1", 70000), {}),  # wraps as the C library makes it (4464)
    (("127.0.0.1", "65536"), {}),
    (("127.0.0.1", -1), {}),
    (("127.0.0.1", 80), {"family": socket.AF_INET6}),  # gaierror, no lookup
    (("127.0.0.1", 80), {"family": socket.AF_INET6, "flags": socket.AI_V4MAPPED}),
    (("127.0.0.1", 80), {"type": socket.SOCK_RAW}),
    (("127.0.0.1", 80), {"proto": 132}),
    (("127.0.0.1", 80), {"type": 99}),
    (("127.0.0.1", 80), {"family": 99}),
    (("127.0.0.1", 80), {"flags": socket.AI_CANONNAME}),
    (("127.1", 80), {}),
    (("localhost", 80), {}),
    (("localhost", "http"), {"type": socket.SOCK_STREAM}),
    (("localhost", 80), {"flags": socket.AI_NUMERICHOST}),  # gaierror, no lookup
    (("127.0.0.1", "no-such-service"), {}),
    # argument errors, as the socket module raises them
    ((1234, 80), {}),
    (("127.0.0.1", 1.5), {}),
    (("127.0.0.1", 2**63), {}),
    (("127.0.0.1", "\udcff"), {}),
    (("a..b", 80), {}),
    (("127.0.0.1", 80), {"family": 1.0}),
    (("127.0.0.1", 80), {"family": 2**40}),
]

GNI_CASES = [
    (("127.0.0.1", 80), 0),
    (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("::1", 80, 0, 0), 0),
    (("::1", 80), socket.NI_NUMERICHOST),
    (("::1", 80, 5, 0), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("fe80::1", 80, 0, 1), socket.NI_NUMERICHOST),
    (("127.0.0.1", 70000), socket.NI_NUMERICSERV),
    (("1.2.3", 80), socket.NI_NUMERICHOST),
    (("127.0.0.1", 80, 0, 0), 0),
    (("localhost", 80), 0),
    (["127.0.0.1", 80], 0),
    ((b"127.0.0.1", 80), 0),
    (("127.0.0.1", "x"), 0),
    (("127.0.0.1", 2**40), 0),
    (("::1", 80, 2**20), 0),
    (("::1", 80, 2**33), 0),
    (("127.0.0.1",), 0),
    (("127.0.0.1", 80), "x"),
]


def outcome(fn, *args, **kwargs):
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as e:
        return (type(e), e.args)


async def aoutcome(coro):
    try:
        return ("ok", await coro)
    except Exception as e:
        return (type(e), e.args)


def resolver_submits():
    return ferroloop._ferroloop._resolver_stats()[0]


def test_getaddrinfo_is_socket_getaddrinfo(loop):
    async def main():
        return [await aoutcome(loop.getaddrinfo(*a, **k)) for a, k in GAI_CASES]

    got = run_with_timeout(loop, main())
    for (args, kwargs), res in zip(GAI_CASES, got):
        assert res == outcome(socket.getaddrinfo, *args, **kwargs), (args, kwargs)


def test_getnameinfo_is_socket_getnameinfo(loop):
    async def main():
        return [await aoutcome(loop.getnameinfo(sa, fl)) for sa, fl in GNI_CASES]

    got = run_with_timeout(loop, main())
    for (sa, flags), res in zip(GNI_CASES, got):
        assert res == outcome(socket.getnameinfo, sa, flags), (sa, flags)


def test_lookups_in_debug_mode(loop):
    # anyio's suite runs its loops in debug mode. A lookup of ferroloop's resolver pool is
    # handed back from a native thread, where debug mode's source traceback of the handle
    # has no Python frame to start from: the lookup must complete all the same.
    loop.set_debug(True)

    async def main():
        return [await aoutcome(loop.getnameinfo(sa, fl)) for sa, fl in GNI_CASES] + [
            await aoutcome(loop.getaddrinfo(*a, **k)) for a, k in GAI_CASES[:12]
        ]

    got = run_with_timeout(loop, main(), timeout=20)
    want = [outcome(socket.getnameinfo, sa, fl) for sa, fl in GNI_CASES] + [
        outcome(socket.getaddrinfo, *a, **k) for a, k in GAI_CASES[:12]
    ]
    assert got == want


def test_results_are_socket_enums(loop):
    async def main():
        return await loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)

    infos = run_with_timeout(loop, main())
    assert infos
    for family, kind, proto, canon, addr in infos:
        assert type(family) is socket.AddressFamily
        assert type(kind) is socket.SocketKind
        assert type(proto) is int and type(canon) is str and type(addr) is tuple


def test_getaddrinfo_is_a_coroutine(loop):
    coro = loop.getaddrinfo("127.0.0.1", 80)
    assert asyncio.iscoroutine(coro)
    coro.close()
    coro = loop.getnameinfo(("127.0.0.1", 80))
    assert asyncio.iscoroutine(coro)
    coro.close()


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    def __init__(self):
        super().__init__(max_workers=2)
        self.submitted = 0

    def submit(self, fn, *args, **kwargs):
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


@pytest.mark.parametrize(
    "args, kwargs",
    [
        (("127.0.0.1", 8080), {}),
        (("::1", "443"), {"type": socket.SOCK_STREAM}),
        ((None, 0), {"flags": socket.AI_PASSIVE}),
        ((b"10.0.0.1", None), {"family": socket.AF_INET}),
    ],
)
def test_numeric_lookup_uses_no_thread(loop, loop_name, args, kwargs):
    executor = CountingExecutor()
    loop.set_default_executor(executor)
    before = resolver_submits()
    threads = threading.active_count()

    async def main():
        return await loop.getaddrinfo(*args, **kwargs)

    assert run_with_timeout(loop, main()) == socket.getaddrinfo(*args, **kwargs)
    if loop_name == "ferroloop":
        assert executor.submitted == 0
        assert resolver_submits() == before
        assert threading.active_count() <= threads  # (an earlier test's may end)
    else:
        assert executor.submitted == 1  # asyncio: always the executor
    executor.shutdown()


def test_numeric_getnameinfo_uses_no_thread(loop, loop_name):
    executor = CountingExecutor()
    loop.set_default_executor(executor)
    before = resolver_submits()
    flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV

    async def main():
        return await loop.getnameinfo(("::1", 80, 0, 0), flags)

    assert run_with_timeout(loop, main()) == ("::1", "80")
    if loop_name == "ferroloop":
        assert (executor.submitted, resolver_submits()) == (0, before)
    executor.shutdown()


def test_name_lookup_goes_to_the_resolver_pool_not_the_executor(loop, loop_name):
    executor = CountingExecutor()
    loop.set_default_executor(executor)
    before = resolver_submits()

    async def main():
        return await loop.getaddrinfo("localhost", "http", type=socket.SOCK_STREAM)

    assert run_with_timeout(loop, main()) == socket.getaddrinfo(
        "localhost", "http", type=socket.SOCK_STREAM
    )
    if loop_name == "ferroloop":
        assert executor.submitted == 0
        assert resolver_submits() == before + 1
        # bounded: never more than 4 resolver threads
        assert ferroloop._ferroloop._resolver_stats()[1] <= 4
    executor.shutdown()


def test_patched_getaddrinfo_is_honoured(loop, monkeypatch):
    calls = []
    fake = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.8.7", 1))]

    def patched(*args):
        calls.append((args, threading.current_thread() is threading.main_thread()))
        return fake

    monkeypatch.setattr(socket, "getaddrinfo", patched)

    async def main():
        return await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)

    assert run_with_timeout(loop, main()) is fake
    # called as asyncio calls it: positionally, in the executor (not the loop thread)
    assert calls == [(("127.0.0.1", 80, 0, socket.SOCK_STREAM, 0, 0), False)]


def test_patched_getnameinfo_is_honoured(loop, monkeypatch):
    calls = []

    def patched(*args):
        calls.append(args)
        return ("patched", "0")

    monkeypatch.setattr(socket, "getnameinfo", patched)

    async def main():
        return await loop.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST)

    assert run_with_timeout(loop, main()) == ("patched", "0")
    assert calls == [(("127.0.0.1", 80), socket.NI_NUMERICHOST)]


def test_debug_mode_logs_lookups_as_asyncio(loop, caplog):
    loop.set_debug(True)

    async def main():
        return await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)

    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        run_with_timeout(loop, main())
    msgs = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert "Get address info 127.0.0.1:80, type=<SocketKind.SOCK_STREAM: 1>" in msgs
    assert any(m.startswith("Getting address info 127.0.0.1:80, type=") for m in msgs)


def test_many_concurrent_lookups(loop):
    ports = list(range(1000, 1100))

    async def main():
        return await asyncio.gather(
            *(loop.getaddrinfo("localhost", p, type=socket.SOCK_STREAM) for p in ports)
        )

    results = run_with_timeout(loop, main(), timeout=30)
    assert results == [
        socket.getaddrinfo("localhost", p, type=socket.SOCK_STREAM) for p in ports
    ]


def test_lookups_from_several_loops_in_threads(loop_factory):
    out = {}

    def run(i):
        lp = loop_factory()

        async def main():
            return await asyncio.gather(*(lp.getaddrinfo("localhost", p) for p in range(20)))

        try:
            out[i] = lp.run_until_complete(main())
        finally:
            lp.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    expected = [socket.getaddrinfo("localhost", p) for p in range(20)]
    assert out == {i: expected for i in range(4)}


def test_cancelled_lookup(loop):
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))

    async def main():
        task = asyncio.ensure_future(loop.getaddrinfo("localhost", 80))
        await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the lookup's late outcome is dropped; the loop and the resolver go on
        for _ in range(20):
            await asyncio.sleep(0.005)
        return await loop.getaddrinfo("localhost", 81)

    assert run_with_timeout(loop, main()) == socket.getaddrinfo("localhost", 81)
    assert errors == []


def test_cancelled_patched_lookup(loop, monkeypatch):
    release = threading.Event()

    def slow(*args):
        release.wait(5)
        return []

    monkeypatch.setattr(socket, "getaddrinfo", slow)

    async def main():
        task = asyncio.ensure_future(loop.getaddrinfo("example.org", 80))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        return task.cancelled()

    assert run_with_timeout(loop, main())


def test_lookup_outlived_by_its_loop(loop_factory):
    lp = loop_factory()

    async def start():
        task = asyncio.ensure_future(lp.getaddrinfo("localhost", 80))
        task._log_destroy_pending = False
        await asyncio.sleep(0)
        return task

    task = lp.run_until_complete(start())
    assert not task.done()
    lp.close()  # the pending lookup finishes in its thread, into a closed loop
    lp2 = loop_factory()
    try:
        assert lp2.run_until_complete(lp2.getaddrinfo("localhost", 80)) == (
            socket.getaddrinfo("localhost", 80)
        )
    finally:
        lp2.close()


def test_closed_loop(loop):
    loop.close()
    for coro in (loop.getaddrinfo("127.0.0.1", 80), loop.getnameinfo(("127.0.0.1", 80))):
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            coro.send(None)


def test_cancelled_queued_lookups_are_not_resolved(loop, loop_name):
    # 50 lookups queued behind at most 4 resolver threads, all cancelled at once: those no
    # thread has started are dropped (asyncio's executor drops cancelled work items too).
    skipped = ferroloop._ferroloop._resolver_stats()[2]

    async def main():
        tasks = [asyncio.ensure_future(loop.getaddrinfo("localhost", p)) for p in range(50)]
        await asyncio.sleep(0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(50):
            await asyncio.sleep(0.01)
        return sum(t.cancelled() for t in tasks)

    assert run_with_timeout(loop, main()) > 0
    if loop_name == "ferroloop":
        assert ferroloop._ferroloop._resolver_stats()[2] > skipped


def test_after_the_default_executor_is_shut_down(loop):
    # asyncio runs lookups in the default executor: once it is shut down, they fail.
    async def main():
        await loop.shutdown_default_executor()
        out = []
        for coro in (
            loop.getaddrinfo("127.0.0.1", 80),
            loop.getaddrinfo("localhost", 80),
            loop.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
        ):
            out.append(await aoutcome(coro))
        return out

    err = (RuntimeError, ("Executor shutdown has been called",))
    assert run_with_timeout(loop, main()) == [err, err, err]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_lookup_in_a_forked_child(loop_factory):
    # The parent's resolver threads are not in the child: the child starts its own.
    lp = loop_factory()
    try:
        lp.run_until_complete(lp.getaddrinfo("localhost", 80))
    finally:
        lp.close()
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            child = loop_factory()
            infos = child.run_until_complete(
                asyncio.wait_for(child.getaddrinfo("localhost", 80), 10)
            )
            child.close()
            status = 0 if infos == socket.getaddrinfo("localhost", 80) else 2
        finally:
            os.write(w, bytes([status]))
            os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        got = f.read()
    _, code = os.waitpid(pid, 0)
    assert (got, os.waitstatus_to_exitcode(code)) == (b"\x00", 0)


def os_threads():
    """The names of the process's OS threads."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:  # ended meanwhile
            pass
    return sorted(names)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")
def test_lookup_threads_end_with_the_loop(loop_factory, loop_name):
    """A name lookup runs in threads (asyncio's default executor; ferroloop's resolver
    pool), which end when the loop closes: asyncio's close() shuts the executor down.
    ferroloop's idle resolver threads lived on for 10 s after it, so a process that did
    a lookup and then forked was still multi-threaded (on 3.12+ ``os.fork()`` warned
    "This process ... is multi-threaded, use of fork() may lead to deadlocks in the
    child" where asyncio's did not: uvloop's test_executors process pool, after its
    test_dns). Threads that other tests' loops left (a loop never closed keeps the
    resolver threads to their idle timeout) are counted in ``before``."""
    before = os_threads()
    resolvers_before = ferroloop._ferroloop._resolver_stats()[1]
    lp = loop_factory()
    try:
        infos = lp.run_until_complete(asyncio.wait_for(lp.getaddrinfo("localhost", 80), 10))
        assert infos == socket.getaddrinfo("localhost", 80)
    finally:
        lp.close()
    # asyncio's executor threads end just after close() (shutdown(wait=False)).
    for _ in range(100):
        if len(os_threads()) <= len(before):
            break
        time.sleep(0.01)
    assert len(os_threads()) <= len(before), (before, os_threads())
    if loop_name == "ferroloop":
        assert ferroloop._ferroloop._resolver_stats()[1] <= resolvers_before


def test_name_lookups_in_debug_mode(loop):
    """Debug mode: a lookup that needs the name service completes as without it.
    ferroloop's getnameinfo() of an address never completed: its resolver thread hands
    the outcome over with call_soon_threadsafe(), which in debug mode takes the caller's
    stack for the handle's source traceback, and a native thread has no Python frame
    (``sys._getframe()`` raised ValueError, and the outcome was dropped)."""
    loop.set_debug(True)

    async def main():
        return await asyncio.wait_for(
            asyncio.gather(
                loop.getnameinfo(("127.0.0.1", 80), 0),
                loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM),
            ),
            10,
        )

    names, infos = run_with_timeout(loop, main())
    assert names == socket.getnameinfo(("127.0.0.1", 80), 0)
    assert infos == socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
