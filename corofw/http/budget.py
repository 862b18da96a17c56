"""Budgets of extra calls (hedges, retries), as Finagle and Envoy keep them.

Every original call deposits ``ratio`` of a token and every extra call
withdraws a whole one; an extra call is sent only while the withdrawals
stay within the deposits. So over any ``window`` the extra calls are at
most ``ratio`` times the original ones, or ``min_per_second * window`` if
that is more: a floor (Envoy's ``min_retry_concurrency`` plays the same
part) that lets a service with little traffic still retry its rare
failure, and that adds nothing once traffic is heavy. Deposits and
withdrawals both expire after ``window`` seconds (they are kept in ten
slots of a tenth of the window each), so a quiet hour does not save up a
storm of retries for the next failure.

Time is the running kernel's clock, so a budget behaves the same under a
:class:`~corofw.kernel.clock.VirtualClock`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from ..kernel import current_kernel

_SLOTS = 10


def kernel_clock() -> float:
    """The running kernel's clock; the monotonic clock outside a kernel."""
    kernel = current_kernel()
    return kernel.clock() if kernel is not None else time.monotonic()


class SlidingCounts:
    """Sums of a few counters over the last ``window`` seconds, kept in
    ``slots`` slots: what was added more than ``window`` ago is forgotten,
    a slot at a time. Adding and reading are O(1) (running sums)."""

    __slots__ = ("window", "width", "fields", "_slots", "_sums", "_current", "_slot_start",
                 "_clock")

    def __init__(self, window: float, fields: int, slots: int = _SLOTS,
                 clock: Callable[[], float] | None = None) -> None:
        if not (window > 0 and math.isfinite(window)):
            raise ValueError(f"a window must be a positive number of seconds, got {window!r}")
        self.window = float(window)
        self.width = self.window / slots
        self.fields = fields
        self._slots = [[0.0] * fields for _ in range(slots)]
        self._sums = [0.0] * fields
        self._current = 0
        self._slot_start: float | None = None
        self._clock = clock or kernel_clock

    def add(self, field: int, amount: float) -> None:
        """Add ``amount`` to counter ``field`` now."""
        self._advance()[field] += amount
        self._sums[field] += amount

    def totals(self) -> list[float]:
        """Each counter's sum over the window."""
        self._advance()
        return list(self._sums)

    def clear(self) -> None:
        """Forget everything."""
        for slot in self._slots:
            slot[:] = [0.0] * self.fields
        self._sums = [0.0] * self.fields

    def _advance(self) -> list[float]:
        now = self._clock()
        start = self._slot_start
        if start is None or now < start:  # first use, or a new kernel's clock
            self.clear()
            self._slot_start = now
            return self._slots[self._current]
        passed = int((now - start) // self.width)
        if passed:
            slots = self._slots
            if passed >= len(slots):
                self.clear()
            else:
                sums = self._sums
                for step in range(1, passed + 1):
                    slot = slots[(self._current + step) % len(slots)]
                    for field, value in enumerate(slot):
                        sums[field] -= value
                    slot[:] = [0.0] * self.fields
            self._current = (self._current + passed) % len(slots)
            self._slot_start = start + passed * self.width
        return self._slots[self._current]


class Budget:
    """Extra calls allowed over a sliding ``window`` of seconds: ``ratio``
    per original call, but never fewer than ``min_per_second`` per second.

    Call :meth:`deposit` for each original call and :meth:`try_withdraw`
    before each extra one; send the extra call only if it returned True.
    """

    __slots__ = ("ratio", "min_per_second", "_counts", "floor")

    def __init__(self, ratio: float, min_per_second: float = 10.0, window: float = 10.0,
                 clock: Callable[[], float] | None = None) -> None:
        if not (ratio >= 0 and math.isfinite(ratio)):
            raise ValueError(f"a budget's ratio must be zero or more, got {ratio!r}")
        if not (min_per_second >= 0 and math.isfinite(min_per_second)):
            raise ValueError(f"min_per_second must be zero or more, got {min_per_second!r}")
        self.ratio = float(ratio)
        self.min_per_second = float(min_per_second)
        self._counts = SlidingCounts(window, 2, clock=clock)  # deposits, withdrawals
        self.floor = self.min_per_second * self._counts.window

    def __repr__(self) -> str:
        return (f"<Budget ratio={self.ratio:g} min_per_second={self.min_per_second:g} "
                f"balance={self.balance:.2f}>")

    @property
    def balance(self) -> float:
        """Tokens available now (one per extra call)."""
        deposits, withdrawals = self._counts.totals()
        return max(deposits, self.floor) - withdrawals

    def deposit(self) -> None:
        """Count one original call: ``ratio`` of a token more."""
        self._counts.add(0, self.ratio)

    def try_withdraw(self) -> bool:
        """Take one token for an extra call; False (and nothing taken) when
        the balance is short of one."""
        if self.balance < 1.0 - 1e-9:
            return False
        self._counts.add(1, 1.0)
        return True
