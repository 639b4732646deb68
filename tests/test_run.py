"""run_forever / run_until_complete / stop / close and the errors around them."""

import asyncio

import pytest

from conftest import run_briefly

CLOSED = "Event loop is closed"


async def _value(v, delay=0):
    await asyncio.sleep(delay)
    return v


def test_run_until_complete_coroutine(loop):
    assert loop.run_until_complete(_value(42, 0.001)) == 42
    assert not loop.is_running()


def test_run_until_complete_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "done")
    assert loop.run_until_complete(fut) == "done"


def test_run_until_complete_task(loop):
    task = loop.create_task(_value("t"))
    assert loop.run_until_complete(task) == "t"


def test_run_until_complete_propagates_exception(loop):
    async def boom():
        await asyncio.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        loop.run_until_complete(boom())
    # Still usable.
    assert loop.run_until_complete(_value(1)) == 1


def test_run_until_complete_cancelled_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.cancel)
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(fut)


def test_run_until_complete_rejects_non_awaitable(loop):
    with pytest.raises(TypeError):
        loop.run_until_complete(123)


def test_run_until_complete_future_of_other_loop(loop, loop_factory):
    other = loop_factory()
    try:
        fut = other.create_future()
        with pytest.raises(ValueError, match="loop"):
            loop.run_until_complete(fut)
    finally:
        other.close()


def test_stopped_before_future_completed(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match=r"^Event loop stopped before Future completed\.$"):
        loop.run_until_complete(fut)
    assert not fut.done()
    # The loop can be reused and the future completed later.
    loop.call_soon(fut.set_result, 5)
    assert loop.run_until_complete(fut) == 5


def test_stop_inside_run_forever_runs_current_batch(loop):
    calls = []
    loop.call_soon(calls.append, 1)
    loop.call_soon(loop.stop)
    loop.call_soon(calls.append, 2)
    loop.run_forever()
    assert calls == [1, 2]


def test_run_forever_can_be_called_again(loop):
    calls = []
    for i in range(3):
        loop.call_soon(calls.append, i)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert calls == [0, 1, 2]


def test_run_forever_while_running(loop):
    errors = []

    def cb():
        try:
            loop.run_forever()
        except RuntimeError as e:
            errors.append(str(e))
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    assert errors == ["This event loop is already running"]
    assert not loop.is_running()


def test_run_until_complete_while_running(loop):
    errors = []

    def cb():
        fut = loop.create_future()
        try:
            loop.run_until_complete(fut)
        except RuntimeError as e:
            errors.append(str(e))
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    assert errors == ["This event loop is already running"]


@pytest.mark.parametrize("how", ["run_forever", "run_until_complete"])
def test_nested_other_loop(loop, loop_factory, how):
    # One attempt per outer run: on CPython 3.13.0 a failed nested run_forever() clears
    # the running loop in its cleanup (BaseEventLoop._run_forever_cleanup), so a second
    # attempt would really run the inner loop.
    other = loop_factory()
    errors = []

    def cb():
        try:
            if how == "run_forever":
                other.run_forever()
            else:
                other.run_until_complete(other.create_future())
        except RuntimeError as e:
            errors.append(str(e))
        loop.stop()

    try:
        loop.call_soon(cb)
        loop.run_forever()
    finally:
        other.close()
    assert errors == ["Cannot run the event loop while another loop is running"]


def test_running_loop_restored_after_run(loop):
    loop.run_until_complete(_value(None))
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_close_idempotent(loop):
    loop.close()
    loop.close()
    assert loop.is_closed()


def test_close_while_running(loop):
    errors = []

    def cb():
        try:
            loop.close()
        except RuntimeError as e:
            errors.append(str(e))
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    assert errors == ["Cannot close a running event loop"]
    assert not loop.is_closed()


async def _coro():
    pass


def _create_task_closing_coro(loop):
    coro = _coro()
    try:
        loop.create_task(coro)
    finally:
        coro.close()


def _closed_operations(loop):
    return {
        "run_forever": lambda: loop.run_forever(),
        "run_until_complete": lambda: loop.run_until_complete(loop.create_future()),
        "call_soon": lambda: loop.call_soon(print),
        "call_soon_threadsafe": lambda: loop.call_soon_threadsafe(print),
        "call_later": lambda: loop.call_later(1, print),
        "call_at": lambda: loop.call_at(loop.time() + 1, print),
        "create_task": lambda: _create_task_closing_coro(loop),
        "run_in_executor": lambda: loop.run_in_executor(None, print),
        "add_reader": lambda: loop.add_reader(0, print),
        "add_writer": lambda: loop.add_writer(1, print),
    }


@pytest.mark.parametrize("operation", list(_closed_operations(None)))
def test_operation_on_closed_loop(loop, operation):
    loop.close()
    op = _closed_operations(loop)[operation]
    with pytest.raises(RuntimeError, match=f"^{CLOSED}$"):
        op()


def test_create_future_works_on_closed_loop(loop):
    # asyncio does not check: a future only records its loop.
    loop.close()
    fut = loop.create_future()
    assert fut.get_loop() is loop


def test_remove_reader_on_closed_loop_returns_false(loop):
    loop.close()
    assert loop.remove_reader(0) is False
    assert loop.remove_writer(1) is False


def test_close_drops_pending_callbacks(loop):
    calls = []
    loop.call_soon(calls.append, 1)
    loop.call_later(0.001, calls.append, 2)
    loop.close()
    assert calls == []


def test_run_briefly_helper_really_runs(loop):
    calls = []
    loop.call_soon(calls.append, "x")
    run_briefly(loop)
    assert calls == ["x"]
