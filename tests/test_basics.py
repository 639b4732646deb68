"""The loop object itself: type, attributes, repr, clock."""

import asyncio
import time
import weakref

import ferroloop


def test_is_abstract_event_loop(loop):
    assert isinstance(loop, asyncio.AbstractEventLoop)


def test_ferroloop_factory_returns_ferroloop_loop(loop, loop_name):
    assert isinstance(loop, ferroloop.Loop) == (loop_name == "ferroloop")


def test_instances_accept_new_attributes(loop):
    loop.some_library_state = {"x": 1}
    assert loop.some_library_state == {"x": 1}
    del loop.some_library_state
    assert not hasattr(loop, "some_library_state")


def test_weakref(loop):
    ref = weakref.ref(loop)
    assert ref() is loop


def test_repr_reflects_state(loop):
    assert "running=False closed=False debug=False" in repr(loop)
    assert repr(loop).startswith("<") and repr(loop).endswith(">")
    loop.set_debug(True)
    assert "debug=True" in repr(loop)
    loop.set_debug(False)
    seen = []
    loop.call_soon(lambda: seen.append(repr(loop)))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert "running=True" in seen[0]
    loop.close()
    assert "closed=True" in repr(loop)


def test_time_is_monotonic_clock(loop):
    for _ in range(100):
        before = time.monotonic()
        now = loop.time()
        after = time.monotonic()
        assert before <= now <= after


def test_time_advances(loop):
    t0 = loop.time()
    time.sleep(0.01)
    assert loop.time() - t0 >= 0.01


def test_debug_flag(loop):
    assert loop.get_debug() is False
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_slow_callback_duration_attribute(loop):
    assert loop.slow_callback_duration == 0.1
    loop.slow_callback_duration = 0.25
    assert loop.slow_callback_duration == 0.25


def test_is_running_and_is_closed(loop):
    assert not loop.is_running()
    assert not loop.is_closed()
    states = []
    loop.call_soon(lambda: states.append((loop.is_running(), loop.is_closed())))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert states == [(True, False)]
    assert not loop.is_running()
    loop.close()
    assert loop.is_closed()


def test_get_running_loop_inside_callback(loop):
    seen = []
    loop.call_soon(lambda: seen.append(asyncio.get_running_loop()))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [loop]
    # And no running loop once run_forever returned.
    assert asyncio._get_running_loop() is None


def test_subclass_with_init_and_overridden_method(loop_factory):
    """Libraries subclass the loop class; asyncio's machinery then goes through the
    subclass's overrides."""
    probe = loop_factory()
    base = type(probe)
    probe.close()

    class MyLoop(base):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag
            self.call_soon_calls = 0

        def call_soon(self, callback, *args, context=None):
            self.call_soon_calls += 1
            return super().call_soon(callback, *args, context=context)

    lp = MyLoop("tagged")
    try:
        async def main():
            await asyncio.sleep(0)
            return asyncio.get_running_loop()

        assert lp.run_until_complete(main()) is lp
        assert lp.tag == "tagged"
        assert lp.call_soon_calls >= 2  # task steps are scheduled through call_soon
        assert isinstance(lp, asyncio.AbstractEventLoop)
    finally:
        lp.close()
