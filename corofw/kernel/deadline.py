"""A movable deadline: one timer per task, re-armed lazily.

Protocol code moves its deadline at every phase (idle, reading, sending);
with one timer per move, a busy connection would churn the timer heap. A
:class:`Deadline` makes ``set`` a store: its single timer, when it fires,
compares the clock with the latest deadline and re-arms itself if that has
moved on. When it has passed, the task is cancelled at its wait point with a
:class:`~corofw.kernel.task.Cancelled` whose ``scope`` is the deadline, so
the owner can tell its own timeout from any other cancellation.

A Deadline is a :class:`~corofw.kernel.cancel.Scope`: while armed it is one
of its task's scopes, ranked against the task's other cancellations by the
rules of :mod:`.cancel`, counted by ``current_deadline()`` and shown in the
task dump.
"""

from __future__ import annotations

from typing import Any

from .cancel import Scope, request_of
from .task import Task
from .timers import check_duration


class Deadline(Scope):
    """The deadline of ``task``; ``label`` (e.g. "read") names the phase.
    ``when`` is the deadline on the kernel clock, None while cleared."""

    __slots__ = ()

    def __init__(self, task: Task) -> None:
        super().__init__(task, "")

    def __repr__(self) -> str:
        return f"<Deadline {self.label}>"

    def _reason(self) -> str:
        return f"{self.label} timeout"

    def set(self, seconds: float, label: str) -> None:
        """Expire ``seconds`` from now, in phase ``label`` (a negative
        ``seconds`` has already passed; NaN raises ValueError and leaves the
        deadline as it was)."""
        seconds = check_duration(seconds, f"Deadline.set({label!r})")
        if self.when is None:
            self._enter()
        else:
            self._withdraw()
            self.seen = request_of(self.task)
        kernel = self.kernel
        when = self.when = kernel.clock() + seconds
        self.label = label
        self.expired = False
        entry = self.entry
        if entry is not None:
            if entry[0] <= when:
                return  # the armed timer fires first and re-checks then
            kernel.timers.cancel(entry)
        self.entry = kernel.timers.add(when, self._on_timer, None)

    def retarget(self, task: Task) -> None:
        """Guard ``task`` from now on, cleared (a deadline kept with a
        resource, such as a pooled connection, serves whichever task uses
        it, in whichever kernel)."""
        if task is not self.task:
            self.clear()
            if task.kernel is not self.kernel:
                self._drop_timer()  # it would fire in the old kernel, or never
                self.kernel = task.kernel
            self.task = task
            self.seen = request_of(task)

    def clear(self) -> None:
        """No deadline until the next :meth:`set`."""
        if self.when is not None:
            self.when = None
            self.expired = False
            self._exit()

    def close(self) -> None:
        """Drop the timer; call when the task is done with the deadline."""
        self.clear()
        self._drop_timer()

    def _on_timer(self, _: Any) -> None:
        self.entry = None
        when = self.when
        if when is None:
            return
        if when > self.kernel.clock():  # moved on since the timer was armed
            self.entry = self.kernel.timers.add(when, self._on_timer, None)
            return
        self._expire()
