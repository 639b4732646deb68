"""ferroloop: asyncio's event loop written in Rust.

Use it like uvloop::

    import ferroloop
    ferroloop.run(main())                  # like asyncio.run(main())

    asyncio.run(main(), loop_factory=ferroloop.new_event_loop)   # Python 3.12+
    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        runner.run(main())

    ferroloop.install()                    # every new asyncio loop is a ferroloop.Loop

All the loop's logic lives in the native module ``ferroloop._ferroloop``; this module only
makes its ``LoopCore`` an ``asyncio.AbstractEventLoop`` and adapts its coroutine methods.
"""

from __future__ import annotations

import asyncio as _asyncio
import sys as _sys
import warnings as _warnings

from . import _ferroloop
from ._ferroloop import Future, Handle, Task, TimerHandle, __version__

__all__ = (
    "Loop", "EventLoopPolicy", "new_event_loop", "run", "install",
    "Future", "Task", "Handle", "TimerHandle",
)


class Loop(_ferroloop.LoopCore, _asyncio.AbstractEventLoop):
    """The ferroloop event loop: an ``asyncio.AbstractEventLoop`` with a native core."""

    # asyncio defines these two as coroutines; the work is native, these await it.
    async def shutdown_asyncgens(self) -> None:
        """Close every async generator still alive (``asyncio.run`` calls this)."""
        pending = self._shutdown_asyncgens()
        if pending is None:
            return
        gathered, agens = pending
        results = await gathered
        for result, agen in zip(results, agens):
            if isinstance(result, Exception):
                self.call_exception_handler({
                    "message": f"an error occurred during closing of asynchronous generator {agen!r}",
                    "exception": result,
                    "asyncgen": agen,
                })

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """Shut the default executor down, waiting for its threads (up to ``timeout``)."""
        pending = self._shutdown_default_executor(timeout)
        if pending is None:
            return
        future, thread, timeout = pending
        try:
            async with _asyncio.timeout(timeout):
                await future
        except TimeoutError:
            _warnings.warn("The executor did not finishing joining "
                           f"its threads within {timeout} seconds.",
                           RuntimeWarning, stacklevel=2)
            self._default_executor.shutdown(wait=False)
        else:
            thread.join()

    # asyncio's sock_* methods are coroutines (create_task() takes them); the work is
    # native (LoopCore._sock_*), these only await its future.
    async def sock_recv(self, sock, n):
        """Receive up to ``n`` bytes from non-blocking socket ``sock``."""
        return await self._sock_recv(sock, n)

    async def sock_recv_into(self, sock, buf):
        """Receive data from ``sock`` into ``buf``; return the number of bytes."""
        return await self._sock_recv_into(sock, buf)

    async def sock_recvfrom(self, sock, bufsize):
        """Receive a datagram of up to ``bufsize`` bytes: ``(data, address)``."""
        return await self._sock_recvfrom(sock, bufsize)

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        """Receive a datagram into ``buf``: ``(nbytes, address)``."""
        return await self._sock_recvfrom_into(sock, buf, nbytes)

    async def sock_sendto(self, sock, data, address):
        """Send a datagram to ``address``; return the number of bytes sent."""
        return await self._sock_sendto(sock, data, address)

    async def sock_sendall(self, sock, data):
        """Send all of ``data`` to ``sock``."""
        return await self._sock_sendall(sock, data)

    async def sock_connect(self, sock, address):
        """Connect ``sock`` to ``address``."""
        return await self._sock_connect(sock, address)

    async def sock_accept(self, sock):
        """Accept a connection on listening ``sock``: ``(conn, address)``."""
        return await self._sock_accept(sock)

    async def sock_sendfile(self, sock, file, offset=0, count=None, *, fallback=True):
        """Send ``file`` over ``sock`` with sendfile(2), else (``fallback``) by chunks."""
        self._sock_sendfile_prologue(sock, file, offset, count)
        try:
            return await self._sock_sendfile_native(sock, file, offset, count)
        except _asyncio.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sock_sendfile_fallback(sock, file, offset, count)

    # asyncio's fallback (file.readinto in the executor, then sock_sendall).
    _sock_sendfile_fallback = _asyncio.BaseEventLoop._sock_sendfile_fallback

    # DNS (native: src/net/dns.rs); asyncio's debug-mode lookup, which logs it, as is.
    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        """``socket.getaddrinfo(host, port, family, type, proto, flags)``, off the loop."""
        return await self._getaddrinfo(host, port, family, type, proto, flags)

    # sock_connect may then skip the coroutine and call _getaddrinfo itself.
    getaddrinfo._ferroloop_native = True

    async def getnameinfo(self, sockaddr, flags=0):
        """``socket.getnameinfo(sockaddr, flags)``, off the loop."""
        return await self._getnameinfo(sockaddr, flags)

    _getaddrinfo_debug = _asyncio.BaseEventLoop._getaddrinfo_debug

    def __del__(self, _warn=_warnings.warn) -> None:
        self._warn_unclosed()


def new_event_loop() -> Loop:
    """Return a new ferroloop event loop."""
    return Loop()


class EventLoopPolicy(_asyncio.DefaultEventLoopPolicy):
    """An asyncio event loop policy whose loops are ferroloop loops."""

    def _loop_factory(self) -> Loop:  # type: ignore[override]
        return Loop()


def install() -> None:
    """Make ferroloop asyncio's default: every new event loop is a ``ferroloop.Loop``."""
    if _sys.version_info >= (3, 12):
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", DeprecationWarning)
            _asyncio.set_event_loop_policy(EventLoopPolicy())
    else:
        _asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main, *, debug: bool | None = None):
    """Run coroutine ``main`` on a new ferroloop loop and return its result, like
    ``asyncio.run``: the loop's async generators and default executor are shut down and
    the loop closed afterwards."""
    with _asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
