"""Cancelling tasks that await each other recurses natively (task.cancel() cancels the
awaited task, which cancels the one it awaits...). asyncio's C Task bounds that recursion
with the interpreter's recursion limit (RecursionError); ferroloop must do the same and
never overflow the C stack (issue 11, item 0: a segfault on 3.13).

Each program runs in a fresh interpreter: a crash must fail the test, not the run.
"""

import subprocess
import sys
import textwrap

import pytest

PRELUDE = textwrap.dedent(
    """
    import asyncio, sys
    if sys.argv[1] == "ferroloop":
        import ferroloop
        loop = ferroloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda loop, context: None)

    def cancel(task):
        try:
            return repr(task.cancel())
        except RecursionError as e:
            return "RecursionError: " + str(e)
    """
)

CYCLE = PRELUDE + textwrap.dedent(
    """
    T = {}
    async def a(): await T["b"]
    async def b(): await T["a"]
    async def main():
        T["a"] = asyncio.create_task(a()); T["b"] = asyncio.create_task(b())
        await asyncio.sleep(0.01)
        print(cancel(T["a"]))
        print(T["a"].cancelling() > 100, T["b"].cancelling() > 100)
        print(cancel(T["b"]))
        for t in T.values():
            t._log_destroy_pending = False
    loop.run_until_complete(main())
    print("survived")
    """
)

CHAIN = PRELUDE + textwrap.dedent(
    """
    N = int(sys.argv[2])
    async def leaf(): await asyncio.sleep(3600)
    async def link(t): await t
    async def main():
        ts = [asyncio.create_task(leaf())]
        for _ in range(N - 1):
            ts.append(asyncio.create_task(link(ts[-1])))
        await asyncio.sleep(0.01)
        print(cancel(ts[-1]))
        # Unwind from the leaf: no deep recursion, every task ends.
        ts[0].cancel()
        await asyncio.gather(*ts, return_exceptions=True)
        print(sum(t.cancelled() for t in ts))
    loop.run_until_complete(main())
    print("survived")
    """
)


def run(code, *args):
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    return proc.stdout.splitlines()


RECURSION = "RecursionError: maximum recursion depth exceeded while calling a Python object"


@pytest.mark.parametrize("loop_name", ["asyncio", "ferroloop"])
def test_cancel_tasks_awaiting_each_other_in_a_cycle(loop_name):
    assert run(CYCLE, loop_name) == [RECURSION, "True True", RECURSION, "survived"]


@pytest.mark.parametrize("loop_name", ["asyncio", "ferroloop"])
def test_cancel_head_of_a_10000_task_chain(loop_name):
    assert run(CHAIN, loop_name, "10000") == [RECURSION, "10000", "survived"]


@pytest.mark.parametrize("loop_name", ["asyncio", "ferroloop"])
def test_cancel_head_of_a_short_chain(loop_name):
    assert run(CHAIN, loop_name, "300") == ["True", "300", "survived"]
