"""The blocked-loop watchdog.

A coroutine that calls ``time.sleep`` or a blocking library stops every
other task: nothing else runs until it yields. The watchdog is a small
thread that looks at the kernel every ``threshold / 2`` seconds; when it
finds the same task still running in the same loop tick for longer than
``threshold``, it logs a warning with the task's name and the stack of the
kernel thread as it is right now, so the blocking line is named.

The kernel pays nothing per step for this: the watchdog only reads the
tick counter and the current task, which the loop keeps anyway.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from typing import Any

log = logging.getLogger("corofw.watchdog")


class Watchdog:
    """Watches ``kernel`` from a daemon thread; :meth:`stop` joins it."""

    def __init__(self, kernel: Any, threshold: float) -> None:
        self.kernel = kernel
        self.threshold = threshold
        self.warnings = 0
        self._thread_id = threading.get_ident()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="corofw-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and join the thread."""
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        kernel = self.kernel
        interval = self.threshold / 2
        seen: tuple[int, Any] | None = None
        since = 0.0
        warned: tuple[int, Any] | None = None
        while not self._stop.wait(interval):
            task = kernel.current
            if task is None:
                seen = None
                continue
            key = (kernel.ticks, task)
            now = time.monotonic()
            if key != seen:
                seen, since = key, now
            elif key != warned and now - since >= self.threshold:
                warned = key
                self._warn(task, now - since)

    def _warn(self, task: Any, elapsed: float) -> None:
        frame = sys._current_frames().get(self._thread_id)
        stack = _task_stack(frame) if frame else "(no frame)\n"
        where = ""
        if frame is not None:
            where = f" at {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        self.warnings += 1
        log.warning(
            "the event loop is blocked: task %s has run for over %.0f ms without yielding%s "
            "(a blocking call such as time.sleep or a blocking HTTP library? use "
            "`yield from sleep()`, the corofw Client, or run_in_thread)\n%s",
            task.name if task.context is None else f"{task.name} [{task.context!r}]",
            elapsed * 1000, where, stack)


def _task_stack(frame: Any) -> str:
    """The kernel thread's stack from the task's outermost frame inward (the
    kernel's own frames above it say nothing about the culprit)."""
    entries: list[traceback.FrameSummary] = list(traceback.extract_stack(frame))
    for i in range(len(entries) - 1, -1, -1):
        if entries[i].filename.endswith(("kernel/loop.py", "kernel\\loop.py")):
            entries = entries[i + 1:]
            break
    return "".join(traceback.format_list(entries[-12:]))
