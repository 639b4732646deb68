"""call_later / call_at: ordering, TimerHandle, cancellation, precision."""

import asyncio
import time

import pytest

DELAYS = [0, 1e-6, 5e-5, 1e-4, 3e-4, 5e-4, 9e-4, 1e-3, 1.5e-3, 2e-3, 3.3e-3, 5e-3, 0.01, 0.02]


def test_call_later_order_by_deadline(loop):
    order = []
    loop.call_later(0.03, order.append, "c")
    loop.call_later(0.01, order.append, "a")
    loop.call_later(0.02, order.append, "b")
    loop.call_later(0.005, order.append, "first")
    loop.call_later(0.04, loop.stop)
    loop.run_forever()
    assert order == ["first", "a", "b", "c"]


def test_call_at_order_and_args(loop):
    order = []
    now = loop.time()
    loop.call_at(now + 0.02, order.append, 2)
    loop.call_at(now + 0.01, lambda *a: order.append(a), 1, "x")
    loop.call_at(now + 0.03, loop.stop)
    loop.run_forever()
    assert order == [(1, "x"), 2]


def test_timer_handle_when(loop):
    before = loop.time()
    h = loop.call_later(10, lambda: None)
    after = loop.time()
    assert before + 10 <= h.when() <= after + 10
    w = loop.time() + 5.123456
    h2 = loop.call_at(w, lambda: None)
    assert h2.when() == w
    # TimerHandles order by deadline.
    assert h2 < h and h > h2 and h2 <= h and h != h2
    h.cancel()
    h2.cancel()


def test_timer_cancel(loop):
    calls = []
    h = loop.call_later(0.01, calls.append, "cancelled")
    loop.call_later(0.005, calls.append, "kept")
    h.cancel()
    assert h.cancelled()
    loop.call_later(0.03, loop.stop)
    loop.run_forever()
    assert calls == ["kept"]


def test_timer_cancelled_by_earlier_callback_in_same_iteration(loop):
    calls = []
    now = loop.time()
    h2 = None

    def first():
        calls.append(1)
        h2.cancel()

    loop.call_at(now + 0.01, first)
    h2 = loop.call_at(now + 0.0100001, calls.append, 2)
    loop.call_at(now + 0.03, loop.stop)
    time.sleep(0.02)  # both are due by the time the loop looks at them
    loop.run_forever()
    assert calls == [1]


def test_many_cancelled_timers(loop):
    """Cancelling most of a large heap (asyncio then rebuilds it) keeps the rest intact."""
    calls = []
    handles = [loop.call_later(0.001 + i * 1e-5, calls.append, i) for i in range(1000)]
    for i, h in enumerate(handles):
        if i % 10:
            h.cancel()
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert calls == list(range(0, 1000, 10))


def test_negative_delay_runs_asap(loop):
    calls = []
    loop.call_later(-1, calls.append, "minus-one")
    loop.call_later(-5, calls.append, "minus-five")
    h = loop.call_at(loop.time() - 100, calls.append, "past")
    assert h.when() < loop.time()
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    # Already-due timers run in deadline order.
    assert calls == ["past", "minus-five", "minus-one"]


def test_call_later_delay_none(loop):
    with pytest.raises(TypeError, match="delay must not be None"):
        loop.call_later(None, lambda: None)


def test_call_at_when_none(loop):
    with pytest.raises(TypeError, match="when cannot be None"):
        loop.call_at(None, lambda: None)


def test_call_later_non_number_delay(loop):
    # asyncio computes `self.time() + delay`: its error message is the addition's.
    with pytest.raises(TypeError, match=r"^unsupported operand type\(s\) for \+: 'float' and 'str'$"):
        loop.call_later("1", lambda: None)


def test_call_later_other_real_types(loop):
    """A delay of any type that adds to a float works as in asyncio's time() + delay."""
    import fractions

    got = []
    loop.call_later(fractions.Fraction(1, 100), got.append, "fraction")
    loop.call_later(False, got.append, "bool")
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert got == ["bool", "fraction"]


