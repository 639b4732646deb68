"""Debug-mode reports about tasks (issue 11, item 3): where a task was created, and how a
slow step of a task is named in the "Executing ... took ... seconds" warning."""

import asyncio
import logging
import time

import pytest


async def co():
    return 1


def make(loop):
    return loop.create_task(co())  # the creation point of a task made by a helper


def test_task_created_by_a_helper_names_the_helper(loop):
    loop.set_debug(True)
    task = make(loop)
    last = task._source_traceback[-1]
    assert last.name == "make"
    assert last.line == "return loop.create_task(co())  # the creation point of a task made by a helper"
    loop.run_until_complete(task)


def test_task_created_at_module_top_level(loop):
    loop.set_debug(True)
    namespace = {"loop": loop, "co": co}
    exec(compile("task = loop.create_task(co())\n", "<top-level>", "exec"), namespace)
    task = namespace["task"]
    last = task._source_traceback[-1]
    assert (last.filename, last.lineno, last.name) == ("<top-level>", 1, "<module>")
    loop.run_until_complete(task)


def test_asyncio_create_task_creation_point(loop):
    loop.set_debug(True)

    async def main():
        task = asyncio.create_task(co())
        return task, task._source_traceback[-1]

    task, last = loop.run_until_complete(main())
    # Both loops: the last frame is asyncio's create_task function, called from main.
    assert last.name == "create_task"
    assert task._source_traceback[-2].name == "main"


async def slow():
    time.sleep(0.06)
    await asyncio.sleep(0)


@pytest.mark.parametrize("make_task", ["loop.create_task", "asyncio.Task"])
def test_slow_task_step_is_reported_by_the_task(loop, caplog, make_task):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.03
    if make_task == "asyncio.Task":  # the C Task (e.g. what a task factory makes)
        task = asyncio.Task(slow(), loop=loop, name="T1")
    else:
        task = loop.create_task(slow(), name="T1")
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(task)
    slow_reports = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("Executing ")
    ]
    assert slow_reports, caplog.records
    assert slow_reports[0].startswith("Executing <Task pending name='T1' coro=<slow() running at")
