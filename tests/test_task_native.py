"""ferroloop._ferroloop.Task: asyncio.Task's API, natively, as a subclass of the C asyncio.Task.

Behaviour is checked against asyncio's own Task on both loops (the ``task_cls`` param), so
asyncio stays the reference. CPython's own Task tests run on it through the mirror classes of
tests/cpython/run.py (test_tasks, test_eager_task_factory)."""

import asyncio
import contextvars
import gc
import sys

import pytest

from ferroloop import _ferroloop

TASK_CLASSES = {"asyncio.Task": asyncio.Task, "ferroloop.Task": _ferroloop.Task}


@pytest.fixture(params=list(TASK_CLASSES))
def task_cls(request):
    return TASK_CLASSES[request.param]


def test_is_an_asyncio_task(loop):
    async def coro():
        return 1

    t = _ferroloop.Task(coro(), loop=loop)
    assert isinstance(t, asyncio.Task) and isinstance(t, asyncio.Future)
    assert asyncio.isfuture(t)
    assert loop.run_until_complete(t) == 1


def test_result_exception_and_registration(loop, task_cls):
    seen = {}

    async def child(x):
        seen["current"] = asyncio.current_task()
        seen["all"] = asyncio.all_tasks()
        await asyncio.sleep(0)
        if x < 0:
            raise ValueError(x)
        return x * 2

    async def main():
        t = task_cls(child(21), loop=loop)
        assert await t == 42
        assert seen["current"] is t and t in seen["all"]
        bad = task_cls(child(-1), loop=loop)
        with pytest.raises(ValueError):
            await bad
        assert isinstance(bad.exception(), ValueError)

    loop.run_until_complete(task_cls(main(), loop=loop))


def test_cancel_with_message_and_uncancel(loop, task_cls):
    async def main():
        t = task_cls(asyncio.sleep(10), loop=loop)
        await asyncio.sleep(0)
        assert t.cancel("bye") and t.cancelling() == 1
        with pytest.raises(asyncio.CancelledError) as info:
            await t
        assert info.value.args == ("bye",)
        assert t.cancelled() and t.uncancel() == 0

    loop.run_until_complete(task_cls(main(), loop=loop))


def test_names_context_and_stack(loop, task_cls):
    var = contextvars.ContextVar("var", default="unset")

    async def coro():
        return var.get()

    ctx = contextvars.copy_context()
    ctx.run(var.set, "in-ctx")
    t = task_cls(coro(), loop=loop, name=123, context=ctx)
    assert t.get_name() == "123"
    t.set_name("renamed")
    assert "renamed" in repr(t)
    assert t.get_coro() is not None and isinstance(t.get_stack(), list)
    assert loop.run_until_complete(t) == "in-ctx"
    unnamed = task_cls(coro(), loop=loop)
    assert unnamed.get_name().startswith("Task-")
    loop.run_until_complete(unnamed)


def test_bad_yields_and_self_await(loop, task_cls):
    class Bad:
        def __await__(self):
            yield "not a future"

    async def bad():
        await Bad()

    async def self_await():
        await asyncio.sleep(0)
        await holder[0]

    holder = []
    with pytest.raises(RuntimeError, match="bad yield"):
        loop.run_until_complete(task_cls(bad(), loop=loop))
    holder.append(task_cls(self_await(), loop=loop))
    with pytest.raises(RuntimeError, match="await on itself"):
        loop.run_until_complete(holder[0])


def test_rejects_non_coroutines(loop, task_cls):
    with pytest.raises(TypeError, match="a coroutine was expected"):
        task_cls(42, loop=loop)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12+")
def test_eager_start(loop, task_cls):
    async def quick():
        return "now"

    async def main():
        t = task_cls(quick(), loop=loop, eager_start=True)
        assert t.done() and t.result() == "now"
        # (the C Task's get_coro() crashes here before 3.12.5: CPython gh-122332)
        if task_cls is _ferroloop.Task or sys.version_info >= (3, 12, 5):
            assert t.get_coro() is None

    loop.run_until_complete(task_cls(main(), loop=loop))


