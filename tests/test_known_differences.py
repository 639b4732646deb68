"""Differences from asyncio kept on purpose (README, "Known differences"), each pinned by a
test: either it checks what both loops do, or it asserts asyncio's behaviour and is a strict
xfail on ferroloop (``ferroloop_bug``), so that a change on either side shows up."""

import asyncio
import sys

import pytest

import ferroloop

PY313 = sys.version_info >= (3, 13)


def test_equal_deadlines_run_in_scheduling_order(loop, loop_name):
    """ferroloop runs timers with equal deadlines first-scheduled first; asyncio's order
    is whatever heapq's sift leaves (its docs call it undefined)."""
    out = []
    when = loop.time() + 0.01
    for i in range(10):
        loop.call_at(when, out.append, i)
    loop.call_at(when + 0.01, loop.stop)
    loop.run_forever()
    if loop_name == "ferroloop":
        assert out == list(range(10))
    else:
        assert out == [0, 2, 6, 5, 9, 8, 7, 1, 3, 4]


def test_nan_deadline_sorts_first(loop, loop_name):
    """A NaN deadline compares false with everything: in asyncio's heap it stays wherever
    heappush left it (below a timer scheduled before it); ferroloop puts it first. What
    happens to a NaN timer at the top is asyncio's (see test_timer_edge_values.py)."""
    out = []
    loop.call_later(0.01, out.append, "t1")
    loop.call_later(float("nan"), out.append, "nan")
    loop.call_later(0.03, loop.stop)
    if loop_name == "asyncio":
        loop.run_forever()
        assert out == ["t1", "nan"]
    elif PY313:
        with pytest.raises(ValueError, match="^cannot convert float NaN to integer$"):
            loop.run_forever()
        assert out == []
    else:
        loop.run_forever()
        assert out == ["nan", "t1"]


def test_call_at_converts_when_to_float(loop, loop_name):
    """ferroloop stores a timer's deadline as a float: TimerHandle.when() is a float
    and a `when` that is not a real number fails in call_at itself. asyncio keeps the
    object as given (and fails later, when it is compared or subtracted)."""
    h = loop.call_at(5, print)
    h.cancel()
    if loop_name == "ferroloop":
        assert type(h.when()) is float and h.when() == 5.0
        with pytest.raises(TypeError):
            loop.call_at("x", print)
        with pytest.raises(OverflowError):
            loop.call_at(10**400, print)
    else:
        assert type(h.when()) is int and h.when() == 5

async def co():
    return 1


@pytest.mark.ferroloop_bug(
    "C asyncio.Future methods called unbound see the C base's untouched state "
    "(issue 7, item 7)"
)
def test_c_future_methods_called_unbound(loop):
    fut = loop.create_future()
    fut.set_result(7)
    assert asyncio.Future.done(fut)
    assert asyncio.Future.result(fut) == 7


@pytest.mark.ferroloop_bug(
    "C asyncio.Task methods called unbound see the C base's untouched state "
    "(issue 7, item 7)"
)
def test_c_task_methods_called_unbound(loop):
    task = loop.create_task(co())
    loop.run_until_complete(task)
    assert asyncio.Task.done(task)
    assert asyncio.Task.get_loop(task) is loop


def test_what_c_methods_called_unbound_see_on_ferroloop_objects():
    """What the difference is, exactly: the C part of a ferroloop Future/Task is never
    initialized, so the C methods behave as on an uninitialized C Future (they raise;
    `done()`/`cancelled()` are False). Our own methods are unaffected."""
    loop = ferroloop.new_event_loop()
    try:
        fut = loop.create_future()
        fut.set_result(7)
        assert fut.done() and fut.result() == 7
        assert asyncio.Future.done(fut) is False
        assert asyncio.Future.cancelled(fut) is False
        with pytest.raises(asyncio.InvalidStateError, match="Future object is not initialized"):
            asyncio.Future.result(fut)
        with pytest.raises(RuntimeError, match="Future object is not initialized"):
            asyncio.Future.get_loop(fut)
        with pytest.raises(RuntimeError, match="uninitialized Future object"):
            asyncio.Future.add_done_callback(fut, print)
        task = loop.create_task(co())
        assert asyncio.Task.done(task) is False
        with pytest.raises(RuntimeError, match="Future object is not initialized"):
            asyncio.Task.get_loop(task)
        assert loop.run_until_complete(task) == 1
    finally:
        loop.close()

def test_future_source_traceback_has_no_create_future_frame(loop, loop_name):
    """In debug mode asyncio's Future records its creation point from inside the Python
    method `BaseEventLoop.create_future`, so its `_source_traceback` ends with that frame
    and its repr says "created at .../asyncio/base_events.py:N". ferroloop's
    `create_future` is native and has no Python frame (as uvloop's): the traceback ends
    with the caller, and the repr names the caller's line."""

    def make():
        return loop.create_future()

    loop.set_debug(True)
    fut = make()
    names = [frame.name for frame in fut._source_traceback]
    last_file = fut._source_traceback[-1].filename
    if loop_name == "ferroloop":
        assert names[-1] == "make"
        assert last_file == __file__
        assert f"created at {__file__}:" in repr(fut)
    else:
        assert names[-2:] == ["make", "create_future"]
        assert last_file.endswith("base_events.py")
        assert "base_events.py:" in repr(fut)
    fut.cancel()


