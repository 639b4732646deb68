"""uvicorn serving an ASGI app on ferroloop, with httpx as the client (also on the loop).

Three ways to put uvicorn on ferroloop, each tested:
  * ``uvicorn --loop ferroloop:new_event_loop app:app`` (uvicorn >= 0.36 takes a loop factory
    as ``module:callable``),
  * ``ferroloop.install()`` then ``uvicorn.run(app, loop="none")``, or
    ``python -m ferroloop run -m uvicorn --loop none app:app`` (uvicorn then uses
    ``asyncio.run``, whose loop comes from the installed policy; note ``loop="asyncio"`` would
    not: uvicorn constructs ``asyncio.SelectorEventLoop`` itself),
  * in process: ``uvicorn.Server(Config(app, loop="none")).serve()`` awaited on a running
    ferroloop loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from _integ import check_loop, free_port, run

uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from apps import asgi_app  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BODY_SIZE = 1024 * 1024


async def exercise(base: str, expect_loop: str) -> None:
    """Every HTTP check against a running server at ``base``."""
    async with httpx.AsyncClient(base_url=base, timeout=20) as client:
        # the server's loop
        r = await client.get("/loop")
        assert r.status_code == 200
        assert r.json()["loop"].startswith(expect_loop), r.json()

        # POST a 1 MiB body; the server returns its digest
        body = os.urandom(BODY_SIZE)
        r = await client.post("/sha256", content=body)
        assert r.json() == {"sha256": hashlib.sha256(body).hexdigest(), "size": BODY_SIZE}

        # streamed response, read chunk by chunk
        digest, size = hashlib.sha256(), 0
        async with client.stream("GET", "/stream") as r:
            assert r.status_code == 200
            async for chunk in r.aiter_bytes():
                digest.update(chunk)
                size += len(chunk)
        expected = hashlib.sha256(b"".join(asgi_app.stream_chunk(i)
                                           for i in range(asgi_app.STREAM_CHUNKS)))
        assert size == asgi_app.STREAM_CHUNKS * asgi_app.STREAM_CHUNK_SIZE
        assert digest.hexdigest() == expected.hexdigest()

    # keep-alive: 100 sequential requests over one pooled connection (one client port)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=base, timeout=20, limits=limits) as client:
        ports = set()
        for _ in range(100):
            r = await client.get("/peer")
            assert r.status_code == 200
            ports.add(r.text)
        assert len(ports) == 1, ports

    # concurrent clients: 10 clients x 10 requests at once, each POSTing its own body
    async def one_client(n: int) -> int:
        async with httpx.AsyncClient(base_url=base, timeout=20) as client:
            ok = 0
            for i in range(10):
                payload = f"client {n} request {i}".encode() * 100
                r = await client.post("/sha256", content=payload)
                assert r.json()["sha256"] == hashlib.sha256(payload).hexdigest()
                ok += 1
            return ok

    results = await asyncio.gather(*(one_client(n) for n in range(10)))
    assert results == [10] * 10


# (server loop kind, how uvicorn is started)
CLI_MODES = [
    ("asyncio", ["-m", "uvicorn", "--loop", "asyncio"]),
    ("ferroloop", ["-m", "uvicorn", "--loop", "ferroloop:new_event_loop"]),
    ("ferroloop", ["-c", "import sys, ferroloop, uvicorn; ferroloop.install(); "
                         "uvicorn.main(sys.argv[1:])", "--loop", "none"]),
    ("ferroloop", ["-m", "ferroloop", "run", "-m", "uvicorn", "--loop", "none"]),
]


@pytest.mark.parametrize("loop_name,argv", CLI_MODES,
                         ids=["asyncio", "loop-factory", "install", "ferroloop-cli"])
def test_uvicorn_process(loop_name, argv):
    """A uvicorn process on the loop; httpx requests; SIGTERM during a request shuts it down
    gracefully (the in-flight request completes, the lifespan shutdown runs on the loop)."""
    port = free_port()
    cmd = [sys.executable, *argv, "--host", "127.0.0.1", "--port", str(port),
           "--app-dir", HERE, "--lifespan", "on", "--log-level", "info", "--no-access-log",
           "apps.asgi_app:app"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        async def main():
            deadline = time.monotonic() + 30
            async with httpx.AsyncClient(base_url=base, timeout=5) as client:
                while True:
                    assert proc.poll() is None, proc.communicate()
                    try:
                        await client.get("/loop")
                        break
                    except httpx.TransportError:
                        assert time.monotonic() < deadline, "uvicorn did not start"
                        await asyncio.sleep(0.1)
            await exercise(base, loop_name)

            # graceful shutdown: SIGTERM while /slow is being served
            async with httpx.AsyncClient(base_url=base, timeout=20) as client:
                slow = asyncio.ensure_future(client.get("/slow"))
                async with httpx.AsyncClient(base_url=base, timeout=5) as probe:
                    while (await probe.get("/slow-in-progress")).text != "1":
                        assert not slow.done()
                        await asyncio.sleep(0.01)
                proc.send_signal(signal.SIGTERM)
                r = await slow
                assert (r.status_code, r.text) == (200, "slow-done")

        run(loop_name, main)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # uvicorn re-raises the captured SIGTERM after its graceful shutdown
    assert proc.returncode in (0, -signal.SIGTERM), (proc.returncode, err)
    assert f"LIFESPAN-SHUTDOWN {loop_name}" in out, (out, err)
    assert "Finished server process" in err, err
    assert "Traceback" not in err, err


def test_uvicorn_in_process(loop_name):
    """uvicorn.Server.serve() as a task on a running loop; the client on the same loop."""
    port = free_port()

    async def main():
        config = uvicorn.Config(asgi_app.app, host="127.0.0.1", port=port, loop="none",
                                lifespan="on", log_level="warning")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            assert not task.done(), task.result()
            await asyncio.sleep(0.01)
        await exercise(f"http://127.0.0.1:{port}", loop_name)
        check_loop(loop_name)
        server.should_exit = True
        await asyncio.wait_for(task, 10)

    run(loop_name, main)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # uvicorn's legacy websockets impl
@pytest.mark.filterwarnings("ignore:The `websockets` implementation is deprecated")
def test_uvicorn_unix_socket_and_websocket(loop_name, tmp_path):
    """uvicorn on a Unix socket (``uds=``), httpx through it, and websockets served by
    uvicorn: its websockets-sansio implementation over the Unix socket, its (legacy)
    websockets implementation over TCP."""
    websockets_client = pytest.importorskip("websockets.asyncio.client")
    from websockets.exceptions import ConnectionClosedError

    path = str(tmp_path / "uvicorn.sock")
    port = free_port()

    async def ws_session(ws):
        for i in range(300):
            await ws.send(f"message {i}")
            assert await ws.recv() == f"message {i}"[::-1]
        big = os.urandom(2 * 1024 * 1024)
        await ws.send(big)
        assert await ws.recv() == hashlib.sha256(big).digest()
        await ws.send("bye")
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.rcvd.code == 4000

    async def main():
        servers = [uvicorn.Server(uvicorn.Config(asgi_app.app, uds=path, loop="none",
                                                 ws="websockets-sansio",
                                                 ws_max_size=8 * 1024 * 1024,
                                                 lifespan="off", log_level="warning")),
                   uvicorn.Server(uvicorn.Config(asgi_app.app, host="127.0.0.1", port=port,
                                                 loop="none", ws="websockets",
                                                 ws_max_size=8 * 1024 * 1024,
                                                 lifespan="off", log_level="warning"))]
        tasks = [asyncio.create_task(s.serve()) for s in servers]
        while not all(s.started for s in servers):
            for t in tasks:
                assert not t.done(), t.result()
            await asyncio.sleep(0.01)

        transport = httpx.AsyncHTTPTransport(uds=path)
        async with httpx.AsyncClient(transport=transport, base_url="http://uvicorn") as client:
            r = await client.get("/loop")
            assert r.json()["loop"].startswith(loop_name)
            body = os.urandom(BODY_SIZE)
            r = await client.post("/sha256", content=body)
            assert r.json() == {"sha256": hashlib.sha256(body).hexdigest(), "size": BODY_SIZE}

        async with websockets_client.unix_connect(path, "ws://uvicorn/ws",
                                                  max_size=None) as ws:
            await ws_session(ws)
        async with websockets_client.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
            await ws_session(ws)

        for s in servers:
            s.should_exit = True
        await asyncio.wait_for(asyncio.gather(*tasks), 10)

    run(loop_name, main)