def _assert_not_early(records):
    for delay, when, at_loop_time, at_monotonic in records:
        assert at_loop_time >= when, f"timer with delay {delay} fired {when - at_loop_time:.9f}s early"
        assert at_monotonic >= when


def test_timers_never_fire_early_all_at_once(loop):
    records = []
    handles = {}
    for n, d in enumerate(DELAYS * 3):
        def cb(n=n, d=d):
            records.append((d, handles[n].when(), loop.time(), time.monotonic()))
        handles[n] = loop.call_later(d, cb)
    loop.call_later(max(DELAYS) + 0.02, loop.stop)
    loop.run_forever()
    assert len(records) == len(DELAYS) * 3
    _assert_not_early(records)


def test_timers_never_fire_early_one_by_one(loop):
    """Each timer is scheduled from the previous one's callback, so the loop polls with
    exactly that timer's (often sub-millisecond) timeout."""
    records = []
    todo = DELAYS * 5

    def schedule(i):
        if i == len(todo):
            loop.stop()
            return
        d = todo[i]
        box = []

        def cb():
            records.append((d, box[0].when(), loop.time(), time.monotonic()))
            schedule(i + 1)

        box.append(loop.call_later(d, cb))

    loop.call_soon(schedule, 0)
    loop.run_forever()
    assert len(records) == len(todo)
    _assert_not_early(records)


def test_call_at_never_fires_early(loop):
    records = []
    todo = [3e-4, 1e-4, 7e-4, 1e-3, 2.5e-3] * 5

    def schedule(i):
        if i == len(todo):
            loop.stop()
            return
        when = loop.time() + todo[i]

        def cb():
            records.append((todo[i], when, loop.time(), time.monotonic()))
            schedule(i + 1)

        loop.call_at(when, cb)

    loop.call_soon(schedule, 0)
    loop.run_forever()
    assert len(records) == len(todo)
    _assert_not_early(records)


def test_timer_fires_reasonably_on_time(loop):
    fired = []
    start = loop.time()
    loop.call_later(0.05, lambda: (fired.append(loop.time()), loop.stop()))
    loop.run_forever()
    assert 0.05 <= fired[0] - start < 0.5


def test_timer_does_not_block_ready_callbacks(loop):
    """A far timer must not delay callbacks that are ready now."""
    calls = []
    far = loop.call_later(30, calls.append, "far")
    loop.call_soon(calls.append, "soon")
    t0 = time.monotonic()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["soon"]
    assert time.monotonic() - t0 < 1
    far.cancel()


def test_timers_not_starved_by_busy_loop(loop):
    fired = []
    spins = [0]

    def spin():
        spins[0] += 1
        if fired or spins[0] > 5_000_000:
            loop.stop()
        else:
            loop.call_soon(spin)

    start = loop.time()
    loop.call_later(0.02, lambda: fired.append(loop.time()))
    loop.call_soon(spin)
    loop.run_forever()
    assert fired, "timer never fired while the loop was busy"
    assert 0.02 <= fired[0] - start < 0.5


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_randomized_timers(loop, seed):
    """Thousands of timers with random (often equal, sometimes negative) deadlines,
    a random third cancelled up front and more cancelled or added from callbacks:
    exactly the live ones fire, in deadline order, never early."""
    import random

    rng = random.Random(seed)
    base = loop.time() + 0.005
    fired = []
    handles = {}
    cancelled = set()

    def cb(key):
        now = loop.time()
        fired.append((key, handles[key].when(), now))
        r = rng.random()
        if r < 0.1:  # cancel a random pending timer
            victim = rng.choice(list(handles))
            if victim not in {k for k, _, _ in fired}:
                handles[victim].cancel()
                cancelled.add(victim)
        elif r < 0.2:  # schedule a new one, possibly already due
            new_key = ("child", key)
            handles[new_key] = loop.call_at(now + rng.choice([-1, 0, 0.001, 0.003]), cb, new_key)
        # Stop once every live timer fired: a fixed stop time would race with a loaded
        # machine (a child scheduled just before it would be cut off).
        if len(fired) == len(handles) - len(cancelled):
            loop.stop()

    for i in range(3000):
        when = base + rng.choice([0, 0.001, 0.002, rng.random() * 0.03, -0.5])
        handles[i] = loop.call_at(when, cb, i)
    for key in rng.sample(range(3000), 1000):
        handles[key].cancel()
        cancelled.add(key)
    deadline = loop.call_at(base + 30, loop.stop)  # only if a timer never fires
    loop.run_forever()
    deadline.cancel()

    fired_keys = [k for k, _, _ in fired]
    assert len(fired_keys) == len(set(fired_keys))  # each at most once
    assert set(fired_keys) == set(handles) - cancelled
    for key, when, now in fired:
        assert now >= when
    # Timers that were due together ran in deadline order, except those scheduled
    # later from a callback (they start a new batch).
    top = [(k, w) for k, w, _ in fired if not isinstance(k, tuple)]
    assert [w for _, w in top] == sorted(w for _, w in top)


