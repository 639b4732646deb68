"""A plain ASGI app (no framework) for the uvicorn integration tests.

Routes: GET /loop (the module of the running loop's type), POST /sha256 (digest and length of
the request body), GET /stream (100 chunks of 10 KiB, streamed), GET /peer (the client's port,
to see keep-alive reuse one connection), GET /slow (answers after 0.5 s, to test graceful
shutdown; GET /slow-in-progress counts those being served), websocket /ws (text echoed
reversed, bytes answered with their sha256, "bye" closes with code 4000). The lifespan
shutdown prints ``LIFESPAN-SHUTDOWN <loop module>`` to stdout.
"""

import asyncio
import hashlib
import json
import sys

STREAM_CHUNKS = 100
STREAM_CHUNK_SIZE = 10 * 1024
SLOW_IN_PROGRESS = 0


def stream_chunk(i: int) -> bytes:
    return bytes([i % 251]) * STREAM_CHUNK_SIZE


def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


async def _send(send, status, body: bytes, content_type=b"text/plain"):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    global SLOW_IN_PROGRESS
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                print("LIFESPAN-SHUTDOWN", loop_module(), flush=True)
                sys.stdout.flush()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":  # /ws: echo, text reversed, bytes as their sha256
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                if message["text"] == "bye":
                    await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
                    return
                await send({"type": "websocket.send", "text": message["text"][::-1]})
            else:
                await send({"type": "websocket.send",
                            "bytes": hashlib.sha256(message["bytes"]).digest()})
    assert scope["type"] == "http"
    path, method = scope["path"], scope["method"]
    if path == "/loop":
        await _send(send, 200, json.dumps({"loop": loop_module()}).encode(), b"application/json")
    elif path == "/sha256" and method == "POST":
        digest, size = hashlib.sha256(), 0
        while True:
            message = await receive()
            body = message.get("body", b"")
            digest.update(body)
            size += len(body)
            if not message.get("more_body"):
                break
        await _send(send, 200, json.dumps({"sha256": digest.hexdigest(), "size": size}).encode(),
                    b"application/json")
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        for i in range(STREAM_CHUNKS):
            await send({"type": "http.response.body", "body": stream_chunk(i), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/peer":
        await _send(send, 200, str(scope["client"][1]).encode())
    elif path == "/slow":
        SLOW_IN_PROGRESS += 1
        try:
            await asyncio.sleep(0.5)
            await _send(send, 200, b"slow-done")
        finally:
            SLOW_IN_PROGRESS -= 1
    elif path == "/slow-in-progress":
        await _send(send, 200, str(SLOW_IN_PROGRESS).encode())
    else:
        await _send(send, 404, b"not found")
