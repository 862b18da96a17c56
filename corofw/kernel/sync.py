"""Event, Lock, Semaphore and Queue, built on one park/wake primitive.

A waiting task parks itself in a :class:`WaitQueue` with the ``PARK`` trap;
whoever makes progress possible wakes it. Cancelling a parked task removes
it from the queue first, so a cancelled waiter never takes a lock, a permit
or an item. A primitive makes its queue when a task first has to wait (an
empty deque is most of a kilobyte, and most primitives are never waited
on: a connection's write lock, a WebSocket's events).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .task import Task, WaitQueue
from .traps import Coro, current_task, park


class Event:
    """A flag tasks can wait for; once set, waits return at once until
    :meth:`clear`."""

    def __init__(self) -> None:
        self._flag = False
        self._waiters: WaitQueue | None = None  # made by the first wait

    def __repr__(self) -> str:
        return f"<Event {'set' if self._flag else 'unset'}>"

    def is_set(self) -> bool:
        """True while the flag is set."""
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._flag = True
        if self._waiters is not None:
            self._waiters.wake_all()

    def clear(self) -> None:
        """Reset the flag; later :meth:`wait` calls park again."""
        self._flag = False

    def wait(self) -> Coro[None]:
        """Wait until the flag is set (return at once if it already is)."""
        if not self._flag:
            waiters = self._waiters
            if waiters is None:
                waiters = self._waiters = WaitQueue(self)
            yield from park(waiters)


class Semaphore:
    """``value`` permits; :meth:`acquire` waits while none is free. A
    released permit is handed straight to the oldest waiter (FIFO).

    With ``max_value``, a :meth:`release` that would make more than
    ``max_value`` permits free raises ``ValueError``: a bounded semaphore
    catches a release without its acquire.
    """

    def __init__(self, value: int = 1, *, max_value: int | None = None) -> None:
        if not isinstance(value, int):
            raise TypeError(f"a semaphore's value must be an int, got {value!r}")
        if value < 0:
            raise ValueError("a semaphore's value cannot be negative")
        if max_value is not None and value > max_value:
            raise ValueError(f"a semaphore's value ({value}) cannot exceed its max_value "
                             f"({max_value})")
        self._value = value
        self._max_value = max_value
        self._waiters: WaitQueue | None = None  # made by the first wait

    def __repr__(self) -> str:
        return f"<{type(self).__name__} value={self._value} waiters={len(self._waiters or ())}>"

    @property
    def value(self) -> int:
        """The number of free permits."""
        return self._value

    def locked(self) -> bool:
        """True when no permit is free: :meth:`acquire` would wait."""
        return self._value == 0

    def acquire(self) -> Coro[Semaphore]:
        """Take a permit; return self, so ``with (yield from s.acquire()):``
        releases it at the end of the block."""
        if self._value > 0 and not self._waiters:
            self._value -= 1
        else:
            waiters = self._waiters
            if waiters is None:
                waiters = self._waiters = WaitQueue(self)
            yield from park(waiters)  # woken holding the permit
        return self

    def release(self) -> None:
        """Give a permit back: to the oldest waiter if there is one, else to
        the pool. Never waits. Raises ``ValueError`` past ``max_value``."""
        if self._waiters:  # (None, or empty: no one to hand the permit to)
            self._waiters.wake_one()
        elif self._max_value is not None and self._value >= self._max_value:
            raise ValueError(f"semaphore released too many times (max_value {self._max_value})")
        else:
            self._value += 1

    def __enter__(self) -> Semaphore:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()


class Lock(Semaphore):
    """A mutual-exclusion lock owned by the task that acquired it."""

    def __init__(self) -> None:
        super().__init__(1)
        self._owner: Task | None = None

    def __repr__(self) -> str:
        owner = self._owner.name if self._owner else None
        return f"<Lock owner={owner!r} waiters={len(self._waiters or ())}>"

    def acquire(self) -> Coro[Lock]:
        """Wait until the lock is free and take it; return self, so
        ``with (yield from lock.acquire()):`` releases it at the end of the
        block. Raises ``RuntimeError`` if this task already holds it."""
        task = yield from current_task()
        if self._owner is task:
            raise RuntimeError("this task already holds the lock (Lock is not reentrant)")
        yield from super().acquire()
        self._owner = task
        return self

    def release(self) -> None:
        """Release the lock, handing it to the oldest waiter if any. Raises
        ``RuntimeError`` unless the calling task holds it (as trio does):
        another task's release would let two tasks in at once."""
        owner = self._owner
        if owner is None:
            raise RuntimeError("release() of a lock that is not held")
        caller = owner.kernel.current
        if caller is not owner:
            by = "outside any task" if caller is None else f"by task {caller.id} {caller.name!r}"
            raise RuntimeError(f"release() {by} of a lock held by task {owner.id} "
                               f"{owner.name!r}: only the holder may release it")
        self._owner = None
        super().release()


class QueueEmpty(Exception):
    """``get_nowait`` on an empty queue."""


class QueueFull(Exception):
    """``put_nowait`` on a full queue."""


class Queue:
    """A FIFO queue between tasks. With ``maxsize > 0``, :meth:`put` waits
    while the queue is full: producers slow down to the consumers' pace."""

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self._items: deque[Any] = deque()
        self._getters: WaitQueue | None = None  # made by the first wait of each kind
        self._putters: WaitQueue | None = None

    def __repr__(self) -> str:
        return f"<Queue size={len(self._items)} maxsize={self.maxsize}>"

    def __len__(self) -> int:
        return len(self._items)

    def qsize(self) -> int:
        """The number of items in the queue."""
        return len(self._items)

    def empty(self) -> bool:
        """True when the queue holds no item."""
        return not self._items

    def full(self) -> bool:
        """True when the queue is bounded and holds ``maxsize`` items."""
        return 0 < self.maxsize <= len(self._items)

    def put(self, item: Any) -> Coro[None]:
        """Add ``item``, waiting while the queue is full."""
        while self.full():
            putters = self._putters
            if putters is None:
                putters = self._putters = WaitQueue(self)
            yield from park(putters)
        self.put_nowait(item)

    def put_nowait(self, item: Any) -> None:
        """Add ``item`` without waiting; raise :class:`QueueFull` if the
        queue is full."""
        if self.full():
            raise QueueFull("the queue is full")
        self._items.append(item)
        if self._getters is not None:
            self._getters.wake_one()

    def get(self) -> Coro[Any]:
        """Remove and return the oldest item, waiting while there is none."""
        while not self._items:
            getters = self._getters
            if getters is None:
                getters = self._getters = WaitQueue(self)
            yield from park(getters)
        return self.get_nowait()

    def get_nowait(self) -> Any:
        """Remove and return the oldest item without waiting; raise
        :class:`QueueEmpty` if there is none."""
        if not self._items:
            raise QueueEmpty("the queue is empty")
        item = self._items.popleft()
        if self._putters is not None:
            self._putters.wake_one()
        if self._items and self._getters is not None:
            self._getters.wake_one()  # pass the turn on if a woken getter lost the race
        return item
