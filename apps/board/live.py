"""Live updates: new posts pushed to open pages over server-sent events,
fed by PostgreSQL ``LISTEN``/``NOTIFY``.

Adding a post notifies the channel ``board_posts`` with the post's id
(:mod:`apps.board.db`), whichever process served the request. Each process
keeps one :class:`LiveFeed`, started by the app's start-up hook: one
connection of its own that listens on the channel. For each notification
(or burst of them) it reads the posts in one query, renders each once,
and hands them to every subscriber's queue; each ``/events`` stream
(:func:`corofw.event_stream`) sends what its queue holds as one ``posts``
event, so that a burst costs one write per stream, not one per post. So pages
served by different ``--workers`` processes see the same posts.

A stream starts with the posts newer than the one its page showed last
(``?after=``, or the ``Last-Event-ID`` a reconnecting browser sends), so
nothing posted in between is missed; every event carries the id of its
newest post.
A subscriber that falls too far behind is dropped: its browser reconnects
and catches up from the database the same way, as every stream does after
the listening connection was lost and opened again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from corofw import (
    Cancelled,
    Coro,
    Event,
    HTTPError,
    Queue,
    QueueFull,
    Router,
    ServerSentEvent,
    event_stream,
    last_event_id,
    move_on_after,
    sleep,
    spawn,
)
from corofw.data import pg

from .context import Board, require_user
from .db import POSTS_CHANNEL, Post, Store

log = logging.getLogger("board.live")

#: Put in every queue after the listening connection was opened again:
#: notifications may have been missed meanwhile, read them from the database.
RESYNC = "resync"
BACKLOG_LIMIT = 100
BATCH_LIMIT = 100
SEEN_LIMIT = 1000
READY = ServerSentEvent("{}", event="ready")


class FeedUnavailable(Exception):
    """The feed is not listening (the database is unreachable)."""


class Subscription:
    """One stream's queue of ``(post_id, description)`` items (or
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

    def describe(self, post: Post) -> str:
        """What a page needs of ``post``: JSON with its id and HTML."""
        return json.dumps({"id": post.id, "html": self.render(post)})

    def start(self) -> Coro[None]:
        """Start listening (the app's start-up hook calls it), and return
        once the feed listens; :class:`FeedUnavailable` when it cannot
        within ``ready_timeout`` seconds."""
        if self._task is None or self._task.done:
            self._listening = Event()
            self._task = yield from spawn(self._listen(), "board live feed")
        yield from self._wait_listening()

    def stop(self) -> Coro[None]:
        """Stop listening and close the connection (the shutdown hook)."""
        task, self._task = self._task, None
        if task is not None and not task.done:
            task.cancel("the board is stopping")
            try:
                yield from task.join()
            except Cancelled:
                if not task.cancelled:
                    raise

    def _wait_listening(self) -> Coro[None]:
        listening = self._listening
        yield from move_on_after(self.ready_timeout, listening.wait())
        if not listening.is_set():
            raise FeedUnavailable("the live feed cannot reach the database")

    def subscribe(self) -> Coro[Subscription]:
        """A new subscription, once the feed listens (it may be opening its
        connection again); :class:`FeedUnavailable` when it does not
        within ``ready_timeout`` seconds."""
        yield from self._wait_listening()
        subscription = Subscription(self.queue_size)
        self.subscribers.add(subscription)
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
                            self._broadcast((post.id, self.describe(post)))
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
    notes += conn.received_notifications(BATCH_LIMIT - 1)
    return [int(note.payload) for note in notes]


def posts_event(posts: list[tuple[int, str]]) -> ServerSentEvent:
    """One ``posts`` event for ``(post_id, description)`` pairs, oldest
    first: its data is their JSON list, its id the newest post's."""
    return ServerSentEvent("[" + ",".join(text for _, text in posts) + "]", event="posts",
                           id=str(posts[-1][0]))


def stream_posts(feed: LiveFeed, after: int | None) -> Iterator[Any]:
    """The events of an ``/events`` stream: the posts after post ``after``
    (from now on when it is None), then the new ones as they come, each
    batch in one ``posts`` event (under a burst, what piled up goes out
    together). It ends when the subscription is dropped (the browser then
    reconnects and catches up)."""
    subscription = None
    seen: dict[int, None] = {}
    last = floor = 0

    def fresh(items: list[Any]) -> Iterator[ServerSentEvent]:
        nonlocal last
        new = [(post_id, text) for post_id, text in items
               if post_id > floor and post_id not in seen]
        for post_id, _ in new:
            seen[post_id] = None
            last = max(last, post_id)
        while len(seen) > SEEN_LIMIT:
            del seen[next(iter(seen))]
        if new:
            yield posts_event(new)

    def missed() -> Coro[list[tuple[int, str]]]:
        posts = yield from feed.store.posts_after(last, BACKLOG_LIMIT)
        return [(post.id, feed.describe(post)) for post in posts]

    try:
        try:
            subscription = yield from feed.subscribe()
        except FeedUnavailable as exc:
            yield ServerSentEvent(json.dumps(str(exc)), event="unavailable", retry=5000)
            return
        yield ServerSentEvent(retry=1000)
        # the page shows the posts up to `after`: the feed may still be handing
        # some of them out (it lags under load), and they are not news here
        last = floor = after if after is not None else (yield from feed.store.newest_id())
        yield from fresh((yield from missed()))
        yield READY
        queue = subscription.queue
        while not (subscription.dropped and queue.empty()):
            items = [(yield from queue.get())]
            items += [queue.get_nowait() for _ in range(len(queue))]
            if RESYNC in items:
                items = [item for item in items if item != RESYNC] + (yield from missed())
            yield from fresh(sorted(items))
    finally:
        if subscription is not None:
            feed.unsubscribe(subscription)


def make_routes(board: Board) -> Router:
    """``/events``: the live stream of new posts (login required)."""
    routes = Router()

    @routes.get("/events")
    def events(request):
        require_user(request)
        raw = last_event_id(request) or request.query.get("after")
        after = None
        if raw is not None:
            if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
                raise HTTPError(400, {"error": f"after must be a post number, not {raw[:40]!r}"})
            after = int(raw)
        return event_stream(stream_posts(board.feed, after),
                            keep_alive=board.settings.heartbeat)

    return routes
