"""call_soon / call_soon_threadsafe, handles and contextvars."""

import asyncio
import contextvars
import sys
import threading
import time

import pytest

from conftest import run_briefly

var = contextvars.ContextVar("var", default="default")


def test_call_soon_fifo_and_args(loop):
    calls = []
    for i in range(50):
        loop.call_soon(calls.append, i)
    loop.call_soon(lambda *a: calls.append(a), 1, "two", None)
    run_briefly(loop)
    assert calls == list(range(50)) + [(1, "two", None)]


def test_call_soon_runs_each_callback_once(loop):
    counter = [0]

    def cb():
        counter[0] += 1

    for _ in range(10):
        loop.call_soon(cb)
    run_briefly(loop, 3)
    assert counter[0] == 10


def test_call_soon_from_callback_runs_next_iteration(loop):
    order = []

    def a():
        order.append("a")
        loop.call_soon(order.append, "c")

    loop.call_soon(a)
    loop.call_soon(order.append, "b")
    loop.call_soon(loop.stop)
    loop.run_forever()
    # "c" was scheduled during the iteration that ran stop(): it waits for the next one.
    assert order == ["a", "b"]
    run_briefly(loop)
    assert order == ["a", "b", "c"]


def test_stop_before_run_forever_runs_ready_callbacks_once(loop):
    order = []

    def a():
        order.append("a")
        loop.call_soon(order.append, "later")

    loop.stop()
    loop.call_soon(a)
    t0 = time.monotonic()
    loop.run_forever()
    assert time.monotonic() - t0 < 1
    assert order == ["a"]
    run_briefly(loop)
    assert order == ["a", "later"]


def test_handle_cancel(loop):
    calls = []
    h = loop.call_soon(calls.append, "cancelled")
    loop.call_soon(calls.append, "kept")
    assert not h.cancelled()
    h.cancel()
    assert h.cancelled()
    h.cancel()  # idempotent
    assert h.cancelled()
    assert repr(h) == "<Handle cancelled>"
    run_briefly(loop)
    assert calls == ["kept"]


def test_handle_cancel_from_earlier_callback(loop):
    calls = []
    h2 = None

    def first():
        calls.append(1)
        h2.cancel()

    loop.call_soon(first)
    h2 = loop.call_soon(calls.append, 2)
    run_briefly(loop)
    assert calls == [1]


def test_handle_private_attributes(loop):
    def cb(*args):
        pass

    h = loop.call_soon(cb, 1, 2)
    assert h._callback is cb
    assert h._args == (1, 2)
    h.cancel()
    assert h._callback is None and h._args is None


def test_handle_callback_and_args_can_be_set(loop):
    """asyncio's ``_callback`` and ``_args`` are plain slots: code wraps a handle's callback
    before it runs, and frees a cancelled handle's references with
    ``handle._args = handle._callback = None``."""
    out = []
    h = loop.call_soon(out.append, "original")
    h._callback = lambda *args: out.append(("wrapped", args))
    h._args = ("new",)
    assert h._args == ("new",)
    t = loop.call_later(0, out.append, "timer")
    t._args = ["from a list"]
    assert list(t._args) == ["from a list"]
    dropped = loop.call_soon(out.append, "dropped")
    dropped.cancel()
    dropped._args = dropped._callback = None
    assert dropped._callback is None and dropped._args is None and dropped.cancelled()
    loop.run_until_complete(asyncio.sleep(0.01))
    assert out == [("wrapped", ("new",)), "from a list"]


def test_handle_args_that_cannot_be_unpacked(loop, loop_name):
    """A listed known difference: asyncio keeps any ``_args`` and fails when the handle runs
    (the exception handler gets the ``TypeError``); ferroloop refuses what cannot be
    unpacked when it is set, with unpacking's ``TypeError``."""
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx["exception"]))
    h = loop.call_soon(print)
    if loop_name == "ferroloop":
        with pytest.raises(TypeError):
            h._args = None
        with pytest.raises(TypeError):
            h._args = 5
        with pytest.raises(AttributeError):
            del h._callback
    else:
        h._args = None
    loop.run_until_complete(asyncio.sleep(0))
    expected = [] if loop_name == "ferroloop" else [TypeError]
    assert [type(e) for e in errors] == expected


