"""Helpers shared by the integration tests (the loop kinds, running a coroutine on one)."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl

import ferroloop

LOOP_NAMES = ["asyncio", "ferroloop"]


def _asyncio_factory() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    assert not isinstance(loop, ferroloop.Loop), "ferroloop's policy leaked from a test"
    return loop


FACTORIES = {"asyncio": _asyncio_factory, "ferroloop": ferroloop.new_event_loop}


def loop_module(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """The module of the running loop's type ("ferroloop" for a ferroloop.Loop)."""
    if loop is None:
        loop = asyncio.get_running_loop()
    return type(loop).__module__


def check_loop(loop_name: str, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Assert that the running loop (or ``loop``) is of the kind the test asked for."""
    module = loop_module(loop)
    if loop_name == "ferroloop":
        assert module.startswith("ferroloop"), f"expected a ferroloop loop, got {module}"
    else:
        assert module.startswith("asyncio"), f"expected a stock asyncio loop, got {module}"


def run(loop_name: str, main, *args, timeout: float = 60.0):
    """Run ``main(*args)`` on a new loop of kind ``loop_name`` (asyncio.Runner), checking the
    loop kind first and failing instead of hanging after ``timeout`` seconds."""

    async def guarded():
        check_loop(loop_name)
        return await asyncio.wait_for(main(*args), timeout)

    with asyncio.Runner(loop_factory=FACTORIES[loop_name]) as runner:
        return runner.run(guarded())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def certdata(name: str) -> str:
    """A certificate file from CPython's own test data (``test/certdata``, installed with
    every pyenv CPython): keycert3.pem is a key and a certificate for ``localhost`` signed
    by pycacert.pem."""
    import test

    path = os.path.join(os.path.dirname(test.__file__), "certdata", name)
    assert os.path.exists(path), f"CPython's test certificates are missing: {path}"
    return path


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts: the client verifies the server as ``localhost``."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certdata("keycert3.pem"))
    client = ssl.create_default_context(cafile=certdata("pycacert.pem"))
    return server, client
