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
import operator as _operator
import os as _os
import signal as _signal
import sys as _sys
import warnings as _warnings
from asyncio import base_events as _base_events
from asyncio import constants as _constants
from asyncio import events as _events
from asyncio import selector_events as _selector_events
from asyncio import sslproto as _sslproto
from asyncio import transports as _transports
from asyncio import unix_events as _unix_events

from . import _ferroloop
from ._ferroloop import Future, Handle, Task, TimerHandle, __version__

__all__ = (
    "Loop", "EventLoopPolicy", "new_event_loop", "run", "install",
    "Future", "Task", "Handle", "TimerHandle",
)


class _CoreTransport:
    """What every native transport's Python class hands to its core (``self._core``, a
    ``_ferroloop.StreamCore`` or ``DatagramCore``): the classes below exist to be
    ``asyncio`` transports (``BaseTransport``'s ``__slots__`` keep a native type from
    being one); put first among their bases, these methods take precedence over the
    abstract ones."""

    __slots__ = ()

    def __repr__(self):
        return self._core._repr(type(self).__name__)

    def __del__(self):
        self._core._del(self)

    # asyncio's BaseTransport.get_extra_info (inherited, as asyncio's own transports do, so
    # that a patch of it reaches these too) reads self._extra: the core's view of its extra
    # info, through a C-level getter.
    _extra = property(_operator.attrgetter("_core._extra"))

    def is_closing(self):
        return self._core.is_closing()

    def close(self):
        self._core.close()

    def set_protocol(self, protocol):
        self._core.set_protocol(protocol)

    def get_protocol(self):
        return self._core.get_protocol()

    @property
    def _loop(self):
        return self._core._loop


class _CoreReading:
    """The reading side of a native transport."""

    __slots__ = ()

    def is_reading(self):
        return self._core.is_reading()

    def pause_reading(self):
        self._core.pause_reading()

    def resume_reading(self):
        self._core.resume_reading()


class _CoreWriting:
    """The writing side of a native transport: abort and flow control (before
    ``_FlowControlMixin`` among the bases, whose state the core keeps)."""

    __slots__ = ()

    def abort(self):
        self._core.abort()

    def set_write_buffer_limits(self, high=None, low=None):
        self._core.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self):
        return self._core.get_write_buffer_size()

    def get_write_buffer_limits(self):
        return self._core.get_write_buffer_limits()

    @property
    def _protocol_paused(self):
        return self._core._protocol_paused


class _CoreSocket:
    """What asyncio's code uses of a selector transport's socket (``loop.sendfile()``,
    ``start_tls()``, ``SSLProtocol``)."""

    __slots__ = ()

    def _force_close(self, exc):
        self._core._force_close(exc)

    @property
    def _sock(self):
        return self._core._sock

    @property
    def _sock_fd(self):
        return self._core._sock_fd


class _SocketTransport(_CoreTransport, _CoreReading, _CoreWriting, _CoreSocket,
                       _transports._FlowControlMixin, _asyncio.Transport):
    """A stream transport over a TCP or Unix socket. All of it is native
    (``_ferroloop.StreamCore``); this class makes it an ``asyncio.Transport`` (and a
    ``_FlowControlMixin``, which ``loop.sendfile()``'s fallback checks)."""

    __slots__ = ("_core", "__dict__", "__weakref__")
    _start_tls_compatible = True
    _sendfile_compatible = _constants._SendfileMode.TRY_NATIVE

    def __init__(self, core):
        self._core = core

    # write(data), writelines(list_of_data) and is_closing() are the core's, installed
    # by _register_transport_class below as native methods of this class (a call runs no
    # Python frame and CPython's interpreter specializes it).

    def write_eof(self):
        self._core.write_eof()

    def can_write_eof(self):
        return True

    # What a readable / writable event does: the callbacks of the asyncio.Handle an error
    # escaping a read or a write is reported with, as asyncio's transports report it
    # (defined in each class: the report names the callback's __qualname__).
    def _read_ready(self):
        self._core._read_ready()

    def _write_ready(self):
        self._core._write_ready()

    def _make_empty_waiter(self):
        return self._core._make_empty_waiter()

    def _reset_empty_waiter(self):
        self._core._reset_empty_waiter()


_ferroloop._register_transport_class(_SocketTransport)


