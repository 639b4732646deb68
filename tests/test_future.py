"""ferroloop.Future: asyncio.Future's API, natively, as a subclass of the C asyncio.Future.

Behaviour is checked against asyncio's own Future on both loops (the ``future_cls`` param),
so asyncio stays the reference."""

import asyncio
import gc
import sys
import types
import weakref

import pytest

import ferroloop

FUTURE_CLASSES = {"asyncio.Future": asyncio.Future, "ferroloop.Future": ferroloop.Future}


@pytest.fixture(params=list(FUTURE_CLASSES))
def future_cls(request):
    return FUTURE_CLASSES[request.param]


def test_is_an_asyncio_future(loop):
    fut = ferroloop.Future(loop=loop)
    assert isinstance(fut, asyncio.Future)
    assert asyncio.isfuture(fut)
    assert issubclass(ferroloop.Future, asyncio.Future)
    assert fut.get_loop() is loop


def test_result_and_callbacks(loop, future_cls):
    fut = future_cls(loop=loop)
    seen = []
    fut.add_done_callback(lambda f: seen.append(("a", f.result())))
    fut.add_done_callback(lambda f: seen.append(("b", f.result())))
    assert not fut.done()
    with pytest.raises(asyncio.InvalidStateError):
        fut.result()
    fut.set_result(42)
    assert fut.done() and fut.result() == 42
    assert seen == []  # callbacks run through the loop, not inline
    loop.run_until_complete(asyncio.sleep(0))
    assert seen == [("a", 42), ("b", 42)]
    with pytest.raises(asyncio.InvalidStateError):
        fut.set_result(1)


def test_exception_and_cancel(loop, future_cls):
    fut = future_cls(loop=loop)
    fut.set_exception(ValueError)  # a class is instantiated
    assert isinstance(fut.exception(), ValueError)
    with pytest.raises(ValueError):
        fut.result()
    fut2 = future_cls(loop=loop)
    assert fut2.cancel(msg="stop here")
    assert fut2.cancelled() and not fut2.cancel()
    with pytest.raises(asyncio.CancelledError, match="stop here"):
        fut2.result()
    fut3 = future_cls(loop=loop)
    if sys.version_info >= (3, 13):
        # 3.13 wraps StopIteration in a RuntimeError (it cannot be raised into a frame).
        fut3.set_exception(StopIteration())
        assert isinstance(fut3.exception(), RuntimeError)
        assert isinstance(fut3.exception().__cause__, StopIteration)
    else:
        with pytest.raises(TypeError):
            fut3.set_exception(StopIteration())


def test_awaited_by_asyncio_task(loop, future_cls):
    async def main():
        fut = future_cls(loop=loop)
        loop.call_later(0.001, fut.set_result, "done")
        return await fut

    assert loop.run_until_complete(main()) == "done"


def test_generator_based_coroutine_yield_from(loop, future_cls):
    @types.coroutine
    def legacy(fut):
        value = yield from fut
        return value * 2

    fut = future_cls(loop=loop)
    loop.call_soon(fut.set_result, 21)
    assert loop.run_until_complete(legacy(fut)) == 42


def test_cancelling_the_awaiting_task_cancels_the_future(loop, future_cls):
    fut = future_cls(loop=loop)

    async def waiter():
        await fut

    task = loop.create_task(waiter())
    loop.run_until_complete(asyncio.sleep(0))
    task.cancel("bye")
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    assert fut.cancelled()


def test_works_with_asyncio_functions(loop, future_cls):
    async def main():
        futs = [future_cls(loop=loop) for _ in range(3)]
        for i, f in enumerate(futs):
            loop.call_soon(f.set_result, i)
        assert await asyncio.gather(*futs) == [0, 1, 2]
        f = future_cls(loop=loop)
        loop.call_soon(f.set_result, "x")
        assert await asyncio.wait_for(asyncio.shield(f), 1) == "x"
        g = future_cls(loop=loop)
        done, pending = await asyncio.wait([g], timeout=0.001)
        assert pending == {g}
        g.cancel()
        cf_result = await asyncio.wrap_future(loop.run_in_executor(None, pow, 2, 5))
        assert cf_result == 32

    loop.run_until_complete(main())


def test_python_subclass(loop):
    class MyFuture(ferroloop.Future):
        def set_result(self, value):
            super().set_result(value + 1)

    fut = MyFuture(loop=loop)
    fut.extra = "attrs work"
    fut.set_result(1)
    assert fut.result() == 2 and fut.extra == "attrs work"
    assert isinstance(fut, asyncio.Future)


