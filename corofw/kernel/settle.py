"""Partial results: run calls as child tasks and keep each one's outcome.

:func:`gather_settled` waits for every call and returns what each came to,
a value or an error, so a page can render nine panels of ten.
:func:`first_k` returns as soon as ``k`` calls have succeeded and cancels
the rest. Both are structured like :func:`~corofw.kernel.gather.gather`: no
child outlives the call, and when the caller is cancelled every child is
cancelled and waited for before the ``Cancelled`` propagates.
"""

from __future__ import annotations

from types import GeneratorType
from typing import Any

from .cancel import enclose
from .task import Cancelled, SmallWaitQueue, Task
from .traps import Coro, current_task, park, spawn


class Outcome:
    """What one call came to: ``value`` when ``ok``, else ``error`` (the
    exception it raised). :meth:`unwrap` gives the value or raises the
    error."""

    __slots__ = ("value", "error")

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error

    @property
    def ok(self) -> bool:
        """True when the call returned (``value`` is its result)."""
        return self.error is None

    def unwrap(self) -> Any:
        """The call's value, or raise its error."""
        if self.error is not None:
            raise self.error
        return self.value

    def __repr__(self) -> str:
        if self.error is not None:
            return f"Outcome(error={self.error!r})"
        return f"Outcome(value={self.value!r})"


class TooFewSucceeded(Exception):
    """:func:`first_k` could no longer reach ``needed`` successes: so many
    calls failed that fewer than ``needed`` could still succeed.
    ``errors`` maps each failed call's index to its exception; ``outcomes``
    is what :func:`first_k` would have returned (None for the calls
    cancelled because they could no longer help)."""

    def __init__(self, needed: int, outcomes: list[Outcome | None]) -> None:
        self.needed = needed
        self.outcomes = outcomes
        self.errors = {i: o.error for i, o in enumerate(outcomes)
                       if o is not None and o.error is not None}
        succeeded = sum(1 for o in outcomes if o is not None and o.ok)
        listed = "; ".join(f"call {i}: {error!r}" for i, error in self.errors.items())
        super().__init__(f"needed {needed} of {len(outcomes)} calls to succeed, "
                         f"{succeeded} did and {len(self.errors)} failed: {listed}")


class _Children:
    """The child tasks of one call and the caller's wake-up. ``decide``
    (set by the caller) is asked about each child as it finishes and
    returns a reason once the caller has what it needs (or can never have
    it); from then on the children still running are cancelled with that
    reason, and those finishing later do not count. The caller is woken
    once, when every child has finished."""

    __slots__ = ("tasks", "finished", "waiter", "decide", "decided", "fatal")

    def __init__(self, what: str) -> None:
        self.tasks: list[Task] = []
        self.finished: list[Task] = []
        self.waiter = SmallWaitQueue(what)
        self.decide: Any = None
        self.decided: int | None = None  # how many had finished when the caller decided
        self.fatal: BaseException | None = None

    def start(self, coros: tuple[Coro[Any], ...], names: list[str] | None) -> Coro[None]:
        """Spawn each coroutine as a child of the calling task, within the
        caller's deadlines (it is cancelled with the caller)."""
        for coro in coros:
            if not isinstance(coro, GeneratorType):
                raise TypeError(f"{self.waiter.owner}() needs generator objects, got {coro!r}")
        for i, coro in enumerate(coros):
            task = yield from spawn(coro, names[i] if names else None)
            self.tasks.append(task)
        enclose(self.tasks, (yield from current_task()))
        for task in self.tasks:
            task.add_done_callback(self._on_done)

    def _on_done(self, task: Task) -> None:
        self.finished.append(task)
        if self.decided is None:
            error = task.exception()
            if error is not None and not isinstance(error, (Exception, Cancelled)):
                self.fatal = error  # KeyboardInterrupt, SystemExit: stop at once
                self.decide_now("a sibling raised " + repr(error))
            elif self.decide is not None:
                reason = self.decide(task)
                if reason:
                    self.decide_now(reason)
        if len(self.finished) == len(self.tasks):
            self.waiter.wake_one()  # the caller acts only once all are done

    def decide_now(self, reason: str) -> None:
        self.decided = len(self.finished)
        for task in self.tasks:
            if not task.done:
                task.cancel(reason)

    def wait(self) -> Coro[None]:
        """Wait until every child has finished. Cancelled meanwhile: cancel
        them all, wait for them, and re-raise."""
        try:
            while len(self.finished) < len(self.tasks):
                yield from park(self.waiter)
        except BaseException as exc:
            reason = exc.reason if isinstance(exc, Cancelled) else repr(exc)
            for task in self.tasks:
                if not task.done:
                    task.cancel(f"the task waiting for these calls was cancelled "
                                f"({reason})")
            while len(self.finished) < len(self.tasks):
                try:
                    yield from park(self.waiter)
                except Cancelled:
                    pass
            raise
        finally:
            for task in self.tasks:
                task.exception()  # retrieved: what the caller does not return, it chose to drop
        if self.fatal is not None:
            raise self.fatal

    def outcomes(self) -> list[Outcome | None]:
        """Per child, in call order: its outcome if it finished before the
        caller decided, else None."""
        counted = self.finished if self.decided is None else self.finished[:self.decided]
        done = {id(task) for task in counted}
        return [_outcome(task) if id(task) in done else None for task in self.tasks]