def test_timer_handle_rich_comparisons_are_asyncios(loop):
    """TimerHandle's operators are asyncio's: `__le__` is `when < other.when or
    self == other` (not `when <= other.when`), `__eq__` compares when, callback, args and
    cancelled in that order and returns the value of that `and` chain."""

    def f(*args):
        pass

    def g(*args):
        pass

    t1, t2 = loop.call_at(100.0, f, 1), loop.call_at(100.0, g, 1)
    # Same deadline, different callbacks: neither <= nor >= the other.
    assert (t1 <= t2, t1 >= t2, t1 == t2, t1 != t2, t1 < t2, t1 > t2) == (
        False, False, False, True, False, False,
    )
    # Same deadline, callback and args: equal, so <= and >= too; the hash is hash(when).
    t3 = loop.call_at(100.0, f, 1)
    assert (t1 <= t3, t1 >= t3, t1 == t3, t1 != t3) == (True, True, True, False)
    assert hash(t1) == hash(t3) == hash(100.0)
    # Other args: not equal.
    t4 = loop.call_at(100.0, f, 2)
    assert (t1 == t4, t1 <= t4, t1 >= t4) == (False, False, False)
    # An earlier deadline is < and <=, whatever the callbacks.
    t5 = loop.call_at(50.0, g)
    assert (t5 < t1, t5 <= t1, t1 > t5, t1 >= t5, t5 >= t1, t1 <= t5) == (
        True, True, True, True, False, False,
    )
    # A cancelled handle (outside debug mode) drops its callback and args: it equals
    # another cancelled one at the same deadline, not a live one.
    t3.cancel()
    assert (t1 == t3, t1 <= t3) == (False, False)
    t1.cancel()
    assert (t1 == t3, t1 <= t3, t1 >= t3) == (True, True, True)
    # Not a TimerHandle: == falls back to identity, ordering raises.
    assert (t2 == 100.0, t2 != 100.0) == (False, True)
    with pytest.raises(TypeError):
        t2 < 100.0  # noqa: B015
    with pytest.raises(TypeError):
        t2 <= loop.call_soon(f)  # noqa: B015
    for t in (t2, t4, t5):
        t.cancel()


def test_timer_handle_eq_returns_the_and_chain_value(loop):
    """`__eq__` is `when == ... and callback == other.callback and args == ...`: a
    callback whose `==` returns a falsy non-bool makes the comparison return that value;
    a NaN deadline is unequal even to itself (no identity shortcut in `==`)."""

    class Cb:
        def __init__(self, eq):
            self.eq = eq

        def __call__(self):
            pass

        def __eq__(self, other):
            return self.eq

        __hash__ = object.__hash__

    t1, t2 = loop.call_at(100.0, Cb("")), loop.call_at(100.0, Cb("x"))
    assert (t1 == t2) == ""
    assert (t1 <= t2) == ""
    assert (t1 != t2) is True
    t3, t4 = loop.call_at(100.0, Cb("yes"), 1), loop.call_at(100.0, Cb("yes"), 1)
    assert (t3 == t4) is True
    t1.cancel(), t2.cancel(), t3.cancel(), t4.cancel()
    nan = loop.call_later(float("nan"), Cb(True))
    try:
        assert (nan == nan, nan <= nan, nan != nan) == (False, False, True)
    finally:
        nan.cancel()