def test_destroyed_pending_is_reported(loop, task_cls):
    messages = []
    loop.set_exception_handler(lambda _loop, ctx: messages.append(ctx["message"]))

    async def forever():
        await loop.create_future()

    t = task_cls(forever(), loop=loop)
    loop.run_until_complete(asyncio.sleep(0))
    del t
    gc.collect()
    assert "Task was destroyed but it is pending!" in messages


def test_long_chain_does_not_recurse(loop):
    async def chain(n):
        if n == 0:
            return 0
        return 1 + await _ferroloop.Task(chain(n - 1), loop=loop)

    assert loop.run_until_complete(_ferroloop.Task(chain(20000), loop=loop)) == 20000


@pytest.mark.parametrize("fut_cls", [asyncio.Future, _ferroloop.Future], ids=["asyncio.Future", "ferroloop.Future"])
def test_wakeup_is_a_visible_removable_callback(loop, task_cls, fut_cls):
    # On ferroloop's loop, a ferroloop Task awaiting a ferroloop Future registers its
    # wake-up natively; Python must still see (and be able to remove or re-add) the bound
    # task_wakeup builtin, as with the C Task.
    var = contextvars.ContextVar("var", default=None)
    fut = fut_cls(loop=loop)

    async def waiter():
        var.set("mine")
        r = await fut
        return r, var.get()

    t = task_cls(waiter(), loop=loop)
    loop.run_until_complete(asyncio.sleep(0))
    [(cb, ctx)] = fut._callbacks
    assert cb.__self__ is t and cb.__name__ == "task_wakeup"
    assert cb == fut._callbacks[0][0]
    assert isinstance(ctx, contextvars.Context)
    assert fut.remove_done_callback(cb) == 1
    assert not fut._callbacks
    fut.add_done_callback(cb, context=ctx)
    fut.add_done_callback(cb, context=ctx)  # the second wake-up finds the task done
    errors = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    fut.set_result(7)
    assert loop.run_until_complete(t) == (7, "mine")
    loop.run_until_complete(asyncio.sleep(0))
    assert len(errors) == 1, errors
    assert errors[0]["message"].startswith("Exception in callback")
    assert "task_wakeup" in errors[0]["message"]
    assert isinstance(errors[0]["exception"], asyncio.InvalidStateError)


@pytest.mark.parametrize("fut_cls", [asyncio.Future, _ferroloop.Future], ids=["asyncio.Future", "ferroloop.Future"])
def test_wakeup_runs_in_the_task_context(loop, task_cls, fut_cls):
    var = contextvars.ContextVar("var", default="outer")

    async def child(fut):
        var.set("child")
        await fut
        return var.get()

    async def main():
        fut = fut_cls(loop=loop)
        t = task_cls(child(fut), loop=loop)
        await asyncio.sleep(0)
        loop.call_soon(fut.set_result, None)
        assert await t == "child"
        assert var.get() == "outer"
        t2 = task_cls(child(fut_cls(loop=loop)), loop=loop)
        await asyncio.sleep(0)
        t2.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t2

    loop.run_until_complete(task_cls(main(), loop=loop))


def _task_weakset():
    """asyncio's registry of tasks, the WeakSet behind all_tasks()."""
    import _asyncio

    registry = getattr(_asyncio, "_scheduled_tasks", None)
    return _asyncio._all_tasks if registry is None else registry


