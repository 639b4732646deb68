"""Misusing a Future or Task raises what CPython's C `asyncio.Future` / `asyncio.Task`
raise: same exception type, same message (issue 11, item 5).

Every case runs on the C classes (on an asyncio loop: the reference) and on ferroloop's
classes (on a ferroloop loop), and the outcomes are compared after normalising addresses
and the type prefix. The messages are those of the interpreter running the tests, so the
same cases check 3.11's and 3.13's wording (Argument Clinic changed between them).
"""

import asyncio
import gc
import re
import sys
import warnings

import pytest

import ferroloop


async def co():
    return 1


def cb(fut):
    pass


class BadExc(Exception):
    def __init__(self):
        raise KeyError("ctor")


def _norm(s):
    s = re.sub(r"0x[0-9a-f]+", "0xADDR", s)
    s = s.replace("ferroloop._ferroloop.", "_asyncio.")
    return re.sub(r"coro=<co\(\) running at [^>]*>", "coro=<co()>", s)


class Env:
    def __init__(self, impl):
        if impl == "c":
            self.loop = asyncio.new_event_loop()
            self.F, self.T = asyncio.Future, asyncio.Task
        else:
            self.loop = ferroloop.new_event_loop()
            self.F, self.T = ferroloop.Future, ferroloop.Task
        self.tasks = []

    def f(self):
        return self.F(loop=self.loop)

    def done(self):
        f = self.f()
        f.set_result(1)
        return f

    def exc(self):
        f = self.f()
        f.set_exception(ValueError("x"))
        f._log_traceback = False
        return f

    def cancelled(self):
        f = self.f()
        f.cancel("m")
        return f

    def uninit(self):
        return self.F.__new__(self.F)

    def t(self):
        t = self.T(co(), loop=self.loop)
        self.tasks.append(t)
        return t

    def uninit_t(self):
        return self.T.__new__(self.T)

    def it(self):
        return self.f().__await__()

    def close(self):
        for t in self.tasks:
            t.cancel()
        if self.tasks:
            self.loop.run_until_complete(asyncio.gather(*self.tasks, return_exceptions=True))
        self.loop.close()


def _set(obj, attr, value):
    setattr(obj, attr, value)
    return getattr(obj, attr)


