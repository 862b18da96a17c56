"""The client's connection pool: keep-alive reuse with limits.

Connections are keyed by ``(scheme, host, port)``. A caller first asks for
an idle connection to reuse; failing that, for a slot to open a new one.
When the total or per-host limit is reached the caller waits (FIFO) for a
slot: a burst of calls is paced by the limits rather than opening an
unbounded number of sockets.
"""

from __future__ import annotations

import socket
from typing import Any

from ..kernel.deadline import Deadline
from ..kernel.task import WaitQueue
from ..kernel.traps import PARK, Coro
from .parser import ResponseParser

_peek = socket.socket.recv  # the TCP stream itself, also under an ssl.SSLSocket
TRUSTED_IDLE = 0.5


class PooledConnection:
    """One connection to a server, with its response parser. ``sent`` and
    ``received`` count the bytes of the exchange in progress: a request
    that failed before anything came back on a reused connection may be
    retried (any request if none of it was sent)."""

    __slots__ = ("key", "sock", "parser", "idle_since", "reused", "sent",
                 "received", "deadline")

    def __init__(self, key: tuple[str, str, int], sock: Any, deadline: Deadline) -> None:
        self.key = key
        self.sock = sock
        self.deadline = deadline  # reused by each exchange: its timer re-arms lazily
        self.parser = ResponseParser()
        self.idle_since = 0.0
        self.reused = False
        self.sent = 0
        self.received = 0

    def looks_alive(self) -> bool:
        """False if the server has closed (or, for plain TCP, written to) the
        idle connection. Peeks at the TCP stream without consuming it; over
        TLS, bytes may be a harmless session ticket, so only the end of the
        stream or an error count (a dead connection that slips through is
        retried once, for idempotent requests)."""
        if self.sock.fd < 0:
            return False
        raw = self.sock.sock
        try:
            peeked = _peek(raw, 1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if type(raw) is socket.socket:
            return False  # data nobody asked for, or the end of the stream
        return bool(peeked)

    def close(self) -> None:
        """Close the socket and drop the connection's deadline timer."""
        self.deadline.close()
        self.sock.close()


class Pool:
    """Limits: ``max_connections`` in all, ``max_per_host`` per key (None:
    the total), ``max_idle_per_host`` kept for reuse, each for at most
    ``idle_timeout`` seconds."""

    def __init__(self, max_connections: int = 100, max_per_host: int | None = None,
                 max_idle_per_host: int = 100, idle_timeout: float = 30.0) -> None:
        self.max_connections = max_connections
        self.max_per_host = max_per_host or max_connections
        self.max_idle_per_host = max_idle_per_host
        self.idle_timeout = idle_timeout
        self.total = 0
        self._per_host: dict[tuple[str, str, int], int] = {}
        self._idle: dict[tuple[str, str, int], list[PooledConnection]] = {}
        self._waiters = WaitQueue(self)
        self._host_waiters: dict[tuple[str, str, int], WaitQueue] = {}

    def __repr__(self) -> str:
        idle = sum(len(v) for v in self._idle.values())
        return f"<Pool {self.total} connections ({idle} idle), {len(self._waiters)} waiting>"

    def take_idle(self, key: tuple[str, str, int], now: float,
                  retryable: bool = False) -> PooledConnection | None:
        """An idle connection to ``key`` that still looks usable, or None;
        never waits (the common case of a warm pool costs no coroutine).

        The most recently used connection is taken first. Its liveness is
        checked with a peek at the socket, except for a ``retryable``
        request (one the client would repeat on a fresh connection if this
        one turned out dead) on a connection idle for under
        ``TRUSTED_IDLE`` seconds: one that was answering a moment ago is
        almost never closed, and the retry covers the rare case."""
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            idle_for = now - conn.idle_since
            if idle_for < self.idle_timeout and (
                    (retryable and idle_for < TRUSTED_IDLE) or conn.looks_alive()):
                conn.reused = True
                return conn
            self._drop(conn)
        return None

    def acquire(self, key: tuple[str, str, int], now: float) -> Coro[PooledConnection | None]:
        """An idle connection to reuse, or None with a slot reserved for a
        new one (hand it back with :meth:`release` or :meth:`discard`);
        waits (FIFO) while the limits allow neither."""
        while True:
            conn = self.take_idle(key, now)
            if conn is not None:
                return conn
            count = self._per_host.get(key, 0)
            if count >= self.max_per_host:
                queue = self._host_waiters.get(key)
                if queue is None:
                    queue = self._host_waiters[key] = WaitQueue(self)
                yield (PARK, queue)
                continue
            if self.total >= self.max_connections:
                self._close_an_idle_connection()
            if self.total < self.max_connections:
                self.total += 1
                self._per_host[key] = count + 1
                return None
            yield (PARK, self._waiters)

    def release(self, conn: PooledConnection, now: float) -> None:
        """Return a connection whose response was read to the end."""
        key = conn.key
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self.max_idle_per_host or conn.sock.fd < 0:
            self._drop(conn)
            return
        conn.idle_since = now
        idle.append(conn)
        self._wake(key)

    def discard(self, conn: PooledConnection | None, key: tuple[str, str, int]) -> None:
        """Close ``conn`` (or give back a reserved slot when it is None)."""
        if conn is not None:
            conn.close()
        self._release_slot(key)

    def _drop(self, conn: PooledConnection) -> None:
        conn.close()
        self._release_slot(conn.key)

    def _release_slot(self, key: tuple[str, str, int]) -> None:
        self.total -= 1
        left = self._per_host.get(key, 1) - 1
        if left:
            self._per_host[key] = left
        else:
            self._per_host.pop(key, None)
        self._wake(key)

    def _wake(self, key: tuple[str, str, int]) -> None:
        queue = self._host_waiters.get(key)
        if queue:
            queue.wake_one()
        else:
            self._waiters.wake_one()

    def _close_an_idle_connection(self) -> None:
        for idle in self._idle.values():
            if idle:
                self._drop(idle.pop(0))
                return

    def close(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            while idle:
                self._drop(idle.pop())
        self._idle.clear()
