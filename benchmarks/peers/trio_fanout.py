"""The fan-out app on trio: an ASGI app served by hypercorn's trio worker,
calling the backend with httpx.AsyncClient (which runs on trio)."""

import json
import os
import time

import httpx
import trio

BACKEND_URL = os.environ.get("BACKEND_URL", "http://127.0.0.1:9001").rstrip("/")
CALLS = 10
_client = None


def client():
    global _client
    if _client is None:
        limits = httpx.Limits(max_connections=20000, max_keepalive_connections=20000)
        _client = httpx.AsyncClient(base_url=BACKEND_URL, limits=limits, timeout=60.0)
    return _client


async def call_backend(i, params, results):
    started = time.monotonic()
    response = await client().get(f"/api/{i}", params=params)
    response.raise_for_status()
    results[i] = {"call": i, "result": response.json(),
                  "duration": round(time.monotonic() - started, 4)}


async def fanout(query):
    delay = dict(httpx.QueryParams(query)).get("delay")
    params = {"delay": delay} if delay is not None else None
    started = time.monotonic()
    results = [None] * CALLS
    async with trio.open_nursery() as nursery:
        for i in range(CALLS):
            nursery.start_soon(call_backend, i, params, results)
    return {"mode": "concurrent", "calls": results,
            "elapsed": round(time.monotonic() - started, 4)}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] != "/fanout":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = json.dumps(await fanout(scope["query_string"].decode())).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
