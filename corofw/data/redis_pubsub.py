"""Redis pub/sub: messages delivered to a waiting task.

A subscribed connection only receives: messages pushed by the server,
interleaved with the confirmations of SUBSCRIBE and UNSUBSCRIBE. One task
at a time reads the socket and sorts what arrives: messages go to a queue
that :meth:`PubSub.next_message` serves, confirmations are counted. Any
task may subscribe or unsubscribe while another waits for messages: it
sends its command and, if someone is already reading, waits for that
reader to see the confirmation (or takes over the reading when the reader
leaves). A ``next_message`` that times out or is cancelled leaves the
connection intact: a read is never interrupted half way through a reply.

Confirmations arrive in the order the commands were sent, so a command
that asked for *n* of them is confirmed once the count of confirmations
seen reaches the count sent up to and including it.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

from ..kernel.sync import Lock
from ..kernel.task import ClosedResourceError, WaitQueue
from ..kernel.timeouts import move_on_after
from ..kernel.traps import Coro, park
from .redis_connection import Connection
from .redis_errors import RedisConnectionError, RedisProtocolError, ResponseError
from .resp import NEED_DATA, encode_command

_CONFIRMATIONS = {"subscribe", "unsubscribe", "psubscribe", "punsubscribe"}


class Message(NamedTuple):
    """A published message: its ``channel``, its ``data``, and the
    ``pattern`` it matched (None for a plain subscription). Bytes, or str
    with ``decode_responses``."""

    channel: Any
    data: Any
    pattern: Any = None


class PubSub:
    """A subscription on a connection of its own. Make one with
    ``yield from redis.subscribe(...)`` or ``redis.psubscribe(...)``; close
    it (or use ``with``) when done."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._messages: deque[Message] = deque()
        self._channels: set[Any] = set()
        self._patterns: set[Any] = set()
        self._sent = 0  # confirmations asked for
        self._confirmed = 0  # confirmations seen
        self._reading = False
        self._progress = WaitQueue(self)
        self._send_lock = Lock()
        self._failure: str | None = None  # why the subscription ended

    def __repr__(self) -> str:
        return (f"<PubSub channels={sorted(self._channels)!r} "
                f"patterns={sorted(self._patterns)!r} {len(self._messages)} queued>")

    def __enter__(self) -> PubSub:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def channels(self) -> frozenset[Any]:
        """The channels subscribed to (as confirmed by the server)."""
        return frozenset(self._channels)

    @property
    def patterns(self) -> frozenset[Any]:
        """The patterns subscribed to (as confirmed by the server)."""
        return frozenset(self._patterns)

    @property
    def closed(self) -> bool:
        """True once closed, or once its connection was lost."""
        return self._failure is not None

    def subscribe(self, *channels: Any) -> Coro[None]:
        """Subscribe to ``channels``; returns once the server confirmed, so a
        message published after this returns is delivered."""
        yield from self._request("SUBSCRIBE", channels)

    def psubscribe(self, *patterns: Any) -> Coro[None]:
        """Subscribe to the channels matching glob ``patterns``."""
        yield from self._request("PSUBSCRIBE", patterns)

    def unsubscribe(self, *channels: Any) -> Coro[None]:
        """Leave ``channels`` (all of them when none is named). Messages
        already queued are still delivered."""
        yield from self._request("UNSUBSCRIBE", channels or tuple(self._channels))

    def punsubscribe(self, *patterns: Any) -> Coro[None]:
        """Leave ``patterns`` (all of them when none is named)."""
        yield from self._request("PUNSUBSCRIBE", patterns or tuple(self._patterns))

    def next_message(self, timeout: float | None = None) -> Coro[Message | None]:
        """The next message, waiting for it as long as needed, or at most
        ``timeout`` seconds (then None). Raises
        :class:`~corofw.data.redis_errors.RedisConnectionError` once the
        connection is lost: subscribe again on a new PubSub."""
        if not self._messages:
            if timeout is None:
                yield from self._pump(self._has_message)
            elif not (yield from move_on_after(timeout, self._pump(self._has_message), False)):
                return None
        return self._messages.popleft()

    def close(self) -> None:
        """Close the connection (the server drops its subscriptions); tasks
        waiting on this PubSub get RedisConnectionError. Idempotent."""
        if self._failure is None:
            self._failure = "the subscription was closed"
        self._conn.close()
        self._progress.wake_all()

    # -- reading ---------------------------------------------------------------

    def _has_message(self) -> bool:
        return bool(self._messages)

    def _request(self, command: str, names: tuple[Any, ...]) -> Coro[None]:
        if self._failure is not None:
            raise RedisConnectionError(self._failure)
        if not names:
            return
        payload = encode_command((command, *names))
        self._sent += len(names)
        target = self._sent
        with (yield from self._send_lock.acquire()):
            try:
                yield from self._conn.send(payload)
            except BaseException as exc:
                self._fail(exc)
                raise
        yield from self._pump(lambda: self._confirmed >= target)

    def _pump(self, done: Any) -> Coro[bool]:
        """Read and sort replies until ``done()``; while another task reads,
        wait for it to make progress (or to leave the reading to us)."""
        while not done():
            if self._failure is not None:
                raise RedisConnectionError(self._failure)
            if self._reading:
                yield from park(self._progress)
                continue
            self._reading = True
            try:
                yield from self._read_one()
            finally:
                self._reading = False
                self._progress.wake_all()
        return True

    def _read_one(self) -> Coro[None]:
        conn = self._conn
        try:
            reply = conn.reader.gets()
            while reply is NEED_DATA:
                yield from conn.receive()
                reply = conn.reader.gets()
            self._sort(reply)
        except ClosedResourceError:  # close() while this task waited to read
            raise RedisConnectionError(self._failure or "the subscription was closed") from None
        except (RedisConnectionError, RedisProtocolError, ResponseError) as exc:
            self._fail(exc)
            raise

    def _sort(self, reply: Any) -> None:
        if isinstance(reply, ResponseError):
            raise reply
        if not isinstance(reply, list) or not reply:
            raise RedisProtocolError(f"unexpected reply on a subscribed connection: {reply!r}")
        kind = reply[0]
        if isinstance(kind, bytes):
            kind = kind.decode("ascii", "replace")
        if kind == "message":
            self._messages.append(Message(reply[1], reply[2]))
        elif kind == "pmessage":
            self._messages.append(Message(reply[2], reply[3], reply[1]))
        elif kind in _CONFIRMATIONS:
            names = self._patterns if kind.startswith("p") else self._channels
            if kind.endswith("unsubscribe"):
                names.discard(reply[1])
            else:
                names.add(reply[1])
            self._confirmed += 1
        else:
            raise RedisProtocolError(f"unexpected {kind!r} push on a subscribed connection")

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = f"the subscription broke: {exc}"
            self._conn.close()
            self._progress.wake_all()
