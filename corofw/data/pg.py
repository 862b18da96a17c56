"""PostgreSQL on corofw's kernel: queries wait in epoll like HTTP calls.

::

    from corofw.data import pg

    pool = pg.Pool("postgresql://app@127.0.0.1/app", min_size=2, max_size=20)

    def check_database():  # once before serving: a database that is down fails here
        yield from pool.open()

    def handler(request, user_id):
        row = yield from pool.fetchrow("SELECT id, name FROM users WHERE id = $1", user_id)
        return {"id": row["id"], "name": row["name"]}

Parameters are always sent apart from the SQL (``$1``, ``$2``: the server
binds them), never pasted into it. Rows are :class:`Record` objects: tuples
that also answer to column names. Queries seen more than once are prepared
and cached per connection. A :class:`Batch` and ``executemany`` send many
queries in one round trip (libpq's pipeline mode); ``transaction`` runs a
generator function between BEGIN and COMMIT; LISTEN/NOTIFY reach a task
waiting in :meth:`Connection.next_notification`.

A connection runs one query at a time; a :class:`Pool` serves many tasks.
Cancelling a task, or a query's ``timeout``, cancels the query on the
server too. The client is built on psycopg 3's libpq binding and type
adaptation (``pip install 'corofw[pg]'``).
"""

from __future__ import annotations

from .pg_connection import Batch, Connection, connect
from .pg_errors import (
    CheckViolation,
    ConnectError,
    ConnectionLost,
    DataError,
    DeadlockDetected,
    ForeignKeyViolation,
    InFailedTransaction,
    IntegrityError,
    InterfaceError,
    NotNullViolation,
    PgError,
    PoolTimeout,
    ProgrammingError,
    QueryCanceled,
    QueryError,
    QuerySyntaxError,
    QueryTimeout,
    SerializationFailure,
    TransactionRollback,
    UndefinedColumn,
    UndefinedFunction,
    UndefinedTable,
    UniqueViolation,
)
from .pg_pool import Pool
from .pg_record import Notification, Record

__all__ = [
    "Batch", "CheckViolation", "ConnectError", "Connection", "ConnectionLost", "DataError",
    "DeadlockDetected", "ForeignKeyViolation", "InFailedTransaction", "IntegrityError",
    "InterfaceError", "NotNullViolation", "Notification", "PgError", "Pool", "PoolTimeout",
    "ProgrammingError", "QueryCanceled", "QueryError", "QuerySyntaxError", "QueryTimeout",
    "Record", "SerializationFailure", "TransactionRollback", "UndefinedColumn",
    "UndefinedFunction", "UndefinedTable", "UniqueViolation", "connect",
]
