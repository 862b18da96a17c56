"""WebSocket echo and SSE broadcast on corofw:
``corofw run benchmarks.peers.corofw_ws:routes``.

``/ws`` echoes each message; ``GET /events`` subscribes to the broadcast
that ``POST /broadcast`` sends (its body is the event's data)."""

from corofw import Event, Router, ServerSentEvent, event_stream

routes = Router()


class Broadcast:
    """The next event: subscribers wait on ``ready``; a broadcast sets it
    and starts a new one."""

    def __init__(self) -> None:
        self.ready = Event()
        self.data = ""

    def publish(self, data: str) -> None:
        ready, self.ready = self.ready, Event()
        self.data = data
        ready.set()


BROADCAST = Broadcast()


@routes.websocket("/ws")
def echo(ws):
    while True:
        message = yield from ws.receive()
        yield from ws.send(message)


@routes.get("/events")
def events(request):
    def stream():
        yield ServerSentEvent(comment="subscribed")
        while True:
            ready = BROADCAST.ready
            yield from ready.wait()
            yield ServerSentEvent(BROADCAST.data)

    return event_stream(stream(), keep_alive=None)


@routes.post("/broadcast")
def broadcast(request):
    BROADCAST.publish(request.body.decode())
    return "sent\n"