def test_time_patched_on_the_instance_drives_the_timers(loop):
    """asyncio reads its clock through ``self.time()``: ``call_later`` adds the delay to it
    and ``_run_once`` runs the timers due by it and polls until it. aiohttp's
    ``test_keepalive_expires_on_time`` patches ``loop.time`` on the instance to jump to a
    keep-alive deadline; the timer must then run on the next iterations."""
    from unittest import mock

    fired = []

    async def main():
        now = loop.time()
        with mock.patch.object(loop, "time") as fake:
            fake.return_value = now
            at = loop.call_at(now + 75.0, fired.append, "at")
            later = loop.call_later(75.0, fired.append, "later")
            assert later.when() == now + 75.0
            await asyncio.sleep(0)
            assert fired == []
            fake.return_value = now + 75.0
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert fired == ["at", "later"]
            # A sleep (call_later on the patched clock) ends once that clock passes it.
            sleeper = asyncio.ensure_future(asyncio.sleep(500))
            await asyncio.sleep(0)
            fake.return_value = now + 1000.0
            for _ in range(3):  # the timer, the sleep's future, the task's step
                await asyncio.sleep(0)
            assert sleeper.done()
        at.cancel(), later.cancel()
        # Unpatched again: the real clock.
        assert abs(loop.time() - time.monotonic()) < 1
        h = loop.call_later(0.01, fired.append, "real")
        await asyncio.sleep(0.05)
        assert fired[-1] == "real", h

    loop.run_until_complete(main())


def test_time_overridden_by_a_subclass_drives_the_timers(loop):
    """A subclass (or the class) overriding ``time`` is the loop's clock, as in asyncio."""
    offset = 1000.0
    fired = []
    cls = type(loop)
    sub = type("Sub", (cls,), {"time": lambda self: cls.time(self) + offset})
    lp = sub()
    try:
        t0 = lp.time()
        assert t0 > time.monotonic() + offset - 1
        lp.call_later(0.01, fired.append, 1)
        # Deadlines on the subclass's clock: this one is already due for it.
        lp.call_at(time.monotonic() + 10.0, fired.append, 2)
        lp.run_until_complete(asyncio.sleep(0.05))
        assert fired == [2, 1]
    finally:
        lp.close()


def test_time_patched_on_the_class_after_timers_ran_drives_the_timers(loop):
    """Whether ``loop.time`` is ferroloop's own is remembered by the class's version tag;
    patching the class after timers ran (and restoring it) must be seen at once."""
    cls = type(loop)
    own = "time" in vars(cls)
    original = cls.time
    fired = []
    for _ in range(3):
        loop.run_until_complete(asyncio.sleep(0.001))
    offset = 1000.0
    cls.time = lambda self: original(self) + offset
    try:
        lp = type(loop)()
        try:
            assert lp.time() > time.monotonic() + offset - 1
            lp.call_at(time.monotonic() + 10.0, fired.append, "due on the patched clock")
            lp.run_until_complete(asyncio.sleep(0.01))
        finally:
            lp.close()
        h = loop.call_later(0.01, fired.append, "patched")
        assert h.when() > time.monotonic() + offset - 1
        h.cancel()
    finally:
        if own:
            cls.time = original
        else:
            del cls.time
    h = loop.call_later(0.01, fired.append, "restored")
    assert abs(h.when() - time.monotonic()) < 1
    loop.run_until_complete(asyncio.sleep(0.05))
    assert fired == ["due on the patched clock", "restored"]
