"""Recent latencies of one upstream, and their percentiles.

A ring holds the last ``size`` latencies: recording one is a store and an
index bump, and old samples fall out as new ones come, so the percentiles
follow the upstream as it speeds up or slows down. A percentile query
reads a sorted copy of the ring, taken again once an eighth of the ring
has changed: a hedging client asks on every call, and sorting a few
hundred floats every few dozen calls costs far less than once per call.
"""

from __future__ import annotations

import math


class LatencyTracker:
    """The last ``size`` latencies (seconds) of one upstream."""

    __slots__ = ("size", "_ring", "_next", "_count", "_sorted", "_stale", "_refresh")

    def __init__(self, size: int = 512) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"a latency tracker needs a size of at least 1, got {size!r}")
        self.size = size
        self._ring = [0.0] * size
        self._next = 0
        self._count = 0
        self._sorted: list[float] = []
        self._stale = 0
        self._refresh = max(1, size // 8)

    def __repr__(self) -> str:
        if not self._count:
            return "<LatencyTracker empty>"
        return (f"<LatencyTracker {self._count} samples p50={self.percentile(50):.4f}s "
                f"p99={self.percentile(99):.4f}s>")

    def __len__(self) -> int:
        """How many samples the ring holds (at most ``size``)."""
        return self._count

    def record(self, seconds: float) -> None:
        """Add one latency, dropping the oldest once the ring is full. A
        negative or NaN value is ignored."""
        if not seconds >= 0:
            return
        index = self._next
        self._ring[index] = seconds
        self._next = index + 1 if index + 1 < self.size else 0
        if self._count < self.size:
            self._count += 1
        self._stale += 1

    def percentile(self, p: float) -> float | None:
        """The ``p``-th percentile (0 to 100, nearest rank) of the recent
        latencies; None when there is no sample yet. The answer may lag the
        newest ``size // 8`` samples."""
        if not 0 <= p <= 100:
            raise ValueError(f"a percentile is from 0 to 100, got {p!r}")
        ordered = self._sorted
        if self._stale >= self._refresh or len(ordered) != self._count:
            ordered = self._sorted = sorted(self._ring[:self._count])
            self._stale = 0
        if not ordered:
            return None
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[rank - 1]