def test_registry_holds_pending_tasks_only_while_needed(loop, task_cls):
    # ferroloop takes a task out of asyncio's registry when it finishes (all_tasks() skips
    # done tasks either way); a task destroyed while pending is removed by the WeakSet's
    # own callback. Either way the registry does not grow with finished work.
    registry = _task_weakset()
    gc.collect()
    before = len(registry)

    async def child(i):
        await asyncio.sleep(0)
        return i

    async def main():
        tasks = [task_cls(child(i), loop=loop) for i in range(200)]
        assert set(tasks) <= asyncio.all_tasks()
        assert sum(await asyncio.gather(*tasks)) == sum(range(200))
        assert not set(tasks) & asyncio.all_tasks()
        return tasks

    tasks = loop.run_until_complete(task_cls(main(), loop=loop))
    assert all(t.done() for t in tasks)
    del tasks
    gc.collect()
    assert len(registry) == before

    async def forever():
        await loop.create_future()

    pending = [task_cls(forever(), loop=loop) for _ in range(50)]
    loop.run_until_complete(asyncio.sleep(0))
    assert len(registry) == before + 50
    loop.set_exception_handler(lambda *_: None)  # "destroyed but pending" reports
    del pending
    gc.collect()
    assert len(registry) == before


def test_registry_defers_removals_while_iterated(loop, task_cls):
    # A task that finishes while another thread iterates the registry (as all_tasks() does)
    # must not change the set's size under the iterator.
    registry = _task_weakset()

    async def child():
        await asyncio.sleep(0)

    async def main():
        tasks = [task_cls(child(), loop=loop) for _ in range(20)]
        await asyncio.sleep(0)
        it = iter(registry)  # an open iteration, like a paused list(all_tasks)
        first = next(it)
        await asyncio.gather(*tasks)
        rest = list(it)  # no "Set changed size during iteration"
        assert first is not None and len(rest) >= 0
        del it
        assert not set(tasks) & asyncio.all_tasks()
        if task_cls is _ferroloop.Task:
            # The removals deferred during the iteration were committed when it ended.
            assert not set(tasks) & set(registry)

    loop.run_until_complete(task_cls(main(), loop=loop))


def test_default_names_count_up(loop, task_cls):
    async def noop():
        pass

    tasks = [task_cls(noop(), loop=loop) for _ in range(3)]
    numbers = [int(t.get_name().removeprefix("Task-")) for t in tasks]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    assert tasks[0].get_name().startswith("Task-")
    loop.run_until_complete(asyncio.gather(*tasks))


def test_step_refuses_while_another_task_is_current(loop, task_cls):
    errors = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    other = object()

    async def child():
        return 1

    t = task_cls(child(), loop=loop)
    asyncio.tasks._enter_task(loop, other)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert [type(e["exception"]) for e in errors] == [RuntimeError]
    assert "Cannot enter into task" in str(errors[0]["exception"])
    assert asyncio.tasks._current_tasks.get(loop) is other  # left in place
    asyncio.tasks._leave_task(loop, other)
    assert not t.done()  # its step was refused (and is lost, as with the C Task)
    t._log_destroy_pending = False
    t.get_coro().close()


def test_leaving_checks_the_current_task(loop, task_cls):
    errors = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    other = object()

    async def swapper():
        me = asyncio.current_task()
        asyncio.tasks._leave_task(loop, me)
        asyncio.tasks._enter_task(loop, other)
        return 5

    t = task_cls(swapper(), loop=loop)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert t.done() and t.result() == 5
    assert [type(e["exception"]) for e in errors] == [RuntimeError]
    assert "does not match the current task" in str(errors[0]["exception"])
    assert asyncio.tasks._current_tasks.get(loop) is other  # put back
    asyncio.tasks._leave_task(loop, other)


def test_destroyed_pending_task_leaves_all_tasks_even_if_kept(loop, task_cls):
    # The exception handler keeps the dying task (resurrecting it); it must still be gone
    # from all_tasks(), as with the C Task, whose weak reference the GC clears first.
    kept = []
    loop.set_exception_handler(lambda _loop, ctx: kept.append(ctx.get("task")))

    async def kill_me():
        await loop.create_future()  # only the future's callback references the task

    t = task_cls(kill_me(), loop=loop)
    assert asyncio.all_tasks(loop) == {t}
    loop.run_until_complete(asyncio.sleep(0))
    del t
    gc.collect()
    assert kept and kept[0] is not None and not kept[0].done()
    assert asyncio.all_tasks(loop) == set()