CASES = {
    # construction
    "Future(1)": lambda e: e.F(1),
    "Future(1, 2)": lambda e: e.F(1, 2),
    "Future(foo=1)": lambda e: e.F(foo=1),
    "Future(loop=loop, foo=1)": lambda e: e.F(loop=e.loop, foo=1),
    "Future(1, loop=loop)": lambda e: e.F(1, loop=e.loop),
    "Future(lop=loop)": lambda e: e.F(lop=e.loop),
    "Future(**{1: 2})": lambda e: e.F(**{1: 2}),
    "Task()": lambda e: e.T(),
    "Task(1)": lambda e: e.T(1, loop=e.loop),
    "Task(co, 1)": lambda e: e.T(co(), 1),
    "Task(co, foo=1)": lambda e: e.T(co(), loop=e.loop, foo=1),
    "Task(co, nme=1)": lambda e: e.T(co(), loop=e.loop, nme=1),
    "Task(co, coro=co)": lambda e: e.T(co(), coro=co(), loop=e.loop),
    # uninitialized objects
    **{
        f"uninit Future.{m}": (lambda m, a: lambda e: getattr(e.uninit(), m)(*a))(m, a)
        for m, a in [
            ("result", ()), ("exception", ()), ("set_result", (1,)),
            ("set_exception", (ValueError(),)), ("add_done_callback", (cb,)),
            ("remove_done_callback", (cb,)), ("cancel", ()), ("cancelled", ()), ("done", ()),
            ("get_loop", ()), ("__await__", ()), ("__iter__", ()), ("__repr__", ()),
        ]
    },
    **{
        f"uninit Future.{a}": (lambda a: lambda e: getattr(e.uninit(), a))(a)
        for a in [
            "_state", "_loop", "_callbacks", "_result", "_exception", "_log_traceback",
            "_source_traceback", "_cancel_message", "_asyncio_future_blocking",
        ]
    },
    **{
        f"uninit Task.{m}": (lambda m, a: lambda e: getattr(e.uninit_t(), m)(*a))(m, a)
        for m, a in [
            ("result", ()), ("exception", ()), ("set_result", (1,)),
            ("set_exception", (ValueError(),)), ("add_done_callback", (cb,)),
            ("remove_done_callback", (cb,)), ("get_loop", ()), ("__repr__", ()),
            ("get_stack", ()), ("_state", None),
        ]
        if a is not None
    },
    "uninit Task._state": lambda e: e.uninit_t()._state,
    # state errors
    "pending result()": lambda e: e.f().result(),
    "pending exception()": lambda e: e.f().exception(),
    "done set_result()": lambda e: e.done().set_result(2),
    "done set_exception()": lambda e: e.done().set_exception(ValueError()),
    "done set_exception(1)": lambda e: e.done().set_exception(1),
    "failed set_result()": lambda e: e.exc().set_result(2),
    "cancelled set_result()": lambda e: e.cancelled().set_result(2),
    "cancelled set_exception()": lambda e: e.cancelled().set_exception(ValueError()),
    "cancelled result()": lambda e: e.cancelled().result(),
    "set_exception(1)": lambda e: e.f().set_exception(1),
    "set_exception(int)": lambda e: e.f().set_exception(int),
    "set_exception(StopIteration)": lambda e: e.f().set_exception(StopIteration),
    "set_exception(StopIteration())": lambda e: e.f().set_exception(StopIteration()),
    "set_exception(BadExc)": lambda e: e.f().set_exception(BadExc),
    "pending Task.result()": lambda e: e.t().result(),
    "Task.set_result()": lambda e: e.t().set_result(1),
    "Task.set_exception()": lambda e: e.t().set_exception(ValueError()),
    # argument parsing
    "add_done_callback()": lambda e: e.f().add_done_callback(),
    "add_done_callback(cb, 1)": lambda e: e.f().add_done_callback(cb, 1),
    "add_done_callback(cb, foo=1)": lambda e: e.f().add_done_callback(cb, foo=1),
    "add_done_callback(fn=cb)": lambda e: e.f().add_done_callback(fn=cb),
    "add_done_callback(cb, fn=cb)": lambda e: e.f().add_done_callback(cb, fn=cb),
    "add_done_callback(cb, context=1, x=2)": lambda e: e.f().add_done_callback(cb, context=1, x=2),
    "cancel(1, 2)": lambda e: e.f().cancel(1, 2),
    "cancel(1, msg=2)": lambda e: e.f().cancel(1, msg=2),
    "cancel(foo=1)": lambda e: e.f().cancel(foo=1),
    "cancel(msg2=1)": lambda e: e.f().cancel(msg2=1),
    "Task.cancel(1, 2)": lambda e: e.t().cancel(1, 2),
    "Task.cancel(mgs=1)": lambda e: e.t().cancel(mgs=1),
    "Task.get_stack(1)": lambda e: e.t().get_stack(1),
    "Task.get_stack(foo=1)": lambda e: e.t().get_stack(foo=1),
    "Task.get_stack(limt=1)": lambda e: e.t().get_stack(limt=1),
    "Task.print_stack(1, 2, 3)": lambda e: e.t().print_stack(1, 2, 3),
    "Task.print_stack(fil=1)": lambda e: e.t().print_stack(fil=1),
    "Task.set_name()": lambda e: e.t().set_name(),
    # the iterator
    "iter send()": lambda e: e.it().send(),
    "iter send(x=1)": lambda e: e.it().send(x=1),
    "iter throw()": lambda e: e.it().throw(),
    "iter throw(1, 2, 3, 4)": lambda e: e.it().throw(1, 2, 3, 4),
    "iter throw(x=1)": lambda e: e.it().throw(x=1),
    "iter throw(1)": lambda e: e.it().throw(1),
    "iter throw(ValueError(), 1)": lambda e: e.it().throw(ValueError(), 1),
    "iter throw(ValueError, None, 1)": lambda e: e.it().throw(ValueError, None, 1),
    "iter close(1)": lambda e: e.it().close(1),
}

# Each method called with arguments it does not take.
for _m in ["result", "exception", "set_result", "set_exception", "add_done_callback",
           "remove_done_callback", "cancel", "cancelled", "done", "get_loop"]:
    CASES[f"Future.{_m}(1, 2, 3)"] = (lambda m: lambda e: getattr(e.f(), m)(1, 2, 3))(_m)
    CASES[f"Future.{_m}(x=1)"] = (lambda m: lambda e: getattr(e.f(), m)(x=1))(_m)
    CASES[f"Future.{_m}(1, x=1)"] = (lambda m: lambda e: getattr(e.f(), m)(1, x=1))(_m)
