"""Futures, tasks, the task factory, and asyncio's high-level API running on the loop."""

import asyncio
import contextvars

import pytest

from conftest import run_with_timeout

var = contextvars.ContextVar("var", default="default")


def test_create_future(loop):
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    assert not fut.done()
    loop.call_soon(fut.set_result, 3)
    assert loop.run_until_complete(fut) == 3


def test_create_task(loop):
    async def coro(x):
        await asyncio.sleep(0)
        return x * 2

    task = loop.create_task(coro(21))
    assert isinstance(task, asyncio.Task)
    assert task.get_loop() is loop
    assert loop.run_until_complete(task) == 42


def test_create_task_name(loop):
    async def coro():
        return asyncio.current_task().get_name()

    task = loop.create_task(coro(), name="my-task")
    assert task.get_name() == "my-task"
    assert loop.run_until_complete(task) == "my-task"
    unnamed = loop.create_task(coro())
    assert loop.run_until_complete(unnamed).startswith("Task-")


def test_create_task_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "task-ctx")

    async def coro():
        seen = var.get()
        var.set("set-in-task")
        await asyncio.sleep(0)
        return seen, var.get()

    task = loop.create_task(coro(), context=ctx)
    assert loop.run_until_complete(task) == ("task-ctx", "set-in-task")
    assert ctx[var] == "set-in-task"
    assert var.get() == "default"


def test_create_task_copies_current_context(loop):
    async def coro():
        seen = var.get()
        var.set("inside")
        return seen

    token = var.set("outer")
    try:
        task = loop.create_task(coro())
        assert loop.run_until_complete(task) == "outer"
        assert var.get() == "outer"
    finally:
        var.reset(token)


def test_task_factory(loop):
    created = []

    def factory(lp, coro, **kwargs):
        task = asyncio.Task(coro, loop=lp, **kwargs)
        created.append((lp, task, kwargs))
        return task

    assert loop.get_task_factory() is None
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def coro():
        return var.get()

    task = loop.create_task(coro(), name="via-factory")
    assert task.get_name() == "via-factory"
    assert loop.run_until_complete(task) == "default"
    assert created[0][0] is loop and created[0][1] is task
    ctx = contextvars.Context()
    ctx.run(var.set, "ctx")
    assert loop.run_until_complete(loop.create_task(coro(), context=ctx)) == "ctx"
    assert created[1][2] == {"context": ctx}
    # Tasks created by asyncio helpers go through the factory too.
    assert loop.run_until_complete(_gather(coro)) == ["default"]
    assert len(created) == 4  # run_until_complete's task and gather's inner task
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None


async def _gather(coro_fn):
    return await asyncio.gather(coro_fn())


def test_task_factory_not_callable(loop):
    with pytest.raises(TypeError, match="task factory must be a callable or None"):
        loop.set_task_factory(1)
    assert loop.get_task_factory() is None


def test_task_cancel(loop):
    started = []

    async def sleeper():
        started.append(True)
        await asyncio.sleep(30)

    async def main():
        t = asyncio.get_running_loop().create_task(sleeper())
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        return t.cancelled()

    assert run_with_timeout(loop, main()) is True
    assert started == [True]


def test_sleep_durations(loop):
    async def main():
        lp = asyncio.get_running_loop()
        t0 = lp.time()
        await asyncio.sleep(0.02)
        return lp.time() - t0

    assert run_with_timeout(loop, main()) >= 0.02


def test_asyncio_timeout(loop):
    async def main():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(30)
        async with asyncio.timeout(5):
            await asyncio.sleep(0.001)
        return "ok"

    assert run_with_timeout(loop, main()) == "ok"


def test_taskgroup(loop):
    async def work(i):
        await asyncio.sleep(0.001 * (5 - i))
        return i

    async def failing():
        await asyncio.sleep(0.001)
        raise ValueError("fail")

    async def main():
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(work(i)) for i in range(5)]
        results = [t.result() for t in tasks]
        with pytest.raises(ExceptionGroup) as ei:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(failing())
                slow = tg.create_task(asyncio.sleep(30))
        assert slow.cancelled()
        assert [type(e) for e in ei.value.exceptions] == [ValueError]
        return results

    assert run_with_timeout(loop, main()) == [0, 1, 2, 3, 4]


