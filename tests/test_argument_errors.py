"""Argument errors of the loop methods ferroloop parses by hand (src/event_loop/fastcall.rs):
the same TypeError messages as asyncio's pure-Python `BaseEventLoop` methods, which CPython
words with the method's `__qualname__` and binds in its own order (keywords first, then too
many positionals, then missing ones)."""

import sys

import pytest

PY313 = sys.version_info >= (3, 13)


async def _coro():
    pass


def _p():
    pass


CASES = [
    # call_soon(callback, *args, context=None)
    ("call_soon", (), {}, "BaseEventLoop.call_soon() missing 1 required positional argument: 'callback'"),
    ("call_soon", (_p,), {"foo": 1}, "BaseEventLoop.call_soon() got an unexpected keyword argument 'foo'"),
    ("call_soon", (), {"foo": 1}, "BaseEventLoop.call_soon() got an unexpected keyword argument 'foo'"),
    ("call_soon", (_p,), {"context": None, "foo": 1}, "BaseEventLoop.call_soon() got an unexpected keyword argument 'foo'"),
    ("call_soon", (), {"context": None}, "BaseEventLoop.call_soon() missing 1 required positional argument: 'callback'"),
    ("call_soon", (_p,), {"callback": 1}, "BaseEventLoop.call_soon() got multiple values for argument 'callback'"),
    ("call_soon", (_p,), {"self": 1}, "BaseEventLoop.call_soon() got multiple values for argument 'self'"),
    ("call_soon", (_p,), {"a b": 1}, "BaseEventLoop.call_soon() got an unexpected keyword argument 'a b'"),
    # call_soon_threadsafe(callback, *args, context=None)
    ("call_soon_threadsafe", (), {}, "BaseEventLoop.call_soon_threadsafe() missing 1 required positional argument: 'callback'"),
    ("call_soon_threadsafe", (_p,), {"foo": 1}, "BaseEventLoop.call_soon_threadsafe() got an unexpected keyword argument 'foo'"),
    ("call_soon_threadsafe", (_p,), {"callback": 1}, "BaseEventLoop.call_soon_threadsafe() got multiple values for argument 'callback'"),
    # call_later(delay, callback, *args, context=None)
    ("call_later", (), {}, "BaseEventLoop.call_later() missing 2 required positional arguments: 'delay' and 'callback'"),
    ("call_later", (1,), {}, "BaseEventLoop.call_later() missing 1 required positional argument: 'callback'"),
    ("call_later", (), {"delay": 1}, "BaseEventLoop.call_later() missing 1 required positional argument: 'callback'"),
    ("call_later", (), {"callback": _p}, "BaseEventLoop.call_later() missing 1 required positional argument: 'delay'"),
    ("call_later", (1, _p), {"delay": 1}, "BaseEventLoop.call_later() got multiple values for argument 'delay'"),
    ("call_later", (1,), {"delay": 1}, "BaseEventLoop.call_later() got multiple values for argument 'delay'"),
    ("call_later", (1,), {"foo": 1}, "BaseEventLoop.call_later() got an unexpected keyword argument 'foo'"),
    # call_at(when, callback, *args, context=None)
    ("call_at", (), {}, "BaseEventLoop.call_at() missing 2 required positional arguments: 'when' and 'callback'"),
    ("call_at", (1,), {}, "BaseEventLoop.call_at() missing 1 required positional argument: 'callback'"),
    ("call_at", (1, _p), {"when": 1}, "BaseEventLoop.call_at() got multiple values for argument 'when'"),
    ("call_at", (1, _p), {"callback": 1}, "BaseEventLoop.call_at() got multiple values for argument 'callback'"),
    ("call_at", (1, _p), {"foo": 1}, "BaseEventLoop.call_at() got an unexpected keyword argument 'foo'"),
    # create_task(coro, *, name=None, context=None)
    ("create_task", (), {}, "BaseEventLoop.create_task() missing 1 required positional argument: 'coro'"),
    ("create_task", (), {"name": "x"}, "BaseEventLoop.create_task() missing 1 required positional argument: 'coro'"),
    ("create_task", ("C", "C"), {}, "BaseEventLoop.create_task() takes 2 positional arguments but 3 were given"),
    ("create_task", ("C", "C", "C"), {}, "BaseEventLoop.create_task() takes 2 positional arguments but 4 were given"),
    ("create_task", ("C", "C"), {"name": "x"}, "BaseEventLoop.create_task() takes 2 positional arguments but 3 positional arguments (and 1 keyword-only argument) were given"),
    ("create_task", ("C", "C"), {"name": "x", "context": None}, "BaseEventLoop.create_task() takes 2 positional arguments but 3 positional arguments (and 2 keyword-only arguments) were given"),
    ("create_task", ("C", "C"), {"foo": 1}, "BaseEventLoop.create_task() got an unexpected keyword argument 'foo'"),
    ("create_task", ("C",), {"coro": "C"}, "BaseEventLoop.create_task() got multiple values for argument 'coro'"),
    ("create_task", (), {"foo": 1, "coro": "C"}, "BaseEventLoop.create_task() got an unexpected keyword argument 'foo'"),
]


