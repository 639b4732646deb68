"""Wrong arguments and wrong threads: the errors asyncio raises, with its messages."""

import asyncio
import gc
import signal
import sys
import threading
import warnings

import pytest


async def _coro_fn():
    pass


def _schedule(loop, method, callback):
    if method == "call_soon":
        return loop.call_soon(callback)
    if method == "call_soon_threadsafe":
        return loop.call_soon_threadsafe(callback)
    if method == "call_later":
        return loop.call_later(1, callback)
    if method == "call_at":
        return loop.call_at(loop.time() + 1, callback)
    raise AssertionError(method)


# asyncio's call_later delegates to call_at, so its messages name call_at(): see
# BaseEventLoop.call_later/call_at/_check_callback in Lib/asyncio/base_events.py.
ASYNCIO_NAME = {
    "call_soon": "call_soon",
    "call_soon_threadsafe": "call_soon_threadsafe",
    "call_later": "call_at",
    "call_at": "call_at",
}
METHODS = list(ASYNCIO_NAME)


@pytest.mark.parametrize("method", METHODS)
def test_debug_non_callable(loop, method):
    loop.set_debug(True)
    with pytest.raises(TypeError, match=r"a callable object was expected by \w+\(\), got 1$"):
        _schedule(loop, method, 1)


@pytest.mark.parametrize("method", METHODS)
def test_debug_coroutine_object(loop, method):
    loop.set_debug(True)
    coro = _coro_fn()
    try:
        with pytest.raises(TypeError, match=r"^coroutines cannot be used with \w+\(\)$"):
            _schedule(loop, method, coro)
    finally:
        coro.close()


@pytest.mark.parametrize("method", METHODS)
def test_debug_coroutine_function(loop, method):
    loop.set_debug(True)
    with pytest.raises(TypeError, match=r"^coroutines cannot be used with \w+\(\)$"):
        _schedule(loop, method, _coro_fn)


@pytest.mark.parametrize("method", ["call_later"])
def test_debug_call_later_message_names_call_at(loop, method):
    loop.set_debug(True)
    with pytest.raises(TypeError) as ei:
        _schedule(loop, method, 1)
    assert str(ei.value) == "a callable object was expected by call_at(), got 1"
    with pytest.raises(TypeError) as ei:
        _schedule(loop, method, _coro_fn)
    assert str(ei.value) == "coroutines cannot be used with call_at()"


def _schedule_now(loop, method, callback, *args):
    if method == "call_later":
        return loop.call_later(0, callback, *args)
    if method == "call_at":
        return loop.call_at(loop.time(), callback, *args)
    return getattr(loop, method)(callback, *args)


@pytest.mark.parametrize("method", METHODS)
def test_no_callback_check_without_debug(loop, method):
    """asyncio's _check_callback runs in debug mode only: otherwise a non-callable or a
    coroutine object is accepted, fails when it runs and is reported through the
    exception handler; the callbacks after it still run."""
    errors = []
    ran = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    coro = _coro_fn()
    try:
        h1 = _schedule_now(loop, method, 42, "a")
        h2 = _schedule_now(loop, method, coro)
        _schedule_now(loop, method, ran.append, "after")
        loop.run_until_complete(asyncio.sleep(0.01))
    finally:
        coro.close()
    assert ran == ["after"]
    # 3.13 shows a callback's arguments in debug mode only (format_helpers, debug=).
    args = "()" if sys.version_info >= (3, 13) else "('a')"
    assert [c["message"] for c in errors] == [
        f"Exception in callback 42{args}",
        "Exception in callback _coro_fn()",
    ]
    assert [c["handle"] for c in errors] == [h1, h2]
    assert [str(c["exception"]) for c in errors] == [
        "'int' object is not callable",
        "'coroutine' object is not callable",
    ]


@pytest.mark.parametrize("method", METHODS)
def test_coroutine_function_accepted_without_debug(loop, method):
    """Outside debug mode a coroutine function is called like any callable: its
    coroutine is never awaited (asyncio warns about that, reports nothing)."""
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _schedule_now(loop, method, _coro_fn)
        loop.run_until_complete(asyncio.sleep(0.01))
        gc.collect()
    assert errors == []
    assert any("was never awaited" in str(w.message) for w in caught)


