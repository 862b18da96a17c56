"""The kernel: runs generator coroutines on an I/O reactor.

One tick of the loop:

1. Run every task that was ready when the tick began. A task runs until it
   yields a trap that must wait; traps that complete at once (spawn,
   current_task, ...) resume it immediately, in a loop, never by recursion.
2. Ask the reactor which fds are ready, sleeping inside ``epoll_wait`` for
   as long as the nearest timer allows (forever when there is none). This is
   where an idle server spends its time, using no CPU at all.
3. Make the tasks waiting on those fds ready, then fire the timers that are
   due.

The fd traps (:mod:`.fdwait`), the cancellation rules (:mod:`.cancel`),
signals (:mod:`.interrupts`) and threads (:mod:`.threads`) are mixins.

The internal API, for primitives built on the kernel (everything else
yields the traps of :mod:`.traps`): :meth:`Kernel.reschedule` and
:meth:`Kernel.reschedule_error` make a parked task ready (after it has
left whatever it waited in, e.g. a :class:`~corofw.kernel.task.WaitQueue`),
:meth:`~corofw.kernel.cancel.Cancellation.cancel` and
:meth:`~corofw.kernel.cancel.Cancellation.deliver_cancel` cancel it,
:meth:`Kernel.add_timer` calls a function later, and
:func:`~corofw.kernel.context.current_kernel` and
:func:`~corofw.kernel.context.running_task` find the kernel and the task
without a trap.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from contextvars import Context
from traceback import clear_frames
from types import GeneratorType
from typing import Any

from . import context, traps
from .cancel import Cancellation
from .costs import CURRENT_COST
from .fdwait import FdWaiters, FdWaits
from .interrupts import SignalRouting, abandon
from .introspect import any_task_alive, format_tasks, kernel_stats, live_tasks
from .reactor import ERROR_MASK, READABLE, WRITABLE, default_reactor
from .task import DONE, Cancelled, DeadlockError, Task, UnjoinedCrash
from .threads import ThreadJob, ThreadOffload
from .timers import Timers, check_duration
from .watchdog import Watchdog

log = logging.getLogger("corofw.kernel")

_PARKED = traps.PARKED
_SPAWN = traps.SPAWN
_MAX_POLL = 86400.0  # epoll and select overflow on far-away deadlines (sleep(inf))
_READ_EVENTS = READABLE | ERROR_MASK
_WRITE_EVENTS = WRITABLE | ERROR_MASK


class Kernel(FdWaits, Cancellation, SignalRouting, ThreadOffload):
    """Runs one main coroutine and every task it spawns, in this thread.

    Most programs call :func:`corofw.run`; build a Kernel directly to choose
    the ``clock`` (e.g. a :class:`~corofw.kernel.clock.VirtualClock`), the
    ``reactor`` or the thread pool size.
    """

    def __init__(self, clock: Callable[[], float] | None = None, reactor: Any = None,
                 max_threads: int | None = None, handle_signals: bool = True,
                 watchdog: float | None = 0.1) -> None:
        if watchdog is not None and not 0 <= watchdog < _MAX_POLL:
            raise ValueError(f"the watchdog threshold must be None or a number of seconds "
                             f"from 0 (off) to {_MAX_POLL:g}, got {watchdog!r}")
        self.clock: Callable[[], float] = clock or time.monotonic
        self.reactor = reactor or default_reactor()
        self.renew_reactor = False  # see fdwait.py: set when epoll may hold a stale entry
        self.max_threads = max_threads or min(32, (os.cpu_count() or 1) + 4)
        self.handle_signals = handle_signals
        # No set of every task (an insert and a removal each): a live task is
        # ready, running, or waits on an fd, a timer, a thread job or in a
        # wait queue (_parked: found nowhere else). `tasks` collects them.
        self._parked: set[Task] = set()
        self.current: Task | None = None
        self.main_task: Task | None = None
        self.timers = Timers()
        self.tick_started = self.clock()  # when this tick's tasks became ready; tasks' created
        self.ticks = 0
        self.steps = 0
        self.started = time.monotonic()
        self.watchdog_threshold = watchdog
        self.watchdog: Any = None
        self._cpu_clock: int | None = None
        self._cpu_started = 0.0
        self._io_waiters = 0
        self.fd_labels: dict[int, str] = {}  # see costs.label_fd
        self.metering = False  # see costs.start_metering
        self._ready: deque[Task] = deque()
        self._fds: dict[int, FdWaiters] = {}
        self._thread_jobs: set[ThreadJob] = set()
        self._thread_done: deque[ThreadJob] = deque()
        self._pool: Any = None
        self._signals: list[int] = []
        self._signal_watchers: list[Any] = []
        self._saved_signals: dict[int, Any] = {}
        self._default_signals: set[int] = set()
        self._interrupted: BaseException | None = None
        self._interrupts = 0
        self._saved_wakeup_fd: int | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_fd = self._wake_r.fileno()
        self.reactor.register(self._wake_fd, READABLE)
        self._autojump = getattr(self.clock, "autojump_threshold", None)
        self._handlers: dict[traps.Op, Callable[[Task, traps.Trap], Any]] = {
            traps.READ: self._trap_read,
            traps.WRITE: self._trap_write,
            traps.EITHER: self._trap_fd_either,
            traps.SLEEP: self._trap_sleep,
            traps.CURRENT: lambda task, trap: task,
            traps.PARK: self._trap_park,
            traps.THREAD: self._trap_thread,
            traps.CLOCK: lambda task, trap: self.clock(),
        }
        self._undoers: dict[traps.Op, Callable[[Task, traps.Trap], None]] = {
            traps.READ: self._undo_fd,
            traps.WRITE: self._undo_fd,
            traps.EITHER: self._undo_fd,
            traps.SLEEP: lambda task, trap: self.timers.cancel(trap[1]),
            traps.PARK: self._undo_park,
            traps.THREAD: self._undo_thread,
        }

    # -- running -----------------------------------------------------------

    def run(self, coro: Any, name: str = "main") -> Any:
        """Run ``coro`` to completion and return its value (or raise its
        exception). When it ends, every task still alive is cancelled and
        run to its end before this returns."""
        if not isinstance(coro, GeneratorType):
            self.close()
            raise TypeError(
                f"corofw.run() needs a generator object (call your generator function), "
                f"got {type(coro).__name__}"
            )
        try:
            context.enter(self)
        except RuntimeError:
            self.close()
            raise
        self._install_signals()
        self.started = time.monotonic()
        if hasattr(time, "pthread_getcpuclockid"):
            self._cpu_clock = time.pthread_getcpuclockid(threading.get_ident())
            self._cpu_started = time.clock_gettime(self._cpu_clock)
        if self.watchdog_threshold:
            self.watchdog = Watchdog(self, self.watchdog_threshold)
        try:
            self.tick_started = self.clock()
            main = self.main_task = self.spawn(coro, name)
            self._loop(lambda: main.state is DONE)
            self.cancel_all("the main task finished")
            self._loop(lambda: not any_task_alive(self))
            if self._signals:
                self._dispatch_signals()
            if self._interrupted is not None:
                main.exception()  # the interrupt wins over main's own outcome
                raise self._interrupted
            return main.result()
        finally:
            try:
                self.close()
            finally:
                context.leave()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run (after :meth:`run` returns)."""
        return self._wake_r.fileno() < 0

    def close(self) -> None:
        """Release the reactor, the wake-up socket and the thread pool.

        Tasks are only still alive here when the loop itself failed: each
        gets a Cancelled thrown in so its finally blocks run; one that tries
        to wait in there is closed, as no loop is left to resume it.
        """
        try:
            for task in self.tasks:
                abandon(task)
            self._parked.clear()
            self._ready.clear()
        finally:
            self._restore_signals()
            if self.watchdog is not None:
                self.watchdog.stop()
                self.watchdog = None
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
            if self._wake_r.fileno() >= 0:
                self._wake_r.close()
                self._wake_w.close()
            self.reactor.close()

    def spawn(self, coro: Any, name: str | None = None, parent: Task | None = None) -> Task:
        """Create a task for ``coro`` and make it ready (kernel-side spawn)."""
        if type(coro) is not GeneratorType and not isinstance(coro, GeneratorType):
            hint = " (call the generator function)" if callable(coro) else ""
            raise TypeError(f"spawn() needs a generator object{hint}, got {coro!r}")
        task = Task(self, coro, name, parent, self.tick_started)
        self._ready.append(task)
        return task

    def _loop(self, finished: Callable[[], bool]) -> None:
        ready = self._ready
        popleft = ready.popleft
        handlers = self._handlers
        fds = self._fds
        timers = self.timers
        poll = self.reactor.poll
        clock = self.clock
        wake_fd = self._wake_fd
        run_in = Context.run  # unbound methods: no bound method made per step
        send: Any = GeneratorType.send
        throw: Any = GeneratorType.throw
        while True:
            self.ticks += 1
            metering = self.metering
            n = len(ready)
            self.steps += n
            while n:
                n -= 1
                if not n & 255 and timers.heap and n:
                    n += self._fire_timers_early(clock())
                task = popleft()
                self.current = task
                value = task._result
                exc = task._error
                task._result = None
                if exc is not None:
                    task._error = None
                coro = task.coro
                variables = task._vars  # each step runs in the task's own context
                if metering:
                    resumed_cost = variables.get(CURRENT_COST)
                    if resumed_cost is not None:
                        resumed_cost.resumed(task, clock())
                while True:
                    try:
                        if exc is None:
                            trap = run_in(variables, send, coro, value)
                        else:
                            trap = run_in(variables, throw, coro, exc)
                            exc = None
                    except StopIteration as stop:
                        task.state = DONE  # _finish, for a task that returned
                        task._result = stop.value  # its _error is None: consumed above
                        if task._cancellation is not None:
                            task._cancellation = None  # a cancellation it caught: a cycle
                        if task._watchers is not None:
                            self._call_watchers(task)
                        break
                    except BaseException as error:
                        self._finish(task, None, error)
                        break
                    try:
                        op = trap[0]
                        if op is _SPAWN:  # spawning inline: the busiest trap that does not wait
                            value = Task(self, trap[1], trap[2], task, self.tick_started)
                            ready.append(value)
                            continue
                        value = handlers[op](task, trap)
                    except Exception as error:
                        exc = self._trap_error(trap, error)
                        value = None
                        continue
                    if value is _PARKED:
                        cancellation = task._cancellation
                        if cancellation is not None and cancellation.pending is not None:
                            self._deliver_pending(task)  # see cancel.py
                        break
                if metering:
                    cost = variables.get(CURRENT_COST)
                    if cost is not None:
                        cost.parked(task, clock())
                    if resumed_cost is not cost and resumed_cost is not None:
                        resumed_cost.paused(clock())  # set aside during the step
            self.current = None
            if finished():
                break
            if self.renew_reactor:
                poll = self._renew()
            if ready:
                timeout = 0.0
            else:
                deadline = timers.next_deadline()
                if deadline is None:
                    timeout = -1.0
                    if self._thread_jobs or self._signal_watchers or self._io_waiters:
                        pass
                    elif self._parked:  # then the only live tasks
                        self._report_deadlock()
                        continue
                else:
                    timeout = deadline - clock()
                    if timeout < 0:
                        timeout = 0.0
                    elif self._autojump is not None:
                        timeout = self._autojump_timeout(timeout, deadline)
                    if timeout > _MAX_POLL:
                        timeout = _MAX_POLL
            events = poll(timeout)
            for fd, mask in events:
                waiters = fds.get(fd)
                if waiters is None:
                    if fd == wake_fd:
                        self._drain_wake_socket()
                    else:
                        self.renew_reactor = True  # an entry left by a closed number
                    continue
                if mask & _READ_EVENTS:
                    reader = waiters.reader
                    if reader is not None:
                        waiters.reader = None
                        reader._trap = None
                        ready.append(reader)
                        self._io_waiters -= 1
                        if waiters.writer is reader:  # a readwrite_wait
                            waiters.writer = None
                            self._io_waiters -= 1
                    elif waiters.mask & READABLE or mask & ERROR_MASK and waiters.mask:
                        self._disarm(fd, waiters, READABLE)
                    else:
                        self.renew_reactor = True  # never asked for: a stale entry
                if mask & _WRITE_EVENTS:
                    writer = waiters.writer
                    if writer is not None:
                        waiters.writer = None
                        writer._trap = None
                        ready.append(writer)
                        self._io_waiters -= 1
                        if waiters.reader is writer:  # a readwrite_wait
                            waiters.reader = None
                            self._io_waiters -= 1
                    elif waiters.mask & WRITABLE or mask & ERROR_MASK and waiters.mask:
                        self._disarm(fd, waiters, WRITABLE)
                    else:
                        self.renew_reactor = True
            if self._signals:
                self._dispatch_signals()
            now = self.tick_started = clock()
            if timers.heap:
                timers.fire_due(now)

    def _fire_timers_early(self, now: float) -> int:
        """In a long batch of ready tasks, fire the timers already due and
        run their tasks next, ahead of the rest of the batch (a burst of
        work must not make every timer late); return how many were added."""
        heap = self.timers.heap
        if heap[0][0] > now:
            return 0
        ready = self._ready
        before = len(ready)
        self.timers.fire_due(now)
        added = len(ready) - before
        if added:
            ready.rotate(added)
        return added

    def _autojump_timeout(self, timeout: float, deadline: float) -> float:
        """Under a virtual clock, jump to ``deadline`` when nothing else can
        happen first; return the real timeout to poll with."""
        if self._thread_jobs:
            return min(timeout, 0.05)
        if deadline == float("inf"):
            return timeout  # "forever" is not a time to jump to
        if self._io_waiters and self.reactor.poll(self._autojump):
            return 0.0  # level-triggered: the loop's own poll sees these again
        self.clock.jump_to(deadline)  # type: ignore[attr-defined]
        return 0.0

    @property
    def tasks(self) -> set[Task]:
        """Every live task: spawned and not finished (a new set each time)."""
        return live_tasks(self)

    def stats(self) -> dict[str, Any]:
        """Counters for a dashboard or a debug route: tasks alive, ready
        queue length, fds registered and waited on, timers pending, thread
        jobs, loop ticks and steps, and how the kernel thread's time split
        between running tasks (CPU) and waiting (mostly in ``epoll_wait``)."""
        return kernel_stats(self)

    # -- finishing and rescheduling ----------------------------------------

    def _finish(self, task: Task, result: Any, error: BaseException | None) -> None:
        """``task`` has ended (the loop inlines this for a task that
        returned): record the outcome, hand an interrupt in a child to the
        main task, and call the done callbacks (joiners among them)."""
        task.state = DONE
        task._result = result
        task._error = error
        task._trap = None
        task._unjoined = None
        task._cancellation = None  # a cancellation kept there holds a traceback
        if error is None:
            pass
        elif isinstance(error, Cancelled):
            # A frame of the task often holds the task: its locals would make
            # task -> error -> traceback -> frame -> task a cycle, left to the
            # collector (a pause) for each cancelled task. The lines stay.
            clear_frames(error.__traceback__)
        elif isinstance(error, Exception) or task is self.main_task:
            task._unjoined = UnjoinedCrash(task.name, error)
        else:  # KeyboardInterrupt, SystemExit in a child: hand them to main
            main = self.main_task
            if main is not None and main.state is not DONE:
                self.cancel(main, error)
        if task._watchers is not None:
            self._call_watchers(task)

    def _call_watchers(self, task: Task) -> None:
        watchers = task._watchers
        task._watchers = None
        for fn in (watchers if type(watchers) is list else (watchers,)):
            try:
                fn(task)
            except Exception:
                log.exception("done callback %r of %r failed", fn, task)

    def reschedule(self, task: Task, value: Any = None) -> None:
        """Make the parked ``task`` ready; its trap returns ``value``. The
        caller has taken it out of whatever it waited in (a primitive pops
        it from its :class:`~corofw.kernel.task.WaitQueue` first)."""
        task._trap = None
        task._result = value
        self._parked.discard(task)
        self._ready.append(task)

    def reschedule_error(self, task: Task, exc: BaseException) -> None:
        """Make ``task`` ready; its trap raises ``exc``. As for
        :meth:`reschedule`, its wait must be over or undone already."""
        task._result = None
        task._error = exc
        self._ready.append(task)

    def _trap_error(self, trap: Any, error: Exception) -> Exception:
        if type(trap) is tuple and trap and isinstance(trap[0], traps.Op):
            return error
        return traps.not_a_trap(trap)

    # -- traps ---------------------------------------------------------------

    def _trap_sleep(self, task: Task, trap: traps.Trap) -> Any:
        seconds = trap[1]
        if not seconds > 0:
            check_duration(seconds, "sleep()")
            task._trap = None
            self._ready.append(task)
            return _PARKED
        entry = self.timers.add(self.clock() + seconds, self._sleep_over, task)
        task._trap = (traps.SLEEP, entry)
        return _PARKED

    def _sleep_over(self, task: Task) -> None:
        task._trap = None
        self._ready.append(task)

    def _trap_park(self, task: Task, trap: traps.Trap) -> Any:
        trap[1].append(task)
        task._trap = trap
        self._parked.add(task)
        return _PARKED

    def _undo_park(self, task: Task, trap: traps.Trap) -> None:
        self._parked.discard(task)
        try:
            trap[1].remove(task)
        except ValueError:
            pass

    # -- timeouts ----------------------------------------------------------

    def add_timer(self, delay: float, callback: Callable[[Any], None], arg: Any) -> list[Any]:
        """Call ``callback(arg)`` from the loop after ``delay`` seconds; pass
        the returned entry to :meth:`cancel_timer` to call it off. A negative
        delay is already due, an infinite one never is; NaN raises ValueError."""
        return self.timers.add(self.clock() + check_duration(delay, "add_timer()"),
                               callback, arg)

    def cancel_timer(self, entry: list[Any]) -> None:
        """Call off a timer from :meth:`add_timer`; O(1), and harmless if it
        has already fired or been cancelled."""
        self.timers.cancel(entry)

    # -- deadlock ----------------------------------------------------------

    def _report_deadlock(self) -> None:
        report = format_tasks(self)
        main = self.main_task
        error = DeadlockError(
            "deadlock: every task waits for something that nothing can wake\n" + report)
        if main is not None and main.state is not DONE:
            self.cancel(main, error)
        else:
            self.cancel_all("deadlock")


def run(coro: Any, *, clock: Callable[[], float] | None = None,
        watchdog: float | None = 0.1) -> Any:
    """Run the generator coroutine ``coro`` on a new kernel in this thread and
    return its value, or raise its exception.

    ``clock`` replaces the monotonic clock, e.g. with a
    :class:`~corofw.kernel.clock.VirtualClock` in tests. ``watchdog`` is the
    blocked-loop warning threshold in seconds (None or 0: no watchdog).
    """
    return Kernel(clock=clock, watchdog=watchdog).run(coro)


def stats() -> dict[str, Any]:
    """:meth:`Kernel.stats` of the kernel running in this thread."""
    kernel = context.current_kernel()
    if kernel is None:
        raise RuntimeError("no corofw kernel is running in this thread")
    return kernel.stats()
