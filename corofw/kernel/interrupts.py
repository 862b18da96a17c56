"""Signals as the kernel sees them: the handlers it installs, routing to
:class:`~corofw.kernel.signals.SignalCatcher`, and the default actions.

With no catcher, SIGINT raises ``KeyboardInterrupt`` and SIGTERM
``SystemExit(143)`` in the main task, and SIGUSR1 prints the task dump.
Once the main task has ended, ``run()`` cancels the other tasks and waits
for them: a first interrupt cancels them again, a further one abandons
those still running (named in an error log) so that Ctrl-C can always
stop a program.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from .introspect import format_tasks
from .task import DONE, Cancelled

log = logging.getLogger("corofw.kernel")


class SignalRouting:
    """The signal handling of :class:`~corofw.kernel.loop.Kernel` (a mixin:
    it uses the kernel's tasks, wake-up socket and cancellation)."""

    handle_signals: bool
    main_task: Any
    _signals: list[int]
    _signal_watchers: list[Any]
    _saved_signals: dict[int, Any]
    _default_signals: set[int]
    _interrupted: BaseException | None
    _interrupts: int
    _saved_wakeup_fd: int | None
    _wake_w: Any
    _ready: Any
    _undoers: dict[Any, Any]
    cancel: Any
    cancel_all: Any
    _finish: Any

    if TYPE_CHECKING:
        @property
        def tasks(self) -> set[Any]: ...

    def _install_signals(self) -> None:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return
        self._saved_wakeup_fd = signal.set_wakeup_fd(self._wake_w.fileno(),
                                                     warn_on_full_buffer=False)
        wanted = [signal.SIGINT, signal.SIGTERM]
        if hasattr(signal, "SIGUSR1"):
            wanted.append(signal.SIGUSR1)
        for signum in wanted:
            old = signal.getsignal(signum)
            if old in (signal.SIG_DFL, signal.default_int_handler):
                self._saved_signals[signum] = old
                self._default_signals.add(signum)
                signal.signal(signum, self._on_signal)

    def _restore_signals(self) -> None:
        for signum, old in self._saved_signals.items():
            signal.signal(signum, old)
        self._saved_signals.clear()
        self._default_signals.clear()
        if self._saved_wakeup_fd is not None:
            signal.set_wakeup_fd(self._saved_wakeup_fd)
            self._saved_wakeup_fd = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)

    def watch_signals(self, watcher: Any) -> None:
        """Route ``watcher.signals`` to ``watcher`` (installing the kernel's
        handler even where the signal was ignored, e.g. SIGINT in a
        background job: a catcher means the program wants it)."""
        if self._saved_wakeup_fd is not None:
            for signum in watcher.signals:
                if signum not in self._saved_signals:
                    self._saved_signals[signum] = signal.getsignal(signum)
                    signal.signal(signum, self._on_signal)
        self._signal_watchers.append(watcher)

    def unwatch_signals(self, watcher: Any) -> None:
        """Stop routing to ``watcher``; a signal the kernel took only for
        catchers gets its previous handler back when the last one leaves."""
        self._signal_watchers.remove(watcher)
        for signum in watcher.signals:
            if signum in self._saved_signals and signum not in self._default_signals \
                    and not any(signum in w.signals for w in self._signal_watchers):
                signal.signal(signum, self._saved_signals.pop(signum))

    def _dispatch_signals(self) -> None:
        pending, self._signals = self._signals, []
        for signum in pending:
            for watcher in reversed(self._signal_watchers):
                if signum in watcher.signals:
                    watcher._deliver(signum)
                    break
            else:
                self._default_signal(signum)

    def _default_signal(self, signum: int) -> None:
        """SIGINT and SIGTERM with no catcher: KeyboardInterrupt or
        SystemExit(143) in the main task. Once main has ended, run() cancels
        the other tasks and waits for them: a first interrupt then cancels
        them again and run() raises it when they are done; a further one
        abandons those still running (say, a task that catches Cancelled
        and carries on), and run() raises the interrupt at once."""
        if signum == getattr(signal, "SIGUSR1", None):
            sys.stderr.write(format_tasks(self))
            sys.stderr.flush()
            return
        if signum == signal.SIGINT:
            exc: BaseException = KeyboardInterrupt()
        elif signum == signal.SIGTERM:
            exc = SystemExit(128 + signum)
        else:
            return  # it arrived for a catcher that has just left
        self._interrupts += 1
        name = signal.Signals(signum).name
        main = self.main_task
        if main is not None and main.state is not DONE:
            self.cancel(main, exc)
        elif self._interrupts == 1:
            # Main has ended and the others are cleaning up: cut that short
            # and let run() raise the interrupt once they have finished.
            self._interrupted = exc
            self.cancel_all(f"interrupted by {name}")
        else:
            if self._interrupted is None:
                self._interrupted = exc
            self._abandon_stubborn(f"{name} again during shutdown")

    def _abandon_stubborn(self, why: str) -> None:
        """Stop waiting for the tasks still alive after shutdown cancelled
        them (they caught Cancelled and carried on, or their clean-up waits
        too long): name them in an error log with the task dump, close each
        where it waits (``GeneratorExit`` runs its finally blocks, which can
        no longer wait), and let run() end."""
        stubborn = sorted(self.tasks, key=lambda t: t.id)
        if not stubborn:
            return
        names = ", ".join(f"task {t.id} {t.name!r}" for t in stubborn)
        log.error("%s: abandoning %d task(s) that did not finish after being cancelled: %s\n%s",
                  why, len(stubborn), names, format_tasks(self))
        for task in stubborn:
            trap = task._trap
            if trap is not None:
                self._undoers[trap[0]](task, trap)
                task._trap = None
        for task in stubborn:
            try:
                task.coro.close()
            except RuntimeError:
                log.error("task %d %r ignored GeneratorExit and was left suspended",
                          task.id, task.name)
            except Exception:
                log.exception("task %d %r failed while it was being abandoned",
                              task.id, task.name)
            self._finish(task, None, Cancelled(f"abandoned: {why}"))
        alive = [task for task in self._ready if task.state is not DONE]
        self._ready.clear()
        self._ready.extend(alive)


def abandon(task: Any) -> None:
    """Throw a Cancelled into ``task`` with no loop left to run it, so its
    finally blocks run; close it if it tries to wait in there."""
    coro = task.coro
    try:
        coro.throw(Cancelled("the kernel stopped"))
    except BaseException:
        return  # it finished, one way or another
    try:
        coro.close()
    except RuntimeError:
        pass  # "generator ignored GeneratorExit": nothing more can be done
