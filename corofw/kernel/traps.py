"""Traps: the only values a coroutine ever yields to the kernel.

A trap is a tuple whose first item is one of the operation markers below.
The kernel looks the marker up, performs the operation, and resumes the
coroutine with a value (``send``) or an exception (``throw``).

Three traps are public and meant for a plain ``yield``::

    yield read_wait(sock)       # park until sock is readable
    yield write_wait(sock)      # park until sock is writable
    yield readwrite_wait(sock)  # park until it is either

Everything else is wrapped in a small generator function and used with
``yield from`` (``yield from sleep(1)``), so the raw tuples stay private:
this module is the only place that builds one, and code outside the kernel
(sockets, HTTP, the database clients) waits only through these functions.
A primitive of its own parks in a :class:`~corofw.kernel.task.WaitQueue`
with :func:`park` and is woken by the queue's ``wake_one``/``wake_all``
(the kernel's ``reschedule``), which is all Event, Lock and Queue use.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from types import GeneratorType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .task import Task

T = TypeVar("T")

#: A coroutine: a generator that yields traps and returns a ``T``.
Coro = Generator[Any, Any, T]


class Op:
    """Names one kind of trap; compared by identity in the kernel."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<trap {self.name}>"


READ = Op("read_wait")
WRITE = Op("write_wait")
EITHER = Op("readwrite_wait")
SLEEP = Op("sleep")
SPAWN = Op("spawn")
CURRENT = Op("current_task")
PARK = Op("park")
THREAD = Op("run_in_thread")
CLOCK = Op("clock")

#: A trap as yielded: an :class:`Op` marker followed by its operands.
Trap = tuple[Any, ...]

#: What a trap handler returns when the task now waits (nothing to resume it with).
PARKED = object()


#: Traps without an argument, for a plain ``yield`` where a generator call
#: per use would cost (the server's and the client's per-request paths):
#: ``task = yield TASK`` is the running Task, ``now = yield NOW`` the
#: kernel's clock, ``yield RESCHEDULE`` lets the other ready tasks run first.
TASK: Trap = (CURRENT,)
NOW: Trap = (CLOCK,)
RESCHEDULE: Trap = (SLEEP, 0)


def read_wait(fd: Any) -> Trap:
    """Trap to ``yield``: park until ``fd`` (an int or an object with
    ``fileno()``) is readable. At most one task may wait to read an fd."""
    return (READ, fd)


def write_wait(fd: Any) -> Trap:
    """Trap to ``yield``: park until ``fd`` is writable. At most one task may
    wait to write an fd."""
    return (WRITE, fd)


def readwrite_wait(fd: Any) -> Trap:
    """Trap to ``yield``: park until ``fd`` is readable *or* writable,
    whichever comes first (the caller then tries both). For protocols that
    must keep reading while a write is stuck, such as libpq flushing a
    pipeline while the server sends results. The task holds both directions
    of the fd while it waits."""
    return (EITHER, fd)


def sleep(seconds: float) -> Coro[None]:
    """Suspend the calling task for ``seconds``; ``sleep(0)`` (or a negative
    ``seconds``) just lets every other ready task run once, and
    ``sleep(math.inf)`` waits until the task is cancelled. NaN raises
    ``ValueError`` in the caller."""
    yield (SLEEP, seconds)


def current_task() -> Coro[Task]:
    """Return the :class:`~corofw.kernel.task.Task` running this code."""
    task: Task = yield (CURRENT,)
    return task


def current_time() -> Coro[float]:
    """Return the kernel's clock (monotonic seconds; virtual under a
    :class:`~corofw.kernel.clock.VirtualClock`)."""
    now: float = yield (CLOCK,)
    return now


def spawn(coro: Coro[Any], name: str | None = None) -> Coro[Task]:
    """Start ``coro`` as a new task and return its Task at once.

    Join the task (``yield from task.join()``) or cancel it: a task that
    crashes and is never joined is logged with its traceback.
    """
    if type(coro) is not GeneratorType:
        hint = " (call the generator function)" if callable(coro) else ""
        raise TypeError(f"spawn() needs a generator object{hint}, got {coro!r}")
    task: Task = yield (SPAWN, coro, name)
    return task


def park(queue: Any) -> Coro[Any]:
    """Park the calling task in ``queue`` (a :class:`WaitQueue`) until a
    primitive wakes it; return the value it was woken with."""
    return (yield (PARK, queue))


def run_in_thread(fn: Callable[..., T], *args: Any) -> Coro[T]:
    """Call ``fn(*args)`` in the kernel's bounded thread pool and return its
    result (or raise its exception) without blocking the loop.

    Cancelling the waiting task abandons the result; the thread itself runs
    ``fn`` to the end, since Python threads cannot be interrupted.
    """
    result: T = yield (THREAD, fn, args)
    return result


def not_a_trap(trap: Any) -> TypeError:
    """The error thrown into a coroutine that yielded ``trap``, which is not
    a trap, saying what it most likely meant."""
    if isinstance(trap, GeneratorType):
        name = getattr(trap, "__qualname__", "generator")
        return TypeError(
            f"a coroutine yielded the generator {name}() instead of a trap; "
            f"did you forget `yield from`?"
        )
    if isinstance(trap, Op):
        return TypeError(
            f"a coroutine yielded {trap!r} on its own; traps are yielded with a plain "
            f"`yield {trap.name}(...)`, not `yield from`"
        )
    return TypeError(
        f"a coroutine yielded {trap!r}, which is not a corofw trap; yield from "
        f"corofw coroutines (sleep, recv, ...) or yield read_wait()/write_wait()"
    )
