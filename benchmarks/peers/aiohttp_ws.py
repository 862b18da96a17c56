"""WebSocket echo and SSE broadcast on aiohttp, one process:
``python aiohttp_ws.py PORT``.

``/ws`` echoes each message; ``GET /events`` subscribes to the broadcast
that ``POST /broadcast`` writes to every subscriber (its body is the data)."""

import asyncio
import sys

from aiohttp import WSMsgType, web

SUBSCRIBERS = "subscribers"


async def echo(request):
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


async def events(request):
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    await response.prepare(request)
    done = asyncio.get_running_loop().create_future()
    request.app[SUBSCRIBERS][response] = done
    await response.write(b": subscribed\n\n")
    try:
        await done
    finally:
        request.app[SUBSCRIBERS].pop(response, None)
    return response


async def broadcast(request):
    payload = b"data: " + await request.read() + b"\n\n"
    for response in list(request.app[SUBSCRIBERS]):
        try:
            await response.write(payload)
        except ConnectionError:
            request.app[SUBSCRIBERS].pop(response).set_result(None)
    return web.Response(text="sent\n")


app = web.Application()
app[SUBSCRIBERS] = {}
app.router.add_get("/ws", echo)
app.router.add_get("/events", events)
app.router.add_post("/broadcast", broadcast)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
                backlog=4096)
