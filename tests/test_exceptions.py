"""The exception handler API, errors escaping callbacks, and debug-mode reports."""

import asyncio
import logging
import re
import sys
import time

import pytest

from conftest import run_briefly


class MyError(Exception):
    pass


class MyBaseException(BaseException):
    pass


def _raiser(exc):
    def cb():
        raise exc

    return cb


def test_get_set_exception_handler(loop):
    assert loop.get_exception_handler() is None

    def handler(lp, ctx):
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


def test_exception_handler_and_task_factory_attributes(loop):
    """asyncio's ``_exception_handler`` and ``_task_factory``, which code written before
    the getters existed reads to save and restore them."""
    assert loop._exception_handler is None and loop._task_factory is None

    def handler(lp, ctx):
        pass

    def factory(lp, coro, **kwargs):
        return asyncio.Task(coro, loop=lp, **kwargs)

    loop.set_exception_handler(handler)
    loop.set_task_factory(factory)
    assert loop._exception_handler is handler and loop._task_factory is factory
    loop.set_exception_handler(None)
    loop.set_task_factory(None)
    assert loop._exception_handler is None and loop._task_factory is None


def test_exception_in_callback_goes_to_handler(loop):
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append((lp, ctx)))
    exc = MyError("in callback")
    calls = []
    h = loop.call_soon(_raiser(exc))
    loop.call_soon(calls.append, "after")
    loop.call_later(0.001, calls.append, "timer")
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert calls == ["after", "timer"]  # the loop kept running
    assert len(reports) == 1
    lp, ctx = reports[0]
    assert lp is loop
    assert ctx["message"].startswith("Exception in callback ")
    assert ctx["exception"] is exc
    assert ctx["handle"] is h


def test_exception_in_timer_callback_goes_to_handler(loop):
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))
    h = loop.call_later(0.001, _raiser(MyError("timer")))
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert [type(c["exception"]) for c in reports] == [MyError]
    assert reports[0]["handle"] is h
    assert reports[0]["message"].startswith("Exception in callback ")


def test_base_exception_subclass_goes_to_handler(loop):
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))
    calls = []
    loop.call_soon(_raiser(MyBaseException()))
    loop.call_soon(calls.append, 1)
    run_briefly(loop)
    assert calls == [1]
    assert [type(c["exception"]) for c in reports] == [MyBaseException]


def test_call_exception_handler_directly(loop):
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))
    ctx = {"message": "custom", "extra": 1}
    loop.call_exception_handler(ctx)
    assert reports == [ctx]


def test_default_exception_handler_logs(loop, caplog):
    exc = MyError("logged")
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        loop.call_soon(_raiser(exc))
        run_briefly(loop)
    records = [r for r in caplog.records if r.name == "asyncio" and r.levelno == logging.ERROR]
    assert len(records) == 1
    rec = records[0]
    assert rec.getMessage().startswith("Exception in callback ")
    assert "handle: <" in rec.getMessage()
    assert rec.exc_info is not None and rec.exc_info[1] is exc