def test_call_soon_returns_asyncio_handle(loop):
    """call_soon / call_soon_threadsafe return an asyncio.Handle, call_later / call_at an
    asyncio.TimerHandle (documented; asyncio/events.py)."""
    h = loop.call_soon(lambda: None)
    h2 = loop.call_soon_threadsafe(lambda: None)
    t = loop.call_later(10, lambda: None)
    t2 = loop.call_at(loop.time() + 10, lambda: None)
    for handle in (h, h2):
        assert isinstance(handle, asyncio.Handle)
        assert not isinstance(handle, asyncio.TimerHandle)
    for timer in (t, t2):
        assert isinstance(timer, asyncio.TimerHandle)
        assert isinstance(timer, asyncio.Handle)
    assert issubclass(type(t), asyncio.TimerHandle)
    t.cancel()
    t2.cancel()
    run_briefly(loop)


def test_reader_handle_is_asyncio_handle(loop):
    """The handles of _add_reader/_add_writer (what asyncio's transports use) are
    asyncio.Handle instances too."""
    import socket

    a, b = socket.socketpair()
    try:
        rh = loop._add_reader(a.fileno(), lambda: None)
        wh = loop._add_writer(b.fileno(), lambda: None)
        assert isinstance(rh, asyncio.Handle) and not isinstance(rh, asyncio.TimerHandle)
        assert isinstance(wh, asyncio.Handle)
    finally:
        loop.remove_reader(a.fileno())
        loop.remove_writer(b.fileno())
        a.close()
        b.close()


def test_recycled_handle_is_still_an_asyncio_handle(loop, loop_name):
    """Handles the caller dropped (after isinstance checks, which keep no reference) are
    recycled by ferroloop's call_soon; what comes back is still an asyncio.Handle that
    runs and describes its own callback."""
    calls = []
    ids = set()
    for i in range(20):
        h = loop.call_soon(calls.append, i)
        assert isinstance(h, asyncio.Handle)
        ids.add(id(h))
        del h
    run_briefly(loop)
    again = [loop.call_soon(calls.append, 100 + i) for i in range(20)]
    for i, h in enumerate(again):
        assert isinstance(h, asyncio.Handle)
        assert type(h).__name__ == "Handle"
        assert h._callback == calls.append and h._args == (100 + i,)
        assert not h.cancelled()
        assert repr(h).startswith("<Handle ")
    if loop_name == "ferroloop":
        # The allocation-free path: the dropped handles were reused.
        assert ids & {id(h) for h in again}
    again[3].cancel()
    run_briefly(loop)
    assert calls == list(range(20)) + [100 + i for i in range(20) if i != 3]


def test_handle_keeps_asyncio_handle_behaviour(loop):
    """What asyncio.Handle/TimerHandle define and ferroloop's subtypes inherit or shadow
    agrees: asyncio's own methods called on the handle, _repr_info(), _repr, the slots."""
    def cb(*args):
        pass

    h = loop.call_soon(cb, 1)
    t = loop.call_later(10, cb, 2)
    assert asyncio.Handle.__repr__(h) == repr(h)
    assert asyncio.Handle.__repr__(t) == repr(t)
    assert h._repr_info() == ["Handle", repr(h)[len("<Handle "):-1]]
    assert t._repr_info()[0] == "TimerHandle"
    assert t._repr_info()[1] == f"when={t.when()}"
    assert asyncio.Handle.cancelled(h) is False
    assert asyncio.TimerHandle.when(t) == t.when() == t._when
    assert h._repr is None and t._repr is None
    assert t._scheduled is True
    for name in ("_callback", "_args", "_cancelled", "_loop", "_source_traceback",
                 "_repr", "_context"):
        getattr(h, name)
        getattr(t, name)
    assert h._loop is loop and t._loop is loop
    assert not hasattr(h, "__dict__")
    with pytest.raises(AttributeError):
        h.no_such_attribute = 1
    if sys.version_info >= (3, 12):
        assert asyncio.Handle.get_context(h) is h.get_context()
    t.cancel()
    assert t.cancelled() and asyncio.Handle.cancelled(t) is True
    assert "cancelled" in t._repr_info()
    h.cancel()
    run_briefly(loop)
    assert t._scheduled is False


