"""add_reader / add_writer / remove_reader / remove_writer on a socket pair."""

import errno
import os
import socket

import pytest

from conftest import run_briefly



def _run_until(loop, predicate, timeout=5.0):
    """Run the loop until predicate() is true (checked every iteration)."""
    deadline = loop.time() + timeout

    def check():
        if predicate() or loop.time() > deadline:
            loop.stop()
        else:
            loop.call_soon(check)

    loop.call_soon(check)
    loop.run_forever()
    assert predicate(), "condition not reached before timeout"


def test_reader_called_when_data_arrives(loop, sockpair):
    r, w = sockpair
    got = []

    def on_readable(arg):
        got.append((arg, r.recv(100)))
        loop.stop()

    loop.add_reader(r, on_readable, "arg")
    loop.call_later(0.01, w.send, b"hello")
    safety = loop.call_later(5, loop.stop)
    loop.run_forever()
    safety.cancel()
    assert got == [("arg", b"hello")]
    assert loop.remove_reader(r) is True


def test_reader_wakes_blocked_loop(loop, sockpair):
    """The loop blocks in its poll with no timer; data on the fd wakes it."""
    import threading
    import time

    r, w = sockpair
    got = []

    def on_readable():
        got.append(r.recv(100))
        loop.stop()

    loop.add_reader(r.fileno(), on_readable)
    th = threading.Thread(target=lambda: (time.sleep(0.05), w.send(b"x")))
    th.start()
    loop.run_forever()
    th.join()
    assert got == [b"x"]
    loop.remove_reader(r.fileno())


def test_reader_is_level_triggered(loop, sockpair):
    r, w = sockpair
    calls = [0]

    def on_readable():
        calls[0] += 1  # data is deliberately left unread

    loop.add_reader(r, on_readable)
    w.send(b"unread")
    _run_until(loop, lambda: calls[0] >= 5)
    assert loop.remove_reader(r) is True
    n = calls[0]
    run_briefly(loop, 5)
    assert calls[0] == n  # removed: no more calls


def test_reader_stops_when_drained(loop, sockpair):
    r, w = sockpair
    calls = []

    def on_readable():
        calls.append(r.recv(1))  # one byte per call

    loop.add_reader(r, on_readable)
    w.send(b"abc")
    _run_until(loop, lambda: len(calls) == 3)
    run_briefly(loop, 5)
    # Each call consumed one byte; once drained, no more (spurious) calls.
    assert calls == [b"a", b"b", b"c"]
    loop.remove_reader(r)


def test_remove_reader_return_values(loop, sockpair):
    r, _ = sockpair
    assert loop.remove_reader(r) is False
    loop.add_reader(r, print)
    assert loop.remove_reader(r) is True
    assert loop.remove_reader(r) is False
    assert loop.remove_writer(r) is False
    loop.add_writer(r, print)
    assert loop.remove_reader(r) is False
    assert loop.remove_writer(r) is True
    assert loop.remove_writer(r) is False


def test_fd_as_int_and_socket_object_are_the_same(loop, sockpair):
    r, w = sockpair
    got = []
    loop.add_reader(r.fileno(), lambda: got.append("int"))
    # Replacing through the socket object: same fd.
    loop.add_reader(r, lambda: (got.append("sock"), r.recv(10)))
    w.send(b"z")
    _run_until(loop, lambda: bool(got))
    assert got == ["sock"]
    assert loop.remove_reader(r.fileno()) is True
    assert loop.remove_reader(r) is False


def test_replacing_reader_cancels_old_handle(loop, sockpair):
    r, w = sockpair
    got = []
    # The private _add_reader (what asyncio's transports call) returns the handle.
    h1 = loop._add_reader(r, got.append, "old")
    h2 = loop._add_reader(r, lambda: (got.append("new"), r.recv(10)))
    w.send(b"data")
    _run_until(loop, lambda: bool(got))
    assert got == ["new"]
    assert h1.cancelled()
    assert not h2.cancelled()
    loop.remove_reader(r)


def test_add_reader_and_add_writer_return_none(loop, sockpair):
    """asyncio's add_reader/add_writer return None (the handle stays private)."""
    r, w = sockpair
    assert loop.add_reader(r, print) is None
    assert loop.add_writer(w, print) is None
    h = loop._add_writer(w, print)
    assert h.cancelled() is False
    assert loop.remove_reader(r) is True
    assert loop.remove_writer(w) is True
    assert h.cancelled() is True


