"""A PostgreSQL connection and its query API (see :mod:`corofw.data.pg`)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from ..kernel.task import ClosedResourceError, TaskTimeout
from ..kernel.timeouts import timeout_after
from ..kernel.traps import Coro
from .pg_errors import (
    ConnectionLost,
    InFailedTransaction,
    InterfaceError,
    PgError,
    QueryTimeout,
    one_line,
)
from .pg_record import Notification, Record
from .pg_session import Session
from .pg_wire import LibpqError, make_conninfo_utf8, open_connection, quote_identifier

T = TypeVar("T")

_ISOLATION = {"serializable", "repeatable read", "read committed", "read uncommitted"}


class Batch:
    """Queries to run in one round trip with :meth:`Connection.pipeline`.

    Each method adds a query and returns the batch; ``pipeline`` returns
    one result per query, shaped like the method of the same name on a
    connection::

        batch = pg.Batch()
        batch.fetchrow("SELECT * FROM world WHERE id = $1", 1)
        batch.fetchval("SELECT count(*) FROM fortune")
        batch.execute("UPDATE world SET randomnumber = $1 WHERE id = $2", 5, 1)
        row, count, status = yield from db.pipeline(batch)

    Outside a transaction the batch is atomic: an error stops it, and what
    ran before the error is rolled back.
    """

    __slots__ = ("queries", "shapes")

    def __init__(self) -> None:
        self.queries: list[tuple[str, tuple[Any, ...]]] = []
        self.shapes: list[tuple[str, int]] = []

    def __len__(self) -> int:
        return len(self.queries)

    def _add(self, shape: str, sql: str, args: tuple[Any, ...], column: int = 0) -> Batch:
        self.queries.append((sql, args))
        self.shapes.append((shape, column))
        return self

    def fetch(self, sql: str, *args: Any) -> Batch:
        """Add a query whose result is its list of records."""
        return self._add("fetch", sql, args)

    def fetchrow(self, sql: str, *args: Any) -> Batch:
        """Add a query whose result is its first record, or None."""
        return self._add("fetchrow", sql, args)

    def fetchval(self, sql: str, *args: Any, column: int = 0) -> Batch:
        """Add a query whose result is one value of its first row, or None."""
        return self._add("fetchval", sql, args, column)

    def execute(self, sql: str, *args: Any) -> Batch:
        """Add a command whose result is its status (``"UPDATE 1"``)."""
        return self._add("execute", sql, args)


class Connection(Session):
    """One connection to PostgreSQL; open it with :func:`connect` or take it
    from a :class:`~corofw.data.pg_pool.Pool`.

    ``with conn:`` closes it at the end of the block (or, for a pooled
    connection, gives it back to its pool). Every query method takes a
    ``timeout`` in seconds (default: the connection's ``query_timeout``);
    when it expires the query is cancelled on the server and
    :class:`QueryTimeout` is raised.

    ``tracer`` (a pooled connection uses its pool's), when set, is called
    as each query method starts, as ``tracer(sql)`` (a batch: its first
    query); it returns None or an object whose ``end_query(error)`` is
    called once when the method ends (``error`` None if it succeeded).
    See :class:`~corofw.web.tracing.Tracing`.
    """

    pool: Any = None  #: the Pool this connection belongs to, if any
    tracer: Callable[[str], Any] | None = None
    pool_state: str | None = None  # set by the pool: "in use", "idle", "cleaning up"
    idle_since = 0.0
    expires_at = math.inf

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("busy" if self._busy else "idle")
        return f"<pg.Connection pid={self.server_pid} {state}>"

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.pool is not None:
            self.pool.release(self)
        else:
            self.close()

    def _timed(self, coro: Coro[T], timeout: float | None, sql: str) -> Coro[T]:
        """``coro`` itself when no timeout applies and no tracer is set (no
        wrapper to step through on every wait), else ``coro`` under the
        timeout, reported to the tracer."""
        if timeout is None:
            timeout = self.query_timeout
        if timeout is not None:
            coro = self._under_timeout(coro, timeout, sql)
        tracer = self.tracer if self.pool is None else self.pool.tracer
        return coro if tracer is None else _traced(coro, tracer, sql)

    def _under_timeout(self, coro: Coro[T], timeout: float, sql: str) -> Coro[T]:
        try:
            return (yield from timeout_after(timeout, coro))
        except TaskTimeout as exc:
            if isinstance(exc, QueryTimeout):
                raise
            raise QueryTimeout(timeout, sql) from None

    # -- queries ---------------------------------------------------------------

    def fetch(self, sql: str, *args: Any, timeout: float | None = None) -> Coro[list[Record]]:
        """Run a query and return all its rows."""
        result, statement = yield from self._timed(self._one(sql, args), timeout, sql)
        return self._adapter.records(result, statement)

    def fetchrow(self, sql: str, *args: Any,
                 timeout: float | None = None) -> Coro[Record | None]:
        """Run a query and return its first row, or None if it has none."""
        result, statement = yield from self._timed(self._one(sql, args), timeout, sql)
        rows = self._adapter.records(result, statement, 1)
        return rows[0] if rows else None

    def fetchval(self, sql: str, *args: Any, column: int = 0,
                 timeout: float | None = None) -> Coro[Any]:
        """Run a query and return one value (``column``) of its first row, or
        None if it has no row."""
        result, _ = yield from self._timed(self._one(sql, args), timeout, sql)
        return self._adapter.value(result, column, sql)

    def execute(self, sql: str, *args: Any, timeout: float | None = None) -> Coro[str]:
        """Run a command and return its status, such as ``"INSERT 0 1"``.

        Without arguments the SQL may hold several statements separated by
        semicolons (the status is the last one's); with arguments it is one
        statement.
        """
        if args:
            result, _ = yield from self._timed(self._one(sql, args), timeout, sql)
        else:
            results = yield from self._timed(self._simple_query(sql), timeout, sql)
            result = self._final(results, sql, None)
        status = result.command_status if result is not None else None
        return status.decode() if status else ""

    def _simple_query(self, sql: str) -> Coro[list[Any]]:
        if self.closed:
            raise ConnectionLost(self._closed_reason, sql)
        results: list[Any] = yield from self._exchange(
            sql, self._wire.pgconn.send_query, (sql.encode(),))
        return results

    def executemany(self, sql: str, args: Iterable[Sequence[Any]],
                    timeout: float | None = None) -> Coro[None]:
        """Run a command once per item of ``args``, all in one round trip.
        Outside a transaction it is atomic: all rows, or none."""
        queries = [(sql, tuple(item)) for item in args]
        if queries:
            yield from self._timed(self._batch(queries), timeout, sql)

    def pipeline(self, batch: Batch, timeout: float | None = None) -> Coro[list[Any]]:
        """Run every query of ``batch`` in one round trip; return their
        results in order (see :class:`Batch`)."""
        if not batch.queries:
            return []
        first = batch.queries[0][0]
        finals = yield from self._timed(self._batch(batch.queries), timeout, first)
        out: list[Any] = []
        for (shape, column), (sql, _), (result, statement) in zip(
                batch.shapes, batch.queries, finals, strict=True):
            if shape == "fetch":
                out.append(self._adapter.records(result, statement))
            elif shape == "fetchrow":
                rows = self._adapter.records(result, statement, 1)
                out.append(rows[0] if rows else None)
            elif shape == "fetchval":
                out.append(self._adapter.value(result, column, sql))
            else:
                status = result.command_status if result is not None else None
                out.append(status.decode() if status else "")
        return out

    # -- transactions --------------------------------------------------------

    def transaction(self, work: Callable[..., Coro[T]], *args: Any,
                    isolation: str | None = None, readonly: bool = False) -> Coro[T]:
        """Run ``work(conn, *args)`` (a generator function) in a transaction
        and return its result.

        COMMIT when it returns; ROLLBACK when it raises (the exception then
        propagates). A cancelled task does not wait for the rollback: the
        connection rolls back on its own before it serves anything else.
        ``isolation`` is ``"serializable"``, ``"repeatable read"``, ``"read
        committed"`` or ``"read uncommitted"`` (default: the server's).
        """
        begin = "BEGIN"
        if isolation is not None:
            if isolation.lower() not in _ISOLATION:
                raise ValueError(f"unknown isolation level {isolation!r}: one of "
                                 f"{', '.join(sorted(_ISOLATION))}")
            begin += " ISOLATION LEVEL " + isolation.upper()
        if readonly:
            begin += " READ ONLY"
        if self._recovery is not None:  # it may be rolling back a cancelled transaction
            yield from self._recovery.join()
        if self.in_transaction:
            raise InterfaceError("this connection is already in a transaction "
                                 "(transactions do not nest)")
        coro = work(self, *args)
        if not inspect.isgenerator(coro):
            raise TypeError(f"transaction() needs a generator function taking the connection,"
                            f" got {work!r} returning {type(coro).__name__}")
        try:
            yield from self.execute(begin)
            result: T = yield from coro
        except Exception:
            coro.close()
            yield from self._rollback_quietly()
            raise
        except BaseException:
            coro.close()
            self._clean_later()
            raise
        try:
            status = yield from self.execute("COMMIT")
        except Exception:
            raise
        except BaseException:
            self._clean_later()
            raise
        if status == "ROLLBACK":
            raise InFailedTransaction(
                "the transaction was rolled back, since a statement in it failed "
                "(its error was caught inside the transaction)", "25P02", "COMMIT")
        return result

    def _rollback_quietly(self) -> Coro[None]:
        if self.closed:
            return
        try:
            yield from self.execute("ROLLBACK")
        except PgError:
            pass  # the connection broke: the server has rolled back anyway
        except BaseException:
            self._clean_later()
            raise

    # -- LISTEN / NOTIFY --------------------------------------------------------

    def listen(self, channel: str) -> Coro[None]:
        """Receive the notifications sent on ``channel`` (LISTEN); read them
        with :meth:`next_notification`."""
        if self.closed:
            raise ConnectionLost(self._closed_reason, "LISTEN")
        self._wire.listening = True
        yield from self.execute("LISTEN " + quote_identifier(self._wire.pgconn, channel))

    def unlisten(self, channel: str | None = None) -> Coro[None]:
        """Stop listening to ``channel`` (None: to every channel)."""
        if self.closed:
            raise ConnectionLost(self._closed_reason, "UNLISTEN")
        target = "*" if channel is None else quote_identifier(self._wire.pgconn, channel)
        yield from self.execute("UNLISTEN " + target)

    def notify(self, channel: str, payload: str = "") -> Coro[None]:
        """Send a notification on ``channel`` (``pg_notify``); it is
        delivered when the current transaction commits."""
        yield from self.execute("SELECT pg_notify($1, $2)", channel, payload)

    def next_notification(self, timeout: float | None = None) -> Coro[Notification]:
        """Wait for the next notification on a channel this connection
        listens to (those that arrived meanwhile first, oldest first).

        While it waits, the connection serves nothing else: give listening
        its own connection. ``timeout`` raises :class:`~corofw.TaskTimeout`.
        """
        if timeout is None:
            return (yield from self._next_notification())
        return (yield from timeout_after(timeout, self._next_notification()))

    def received_notifications(self, limit: int | None = None) -> list[Notification]:
        """The notifications that have arrived, oldest first, taken without
        waiting (what the socket holds is read first): ``[]`` when there is
        none. At most ``limit`` of them (None: all); the rest stay for the
        next call. Not while the connection is running a command."""
        wire = self._wire
        if not wire.listening:
            raise InterfaceError("this connection listens to no channel: call listen() first")
        if self._busy is None and self._recovery is None and not self.closed:
            try:
                wire.consume()
            except LibpqError:
                pass  # a broken connection: the next wait reports it
        notes = wire.notifications
        count = len(notes) if limit is None else min(limit, len(notes))
        return [notes.popleft() for _ in range(count)]

    def _next_notification(self) -> Coro[Notification]:
        wire = self._wire
        if not wire.listening:
            raise InterfaceError("this connection listens to no channel: call listen() first")
        what = "waiting for a notification"
        while not wire.notifications:
            if self._busy is not None or self._recovery is not None or self.closed:
                yield from self._wait_turn(what)
            self._busy = what
            try:
                yield from wire.wait_readable()
            except (LibpqError, ClosedResourceError) as exc:
                if not self.closed:
                    self._lose(wire.fatal or one_line(wire.pgconn.get_error_message())
                               or str(exc))
                raise ConnectionLost(self._closed_reason) from exc
            finally:
                self._busy = None
            if wire.broken():
                self._lose(wire.fatal or one_line(wire.pgconn.get_error_message()))
                raise ConnectionLost(self._closed_reason)
        return wire.notifications.popleft()


def _traced(coro: Coro[T], tracer: Callable[[str], Any], sql: str) -> Coro[T]:
    """``coro`` reported to ``tracer``."""
    trace = tracer(sql)
    if trace is None:
        return (yield from coro)
    try:
        result = yield from coro
    except BaseException as exc:
        trace.end_query(exc)
        raise
    trace.end_query(None)
    return result


def connect(dsn: str = "", *, connect_timeout: float | None = 10.0,
            query_timeout: float | None = None, statement_cache_size: int = 256,
            prepare_threshold: int | None = 2, recovery_timeout: float = 5.0,
            **params: Any) -> Coro[Connection]:
    """Open a :class:`Connection`.

    ``dsn`` is a ``postgresql://user:password@host:port/database`` URL or a
    ``key=value`` string (libpq's syntax; ``params`` add or override keys,
    e.g. ``application_name="web"``); empty means libpq's defaults and
    ``PG*`` environment variables. Raises :class:`ConnectError` (one line:
    where and why) if the server cannot be reached within
    ``connect_timeout`` seconds.

    ``prepare_threshold``: how many runs of a query before it is prepared
    (None: never); ``statement_cache_size``: how many queries each
    connection keeps; ``recovery_timeout``: how long an interrupted query
    may take to be cancelled and drained before its connection is closed.
    """
    conninfo = make_conninfo_utf8(dsn, params)
    pgconn = yield from open_connection(conninfo, connect_timeout)
    return Connection(pgconn, statement_cache_size=statement_cache_size,
                      prepare_threshold=prepare_threshold, query_timeout=query_timeout,
                      recovery_timeout=recovery_timeout)