def test_handle_weakref_blocks_recycling(loop):
    """A handle with a live weak reference is never recycled: once it ran and the caller
    dropped it, the weak reference dies with it."""
    import gc
    import weakref

    calls = []
    refs = [weakref.ref(loop.call_soon(calls.append, i)) for i in range(5)]
    t = loop.call_later(0, calls.append, "t")
    tref = weakref.ref(t)
    del t
    run_briefly(loop, 3)
    gc.collect()
    assert calls == [0, 1, 2, 3, 4, "t"]
    assert all(r() is None for r in refs)
    assert tref() is None
    # New handles are not the dead ones brought back.
    assert all(loop.call_soon(calls.append, 9) is not None for _ in range(5))
    run_briefly(loop)


@pytest.mark.parametrize("kind", ["soon", "later", "cancelled_timer"])
def test_cycle_through_handle_is_collected(loop, kind):
    """A reference cycle through a handle (its args reference an object holding the
    handle) is collected once nothing else holds it, scheduled timer or not."""
    import gc
    import weakref

    class Holder:
        pass

    holder = Holder()
    if kind == "soon":
        holder.h = loop.call_soon(lambda x: None, holder)
        run_briefly(loop)
    elif kind == "later":
        holder.h = loop.call_later(0, lambda x: None, holder)
        run_briefly(loop, 2)
    else:
        holder.h = loop.call_later(3600, lambda x: None, holder)
        holder.h.cancel()
        run_briefly(loop)
    ref = weakref.ref(holder)
    href = weakref.ref(holder.h)
    del holder
    gc.collect()
    assert ref() is None
    assert href() is None


def test_handle_get_context(loop):
    if sys.version_info < (3, 12):
        pytest.skip("Handle.get_context() is new in Python 3.12")
    ctx = contextvars.copy_context()
    h = loop.call_soon(lambda: None, context=ctx)
    assert h.get_context() is ctx
    token = var.set("at-schedule")
    try:
        h2 = loop.call_soon(lambda: None)
    finally:
        var.reset(token)
    assert isinstance(h2.get_context(), contextvars.Context)
    assert h2.get_context()[var] == "at-schedule"
    t = loop.call_later(10, lambda: None, context=ctx)
    assert t.get_context() is ctx
    t.cancel()


def test_callback_runs_in_given_context(loop):
    ctx = contextvars.Context()
    ctx.run(var.set, "in-ctx")
    seen = []

    def cb():
        seen.append(var.get())
        var.set("changed-by-callback")

    loop.call_soon(cb, context=ctx)
    loop.call_later(0.001, cb, context=ctx)
    loop.call_soon_threadsafe(cb, context=ctx)
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert seen == ["in-ctx", "changed-by-callback", "changed-by-callback"]
    # The callback's set() landed in ctx, not in the test's context.
    assert ctx[var] == "changed-by-callback"
    assert var.get() == "default"


def test_callback_runs_in_copy_of_current_context(loop):
    seen = []

    def cb(tag):
        seen.append((tag, var.get()))
        var.set("leak?")

    token = var.set("scheduled")
    try:
        loop.call_soon(cb, "soon")
        loop.call_later(0, cb, "later")
        loop.call_soon_threadsafe(cb, "threadsafe")
        var.set("after-scheduling")
        loop.call_soon(cb, "second")
        loop.call_later(0.01, loop.stop)
        loop.run_forever()
        # Each callback got its own copy: no callback sees another one's set().
        assert sorted(seen) == sorted([
            ("soon", "scheduled"),
            ("later", "scheduled"),
            ("threadsafe", "scheduled"),
            ("second", "after-scheduling"),
        ])
        assert var.get() == "after-scheduling"
    finally:
        var.reset(token)