class _SSLProtocol(_ferroloop.SSLProtocolCore, _asyncio.BufferedProtocol):
    """asyncio's ``sslproto.SSLProtocol`` (TLS over ``SSLObject`` + ``MemoryBIO``), native:
    ``_ferroloop.SSLProtocolCore`` (``src/net/tls.rs``). This class makes it an
    ``asyncio.BufferedProtocol``, which a native base cannot be."""

    __slots__ = ()

    def __init__(self, *args, **kwargs):
        # asyncio's __init__ ends by making the app transport.
        self._get_app_transport()


class _SSLTransport(_sslproto._SSLProtocolTransport):
    """asyncio's ``_SSLProtocolTransport`` over the native ``_SSLProtocol``."""

    # Replaced by a native method descriptor at registration (no Python frame per write).
    def write(self, data):
        self._ssl_protocol._app_write(data)

    def _test__append_write_backlog(self, data):
        self._ssl_protocol._append_write_backlog(data)


_ferroloop._register_ssl_classes(_SSLProtocol, _SSLTransport)


def _with_sslproto(func):
    """asyncio's ``func`` with its module's ``sslproto.SSLProtocol`` read as ferroloop's
    native ``_SSLProtocol`` (``loop.start_tls`` makes one directly)."""
    import types
    globs = dict(func.__globals__)
    globs["sslproto"] = types.SimpleNamespace(SSLProtocol=_SSLProtocol)
    new = types.FunctionType(func.__code__, globs, func.__name__, func.__defaults__,
                             func.__closure__)
    new.__kwdefaults__ = func.__kwdefaults__
    new.__qualname__ = func.__qualname__
    new.__doc__ = func.__doc__
    return new


class _PipeTransportBase(_CoreTransport):
    """What the two pipe transports share; all of it is native (``_ferroloop.StreamCore``
    of a pipe kind, ``src/net/stream/pipe.rs``)."""

    __slots__ = ()

    # What asyncio's pipe transports have and code around them reads.
    @property
    def _protocol(self):
        return self._core.get_protocol()

    @property
    def _fileno(self):
        return self._core._sock_fd

    @property
    def _pipe(self):
        return self._core._pipe

    @_pipe.setter
    def _pipe(self, value):
        # asyncio's tests forget a pipe they closed themselves (no unclosed warning then).
        if value is not None:
            raise ValueError("only None can be assigned to _pipe")
        self._core._forget_pipe()


class _ReadPipeTransport(_PipeTransportBase, _CoreReading, _asyncio.ReadTransport):
    """``loop.connect_read_pipe()``'s transport (asyncio's ``_UnixReadPipeTransport``)."""

    __slots__ = ("_core", "__dict__", "__weakref__")
    max_size = 256 * 1024

    def __init__(self, core):
        self._core = core

    def _read_ready(self):  # see _SocketTransport._read_ready
        self._core._read_ready()


class _WritePipeTransport(_PipeTransportBase, _CoreWriting, _transports._FlowControlMixin,
                          _asyncio.WriteTransport):
    """``loop.connect_write_pipe()``'s transport (asyncio's ``_UnixWritePipeTransport``)."""

    __slots__ = ("_core", "__dict__", "__weakref__")

    def __init__(self, core):
        self._core = core

    # Replaced by a native method descriptor at registration (no Python frame per write).
    def write(self, data):
        self._core._pipe_write(data)

    def write_eof(self):
        self._core._pipe_write_eof()

    def can_write_eof(self):
        return True

    def close(self):
        self._core._pipe_write_eof()

    def _write_ready(self):  # see _SocketTransport._read_ready
        self._core._write_ready()


_ferroloop._register_pipe_transport_classes(_ReadPipeTransport, _WritePipeTransport)


class _DatagramTransport(_CoreTransport, _CoreReading, _CoreWriting, _CoreSocket,
                         _transports._FlowControlMixin, _asyncio.DatagramTransport):
    """A datagram transport over a UDP or Unix datagram socket. All of it is native
    (``_ferroloop.DatagramCore``); this class makes it an ``asyncio.DatagramTransport``
    (and, through ``_FlowControlMixin``, an ``asyncio.Transport``, as asyncio's is)."""

    __slots__ = ("_core", "__dict__", "__weakref__")

    def __init__(self, core):
        self._core = core

    # Replaced by native method descriptors at registration (no Python frame per send).
    def sendto(self, data, addr=None):
        self._core.sendto(data, addr)

    def is_closing(self):
        return self._core.is_closing()

    @property
    def _address(self):
        return self._core._address

    def _read_ready(self):  # see _SocketTransport._read_ready
        self._core._read_ready()

    def _sendto_ready(self):
        self._core._sendto_ready()