def test_add_reader_accepts_any_callback(loop, sockpair):
    """asyncio checks nothing about a reader's callback, even in debug mode: a
    non-callable fails when it runs, through the exception handler."""
    r, w = sockpair
    loop.set_debug(True)
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    loop.add_reader(r, 42, "x")
    w.send(b"data")
    _run_until(loop, lambda: bool(errors))
    loop.remove_reader(r)
    assert errors[0]["message"] == "Exception in callback 42('x')"
    assert isinstance(errors[0]["exception"], TypeError)
    assert str(errors[0]["exception"]) == "'int' object is not callable"


def test_writer_called_while_writable(loop, sockpair):
    r, w = sockpair
    calls = []

    def on_writable(tag):
        calls.append(tag)

    loop.add_writer(w, on_writable, "w")
    _run_until(loop, lambda: len(calls) >= 3)
    assert loop.remove_writer(w) is True
    n = len(calls)
    run_briefly(loop, 3)
    assert len(calls) == n
    assert set(calls) == {"w"}


def test_writer_blocks_when_buffer_full(loop, sockpair):
    r, w = sockpair
    # Fill the send buffer.
    try:
        while True:
            w.send(b"x" * 65536)
    except BlockingIOError:
        pass
    calls = []
    loop.add_writer(w, lambda: calls.append(1))
    run_briefly(loop, 3)
    assert calls == []  # not writable
    # Drain the other end: the writer fires.
    try:
        while True:
            r.recv(1 << 20)
    except BlockingIOError:
        pass
    _run_until(loop, lambda: bool(calls))
    loop.remove_writer(w)


def test_reader_and_writer_on_same_fd(loop, sockpair):
    r, w = sockpair
    events = []
    loop.add_reader(r, lambda: (events.append("read"), r.recv(100)))
    loop.add_writer(r, lambda: (events.append("write"), loop.remove_writer(r)))
    w.send(b"x")
    _run_until(loop, lambda: "read" in events and "write" in events)
    # Removing the writer left the reader in place.
    assert loop.remove_reader(r) is True
    assert loop.remove_writer(r) is False


def test_remove_reader_from_callback(loop, sockpair):
    r, w = sockpair
    calls = []

    def on_readable():
        calls.append(1)
        loop.remove_reader(r)  # data stays unread

    loop.add_reader(r, on_readable)
    w.send(b"x")
    _run_until(loop, lambda: bool(calls))
    run_briefly(loop, 5)
    assert calls == [1]


def test_reader_on_pipe(loop):
    rfd, wfd = os.pipe()
    try:
        os.set_blocking(rfd, False)
        got = []
        loop.add_reader(rfd, lambda: got.append(os.read(rfd, 100)))
        os.write(wfd, b"pipe")
        _run_until(loop, lambda: bool(got))
        assert got == [b"pipe"]
        assert loop.remove_reader(rfd) is True
    finally:
        os.close(rfd)
        os.close(wfd)


def test_reader_sees_eof(loop, sockpair):
    r, w = sockpair
    got = []

    def on_readable():
        data = r.recv(100)
        got.append(data)
        if not data:
            loop.remove_reader(r)

    loop.add_reader(r, on_readable)
    w.send(b"last")
    w.shutdown(socket.SHUT_WR)
    _run_until(loop, lambda: got and got[-1] == b"")
    assert got[-1] == b""
    assert b"".join(got) == b"last"


def test_many_fds(loop):
    pairs = [socket.socketpair() for _ in range(50)]
    try:
        got = set()
        for i, (r, w) in enumerate(pairs):
            r.setblocking(False)

            def cb(i=i, r=r):
                r.recv(10)
                got.add(i)
                loop.remove_reader(r)

            loop.add_reader(r, cb)
        for _, w in pairs:
            w.send(b"!")
        _run_until(loop, lambda: len(got) == 50)
    finally:
        for r, w in pairs:
            r.close()
            w.close()


def test_reader_exception_goes_to_handler(loop, sockpair):
    r, w = sockpair
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))

    def on_readable():
        r.recv(10)
        loop.remove_reader(r)
        raise ValueError("reader failed")

    loop.add_reader(r, on_readable)
    w.send(b"x")
    _run_until(loop, lambda: bool(reports))
    assert isinstance(reports[0]["exception"], ValueError)
    assert reports[0]["message"].startswith("Exception in callback ")


def test_fd_closed_then_removed_then_reused(loop):
    """Closing a watched fd before remove_reader() must not break the fd's next user."""
    a, b = socket.socketpair()
    fd = a.fileno()
    loop.add_reader(fd, print)
    a.close()
    assert loop.remove_reader(fd) is True
    b.close()
    # The next sockets very likely reuse the fd number.
    c, d = socket.socketpair()
    try:
        c.setblocking(False)
        got = []
        loop.add_reader(c, lambda: got.append(c.recv(10)))
        d.send(b"reused")
        _run_until(loop, lambda: bool(got))
        assert got == [b"reused"]
        loop.remove_reader(c)
    finally:
        c.close()
        d.close()


