"""The client's connection pool: keep-alive reuse with limits.

Connections are keyed by ``(scheme, host, port)``. A caller first asks for
an idle connection to reuse; failing that, for a slot to open a new one.
When the total or per-host limit is reached the caller waits for a slot: a
burst of calls is paced by the limits rather than opening an unbounded
number of sockets. Waiting is first come, first served: a connection or
slot that frees up is handed to the longest waiter that can use it, never
left for whoever asks next.

A pool serves one kernel at a time. Its connections hold that kernel's
timers and epoll registrations, so when a client is used under a new
kernel (a second ``run()``), the pool starts empty and the previous
kernel's connections are closed.
"""

from __future__ import annotations

import socket
import ssl
from collections import deque
from typing import Any

from ..kernel.deadline import Deadline
from ..kernel.task import WaitQueue
from ..kernel.traps import Coro, park
from .parser import ResponseParser

_peek = socket.socket.recv
TRUSTED_IDLE = 0.5
_SLOT = "slot"  # handed to a waiter: a slot is reserved for it, open a connection


class PooledConnection:
    """One connection to a server, with its response parser. ``sent`` and
    ``received`` count the bytes of the exchange in progress: a request
    that failed before anything came back on a reused connection may be
    retried (any request if none of it was sent)."""

    __slots__ = ("key", "sock", "parser", "idle_since", "reused", "sent",
                 "received", "deadline", "kernel")

    def __init__(self, key: tuple[str, str, int], sock: Any, deadline: Deadline) -> None:
        self.key = key
        self.sock = sock
        self.deadline = deadline  # reused by each exchange: its timer re-arms lazily
        self.kernel = deadline.kernel  # the kernel whose timers and epoll it uses
        self.parser = ResponseParser()
        self.idle_since = 0.0
        self.reused = False
        self.sent = 0
        self.received = 0

    def looks_alive(self) -> bool:
        """False if the server has closed (or written to) the idle
        connection. Plain TCP is peeked at without consuming anything. Over
        TLS a peek cannot tell a session ticket from a closing alert, so the
        TLS layer reads instead: "want read" means alive, the end of the
        stream (close_notify), an error or unsolicited data means dead."""
        if self.sock.fd < 0:
            return False
        raw = self.sock.sock
        try:
            if type(raw) is socket.socket:
                _peek(raw, 1, socket.MSG_PEEK)
            else:
                raw.recv(1)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return True
        except OSError:
            return False
        return False  # data nobody asked for, or the end of the stream

    def close(self) -> None:
        """Close the socket and drop the connection's deadline timer."""
        self.deadline.close()
        self.sock.close()


