"""What one piece of work cost: the time its tasks ran on the loop, and the
time they waited, split by what they waited on.

The server opens a :class:`Cost` for each request (with request costs on)
and puts it in the context variable :data:`CURRENT_COST` of the task that
serves it; tasks spawned from there copy their parent's context, so they
carry it too. Once :func:`start_metering` has been called (a server with
request costs on calls it), the kernel meters: at the start of each step
of a task that carries a Cost it calls :meth:`Cost.resumed`, at the end
:meth:`Cost.parked` (or :meth:`Cost.paused`, for a Cost the task set
aside during the step), and in between the task runs. What a parked task
waits on is named from its trap:

- ``client``: the socket of the request's own client;
- an fd named with :func:`label_fd` (``upstream HOST:PORT`` for the HTTP
  client's connections, ``postgresql HOST:PORT``, ``redis HOST:PORT``), or
  ``fd`` for any other;
- a primitive's ``wait_label`` (a pool, a Redis connection), ``tasks`` for a
  join or a gather, else the primitive's class name in lower case (``lock``,
  ``event``, ``queue``);
- ``sleep``, ``thread`` (a job run in a thread), and ``loop``: ready to run
  again but behind other tasks (a task that yielded its turn).

A wait lasts until the task runs again, so time spent in the ready queue
after the wake-up counts toward what woke it.

A :class:`Cost` made while another is current (say, to measure one part of
a request) charges that one too while it is current: the outer total still
counts everything, and the part's waits stay waits.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from . import traps
from .context import current_kernel

if TYPE_CHECKING:
    from .task import Task

#: The :class:`Cost` that the running task's work is charged to, if any.
CURRENT_COST: ContextVar[Cost | None] = ContextVar("corofw_cost", default=None)

_FD_OPS = (traps.READ, traps.WRITE, traps.EITHER)


class Cost:
    """The running total of one request's (or any work's) cost.

    ``cpu`` is the seconds its tasks have run on the loop thread, by the
    kernel's clock (a blocking call in a handler counts: it holds the loop).
    ``waits()`` maps what was waited on to seconds: for each name, the time
    during which at least one of its tasks waited on it, so ten calls to one
    host that run side by side for 1 s count 1 s, not 10 s. Both include
    what is under way when they are read. After :meth:`end` nothing more is
    charged. The totals may be read from any task or thread.
    """

    __slots__ = ("client_fd", "started", "ended", "_clock", "_cpu", "_since", "_running",
                 "_waits", "_waiting", "_open", "_outer")

    def __init__(self, clock: Callable[[], float], client_fd: int = -1) -> None:
        self.client_fd = client_fd
        self._clock = clock
        self.started = self._since = clock()
        self.ended: float | None = None
        self._cpu = 0.0
        self._running = True  # opened by the task that runs now
        self._waits: dict[str, float] = {}
        self._waiting: dict[Task, str] = {}
        self._open: dict[str, list[Any]] = {}  # name -> [tasks waiting, since]
        self._outer = CURRENT_COST.get()  # charged too while this one is current

    def __repr__(self) -> str:
        return f"<Cost {self.describe()}>"

    def describe(self) -> str:
        """``cpu 0.412 ms; waits: upstream api:80 1000.125 ms, client 0.021 ms``."""
        waits = ", ".join(f"{name} {seconds * 1000:.3f} ms"
                          for name, seconds in self.waits().items())
        return f"cpu {self.cpu * 1000:.3f} ms" + (f"; waits: {waits}" if waits else "")

    @property
    def cpu(self) -> float:
        """Seconds run on the loop so far."""
        if self._running and self.ended is None:
            return self._cpu + self._clock() - self._since
        return self._cpu

    def waits(self) -> dict[str, float]:
        """Seconds waited, by what was waited on, in the order first waited on."""
        waits = dict(self._waits)
        if self._open and self.ended is None:
            now = self._clock()
            # a copy: another thread may read while the loop opens and closes waits
            for name, (_, since) in list(self._open.items()):
                waits[name] = waits.get(name, 0.0) + now - since
        return waits

    def end(self) -> None:
        """Stop charging: close what runs and what waits now. Idempotent."""
        if self.ended is not None:
            return
        now = self.ended = self._clock()
        if self._running:
            self._cpu += now - self._since
            self._running = False
        waits = self._waits
        for name, (_, since) in self._open.items():
            waits[name] = waits.get(name, 0.0) + now - since
        self._open.clear()
        self._waiting.clear()

    # -- called by the kernel, for the tasks that carry this Cost ----------

    def resumed(self, task: Task, now: float) -> None:
        """``task`` starts a step: its wait, if it had one, is over."""
        if self._outer is not None:
            self._outer.resumed(task, now)
        if self.ended is not None:
            return
        self._since = now
        self._running = True
        name = self._waiting.pop(task, None)
        if name is not None:
            entry = self._open[name]
            entry[0] -= 1
            if not entry[0]:
                del self._open[name]
                self._waits[name] = self._waits.get(name, 0.0) + now - entry[1]

    def parked(self, task: Task, now: float) -> None:
        """``task`` ends a step: charge the step, and start its wait unless
        it has finished."""
        if self._outer is not None:
            self._outer.parked(task, now)
        if self.ended is not None:
            return
        if self._running:
            self._cpu += now - self._since
            self._running = False
        if task.done:
            return
        name = self.name_wait(task)
        self._waiting[task] = name
        entry = self._open.get(name)
        if entry is None:
            self._open[name] = [1, now]
            self._waits.setdefault(name, 0.0)  # kept in the order first waited on
        else:
            entry[0] += 1

    def paused(self, now: float) -> None:
        """The task that ran stopped carrying this Cost during its step:
        charge the step so far, and open no wait (what it waits on next is
        not this Cost's)."""
        if self._outer is not None:
            self._outer.paused(now)
        if self.ended is None and self._running:
            self._cpu += now - self._since
            self._running = False

    def name_wait(self, task: Task) -> str:
        """What the parked ``task`` waits on, named as the module says."""
        trap = task._trap
        if trap is None:
            return "loop"
        op = trap[0]
        if op in _FD_OPS:
            fd = trap[1]
            if type(fd) is not int:
                fd = fd.fileno()
            if fd == self.client_fd:
                return "client"
            return task.kernel.fd_labels.get(fd, "fd")
        if op is traps.SLEEP:
            return "sleep"
        if op is traps.THREAD:
            return "thread"
        if op is traps.PARK:
            owner = trap[1].owner
            name = getattr(owner, "wait_label", None)
            if type(name) is str:
                return name
            if isinstance(owner, str) or hasattr(owner, "join") and hasattr(owner, "coro"):
                return "tasks"  # a join, a gather, a settle
            return type(owner).__name__.lower()
        return op.name if isinstance(op, traps.Op) else "other"


def label_fd(fd: Any, label: str) -> None:
    """Name what a wait on ``fd`` (a number or an object with ``fileno()``)
    means in request costs, until the fd is closed through
    :func:`~corofw.kernel.fdwait.forget_fd` (as a corofw Socket's ``close``
    does) or named again. Does nothing outside a kernel."""
    kernel = current_kernel()
    if kernel is not None:
        kernel.fd_labels[fd if type(fd) is int else fd.fileno()] = label


def start_metering() -> None:
    """Make this thread's kernel call :class:`Cost` hooks from now on
    (a server with request costs on calls it when it starts). Until then,
    and with no Cost in a task's context, metering costs one test per step."""
    kernel = current_kernel()
    if kernel is not None:
        kernel.metering = True
