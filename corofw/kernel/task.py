"""Tasks, wait queues and the kernel's exceptions."""

from __future__ import annotations

import itertools
import logging
from collections import deque
from typing import Any

from .traps import Coro, park

log = logging.getLogger("corofw.kernel")

_task_ids = itertools.count(1)


class Cancelled(BaseException):
    """Thrown into a task at its wait point when it is cancelled.

    A ``BaseException`` so that ``except Exception`` in user code does not
    swallow it. ``reason`` says why (an explicit message, a timeout, a
    failing sibling, shutdown); ``scope`` is the timeout scope that fired, if
    any.
    """

    def __init__(self, reason: str = "cancelled", scope: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.scope = scope


class TaskTimeout(TimeoutError):
    """Raised by :func:`~corofw.timeout_after` when its deadline passes."""


class BusyResourceError(RuntimeError):
    """Two tasks tried to wait for the same direction on one fd."""


class ClosedResourceError(OSError):
    """The fd a task waited on was closed by another task."""


class DeadlockError(RuntimeError):
    """Every task waits for something that nothing can wake."""


class WaitQueue(deque):
    """Tasks parked on a primitive, oldest first.

    ``owner`` is the primitive (Event, Lock, Task being joined, ...) so the
    task dump can say what a task waits for.
    """

    __slots__ = ("owner",)

    def __init__(self, owner: Any) -> None:
        super().__init__()
        self.owner = owner

    def wake_one(self, value: Any = None) -> Task | None:
        """Wake the oldest waiter with ``value``; return it (or None)."""
        if not self:
            return None
        task = self.popleft()
        task.kernel.reschedule(task, value)
        return task

    def wake_all(self, value: Any = None) -> None:
        """Wake every waiter with ``value``, oldest first."""
        while self:
            task = self.popleft()
            task.kernel.reschedule(task, value)


class SmallWaitQueue(list):
    """A :class:`WaitQueue` for the few waiters of one task's ``join()`` or
    one ``gather``: a list is a tenth of a deque's size, and there is one
    per joined task."""

    __slots__ = ("owner",)

    def __init__(self, owner: Any) -> None:
        super().__init__()
        self.owner = owner

    def wake_one(self, value: Any = None) -> Task | None:
        """Wake the oldest waiter with ``value``; return it (or None)."""
        if not self:
            return None
        task = self.pop(0)
        task.kernel.reschedule(task, value)
        return task

    def wake_all(self, value: Any = None) -> None:
        """Wake every waiter with ``value``, oldest first."""
        waiters = self[:]
        self.clear()
        for task in waiters:
            task.kernel.reschedule(task, value)


PENDING, DONE = "pending", "done"


class Task:
    """A coroutine scheduled by the kernel.

    A caller may rely on: ``name``, ``parent``, ``kernel`` (the kernel that
    runs it), ``done``, ``cancelled``,
    ``join()`` (returns the result or re-raises the task's exception),
    ``cancel()``, and ``result()`` / ``exception()`` once done.
    """

    __slots__ = (
        "id", "_name", "coro", "parent", "created", "state", "context",
        "kernel", "_value", "_exc", "_trap",
        "_cancel_pending", "_cancel_request", "_result", "_error", "_joiners", "_watchers",
        "_scopes", "_retrieved", "__weakref__",
    )

    def __init__(self, kernel: Any, coro: Coro[Any], name: str | None, parent: Task | None,
                 created: float) -> None:
        self.id = next(_task_ids)
        self.coro = coro
        self._name = name
        self.parent = parent
        self.created = created
        self.state = PENDING
        self.context: Any = None
        self.kernel = kernel
        self._value: Any = None
        self._exc: BaseException | None = None
        self._trap: tuple | None = None
        self._cancel_pending: BaseException | None = None
        self._cancel_request: BaseException | None = None  # the last one not from a timeout
        self._result: Any = None
        self._error: BaseException | None = None
        self._joiners: SmallWaitQueue | None = None
        self._watchers: Any = None  # one callback, or a list of them
        self._scopes: list | None = None
        self._retrieved = False

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.name!r} {self.state}>"

    @property
    def _kernel(self) -> Any:  # TRANSITION: callers move to .kernel
        return self.kernel

    @property
    def name(self) -> str:
        """The name given to ``spawn``, else the coroutine's function name."""
        name = self._name
        if name is None:
            qualname = getattr(self.coro, "__qualname__", None)
            name = qualname.rsplit("<locals>.", 1)[-1] if qualname else repr(self.coro)
        return name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    @property
    def done(self) -> bool:
        """True once the task has finished, whatever the outcome."""
        return self.state is DONE

    @property
    def cancelled(self) -> bool:
        """True once the task has finished by a :class:`Cancelled`."""
        return self.state is DONE and isinstance(self._error, Cancelled)

    def cancel(self, reason: str = "cancelled") -> None:
        """Request cancellation: :class:`Cancelled` is thrown in at the task's
        current wait point (after that wait is undone), or at its next one if
        it is running now. Cancelling a finished task does nothing."""
        if self.state is not DONE:
            self.kernel.cancel(self, Cancelled(reason))

    def join(self) -> Coro[Any]:
        """Wait for the task to finish; return its result or re-raise its
        exception (including :class:`Cancelled` if it was cancelled)."""
        if self.state is not DONE:
            if self._joiners is None:
                self._joiners = SmallWaitQueue(self)
            yield from park(self._joiners)
        return self.result()

    def result(self) -> Any:
        """The finished task's return value, or raise its exception."""
        if self.state is not DONE:
            raise RuntimeError(f"{self!r} has not finished")
        self._retrieved = True
        if self._error is not None:
            raise self._error
        return self._result

    def exception(self) -> BaseException | None:
        """The finished task's exception, or None."""
        if self.state is not DONE:
            raise RuntimeError(f"{self!r} has not finished")
        self._retrieved = True
        return self._error

    def add_done_callback(self, fn: Any) -> None:
        """Call ``fn(task)`` from the kernel when the task finishes (at once if
        it already has). Callbacks must not block."""
        watchers = self._watchers
        if self.state is DONE:
            fn(self)
        elif watchers is None:
            self._watchers = fn
        elif type(watchers) is list:
            watchers.append(fn)
        else:
            self._watchers = [watchers, fn]

    def __del__(self) -> None:
        error = self._error
        if error is not None and not self._retrieved and not isinstance(error, Cancelled):
            log.error("Task %s crashed and was never joined", self.name,
                      exc_info=(type(error), error, error.__traceback__))
