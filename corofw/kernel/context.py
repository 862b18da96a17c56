"""Which kernel runs in this thread, and which of its tasks runs right now.

A kernel is bound to the thread that calls its ``run()``; code that is not
handed the kernel (a client's default pool, the debug routes, ``forget_fd``)
finds it here. This module imports nothing of the kernel at run time, so
every other kernel module may import it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loop import Kernel
    from .task import Task


class _RunContext(threading.local):
    kernel: Kernel | None = None


_run_context = _RunContext()


def current_kernel() -> Kernel | None:
    """The kernel running in this thread, or None."""
    return _run_context.kernel


def running_task() -> Task | None:
    """The task whose code is running right now in this thread, or None
    (outside any kernel, or in the kernel's own code between tasks). A
    coroutine may call it instead of ``yield from current_task()`` when it
    must not yield."""
    kernel = _run_context.kernel
    return None if kernel is None else kernel.current


def enter(kernel: Kernel) -> None:
    """Bind ``kernel`` to this thread (``Kernel.run`` does this); raise
    RuntimeError if another one is already running here."""
    if _run_context.kernel is not None:
        raise RuntimeError("a corofw kernel is already running in this thread")
    _run_context.kernel = kernel


def leave() -> None:
    """Unbind this thread's kernel."""
    _run_context.kernel = None
