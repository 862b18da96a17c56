"""Live updates: new posts pushed to open pages over server-sent events,
fed by PostgreSQL ``LISTEN``/``NOTIFY``.

Adding a post notifies the channel ``board_posts`` with the post's id
(:mod:`apps.board.db`), whichever process served the request. Each process
keeps one :class:`LiveFeed`: one connection of its own that listens on the
channel, started by the first page that subscribes. For each notification
(or burst of them) it reads the posts in one query, renders each once,
and hands them to every subscriber's queue; each ``/events`` stream writes
out what its queue holds, all of it in one write when several piled up. So two pages
served by different ``--workers`` processes see the same posts.

A stream starts with the posts newer than the one its page showed last
(``?after=``, or the ``Last-Event-ID`` a reconnecting browser sends), so
nothing posted in between is missed; every event carries the post's id.
A subscriber that falls too far behind is dropped: its browser reconnects
and catches up from the database the same way, as it does after the
listening connection was lost and re-opened.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from corofw import (
    Coro,
    Event,
    HTTPError,
    Queue,
    QueueFull,
    Router,
    StreamingResponse,
    TaskTimeout,
    move_on_after,
    sleep,
    spawn,
)
from corofw.data import pg

from .context import Board, require_user
from .db import POSTS_CHANNEL, Post, Store

log = logging.getLogger("board.live")

#: Put in every queue after the listening connection was re-opened:
#: notifications may have been missed meanwhile, read them from the database.
RESYNC = "resync"
BACKLOG_LIMIT = 100
BATCH_LIMIT = 100
SEEN_LIMIT = 1000


class FeedUnavailable(Exception):
    """The feed could not start listening (the database is unreachable)."""


class Subscription:
    """One stream's queue of ``(post_id, event_text)`` items (or
    :data:`RESYNC`); ``dropped`` once it fell too far behind."""

    def __init__(self, size: int) -> None:
        self.queue = Queue(size)
        self.dropped = False


class LiveFeed:
    """New posts of this process's share of the board, for its streams.

    ``render(post)`` gives the HTML a page inserts for a post; ``queue_size``
    bounds what a slow stream may have waiting before it is dropped."""

    def __init__(self, dsn: str, store: Store, render: Callable[[Post], str],
                 queue_size: int = 256, ready_timeout: float = 5.0) -> None:
        self.dsn = dsn
        self.store = store
        self.render = render
        self.queue_size = queue_size
        self.ready_timeout = ready_timeout
        self.subscribers: set[Subscription] = set()
        self._task: Any = None
        self._listening = Event()

    def event_data(self, post: Post) -> str:
        """What an event says about ``post``: JSON with its id and HTML."""
        return json.dumps({"id": post.id, "html": self.render(post)})

    def subscribe(self) -> Coro[Subscription]:
        """A new subscription, once the feed listens (it starts listening
        when the first one comes); :class:`FeedUnavailable` when it cannot
        listen within ``ready_timeout`` seconds."""
        if self._task is None or self._task.done:
            self._listening = Event()
            self._task = yield from spawn(self._listen(), "board live feed")
        subscription = Subscription(self.queue_size)
        self.subscribers.add(subscription)
        listening = self._listening
        yield from move_on_after(self.ready_timeout, listening.wait())
        if not listening.is_set():
            self.subscribers.discard(subscription)
            raise FeedUnavailable("the live feed cannot reach the database")
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop handing posts to ``subscription``."""
        self.subscribers.discard(subscription)

    def _broadcast(self, item: Any) -> None:
        for subscription in list(self.subscribers):
            try:
                subscription.queue.put_nowait(item)
            except QueueFull:
                subscription.dropped = True
                self.subscribers.discard(subscription)

    def _listen(self) -> Coro[None]:
        delay = 0.1
        reconnecting = False
        while True:
            try:
                conn = yield from pg.connect(self.dsn, application_name="board live feed")
                with conn:
                    yield from conn.listen(POSTS_CHANNEL)
                    self._listening.set()
                    if reconnecting:
                        self._broadcast(RESYNC)
                    delay = 0.1
                    while True:
                        ids = yield from _next_ids(conn)
                        for post in (yield from self.store.posts_by_ids(ids)):
                            self._broadcast((post.id, _event(post.id, self.event_data(post))))
            except (pg.PgError, OSError) as exc:
                log.warning("live feed: %s; listening again in %.1f s", exc, delay)
            self._listening.clear()
            reconnecting = True
            yield from sleep(delay)
            delay = min(delay * 2, 5.0)


def _next_ids(conn: pg.Connection) -> Coro[list[int]]:
    """The post ids of the next notification and of those already received
    behind it (a burst of posts is read in one query and rendered once)."""
    notes = [(yield from conn.next_notification())]
    while len(notes) < BATCH_LIMIT:
        try:
            notes.append((yield from conn.next_notification(timeout=0)))
        except TaskTimeout:
            break
    return [int(note.payload) for note in notes]


def _event(post_id: int, data: str, kind: str = "post") -> str:
    return f"id: {post_id}\nevent: {kind}\ndata: {data}\n\n"


def stream_posts(feed: LiveFeed, after: int | None, heartbeat: float) -> Iterator[Any]:
    """The body of an ``/events`` response: the posts after post ``after``
    (from now on when it is None), then each new one as it comes, a comment every ``heartbeat`` idle
    seconds. It ends when the subscription is dropped (the browser then
    reconnects and catches up)."""
    subscription = None
    seen: dict[int, None] = {}
    last = 0

    def fresh(posts: list[Post]) -> Iterator[str]:
        nonlocal last
        for post in posts:
            if post.id not in seen:
                seen[post.id] = None
                last = max(last, post.id)
                yield _event(post.id, feed.event_data(post))
        while len(seen) > SEEN_LIMIT:
            del seen[next(iter(seen))]

    try:
        try:
            subscription = yield from feed.subscribe()
        except FeedUnavailable as exc:
            yield f"retry: 5000\nevent: unavailable\ndata: {json.dumps(str(exc))}\n\n"
            return
        yield "retry: 1000\n\n"
        if after is None:
            after = yield from feed.store.newest_id()
        last = after
        yield from fresh((yield from feed.store.posts_after(after, BACKLOG_LIMIT)))
        yield "event: ready\ndata: {}\n\n"
        queue = subscription.queue
        while not (subscription.dropped and queue.empty()):
            first = yield from move_on_after(heartbeat, queue.get())
            if first is None:
                yield ": keep-alive\n\n"
                continue
            chunk = []
            for item in [first, *(queue.get_nowait() for _ in range(len(queue)))]:
                if item == RESYNC:
                    chunk += fresh((yield from feed.store.posts_after(last, BACKLOG_LIMIT)))
                elif item[0] not in seen:
                    seen[item[0]] = None
                    last = max(last, item[0])
                    chunk.append(item[1])
            if chunk:
                yield "".join(chunk)   # what piled up goes out in one write
    finally:
        if subscription is not None:
            feed.unsubscribe(subscription)


def make_routes(board: Board) -> Router:
    """``/events``: the live stream of new posts (login required)."""
    routes = Router()

    @routes.get("/events")
    def events(request):
        require_user(request)
        raw = request.headers.get("last-event-id") or request.query.get("after")
        after = None
        if raw is not None:
            if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
                raise HTTPError(400, {"error": f"after must be a post number, not {raw[:40]!r}"})
            after = int(raw)
        body = stream_posts(board.feed, after, board.settings.heartbeat)
        return StreamingResponse(body, content_type="text/event-stream",
                                 headers={"cache-control": "no-cache",
                                          "x-accel-buffering": "no"})

    return routes
