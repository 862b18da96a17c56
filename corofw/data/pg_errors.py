"""The PostgreSQL client's errors: one type per way a call can fail.

Everything derives from :class:`PgError`. An error the server reported is a
:class:`QueryError` (or one of its subclasses, chosen by SQLSTATE) carrying
``sqlstate`` and the ``query`` text; parameter values are never part of a
message, since they may be personal data (the server's ``detail``, which
can quote them, is kept as an attribute only).
"""

from __future__ import annotations

import re
from typing import Any

from psycopg import pq
from psycopg.pq.abc import PGresult

from ..kernel.task import TaskTimeout

_FIELD = pq.DiagnosticField
_SHOWN_QUERY = 200
_QUOTED = re.compile(r'"[^"]*"')


def one_line(text: str) -> str:
    """libpq's multi-line messages ("...failed: Connection refused\\n\\tIs the
    server running...") as one line."""
    return " ".join(text.split())


def shorten(query: str | None) -> str:
    """The query as shown in a message: one line, at most 200 characters."""
    if not query:
        return ""
    query = one_line(query)
    return query if len(query) <= _SHOWN_QUERY else query[:_SHOWN_QUERY - 3] + "..."


class PgError(Exception):
    """Base of every error the PostgreSQL client raises."""


class InterfaceError(PgError):
    """The client was used in a way it cannot serve: a closed connection,
    a second operation on a connection that is busy, a parameter of a type
    that cannot be sent."""


class ConnectError(PgError, ConnectionError):
    """The server could not be reached, or refused the connection. The
    message is one line saying where and why (never the password)."""


class ConnectionLost(PgError, ConnectionError):
    """The connection broke while in use: the server restarted, was shut
    down, or the network failed. The call's outcome on the server is unknown
    (a COMMIT may or may not have happened). ``sqlstate`` is set when the
    server said why (``57P01``: terminated by an administrator command)."""

    def __init__(self, reason: str, query: str | None = None,
                 sqlstate: str | None = None) -> None:
        message = f"connection to PostgreSQL lost: {one_line(reason)}"
        if query:
            message += f" (query: {shorten(query)})"
        super().__init__(message)
        self.query = query
        self.sqlstate = sqlstate


class PoolTimeout(PgError, TimeoutError):
    """No connection of the pool became free within the acquire timeout."""


class QueryTimeout(PgError, TaskTimeout):
    """A query ran past its ``timeout``; it was cancelled on the server too.
    Also a :class:`~corofw.TaskTimeout`, hence a ``TimeoutError``."""

    def __init__(self, seconds: float, query: str | None) -> None:
        super().__init__(f"query timed out after {seconds:g} s: {shorten(query)}")
        self.seconds = seconds
        self.query = query


class QueryError(PgError):
    """The server reported an error for a query.

    ``sqlstate`` is the five-character SQLSTATE code, ``message`` the
    server's primary message, ``query`` the SQL text (with its ``$n``
    placeholders, never the values). ``detail``, ``hint``, ``severity``,
    ``position``, ``schema_name``, ``table_name``, ``column_name`` and
    ``constraint_name`` are the server's other fields, or None.

    The exception's text (what a log shows) is the message, the SQLSTATE and
    the query; for a data error (class 22), whose message quotes the value
    it rejected (``invalid input syntax for type integer: "..."``), the
    quoted value is left out. ``message`` and ``detail`` keep it all.
    """

    sqlstate: str | None = None

    def __init__(self, message: str, sqlstate: str | None = None, query: str | None = None,
                 **fields: Any) -> None:
        shown = _QUOTED.sub('"..."', message) if (sqlstate or "").startswith("22") else message
        text = f"{shown} (SQLSTATE {sqlstate})" if sqlstate else shown
        if query:
            text += f" in query: {shorten(query)}"
        super().__init__(text)
        self.message = message
        if sqlstate is not None:
            self.sqlstate = sqlstate
        self.query = query
        self.detail: str | None = fields.get("detail")
        self.hint: str | None = fields.get("hint")
        self.severity: str | None = fields.get("severity")
        self.position: str | None = fields.get("position")
        self.schema_name: str | None = fields.get("schema_name")
        self.table_name: str | None = fields.get("table_name")
        self.column_name: str | None = fields.get("column_name")
        self.constraint_name: str | None = fields.get("constraint_name")


class DataError(QueryError):
    """SQLSTATE class 22: a value was invalid (division by zero, overflow,
    a malformed literal)."""