def test_handle_repr_with_none_callback(loop):
    """asyncio's Handle repr leaves a None callback out."""
    h = loop.call_soon(None)
    assert repr(h) == "<Handle>"
    h.cancel()
    assert repr(h) == "<Handle cancelled>"


def test_bad_done_callback_does_not_lose_the_others(loop):
    """The issue's reproducer: a C asyncio.Future schedules its done-callbacks with
    loop.call_soon; a non-callable one is reported when it runs, the next still runs and
    the awaiting task gets the result."""
    errors = []
    out = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx["message"]))

    async def main():
        f = asyncio.Future(loop=loop)
        f.add_done_callback(42)
        f.add_done_callback(lambda _: out.append("cb ran"))
        loop.call_soon(f.set_result, "x")
        out.append(await asyncio.wait_for(f, 1))

    loop.run_until_complete(main())
    assert out == ["cb ran", "x"]
    assert errors[0].startswith("Exception in callback 42(")


def test_run_in_executor_debug_checks(loop):
    loop.set_debug(True)
    with pytest.raises(TypeError, match="coroutines cannot be used with run_in_executor()"):
        loop.run_in_executor(None, _coro_fn)


def test_debug_call_soon_from_other_thread(loop):
    """In debug mode the non-thread-safe scheduling methods check the calling thread."""
    loop.set_debug(True)
    errors = {}

    def worker():
        for name, call in [
            ("call_soon", lambda: loop.call_soon(print)),
            ("call_later", lambda: loop.call_later(1, print)),
            ("call_at", lambda: loop.call_at(loop.time() + 1, print)),
        ]:
            try:
                call()
            except RuntimeError as e:
                errors[name] = str(e)
        # The thread-safe variant works.
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(threading.Thread(target=worker).start)
    safety = loop.call_later(10, loop.stop)
    loop.run_forever()
    safety.cancel()
    assert set(errors) == {"call_soon", "call_later", "call_at"}
    for msg in errors.values():
        assert msg.startswith("Non-thread-safe operation invoked on an event loop other than the current one")


def test_no_thread_check_without_debug_or_when_not_running(loop):
    # Not running: no thread owns the loop, so any thread may schedule.
    loop.set_debug(True)
    result = []
    th = threading.Thread(target=lambda: result.append(loop.call_soon(print)))
    th.start()
    th.join()
    assert len(result) == 1
    result[0].cancel()


@pytest.mark.parametrize("fileobj", [object(), "not-a-file", 1.5, -1])
def test_add_reader_invalid_fd(loop, fileobj):
    with pytest.raises(ValueError, match="Invalid file"):
        loop.add_reader(fileobj, print)
    with pytest.raises(ValueError, match="Invalid file"):
        loop.add_writer(fileobj, print)


def test_add_reader_invalid_fd_messages(loop):
    with pytest.raises(ValueError, match=r"^Invalid file descriptor: -1$"):
        loop.add_reader(-1, print)
    with pytest.raises(ValueError, match=r"^Invalid file object: <object object"):
        loop.add_reader(object(), print)


def test_remove_reader_invalid_fd(loop):
    with pytest.raises(ValueError):
        loop.remove_reader(object())


def test_add_signal_handler_from_other_thread(loop):
    errors = []

    def worker():
        try:
            loop.add_signal_handler(signal.SIGUSR1, print)
        except Exception as e:  # noqa: BLE001 - we check the type below
            errors.append(e)

    th = threading.Thread(target=worker)
    th.start()
    th.join()
    assert len(errors) == 1
    assert type(errors[0]) is RuntimeError
    assert "main thread" in str(errors[0])
    # Raised inside asyncio's `except (ValueError, OSError) as exc:`.
    assert type(errors[0].__context__) is ValueError
    assert str(errors[0].__context__) == str(errors[0])
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_add_signal_handler_invalid_signal(loop):
    with pytest.raises(ValueError, match=r"^invalid signal number 1000$"):
        loop.add_signal_handler(1000, print)
    with pytest.raises(ValueError, match="invalid signal number"):
        loop.add_signal_handler(0, print)
    with pytest.raises(ValueError, match="invalid signal number"):
        loop.remove_signal_handler(1000)


