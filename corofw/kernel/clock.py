"""A virtual clock for tests: time that jumps instead of passing."""

from __future__ import annotations

import math


def _finite(seconds: float, what: str) -> float:
    if not math.isfinite(seconds):
        raise ValueError(f"{what} must be a finite number of seconds, got {seconds!r}")
    return float(seconds)


class VirtualClock:
    """Pass as ``run(coro, clock=VirtualClock())``.

    Whenever no task is ready, no thread job is pending and no fd has become
    ready within ``autojump_threshold`` real seconds (0 by default), the
    kernel jumps this clock straight to the next timer. A test of ten
    1-second waits then takes milliseconds and measures exactly 1.0 s.
    Raise ``autojump_threshold`` when a peer outside this kernel (another
    thread or process) must be given real time to answer.
    """

    def __init__(self, start: float = 0.0, autojump_threshold: float = 0.0) -> None:
        self._now = _finite(start, "the clock's start")
        self.autojump_threshold = autojump_threshold

    def __call__(self) -> float:
        return self._now

    @property
    def autojump_threshold(self) -> float:
        """Real seconds to wait for I/O before jumping (finite, not negative)."""
        return self._autojump_threshold

    @autojump_threshold.setter
    def autojump_threshold(self, seconds: float) -> None:
        if _finite(seconds, "autojump_threshold") < 0:
            raise ValueError("autojump_threshold cannot be negative")
        self._autojump_threshold = float(seconds)

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (never backward; a finite
        number)."""
        if _finite(seconds, "advance()") < 0:
            raise ValueError("a clock cannot go backward")
        self._now += seconds

    def jump_to(self, when: float) -> None:
        """Set the clock to ``when`` if that is later; the kernel calls this
        to skip to the next timer."""
        if when > self._now:
            self._now = when