def _outcome(task: Task) -> Outcome:
    error = task.exception()
    return Outcome(task.result()) if error is None else Outcome(error=error)


def gather_settled(*coros: Coro[Any], names: list[str] | None = None) -> Coro[list[Outcome]]:
    """Run each coroutine as a child task, wait for all of them, and return
    one :class:`Outcome` per call, in order. A call that raises does not
    disturb the others: its exception is its outcome's ``error``. When the
    caller is cancelled, every child is cancelled and waited for, then the
    ``Cancelled`` propagates. No child outlives the call."""
    children = _Children("gather_settled")
    yield from children.start(coros, names)
    yield from children.wait()
    return [_outcome(task) for task in children.tasks]


def first_k(k: int, *coros: Coro[Any], names: list[str] | None = None
            ) -> Coro[list[Outcome | None]]:
    """Run each coroutine as a child task; as soon as ``k`` have succeeded,
    cancel the others, wait for them to finish, and return one entry per
    call, in call order: the :class:`Outcome` of each call that finished
    up to the ``k``-th success (``k`` successes, and the failures before
    them), and None for each call that had not (it was cancelled, or
    finished after the decision, and is ignored).

    When so many calls fail that ``k`` successes can no longer be reached,
    the calls still running are cancelled and waited for, and
    :class:`TooFewSucceeded` is raised with every error collected. ``k``
    must be from 0 to the number of calls. When the caller is cancelled,
    every child is cancelled and waited for before the ``Cancelled``
    propagates. No child outlives the call."""
    n = len(coros)
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= n:
        for coro in coros:
            if isinstance(coro, GeneratorType):
                coro.close()
        raise ValueError(f"first_k() needs k from 0 to {n} (the number of calls), got {k!r}")
    children = _Children("first_k")
    counts = [0, 0]  # successes, failures

    def decide(task: Task) -> str | None:
        counts[task.exception() is not None] += 1
        if counts[0] == k:
            return f"not needed: {k} of {n} calls had succeeded"
        if counts[1] > n - k:
            return f"{counts[1]} of {n} calls failed, so {k} cannot succeed"
        return None

    children.decide = decide
    yield from children.start(coros, names)
    if k == 0:
        children.decide_now("not needed: first_k(0, ...)")
    yield from children.wait()
    results = children.outcomes()
    if counts[0] < k:
        raise TooFewSucceeded(k, results)
    return results
