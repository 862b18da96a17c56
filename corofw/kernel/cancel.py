"""Cancellation: every rule about cancelling a task, in one place.

A task is cancelled either from outside (``Task.cancel``, an interrupt, the
kernel shutting down: :meth:`Cancellation.cancel`) or by a *scope* whose
deadline passes: ``timeout_after`` and ``move_on_after`` (a
:class:`~corofw.kernel.timeouts.TimeoutScope`) and the movable
:class:`~corofw.kernel.deadline.Deadline` are both :class:`Scope`. The rules:

1. **Delivery.** The exception is thrown in at the task's wait point, after
   that wait is undone (the fd slot emptied, the timer dropped, the queue
   left). A task that is running or ready gets it at its next wait; one
   that has not started yet never runs a line.
2. **Merging.** Cancellations a task has not received yet merge into the
   one that outranks the others (:func:`outranks`): anything that is not a
   ``Cancelled`` (``KeyboardInterrupt``, ``DeadlockError``) beats a
   ``Cancelled``; a cancel from outside beats a scope's; an outer scope
   beats an inner one.
3. **Clean-up.** A scope that expires while the task is still handling a
   cancellation that outranks it (a cancel from outside since the scope
   began, or an enclosing scope that has expired) delivers that
   cancellation again: the clean-up is cut short, but never turned into
   this scope's timeout.
4. **Leaving.** A scope that closes drops its timer and withdraws its own
   cancellation if the task has not received it yet.

Each scope registers with its task while it is active (the ``scopes`` of
the task's :class:`~corofw.kernel.task.CancelState`, outermost first),
which is how rules 2 and 3 rank it and how the task dump shows it.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .task import DONE, Cancelled, CancelState, Task


def cancel_state(task: Task) -> CancelState:
    """The :class:`~corofw.kernel.task.CancelState` of ``task``, made on
    first use."""
    state = task._cancellation
    if state is None:
        state = task._cancellation = CancelState()
    return state


def request_of(task: Task) -> BaseException | None:
    """The last cancellation of ``task`` from outside any scope, or None."""
    state = task._cancellation
    return None if state is None else state.request


def renewed(request: BaseException) -> BaseException:
    """What a scope delivers instead of its own Cancelled when the task was
    cancelled from outside (``request``) after the scope began: that
    cancellation again, so it is never turned into a timeout."""
    if isinstance(request, Cancelled):
        return Cancelled(request.reason)
    return request


def outranks(new: BaseException, old: BaseException, task: Task) -> bool:
    """True if ``new`` should replace ``old`` as the cancellation ``task``
    receives next (rule 2). The loser would otherwise be lost when the
    winner's scope closes and withdraws it."""
    if not isinstance(old, Cancelled):
        return False
    if not isinstance(new, Cancelled):
        return True
    if old.scope is None:
        return False
    if new.scope is None:
        return True
    state = task._cancellation
    scopes = [] if state is None else state.scopes
    try:
        return scopes.index(new.scope) < scopes.index(old.scope)
    except ValueError:
        return False


class Scope:
    """A part of one task's work that a timer cancels at ``when`` (kernel
    clock; None: no deadline now). ``label`` names it in reasons and in the
    task dump. Subclasses decide when they enter and leave the task's
    scopes and what their timer does; the rules are here."""

    __slots__ = ("task", "kernel", "when", "label", "entry", "seen", "expired")

    def __init__(self, task: Task, label: str) -> None:
        self.task = task
        self.kernel: Any = task.kernel
        self.when: float | None = None
        self.label = label
        self.entry: list[Any] | None = None
        self.seen = request_of(task)  # a later one outranks this scope
        self.expired = False

    def _enter(self) -> None:
        """Join the task's scopes, innermost so far."""
        state = cancel_state(self.task)
        self.seen = state.request
        state.scopes.append(self)

    def _exit(self) -> None:
        """Leave the task's scopes, withdrawing this scope's cancellation if
        the task has not received it yet."""
        state = self.task._cancellation
        if state is not None:
            pending = state.pending
            if isinstance(pending, Cancelled) and pending.scope is self:
                state.pending = None
            try:
                state.scopes.remove(self)
            except ValueError:
                pass

    def _withdraw(self) -> None:
        state = self.task._cancellation
        if state is not None:
            pending = state.pending
            if isinstance(pending, Cancelled) and pending.scope is self:
                state.pending = None

    def _drop_timer(self) -> None:
        if self.entry is not None:
            self.kernel.timers.cancel(self.entry)
            self.entry = None

    def _reason(self) -> str:
        return f"{self!r} expired"

    def _expire(self) -> None:
        """The deadline has passed: cancel the task for this scope, or with
        what outranks it (rule 3)."""
        self.expired = True
        task = self.task
        state = cancel_state(task)
        request = state.request
        if request is not None and request is not self.seen:
            exc = renewed(request)
        else:
            exc = Cancelled(self._reason(), self)
            for outer in state.scopes:
                if outer is self:
                    break
                if outer.expired:
                    exc = Cancelled(outer._reason(), outer)
                    break
        self.kernel.deliver_cancel(task, exc)