@pytest.mark.parametrize(
    "method, args, kwargs, message", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_argument_error_message(loop, method, args, kwargs, message):
    coro = _coro()
    args = tuple(coro if a == "C" else a for a in args)
    kwargs = {k: coro if v == "C" else v for k, v in kwargs.items()}
    try:
        with pytest.raises(TypeError) as info:
            getattr(loop, method)(*args, **kwargs)
        assert str(info.value) == message
    finally:
        coro.close()


@pytest.mark.parametrize(
    "method, args, key, suggestion",
    [
        ("call_soon", (_p,), "calback", "callback"),
        ("call_soon", (_p,), "contxt", "context"),
        ("call_soon", (_p,), "selff", "self"),
        ("call_soon", (_p,), "args", None),
        ("call_later", (1, _p), "dealy", "delay"),
        ("call_at", (1, _p), "whenn", "when"),
        ("call_soon_threadsafe", (_p,), "Callback", "callback"),
        ("create_task", ("C",), "name2", "name"),
        ("create_task", ("C",), "cor", "coro"),
    ],
)
def test_unexpected_keyword_suggestion(loop, method, args, key, suggestion):
    """3.13 adds "Did you mean ...?" (the nearest of self, the parameters and the
    keyword-only parameters) to an unexpected keyword; 3.11 does not."""
    coro = _coro()
    args = tuple(coro if a == "C" else a for a in args)
    message = f"BaseEventLoop.{method}() got an unexpected keyword argument '{key}'"
    if PY313 and suggestion is not None:
        message += f". Did you mean '{suggestion}'?"
    try:
        with pytest.raises(TypeError) as info:
            getattr(loop, method)(*args, **{key: 1})
        assert str(info.value) == message
    finally:
        coro.close()


def test_parameters_by_keyword(loop):
    """asyncio's parameters are positional-or-keyword: callback=, delay=, when= and coro=
    work as keywords, in any order."""
    out = []
    loop.call_soon(callback=out.append, context=None)
    loop.call_soon(out.append, "soon")
    loop.call_soon_threadsafe(callback=lambda: out.append("ts"))
    loop.call_later(callback=lambda: out.append("later"), delay=0)
    loop.call_later(0, callback=lambda: out.append("later2"))
    loop.call_at(when=loop.time(), callback=lambda: out.append("at"))

    async def co():
        out.append("task")

    task = loop.create_task(coro=co(), name="kw")
    assert task.get_name() == "kw"
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(type(ctx["exception"])))
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert task.done()
    # out.append() without an argument fails when it runs, as a callback.
    assert errors == [TypeError]
    assert sorted(out) == ["at", "later", "later2", "soon", "task", "ts"]