class IntegrityError(QueryError):
    """SQLSTATE class 23: a constraint was violated."""


class NotNullViolation(IntegrityError):
    """SQLSTATE 23502: a NULL where the column forbids it."""

    sqlstate = "23502"


class ForeignKeyViolation(IntegrityError):
    """SQLSTATE 23503: a reference to a row that does not exist (or a
    delete of a row still referenced)."""

    sqlstate = "23503"


class UniqueViolation(IntegrityError):
    """SQLSTATE 23505: a row with that key already exists."""

    sqlstate = "23505"


class CheckViolation(IntegrityError):
    """SQLSTATE 23514: a CHECK constraint failed."""

    sqlstate = "23514"


class InFailedTransaction(QueryError):
    """SQLSTATE 25P02: an earlier statement of this transaction failed; it
    accepts nothing but ROLLBACK."""

    sqlstate = "25P02"


class TransactionRollback(QueryError):
    """SQLSTATE class 40: the transaction was rolled back by the server;
    running it again may succeed."""


class SerializationFailure(TransactionRollback):
    """SQLSTATE 40001: a concurrent transaction conflicted (serializable or
    repeatable read isolation). Retry the whole transaction."""

    sqlstate = "40001"


class DeadlockDetected(TransactionRollback):
    """SQLSTATE 40P01: two transactions waited for each other; this one
    was chosen to fail. Retry it."""

    sqlstate = "40P01"


class ProgrammingError(QueryError):
    """SQLSTATE class 42: the query itself is wrong (syntax, unknown names,
    missing privileges)."""


class QuerySyntaxError(ProgrammingError):
    """SQLSTATE 42601: the SQL does not parse."""

    sqlstate = "42601"


class UndefinedColumn(ProgrammingError):
    """SQLSTATE 42703: no column of that name."""

    sqlstate = "42703"


class UndefinedFunction(ProgrammingError):
    """SQLSTATE 42883: no function (or operator) with that name and those
    argument types."""

    sqlstate = "42883"


class UndefinedTable(ProgrammingError):
    """SQLSTATE 42P01: no table (or view) of that name."""

    sqlstate = "42P01"


class QueryCanceled(QueryError):
    """SQLSTATE 57014: the server cancelled the query, for its
    ``statement_timeout`` or at another session's request."""

    sqlstate = "57014"


_BY_SQLSTATE: dict[str, type[QueryError]] = {
    cls.sqlstate: cls for cls in (
        NotNullViolation, ForeignKeyViolation, UniqueViolation, CheckViolation,
        InFailedTransaction, SerializationFailure, DeadlockDetected, QuerySyntaxError,
        UndefinedColumn, UndefinedFunction, UndefinedTable, QueryCanceled,
    ) if cls.sqlstate
}
_BY_CLASS: dict[str, type[QueryError]] = {
    "22": DataError, "23": IntegrityError, "40": TransactionRollback, "42": ProgrammingError,
}

# Server errors after which the session is gone: admin shutdown, crash
# shutdown, cannot connect now, and the server's own idle timeouts.
LOST_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "25P03", "57P05"})


def _field(result: PGresult, field: pq.DiagnosticField) -> str | None:
    value = result.error_field(field)
    return value.decode("utf-8", "replace") if value is not None else None


def error_from_result(result: PGresult, query: str | None) -> QueryError:
    """The :class:`QueryError` subclass for a failed ``result``."""
    sqlstate = _field(result, _FIELD.SQLSTATE)
    message = _field(result, _FIELD.MESSAGE_PRIMARY)
    if message is None:
        message = one_line(result.get_error_message("utf-8")) or "unknown server error"
    cls = _BY_SQLSTATE.get(sqlstate or "") or _BY_CLASS.get((sqlstate or "")[:2], QueryError)
    return cls(
        message, sqlstate, query,
        detail=_field(result, _FIELD.MESSAGE_DETAIL),
        hint=_field(result, _FIELD.MESSAGE_HINT),
        severity=_field(result, _FIELD.SEVERITY_NONLOCALIZED),
        position=_field(result, _FIELD.STATEMENT_POSITION),
        schema_name=_field(result, _FIELD.SCHEMA_NAME),
        table_name=_field(result, _FIELD.TABLE_NAME),
        column_name=_field(result, _FIELD.COLUMN_NAME),
        constraint_name=_field(result, _FIELD.CONSTRAINT_NAME),
    )
