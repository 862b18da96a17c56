"""A read-only mapping whose keys may repeat: query strings and forms."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class MultiDict(Mapping[str, V], Generic[V]):
    """Ordered ``(name, value)`` pairs, read as a mapping of each distinct
    name to its *first* value (as aiohttp and Werkzeug do).

    ``md[name]`` and ``md.get(name)`` give the first value, ``getlist(name)``
    every value in order; ``in``, ``len`` and iteration are over distinct
    names, so ``dict(md)`` maps each name to its first value. ``items()``
    is the exception: it gives every pair, repeated names included (use
    ``dict(md)`` or ``keys()``/``values()`` for one value per name).
    """

    __slots__ = ("_pairs", "_first")

    def __init__(self, pairs: Iterable[tuple[str, V]] = ()) -> None:
        self._pairs: list[tuple[str, V]] = list(pairs)
        first: dict[str, V] = {}
        for key, value in self._pairs:
            if key not in first:
                first[key] = value
        self._first = first

    def __getitem__(self, name: str) -> V:
        return self._first[name]

    def get(self, name: str, default: Any = None) -> Any:
        """The first value of ``name``, or ``default``."""
        return self._first.get(name, default)

    def getlist(self, name: str) -> list[V]:
        """Every value of ``name``, in order; ``[]`` if absent. ``get_all``
        and ``getall`` are the same method."""
        return [value for key, value in self._pairs if key == name]

    get_all = getall = getlist

    def __contains__(self, name: object) -> bool:
        return name in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def items(self) -> list[tuple[str, V]]:  # type: ignore[override]
        """Every ``(name, value)`` pair in order, repeated names included.
        ``multi_items`` is the same method."""
        return list(self._pairs)

    multi_items = items

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MultiDict):
            return self._pairs == other._pairs
        if isinstance(other, Mapping):
            return self._first == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._pairs!r})"
