"""Loops running in several threads at once, talking to each other."""

import asyncio
import threading


def _start_loop_thread(factory):
    ready = threading.Event()
    box = {}

    def main():
        lp = factory()
        box["loop"] = lp
        lp.call_soon(ready.set)
        lp.run_forever()
        box["stopped"] = True

    th = threading.Thread(target=main)
    th.start()
    assert ready.wait(10)
    return box, th


def _stop(box, th):
    box["loop"].call_soon_threadsafe(box["loop"].stop)
    th.join(10)
    assert not th.is_alive()
    box["loop"].close()


def test_loop_in_thread_runs_coroutines(loop_factory):
    box, th = _start_loop_thread(loop_factory)
    try:
        async def work(x):
            await asyncio.sleep(0.001)
            return threading.get_ident(), x * 2

        results = [asyncio.run_coroutine_threadsafe(work(i), box["loop"]).result(10) for i in range(20)]
    finally:
        _stop(box, th)
    assert [r[1] for r in results] == [i * 2 for i in range(20)]
    assert {r[0] for r in results} == {th.ident}
    assert box["stopped"]


def test_several_loops_ping_pong(loop_factory):
    """Four loops in four threads bounce a counter around through
    run_coroutine_threadsafe; each hop runs on the expected loop."""
    threads = [_start_loop_thread(loop_factory) for _ in range(4)]
    loops = [box["loop"] for box, _ in threads]
    hops = []
    done = threading.Event()

    async def hop(n, i):
        assert asyncio.get_running_loop() is loops[i]
        hops.append(i)
        if n == 0:
            done.set()
            return
        nxt = (i + 1) % len(loops)
        asyncio.run_coroutine_threadsafe(hop(n - 1, nxt), loops[nxt])

    try:
        asyncio.run_coroutine_threadsafe(hop(400, 0), loops[0])
        assert done.wait(20)
    finally:
        for box, th in threads:
            _stop(box, th)
    assert hops == [i % 4 for i in range(401)]


def test_run_in_non_main_thread(loop_factory):
    """asyncio.Runner in a worker thread (no SIGINT handling there) works."""
    out = []

    async def main():
        await asyncio.sleep(0.001)
        return type(asyncio.get_running_loop())

    def worker():
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            out.append(runner.run(main()))

    th = threading.Thread(target=worker)
    th.start()
    th.join(10)
    probe = loop_factory()
    probe.close()
    assert out == [type(probe)]
