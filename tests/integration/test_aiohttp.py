"""aiohttp's server and client on ferroloop: routes, a streamed 10 MiB upload and download with
checksums, a 10 MiB file served by ``FileResponse`` (``loop.sendfile``), HTTPS, websockets, a
pooled client session, timeouts."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from _integ import check_loop, free_port, run, tls_contexts

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

BIG = 10 * 1024 * 1024
CHUNK = 64 * 1024


def big_chunks():
    for i in range(BIG // CHUNK):
        yield bytes([i % 251]) * CHUNK


BIG_SHA = hashlib.sha256(b"".join(big_chunks())).hexdigest()


def make_app(loop_name: str, file_path=None) -> web.Application:
    async def loop_info(request):
        check_loop(loop_name)
        return web.json_response({"loop": type(asyncio.get_running_loop()).__module__})

    async def upload(request):
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_chunked(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"sha256": digest.hexdigest(), "size": size})

    async def download(request):
        resp = web.StreamResponse()
        resp.content_length = BIG
        await resp.prepare(request)
        for chunk in big_chunks():
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def peer(request):
        return web.Response(text=str(request.transport.get_extra_info("peername")[1]))

    async def file(request):
        return web.FileResponse(file_path)

    async def slow(request):
        await asyncio.sleep(1)
        return web.Response(text="too late")

    async def ws_echo(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                if msg.data == "close-me":
                    await ws.close(code=4001, message=b"asked to")
                    break
                await ws.send_str(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(hashlib.sha256(msg.data).digest() + msg.data[:16])
        return ws

    app = web.Application(client_max_size=BIG * 2)
    app.router.add_get("/loop", loop_info)
    app.router.add_post("/upload", upload)
    app.router.add_get("/download", download)
    app.router.add_get("/peer", peer)
    app.router.add_get("/slow", slow)
    app.router.add_get("/file", file)
    app.router.add_get("/ws", ws_echo)
    return app


async def serve(loop_name, file_path=None, ssl_context=None):
    runner = web.AppRunner(make_app(loop_name, file_path))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    if ssl_context is not None:
        return runner, f"https://localhost:{port}"
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "big.bin"
    with open(path, "wb") as f:
        for chunk in big_chunks():
            f.write(chunk)
    return path


async def get_sha(session, url):
    digest, size = hashlib.sha256(), 0
    async with session.get(url) as r:
        assert r.status == 200
        async for chunk in r.content.iter_chunked(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def test_aiohttp_http(loop_name, big_file):
    async def main():
        runner, base = await serve(loop_name, big_file)
        try:
            async with aiohttp.ClientSession(base) as session:
                async with session.get("/loop") as r:
                    assert r.status == 200
                    assert (await r.json())["loop"].startswith(loop_name)
                async with session.get("/nowhere") as r:
                    assert r.status == 404

                # streamed 10 MiB upload (chunked encoding from an async generator)
                async def gen():
                    for chunk in big_chunks():
                        yield chunk

                async with session.post("/upload", data=gen()) as r:
                    assert await r.json() == {"sha256": BIG_SHA, "size": BIG}

                # streamed 10 MiB download
                assert await get_sha(session, "/download") == (BIG, BIG_SHA)

                # a 10 MiB file: FileResponse sends it with loop.sendfile
                assert await get_sha(session, "/file") == (BIG, BIG_SHA)
        finally:
            await runner.cleanup()

    run(loop_name, main)


def test_aiohttp_pool_and_timeouts(loop_name):
    async def main():
        runner, base = await serve(loop_name)
        try:
            # a pool of at most 4 connections serves 100 concurrent requests
            connector = aiohttp.TCPConnector(limit=4)
            async with aiohttp.ClientSession(base, connector=connector) as session:
                async def get_peer():
                    async with session.get("/peer") as r:
                        assert r.status == 200
                        return await r.text()

                ports = await asyncio.gather(*(get_peer() for _ in range(100)))
                assert len(ports) == 100
                assert 1 <= len(set(ports)) <= 4, set(ports)

                # a total timeout on a request the server answers too late
                t0 = asyncio.get_running_loop().time()
                with pytest.raises(asyncio.TimeoutError):
                    async with session.get("/slow", timeout=aiohttp.ClientTimeout(total=0.3)):
                        pass
                elapsed = asyncio.get_running_loop().time() - t0
                assert 0.29 <= elapsed < 10, elapsed

                # the session still works after the timeout
                assert await get_peer()
        finally:
            await runner.cleanup()

    run(loop_name, main)


def test_aiohttp_websocket(loop_name):
    async def main():
        runner, base = await serve(loop_name)
        try:
            async with aiohttp.ClientSession(base) as session:
                async with session.ws_connect("/ws", heartbeat=None) as ws:
                    for i in range(500):
                        await ws.send_str(f"message {i}")
                    received = [await ws.receive_str() for _ in range(500)]
                    assert received == [f"message {i}" for i in range(500)]

                    big = bytes(range(256)) * 8192  # 2 MiB
                    await ws.send_bytes(big)
                    reply = await ws.receive_bytes()
                    assert reply == hashlib.sha256(big).digest() + big[:16]

                    await ws.send_str("close-me")
                    msg = await ws.receive()
                    assert msg.type == aiohttp.WSMsgType.CLOSE
                    assert ws.closed or msg.data == 4001
                assert ws.close_code == 4001
        finally:
            await runner.cleanup()

    run(loop_name, main)


# in debug mode (-X dev) asyncio logs the refused handshake of the untrusting client
@pytest.mark.allow_loop_errors("Error on transport creation for incoming connection")
def test_aiohttp_https(loop_name, big_file):
    """HTTPS: the server's certificate verified by the client for ``localhost``; uploads,
    downloads (FileResponse without sendfile) and a websocket over TLS."""
    server_ctx, client_ctx = tls_contexts()

    async def main():
        runner, base = await serve(loop_name, big_file, ssl_context=server_ctx)
        try:
            connector = aiohttp.TCPConnector(ssl=client_ctx)
            async with aiohttp.ClientSession(base, connector=connector) as session:
                async with session.get("/loop") as r:
                    assert (await r.json())["loop"].startswith(loop_name)

                async def gen():
                    for chunk in big_chunks():
                        yield chunk

                async with session.post("/upload", data=gen()) as r:
                    assert await r.json() == {"sha256": BIG_SHA, "size": BIG}
                assert await get_sha(session, "/download") == (BIG, BIG_SHA)
                assert await get_sha(session, "/file") == (BIG, BIG_SHA)
                async with session.ws_connect("/ws") as ws:
                    for i in range(100):
                        await ws.send_str(f"tls {i}")
                        assert await ws.receive_str() == f"tls {i}"

            # a client that does not trust the certificate is refused
            async with aiohttp.ClientSession(base) as session:
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    await session.get("/loop")
        finally:
            await runner.cleanup()

    run(loop_name, main)


@pytest.mark.parametrize("mode,sig", [("asyncio", signal.SIGINT), ("install", signal.SIGTERM),
                                      ("loop", signal.SIGINT), ("cli", signal.SIGTERM)])
def test_aiohttp_run_app(mode, sig):
    """``web.run_app`` on ferroloop (``ferroloop.install()``, ``loop=``, or the unchanged
    program under ``python -m ferroloop run``): serves, and a signal (run_app's
    ``loop.add_signal_handler``) stops it with its cleanup run."""
    port = free_port()
    script = os.path.join(os.path.dirname(__file__), "apps", "aiohttp_app.py")
    if mode == "cli":
        argv = [sys.executable, "-m", "ferroloop", "run", script, "plain", str(port)]
    else:
        argv = [sys.executable, script, mode, str(port)]
    proc = subprocess.Popen(argv,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    expected = "asyncio" if mode == "asyncio" else "ferroloop"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    body = r.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, "run_app did not start"
                time.sleep(0.1)
        assert body.startswith(expected), body
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, (proc.returncode, err)
    assert f"CLEANUP {expected}" in out, (out, err)
    assert "Traceback" not in err, err