def test_default_exception_handler_direct_call(loop, caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.default_exception_handler({"message": "hello", "answer": 42})
        loop.default_exception_handler({})
    msgs = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert msgs[0] == "hello\nanswer: 42"
    assert msgs[1] == "Unhandled exception in event loop"


def test_call_exception_handler_without_custom_handler_logs(loop, caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        try:
            raise MyError("x")
        except MyError as e:
            loop.call_exception_handler({"message": "msg", "exception": e})
    rec = [r for r in caplog.records if r.name == "asyncio"][0]
    assert rec.getMessage() == "msg"
    assert isinstance(rec.exc_info[1], MyError)


def test_failing_custom_handler_is_reported(loop, caplog):
    def bad_handler(lp, ctx):
        raise ZeroDivisionError("handler failed")

    loop.set_exception_handler(bad_handler)
    calls = []
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(_raiser(MyError("original")))
        loop.call_soon(calls.append, "still running")
        run_briefly(loop)
    assert calls == ["still running"]
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    msg = records[0].getMessage()
    assert msg.startswith("Unhandled error in exception handler")
    assert "context: {" in msg and "Exception in callback" in msg
    assert isinstance(records[0].exc_info[1], ZeroDivisionError)


def test_failing_custom_handler_keeps_the_original_as_context(loop, caplog):
    """asyncio reports a callback's exception from inside `except BaseException as exc:`,
    so what the exception handler raises has the callback's exception as __context__."""
    def bad_handler(lp, ctx):
        raise ZeroDivisionError("handler failed")

    loop.set_exception_handler(bad_handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(_raiser(MyError("original")))
        loop.call_later(0, _raiser(MyError("timer")))
        run_briefly(loop)
    records = [r for r in caplog.records if r.name == "asyncio"]
    logged = [r.exc_info[1] for r in records]
    assert [type(e) for e in logged] == [ZeroDivisionError, ZeroDivisionError]
    assert [repr(e.__context__) for e in logged] == ["MyError('original')", "MyError('timer')"]
    assert [e.__cause__ for e in logged] == [None, None]


def test_failing_default_handler_after_failing_custom_handler_chains(loop, caplog):
    """The default handler failing while reporting the custom handler's failure: the
    logged exception's __context__ is the custom handler's, whose is the callback's."""
    def bad_handler(lp, ctx):
        raise ZeroDivisionError("handler failed")

    def bad_default(context):
        raise KeyError("default failed")

    loop.set_exception_handler(bad_handler)
    loop.default_exception_handler = bad_default
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(_raiser(MyError("original")))
        run_briefly(loop)
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    assert records[0].getMessage().startswith("Exception in default exception handler while")
    logged = records[0].exc_info[1]
    assert repr(logged) == "KeyError('default failed')"
    assert repr(logged.__context__) == "ZeroDivisionError('handler failed')"
    assert repr(logged.__context__.__context__) == "MyError('original')"


def test_call_exception_handler_restores_the_handled_exception(loop):
    """Reporting from inside an except block leaves sys.exc_info() as it was."""
    def bad_default(context):
        raise KeyError("default failed")

    loop.default_exception_handler = bad_default
    logging.getLogger("asyncio").disabled = True
    try:
        try:
            raise MyError("outer")
        except MyError:
            loop.call_exception_handler({"message": "m", "exception": MyError("x")})
            assert repr(sys.exc_info()[1]) == "MyError('outer')"
    finally:
        logging.getLogger("asyncio").disabled = False


def test_handler_exception_keyboard_interrupt_propagates(loop):
    def handler(lp, ctx):
        raise KeyboardInterrupt

    loop.set_exception_handler(handler)
    loop.call_soon(_raiser(MyError()))
    loop.call_later(5, loop.stop)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert not loop.is_running()


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_fatal_exception_propagates_and_loop_reusable(loop, exc_type):
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))
    calls = []
    loop.call_soon(calls.append, "before")
    loop.call_soon(_raiser(exc_type()))
    loop.call_soon(calls.append, "after")
    safety = loop.call_later(5, loop.stop)
    with pytest.raises(exc_type):
        loop.run_forever()
    assert calls == ["before"]
    assert not loop.is_running()
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    # The loop runs again; the callback queued after the failing one still runs.
    run_briefly(loop)
    assert calls == ["before", "after"]
    assert reports == []  # never handed to the exception handler
    safety.cancel()
    assert loop.run_until_complete(asyncio.sleep(0, result="again")) == "again"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_fatal_exception_from_coroutine(loop, exc_type):
    async def main():
        await asyncio.sleep(0)
        raise exc_type()

    with pytest.raises(exc_type):
        loop.run_until_complete(main())
    assert loop.run_until_complete(asyncio.sleep(0, result=1)) == 1


def test_task_exception_never_retrieved_is_reported(loop):
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))

    async def fail():
        raise MyError("unretrieved")

    async def main():
        asyncio.get_running_loop().create_task(fail())
        await asyncio.sleep(0.001)

    loop.run_until_complete(main())
    import gc

    gc.collect()
    assert any(
        c["message"] == "Task exception was never retrieved" and isinstance(c["exception"], MyError)
        for c in reports
    )


def test_debug_source_traceback_in_context(loop):
    loop.set_debug(True)
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))
    loop.call_soon(_raiser(MyError()))
    run_briefly(loop)
    assert len(reports) == 1
    tb = reports[0]["source_traceback"]
    assert any("test_debug_source_traceback_in_context" in frame.name for frame in tb)


