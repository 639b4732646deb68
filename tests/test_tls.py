"""TLS on both loops: echo, start_tls, extra info, and the fault cases (a wrong host name,
a peer that closes mid-handshake, a handshake that times out, fds after failures).

TLS is asyncio's ``SSLProtocol`` over the loop's transport; these tests pin what an
application sees. The certificate is self-signed, made at test time with ``openssl``.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import shutil
import socket
import ssl
import subprocess

import pytest

from conftest import requires_native_net, run_with_timeout
from netutil import background, fd_count, write_goes_through_the_class

pytestmark = [
    requires_native_net,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command"),
]


@pytest.fixture(scope="module")
def certfiles(tmp_path_factory):
    """A self-signed certificate for ``localhost`` / 127.0.0.1 and its key."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost/O=ferroloop-test",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@pytest.fixture
def server_ctx(certfiles):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*certfiles)
    return ctx


@pytest.fixture
def client_ctx(certfiles):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certfiles[0]))
    return ctx


async def _echo(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def _serve_echo(server_ctx, **kw):
    server = await asyncio.start_server(_echo, "127.0.0.1", 0, ssl=server_ctx, **kw)
    return server, server.sockets[0].getsockname()[1]


def test_tls_echo(loop, server_ctx, client_ctx):
    async def main():
        server, port = await _serve_echo(server_ctx)
        async with server:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
            )
            out = []
            for msg in (b"hello", b"x" * 1024, b"tls"):
                writer.write(msg)
                out.append(await reader.readexactly(len(msg)))
            # 2 MiB through the TLS layer and back-pressure, checked byte for byte.
            blob = bytes(range(256)) * (8 * 1024)
            writer.write(blob)
            echoed = await reader.readexactly(len(blob))
            writer.close()
            await writer.wait_closed()
            return out, hashlib.sha256(echoed).hexdigest() == hashlib.sha256(blob).hexdigest()

    out, same = run_with_timeout(loop, main(), 30)
    assert out == [b"hello", b"x" * 1024, b"tls"]
    assert same


def test_tls_transport_write_is_the_class_method(loop, server_ctx, client_ctx):
    """The TLS transport's ``write`` is its class's, as asyncio's is (a subclass's or a
    patched ``write`` is what ``transport.write`` finds), with asyncio's checks: a str is a
    TypeError, empty data is nothing, and after a second ``close()`` (which drops the
    protocol) a write is an AttributeError."""
    async def main():
        server, port = await _serve_echo(server_ctx)
        async with server:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
            )
            tr = writer.transport
            assert write_goes_through_the_class(tr, b"one") == [b"one"]
            tr.write(data=b"two")
            tr.write(b"")
            with pytest.raises(TypeError, match="expecting a bytes-like instance, got str"):
                tr.write("text")
            with pytest.raises(TypeError):
                tr.write()
            assert await reader.readexactly(6) == b"onetwo"
            tr.close()
            tr.close()  # the second close() drops the protocol
            with pytest.raises(AttributeError):
                tr.write(b"late")
            with pytest.raises(TypeError):
                tr.write("late")

    run_with_timeout(loop, main(), 30)


def test_start_tls_upgrades_a_plain_connection(loop, server_ctx, client_ctx):
    async def handler(reader, writer):
        line = await reader.readline()
        assert line == b"STARTTLS\n"
        writer.write(b"OK\n")
        await writer.drain()
        await writer.start_tls(server_ctx)
        await _echo(reader, writer)

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert writer.get_extra_info("ssl_object") is None
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"OK\n"
            await writer.start_tls(client_ctx, server_hostname="localhost")
            ssl_object = writer.get_extra_info("ssl_object")
            writer.write(b"secret")
            echoed = await reader.readexactly(6)
            writer.close()
            await writer.wait_closed()
            return echoed, type(ssl_object)

    assert run_with_timeout(loop, main()) == (b"secret", ssl.SSLObject)


def test_loop_start_tls_with_protocols(loop, server_ctx, client_ctx):
    """loop.start_tls() on a transport from create_connection / a server, both sides."""

    class Proto(asyncio.Protocol):
        def __init__(self):
            self.data = bytearray()
            self.got = loop.create_future()
            self.transport = None

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.data += data
            if len(self.data) >= 4 and not self.got.done():
                self.got.set_result(bytes(self.data))

    async def main():
        server_side = loop.create_future()

        def factory():
            p = Proto()
            server_side.set_result(p)
            return p

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            _, client = await loop.create_connection(Proto, "127.0.0.1", port)
            srv = await server_side
            upgrade = loop.create_task(
                loop.start_tls(srv.transport, srv, server_ctx, server_side=True)
            )
            ctr = await loop.start_tls(client.transport, client, client_ctx,
                                       server_hostname="localhost")
            str_ = await upgrade
            ctr.write(b"ping")
            str_.write(b"pong")
            got = (await srv.got, await client.got)
            info = (ctr.get_extra_info("peercert")["subject"], str_.get_extra_info("peercert"))
            ctr.close()
            str_.close()
            return got, info

    got, (subject, server_peercert) = run_with_timeout(loop, main())
    assert got == (b"ping", b"pong")
    assert ((("commonName", "localhost"),) in subject)
    assert server_peercert is None  # no client certificate asked for


