"""The engine under :class:`~corofw.data.pg.Connection`: exchanges with the
server, the statement cache, and cleaning up after an interrupted query.

One exchange at a time: send the commands (through libpq), flush, read the
results. Commands with parameters use the extended protocol, so values
travel apart from the SQL text (``$1``, ``$2``) and are never interpolated.
A batch runs in libpq's pipeline mode: every command, then one sync, in one
round trip.

When an exchange is interrupted (its task cancelled, its timeout expired)
after the query reached the server, the caller gets its exception at once,
and a recovery task takes the connection over: it asks the server to cancel
the query (a cancel request on a connection of its own), reads the results
up to the end of the exchange, and rolls back if asked to. Until it is
done, the connection serves nothing else; if it cannot finish within
``recovery_timeout``, the connection is closed. A query interrupted while
it was still being sent leaves the protocol mid-message: the connection is
closed at once, and the cancel request still goes out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from psycopg import pq
from psycopg.pq.abc import PGconn

from ..kernel.context import current_kernel
from ..kernel.task import ClosedResourceError, Task
from ..kernel.timeouts import move_on_after
from ..kernel.traps import Coro
from . import pg_wire
from .pg_adapt import Adapter
from .pg_errors import (
    LOST_SQLSTATES,
    ConnectionLost,
    InterfaceError,
    error_from_result,
    one_line,
    shorten,
)
from .pg_statements import Statement, StatementCache
from .pg_wire import LibpqError, Wire, canceller

log = logging.getLogger("corofw.data.pg")

_FATAL = pq.ExecStatus.FATAL_ERROR
_COMMAND_OK = pq.ExecStatus.COMMAND_OK
_IDLE = pq.TransactionStatus.IDLE

#: one libpq call of a pipeline: the send method and its arguments
_Send = tuple[Callable[..., Any], tuple[Any, ...]]

_PREPARE, _RUN = "prepare", "run"

#: One planned command of a batch: (what, statement, sql); what is None for
#: housekeeping such as closing an evicted statement.
Step = tuple[str | None, Statement | None, str]


class Session:
    """One server session: exchanges, statements and recovery. Use it
    through :class:`~corofw.data.pg.Connection`."""

    def __init__(self, pgconn: PGconn, *, statement_cache_size: int = 256,
                 prepare_threshold: int | None = 2, query_timeout: float | None = None,
                 recovery_timeout: float = 5.0, adapters: Any = None) -> None:
        self._wire = Wire(pgconn)
        self._adapter = Adapter(pgconn, adapters)
        self._statements = StatementCache(statement_cache_size, prepare_threshold)
        self.query_timeout = query_timeout
        self.recovery_timeout = recovery_timeout
        self.server_pid: int = pgconn.backend_pid
        self._busy: str | None = None
        self._recovery: Task | None = None
        self._recovered = False  # how the last recovery ended
        self._unsent_cancel: Callable[[], Coro[None]] | None = None
        self._rollback_pending = False
        self._reset_pending = False
        self._closed_reason = "the connection is closed"
        self._after_recovery: Callable[[Any], None] | None = None

    # -- state ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the connection is closed (by :meth:`close`, or because
        it broke)."""
        return self._wire.fd < 0

    @property
    def in_transaction(self) -> bool:
        """True inside a transaction block (open, or failed and awaiting
        ROLLBACK)."""
        return not self.closed and self._wire.pgconn.transaction_status != _IDLE

    def close(self) -> None:
        """Close the connection now (a plain call, no waiting). A query still
        running is abandoned; the server stops it when it notices."""
        self._lose("the connection was closed")

    def _lose(self, reason: str) -> None:
        if not self.closed:
            self._closed_reason = reason
            self._wire.close()

    def _spawn(self, coro: Coro[Any], name: str) -> Task | None:
        kernel = current_kernel()
        if kernel is None:
            coro.close()
            return None
        return kernel.spawn(coro, name)

    # -- one exchange ----------------------------------------------------------

    def _wait_turn(self, what: str) -> Coro[None]:
        """Wait for a recovery in progress; refuse a closed or busy connection."""
        if self._recovery is not None:
            yield from self._recovery.join()  # recoveries never raise
        if self.closed:
            raise ConnectionLost(self._closed_reason, what)
        if self._busy is not None:
            raise InterfaceError(
                f"another operation is in progress on this connection ({shorten(self._busy)});"
                f" a connection runs one at a time: use a pool for concurrent queries")

    def _exchange(self, sql: str, send: Callable[..., Any], args: tuple[Any, ...],
                  pipeline: bool = False) -> Coro[Any]:
        """Send with ``send(*args)``, flush, and return the results (one list
        per command and pipeline mode left behind, for a pipeline)."""
        if self._busy is not None or self._recovery is not None or self._wire.fd < 0:
            yield from self._wait_turn(sql)
        wire = self._wire
        self._busy = sql
        sent = False
        try:
            send(*args)
            if wire.pgconn.flush():
                yield from wire.flush()
            sent = True
            if pipeline:
                results: Any = yield from wire.pipeline_results()
                wire.pgconn.exit_pipeline_mode()
            else:
                results = yield from wire.results()
        except BaseException as exc:
            self._busy = None
            self._interrupted(exc, sql, sent, pipeline)
            raise
        self._busy = None
        return results

    def _interrupted(self, exc: BaseException, sql: str, sent: bool, pipeline: bool) -> None:
        """An exchange stopped half-way: a broken connection becomes
        :class:`ConnectionLost`; anything else (cancellation, a timeout)
        hands the connection to a recovery task, or closes it."""
        wire = self._wire
        if isinstance(exc, (LibpqError, ClosedResourceError)) or wire.broken():
            if not self.closed:
                self._lose(wire.fatal or one_line(wire.pgconn.get_error_message())
                           or str(exc) or "the connection broke")
            raise ConnectionLost(self._closed_reason, sql) from exc
        try:
            cancel = canceller(wire.pgconn)
        except LibpqError:
            self._lose("the query was interrupted and could not be cancelled")
            return
        if sent:
            self._start_recovery(cancel, pipeline)
        else:
            self._lose("the query was interrupted while it was being sent")
            self._spawn(_send_cancel(cancel), "pg cancel")

    def _start_recovery(self, cancel: Callable[[], Coro[None]] | None,
                        pipeline: bool | None) -> None:
        self._recovered = False
        self._unsent_cancel = cancel
        task = self._spawn(self._recover(pipeline), "pg recovery")
        if task is None:
            self._lose("no kernel left to clean up after an interrupted query")
        else:
            self._recovery = task
            task.add_done_callback(self._recovery_done)

    def _recover(self, pipeline: bool | None) -> Coro[None]:
        """The recovery task: cancel, drain, roll back. It never raises, so
        that waiting for it cannot fail."""
        try:
            self._recovered = yield from move_on_after(
                self.recovery_timeout, self._clean_up(pipeline), False)
        except BaseException as exc:  # the kernel stopping, or the connection closed
            log.debug("recovery of a PostgreSQL connection stopped: %r", exc)

    def _recovery_done(self, task: Task) -> None:
        """Runs however the recovery ended (even cancelled before it
        started): close the connection unless it is clean, make sure the
        cancel request goes out, tell the pool."""
        self._recovery = None
        if not self._recovered:
            self._lose("an interrupted query could not be cleaned up")
        cancel, self._unsent_cancel = self._unsent_cancel, None
        if cancel is not None:
            self._spawn(_send_cancel(cancel), "pg cancel")
        callback, self._after_recovery = self._after_recovery, None
        if callback is not None:
            callback(self)

    def _clean_up(self, pipeline: bool | None) -> Coro[bool]:
        wire = self._wire
        cancel = self._unsent_cancel
        if cancel is not None:
            try:
                yield from cancel()
            except Exception as exc:
                log.warning("PostgreSQL cancel request failed: %s", exc)
            self._unsent_cancel = None
        if pipeline is not None:  # an exchange is still in flight: read it to its end
            if pipeline:
                yield from wire.pipeline_results()
                wire.pgconn.exit_pipeline_mode()
            else:
                yield from wire.results()
        pgconn = wire.pgconn
        if self._rollback_pending or self._reset_pending:
            self._rollback_pending = False
            if pgconn.transaction_status != _IDLE:
                yield from self._simple(b"ROLLBACK")
        if self._reset_pending:
            self._reset_pending = False
            if wire.listening:
                yield from self._simple(b"UNLISTEN *")
                wire.listening = False
                wire.notifications.clear()
        return not wire.broken()

    def _simple(self, sql: bytes) -> Coro[None]:
        wire = self._wire
        wire.pgconn.send_query(sql)
        yield from wire.flush()
        for result in (yield from wire.results()):
            if result.status == _FATAL:
                raise error_from_result(result, sql.decode())

    def _clean_later(self, reset: bool = False) -> None:
        """Roll back (and with ``reset``, stop listening) in a recovery
        task: for code that cannot wait, such as a cancelled task."""
        self._rollback_pending = True
        self._reset_pending = self._reset_pending or reset
        if self._recovery is None and not self.closed:
            self._start_recovery(None, None)

    # -- statements and results -------------------------------------------------

    def _one(self, sql: str, args: Sequence[Any]) -> Coro[tuple[Any, Statement]]:
        """Run one query; return its final result and its statement."""
        values, types, formats = self._adapter.dump(sql, args)
        statements = self._statements
        statement = statements.lookup(sql, types)
        pgconn = self._wire.pgconn
        if statement.name is not None:
            results = yield from self._exchange(
                sql, pgconn.send_query_prepared, (statement.name, values, formats))
        elif statements.should_prepare(statement):
            steps: list[Step] = []
            sends: list[_Send] = []
            self._plan(steps, sends, sql, statement, values, types, formats)
            return (yield from self._run_plan(steps, sends))[0]
        else:
            results = yield from self._exchange(
                sql, pgconn.send_query_params, (statement.sql, values, types, formats))
        return self._final(results, sql, statement), statement

    def _batch(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> Coro[list[tuple[Any, Any]]]:
        """Run ``(sql, args)`` queries in one pipeline; return each one's
        final result and statement, or raise the first error (nothing after
        it ran, and in an implicit transaction nothing before it stays)."""
        steps: list[Step] = []
        sends: list[_Send] = []
        lookup = self._statements.lookup
        for sql, args in queries:
            values, types, formats = self._adapter.dump(sql, args)
            self._plan(steps, sends, sql, lookup(sql, types), values, types, formats)
        return (yield from self._run_plan(steps, sends))

    def _plan(self, steps: list[Step], sends: list[_Send], sql: str,
              statement: Statement, values: Any, types: tuple[int, ...], formats: Any) -> None:
        pgconn = self._wire.pgconn
        statements = self._statements
        if statements.to_close and pg_wire.CLOSE_MESSAGE:
            for name in statements.to_close:
                sends.append((pgconn.send_close_prepared, (name,)))
                steps.append((None, None, "CLOSE"))
            statements.to_close.clear()
        if statements.should_prepare(statement):
            name = statements.name_for(statement)
            statement.record = None
            sends.append((pgconn.send_prepare, (name, statement.sql, types)))
            steps.append((_PREPARE, statement, sql))
        if statement.name is not None:
            sends.append((pgconn.send_query_prepared, (statement.name, values, formats)))
        else:
            sends.append((pgconn.send_query_params, (statement.sql, values, types, formats)))
        steps.append((_RUN, statement, sql))

    def _run_plan(self, steps: list[Step], sends: list[_Send]
                  ) -> Coro[list[tuple[Any, Any]]]:
        if not sends:
            return []
        if self._statements.to_close:  # an older libpq: DEALLOCATE them first
            yield from self._deallocate()
        first_sql = next(sql for what, _, sql in steps if what == _RUN)
        try:
            groups = yield from self._exchange(first_sql, self._send_pipeline, (sends,), True)
        except BaseException:
            for what, statement, _ in steps:  # prepared or not, their names are done for
                if what == _PREPARE and statement is not None and statement.name is not None:
                    self._statements.to_close.append(statement.name)
                    self._statements.forget(statement)
            raise
        finals: list[Any] = []
        failure: tuple[Any, str, Statement | None] | None = None
        for (what, statement, sql), group in zip(steps, groups, strict=False):
            error = next((r for r in group if r.status == _FATAL), None)
            if what == _PREPARE and (not group or group[-1].status != _COMMAND_OK):
                self._statements.forget(statement)  # type: ignore[arg-type]
            if error is not None and failure is None and what is not None:
                failure = (error, sql, statement)
            if what == _RUN:
                finals.append((group[-1] if group else None, statement))
        if failure is not None:
            raise self._error(*failure)
        return finals

    def _deallocate(self) -> Coro[None]:
        names, self._statements.to_close = self._statements.to_close, []
        send_query = self._wire.pgconn.send_query
        for name in names:
            results = yield from self._exchange("DEALLOCATE", send_query,
                                                (b"DEALLOCATE " + name,))
            if any(result.status == _FATAL for result in results):
                log.debug("could not close prepared statement %s", name.decode())

    def _send_pipeline(self, sends: list[_Send]) -> None:
        pgconn = self._wire.pgconn
        pgconn.enter_pipeline_mode()
        for send, args in sends:
            send(*args)
        pgconn.pipeline_sync()

    def _final(self, results: list[Any], sql: str, statement: Statement | None) -> Any:
        """The last result of a command, or raise the error among them."""
        for result in results:
            if result.status == _FATAL:
                raise self._error(result, sql, statement)
        return results[-1] if results else None

    def _error(self, result: Any, sql: str, statement: Statement | None) -> Exception:
        error = error_from_result(result, sql)
        if error.sqlstate in LOST_SQLSTATES or self._wire.broken():
            self._lose(error.message)
            return ConnectionLost(error.message, sql, error.sqlstate)
        if statement is not None and statement.name is not None:
            if error.sqlstate == "26000":  # the session lost its prepared statements
                self._statements.clear()
                statement.name = None
            elif error.sqlstate == "0A000":  # cached plan must not change result type
                self._statements.to_close.append(statement.name)
                statement.name = None
                statement.uses = 0
        return error


def _send_cancel(cancel: Callable[[], Coro[None]]) -> Coro[None]:
    try:
        yield from cancel()
    except Exception as exc:
        log.warning("PostgreSQL cancel request failed: %s", exc)
