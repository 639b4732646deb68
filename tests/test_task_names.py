"""Default task names come from asyncio's one sequence (issue 11, item 6): ferroloop's
tasks and C `asyncio.Task`s, on any loop, share the C Task's counter."""

import asyncio

import ferroloop


async def co():
    pass


def number(task):
    return int(task.get_name().removeprefix("Task-"))


def test_default_names_are_one_sequence_across_constructions(loop):
    other = asyncio.new_event_loop()
    try:
        tasks = [
            loop.create_task(co()),
            asyncio.Task(co(), loop=loop),  # the C Task
            loop.create_task(co()),
            asyncio.Task(co(), loop=other),  # a C Task on a stock loop
            loop.create_task(co()),
            ferroloop.Task(co(), loop=loop),
            asyncio.Task(co(), loop=loop),
        ]
        first = number(tasks[0])
        assert [number(t) for t in tasks] == list(range(first, first + len(tasks)))
        loop.run_until_complete(asyncio.gather(*(t for t in tasks if t.get_loop() is loop)))
        other.run_until_complete(tasks[3])
    finally:
        other.close()


def test_named_tasks_take_no_number(loop):
    a = loop.create_task(co())
    loop.create_task(co(), name="x")
    asyncio.Task(co(), loop=loop, name="y")
    b = asyncio.Task(co(), loop=loop)
    assert number(b) == number(a) + 1
    loop.run_until_complete(asyncio.gather(*asyncio.all_tasks(loop)))
