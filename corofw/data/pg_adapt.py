"""Values in and out: psycopg's adaptation between Python and PostgreSQL.

Parameters are dumped by psycopg's dumpers (each value in the format and
with the type OID its dumper picks), and result values loaded by its
loaders, so every type psycopg knows works here, including adapters
registered on ``psycopg.adapters``. One :class:`Adapter` per connection
keeps psycopg's per-type caches warm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import psycopg
from psycopg import pq
from psycopg.abc import AdaptContext
from psycopg.adapt import PyFormat, Transformer
from psycopg.pq.abc import PGconn

from .pg_errors import InterfaceError, shorten
from .pg_record import Record, record_class
from .pg_statements import Statement

_TUPLES = pq.ExecStatus.TUPLES_OK
_AUTO_FORMATS = [[PyFormat.AUTO] * n for n in range(32)]


class _Holder:
    """What psycopg's adapters look at on "the connection": its PGconn
    (encoding, time zone, date style)."""

    __slots__ = ("pgconn",)

    def __init__(self, pgconn: PGconn) -> None:
        self.pgconn = pgconn


class _Context:
    __slots__ = ("adapters", "connection")

    def __init__(self, pgconn: PGconn, adapters: Any) -> None:
        self.adapters = adapters
        self.connection = _Holder(pgconn)


class Adapter:
    """Dumps parameters and loads results for one connection."""

    __slots__ = ("_tx",)

    def __init__(self, pgconn: PGconn, adapters: Any = None) -> None:
        context = _Context(pgconn, adapters or psycopg.adapters)
        self._tx = Transformer(cast(AdaptContext, context))

    def dump(self, sql: str, args: Sequence[Any]) -> tuple[Any, tuple[int, ...], Any]:
        """``(values, type OIDs, formats)`` for libpq; an argument psycopg
        cannot adapt raises :class:`InterfaceError` (naming its type, never
        its value)."""
        if not args:
            return None, (), None
        count = len(args)
        tx = self._tx
        try:
            values = tx.dump_sequence(
                args, _AUTO_FORMATS[count] if count < 32 else [PyFormat.AUTO] * count)
        except psycopg.Error as exc:
            raise InterfaceError(
                f"cannot send the parameters of query {shorten(sql)}: {exc}") from None
        return values, tx.types, tx.formats  # type: ignore[return-value]

    def records(self, result: Any, statement: Statement | None,
                limit: int = -1) -> list[Record]:
        """The rows of ``result`` (at most ``limit``) as :class:`Record`s; a
        prepared statement remembers its Record class."""
        if result is None or result.status != _TUPLES:
            return []
        nfields = result.nfields
        record = statement.record if statement is not None else None
        if record is None or len(record._names) != nfields:
            record = record_class(tuple(
                (result.fname(i) or b"").decode("utf-8", "replace") for i in range(nfields)))
            if statement is not None and statement.name is not None:
                statement.record = record
        tx = self._tx
        tx.set_pgresult(result)
        count = result.ntuples if limit < 0 else min(limit, result.ntuples)
        return tx.load_rows(0, count, record)

    def value(self, result: Any, column: int, sql: str) -> Any:
        """Column ``column`` of the first row of ``result``, or None."""
        if result is None or result.status != _TUPLES or not result.ntuples:
            return None
        if not 0 <= column < result.nfields:
            raise InterfaceError(f"no column {column} in the result of {shorten(sql)}"
                                 f" ({result.nfields} columns)")
        value = result.get_value(0, column)
        if value is None:
            return None
        return self._tx.get_loader(result.ftype(column), result.fformat(column)).load(value)
