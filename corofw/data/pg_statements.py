"""The per-connection cache of prepared statements, least recently used
first out.

A query is known by its SQL text and its parameters' type OIDs. The first
``prepare_threshold - 1`` runs go through the unnamed statement (parse,
bind and execute in one message flight); the next one prepares it under a
name, in the same round trip as its execution, and later runs only bind
and execute. One-off queries thus never take a server-side slot, and
repeated ones skip parsing and planning. When the cache is full, the least
recently used statement leaves it, and is closed on the server with the
next statement prepared.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Any

_names = itertools.count(1)


class Statement:
    """One query shape on one connection: its encoded SQL, how often it
    ran, and its server-side name once prepared (``None`` before)."""

    __slots__ = ("sql", "types", "uses", "name", "record")

    def __init__(self, sql: bytes, types: tuple[int, ...]) -> None:
        self.sql = sql
        self.types = types
        self.uses = 0
        self.name: bytes | None = None
        self.record: Any = None  # the Record class of its rows, once seen


class StatementCache:
    """Up to ``size`` statements; ``prepare_threshold`` runs before one is
    prepared (1: prepare at once; 0 or None: never prepare)."""

    def __init__(self, size: int = 256, prepare_threshold: int | None = 2) -> None:
        self.size = max(size, 0)
        self.prepare_threshold = prepare_threshold or 0
        self._entries: OrderedDict[tuple[str, tuple[int, ...]], Statement] = OrderedDict()
        self.to_close: list[bytes] = []  # evicted names, closed on the server next time

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, sql: str, types: tuple[int, ...]) -> Statement:
        """The statement for this shape (a fresh one if it is not cached),
        counted as one more use."""
        key = (sql, types)
        entries = self._entries
        statement = entries.get(key)
        if statement is None:
            statement = Statement(sql.encode(), types)
            if self.size:
                entries[key] = statement
                if len(entries) > self.size:
                    _, evicted = entries.popitem(last=False)
                    if evicted.name is not None:
                        self.to_close.append(evicted.name)
        else:
            entries.move_to_end(key)
        statement.uses += 1
        return statement

    def should_prepare(self, statement: Statement) -> bool:
        """True when this run should prepare the statement."""
        return (statement.name is None and self.prepare_threshold > 0 and self.size > 0
                and statement.uses >= self.prepare_threshold)

    def name_for(self, statement: Statement) -> bytes:
        """Give ``statement`` a new server-side name (it is being prepared)."""
        statement.name = b"corofw_%d" % next(_names)
        return statement.name

    def forget(self, statement: Statement) -> None:
        """The server does not have this statement (its PREPARE failed)."""
        statement.name = None

    def clear(self) -> None:
        """Forget every statement (the session lost them: DISCARD ALL, a
        DEALLOCATE ALL, or a schema change the plans cannot follow)."""
        self._entries.clear()
        self.to_close.clear()