def test_remove_one_direction_of_a_closed_fd(loop, loop_name):
    """Known difference (met under psycopg's wait_async, which watches an fd both ways and
    takes any OSError for a closed connection). An fd watched for reading and writing is
    closed, then its reader removed: asyncio's selector fails to change the closed fd's
    epoll interest, drops the whole key (the writer too, its handle not cancelled) and
    raises EBADF; ferroloop removes the reader and keeps the writer until it is removed,
    since epoll already dropped the closed file. Neither runs a callback for it."""
    a, b = socket.socketpair()
    fd = a.fileno()
    fired = []
    loop.add_reader(fd, fired.append, "r")
    loop.add_writer(fd, fired.append, "w")
    a.close()
    try:
        if loop_name == "asyncio":
            with pytest.raises(OSError) as ei:
                loop.remove_reader(fd)
            assert ei.value.errno == errno.EBADF
            assert loop.remove_writer(fd) is False
        else:
            assert loop.remove_reader(fd) is True
            assert loop.remove_writer(fd) is True
            assert loop.remove_writer(fd) is False
        run_briefly(loop, 2)
        assert fired == []
    finally:
        b.close()


@pytest.mark.parametrize("spin_with", ["call_soon", "call_later0"])
def test_io_not_starved_by_busy_loop(loop, sockpair, spin_with):
    """A callback that keeps rescheduling itself must not keep I/O callbacks from
    running: asyncio polls the selector on every iteration."""
    r, w = sockpair
    got = []
    spins = [0]

    def spin():
        spins[0] += 1
        if got or spins[0] > 100_000:
            loop.stop()
        elif spin_with == "call_soon":
            loop.call_soon(spin)
        else:
            loop.call_later(0, spin)

    loop.add_reader(r, lambda: got.append(r.recv(10)))
    w.send(b"ping")
    loop.call_soon(spin)
    loop.run_forever()
    loop.remove_reader(r)
    assert got == [b"ping"]
    assert spins[0] < 100, f"reader ran only after {spins[0]} iterations"


def test_io_not_starved_by_busy_loop_data_arriving_later(loop, sockpair):
    import threading
    import time

    r, w = sockpair
    got = []
    spins = [0]
    sent_at = []

    def spin():
        spins[0] += 1
        if got or spins[0] > 2_000_000:
            loop.stop()
        else:
            loop.call_soon(spin)

    loop.add_reader(r, lambda: got.append(time.monotonic()))
    th = threading.Thread(target=lambda: (time.sleep(0.05), sent_at.append(time.monotonic()), w.send(b"x")))
    th.start()
    loop.call_soon(spin)
    loop.run_forever()
    th.join()
    loop.remove_reader(r)
    assert got, "reader never ran while the loop was busy"
    assert got[0] - sent_at[0] < 0.5


def test_add_reader_regular_file(loop, tmp_path):
    """epoll cannot watch regular files: asyncio raises PermissionError (EPERM) and
    leaves nothing registered."""
    with open(tmp_path / "f", "wb") as f:
        with pytest.raises(PermissionError):
            loop.add_reader(f.fileno(), print)
        assert loop.remove_reader(f.fileno()) is False


def test_os_errors_are_pythons(loop, tmp_path):
    """OSErrors carry Python's message for the errno (no ' (os error N)' suffix) and the
    errno's subclass, as asyncio's selector raises them."""
    with pytest.raises(OSError) as ei:
        loop.add_reader(10**6, print)
    assert type(ei.value) is OSError
    assert (ei.value.errno, ei.value.strerror) == (9, "Bad file descriptor")
    assert str(ei.value) == "[Errno 9] Bad file descriptor"
    with open(tmp_path / "f", "wb") as f:
        with pytest.raises(PermissionError) as ei:
            loop.add_writer(f.fileno(), print)
    assert str(ei.value) == "[Errno 1] Operation not permitted"


def test_add_reader_closed_fd(loop):
    a, b = socket.socketpair()
    fd = a.fileno()
    a.close()
    b.close()
    with pytest.raises(OSError):
        loop.add_reader(fd, print)
    assert loop.remove_reader(fd) is False


