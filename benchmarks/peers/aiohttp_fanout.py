"""The fan-out app on aiohttp (server + one ClientSession): ``python aiohttp_fanout.py PORT``."""

import asyncio
import os
import sys
import time

import aiohttp
from aiohttp import web

BACKEND_URL = os.environ.get("BACKEND_URL", "http://127.0.0.1:9001").rstrip("/")
CALLS = 10


async def call_backend(session, i, params):
    started = time.monotonic()
    async with session.get(f"{BACKEND_URL}/api/{i}", params=params) as response:
        response.raise_for_status()
        result = await response.json()
    return {"call": i, "result": result, "duration": round(time.monotonic() - started, 4)}


async def fanout(request):
    delay = request.query.get("delay")
    params = {"delay": delay} if delay is not None else None
    started = time.monotonic()
    calls = await asyncio.gather(*(call_backend(request.app["session"], i, params)
                                   for i in range(CALLS)))
    return web.json_response({"mode": "concurrent", "calls": calls,
                              "elapsed": round(time.monotonic() - started, 4)})


async def session_context(app):
    connector = aiohttp.TCPConnector(limit=20000, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        app["session"] = session
        yield


app = web.Application()
app.router.add_get("/fanout", fanout)
app.cleanup_ctx.append(session_context)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
                backlog=4096)