_ferroloop._register_datagram_transport_class(_DatagramTransport)


_NATIVELY_WATCHED = tuple(
    getattr(_unix_events, name) for name in ("ThreadedChildWatcher", "PidfdChildWatcher")
    if hasattr(_unix_events, name))


def _user_child_watcher():
    """The child watcher a subprocess must be handed to, or None to watch it natively.

    Python 3.11-3.13 have child watchers (``asyncio.set_child_watcher``). ferroloop watches
    its children natively (a pidfd in its reactor, see ``src/process``) when the policy
    has no watcher or one of the two kinds that watch only the pids handed to them
    (``ThreadedChildWatcher``, asyncio's default, and ``PidfdChildWatcher``): bypassing
    those is unobservable but for their thread and timing. A watcher that reaps children
    itself (``SafeChildWatcher``, ``FastChildWatcher``, ``MultiLoopChildWatcher`` call
    ``waitpid`` on SIGCHLD, ``FastChildWatcher`` with ``-1``, so a child watched natively
    would be reaped behind the loop's back) or one of the user's own is honoured exactly as
    asyncio does: ``with watcher:``, ``is_active()``, ``add_child_handler``."""
    if not _NATIVELY_WATCHED:
        return None                      # 3.14+: no child watchers
    policy = _events.get_event_loop_policy()
    if (type(policy).get_child_watcher is _unix_events._UnixDefaultEventLoopPolicy.get_child_watcher
            and hasattr(policy, "_watcher")):
        watcher = policy._watcher        # not get_child_watcher(): it would make one
    else:
        try:
            with _warnings.catch_warnings():
                _warnings.simplefilter("ignore", DeprecationWarning)
                watcher = policy.get_child_watcher()
        except NotImplementedError:
            return None
    if watcher is None or type(watcher) in _NATIVELY_WATCHED:
        return None
    return watcher


# Where pidfd_open is not available (Linux < 5.3, seccomp): asyncio's thread per child.
_fallback_watcher = None


def _borrowed(cls, *names):
    """asyncio's own connection-setup methods (address resolution, happy eyeballs, the
    ``Server`` object, TLS via ``SSLProtocol``), bound to ferroloop's loop: they call its
    native pieces (``sock_connect``, ``_make_socket_transport``, ``_start_serving``)."""
    return {name: cls.__dict__[name] for name in names if name in cls.__dict__}


