"""Deadlines that cancel the work they guard.

``timeout_after(5, coro)`` runs ``coro`` inside the calling task. When the
deadline passes, the task is cancelled at its wait point with a
:class:`~corofw.kernel.task.Cancelled` that names this scope; the scope turns
it into :class:`~corofw.kernel.task.TaskTimeout` (or a default value, for
``move_on_after``). Each scope has its own timer, so an inner scope with a
later deadline can never extend an outer one: the outer timer still fires,
and its ``Cancelled`` passes through the inner scope untouched. The rules
that rank a scope against other cancellations are in :mod:`.cancel`.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar, overload

from .cancel import Scope, effective_deadline
from .context import running_task
from .task import Cancelled, Task, TaskTimeout
from .timers import check_duration
from .traps import Coro, T, current_task

_D = TypeVar("_D")


class TimeoutScope(Scope):
    """One ``timeout_after`` or ``move_on_after`` of a task, active from
    creation to :meth:`close` (shown in the task dump)."""

    __slots__ = ("seconds",)

    def __init__(self, task: Task, seconds: float, label: str) -> None:
        super().__init__(task, label)
        self.seconds = seconds
        self.when = when = self.kernel.clock() + seconds
        self._enter()
        self.entry = self.kernel.timers.add(when, self._on_timer, None)

    def __repr__(self) -> str:
        return f"{self.label}({self.seconds:g} s)"

    def _reason(self) -> str:
        return f"{self!r} expired (deadline was t={self.when:.3f} on the kernel clock)"

    def _on_timer(self, _: Any) -> None:
        self.entry = None
        self._expire()

    def close(self) -> None:
        """Leave the scope: drop its timer and any cancellation of its own
        that the task has not received yet."""
        self._drop_timer()
        self._exit()


def _guarded(seconds: float, coro: Coro[T],
             label: str) -> Coro[tuple[Literal[True], T] | tuple[Literal[False], Cancelled]]:
    if not hasattr(coro, "send"):
        raise TypeError(f"{label}() needs a generator object, got {coro!r}")
    seconds = check_duration(seconds, f"{label}()")
    task = running_task()
    if task is None:
        task = yield from current_task()
    scope = TimeoutScope(task, seconds, label)
    try:
        return True, (yield from coro)
    except Cancelled as exc:
        if exc.scope is scope:
            return False, exc
        raise
    finally:
        scope.close()


def timeout_after(seconds: float, coro: Coro[T]) -> Coro[T]:
    """Run ``coro`` in this task; if it is not done within ``seconds``,
    cancel it and raise :class:`TaskTimeout`. A negative ``seconds`` has
    already passed (``coro`` is cancelled at its first wait), ``math.inf``
    never does, and NaN raises ``ValueError`` before ``coro`` starts."""
    outcome = yield from _guarded(seconds, coro, "timeout_after")
    if not outcome[0]:
        raise TaskTimeout(f"timed out after {float(seconds):g} s")
    return outcome[1]


@overload
def move_on_after(seconds: float, coro: Coro[T]) -> Coro[T | None]: ...
@overload
def move_on_after(seconds: float, coro: Coro[T], default: _D) -> Coro[T | _D]: ...

def move_on_after(seconds: float, coro: Coro[T], default: _D | None = None) -> Coro[T | _D | None]:
    """Run ``coro`` in this task; if it is not done within ``seconds``,
    cancel it and return ``default`` instead (``seconds`` as for
    :func:`timeout_after`)."""
    outcome = yield from _guarded(seconds, coro, "move_on_after")
    return outcome[1] if outcome[0] else default


def current_deadline() -> Coro[float | None]:
    """The calling task's effective deadline: the earliest deadline, on the
    kernel clock (see ``current_time()``), of the ``timeout_after``,
    ``move_on_after`` and armed :class:`~corofw.kernel.deadline.Deadline`
    scopes its code runs in; None when none has one. A deadline that has
    already passed is returned as it is (earlier than now). For passing a
    budget on to a call that leaves the process: ``remaining = deadline -
    (yield from current_time())``."""
    task = running_task()
    if task is None:
        task = yield from current_task()
    return effective_deadline(task)