def effective_deadline(task: Task) -> float | None:
    """The earliest ``when`` among the active scopes of ``task`` (kernel
    clock), or None when none has a deadline."""
    state = task._cancellation
    if state is None:
        return None
    best = None
    for scope in state.scopes:
        when = scope.when
        if when is not None and (best is None or when < best):
            best = when
    return best


class EnclosingDeadline:
    """Among the scopes of a task that ``gather`` waits for, the deadlines
    of the task that waits: the child's work is part of the caller's, and
    is cancelled with it. Never expires by itself; counts in
    :func:`effective_deadline` and shows in the task dump."""

    __slots__ = ("caller",)
    expired = False

    def __init__(self, caller: Task) -> None:
        self.caller = caller

    def __repr__(self) -> str:
        return f"<deadlines of task {self.caller.id} {self.caller.name!r}>"

    @property
    def when(self) -> float | None:
        """The caller's effective deadline, now."""
        return effective_deadline(self.caller)


def enclose(children: list[Task], caller: Task) -> None:
    """Make ``children``, which ``caller`` waits for and cancels when it is
    cancelled, count the caller's deadlines as their own."""
    state = caller._cancellation
    if state is not None and state.scopes:
        enclosing = EnclosingDeadline(caller)
        for child in children:
            cancel_state(child).scopes.append(enclosing)


class Cancellation:
    """Cancelling tasks, the kernel's side of the rules above (a mixin of
    :class:`~corofw.kernel.loop.Kernel`: it uses the ready queue, the
    current task, the undo of each trap and rescheduling)."""

    current: Task | None
    _ready: deque[Task]
    _undoers: dict[Any, Any]
    reschedule_error: Callable[[Task, BaseException], None]

    if TYPE_CHECKING:
        @property
        def tasks(self) -> set[Task]: ...

    def cancel(self, task: Task, exc: BaseException) -> None:
        """Cancel ``task`` from outside any scope with ``exc`` (a
        ``Cancelled``, or an interrupt such as ``KeyboardInterrupt``):
        :meth:`deliver_cancel` it, and remember it, so that a scope the
        task entered before and that expires during its clean-up delivers
        this again instead of a timeout of its own. ``Task.cancel`` is the
        public form."""
        if task.state is DONE:
            return
        cancel_state(task).request = exc
        self.deliver_cancel(task, exc)

    def deliver_cancel(self, task: Task, exc: BaseException) -> None:
        """Throw ``exc`` into ``task`` at its wait point, undoing the wait;
        if it is running or ready, at its next wait. Cancellations the task
        has not received yet merge (:func:`outranks`)."""
        if task.state is DONE:
            return
        trap = task._trap
        if trap is not None:
            self._undoers[trap[0]](task, trap)
            task._trap = None
            self.reschedule_error(task, exc)
        elif isinstance(task._error, Cancelled):  # ready, with a cancellation not yet thrown
            if outranks(exc, task._error, task):
                task._error = exc
        elif task is not self.current and task._error is None \
                and inspect.getgeneratorstate(task.coro) == inspect.GEN_CREATED:
            task._error = exc  # not started yet: it never runs a line
        else:
            state = cancel_state(task)
            if state.pending is None or outranks(exc, state.pending, task):
                state.pending = exc

    def _deliver_pending(self, task: Task) -> None:
        """``task`` has just parked with a cancellation pending: undo the
        wait and throw the cancellation in."""
        state = cancel_state(task)
        exc = state.pending
        state.pending = None
        trap = task._trap
        if trap is not None:
            self._undoers[trap[0]](task, trap)
            task._trap = None
        else:
            self._ready.remove(task)
        self.reschedule_error(task, exc)  # type: ignore[arg-type]

    def cancel_all(self, reason: str) -> None:
        """Cancel every live task with ``Cancelled(reason)``."""
        for task in self.tasks:
            self.cancel(task, Cancelled(reason))
