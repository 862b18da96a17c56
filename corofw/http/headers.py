"""A case-insensitive, multi-valued header collection."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar, overload

_D = TypeVar("_D")


class Headers:
    """Ordered ``(name, value)`` pairs; lookups ignore the case of names.

    ``headers["Content-Type"]`` gives the first value (KeyError if absent),
    ``get(name, default)`` likewise, ``get_all(name)`` every value in order.
    Headers parsed from the wire are decoded from bytes (latin-1) on first
    use, so a handler that never looks at them never pays for them.
    """

    __slots__ = ("_raw", "_items", "_index")

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> None:
        self._raw: list[tuple[bytes, bytes]] | None = None
        self._index: dict[str, list[str]] | None = None
        if items is None:
            self._items: list[tuple[str, str]] = []
        elif isinstance(items, Mapping):
            self._items = [(str(k), str(v)) for k, v in items.items()]
        elif isinstance(items, Headers):
            self._items = list(items.items())
        else:
            self._items = [(str(k), str(v)) for k, v in items]

    @classmethod
    def from_raw(cls, raw: list[tuple[bytes, bytes]]) -> Headers:
        """Wrap wire pairs (lower-case names) without decoding them yet."""
        headers = cls.__new__(cls)
        headers._raw = raw
        headers._items = None  # type: ignore[assignment]
        headers._index = None
        return headers

    def _pairs(self) -> list[tuple[str, str]]:
        items = self._items
        if items is None:
            items = self._items = [(k.decode("latin-1"), v.decode("latin-1"))
                                   for k, v in self._raw or ()]
        return items

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for name, value in self._pairs():
                key = name.lower()
                if key in index:
                    index[key].append(value)
                else:
                    index[key] = [value]
            self._index = index
        return index

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: _D) -> str | _D: ...

    def get(self, name: str, default: _D | None = None) -> str | _D | None:
        """The first value of ``name`` (any case), or ``default``."""
        values = self._lookup().get(name.lower())
        return values[0] if values else default

    def first_raw(self, name: bytes) -> bytes | None:
        """The first value of ``name`` (lower-case bytes) as received, or
        None, without decoding the other headers: for the server's own
        per-request lookups. Headers that were decoded or built from
        strings are looked up as :meth:`get` does."""
        if self._items is None:
            for key, value in self._raw or ():
                if key == name:
                    return value
            return None
        value = self.get(name.decode("latin-1"))
        return None if value is None else value.encode("latin-1", "replace")

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` (any case), in order; ``[]`` if absent.
        ``getall`` is the same method."""
        return list(self._lookup().get(name.lower(), ()))

    getall = get_all

    def __getitem__(self, name: str) -> str:
        values = self._lookup().get(name.lower())
        if not values:
            raise KeyError(name)
        return values[0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup()

    def __iter__(self) -> Iterator[str]:
        return iter(name for name, _ in self._pairs())

    def __len__(self) -> int:
        return len(self._pairs())

    def __bool__(self) -> bool:
        return bool(self._items or self._raw)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._pairs() == other._pairs()
        return NotImplemented

    def __repr__(self) -> str:
        return f"Headers({self._pairs()!r})"

    def items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair in order, repeated names included."""
        return list(self._pairs())

    def keys(self) -> list[str]:
        """Every name in order, once per value, as it was given."""
        return [name for name, _ in self._pairs()]

    def values(self) -> list[str]:
        """Every value in order."""
        return [value for _, value in self._pairs()]

    def add(self, name: str, value: str) -> None:
        """Append a value, keeping any existing ones (e.g. Set-Cookie)."""
        self._pairs().append((name, str(value)))
        self._index = None
        self._raw = None  # the wire pairs no longer tell the truth

    def __setitem__(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with ``value``."""
        key = name.lower()
        self._items = [(k, v) for k, v in self._pairs() if k.lower() != key]
        self._items.append((name, str(value)))
        self._index = None
        self._raw = None

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        before = len(self._pairs())
        self._items = [(k, v) for k, v in self._items if k.lower() != key]
        if len(self._items) == before:
            raise KeyError(name)
        self._index = None
        self._raw = None

    def setdefault(self, name: str, value: str) -> str:
        """The first value of ``name``; if there is none, add ``value`` and
        return it."""
        if name in self:
            return self[name]
        self.add(name, value)
        return value

    def update(self, other: Headers | Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        """Replace the values of each name ``other`` has with every value
        it has for it, in order: ``update([("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2")])`` leaves both cookies (and no older ones).
        Names ``other`` lacks are kept."""
        pairs = other.items() if isinstance(other, (Mapping, Headers)) else other
        given = [(str(name), str(value)) for name, value in pairs]
        replaced = {name.lower() for name, _ in given}
        self._items = [(k, v) for k, v in self._pairs() if k.lower() not in replaced]
        self._items.extend(given)
        self._index = None
        self._raw = None

    def shrink(self) -> None:
        """Drop the decoded copy and the lookup index of headers still as
        received (a long-lived request keeps only the wire pairs); the next
        lookup decodes them again. Changed headers are left as they are."""
        if self._raw is not None:
            self._items = None  # type: ignore[assignment]
            self._index = None

    def copy(self) -> Headers:
        """An independent copy."""
        return Headers(self._pairs())