async def _connect_once(making_server, seen):
    """Serves with the server ``making_server`` makes, connects once, waits until the
    server side recorded something in ``seen``, and closes both."""
    server = await making_server
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(10):
        if seen:
            break
        await asyncio.sleep(0.01)
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()


def test_accepted_connection_protocol_made_in_the_accept_callback(loop, loop_name):
    """asyncio calls a server's protocol factory in a Task started per accepted
    connection (``_accept_connection2``); ferroloop calls it in the accept callback."""
    seen = []

    def factory():
        seen.append(asyncio.current_task())
        return asyncio.Protocol()

    loop.run_until_complete(_connect_once(loop.create_server(factory, "127.0.0.1", 0), seen))
    assert len(seen) == 1
    if loop_name == "ferroloop":
        assert seen == [None]
    else:
        assert isinstance(seen[0], asyncio.Task)


def test_transport_hot_methods_are_native_methods(loop, loop_name):
    """ferroloop's TCP transport is a ``ferroloop._SocketTransport`` (an
    ``asyncio.Transport``) whose ``write``, ``writelines`` and ``is_closing`` are native
    method descriptors of the class (not instance attributes, so ``transport.write``
    resolves as for any method); asyncio's are Python functions."""

    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        assert isinstance(transport, asyncio.Transport)
        in_instance = {"write", "writelines", "is_closing"} & set(getattr(transport, "__dict__", {}))
        kinds = {name: type(getattr(type(transport), name)).__name__
                 for name in ("write", "writelines", "is_closing")}
        transport.close()
        server.close()
        await server.wait_closed()
        return in_instance, kinds

    in_instance, kinds = loop.run_until_complete(main())
    assert in_instance == set()
    if loop_name == "ferroloop":
        assert set(kinds.values()) == {"method_descriptor"}
    else:
        assert set(kinds.values()) == {"function"}


def test_datagram_transport_hot_methods_are_native_methods(loop, loop_name):
    """The same for ferroloop's datagram transport (``ferroloop._DatagramTransport``, an
    ``asyncio.DatagramTransport``): ``sendto`` and ``is_closing`` are native method
    descriptors of the class; asyncio's are Python functions. Every call shape of
    ``sendto`` works as asyncio's, and the wrong ones raise its TypeError."""
    import socket

    async def main():
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        addr = receiver.getsockname()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        in_instance = {"sendto", "is_closing"} & set(getattr(transport, "__dict__", {}))
        kinds = {name: type(getattr(type(transport), name)).__name__
                 for name in ("sendto", "is_closing")}
        transport.sendto(b"positional", addr)
        transport.sendto(b"keyword", addr=addr)
        transport.sendto(data=b"both keywords", addr=addr)
        got = [receiver.recv(100) for _ in range(3)]
        errors = []
        for args, kw in [((), {}), ((b"x", addr, 1), {}), ((b"x",), {"where": addr})]:
            with pytest.raises(TypeError):
                transport.sendto(*args, **kw)
            errors.append(args)
        with pytest.raises(TypeError):
            transport.is_closing(1)
        closing = transport.is_closing()
        transport.close()
        receiver.close()
        return in_instance, kinds, got, closing, transport.is_closing()

    in_instance, kinds, got, closing, closed = loop.run_until_complete(main())
    assert got == [b"positional", b"keyword", b"both keywords"]
    assert (closing, closed) == (False, True)
    assert in_instance == set()
    if loop_name == "ferroloop":
        assert set(kinds.values()) == {"method_descriptor"}
    else:
        assert set(kinds.values()) == {"function"}


