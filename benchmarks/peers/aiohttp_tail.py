"""The tail benchmark's fan-out on aiohttp, written the usual way: one
ClientSession, ``asyncio.gather`` of ten calls, no hedging or retries.
``python aiohttp_tail.py PORT BACKEND_URL``; ``GET /count`` says how many
fan-outs it served."""

import asyncio
import sys

import aiohttp
from aiohttp import web

CALLS = 10
served = {"fanout": 0}


async def call_backend(session, url):
    async with session.get(url) as response:
        response.raise_for_status()
        return await response.json()


async def fanout(request):
    served["fanout"] += 1
    base = request.app["backend"]
    results = await asyncio.gather(*(call_backend(request.app["session"], f"{base}/api/{i}")
                                     for i in range(CALLS)))
    return web.json_response({"calls": len(results)})


async def count(request):
    return web.json_response(served)


async def session_context(app):
    connector = aiohttp.TCPConnector(limit=20000, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        app["session"] = session
        yield


app = web.Application()
app.router.add_get("/fanout", fanout)
app.router.add_get("/count", count)
app.cleanup_ctx.append(session_context)

if __name__ == "__main__":
    app["backend"] = sys.argv[2].rstrip("/")
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
                backlog=4096)
