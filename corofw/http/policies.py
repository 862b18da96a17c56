"""The hedging and retry policies of :class:`~corofw.http.upstream.Upstream`
(settings, and the arithmetic of delays and backoffs; no I/O)."""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from .latency import LatencyTracker

#: Methods that may be sent twice without changing the outcome (RFC 9110 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


def _seconds(name: str, value: Any, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "a positive" if positive else "zero or a positive"
        raise ValueError(f"{name} must be {kind} number of seconds, got {value!r}")


@dataclass(frozen=True)
class Hedge:
    """When to send a second copy of an idempotent call.

    ``after``: seconds, or ``"pNN"`` for that percentile of the chosen
    address's recent latencies (``"p95"``: a copy for about one call in
    twenty). A percentile is only trusted once ``min_samples`` latencies
    were recorded (until then no copy is sent), and is never below
    ``floor`` seconds. ``ratio`` and ``min_per_second`` size the hedge
    budget (see :class:`~corofw.http.budget.Budget`).
    """

    after: float | str = "p95"
    floor: float = 0.005
    min_samples: int = 20
    ratio: float = 0.05
    min_per_second: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.after, str):
            text = self.after
            try:
                value = float(text[1:]) if text[:1] == "p" else math.nan
            except ValueError:
                value = math.nan
            if not 0 < value < 100:
                raise ValueError(f"Hedge(after=) takes seconds or a percentile such as "
                                 f"'p95', got {text!r}")
        else:
            _seconds("Hedge(after=)", self.after)
        _seconds("Hedge(floor=)", self.floor)
        if not isinstance(self.min_samples, int) or self.min_samples < 1:
            raise ValueError(f"min_samples must be a whole number >= 1, "
                             f"got {self.min_samples!r}")

    @property
    def percentile(self) -> float | None:
        """The percentile ``after`` names, or None for a fixed delay."""
        return float(self.after[1:]) if isinstance(self.after, str) else None

    def delay(self, latencies: LatencyTracker) -> float | None:
        """Seconds to wait before the copy, for an address with these recent
        ``latencies``; None when no copy should be sent (too few samples)."""
        p = self.percentile
        if p is None:
            return float(self.after)
        if len(latencies) < self.min_samples:
            return None
        value = latencies.percentile(p)
        return None if value is None else max(value, self.floor)


@dataclass(frozen=True)
class Retry:
    """How to retry an idempotent call that failed.

    ``attempts`` counts the first call (3: up to two retries). Before
    retry ``n`` (1, 2, ...) the client waits a random time from 0 to
    ``min(max_backoff, backoff * 2 ** (n - 1))`` ("full jitter", which
    spreads the retries of many clients apart), or the server's
    ``Retry-After`` if that is longer. A ``Retry-After`` beyond
    ``max_retry_after``, or a wait longer than the time left before the
    caller's deadline, ends the retries: the last answer is returned (or
    the last error raised) at once. ``statuses`` are the answers worth
    retrying; ``ratio`` and ``min_per_second`` size the retry budget.
    ``seed`` fixes the jitter's random numbers (for tests).
    """

    attempts: int = 3
    backoff: float = 0.05
    max_backoff: float = 2.0
    max_retry_after: float = 30.0
    statuses: frozenset[int] = frozenset({429, 502, 503, 504})
    ratio: float = 0.2
    min_per_second: float = 10.0
    seed: int | None = None
    _random: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"attempts must be a whole number >= 1, got {self.attempts!r}")
        _seconds("Retry(backoff=)", self.backoff)
        _seconds("Retry(max_backoff=)", self.max_backoff)
        _seconds("Retry(max_retry_after=)", self.max_retry_after)
        object.__setattr__(self, "statuses", frozenset(self.statuses))
        object.__setattr__(self, "_random", random.Random(self.seed))

    def backoff_for(self, retry: int) -> float:
        """A random wait (seconds) before retry number ``retry`` (1 first)."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** min(retry - 1, 62))
        return self._random.uniform(0, ceiling)

    def wait_before(self, retry: int, retry_after: str | None,
                    left: float | None = None) -> float | None:
        """The wait before retry number ``retry``, honouring the server's
        ``Retry-After`` header value, with ``left`` seconds before the
        caller's deadline (None: no deadline); None when the retries should
        stop (the server asks for longer than ``max_retry_after``, or the
        wait would end at or past the deadline)."""
        wait = self.backoff_for(retry)
        asked = parse_retry_after(retry_after)
        if asked is not None:
            if asked > self.max_retry_after:
                return None
            wait = max(wait, asked)
        if left is not None and wait >= left:
            return None
        return wait


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` value asks to wait: a whole number of
    seconds, or an HTTP-date (against the wall clock ``now``, by default
    ``time.time()``; a date in the past is 0). None when absent or
    unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None  # an HTTP-date is always GMT; one without a zone is not one
    return max(0.0, when.timestamp() - (time.time() if now is None else now))

