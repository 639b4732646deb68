"""tornado on ferroloop: ``IOLoop.current()`` inside a coroutine run by ferroloop, a tornado
HTTP server and ``AsyncHTTPClient``, ``add_future``, ``run_in_executor``, ``add_callback`` /
``call_later``, and tornado's own ``IOLoop.run_sync`` after ``ferroloop.install()``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import urllib.request

import pytest

import ferroloop
from _integ import check_loop, run

tornado = pytest.importorskip("tornado")
from tornado.httpclient import AsyncHTTPClient  # noqa: E402
from tornado.httpserver import HTTPServer  # noqa: E402
from tornado.ioloop import IOLoop  # noqa: E402
from tornado.netutil import bind_sockets  # noqa: E402
from tornado.web import Application, RequestHandler  # noqa: E402


class LoopHandler(RequestHandler):
    def get(self):
        self.write({"loop": type(asyncio.get_running_loop()).__module__})


class ShaHandler(RequestHandler):
    def post(self):
        self.write({"sha256": hashlib.sha256(self.request.body).hexdigest(),
                    "size": len(self.request.body)})


class SleepHandler(RequestHandler):
    async def get(self):
        await asyncio.sleep(0.05)
        self.write("slept")


def make_server():
    app = Application([("/loop", LoopHandler), ("/sha", ShaHandler), ("/sleep", SleepHandler)])
    server = HTTPServer(app, max_body_size=16 * 1024 * 1024)
    sockets = bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


async def exercise(loop_name: str) -> None:
    loop = asyncio.get_running_loop()
    io_loop = IOLoop.current()
    # tornado wraps the running asyncio loop
    assert io_loop.asyncio_loop is loop
    check_loop(loop_name, io_loop.asyncio_loop)

    # add_future: the callback gets the future, on the loop's thread
    fut = loop.create_future()
    seen = []
    done = asyncio.Event()
    io_loop.add_future(fut, lambda f: (seen.append((f.result(), threading.get_ident())),
                                       done.set()))
    loop.call_later(0.01, fut.set_result, 42)
    await asyncio.wait_for(done.wait(), 5)
    assert seen == [(42, threading.get_ident())]

    # run_in_executor: a blocking function in tornado's (the loop's) default executor
    def blocking(n):
        return threading.get_ident(), sum(range(n))

    ident, total = await io_loop.run_in_executor(None, blocking, 100_000)
    assert total == sum(range(100_000))
    assert ident != threading.get_ident()

    # add_callback from another thread and call_later
    event = asyncio.Event()
    threading.Thread(target=io_loop.add_callback, args=(event.set,)).start()
    await asyncio.wait_for(event.wait(), 5)
    later = asyncio.Event()
    io_loop.call_later(0.02, later.set)
    await asyncio.wait_for(later.wait(), 5)

    # HTTP server + AsyncHTTPClient
    server, port = make_server()
    client = AsyncHTTPClient()
    try:
        base = f"http://127.0.0.1:{port}"
        r = await client.fetch(base + "/loop")
        assert r.code == 200
        assert json.loads(r.body)["loop"].startswith(loop_name)
        body = bytes(range(256)) * 4096  # 1 MiB
        r = await client.fetch(base + "/sha", method="POST", body=body,
                               headers={"Content-Type": "application/octet-stream"})
        assert json.loads(r.body) == {"sha256": hashlib.sha256(body).hexdigest(),
                                      "size": len(body)}
        rs = await asyncio.gather(*(client.fetch(base + "/sleep") for _ in range(30)))
        assert [r.body for r in rs] == [b"slept"] * 30
    finally:
        client.close()
        server.stop()
        await server.close_all_connections()


def test_tornado_on_running_loop(loop_name):
    run(loop_name, exercise, loop_name)


# tornado's AsyncIOLoop.make_current() calls asyncio.get_event_loop(), which warns under a
# freshly installed policy (ferroloop's or asyncio's) with no current loop
@pytest.mark.filterwarnings("ignore:There is no current event loop:DeprecationWarning")
def test_tornado_ioloop_run_sync(loop_name):
    """tornado's own IOLoop (AsyncIOLoop) makes its loop with asyncio.new_event_loop():
    after ferroloop.install() that is a ferroloop.Loop."""
    if loop_name == "ferroloop":
        ferroloop.install()
    io_loop = IOLoop()
    try:
        check_loop(loop_name, io_loop.asyncio_loop)
        io_loop.run_sync(lambda: exercise(loop_name), timeout=60)
    finally:
        io_loop.close(all_fds=True)


@pytest.mark.filterwarnings("ignore:There is no current event loop:DeprecationWarning")
def test_tornado_classic_ioloop_start(loop_name):
    """The classic tornado main: ``app.listen(port)`` then ``IOLoop.current().start()``, with
    no loop running (tornado gets one from asyncio.get_event_loop(), i.e. the policy: after
    ``ferroloop.install()`` a ferroloop loop); a request from another thread, then ``stop``."""
    if loop_name == "ferroloop":
        ferroloop.install()
    server = Application([("/loop", LoopHandler)]).listen(0, "127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    io_loop = IOLoop.current()
    bodies = []

    def client():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/loop", timeout=10) as r:
                bodies.append(json.loads(r.read()))
        finally:
            io_loop.add_callback(io_loop.stop)

    try:
        check_loop(loop_name, io_loop.asyncio_loop)
        thread = threading.Thread(target=client)
        thread.start()
        io_loop.start()
        thread.join()
        assert len(bodies) == 1 and bodies[0]["loop"].startswith(loop_name), bodies
    finally:
        server.stop()
        io_loop.close(all_fds=True)
