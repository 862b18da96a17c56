"""A heap of timers with O(1) cancellation by lazy deletion.

Most timers are timeouts that never fire, so cancelling only marks the entry
dead; the heap is rebuilt when dead entries outnumber live ones.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("corofw.kernel")

_COMPACT_MIN = 1024


def check_duration(seconds: float, what: str) -> float:
    """Return ``seconds`` as a float if a timer can use it: any real number,
    where a negative one has already passed and infinity never comes. NaN
    raises ValueError, since it compares false with everything and would
    corrupt the heap; what is not a real number (``1j``, a string) raises
    TypeError."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise TypeError(f"{what}: a duration must be a real number of seconds, "
                        f"got {seconds!r}") from None
    if value != value:
        raise ValueError(f"{what}: a duration cannot be NaN")
    return value


class Timers:
    """Entries are lists ``[deadline, seq, callback, arg]``; a fired or
    cancelled entry has ``callback`` set to None."""

    __slots__ = ("heap", "_seq", "_dead")

    def __init__(self) -> None:
        self.heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._dead = 0

    def __len__(self) -> int:
        return len(self.heap) - self._dead

    def add(self, deadline: float, callback: Callable[[Any], None], arg: Any) -> list[Any]:
        """Schedule ``callback(arg)`` at ``deadline``; return the entry, the
        handle for :meth:`cancel`."""
        entry = [deadline, next(self._seq), callback, arg]
        heapq.heappush(self.heap, entry)
        return entry

    def cancel(self, entry: list[Any]) -> None:
        """Mark ``entry`` dead (it stays in the heap until it surfaces or the
        heap is compacted); a fired or cancelled entry is left alone."""
        if entry[2] is None:
            return
        entry[2] = None
        entry[3] = None
        self._dead += 1
        if self._dead > _COMPACT_MIN and self._dead * 2 > len(self.heap):
            self.heap[:] = [e for e in self.heap if e[2] is not None]
            heapq.heapify(self.heap)
            self._dead = 0

    def next_deadline(self) -> float | None:
        """The earliest live deadline, dropping dead entries on the way."""
        heap = self.heap
        while heap:
            if heap[0][2] is not None:
                deadline: float = heap[0][0]
                return deadline
            heapq.heappop(heap)
            self._dead -= 1
        return None

    def fire_due(self, now: float) -> None:
        """Run the callback of every live entry due at ``now``."""
        heap = self.heap
        pop = heapq.heappop
        while heap and heap[0][0] <= now:
            entry = pop(heap)
            callback = entry[2]
            if callback is None:
                self._dead -= 1
                continue
            entry[2] = None
            try:
                callback(entry[3])
            except Exception:
                log.exception("timer callback %r failed", callback)
