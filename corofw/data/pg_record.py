"""Rows and notifications as the PostgreSQL client returns them.

A :class:`Record` is a tuple (index it, unpack it, compare it with a tuple)
that also answers to its column names, like asyncpg's ``Record``::

    row = yield from db.fetchrow("SELECT id, message FROM fortune WHERE id = $1", 7)
    row[0] == row["id"]
    id, message = row
    dict(row)  # {"id": 7, "message": "..."}

Each distinct list of column names gets its own small subclass holding the
name-to-index map, shared by every row of that shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any, NamedTuple


class Record(tuple[Any, ...]):
    """One row: a tuple whose items are also reachable by column name."""

    __slots__ = ()
    _names: tuple[str, ...] = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:
        if type(key) is str:
            try:
                return tuple.__getitem__(self, self._index[key])
            except KeyError:
                raise KeyError(f"no column named {key!r} (columns: "
                               f"{', '.join(self._names) or 'none'})") from None
        return tuple.__getitem__(self, key)

    def get(self, name: str, default: Any = None) -> Any:
        """The value of column ``name``, or ``default`` if there is none."""
        index = self._index.get(name)
        return default if index is None else tuple.__getitem__(self, index)

    def keys(self) -> tuple[str, ...]:
        """The column names, in order (so ``dict(record)`` works)."""
        return self._names

    def values(self) -> tuple[Any, ...]:
        """The values, in column order."""
        return tuple(self)

    def items(self) -> Iterator[tuple[str, Any]]:
        """``(name, value)`` pairs, in column order."""
        return zip(self._names, self, strict=False)

    def __repr__(self) -> str:
        fields = " ".join(f"{name}={value!r}" for name, value in self.items())
        return f"<Record {fields}>"


@lru_cache(maxsize=1024)
def record_class(names: tuple[str, ...]) -> type[Record]:
    """The :class:`Record` subclass for rows with these column names (the
    first of two equal names wins a lookup by name)."""
    index: dict[str, int] = {}
    for position, name in enumerate(names):
        index.setdefault(name, position)
    return type("Record", (Record,), {"__slots__": (), "_names": names, "_index": index})


class Notification(NamedTuple):
    """A ``NOTIFY`` received on a channel this connection listens to."""

    channel: str
    payload: str
    pid: int  #: the backend process that sent it