class Pool:
    """Limits: ``max_connections`` in all, ``max_per_host`` per key (None:
    the total), ``max_idle_per_host`` kept for reuse, each for at most
    ``idle_timeout`` seconds."""

    wait_label = "upstream pool"  # what waiting here is called in request costs

    def __init__(self, max_connections: int = 100, max_per_host: int | None = None,
                 max_idle_per_host: int = 100, idle_timeout: float = 30.0) -> None:
        self.max_connections = max_connections
        self.max_per_host = max_per_host or max_connections
        self.max_idle_per_host = max_idle_per_host
        self.idle_timeout = idle_timeout
        self.total = 0
        self.kernel: Any = None  # the kernel its connections belong to
        self._per_host: dict[tuple[str, str, int], int] = {}
        self._idle: dict[tuple[str, str, int], list[PooledConnection]] = {}
        self._waiters: deque[_Waiter] = deque()  # oldest first

    def __repr__(self) -> str:
        idle = sum(len(v) for v in self._idle.values())
        return f"<Pool {self.total} connections ({idle} idle), {len(self._waiters)} waiting>"

    def adopt(self, kernel: Any) -> None:
        """Serve ``kernel`` from now on, starting empty: the idle
        connections of the previous kernel are closed, and connections it
        still has in use are closed when they come back."""
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        self.total = 0
        self._per_host.clear()
        self._waiters.clear()
        self.kernel = kernel

    def take_idle(self, key: tuple[str, str, int], now: float,
                  retryable: bool = False) -> PooledConnection | None:
        """An idle connection to ``key`` that still looks usable, or None;
        never waits (the common case of a warm pool costs no coroutine).

        The most recently used connection is taken first. Its liveness is
        checked (see :meth:`PooledConnection.looks_alive`), except for a
        ``retryable`` request (one the client would repeat on a fresh
        connection if this one turned out dead) on a connection idle for
        under ``TRUSTED_IDLE`` seconds: one that was answering a moment ago
        is almost never closed, and the retry covers the rare case."""
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

    def acquire(self, key: tuple[str, str, int], now: float,
                fresh: bool = False) -> Coro[PooledConnection | None]:
        """An idle connection to reuse (none if ``fresh``), or None with a
        slot reserved for a new one (hand it back with :meth:`release` or
        :meth:`discard`). While the limits allow neither, waits in line; a
        connection handed over while waiting was in use a moment ago and is
        taken even when ``fresh``."""
        if not fresh:
            conn = self.take_idle(key, now)
            if conn is not None:
                return conn
        count = self._per_host.get(key, 0)
        if count < self.max_per_host:
            if self.total >= self.max_connections:
                self._close_an_idle_connection()
            if self.total < self.max_connections:
                self.total += 1
                self._per_host[key] = count + 1
                return None
        waiter = _Waiter(key, WaitQueue(self))
        self._waiters.append(waiter)
        try:
            handed = yield from park(waiter.queue)
        except BaseException:
            if not waiter.served:
                self._waiters.remove(waiter)
            raise
        if handed is _SLOT:
            return None
        given: PooledConnection = handed  # what release() hands over
        given.reused = True
        return given

    def release(self, conn: PooledConnection, now: float) -> None:
        """Return a connection whose response was read to the end: to the
        longest waiter that can use it, else to the idle list."""
        if conn.kernel is not self.kernel:
            conn.close()  # a previous kernel's: its slot is not counted any more
            return
        key = conn.key
        if conn.sock.fd < 0:
            self._drop(conn)
            return
        for waiter in self._waiters:
            if waiter.key == key:
                self._serve(waiter, conn)
                return
            if self._per_host.get(waiter.key, 0) < self.max_per_host:
                # it waits for room in the total: closing this connection makes it
                conn.close()
                self._uncount(key)
                self._give_slot(waiter)
                return
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = []
        if len(idle) >= self.max_idle_per_host:
            self._drop(conn)
            return
        conn.idle_since = now
        idle.append(conn)

    def discard(self, conn: PooledConnection | None, key: tuple[str, str, int]) -> None:
        """Close ``conn`` (or give back a reserved slot when it is None)."""
        if conn is not None:
            conn.close()
            if conn.kernel is not self.kernel:
                return
        self._release_slot(key)

    def _drop(self, conn: PooledConnection) -> None:
        conn.close()
        self._release_slot(conn.key)

    def _release_slot(self, key: tuple[str, str, int]) -> None:
        """A connection to ``key`` is gone: its slot goes to the longest
        waiter whose host has room."""
        self._uncount(key)
        for waiter in self._waiters:
            if self._per_host.get(waiter.key, 0) < self.max_per_host:
                self._give_slot(waiter)
                return

    def _give_slot(self, waiter: _Waiter) -> None:
        self.total += 1
        self._per_host[waiter.key] = self._per_host.get(waiter.key, 0) + 1
        self._serve(waiter, _SLOT)

    def _serve(self, waiter: _Waiter, handed: Any) -> None:
        self._waiters.remove(waiter)
        waiter.served = True
        waiter.queue.wake_one(handed)

    def _uncount(self, key: tuple[str, str, int]) -> None:
        self.total -= 1
        left = self._per_host.get(key, 1) - 1
        if left:
            self._per_host[key] = left
        else:
            self._per_host.pop(key, None)

    def _close_an_idle_connection(self) -> None:
        """Make room for the caller: close the oldest idle connection of
        the first host that has one (its slot is not handed on)."""
        for idle in self._idle.values():
            if idle:
                conn = idle.pop(0)
                conn.close()
                self._uncount(conn.key)
                return

    def close(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            while idle:
                self._drop(idle.pop())
        self._idle.clear()


class _Waiter:
    """A caller waiting for a connection to ``key``, parked alone in
    ``queue`` so the pool can wake exactly the one it serves (with a
    connection, or with a slot to open one)."""

    __slots__ = ("key", "queue", "served")

    def __init__(self, key: tuple[str, str, int], queue: WaitQueue) -> None:
        self.key = key
        self.queue = queue
        self.served = False