for _m in ["exception", "remove_done_callback", "get_loop", "get_name", "get_coro",
           "cancelling", "uncancel", "get_stack", "print_stack"]:
    CASES[f"Task.{_m}(1, 2, 3)"] = (lambda m: lambda e: getattr(e.t(), m)(1, 2, 3))(_m)
    CASES[f"Task.{_m}(x=1)"] = (lambda m: lambda e: getattr(e.t(), m)(x=1))(_m)

# Attributes.
for _a, _v in [("_log_traceback", True), ("_state", "X"), ("_loop", 1), ("_callbacks", []),
               ("_result", 1), ("_exception", 1), ("_source_traceback", 1)]:
    CASES[f"Future.{_a} = {_v!r}"] = (lambda a, v: lambda e: _set(e.f(), a, v))(_a, _v)
    CASES[f"del Future.{_a}"] = (lambda a: lambda e: delattr(e.f(), a))(_a)
for _a in ["_log_destroy_pending", "_must_cancel", "_coro", "_fut_waiter"]:
    CASES[f"Task.{_a} = 1"] = (lambda a: lambda e: _set(e.t(), a, 1))(_a)
    CASES[f"del Task.{_a}"] = (lambda a: lambda e: delattr(e.t(), a))(_a)


@pytest.fixture(scope="module")
def envs():
    envs = {"c": Env("c"), "ferroloop": Env("ferroloop")}
    yield envs
    for env in envs.values():
        env.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()


def outcome(env, case):
    asyncio.set_event_loop(env.loop)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                result = CASES[case](env)
                if result is env.loop:  # the loops' reprs differ by class
                    return "ok <the loop>"
                return "ok " + _norm(repr(result))
            except BaseException as e:  # noqa: BLE001 - the outcome is what is compared
                return f"{type(e).__name__}: {_norm(str(e))}"
    finally:
        asyncio.set_event_loop(None)


@pytest.mark.parametrize("case", list(CASES))
def test_misuse_raises_what_the_c_classes_raise(envs, case):
    assert outcome(envs["ferroloop"], case) == outcome(envs["c"], case)


def test_the_messages_of_the_issue(loop):
    """The messages named in issue 11 item 5, on both loops' own futures and tasks."""
    fut = loop.create_future()
    with pytest.raises(asyncio.InvalidStateError, match=r"^Result is not set\.$"):
        fut.result()
    fut.set_result(1)
    with pytest.raises(asyncio.InvalidStateError, match="^invalid state$"):
        fut.set_result(2)
    task = loop.create_task(co())
    with pytest.raises(RuntimeError, match="^Task does not support set_result operation$"):
        task.set_result(1)
    with pytest.raises(RuntimeError, match="^Task does not support set_exception operation$"):
        task.set_exception(ValueError())
    loop.run_until_complete(task)


def test_destroyed_pending_task_context_keys(loop):
    """"Task was destroyed but it is pending!": the context's keys in asyncio's order."""
    contexts = []
    loop.set_exception_handler(lambda loop, context: contexts.append(list(context)))

    async def forever():
        await loop.create_future()  # only the task's cycle references it

    for debug in (False, True):
        loop.set_debug(debug)
        task = loop.create_task(forever())
        loop.run_until_complete(asyncio.sleep(0))
        del task
        gc.collect()
        loop.run_until_complete(asyncio.sleep(0))
    loop.set_debug(False)
    # The coroutines were closed with their tasks: nothing else is reported.
    assert contexts == [
        ["message", "task"],
        ["message", "task", "source_traceback"],
    ]


def test_never_retrieved_exception_context_keys(loop):
    contexts = []
    loop.set_exception_handler(lambda loop, context: contexts.append(list(context)))
    for debug in (False, True):
        loop.set_debug(debug)
        fut = loop.create_future()
        fut.set_exception(ValueError("x"))
        del fut
        gc.collect()
    loop.set_debug(False)
    assert contexts == [
        ["message", "exception", "future"],
        ["message", "exception", "future", "source_traceback"],
    ]
