"""Deadlines that are not ordinary numbers (NaN, infinities, huge values): what asyncio
does with them on each Python version, and a loop that stays usable afterwards.

asyncio 3.11/3.12 compute the poll timeout as ``min(max(0, when - now), MAX)``, which is
0 for a NaN deadline, so a NaN timer at the top of the heap runs at once. asyncio 3.13
compares instead, hands the NaN to its selector, and ``math.ceil`` raises
``ValueError`` out of ``run_forever`` (the timer stays scheduled); when callbacks are
ready the poll timeout is 0 and the NaN timer runs after them (``nan >= end_time`` is
false). See ``BaseEventLoop._run_once``.
"""

import sys
import threading

import pytest

NAN = float("nan")
INF = float("inf")
PY313 = sys.version_info >= (3, 13)
NAN_ERROR = "cannot convert float NaN to integer"


def _stop_from_thread(loop, delay=0.05):
    t = threading.Timer(delay, loop.call_soon_threadsafe, (loop.stop,))
    t.start()
    return t


def _assert_usable(loop):
    """Not left running: another run works and close() succeeds."""
    assert not loop.is_running()
    got = []
    loop.call_soon(got.append, "again")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert got[:1] == ["again"]
    assert not loop.is_running()


def test_nan_delay_alone(loop):
    """The issue's reproducer: asyncio 3.11 runs the timer, 3.13 raises ValueError."""
    got = []
    loop.call_later(NAN, got.append, "nan-timer")
    t = _stop_from_thread(loop)
    try:
        if PY313:
            with pytest.raises(ValueError, match=f"^{NAN_ERROR}$"):
                loop.run_forever()
            assert got == []
        else:
            loop.run_forever()
            assert got == ["nan-timer"]
    finally:
        t.join()
    assert not loop.is_running()
    # Drain the pending stop from the thread (3.13) and check the loop still works; on
    # 3.13 the NaN timer, still scheduled, runs once callbacks are ready.
    got.clear()
    loop.call_soon(got.append, "ready")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert got == (["ready", "nan-timer"] if PY313 else ["ready"])
    loop.close()


def test_nan_call_at_with_ready_callbacks_runs_after_them(loop):
    got = []
    loop.call_at(NAN, got.append, "nan")
    loop.call_soon(got.append, "soon")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert got == ["soon", "nan"]
    _assert_usable(loop)


def test_nan_timer_first_with_another_timer_pending(loop):
    """A NaN timer scheduled first stays at the top of asyncio's heap (nothing compares
    less than it): it runs at once on 3.11, makes run_forever raise on 3.13."""
    got = []
    loop.call_later(NAN, got.append, "nan")
    loop.call_later(0.01, got.append, "t1")
    loop.call_later(0.03, loop.stop)
    if PY313:
        with pytest.raises(ValueError, match=f"^{NAN_ERROR}$"):
            loop.run_forever()
        assert got == []
    else:
        loop.run_forever()
        assert got == ["nan", "t1"]
    assert not loop.is_running()
    loop.close()


def test_nan_timer_cancelled_is_harmless(loop):
    got = []
    loop.call_later(NAN, got.append, "nan").cancel()
    loop.call_later(0.01, got.append, "t1")
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert got == ["t1"]


@pytest.mark.parametrize("value", [INF, 1e308, sys.float_info.max, 10.0**20, 2**63])
def test_far_deadlines_never_fire_and_do_not_break_the_poll(loop, value):
    got = []
    loop.call_later(value, got.append, "later")
    loop.call_at(value, got.append, "at")
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert got == []
    _assert_usable(loop)


@pytest.mark.parametrize("value", [-INF, -1e308, -sys.float_info.max, -(2**63), -1e-300])
def test_past_deadlines_run_at_once(loop, value):
    got = []
    loop.call_later(value, got.append, "later")
    loop.call_at(value, got.append, "at")
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert sorted(got) == ["at", "later"]
    _assert_usable(loop)


def test_huge_int_delay_overflows(loop):
    with pytest.raises(OverflowError):
        loop.call_later(10**400, print)