def test_gather_wait_wait_for_shield_as_completed(loop):
    async def val(v, d):
        await asyncio.sleep(d)
        return v

    async def main():
        lp = asyncio.get_running_loop()
        out = {}
        out["gather"] = await asyncio.gather(val(1, 0.003), val(2, 0.001), val(3, 0))
        ex = await asyncio.gather(val(1, 0), asyncio.sleep(0, result=None), _raise(), return_exceptions=True)
        out["gather_exc"] = [type(x).__name__ for x in ex]
        tasks = [lp.create_task(val(i, 0.001 * i)) for i in range(3)]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        out["wait_first"] = sorted(t.result() for t in done)
        done, pending = await asyncio.wait(tasks)
        out["wait_all"] = (len(done), len(pending))
        out["wait_for"] = await asyncio.wait_for(val("wf", 0), 5)
        try:
            await asyncio.wait_for(val("late", 30), 0.01)
        except (asyncio.TimeoutError, TimeoutError):
            out["wait_for_timeout"] = True
        inner = lp.create_task(val("shielded", 0.01))
        outer = asyncio.shield(inner)
        outer.cancel()
        out["shield"] = await inner
        out["as_completed"] = [await f for f in asyncio.as_completed([val("b", 0.01), val("a", 0)])]
        return out

    out = run_with_timeout(loop, main())
    assert out == {
        "gather": [1, 2, 3],
        "gather_exc": ["int", "NoneType", "ZeroDivisionError"],
        "wait_first": [0],
        "wait_all": (3, 0),
        "wait_for": "wf",
        "wait_for_timeout": True,
        "shield": "shielded",
        "as_completed": ["a", "b"],
    }


async def _raise():
    return 1 / 0


def test_queue_and_event(loop):
    async def main():
        q = asyncio.Queue(maxsize=2)
        ev = asyncio.Event()
        got = []

        async def producer():
            for i in range(10):
                await q.put(i)
            await q.put(None)

        async def consumer():
            while (item := await q.get()) is not None:
                got.append(item)
            ev.set()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(consumer())
            tg.create_task(producer())
            await asyncio.wait_for(ev.wait(), 5)
        return got

    assert run_with_timeout(loop, main()) == list(range(10))


def test_deep_task_chain(loop):
    """100,000 tasks, each started by the previous one, which returns immediately."""
    n = 100_000

    async def main():
        lp = asyncio.get_running_loop()
        done = lp.create_future()
        count = [0]
        tasks = set()

        async def step(i):
            count[0] += 1
            if i == 0:
                done.set_result(count[0])
            else:
                t = lp.create_task(step(i - 1))
                tasks.add(t)
                t.add_done_callback(tasks.discard)

        lp.create_task(step(n))
        return await done

    assert run_with_timeout(loop, main(), timeout=50) == n + 1


@pytest.mark.skipif(not hasattr(asyncio, "eager_task_factory"), reason="Python 3.12+")
def test_eager_task_factory(loop):
    steps = []

    async def quick():
        steps.append("ran")
        return "quick"

    async def main():
        lp = asyncio.get_running_loop()
        lp.set_task_factory(asyncio.eager_task_factory)
        t = lp.create_task(quick())
        # Ran eagerly, to completion, inside create_task.
        assert steps == ["ran"] and t.done()
        return t.result()

    assert run_with_timeout(loop, main()) == "quick"


def test_deep_awaiting_task_chain(loop):
    """100,000 tasks, each creating the next and awaiting it: completion unwinds through
    100,000 wake-ups without recursion errors or crashes."""
    n = 100_000

    async def step(i):
        if i == 0:
            return 0
        t = asyncio.get_running_loop().create_task(step(i - 1))
        return (await t) + 1

    assert run_with_timeout(loop, step(n), timeout=50) == n
