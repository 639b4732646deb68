"""run_in_executor, the default executor, and asyncio's thread helpers."""

import asyncio
import concurrent.futures
import multiprocessing
import sys
import threading
import time

import pytest

from conftest import run_with_timeout


def square(x):
    """Module-level so that a process pool can pickle it."""
    return x * x


def _thread_name():
    return threading.current_thread().name


def test_run_in_executor_default(loop):
    async def main():
        lp = asyncio.get_running_loop()
        fut = lp.run_in_executor(None, square, 7)
        assert isinstance(fut, asyncio.Future)
        name = await lp.run_in_executor(None, _thread_name)
        return await fut, name

    result, name = run_with_timeout(loop, main())
    assert result == 49
    assert name.startswith("asyncio")
    assert name != threading.current_thread().name


def test_run_in_executor_exception(loop):
    async def main():
        return await asyncio.get_running_loop().run_in_executor(None, square, "x")

    with pytest.raises(TypeError):
        run_with_timeout(loop, main())


def test_run_in_executor_thread_pool(loop):
    with concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="mine") as ex:

        async def main():
            lp = asyncio.get_running_loop()
            results = await asyncio.gather(*(lp.run_in_executor(ex, square, i) for i in range(10)))
            return results, await lp.run_in_executor(ex, _thread_name)

        results, name = run_with_timeout(loop, main())
    assert results == [i * i for i in range(10)]
    assert name.startswith("mine")


def test_run_in_executor_process_pool(loop):
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as ex:

        async def main():
            lp = asyncio.get_running_loop()
            return await asyncio.gather(lp.run_in_executor(ex, square, 3), lp.run_in_executor(ex, square, 4))

        assert run_with_timeout(loop, main(), timeout=30) == [9, 16]


def test_run_in_executor_concurrency(loop):
    """The loop stays responsive while executor jobs block."""

    async def main():
        lp = asyncio.get_running_loop()
        ticks = []

        async def ticker():
            for _ in range(5):
                ticks.append(lp.time())
                await asyncio.sleep(0.01)

        t0 = lp.time()
        await asyncio.gather(lp.run_in_executor(None, time.sleep, 0.1), ticker())
        return ticks, t0

    ticks, t0 = run_with_timeout(loop, main())
    assert len(ticks) == 5
    assert ticks[-1] - t0 < 0.1  # ticked while the executor job was sleeping


def test_set_default_executor(loop):
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="custom-default")
    loop.set_default_executor(ex)

    async def main():
        return await asyncio.get_running_loop().run_in_executor(None, _thread_name)

    try:
        assert run_with_timeout(loop, main()).startswith("custom-default")
    finally:
        ex.shutdown(wait=True)


def test_shutdown_default_executor(loop):
    async def main():
        lp = asyncio.get_running_loop()
        await lp.run_in_executor(None, square, 2)
        threads_before = {t for t in threading.enumerate() if t.name.startswith("asyncio")}
        await lp.shutdown_default_executor()
        alive = [t for t in threads_before if t.is_alive()]
        return threads_before, alive

    threads_before, alive = run_with_timeout(loop, main())
    assert threads_before  # the default executor had started a thread
    assert alive == []  # shutdown_default_executor joined them
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, square, 1)


def test_shutdown_default_executor_without_executor(loop):
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, square, 1)


def test_run_in_explicit_executor_after_default_shutdown(loop):
    loop.run_until_complete(loop.shutdown_default_executor())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex:
        fut = loop.run_in_executor(ex, square, 5)
        assert loop.run_until_complete(fut) == 25


def test_wrap_future(loop):
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex:
        cf = ex.submit(lambda: (time.sleep(0.02), "wrapped")[1])

        async def main():
            return await asyncio.wrap_future(cf)

        assert run_with_timeout(loop, main()) == "wrapped"


def test_wrap_future_completed_from_thread(loop):
    cf = concurrent.futures.Future()

    async def main():
        fut = asyncio.wrap_future(cf, loop=asyncio.get_running_loop())
        threading.Thread(target=lambda: (time.sleep(0.02), cf.set_result("from thread"))).start()
        return await fut

    assert run_with_timeout(loop, main()) == "from thread"


def test_run_coroutine_threadsafe(loop):
    results = []

    async def work(x):
        await asyncio.sleep(0.001)
        return asyncio.get_running_loop(), x + 1

    async def main():
        lp = asyncio.get_running_loop()
        done = asyncio.Event()

        def thread_main():
            try:
                cf = asyncio.run_coroutine_threadsafe(work(41), lp)
                results.append(cf.result(timeout=5))
            finally:
                lp.call_soon_threadsafe(done.set)

        threading.Thread(target=thread_main).start()
        await done.wait()

    run_with_timeout(loop, main())
    assert results == [(loop, 42)]


def test_run_coroutine_threadsafe_cancel(loop):
    cancelled = []

    async def forever():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main():
        lp = asyncio.get_running_loop()
        out = lp.create_future()

        def thread_main():
            cf = asyncio.run_coroutine_threadsafe(forever(), lp)
            time.sleep(0.02)
            cf.cancel()
            try:
                cf.result(timeout=5)
            except concurrent.futures.CancelledError:
                lp.call_soon_threadsafe(out.set_result, "cancelled")

        threading.Thread(target=thread_main).start()
        return await out

    assert run_with_timeout(loop, main()) == "cancelled"
    assert cancelled == [True]


def test_to_thread(loop):
    async def main():
        name = await asyncio.to_thread(_thread_name)
        value = await asyncio.to_thread(square, 9)
        return name, value

    name, value = run_with_timeout(loop, main())
    assert name != threading.current_thread().name
    assert value == 81


def test_close_shuts_default_executor_down(loop):
    loop.run_until_complete(loop.run_in_executor(None, square, 1))
    ex = loop._default_executor
    assert ex is not None
    loop.close()
    assert ex._shutdown


@pytest.mark.skipif(__import__("sys").version_info < (3, 12), reason="timeout= is 3.12+")
def test_shutdown_default_executor_timeout(loop, loop_name):
    if loop_name == "asyncio" and sys.version_info[:3] < (3, 12, 4) and sys.version_info >= (3, 12):
        pytest.skip("early 3.12 asyncio awaits the executor before applying the timeout")
    release = threading.Event()

    async def main():
        lp = asyncio.get_running_loop()
        lp.run_in_executor(None, release.wait, 5)
        await asyncio.sleep(0.01)
        with pytest.warns(RuntimeWarning, match="did not finish"):
            await lp.shutdown_default_executor(timeout=0.05)

    try:
        run_with_timeout(loop, main())
    finally:
        release.set()
