"""Differences from asyncio kept on purpose (README, "Known differences"): each test pins
what both loops do, so that a change on either side is noticed."""

import sys

import pytest

PY313 = sys.version_info >= (3, 13)


def test_equal_deadlines_run_in_scheduling_order(loop, loop_name):
    """ferroloop runs timers with equal deadlines first-scheduled first; asyncio's order
    is whatever heapq's sift leaves (its docs call it undefined)."""
    out = []
    when = loop.time() + 0.01
    for i in range(10):
        loop.call_at(when, out.append, i)
    loop.call_at(when + 0.01, loop.stop)
    loop.run_forever()
    if loop_name == "ferroloop":
        assert out == list(range(10))
    else:
        assert out == [0, 2, 6, 5, 9, 8, 7, 1, 3, 4]


def test_nan_deadline_sorts_first(loop, loop_name):
    """A NaN deadline compares false with everything: in asyncio's heap it stays wherever
    heappush left it (below a timer scheduled before it); ferroloop puts it first. What
    happens to a NaN timer at the top is asyncio's (see test_timer_edge_values.py)."""
    out = []
    loop.call_later(0.01, out.append, "t1")
    loop.call_later(float("nan"), out.append, "nan")
    loop.call_later(0.03, loop.stop)
    if loop_name == "asyncio":
        loop.run_forever()
        assert out == ["t1", "nan"]
    elif PY313:
        with pytest.raises(ValueError, match="^cannot convert float NaN to integer$"):
            loop.run_forever()
        assert out == []
    else:
        loop.run_forever()
        assert out == ["nan", "t1"]


def test_call_at_converts_when_to_float(loop, loop_name):
    """ferroloop stores a timer's deadline as a float: TimerHandle.when() is a float
    and a `when` that is not a real number fails in call_at itself. asyncio keeps the
    object as given (and fails later, when it is compared or subtracted)."""
    h = loop.call_at(5, print)
    h.cancel()
    if loop_name == "ferroloop":
        assert type(h.when()) is float and h.when() == 5.0
        with pytest.raises(TypeError):
            loop.call_at("x", print)
        with pytest.raises(OverflowError):
            loop.call_at(10**400, print)
    else:
        assert type(h.when()) is int and h.when() == 5


def test_future_source_traceback_has_no_create_future_frame(loop, loop_name):
    """In debug mode asyncio's Future records its creation point from inside the Python
    method `BaseEventLoop.create_future`, so its `_source_traceback` ends with that frame
    and its repr says "created at .../asyncio/base_events.py:N". ferroloop's
    `create_future` is native and has no Python frame (as uvloop's): the traceback ends
    with the caller, and the repr names the caller's line."""

    def make():
        return loop.create_future()

    loop.set_debug(True)
    fut = make()
    names = [frame.name for frame in fut._source_traceback]
    last_file = fut._source_traceback[-1].filename
    if loop_name == "ferroloop":
        assert names[-1] == "make"
        assert last_file == __file__
        assert f"created at {__file__}:" in repr(fut)
    else:
        assert names[-2:] == ["make", "create_future"]
        assert last_file.endswith("base_events.py")
        assert "base_events.py:" in repr(fut)
    fut.cancel()
