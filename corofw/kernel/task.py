"""Tasks, wait queues and the kernel's exceptions."""

from __future__ import annotations

import contextvars
import itertools
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from .traps import Coro, Trap, park

if TYPE_CHECKING:
    from .loop import Kernel

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


class WaitQueue(deque["Task"]):
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


class SmallWaitQueue(list["Task"]):
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


class CancelState:
    """A task's standing with cancellation, made the first time it is
    cancelled or enters a scope (see :mod:`.cancel`): ``pending``, the
    cancellation it has not received yet; ``request``, the last one from
    outside any scope; ``scopes``, its active scopes, outermost first."""

    __slots__ = ("pending", "request", "scopes")

    def __init__(self) -> None:
        self.pending: BaseException | None = None
        self.request: BaseException | None = None
        self.scopes: list[Any] = []


PENDING, DONE = "pending", "done"


class Task:
    """A coroutine scheduled by the kernel.

    A caller may rely on: ``name``, ``parent``, ``kernel`` (the kernel that
    runs it), ``done``, ``cancelled``,
    ``join()`` (returns the result or re-raises the task's exception),
    ``cancel()``, and ``result()`` / ``exception()`` once done.
    """

    # Every slot is visited each time the garbage collector walks a task:
    # a task keeps only what most tasks need.
    __slots__ = (
        "id", "_name", "coro", "parent", "created", "state", "context",
        "kernel", "_vars", "_result", "_error", "_trap", "_cancellation", "_watchers",
        "_unjoined",
        "__weakref__",
    )
    # _result and _error: what the task's current wait came to (sent or
    # thrown in at its next step) and, once the task is done, what the task
    # itself came to. _unjoined: set when it finishes with an error, and
    # read only then (an unset slot costs the collector nothing).
    _unjoined: UnjoinedCrash | None

    def __init__(self, kernel: Kernel, coro: Coro[Any], name: str | None, parent: Task | None,
                 created: float) -> None:
        self.id = next(_task_ids)
        self.coro = coro
        self._name = name
        self.parent = parent
        self.created = created
        self.state = PENDING
        self.context: Any = None
        self.kernel = kernel
        # Its own context variables, copied from its parent's (as asyncio and
        # trio do): every step runs in them.
        self._vars: contextvars.Context = (
            parent._vars.copy() if parent is not None else contextvars.copy_context())
        self._result: Any = None
        self._error: BaseException | None = None
        self._trap: Trap | None = None
        self._cancellation: CancelState | None = None  # made when first needed
        self._watchers: Any = None  # one callback, or a list of them

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.name!r} {self.state}>"

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
            joiners = SmallWaitQueue(self)
            self.add_done_callback(joiners.wake_all)
            yield from park(joiners)
            del joiners
        error = self._error  # as result(), without the call
        if error is not None:
            self._mark_retrieved()
            # The traceback will hold this frame: without its locals, the
            # error (which the task keeps) does not hold the task.
            del self
            raise error
        return self._result

    def result(self) -> Any:
        """The finished task's return value, or raise its exception."""
        if self.state is not DONE:
            raise RuntimeError(f"{self!r} has not finished")
        error = self._error
        if error is not None:
            self._mark_retrieved()
            del self  # as in join(): no cycle through the traceback
            raise error
        return self._result

    def exception(self) -> BaseException | None:
        """The finished task's exception, or None."""
        if self.state is not DONE:
            raise RuntimeError(f"{self!r} has not finished")
        self._mark_retrieved()
        return self._error

    def _mark_retrieved(self) -> None:
        """Someone has seen the outcome: a crash is not logged."""
        if self._error is not None:
            unjoined = self._unjoined
            if unjoined is not None:
                unjoined.error = None
                self._unjoined = None

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


class UnjoinedCrash:
    """Logs the crash of a task whose outcome nobody looked at, once the
    task is gone. Only a crashed task carries one, so the other tasks pay
    nothing for the check."""

    __slots__ = ("name", "error")

    def __init__(self, name: str, error: BaseException) -> None:
        self.name = name
        self.error: BaseException | None = error

    def __del__(self) -> None:
        error = self.error
        if error is not None:
            log.error("Task %s crashed and was never joined", self.name,
                      exc_info=(type(error), error, error.__traceback__))
