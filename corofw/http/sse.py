"""Server-sent events: the ``text/event-stream`` format of the HTML standard.

:func:`event_stream` makes a streaming response of the events a generator
yields; a browser's ``EventSource`` reads them, and reconnects on its own::

    @routes.get("/ticks")
    def ticks(request):
        start = int(last_event_id(request) or 0)

        def events():
            for n in itertools.count(start + 1):
                yield ServerSentEvent(f"tick {n}", id=str(n))
                yield from sleep(1)

        return event_stream(events())

The generator yields :class:`ServerSentEvent` objects (or a ``str``, the
data of an event, or a ``dict`` of ServerSentEvent's arguments) and waits
in between with ``yield from``, like any handler code. It runs as a task of
its own, so that while it waits the stream can send a comment every
``keep_alive`` seconds: proxies and browsers drop a connection that stays
silent for long. It runs at most one event ahead of the client, so a slow
reader slows it down. When the client goes away the stream stops: the
generator is cancelled where it waits, and its ``finally`` blocks run.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any, cast

from ..kernel import Cancelled, Queue, spawn
from ..kernel.deadline import Deadline
from ..kernel.traps import TASK, Coro
from .messages import Request, StreamingResponse

_END = object()
_SILENT = object()
_KEEP_ALIVE = b": keep-alive\n\n"


class ServerSentEvent:
    """One event: ``data`` (any text; each of its lines becomes a ``data:``
    line and the browser joins them again with newlines), ``event`` (its
    type; the browser's ``message`` when None), ``id`` (what the browser
    sends back as Last-Event-ID when it reconnects), ``retry`` (the
    reconnection delay the browser should use from now on, in
    milliseconds), and ``comment`` (text the browser ignores).

    ``ValueError`` for an ``event`` or ``id`` that would break the stream
    (a line break; a NUL in an id, which browsers ignore) and for a
    ``retry`` that is not a whole number of milliseconds >= 0."""

    __slots__ = ("data", "event", "id", "retry", "comment")

    def __init__(self, data: str | None = None, event: str | None = None,
                 id: str | None = None, retry: int | None = None,
                 comment: str | None = None) -> None:
        for name, value in (("event", event), ("id", id)):
            if value is not None and ("\n" in value or "\r" in value):
                raise ValueError(f"an event's {name} cannot hold a line break: {value!r}")
        if id is not None and "\0" in id:
            raise ValueError(f"an event id cannot hold a NUL character: {id!r}")
        if retry is not None and (type(retry) is not int or retry < 0):
            raise ValueError(f"retry is a whole number of milliseconds >= 0, not {retry!r}")
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry
        self.comment = comment

    def __repr__(self) -> str:
        return f"<ServerSentEvent {self.event or 'message'} id={self.id!r} {self.data!r}>"

    def encode(self) -> bytes:
        """The event as the stream carries it, ending with its blank line."""
        lines = []
        if self.comment is not None:
            lines += [f": {line}" for line in _lines(self.comment)]
        if self.event is not None:
            lines.append(f"event: {self.event}")
        if self.id is not None:
            lines.append(f"id: {self.id}")
        if self.retry is not None:
            lines.append(f"retry: {self.retry}")
        if self.data is not None:
            lines += [f"data: {line}" for line in _lines(self.data)]
        return ("\n".join(lines) + "\n\n").encode()


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def last_event_id(request: Request) -> str | None:
    """The id of the last event a reconnecting client received (its
    ``Last-Event-ID`` header), to resume the stream after it; None on a
    first connection."""
    return request.headers.get("last-event-id")


def event_stream(events: Generator[Any, Any, Any], *, keep_alive: float | None = 15.0,
                 status: int = 200, headers: Any = None) -> StreamingResponse:
    """A ``text/event-stream`` response of the events ``events`` yields (see
    the module's documentation). A comment is sent after every
    ``keep_alive`` seconds without an event (None: never). The response
    is not cached, and nginx is asked not to buffer it
    (``X-Accel-Buffering: no``)."""
    if not hasattr(events, "send") or not hasattr(events, "throw"):
        raise TypeError(f"event_stream() needs a generator object (call the generator "
                        f"function), not {events!r}")
    if keep_alive is not None and not (isinstance(keep_alive, (int, float))
                                       and math.isfinite(keep_alive) and keep_alive > 0):
        raise ValueError(f"keep_alive must be a number of seconds > 0 or None, "
                         f"not {keep_alive!r}")
    response = StreamingResponse(_stream(events, keep_alive), status, headers,
                                 "text/event-stream")
    response.endless = True  # a shutdown ends it; the browser reconnects elsewhere
    for name, value in (("cache-control", "no-store"), ("x-accel-buffering", "no")):
        if response.headers is None or name not in response.headers:
            response.set_header(name, value)
    return response


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _stream(events: Generator[Any, Any, Any], keep_alive: float | None) -> Coro[None]:
    """The response's body: what :func:`_produce` hands over, and a
    keep-alive comment whenever nothing came for ``keep_alive`` seconds
    (one :class:`~corofw.kernel.deadline.Deadline`, armed only while the
    stream waits: a broadcast to many streams moves no timers)."""
    queue: Queue = Queue(1)
    producer = yield from spawn(_produce(events, queue), "event source")
    quiet = None if keep_alive is None else Deadline((yield TASK))
    try:
        while True:
            if quiet is None or not queue.empty():
                item = yield from queue.get()
            else:
                quiet.set(cast(float, keep_alive), "keep-alive")
                try:
                    item = yield from queue.get()
                except Cancelled as exc:
                    if exc.scope is not quiet:
                        raise
                    item = _SILENT
                finally:
                    quiet.clear()
            if item is _END:
                return
            if item is _SILENT:
                yield _KEEP_ALIVE
            elif type(item) is _Failed:
                raise item.error
            else:
                yield item
    finally:
        producer.cancel("the event stream ended")
        if quiet is not None:
            quiet.close()


def _produce(events: Generator[Any, Any, Any], queue: Queue) -> Coro[None]:
    """Drive ``events``: forward its traps to the kernel, and put each event
    it yields, encoded, in ``queue`` (one at a time: a slow client slows it
    down). An exception raised here (a cancellation, too) is thrown into
    ``events`` where it stands, so that its own clean-up runs."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            item = events.send(value) if error is None else events.throw(error)
        except StopIteration:
            break
        except Exception as exc:
            yield from queue.put(_Failed(exc))
            return
        value = error = None
        try:
            if isinstance(item, ServerSentEvent):
                yield from queue.put(item.encode())
            elif isinstance(item, str):
                yield from queue.put(ServerSentEvent(item).encode())
            elif isinstance(item, dict):
                yield from queue.put(ServerSentEvent(**item).encode())
            else:
                value = yield item
        except BaseException as exc:  # Cancelled included: let the generator clean up
            error = exc
    yield from queue.put(_END)
