"""Differences from asyncio kept on purpose (README, "Known differences"), each pinned:
the assertion is asyncio's behaviour, a strict xfail on ferroloop, so that a change on
either side shows up."""

import asyncio

import pytest

import ferroloop


async def co():
    return 1


@pytest.mark.ferroloop_bug(
    "C asyncio.Future methods called unbound see the C base's untouched state "
    "(issue 7, item 7)"
)
def test_c_future_methods_called_unbound(loop):
    fut = loop.create_future()
    fut.set_result(7)
    assert asyncio.Future.done(fut)
    assert asyncio.Future.result(fut) == 7


@pytest.mark.ferroloop_bug(
    "C asyncio.Task methods called unbound see the C base's untouched state "
    "(issue 7, item 7)"
)
def test_c_task_methods_called_unbound(loop):
    task = loop.create_task(co())
    loop.run_until_complete(task)
    assert asyncio.Task.done(task)
    assert asyncio.Task.get_loop(task) is loop


def test_what_c_methods_called_unbound_see_on_ferroloop_objects():
    """What the difference is, exactly: the C part of a ferroloop Future/Task is never
    initialized, so the C methods behave as on an uninitialized C Future (they raise;
    `done()`/`cancelled()` are False). Our own methods are unaffected."""
    loop = ferroloop.new_event_loop()
    try:
        fut = loop.create_future()
        fut.set_result(7)
        assert fut.done() and fut.result() == 7
        assert asyncio.Future.done(fut) is False
        assert asyncio.Future.cancelled(fut) is False
        with pytest.raises(asyncio.InvalidStateError, match="Future object is not initialized"):
            asyncio.Future.result(fut)
        with pytest.raises(RuntimeError, match="Future object is not initialized"):
            asyncio.Future.get_loop(fut)
        with pytest.raises(RuntimeError, match="uninitialized Future object"):
            asyncio.Future.add_done_callback(fut, print)
        task = loop.create_task(co())
        assert asyncio.Task.done(task) is False
        with pytest.raises(RuntimeError, match="Future object is not initialized"):
            asyncio.Task.get_loop(task)
        assert loop.run_until_complete(task) == 1
    finally:
        loop.close()


@pytest.mark.ferroloop_bug(
    "debug mode: loop.create_future() has no Python frame of its own in the future's "
    "_source_traceback (asyncio's ends with its create_future frame)"
)
def test_future_source_traceback_ends_with_create_future(loop):
    loop.set_debug(True)
    fut = loop.create_future()
    assert fut._source_traceback[-1].name == "create_future"
