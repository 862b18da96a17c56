"""A pool of PostgreSQL connections shared by a program's tasks.

``acquire`` takes an idle connection (the most recently used one, so the
others can age out), opens a new one while the pool has fewer than
``max_size``, or waits. Waiters are served first come, first served: a
connection given back goes straight to the oldest waiter (a hand-off, so a
newcomer cannot take it first), and a waiter that cannot get one within
the acquire timeout gets :class:`PoolTimeout`.

A connection is checked before it is handed out: one past its lifetime is
closed; one whose server has gone (closed socket, pending error) is closed
and the next is tried; one idle for ``ping_after`` seconds or more must
answer ``SELECT 1`` first. A connection given back in a transaction (open
or failed), still listening, or still cleaning up after an interrupted
query is rolled back and reset by a recovery task before anyone else gets
it; one that cannot be is closed.

Nothing runs in the background between calls: a pool whose server went
away and came back recovers on the next acquire, which opens fresh
connections as needed.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from ..kernel.context import current_kernel
from ..kernel.task import Task, WaitQueue
from ..kernel.timeouts import move_on_after
from ..kernel.traps import Coro, current_task, park
from .pg_connection import Batch, Connection, connect
from .pg_errors import InterfaceError, PgError, PoolTimeout
from .pg_record import Record
from .pg_wire import make_conninfo_utf8

T = TypeVar("T")

_SLOT = object()  # a waiter's wake-up value: room for a new connection was kept for it
_CLOSED = object()  # a waiter's wake-up value: the pool closed
_TIMED_OUT = object()
_IN_USE, _IDLE, _CLEANING = "in use", "idle", "cleaning up"


class Pool:
    """Up to ``max_size`` connections to ``dsn``, ``min_size`` of them
    opened by :meth:`open`.

    ``acquire_timeout``: how long :meth:`acquire` waits for a connection
    (:class:`PoolTimeout`); ``max_lifetime``: seconds after which a
    connection is replaced (each gets 90-100% of it, so they do not all
    expire at once); ``max_idle``: seconds after which idle connections
    above ``min_size`` are closed; ``ping_after``: idle seconds after which
    a connection is pinged before reuse. Other keywords go to
    :func:`~corofw.data.pg_connection.connect` (``connect_timeout``,
    ``query_timeout``, ``prepare_threshold``...) or into the DSN
    (``application_name``...).

    ``tracer``: see :class:`~corofw.data.pg_connection.Connection`; it
    applies to every connection of the pool.
    """

    tracer: Callable[[str], Any] | None = None
    wait_label = "postgresql pool"  # what waiting here is called in request costs

    def __init__(self, dsn: str = "", min_size: int = 1, max_size: int = 10, *,
                 acquire_timeout: float | None = 10.0, max_lifetime: float = 3600.0,
                 max_idle: float = 300.0, ping_after: float = 30.0,
                 connect_timeout: float | None = 10.0, query_timeout: float | None = None,
                 statement_cache_size: int = 256, prepare_threshold: int | None = 2,
                 recovery_timeout: float = 5.0, **params: Any) -> None:
        if max_size < 1 or not 0 <= min_size <= max_size:
            raise ValueError(f"need 0 <= min_size <= max_size and max_size >= 1, got "
                             f"min_size={min_size}, max_size={max_size}")
        self.min_size = min_size
        self.max_size = max_size
        self.acquire_timeout = acquire_timeout
        self.max_lifetime = max_lifetime
        self.max_idle = max_idle
        self.ping_after = ping_after
        self._conninfo = make_conninfo_utf8(dsn, params)
        self._options: dict[str, Any] = {
            "connect_timeout": connect_timeout, "query_timeout": query_timeout,
            "statement_cache_size": statement_cache_size,
            "prepare_threshold": prepare_threshold, "recovery_timeout": recovery_timeout,
        }
        self._ping_timeout = connect_timeout or 10.0
        self._idle: deque[Connection] = deque()
        self._cleaning: set[Connection] = set()
        self._waiters = WaitQueue(self)
        self._size = 0  # connections open, or being opened
        self._closed = False

    def __repr__(self) -> str:
        return (f"<pg.Pool {self._size}/{self.max_size} connections, {len(self._idle)} idle,"
                f" {len(self._waiters)} waiting{', closed' if self._closed else ''}>")

    @property
    def size(self) -> int:
        """Connections open (or being opened) right now."""
        return self._size

    @property
    def idle(self) -> int:
        """Connections waiting in the pool for a task."""
        return len(self._idle)

    @property
    def waiting(self) -> int:
        """Tasks waiting in :meth:`acquire`."""
        return len(self._waiters)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _now(self) -> float:
        kernel = current_kernel()
        return kernel.clock() if kernel is not None else time.monotonic()

    # -- opening and closing -----------------------------------------------------

    def open(self) -> Coro[Pool]:
        """Open ``min_size`` connections now, so that a database that is down
        fails the program's start with one :class:`ConnectError` line rather
        than its first requests. Returns the pool."""
        while self._size < self.min_size:
            self._size += 1
            conn = yield from self._open_reserved()
            self._give(conn)
        return self

    def _open_reserved(self) -> Coro[Connection]:
        """Open a connection in a slot already counted in ``_size``."""
        try:
            conn = yield from connect(self._conninfo, **self._options)
        except BaseException:
            self._size -= 1
            self._offer_slot()
            raise
        conn.pool = self
        conn.pool_state = _IN_USE
        now = self._now()
        conn.idle_since = now
        conn.expires_at = now + self.max_lifetime * random.uniform(0.9, 1.0)
        if self._closed:
            self._drop(conn)
            raise InterfaceError("the pool was closed")
        return conn

    def close(self) -> Coro[None]:
        """Close the pool: idle connections now, connections in use when
        they are given back; waiting tasks get :class:`InterfaceError`.
        Waits for connections still cleaning up."""
        self._closed = True
        while self._waiters:
            self._waiters.wake_one(_CLOSED)
        while self._idle:
            self._drop(self._idle.pop())
        for conn in list(self._cleaning):
            recovery = conn._recovery
            if recovery is not None:
                yield from recovery.join()

    # -- acquire and release -------------------------------------------------------

    def acquire(self, timeout: float | None = None) -> Coro[Connection]:
        """A connection for this task alone; give it back with
        :meth:`release`, or use it as ``with (yield from pool.acquire()) as
        conn:``. Waits up to ``timeout`` seconds (default: the pool's
        ``acquire_timeout``) and raises :class:`PoolTimeout` after that."""
        if self._closed:
            raise InterfaceError("the pool is closed")
        while True:
            conn = self._take_idle()
            if conn is None:
                break
            if self._now() - conn.idle_since < self.ping_after:
                return conn
            if (yield from self._ping(conn)):
                return conn
        if self._size < self.max_size and not self._waiters:
            self._size += 1
            return (yield from self._open_reserved())
        if timeout is None:
            timeout = self.acquire_timeout
        if timeout is None:
            token = yield from park(self._waiters)
        else:
            token = yield from self._park_until(timeout)
        if token is _TIMED_OUT:
            raise PoolTimeout(f"no PostgreSQL connection became free within {timeout:g} s "
                              f"({self._size} open, max_size={self.max_size})")
        if token is _CLOSED:
            raise InterfaceError("the pool was closed")
        if token is _SLOT:
            return (yield from self._open_reserved())
        handed: Connection = token  # a connection handed over by release()
        return handed

    def _park_until(self, timeout: float) -> Coro[Any]:
        """Wait in the queue for at most ``timeout`` seconds (then the value
        is ``_TIMED_OUT``). A bare timer rather than a timeout scope: under
        load nearly every acquire waits, and a scope costs several times
        more."""
        task = yield from current_task()
        kernel = task.kernel
        timer = kernel.add_timer(timeout, self._time_out, task)
        try:
            return (yield from park(self._waiters))
        finally:
            kernel.cancel_timer(timer)

    def _time_out(self, task: Task) -> None:
        waiters = self._waiters
        try:
            waiters.remove(task)
        except ValueError:
            return  # already woken (with a connection, a slot, or the pool's closing)
        waiters.appendleft(task)
        waiters.wake_one(_TIMED_OUT)

    def _take_fresh(self) -> Connection | None:
        """Without waiting: the most recently used idle connection if it can
        go out unchecked (alive, unexpired, idle under ``ping_after``), else
        None, leaving the decision to :meth:`acquire`."""
        idle = self._idle
        if not idle or self._closed:
            return None
        conn = idle[-1]
        now = self._now()
        if now - conn.idle_since >= self.ping_after or conn.expires_at <= now \
                or not conn._wire.idle_and_alive():
            return None
        idle.pop()
        conn.pool_state = _IN_USE
        return conn

    def _take_idle(self) -> Connection | None:
        idle = self._idle
        now = self._now()
        while idle:
            conn = idle.pop()
            if conn.expires_at <= now or not conn._wire.idle_and_alive():
                self._drop(conn)
                continue
            conn.pool_state = _IN_USE
            return conn
        return None

    def _ping(self, conn: Connection) -> Coro[bool]:
        try:
            answer = yield from move_on_after(self._ping_timeout, conn.fetchval("SELECT 1"))
        except PgError:
            answer = None
        except BaseException:
            self.release(conn)
            raise
        if answer == 1:
            return True
        self._drop(conn)
        return False

    def release(self, conn: Connection) -> None:
        """Give ``conn`` back (a plain call). A connection in a transaction,
        listening, or cleaning up is reset first; a closed or expired one is
        dropped and its place offered to a waiter."""
        if conn.pool is not self:
            raise InterfaceError("this connection does not belong to this pool")
        if conn.pool_state != _IN_USE:
            return  # given back twice
        now = self._now()
        if self._closed or conn.closed or conn._busy is not None or conn.expires_at <= now:
            self._drop(conn)
        elif conn._recovery is not None or conn.in_transaction or conn._wire.listening:
            conn.pool_state = _CLEANING
            self._cleaning.add(conn)
            conn._after_recovery = self._cleaned
            conn._clean_later(reset=True)
            if conn.closed and conn in self._cleaning:  # it could not even start
                self._cleaned(conn)
        else:
            self._give(conn, now)

    def _cleaned(self, conn: Connection) -> None:
        self._cleaning.discard(conn)
        if self._closed or not conn._wire.idle_and_alive():
            self._drop(conn)
        else:
            self._give(conn)

    def _give(self, conn: Connection, now: float | None = None) -> None:
        if self._waiters:
            conn.pool_state = _IN_USE
            self._waiters.wake_one(conn)
            return
        if now is None:
            now = self._now()
        conn.pool_state = _IDLE
        conn.idle_since = now
        idle = self._idle
        idle.append(conn)
        while self._size > self.min_size and now - idle[0].idle_since > self.max_idle:
            self._drop(idle.popleft())

    def _drop(self, conn: Connection) -> None:
        conn.pool_state = None
        conn.close()
        self._size -= 1
        self._offer_slot()

    def _offer_slot(self) -> None:
        if self._waiters and self._size < self.max_size and not self._closed:
            self._size += 1
            self._waiters.wake_one(_SLOT)

    # -- one-call helpers ------------------------------------------------------------

    def fetch(self, sql: str, *args: Any, timeout: float | None = None) -> Coro[list[Record]]:
        """:meth:`Connection.fetch` on a connection of the pool."""
        conn = self._take_fresh()
        if conn is None:
            conn = yield from self.acquire()
        with conn:
            return (yield from conn.fetch(sql, *args, timeout=timeout))

    def fetchrow(self, sql: str, *args: Any,
                 timeout: float | None = None) -> Coro[Record | None]:
        """:meth:`Connection.fetchrow` on a connection of the pool."""
        conn = self._take_fresh()
        if conn is None:
            conn = yield from self.acquire()
        with conn:
            return (yield from conn.fetchrow(sql, *args, timeout=timeout))

    def fetchval(self, sql: str, *args: Any, column: int = 0,
                 timeout: float | None = None) -> Coro[Any]:
        """:meth:`Connection.fetchval` on a connection of the pool."""
        conn = self._take_fresh()
        if conn is None:
            conn = yield from self.acquire()
        with conn:
            return (yield from conn.fetchval(sql, *args, column=column, timeout=timeout))

    def execute(self, sql: str, *args: Any, timeout: float | None = None) -> Coro[str]:
        """:meth:`Connection.execute` on a connection of the pool."""
        conn = self._take_fresh()
        if conn is None:
            conn = yield from self.acquire()
        with conn:
            return (yield from conn.execute(sql, *args, timeout=timeout))

    def executemany(self, sql: str, args: Iterable[Sequence[Any]],
                    timeout: float | None = None) -> Coro[None]:
        """:meth:`Connection.executemany` on a connection of the pool."""
        conn = self._take_fresh()
        if conn is None:
            conn = yield from self.acquire()
        with conn:
            yield from conn.executemany(sql, args, timeout=timeout)

    def pipeline(self, batch: Batch, timeout: float | None = None) -> Coro[list[Any]]:
        """:meth:`Connection.pipeline` on a connection of the pool."""
        conn = self._take_fresh()
        if conn is None:
            conn = yield from self.acquire()
        with conn:
            return (yield from conn.pipeline(batch, timeout=timeout))

    def transaction(self, work: Callable[..., Coro[T]], *args: Any,
                    isolation: str | None = None, readonly: bool = False) -> Coro[T]:
        """:meth:`Connection.transaction` on a connection of the pool:
        ``work(conn, *args)`` runs between BEGIN and COMMIT."""
        conn = self._take_fresh()
        if conn is None:
            conn = yield from self.acquire()
        with conn:
            return (yield from conn.transaction(work, *args, isolation=isolation,
                                                readonly=readonly))