def test_debug_slow_callback_warning(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    def slow():
        time.sleep(0.03)

    def fast():
        pass

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(slow)
        loop.call_soon(fast)
        run_briefly(loop)
    msgs = [r.getMessage() for r in caplog.records if r.name == "asyncio" and r.levelno == logging.WARNING]
    assert len(msgs) == 1, msgs
    assert re.match(r"^Executing <Handle .*slow.*> took \d+\.\d{3} seconds$", msgs[0]), msgs[0]


def test_no_slow_callback_warning_without_debug(loop, caplog):
    loop.slow_callback_duration = 0.001
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(time.sleep, 0.01)
        run_briefly(loop)
    assert [r for r in caplog.records if r.name == "asyncio"] == []


def test_debug_slow_task_step_warning(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    async def slow_task():
        time.sleep(0.03)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(slow_task())
    msgs = [r.getMessage() for r in caplog.records if r.name == "asyncio" and r.levelno == logging.WARNING]
    assert any(re.match(r"^Executing <Task .*slow_task.*> took \d+\.\d{3} seconds$", m) for m in msgs), msgs


def test_debug_mode_enables_coroutine_origin_tracking(loop):
    import sys

    loop.set_debug(True)
    before = sys.get_coroutine_origin_tracking_depth()

    async def main():
        return sys.get_coroutine_origin_tracking_depth()

    inside = loop.run_until_complete(main())
    assert inside > 0
    assert sys.get_coroutine_origin_tracking_depth() == before


def test_exception_handler_runs_in_handle_context(loop, loop_name):
    import contextvars
    import sys

    # asyncio calls the handler in the handle's context since 3.12 (Handle.get_context);
    # 3.11's calls it in the context current when the callback failed.
    expected = "handle-ctx" if sys.version_info >= (3, 12) else "default"
    var = contextvars.ContextVar("var", default="default")
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(var.get()))
    ctx = contextvars.Context()
    ctx.run(var.set, "handle-ctx")
    loop.call_soon(_raiser(MyError()), context=ctx)
    run_briefly(loop)
    assert seen == [expected]


def _frames(exc):
    import traceback

    return [f.name for f in traceback.extract_tb(exc.__traceback__)]


def test_reported_exceptions_keep_their_traceback(loop, caplog):
    """An exception handed to the exception handler has its ``__traceback__``, as in
    asyncio's ``except BaseException as exc:``: a callback's and a timer's (with the frame
    that raised it), a failing handler's ("Unhandled error in exception handler"), and
    run_in_executor's; the default handler's log record prints it. On 3.11 ferroloop
    handed over the bare exception object (PyO3 keeps a fetched error's traceback beside
    it there), so the record said only "ZeroDivisionError: ...", with no frames."""

    def raising_callback():
        1 / 0

    def raising_timer():
        raise MyError("timer")

    def raising_in_worker():
        raise MyError("worker")

    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))
    loop.call_soon(raising_callback)
    loop.call_later(0.001, raising_timer)
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert [type(c["exception"]) for c in reports] == [ZeroDivisionError, MyError]
    assert "raising_callback" in _frames(reports[0]["exception"])
    assert "raising_timer" in _frames(reports[1]["exception"])

    def failing_handler(lp, ctx):
        raise MyError("in handler")

    loop.set_exception_handler(failing_handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(raising_callback)
        run_briefly(loop)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("Unhandled error in exception handler") for m in messages)
    unhandled = [r for r in caplog.records if r.exc_info and r.exc_info[1].args == ("in handler",)]
    assert len(unhandled) == 1
    assert "failing_handler" in _frames(unhandled[0].exc_info[1])
    caplog.clear()

    loop.set_exception_handler(None)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(raising_callback)
        run_briefly(loop)
    assert len(caplog.records) == 1
    assert "in raising_callback\n" in caplog.text  # the traceback's frame line

    with pytest.raises(MyError) as info:
        loop.run_until_complete(loop.run_in_executor(None, raising_in_worker))
    assert "raising_in_worker" in _frames(info.value)
