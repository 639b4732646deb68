"""loop.sock_sendfile: asyncio's checks and messages, the sendfile(2) path, asyncio's
fallback, on both loops."""

import asyncio
import errno
import hashlib
import io
import os
import socket

import pytest

from conftest import run_with_timeout

MiB = 1024 * 1024


@pytest.fixture
def tcp_pair():
    """A connected, non-blocking TCP pair (sender, receiver)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    a = socket.create_connection(srv.getsockname())
    b, _ = srv.accept()
    srv.close()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(MiB)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    with open(path, "rb") as f:
        yield f, data


async def recv_all(loop, sock, n=None):
    chunks = []
    total = 0
    while n is None or total < n:
        chunk = await loop.sock_recv(sock, 256 * 1024)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def test_sendfile_one_mib(loop, tcp_pair, data_file):
    a, b = tcp_pair
    f, data = data_file

    async def main():
        reader = asyncio.ensure_future(recv_all(loop, b, len(data)))
        sent = await loop.sock_sendfile(a, f)
        return sent, await reader

    sent, got = run_with_timeout(loop, main())
    assert sent == len(data)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert f.tell() == len(data)  # the file position is moved past what was sent


def test_sendfile_offset_and_count(loop, tcp_pair, data_file):
    a, b = tcp_pair
    f, data = data_file

    async def main():
        sent = await loop.sock_sendfile(a, f, 1000, 5000)
        return sent, await recv_all(loop, b, sent)

    assert run_with_timeout(loop, main()) == (5000, data[1000:6000])
    assert f.tell() == 6000


def test_sendfile_count_past_eof(loop, tcp_pair, data_file):
    a, b = tcp_pair
    f, data = data_file

    async def main():
        sent = await loop.sock_sendfile(a, f, len(data) - 10, 1000)
        return sent, await recv_all(loop, b, sent)

    assert run_with_timeout(loop, main()) == (10, data[-10:])
    assert f.tell() == len(data)


def test_sendfile_empty_file(loop, tcp_pair, tmp_path):
    a, _ = tcp_pair
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with open(path, "rb") as f:
        assert run_with_timeout(loop, loop.sock_sendfile(a, f)) == 0
        assert f.tell() == 0


def test_sendfile_takes_the_native_path(loop, tcp_pair, data_file):
    a, b = tcp_pair
    f, data = data_file

    async def no_fallback(*args):
        raise AssertionError("fallback used for a regular file")

    loop._sock_sendfile_fallback = no_fallback

    async def main():
        reader = asyncio.ensure_future(recv_all(loop, b, 1000))
        sent = await loop.sock_sendfile(a, f, 0, 1000)
        return sent, await reader

    assert run_with_timeout(loop, main()) == (1000, data[:1000])


def test_not_a_regular_file_falls_back(loop, tcp_pair):
    a, b = tcp_pair
    payload = os.urandom(300_000)
    f = io.BytesIO(payload)

    async def main():
        reader = asyncio.ensure_future(recv_all(loop, b, 200_000 - 7))
        sent = await loop.sock_sendfile(a, f, 7, 200_000 - 7)
        return sent, await reader

    assert run_with_timeout(loop, main()) == (200_000 - 7, payload[7:200_000])
    assert f.tell() == 200_000


def test_not_a_regular_file_without_fallback(loop, tcp_pair):
    a, _ = tcp_pair
    with pytest.raises(asyncio.SendfileNotAvailableError, match="not a regular file"):
        run_with_timeout(loop, loop.sock_sendfile(a, io.BytesIO(b"x"), fallback=False))


def test_failed_sendfile_call_without_fallback(loop, tcp_pair):
    # A pipe has an fd, but sendfile(2) cannot read it: the first call fails.
    a, b = tcp_pair
    r, w = os.pipe()
    os.write(w, b"hello")
    with open(r, "rb", buffering=0) as f:
        with pytest.raises(asyncio.SendfileNotAvailableError, match="os.sendfile call failed"):
            run_with_timeout(loop, loop.sock_sendfile(a, f, 0, 5, fallback=False))

        async def main():
            # asyncio's fallback sends, then fails to seek the pipe (its file.seek).
            with pytest.raises(OSError) as info:
                await loop.sock_sendfile(a, f, 0, 5)
            return info.value.errno, await recv_all(loop, b, 5)

        assert run_with_timeout(loop, main()) == (errno.ESPIPE, b"hello")
    os.close(w)


@pytest.mark.parametrize(
    "kwargs, exc, msg",
    [
        ({"count": 0}, ValueError, "count must be a positive integer (got 0)"),
        ({"count": -5}, ValueError, "count must be a positive integer (got -5)"),
        ({"count": "1"}, TypeError, "count must be a positive integer (got '1')"),
        ({"count": 1.0}, TypeError, "count must be a positive integer (got 1.0)"),
        ({"offset": -1}, ValueError, "offset must be a non-negative integer (got -1)"),
        ({"offset": "0"}, TypeError, "offset must be a non-negative integer (got '0')"),
        ({"offset": None}, TypeError, "offset must be a non-negative integer (got None)"),
    ],
)
def test_parameter_errors(loop, tcp_pair, data_file, kwargs, exc, msg):
    a, _ = tcp_pair
    f, _ = data_file
    with pytest.raises(exc) as info:
        run_with_timeout(loop, loop.sock_sendfile(a, f, **kwargs))
    assert str(info.value) == msg


def test_text_file_and_datagram_socket(loop, tcp_pair, tmp_path):
    a, _ = tcp_pair
    path = tmp_path / "t.txt"
    path.write_text("text")
    with open(path, "r") as f:
        with pytest.raises(ValueError, match="^file should be opened in binary mode$"):
            run_with_timeout(loop, loop.sock_sendfile(a, f))
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setblocking(False)
    with open(path, "rb") as f, u:
        with pytest.raises(ValueError, match="^only SOCK_STREAM type sockets are supported$"):
            run_with_timeout(loop, loop.sock_sendfile(u, f))


def test_debug_mode_wants_a_non_blocking_socket(loop, tcp_pair, data_file):
    a, _ = tcp_pair
    f, _ = data_file
    loop.set_debug(True)
    a.setblocking(True)
    with pytest.raises(ValueError, match="the socket must be non-blocking"):
        run_with_timeout(loop, loop.sock_sendfile(a, f))


def test_peer_closes_mid_sendfile(loop, tcp_pair, tmp_path):
    a, b = tcp_pair
    path = tmp_path / "big"
    path.write_bytes(os.urandom(32 * MiB))
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)

    async def main():
        with open(path, "rb") as f:
            task = asyncio.ensure_future(loop.sock_sendfile(a, f))
            await loop.sock_recv(b, 65536)  # some bytes went through
            await asyncio.sleep(0.01)
            b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            b.close()  # a reset, with data unread
            with pytest.raises(OSError) as info:
                await task
            return info.value, f.tell()

    exc, pos = run_with_timeout(loop, main())
    assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), exc
    assert 0 < pos < 32 * MiB  # the position says how much was sent
    assert loop.remove_writer(a.fileno()) is False  # nothing left registered


def test_cancelled_sendfile_leaves_no_writer(loop, tcp_pair, tmp_path):
    a, b = tcp_pair
    path = tmp_path / "big"
    path.write_bytes(b"\0" * (16 * MiB))

    async def main():
        with open(path, "rb") as f:
            task = asyncio.ensure_future(loop.sock_sendfile(a, f))
            for _ in range(5):
                await asyncio.sleep(0.005)
            assert not task.done()  # nobody reads: it waits for writability
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return f.tell()

    assert run_with_timeout(loop, main()) == 0  # asyncio leaves the position on cancel
    assert loop.remove_writer(a.fileno()) is False
