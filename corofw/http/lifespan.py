"""An app's life around its requests: start-up, background tasks, shutdown.

The server runs the app's optional ``startup()`` coroutine inside the
kernel before it accepts the first connection, and its optional
``shutdown()`` once the last request and background task have finished; a
:class:`~corofw.web.Router` runs its ``on_startup`` and ``on_shutdown``
hooks there. A start-up that fails stops the server with a
:class:`StartupError`, whose message is one line saying what failed and
where. :class:`BackgroundTasks` runs what handlers hand to
``request.background()`` once their responses are sent, and lets a graceful
shutdown wait for it.
"""

from __future__ import annotations

import logging
import os
import traceback
from types import GeneratorType
from typing import Any

from ..kernel import Cancelled, Event, Task, current_kernel, move_on_after
from ..kernel.traps import Coro
from .messages import BACKGROUND_STATE_KEY, Request

log = logging.getLogger("corofw.server")

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class StartupError(RuntimeError):
    """The server could not start: the app's start-up failed, or (with
    several workers) the workers failed before serving. ``str()`` is a
    one-line reason."""


def failure_line(what: str, exc: BaseException) -> str:
    """``what`` failed, in one line: the exception, and the file and line
    of the app's code that raised it (the innermost frame outside corofw)."""
    message = " ".join(str(exc).split())
    text = f"{what} failed: {type(exc).__name__}" + (f": {message}" if message else "")
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if not os.path.abspath(frame.filename).startswith(_PACKAGE)]
    if frames:
        text += f" ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno})"
    return text


def start_app(app: Any) -> Coro[None]:
    """Run ``app.startup()`` if the app has one; any failure becomes a
    :class:`StartupError` (the traceback is logged at debug level)."""
    startup = getattr(app, "startup", None)
    if startup is None:
        return
    try:
        result = startup()
        if isinstance(result, GeneratorType):
            yield from result
    except StartupError:
        raise
    except Exception as exc:
        log.debug("start-up failed", exc_info=True)
        raise StartupError(failure_line("start-up", exc)) from exc


def stop_app(app: Any) -> Coro[None]:
    """Run ``app.shutdown()`` if the app has one; a failure is logged."""
    shutdown = getattr(app, "shutdown", None)
    if shutdown is None:
        return
    try:
        result = shutdown()
        if isinstance(result, GeneratorType):
            yield from result
    except Exception:
        log.exception("shutdown failed")


class BackgroundTasks:
    """The tasks handlers started to run after their responses. They are
    children of ``owner`` (the task serving the app), not of a connection:
    they outlive it, and no client's leaving cancels them. A task that
    fails is logged with its traceback."""

    def __init__(self) -> None:
        self.running: set[Task] = set()
        self.owner: Task | None = None
        self._none_running = Event()
        self._none_running.set()

    def start_for(self, request: Request) -> None:
        """Start the coroutines ``request.background()`` was given, if any."""
        coros = request.state.pop(BACKGROUND_STATE_KEY, None)
        if not coros:
            return
        kernel = current_kernel()
        assert kernel is not None, "background tasks start in the server's kernel"
        for coro in coros:
            name = f"background {getattr(coro, '__name__', 'task')} after " \
                   f"{request.method} {request.path}"
            task = kernel.spawn(coro, name, self.owner)
            self.running.add(task)
            self._none_running.clear()
            task.add_done_callback(self._finished)

    def _finished(self, task: Task) -> None:
        self.running.discard(task)
        error = task.exception()
        if error is not None and not isinstance(error, Cancelled):
            log.error("%s failed", task.name, exc_info=(type(error), error, error.__traceback__))
        if not self.running:
            self._none_running.set()

    def wait(self, seconds: float) -> Coro[bool]:
        """Wait up to ``seconds`` for every task to finish; True if they have."""
        if self.running:
            yield from move_on_after(seconds, self._none_running.wait())
        return not self.running

    def cancel(self, reason: str) -> None:
        """Cancel every task still running."""
        for task in list(self.running):
            task.cancel(reason)

    def finish(self) -> Coro[None]:
        """Wait for every task to have ended (after :meth:`cancel`)."""
        while self.running:
            yield from self._none_running.wait()


def drop_background(request: Request) -> None:
    """Forget the background coroutines of a request whose handler failed
    or was cancelled: they never run (each is closed unstarted)."""
    state = request._state
    coros = state.pop(BACKGROUND_STATE_KEY, None) if state is not None else None
    for coro in coros or ():
        coro.close()