def test_context_none_means_copy_current(loop):
    seen = []
    token = var.set("x")
    try:
        loop.call_soon(lambda: seen.append(var.get()), context=None)
    finally:
        var.reset(token)
    run_briefly(loop)
    assert seen == ["x"]


def test_call_soon_threadsafe_wakes_idle_loop(loop):
    """The loop blocks in its poll with no timer; another thread's call wakes it."""
    sent = []
    ran = []

    def worker():
        time.sleep(0.1)
        sent.append(time.monotonic())
        loop.call_soon_threadsafe(done, "from-thread")

    def done(arg):
        ran.append((arg, time.monotonic(), threading.get_ident()))
        loop.stop()

    th = threading.Thread(target=worker)
    th.start()
    loop.run_forever()
    th.join()
    assert len(ran) == 1
    arg, t_ran, tid = ran[0]
    assert arg == "from-thread"
    assert tid == threading.get_ident()  # ran on the loop thread
    assert t_ran - sent[0] < 0.5


def test_call_soon_threadsafe_wakes_loop_waiting_on_long_timer(loop):
    ran = []

    def worker():
        time.sleep(0.05)
        loop.call_soon_threadsafe(lambda: (ran.append(time.monotonic()), loop.stop()))

    far = loop.call_later(30, loop.stop)
    th = threading.Thread(target=worker)
    t0 = time.monotonic()
    th.start()
    loop.run_forever()
    th.join()
    far.cancel()
    assert ran and ran[0] - t0 < 2


def test_call_soon_threadsafe_many_threads(loop):
    n_threads, per_thread = 4, 500
    results = {i: [] for i in range(n_threads)}
    remaining = [n_threads * per_thread]

    def cb(tid, i):
        results[tid].append(i)
        remaining[0] -= 1
        if remaining[0] == 0:
            loop.stop()

    def worker(tid):
        for i in range(per_thread):
            loop.call_soon_threadsafe(cb, tid, i)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    safety = loop.call_later(20, loop.stop)
    for th in threads:
        th.start()
    loop.run_forever()
    for th in threads:
        th.join()
    safety.cancel()
    # Every call ran exactly once, and each thread's calls ran in FIFO order.
    for tid in range(n_threads):
        assert results[tid] == list(range(per_thread))


def test_call_soon_threadsafe_returns_handle(loop):
    calls = []
    h = loop.call_soon_threadsafe(calls.append, 1)
    h.cancel()
    assert h.cancelled()
    run_briefly(loop)
    assert calls == []


def test_deep_call_soon_chain(loop):
    """100,000 callbacks, each scheduling the next: no recursion, all run in order."""
    n = 100_000
    seen = []

    def step(i):
        seen.append(i)
        if i:
            loop.call_soon(step, i - 1)
        else:
            loop.stop()

    loop.call_soon(step, n)
    loop.run_forever()
    assert len(seen) == n + 1
    assert seen[0] == n and seen[-1] == 0


def test_call_soon_threadsafe_not_starved_by_busy_loop(loop):
    got = []
    spins = [0]

    def spin():
        spins[0] += 1
        if got or spins[0] > 5_000_000:
            loop.stop()
        else:
            loop.call_soon(spin)

    def worker():
        time.sleep(0.05)
        loop.call_soon_threadsafe(got.append, time.monotonic())

    th = threading.Thread(target=worker)
    th.start()
    t0 = time.monotonic()
    loop.call_soon(spin)
    loop.run_forever()
    th.join()
    assert got and got[0] - t0 < 1


