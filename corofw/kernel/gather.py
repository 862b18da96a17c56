"""Structured concurrency: run coroutines as child tasks and wait for all."""

from __future__ import annotations

from types import GeneratorType
from typing import Any, cast

from .cancel import enclose
from .task import Cancelled, SmallWaitQueue, Task
from .traps import Coro, current_task, park


def gather(*coros: Coro[Any], names: list[str] | None = None) -> Coro[list[Any]]:
    """Run each coroutine as a child task; return their results in order.

    When one child fails, the others are cancelled and waited for, then the
    first failure is re-raised, even when a timeout around the call expires
    while the others finish (as asyncio and trio report it). When the caller
    is cancelled, every child is cancelled and waited for before the
    ``Cancelled`` propagates. No child outlives the call.
    """
    for coro in coros:
        if not isinstance(coro, GeneratorType):
            raise TypeError(f"gather() needs generator objects, got {coro!r}")
    parent: Task = yield from current_task()
    kernel = parent.kernel
    finished: list[Task] = []
    waiter = SmallWaitQueue("gather")

    def on_done(task: Task) -> None:
        finished.append(task)
        if task._error is not None or len(finished) == len(children):
            waiter.wake_one()  # only what the caller acts on: a failure, or the end

    children = [kernel.spawn(coro, names[i] if names else None, parent)
                for i, coro in enumerate(coros)]
    for child in children:
        child._watchers = on_done  # its only done callback (add_done_callback, inlined)
    enclose(children, parent)
    failure: Task | None = None
    try:
        seen = 0
        while len(finished) < len(children):
            if seen == len(finished):
                yield from park(waiter)
            for task in finished[seen:]:
                if failure is None and task._error is not None:
                    failure = task
                    _cancel_others(children, task)
            seen = len(finished)
    except BaseException as exc:
        reason = exc.reason if isinstance(exc, Cancelled) else f"gather failed: {exc!r}"
        for child in children:
            child.cancel(f"the task running gather() was cancelled ({reason})")
        while len(finished) < len(children):
            try:
                yield from park(waiter)
            except Cancelled:
                pass
        _retrieve(children)
        if failure is not None and isinstance(exc, Cancelled) and exc.scope is not None:
            # a timeout while siblings cleaned up: the error is news
            raise cast(BaseException, failure._error)
        raise
    _retrieve(children)
    if failure is not None:
        raise cast(BaseException, failure._error)  # chosen for its error
    return [child._result for child in children]


def _cancel_others(children: list[Task], failed: Task) -> None:
    reason = f"sibling {failed.name!r} failed with {failed._error!r}"
    for child in children:
        if child is not failed:
            child.cancel(reason)


def _retrieve(children: list[Task]) -> None:
    for child in children:
        if child._error is not None:
            child._mark_retrieved()