def test_extra_info(loop, server_ctx, client_ctx):
    async def main():
        server_info = loop.create_future()

        async def handler(reader, writer):
            w = writer
            server_info.set_result({
                "peercert": w.get_extra_info("peercert"),
                "ssl_object": type(w.get_extra_info("ssl_object")),
                "server_side": w.get_extra_info("ssl_object").server_side,
            })
            await _echo(reader, writer)

        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
            )
            g = writer.get_extra_info
            info = {
                "ssl_object": type(g("ssl_object")),
                "server_hostname": g("ssl_object").server_hostname,
                "sslcontext": g("sslcontext") is client_ctx,
                "peercert_subject": g("peercert")["subject"],
                "cipher": g("cipher"),
                "cipher_is_ssl_objects": g("cipher") == g("ssl_object").cipher(),
                "compression": g("compression"),
                "socket": type(g("socket")),
                "peername": g("peername"),
                "sockname_port": g("sockname")[0],
                "missing": g("no such key", "default"),
                "version": g("ssl_object").version(),
            }
            srv = await server_info
            writer.close()
            await writer.wait_closed()
            return info, srv, port

    info, srv, port = run_with_timeout(loop, main())
    assert info["ssl_object"] is ssl.SSLObject
    assert info["server_hostname"] == "localhost"
    assert info["sslcontext"] is True
    assert (("commonName", "localhost"),) in info["peercert_subject"]
    name, version, bits = info["cipher"]
    assert isinstance(name, str) and version.startswith("TLS") and bits >= 128
    assert info["cipher_is_ssl_objects"]
    assert info["compression"] is None
    assert info["socket"] is asyncio.trsock.TransportSocket
    assert info["peername"] == ("127.0.0.1", port)
    assert info["sockname_port"] == "127.0.0.1"
    assert info["missing"] == "default"
    assert info["version"].startswith("TLSv1.")
    assert srv == {"peercert": None, "ssl_object": ssl.SSLObject, "server_side": True}


def test_server_hostname_mismatch(loop, server_ctx, client_ctx):
    """The certificate names localhost: asking for another name fails verification, and
    the server never hands the connection to the application."""
    connected = []
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))

    async def handler(reader, writer):
        connected.append(True)
        writer.close()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                await asyncio.open_connection(
                    "127.0.0.1", port, ssl=client_ctx, server_hostname="wrong.example"
                )
            await asyncio.sleep(0.1)
            return info.value

    exc = run_with_timeout(loop, main())
    assert "Hostname mismatch" in str(exc) or "doesn't match" in str(exc)
    assert exc.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
    assert connected == []


def test_untrusted_certificate(loop, server_ctx):
    async def main():
        server, port = await _serve_echo(server_ctx)
        async with server:
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                await asyncio.open_connection(
                    "127.0.0.1", port, ssl=ssl.create_default_context(),
                    server_hostname="localhost",
                )
            return info.value.verify_code

    assert run_with_timeout(loop, main()) == 18  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT


def _raw_server(_unused=None):
    """A plain non-blocking listening socket on 127.0.0.1."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    lsock.setblocking(False)
    return lsock


def test_peer_closes_mid_handshake_client_side(loop, client_ctx):
    """The server reads the ClientHello and closes: the client's handshake fails with
    ConnectionResetError (asyncio's SSLProtocol reports the lost connection)."""

    async def main():
        lsock = _raw_server(None)
        port = lsock.getsockname()[1]

        async def serve():
            conn, _ = await loop.sock_accept(lsock)
            with conn:
                await loop.sock_recv(conn, 1)  # the ClientHello has started
            lsock.close()

        async with background(serve()):
            try:
                await asyncio.open_connection(
                    "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
                )
            except Exception as e:  # noqa: BLE001 - the type is what is checked
                return type(e)
            return None

    assert run_with_timeout(loop, main()) is ConnectionResetError


@pytest.mark.parametrize("send", [b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"GET / HTTP/1.1\r\n\r\n"])
def test_peer_closes_mid_handshake_server_side(loop, server_ctx, send):
    """A client that connects to a TLS server, sends nothing / half a ClientHello /
    plain text, and goes: the application never sees the connection, the server's
    transport is released (fd count back) and the server keeps serving."""
    connected = []
    loop.set_exception_handler(lambda lp, ctx: None)

    async def handler(reader, writer):
        connected.append(True)
        await _echo(reader, writer)

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            # warm up (lazy imports, the resolver), then measure
            await _one_raw_attempt(loop, port, send)
            gc.collect()
            before = fd_count()
            for _ in range(20):
                await _one_raw_attempt(loop, port, send)
            await asyncio.sleep(0.1)
            gc.collect()
            after = fd_count()
            return before, after

    before, after = run_with_timeout(loop, main(), 30)
    assert after <= before
    assert connected == []


async def _one_raw_attempt(loop, port, send):
    s = socket.socket()
    s.setblocking(False)
    try:
        await loop.sock_connect(s, ("127.0.0.1", port))
        if send:
            await loop.sock_sendall(s, send)
        await asyncio.sleep(0.005)
    finally:
        s.close()
    await asyncio.sleep(0.005)


def test_ssl_handshake_timeout_client_side(loop, client_ctx):
    """The server accepts and never answers: the client's handshake gives up after
    ssl_handshake_timeout with ConnectionAbortedError (asyncio's SSLProtocol)."""

    async def main():
        lsock = _raw_server(None)
        port = lsock.getsockname()[1]
        held = []

        async def serve():
            conn, _ = await loop.sock_accept(lsock)
            held.append(conn)
            await asyncio.sleep(30)

        async with background(serve()):
            t0 = loop.time()
            try:
                await asyncio.open_connection(
                    "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost",
                    ssl_handshake_timeout=0.2,
                )
            except Exception as e:  # noqa: BLE001 - the type is what is checked
                outcome = (type(e), str(e))
            else:
                outcome = None
            elapsed = loop.time() - t0
        for c in held:
            c.close()
        lsock.close()
        return outcome, elapsed

    outcome, elapsed = run_with_timeout(loop, main())
    assert outcome == (
        ConnectionAbortedError,
        "SSL handshake is taking longer than 0.2 seconds: aborting the connection",
    )
    assert 0.15 <= elapsed < 2


def test_ssl_handshake_timeout_server_side(loop, server_ctx):
    """A client that connects and sends nothing is dropped by the server after
    ssl_handshake_timeout: the client sees EOF (or a reset), the application nothing."""
    connected = []
    loop.set_exception_handler(lambda lp, ctx: None)

    async def handler(reader, writer):
        connected.append(True)
        writer.close()

    async def main():
        server = await asyncio.start_server(
            handler, "127.0.0.1", 0, ssl=server_ctx, ssl_handshake_timeout=0.2
        )
        port = server.sockets[0].getsockname()[1]
        async with server:
            s = socket.socket()
            s.setblocking(False)
            with s:
                await loop.sock_connect(s, ("127.0.0.1", port))
                t0 = loop.time()
                try:
                    data = await asyncio.wait_for(loop.sock_recv(s, 100), 5)
                except ConnectionResetError:
                    data = b""
                return data, loop.time() - t0

    data, elapsed = run_with_timeout(loop, main())
    assert data == b""
    assert 0.15 <= elapsed < 2
    assert connected == []


def test_ssl_handshake_timeout_checks(loop, server_ctx, client_ctx):
    async def main():
        server, port = await _serve_echo(server_ctx)
        async with server:
            with pytest.raises(ValueError, match="only meaningful with ssl"):
                await asyncio.open_connection("127.0.0.1", port, ssl_handshake_timeout=1)
            with pytest.raises(ValueError, match="should be a positive number, got 0"):
                await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                              server_hostname="localhost",
                                              ssl_handshake_timeout=0)

    run_with_timeout(loop, main())


def test_fd_count_flat_after_failed_handshakes(loop, server_ctx, client_ctx):
    """200 connections whose handshake fails (host name mismatch) leave no fd behind on
    either side."""
    loop.set_exception_handler(lambda lp, ctx: None)

    async def attempt(port):
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="wrong.example"
            )

    async def main():
        server, port = await _serve_echo(server_ctx)
        async with server:
            for _ in range(5):
                await attempt(port)
            await asyncio.sleep(0.05)
            gc.collect()
            before = fd_count()
            for _ in range(200):
                await attempt(port)
            await asyncio.sleep(0.1)
            gc.collect()
            await asyncio.sleep(0.05)
            return before, fd_count()

    before, after = run_with_timeout(loop, main(), 60)
    assert after <= before + 2, (before, after)