class Loop(_ferroloop.LoopCore, _asyncio.AbstractEventLoop):
    """The ferroloop event loop: an ``asyncio.AbstractEventLoop`` with a native core."""

    locals().update(_borrowed(
        _base_events.BaseEventLoop,
        "create_connection", "_create_connection_transport", "_ensure_resolved",
        "_connect_sock", "create_server", "_create_server_getaddrinfo",
        "connect_accepted_socket", "create_datagram_endpoint",
        "sendfile", "_sendfile_fallback",
        "connect_read_pipe", "connect_write_pipe",
    ))
    start_tls = _with_sslproto(_base_events.BaseEventLoop.start_tls)
    locals().update(_borrowed(_selector_events.BaseSelectorEventLoop, "_accept_connection2"))
    locals().update(_borrowed(
        _unix_events._UnixSelectorEventLoop,
        "create_unix_connection", "create_unix_server",
    ))
    # Subprocesses: asyncio's argument checks and its transport (subprocess.Popen takes
    # every Popen argument), over ferroloop's pipes; the child's exit is watched natively.
    locals().update(_borrowed(
        _base_events.BaseEventLoop, "subprocess_exec", "subprocess_shell", "_log_subprocess"))
    # asyncio's per-version hop(s) from the watcher to transport._process_exited.
    _child_watcher_callback = _unix_events._UnixSelectorEventLoop._child_watcher_callback

    async def _make_subprocess_transport(self, protocol, args, shell, stdin, stdout, stderr,
                                         bufsize, extra=None, **kwargs):
        watcher = _user_child_watcher()
        if watcher is not None:
            # A watcher that must see every child (see _user_child_watcher): asyncio's path.
            return await _unix_events._UnixSelectorEventLoop._make_subprocess_transport(
                self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=extra,
                **kwargs)
        waiter = self.create_future()
        transp = _unix_events._UnixSubprocessTransport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize, waiter=waiter,
            extra=extra, **kwargs)
        pid = transp.get_pid()
        try:
            self._watch_child(pid, self._child_watcher_callback, transp)
        except OSError:
            global _fallback_watcher
            if _fallback_watcher is None:
                _fallback_watcher = _unix_events.ThreadedChildWatcher()
            _fallback_watcher.add_child_handler(pid, self._child_watcher_callback, transp)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise
        return transp

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None, *,
                            server_side=False, server_hostname=None, extra=None, server=None,
                            ssl_handshake_timeout=_constants.SSL_HANDSHAKE_TIMEOUT,
                            ssl_shutdown_timeout=_constants.SSL_SHUTDOWN_TIMEOUT):
        """TLS: the native ``_SSLProtocol`` (asyncio's ``SSLProtocol`` ported to Rust) over
        a native transport."""
        ssl_protocol = _SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    async def _sendfile_native(self, transp, file, offset, count):
        """``loop.sendfile()`` on a native transport: its queue drained and reading
        paused, the socket is lent to ``sock_sendfile`` (as asyncio's selector loop does)."""
        resume_reading = transp.is_reading()
        transp.pause_reading()
        await transp._make_empty_waiter()
        transp._core._sendfile_begin()
        try:
            return await self.sock_sendfile(transp._sock, file, offset, count,
                                            fallback=False)
        finally:
            transp._core._sendfile_end()
            transp._reset_empty_waiter()
            if resume_reading:
                transp.resume_reading()

    if _sys.version_info >= (3, 13):
        def __init__(self):
            # create_unix_server(cleanup_socket=True) records its sockets here.
            self._unix_server_sockets = {}

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
    # native (LoopCore._sock_*), which returns the result when the syscall completes at
    # once (no future then, as asyncio makes none), else a future to await.
    async def sock_recv(self, sock, n):
        """Receive up to ``n`` bytes from non-blocking socket ``sock``."""
        r = self._sock_recv(sock, n)
        return (await r) if r.__class__ is Future else r

    async def sock_recv_into(self, sock, buf):
        """Receive data from ``sock`` into ``buf``; return the number of bytes."""
        r = self._sock_recv_into(sock, buf)
        return (await r) if r.__class__ is Future else r

    async def sock_recvfrom(self, sock, bufsize):
        """Receive a datagram of up to ``bufsize`` bytes: ``(data, address)``."""
        r = self._sock_recvfrom(sock, bufsize)
        return (await r) if r.__class__ is Future else r

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        """Receive a datagram into ``buf``: ``(nbytes, address)``."""
        r = self._sock_recvfrom_into(sock, buf, nbytes)
        return (await r) if r.__class__ is Future else r

    async def sock_sendto(self, sock, data, address):
        """Send a datagram to ``address``; return the number of bytes sent."""
        r = self._sock_sendto(sock, data, address)
        return (await r) if r.__class__ is Future else r

    async def sock_sendall(self, sock, data):
        """Send all of ``data`` to ``sock``."""
        r = self._sock_sendall(sock, data)
        if r is not None:
            await r

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


def _after_fork_in_child() -> None:
    """What asyncio 3.12+ does in a forked child (``asyncio.events.on_fork``), done on
    3.11 too for ferroloop's state: no running loop, ferroloop's policy forgets its loop,
    and a wakeup fd that is a ferroloop loop's signal socket (shared with the parent, whose
    loop would run its handlers for the child's signals) is reset."""
    if _sys.version_info >= (3, 12):
        return  # asyncio's own hook does all of it
    _asyncio.events._set_running_loop(None)
    policy = _asyncio.events._event_loop_policy
    if isinstance(policy, EventLoopPolicy):
        policy._local = _asyncio.events.BaseDefaultEventLoopPolicy._Local()
    ours = _ferroloop._signal_wakeup_fd()
    if ours != -1:
        try:
            old = _signal.set_wakeup_fd(-1)
            if old != ours:
                _signal.set_wakeup_fd(old)  # not ferroloop's: leave it as it was
        except (ValueError, OSError):
            pass  # forked from a thread other than the main one: nothing to reset


if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_after_fork_in_child)
    # The resolver pool's lock must not be held by one of its threads at the fork.
    _os.register_at_fork(before=_ferroloop._resolver_before_fork,
                         after_in_parent=_ferroloop._resolver_after_fork_in_parent,
                         after_in_child=_ferroloop._resolver_after_fork_in_child)


def run(main, *, debug: bool | None = None):
    """Run coroutine ``main`` on a new ferroloop loop and return its result, like
    ``asyncio.run``: the loop's async generators and default executor are shut down and
    the loop closed afterwards."""
    with _asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
