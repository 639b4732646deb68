"""``python apps/aiohttp_app.py MODE PORT``: an aiohttp app started with ``web.run_app``, on
ferroloop either through ``ferroloop.install()`` (MODE "install") or ``loop=`` (MODE "loop"),
or on whatever asyncio's policy makes (MODE "asyncio" or "plain": stock asyncio, or
ferroloop under ``python -m ferroloop run``). GET / answers with the running loop's module; SIGTERM
or SIGINT stops it gracefully (run_app's signal handlers: ``loop.add_signal_handler``), and
the cleanup context prints ``CLEANUP <loop module>``."""

import asyncio
import sys

from aiohttp import web

import ferroloop


async def index(request):
    return web.Response(text=type(asyncio.get_running_loop()).__module__)


async def ctx(app):
    yield
    print("CLEANUP", type(asyncio.get_running_loop()).__module__, flush=True)


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    app = web.Application()
    app.router.add_get("/", index)
    app.cleanup_ctx.append(ctx)
    loop = None
    if mode == "install":
        ferroloop.install()
    elif mode == "loop":
        loop = ferroloop.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, loop=loop, print=None)


if __name__ == "__main__":
    main()