def test_tcp_nodelay_on_a_socket_made_with_proto_0(loop, loop_name):
    """asyncio documents TCP_NODELAY "for all TCP connections", but its code skips a
    socket whose ``proto`` is 0 (``socket.socket()``, as uvicorn makes its listening
    socket) and the connections it accepts; ferroloop sets it on those too, as uvloop."""
    import socket

    seen = {}

    class Proto(asyncio.Protocol):
        def connection_made(self, transport):
            sock = transport.get_extra_info("socket")
            seen["nodelay"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    lsock = socket.socket()  # proto 0
    lsock.bind(("127.0.0.1", 0))
    loop.run_until_complete(_connect_once(loop.create_server(Proto, sock=lsock), seen))
    assert (seen["nodelay"] != 0) == (loop_name == "ferroloop")


def test_socket_subclass_methods_are_not_called(loop, loop_name):
    """A ``socket.socket`` subclass given to the loop (``create_connection(sock=)``, the
    ``sock_*`` methods): asyncio reads and writes through the object's ``recv`` /
    ``recv_into`` / ``send``, so the subclass's overrides run; ferroloop reads and writes
    its fd natively (as uvloop does through libuv), so they do not. websockets' legacy
    ``test_explicit_socket`` counts those calls."""
    import socket

    calls = []

    class Tracked(socket.socket):
        def recv(self, *args):
            calls.append("recv")
            return super().recv(*args)

        def recv_into(self, *args):
            calls.append("recv_into")
            return super().recv_into(*args)

        def send(self, *args):
            calls.append("send")
            return super().send(*args)

    async def main():
        a, b = socket.socketpair()
        t = Tracked(fileno=a.detach())
        t.setblocking(False)
        try:
            b.send(b"x")
            assert await loop.sock_recv(t, 10) == b"x"
            await loop.sock_sendall(t, b"y")
            assert b.recv(10) == b"y"
            got = loop.create_future()

            class Proto(asyncio.Protocol):
                def data_received(self, data):
                    got.set_result(data)

            tr, _ = await loop.create_connection(Proto, sock=t)
            tr.write(b"ping")
            b.send(b"pong")
            assert await asyncio.wait_for(got, 5) == b"pong"
            await asyncio.sleep(0.01)
            assert b.recv(10) == b"ping"
            tr.close()
            await asyncio.sleep(0)
        finally:
            t.close()
            b.close()

    loop.run_until_complete(main())
    if loop_name == "ferroloop":
        assert calls == []
    else:
        assert set(calls) == {"recv", "send"}
def test_transport_callbacks_run_in_the_transports_context(loop, loop_name):
    """ferroloop calls a stream transport's protocol callbacks in the context current
    when the transport was made (as uvloop does); asyncio in a copy of the context of
    whoever last registered the socket's reader (``resume_reading()``), so after a
    pause/resume from another task, ``data_received``, ``eof_received`` and
    ``connection_lost`` see that task's context variables. uvloop's test_context skips
    its start_tls test on asyncio for this ("this seems to be a bug in asyncio")."""
    import contextvars
    import socket

    cvar = contextvars.ContextVar("cvar", default="unset")
    seen = []

    class P(asyncio.Protocol):
        def data_received(self, data):
            seen.append(("data", cvar.get()))

        def eof_received(self):
            seen.append(("eof", cvar.get()))

        def connection_lost(self, exc):
            seen.append(("lost", cvar.get()))

    async def in_task(value, f):
        async def t():
            cvar.set(value)
            f()

        await loop.create_task(t())

    async def until(n):
        for _ in range(200):
            if len(seen) >= n:
                return
            await asyncio.sleep(0.005)

    async def main():
        a, b = socket.socketpair()
        with b:
            cvar.set("made")
            tr, _ = await loop.connect_accepted_socket(P, a)
            b.send(b"1")
            await until(1)
            await in_task("resumer", lambda: (tr.pause_reading(), tr.resume_reading()))
            b.send(b"2")
            await until(2)
            b.shutdown(socket.SHUT_WR)  # eof_received returns None: the transport closes
            await until(4)

    loop.run_until_complete(main())
    after = "made" if loop_name == "ferroloop" else "resumer"
    assert seen == [("data", "made"), ("data", after), ("eof", after), ("lost", after)]


def test_log_records_of_native_code_name_the_calling_frame(loop, loop_name, caplog):
    """A record that asyncio logs from its own Python code (here the default exception
    handler's) has asyncio's file, line and function as its origin; the same record
    from ferroloop's native code names the nearest Python frame, its caller (logging's
    ``findCaller`` walks Python frames). The message, level and logger are the same."""
    import logging

    def reporter():
        loop.call_exception_handler({"message": "boom"})

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        reporter()
    [record] = caplog.records
    assert (record.name, record.levelname, record.getMessage()) == ("asyncio", "ERROR", "boom")
    if loop_name == "ferroloop":
        assert (record.filename, record.funcName) == ("test_known_differences.py", "reporter")
    else:
        assert (record.filename, record.funcName) == ("base_events.py", "default_exception_handler")


def test_loop_is_not_a_base_event_loop(loop, loop_name):
    """``ferroloop.Loop`` is an ``asyncio.AbstractEventLoop`` but not an
    ``asyncio.BaseEventLoop`` (nor is uvloop's): a patch of ``asyncio.BaseEventLoop``'s
    methods (asyncssh's tests patch ``create_connection`` so) does not reach it; a patch of
    the loop's own class does."""
    from unittest import mock

    assert isinstance(loop, asyncio.AbstractEventLoop)
    assert isinstance(loop, asyncio.BaseEventLoop) is (loop_name == "asyncio")

    async def refused(*args, **kwargs):
        raise ConnectionRefusedError("patched")

    async def connect():
        return await loop.create_connection(asyncio.Protocol, "127.0.0.1", 9)

    with mock.patch.object(asyncio.BaseEventLoop, "create_connection", refused):
        try:
            loop.run_until_complete(connect())
        except ConnectionRefusedError as e:
            patched_seen = str(e) == "patched"
        else:
            patched_seen = False
    assert patched_seen is (loop_name == "asyncio")
    with mock.patch.object(type(loop), "create_connection", refused):
        with pytest.raises(ConnectionRefusedError, match="patched"):
            loop.run_until_complete(connect())
