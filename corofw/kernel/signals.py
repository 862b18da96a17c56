"""Catching POSIX signals as ordinary events.

The kernel routes SIGINT, SIGTERM (and SIGUSR1) through
``signal.set_wakeup_fd``: a signal writes a byte to the kernel's wake-up
socket, so even a loop asleep in ``epoll_wait`` notices it at once. With no
catcher installed, SIGINT raises ``KeyboardInterrupt`` and SIGTERM
``SystemExit(143)`` in the main task at its wait point, and SIGUSR1 prints
the task dump to stderr; during shutdown, see :mod:`.interrupts`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .task import WaitQueue
from .traps import Coro, current_task, park


class SignalCatcher:
    """Queue the listed signals for a task instead of their default action.

    Use with ``with``: ``with (yield from catch_signals(SIGINT, SIGTERM)) as
    sigs: signum = yield from sigs.wait()``. Signals that arrive while
    nobody waits are queued, so none is lost between waits.
    """

    def __init__(self, kernel: Any, signals: tuple[int, ...]) -> None:
        self.kernel = kernel
        self.signals = frozenset(signals)
        self._pending: deque[int] = deque()
        self._waiters = WaitQueue(self)

    def __repr__(self) -> str:
        return f"<SignalCatcher {sorted(self.signals)}>"

    def __enter__(self) -> SignalCatcher:
        self.kernel.watch_signals(self)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.kernel.unwatch_signals(self)

    def _deliver(self, signum: int) -> None:
        self._pending.append(signum)
        self._waiters.wake_one()

    def wait(self) -> Coro[int]:
        """Return the next signal caught."""
        while not self._pending:
            yield from park(self._waiters)
        return self._pending.popleft()


def catch_signals(*signals: int) -> Coro[SignalCatcher]:
    """A :class:`SignalCatcher` for ``signals`` in the running kernel."""
    task = yield from current_task()
    return SignalCatcher(task.kernel, signals)