def test_add_signal_handler_non_int(loop):
    with pytest.raises(TypeError, match=r"^sig must be an int, not 'SIGUSR1'$"):
        loop.add_signal_handler("SIGUSR1", print)
    with pytest.raises(TypeError, match="sig must be an int"):
        loop.remove_signal_handler(1.0)


def test_add_signal_handler_coroutine(loop):
    with pytest.raises(TypeError, match=r"^coroutines cannot be used with add_signal_handler\(\)$"):
        loop.add_signal_handler(signal.SIGUSR1, _coro_fn)
    coro = _coro_fn()
    try:
        with pytest.raises(TypeError, match="coroutines cannot be used with add_signal_handler"):
            loop.add_signal_handler(signal.SIGUSR1, coro)
    finally:
        coro.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_add_signal_handler_uncatchable(loop):
    with pytest.raises(RuntimeError, match=f"^sig {int(signal.SIGKILL)} cannot be caught$"):
        loop.add_signal_handler(signal.SIGKILL, print)
    assert loop.remove_signal_handler(signal.SIGKILL) is False


def test_add_signal_handler_uncatchable_chains_the_oserror(loop):
    """asyncio raises the RuntimeError inside `except OSError as exc:` (implicit
    chaining: __context__, not __cause__)."""
    with pytest.raises(RuntimeError) as ei:
        loop.add_signal_handler(signal.SIGKILL, print)
    ctx = ei.value.__context__
    assert type(ctx) is OSError and ctx.errno == 22
    assert ei.value.__cause__ is None and not ei.value.__suppress_context__


def test_set_exception_handler_not_callable(loop):
    with pytest.raises(TypeError, match=r"^A callable object or None is expected, got 'nope'$"):
        loop.set_exception_handler("nope")
    assert loop.get_exception_handler() is None


def test_set_default_executor_wrong_type(loop):
    import concurrent.futures

    with pytest.raises(TypeError, match="executor must be ThreadPoolExecutor instance"):
        loop.set_default_executor(object())
    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pe:
        with pytest.raises(TypeError, match="executor must be ThreadPoolExecutor instance"):
            loop.set_default_executor(pe)


def test_run_until_complete_coroutine_function_not_called(loop):
    with pytest.raises(TypeError):
        loop.run_until_complete(_coro_fn)


def test_create_task_non_coroutine(loop):
    with pytest.raises(TypeError):
        loop.create_task(123)


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_create_task_bad_arguments(loop):
    async def coro():
        return 1

    for call in (
        lambda: loop.create_task(),
        lambda: loop.create_task(coro(), coro()),
        lambda: loop.create_task(coro(), nmae="x"),
        lambda: loop.create_task(coro(), coro=coro()),
    ):
        with pytest.raises(TypeError):
            call()
    gc.collect()  # the rejected coroutines (never awaited: warned about, and ignored here)
    # The keyword forms asyncio accepts.
    task = loop.create_task(coro=coro(), name="by-keyword", context=None)
    assert task.get_name() == "by-keyword"
    assert loop.run_until_complete(task) == 1


def test_call_soon_unknown_keyword(loop):
    with pytest.raises(TypeError):
        loop.call_soon(print, contex=None)
    with pytest.raises(TypeError):
        loop.call_soon()


def test_wrong_loop_awaited_future(loop, loop_factory):
    other = loop_factory()
    try:
        fut = other.create_future()

        async def main():
            await fut

        with pytest.raises(RuntimeError, match="attached to a different loop"):
            loop.run_until_complete(main())
    finally:
        other.close()


def test_asyncio_run_inside_running_loop(loop):
    async def main():
        coro = _coro_fn()
        try:
            asyncio.run(coro)
        except RuntimeError as e:
            return str(e)
        finally:
            coro.close()

    assert loop.run_until_complete(main()) == (
        "asyncio.run() cannot be called from a running event loop"
    )