def test_exception_never_retrieved_is_reported(loop, future_cls):
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))
    fut = future_cls(loop=loop)
    fut.set_exception(RuntimeError("lost"))
    del fut
    gc.collect()
    assert len(reports) == 1
    assert reports[0]["message"] == "Future exception was never retrieved"
    assert isinstance(reports[0]["exception"], RuntimeError)


def test_weakref_and_cycle_collected(loop, future_cls):
    fut = future_cls(loop=loop)
    fut.add_done_callback(lambda f, keep=fut: None)  # cycle through the callback
    ref = weakref.ref(fut)
    del fut
    gc.collect()
    assert ref() is None


def test_repr(loop, future_cls):
    fut = future_cls(loop=loop)
    assert repr(fut).endswith("pending>")
    fut.set_result(7)
    assert "finished result=7" in repr(fut)


def test_done_callback_added_after_completion_runs_in_current_context(loop, future_cls):
    """A callback added to an already-done future, without context=, runs in a copy of
    the current context (asyncio copies it; ferroloop's native scheduling must too)."""
    import contextvars

    var = contextvars.ContextVar("var", default="unset")
    fut = future_cls(loop=loop)
    fut.set_result(1)
    seen = []
    token = var.set("at-add")
    try:
        fut.add_done_callback(lambda f: seen.append((f.result(), var.get())))
    finally:
        var.reset(token)
    loop.run_until_complete(asyncio.sleep(0))
    assert seen == [(1, "at-add")]


# --- loop methods the native paths would skip -------------------------------------------
# On ferroloop's loop, done-callbacks and task steps go straight to the ready queue and the
# debug flag is read natively. That must stop as soon as those methods are replaced, on the
# instance or on the class, the way tests and instrumentation replace them.


def test_patched_call_soon_on_the_instance_is_used(loop):
    calls = []
    original = loop.call_soon

    def spy(callback, *args, context=None):
        calls.append(callback)
        return original(callback, *args, context=context)

    loop.call_soon = spy
    fut = loop.create_future()
    fut.add_done_callback(lambda f: None)
    fut.set_result(1)
    assert len(calls) == 1
    del loop.call_soon  # back to the class's method
    loop.run_until_complete(asyncio.sleep(0))

    async def child():
        return 2

    # Task steps go through the (patched) call_soon as well.
    loop.call_soon = spy
    calls.clear()
    task = loop.create_task(child())
    assert calls and loop.run_until_complete(task) == 2


def test_patched_call_soon_on_the_class_is_used(loop):
    calls = []
    cls = type(loop)
    original = cls.call_soon
    own = "call_soon" in vars(cls)

    def spy(self, callback, *args, context=None):
        calls.append(callback)
        return original(self, callback, *args, context=context)

    cls.call_soon = spy
    try:
        fut = loop.create_future()
        fut.add_done_callback(lambda f: None)
        fut.set_result(1)
        assert len(calls) == 1
    finally:
        if own:
            cls.call_soon = original
        else:
            del cls.call_soon
    assert cls.call_soon is original
    loop.run_until_complete(asyncio.sleep(0))


def test_call_soon_patched_on_the_class_after_native_scheduling_is_used(loop):
    """The native path remembers that the class's ``call_soon`` is ferroloop's own (by the
    class's version tag): patching the class later, and restoring it, must still be seen."""
    cls = type(loop)
    original = cls.call_soon
    own = "call_soon" in vars(cls)
    calls = []

    def complete_one():
        fut = loop.create_future()
        fut.add_done_callback(lambda f: None)
        fut.set_result(1)
        loop.run_until_complete(asyncio.sleep(0))

    for _ in range(3):  # natively scheduled: the answer is cached now
        complete_one()

    def spy(self, callback, *args, context=None):
        calls.append(callback)
        return original(self, callback, *args, context=context)

    cls.call_soon = spy
    try:
        complete_one()
        assert len(calls) >= 1
    finally:
        if own:
            cls.call_soon = original
        else:
            del cls.call_soon
    seen = len(calls)
    complete_one()
    assert len(calls) == seen


def test_patched_get_debug_is_used(loop):
    loop.get_debug = lambda: True
    fut = loop.create_future()
    assert fut._source_traceback, "Future() asks loop.get_debug() for a source traceback"
    loop.get_debug = lambda: False
    assert not loop.create_future()._source_traceback
