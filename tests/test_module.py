"""ferroloop's module-level API: run, install, EventLoopPolicy, new_event_loop, and
asyncio's entry points (Runner, asyncio.run) with a ferroloop loop factory."""

import asyncio
import sys
import warnings

import pytest

import ferroloop


def test_public_names():
    for name in ("Loop", "EventLoopPolicy", "new_event_loop", "run", "install", "Handle", "TimerHandle"):
        assert hasattr(ferroloop, name), name
    assert isinstance(ferroloop.__version__, str) and ferroloop.__version__


def test_new_event_loop():
    loop = ferroloop.new_event_loop()
    try:
        assert type(loop) is ferroloop.Loop
        assert issubclass(ferroloop.Loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()
    other = ferroloop.new_event_loop()
    assert other is not loop
    other.close()


def test_run_returns_result_and_closes_loop():
    loops = []

    async def main(x):
        lp = asyncio.get_running_loop()
        loops.append(lp)
        await asyncio.sleep(0.001)
        return x * 2

    assert ferroloop.run(main(21)) == 42
    assert isinstance(loops[0], ferroloop.Loop)
    assert loops[0].is_closed()


def test_run_debug():
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert ferroloop.run(main(), debug=True) is True
    assert ferroloop.run(main(), debug=False) is False


def test_run_propagates_exception_and_cancels_leftover_tasks():
    cancelled = []

    async def leftover():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main():
        asyncio.get_running_loop().create_task(leftover())
        await asyncio.sleep(0)
        raise ValueError("main failed")

    with pytest.raises(ValueError, match="main failed"):
        ferroloop.run(main())
    assert cancelled == [True]


def test_run_rejects_non_coroutine():
    with pytest.raises((TypeError, ValueError)):
        ferroloop.run(123)


def test_install_makes_ferroloop_the_default():
    ferroloop.install()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert isinstance(asyncio.get_event_loop_policy(), ferroloop.EventLoopPolicy)
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, ferroloop.Loop)
    finally:
        loop.close()

    async def main():
        return type(asyncio.get_running_loop())

    assert asyncio.run(main()) is ferroloop.Loop
    # (the autouse _restore_policy fixture puts the previous policy back)


def test_policy_restored_after_install_test():
    loop = asyncio.new_event_loop()
    try:
        assert not isinstance(loop, ferroloop.Loop)
    finally:
        loop.close()


def test_event_loop_policy():
    policy = ferroloop.EventLoopPolicy()
    assert isinstance(policy, asyncio.AbstractEventLoopPolicy)
    loop = policy.new_event_loop()
    try:
        assert isinstance(loop, ferroloop.Loop)
    finally:
        loop.close()


def test_runner_with_ferroloop_factory():
    async def main(x):
        return type(asyncio.get_running_loop()), x

    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        assert runner.run(main(1)) == (ferroloop.Loop, 1)
        # The same loop serves several run() calls.
        assert runner.run(main(2)) == (ferroloop.Loop, 2)
        loop = runner.get_loop()
    assert loop.is_closed()


def test_runner_debug(loop_factory):
    async def main():
        return asyncio.get_running_loop().get_debug()

    with asyncio.Runner(debug=True, loop_factory=loop_factory) as runner:
        assert runner.run(main()) is True


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is 3.12+")
def test_asyncio_run_loop_factory():
    async def main():
        return type(asyncio.get_running_loop())

    assert asyncio.run(main(), loop_factory=ferroloop.new_event_loop) is ferroloop.Loop


def test_asyncio_run_with_policy_installed_and_debug():
    ferroloop.install()

    async def main():
        lp = asyncio.get_running_loop()
        return type(lp), lp.get_debug()

    assert asyncio.run(main(), debug=True) == (ferroloop.Loop, True)


def test_set_event_loop_and_get_event_loop(loop):
    asyncio.set_event_loop(loop)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert asyncio.get_event_loop() is loop