def test_failed_add_keeps_other_registrations(loop, sockpair, tmp_path):
    r, w = sockpair
    got = []
    loop.add_reader(r, lambda: got.append(r.recv(10)))
    with open(tmp_path / "f", "wb") as f:
        with pytest.raises(OSError):
            loop.add_writer(f.fileno(), print)
    w.send(b"ok")
    _run_until(loop, lambda: bool(got))
    assert got == [b"ok"]
    assert loop.remove_reader(r) is True


def _reuse_number(sock):
    """Closes ``sock`` and puts a new socket's file under its fd number in one step (dup2),
    so the number is surely reused. Returns the new socket and its peer."""
    fd = sock.detach()
    b, peer = socket.socketpair()
    os.dup2(b.fileno(), fd)
    b.close()
    new = socket.socket(fileno=fd)
    new.setblocking(False)
    return new, peer


def test_reused_fd_number_does_not_inherit_readiness(loop):
    """The poll reports fd A readable; before A's reader runs, a callback of the same
    iteration removes it, closes A and watches a new socket under the same number. The
    old readiness must reach neither the removed reader nor the new one (whose socket is
    not ready); the new socket's own readiness does reach it."""
    a, a_peer = socket.socketpair()
    a.setblocking(False)
    fd = a.fileno()
    fired = []
    swapped = []

    def swap():
        assert loop.remove_reader(fd) is True
        new, peer = _reuse_number(a)
        swapped.extend((new, peer))
        assert new.fileno() == fd
        loop.add_reader(fd, lambda: fired.append(("new", new.recv(10))))

    def make_ready():
        a_peer.send(b"old")
        # Runs first in the next iteration, whose poll reports A readable.
        loop.call_soon(swap)

    try:
        loop.add_reader(fd, lambda: fired.append(("old", a.recv(10))))
        loop.call_soon(make_ready)
        run_briefly(loop, 5)
        assert swapped
        assert fired == []
        swapped[1].send(b"new")
        _run_until(loop, lambda: bool(fired))
        assert fired == [("new", b"new")]
        assert loop.remove_reader(fd) is True
    finally:
        for s in [a, a_peer, *swapped]:
            s.close()


def test_watched_fd_closed_while_duplicated_and_number_reused(loop, loop_name):
    """Known difference. A watched fd is closed without remove_reader() while a duplicate
    keeps its file open, and its number is reused by a new socket, watched by a new
    add_reader(). asyncio still polls the old file under the number and runs the new
    reader for the old file's readiness, on every iteration; ferroloop re-registers the
    number for the new file under a new token and drops the events of the old one."""
    a, a_peer = socket.socketpair()
    fd = a.fileno()
    fired = []
    loop.add_reader(fd, lambda: fired.append("old"))
    keep = os.dup(fd)
    new, new_peer = _reuse_number(a)
    try:
        loop.add_reader(fd, lambda: fired.append("new"))
        a_peer.send(b"x")  # readiness of the old file only
        run_briefly(loop, 3)
        if loop_name == "asyncio":
            assert fired == ["new"] * 3
            return
        assert fired == []
        new_peer.send(b"y")
        run_briefly(loop, 2)
        assert fired == ["new"] * 2
    finally:
        loop.remove_reader(fd)
        for s in (new, new_peer, a_peer):
            s.close()
        os.close(keep)


@pytest.mark.parametrize("write", [False, True])
def test_remove_closed_socket_object(loop, write):
    """remove_reader(sock) after sock.close() (its fileno() is -1 then): asyncio's
    selector finds the key registered with that object by identity and removes it (anyio's
    UNIX streams close the socket, then remove the reader in a done-callback). Once gone,
    or for a closed socket never added, the ValueError of its fileno() stays."""
    add = loop.add_writer if write else loop.add_reader
    remove = loop.remove_writer if write else loop.remove_reader
    a, b = socket.socketpair()
    never_added, c = socket.socketpair()
    fired = []
    try:
        add(a, fired.append, "cb")
        a.close()
        assert remove(a) is True
        with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
            remove(a)
        never_added.close()
        with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
            remove(never_added)
        run_briefly(loop, 2)
        assert fired == []
    finally:
        for s in (a, b, never_added, c):
            s.close()


def test_remove_closed_socket_object_keeps_other_direction(loop):
    """The identity lookup finds the fd for one direction; the other stays registered until
    removed the same way (by the same socket object, still closed)."""
    a, b = socket.socketpair()
    try:
        loop.add_reader(a, print)
        loop.add_writer(a, print)
        detached = socket.socket(fileno=a.detach())  # a is now closed (-1), the fd lives on
        assert loop.remove_writer(detached.fileno()) is True
        assert loop.remove_reader(a) is True
        assert loop.remove_reader(detached) is False
        detached.close()
    finally:
        a.close()
        b.close()
