"""Deadlines that cancel the work they guard.

``timeout_after(5, coro)`` runs ``coro`` inside the calling task. When the
deadline passes, the task is cancelled at its wait point with a
:class:`~corofw.kernel.task.Cancelled` that names this scope; the scope turns
it into :class:`~corofw.kernel.task.TaskTimeout` (or a default value, for
``move_on_after``). Each scope has its own timer, so an inner scope with a
later deadline can never extend an outer one: the outer timer still fires,
and its ``Cancelled`` passes through the inner scope untouched.
"""

from __future__ import annotations

from typing import Any

from .task import Cancelled, Task, TaskTimeout, renewed
from .timers import check_duration
from .traps import CURRENT, Coro, T


class TimeoutScope:
    """One active deadline of a task (shown in the task dump)."""

    __slots__ = ("task", "seconds", "deadline", "entry", "label", "seen", "expired")

    def __init__(self, task: Task, seconds: float, label: str) -> None:
        kernel = task._kernel
        self.task = task
        self.seconds = seconds
        self.deadline = kernel.clock() + seconds
        self.label = label
        self.seen = task._cancel_request  # a later one outranks this scope
        self.expired = False
        self.entry = kernel.add_timer(seconds, _expire, self)

    def __repr__(self) -> str:
        return f"{self.label}({self.seconds:g} s)"

    def close(self) -> None:
        """Leave the scope: drop its timer and any cancellation of its own
        that was not delivered yet."""
        task = self.task
        task._kernel.cancel_timer(self.entry)
        pending = task._cancel_pending
        if isinstance(pending, Cancelled) and pending.scope is self:
            task._cancel_pending = None
        scopes = task._scopes
        if scopes:
            scopes.remove(self)


def _expire(scope: TimeoutScope) -> None:
    """Cancel the task for ``scope``, unless a cancellation that outranks
    it has already reached the task and is still being handled (its
    clean-up waits): an explicit cancel since the scope began, or an
    enclosing scope that has expired. That one is delivered again instead,
    so the clean-up is cut short without being turned into this scope's
    timeout."""
    scope.expired = True
    task = scope.task
    request = task._cancel_request
    if request is not scope.seen and request is not None:
        exc = renewed(request)
    else:
        exc = Cancelled(_reason(scope), scope)
        for outer in task._scopes or ():
            if outer is scope:
                break
            if outer.expired:
                exc = Cancelled(_reason(outer), outer)
                break
    task._kernel._throw(task, exc)


def _reason(scope: TimeoutScope) -> str:
    return f"{scope!r} expired (deadline was t={scope.deadline:.3f} on the kernel clock)"


def _guarded(seconds: float, coro: Coro[T], label: str) -> Coro[tuple[bool, Any]]:
    if not hasattr(coro, "send"):
        raise TypeError(f"{label}() needs a generator object, got {coro!r}")
    check_duration(seconds, f"{label}()")
    task = yield (CURRENT,)
    scope = TimeoutScope(task, seconds, label)
    if task._scopes is None:
        task._scopes = []
    task._scopes.append(scope)
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
    finished, value = yield from _guarded(seconds, coro, "timeout_after")
    if not finished:
        raise TaskTimeout(f"timed out after {seconds:g} s")
    return value


def move_on_after(seconds: float, coro: Coro[T], default: Any = None) -> Coro[Any]:
    """Run ``coro`` in this task; if it is not done within ``seconds``,
    cancel it and return ``default`` instead (``seconds`` as for
    :func:`timeout_after`)."""
    finished, value = yield from _guarded(seconds, coro, "move_on_after")
    return value if finished else default
