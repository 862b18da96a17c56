"""A virtual clock for tests: time that jumps instead of passing."""

from __future__ import annotations


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
        self._now = float(start)
        self.autojump_threshold = autojump_threshold

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (never backward)."""
        if seconds < 0:
            raise ValueError("a clock cannot go backward")
        self._now += seconds

    def jump_to(self, when: float) -> None:
        """Set the clock to ``when`` if that is later; the kernel calls this
        to skip to the next timer."""
        if when > self._now:
            self._now = when