def test_debug_cancelled_handle_repr(loop):
    loop.set_debug(True)

    def my_callback():
        pass

    h = loop.call_soon(my_callback)
    t = loop.call_later(10, my_callback)
    h.cancel()
    t.cancel()
    for handle, cls in ((h, "Handle"), (t, "TimerHandle")):
        r = repr(handle)
        assert r.startswith(f"<{cls} cancelled "), r
        assert "my_callback" in r, r  # debug mode keeps the callback in the repr


def test_threadsafe_wakeups_not_lost(loop):
    """The loop repeatedly goes idle (blocking in its poll, no timer due soon) while
    another thread keeps calling call_soon_threadsafe: no wake-up may be lost."""
    n = 2000
    got = [0]

    def cb():
        got[0] += 1
        if got[0] == n:
            loop.stop()

    def worker():
        for i in range(n):
            loop.call_soon_threadsafe(cb)
            if i % 8 == 0:
                time.sleep(0.0003)  # let the loop go idle in between

    safety = loop.call_later(15, loop.stop)
    th = threading.Thread(target=worker)
    t0 = time.monotonic()
    th.start()
    loop.run_forever()
    th.join()
    safety.cancel()
    assert got[0] == n
    assert time.monotonic() - t0 < 10, "a wake-up was lost: the loop slept until the safety timer"


def test_kept_handles_are_not_reused(loop):
    calls = []
    kept = [loop.call_soon(calls.append, i) for i in range(5)]
    run_briefly(loop)
    # A handle the caller kept still describes its own callback after running...
    assert kept[0]._callback == calls.append and kept[0]._args == (0,)
    assert not kept[0].cancelled()
    # ...and cancelling it late affects nothing scheduled afterwards.
    for h in kept:
        h.cancel()
    new = [loop.call_soon(calls.append, 10 + i) for i in range(5)]
    assert not any(n is k for n in new for k in kept)
    run_briefly(loop)
    assert calls == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]


def test_dropped_handles_do_not_leak_callbacks(loop):
    """Handles the caller dropped may be recycled; their callbacks and arguments must
    still be released once run."""
    import gc
    import weakref

    class Arg:
        pass

    refs = []
    for _ in range(50):
        a = Arg()
        refs.append(weakref.ref(a))
        loop.call_soon(lambda x: None, a)
        del a
    run_briefly(loop, 2)
    gc.collect()
    assert all(r() is None for r in refs)


def test_handle_get_context_only_on_312(loop):
    """asyncio added Handle.get_context() in 3.12: 3.11's handles have none (and 3.11's
    call_exception_handler does not run the handler in the handle's context)."""
    h = loop.call_soon(lambda: None)
    t = loop.call_later(10, lambda: None)
    try:
        for handle in (h, t):
            assert hasattr(handle, "get_context") == (sys.version_info >= (3, 12))
            assert handle._context is not None
    finally:
        h.cancel()
        t.cancel()


def test_value_set_through_asyncio_slot_descriptor_is_released(loop):
    """asyncio.Handle's own __slots__ descriptors still work on the handles: what they
    store is visited by the GC (a cycle through it is collected) and released with the
    handle."""
    import gc
    import weakref

    class Obj:
        pass

    h = loop.call_soon(lambda: None)
    o = Obj()
    o.h = h  # o -> h -> (asyncio's _repr slot) -> o
    asyncio.Handle._repr.__set__(h, o)
    assert asyncio.Handle._repr.__get__(h) is o
    ref = weakref.ref(o)
    href = weakref.ref(h)
    h.cancel()
    del h, o
    run_briefly(loop)
    gc.collect()
    assert ref() is None and href() is None

    t = loop.call_later(3600, lambda: None)
    o = Obj()
    asyncio.TimerHandle._when.__set__(t, o)  # no cycle: released with the handle
    ref = weakref.ref(o)
    del o
    t.cancel()
    del t
    run_briefly(loop)
    gc.collect()
    assert ref() is None
