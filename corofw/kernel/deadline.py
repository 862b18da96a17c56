"""A movable deadline: one timer per task, re-armed lazily.

Protocol code moves its deadline at every phase (idle, reading, sending);
with one timer per move, a busy connection would churn the timer heap. A
:class:`Deadline` makes ``set`` a store: its single timer, when it fires,
compares the clock with the latest deadline and re-arms itself if that has
moved on. When it has passed, the task is cancelled at its wait point with a
:class:`~corofw.kernel.task.Cancelled` whose ``scope`` is the deadline, so
the owner can tell its own timeout from any other cancellation.
"""

from __future__ import annotations

from typing import Any

from .task import Cancelled, Task, renewed
from .timers import check_duration

_RECHECK = 0.05


class Deadline:
    """The deadline of ``task``; ``label`` (e.g. "read") names the phase."""

    __slots__ = ("task", "kernel", "when", "label", "entry", "seen")

    def __init__(self, task: Task) -> None:
        self.task = task
        self.kernel = task._kernel
        self.when: float | None = None
        self.label = ""
        self.entry: Any = None
        self.seen = task._cancel_request

    def __repr__(self) -> str:
        return f"<Deadline {self.label}>"

    def set(self, seconds: float, label: str) -> None:
        """Expire ``seconds`` from now, in phase ``label`` (a negative
        ``seconds`` has already passed; NaN raises ValueError and leaves the
        deadline as it was)."""
        check_duration(seconds, f"Deadline.set({label!r})")
        self._drop_stale_cancel()
        when = self.when = self.kernel.clock() + seconds
        self.label = label
        self.seen = self.task._cancel_request
        entry = self.entry
        if entry is not None:
            if entry[0] <= when:
                return  # the armed timer fires first and re-checks then
            self.kernel.cancel_timer(entry)
        self.entry = self.kernel.add_timer(seconds, self._fire, None)

    def retarget(self, task: Task) -> None:
        """Guard ``task`` from now on (a deadline kept with a resource, such
        as a pooled connection, serves whichever task uses it)."""
        if task is not self.task:
            self.clear()
            self.task = task
            self.kernel = task._kernel
            self.seen = task._cancel_request

    def clear(self) -> None:
        """No deadline until the next :meth:`set`."""
        self._drop_stale_cancel()
        self.when = None

    def close(self) -> None:
        """Drop the timer; call when the task is done with the deadline."""
        self.when = None
        self._drop_stale_cancel()
        if self.entry is not None:
            self.kernel.cancel_timer(self.entry)
            self.entry = None

    def _drop_stale_cancel(self) -> None:
        pending = self.task._cancel_pending
        if pending is not None and getattr(pending, "scope", None) is self:
            self.task._cancel_pending = None

    def _fire(self, _: Any) -> None:
        self.entry = None
        when = self.when
        if when is None:
            return
        left = when - self.kernel.clock()
        if left > 0 or self.task._trap is None:  # moved on, or running right now
            self.entry = self.kernel.add_timer(max(left, _RECHECK), self._fire, None)
            return
        # A cancel since the last set() outranks the deadline: deliver it again.
        request = self.task._cancel_request
        self.kernel._throw(self.task, Cancelled(f"{self.label} timeout", self)
                           if request is self.seen or request is None else renewed(request))
