"""Tests run by pytest-asyncio on ferroloop (see conftest.py: the loop factory hook)."""

import asyncio

import pytest
import pytest_asyncio


def is_ferroloop(loop) -> bool:
    return type(loop).__module__.startswith("ferroloop")


@pytest_asyncio.fixture
async def echo_server():
    assert is_ferroloop(asyncio.get_running_loop())

    async def handle(reader, writer):
        writer.write(await reader.read(1024))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.mark.asyncio
async def test_loop_is_ferroloop():
    loop = asyncio.get_running_loop()
    assert is_ferroloop(loop), type(loop)
    assert is_ferroloop(asyncio.get_event_loop())
    task = asyncio.current_task()
    assert type(task).__module__.startswith("ferroloop"), type(task)


@pytest.mark.asyncio
async def test_async_fixture_and_network(echo_server):
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_server)
    writer.write(b"hello ferroloop")
    await writer.drain()
    assert await reader.read() == b"hello ferroloop"
    writer.close()
    await writer.wait_closed()
    assert is_ferroloop(asyncio.get_running_loop())
