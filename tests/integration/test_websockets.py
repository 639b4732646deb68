"""websockets (the asyncio implementation, ``websockets.asyncio``) server and client on
ferroloop: many echoed messages, large messages, ping/pong, close codes, TLS (wss://)."""

from __future__ import annotations

import asyncio
import hashlib
import ssl

import pytest

from _integ import check_loop, run, tls_contexts

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK  # noqa: E402


def test_websockets(loop_name):
    async def handler(ws):
        check_loop(loop_name)
        async for message in ws:
            if message == "close-4003":
                await ws.close(4003, "policy")
                return
            if isinstance(message, bytes):
                await ws.send(hashlib.sha256(message).digest())
            else:
                await ws.send(message)

    async def main():
        async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
            port = server.sockets[0].getsockname()[1]
            uri = f"ws://127.0.0.1:{port}"

            async with connect(uri, max_size=None) as ws:
                # many messages, pipelined
                for i in range(2000):
                    await ws.send(f"msg {i}")
                assert [await ws.recv() for _ in range(2000)] == [f"msg {i}" for i in range(2000)]

                # large messages: 8 MiB binary, 1 MiB text
                big = bytes(range(256)) * 32768
                await ws.send(big)
                assert await ws.recv() == hashlib.sha256(big).digest()
                text = "é" * (512 * 1024)
                await ws.send(text)
                assert await ws.recv() == text

                # ping/pong with a payload; the latency is measured
                pong = await ws.ping(b"are you there")
                latency = await asyncio.wait_for(pong, 5)
                assert latency >= 0

            # normal close from the client: code 1000
            assert ws.close_code == 1000

            # close initiated by the server with an application code
            async with connect(uri) as ws:
                await ws.send("close-4003")
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.rcvd.code == 4003
                assert info.value.rcvd.reason == "policy"
            assert ws.close_code == 4003

            # concurrent clients
            async def client(n):
                async with connect(uri) as ws:
                    for i in range(50):
                        await ws.send(f"{n}:{i}")
                        assert await ws.recv() == f"{n}:{i}"
                    await ws.close()
                    with pytest.raises(ConnectionClosedOK):
                        await ws.recv()
                return n

            assert await asyncio.gather(*(client(n) for n in range(20))) == list(range(20))

    run(loop_name, main)


# in debug mode (-X dev) asyncio logs the refused handshake of the untrusting client
@pytest.mark.allow_loop_errors("Error on transport creation for incoming connection")
def test_websockets_tls(loop_name):
    """wss:// to ``localhost`` (name resolution, certificate verification), a large message
    and a compressed one both ways."""
    server_ctx, client_ctx = tls_contexts()

    async def handler(ws):
        check_loop(loop_name)
        async for message in ws:
            await ws.send(message[::-1])

    async def main():
        async with serve(handler, "127.0.0.1", 0, ssl=server_ctx, max_size=None) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"wss://localhost:{port}", ssl=client_ctx, max_size=None) as ws:
                assert ws.transport.get_extra_info("ssl_object") is not None
                big = bytes(range(256)) * 16384  # 4 MiB
                await ws.send(big)
                assert await ws.recv() == big[::-1]
                for i in range(200):
                    await ws.send("compressible " * 100 + str(i))
                    assert await ws.recv() == ("compressible " * 100 + str(i))[::-1]
            assert ws.close_code == 1000

            # an untrusted certificate fails the handshake
            with pytest.raises(ssl.SSLCertVerificationError):
                async with connect(f"wss://localhost:{port}"):
                    pass

    run(loop_name, main)
