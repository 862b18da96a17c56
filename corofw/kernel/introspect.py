"""See where every task is suspended.

A suspended generator keeps its whole call chain inspectable: its frame
(``gi_frame``) and the generator it delegates to (``gi_yieldfrom``), down to
the innermost one that yielded the trap. :func:`format_tasks` prints that
chain for every live task, with what it waits for.
"""

from __future__ import annotations

import linecache
import sys
import time
from typing import Any

from . import traps
from .context import current_kernel
from .costs import CURRENT_COST


def coro_frames(coro: Any) -> list[tuple[str, int, str]]:
    """``(filename, line, function)`` for each generator in the ``yield
    from`` chain of ``coro``, outermost first."""
    frames = []
    while coro is not None:
        frame = getattr(coro, "gi_frame", None)
        if frame is None:
            break
        frames.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        coro = getattr(coro, "gi_yieldfrom", None)
    return frames


def describe_wait(task: Any, now: float) -> str:
    """What ``task`` is waiting for, in words: the fd and direction, the
    timer and when it fires, the primitive (Event, Lock, Queue, ...), the
    task being joined, or the function running in a thread."""
    trap = task._trap
    kernel = task.kernel
    if trap is None:
        return "running" if task is kernel.current else "ready to run"
    op = trap[0]
    if op is traps.READ:
        return f"read_wait(fd={trap[1]}): waiting for the fd to become readable"
    if op is traps.WRITE:
        return f"write_wait(fd={trap[1]}): waiting for the fd to become writable"
    if op is traps.SLEEP:
        return f"sleep: timer fires in {trap[1][0] - now:.3f} s"
    if op is traps.THREAD:
        fn = trap[1].fn
        return f"run_in_thread({getattr(fn, '__qualname__', fn)!s})"
    if op is traps.PARK:
        owner = trap[1].owner
        if isinstance(owner, str):
            return owner
        if hasattr(owner, "join") and hasattr(owner, "coro"):
            return f"join(task {owner.id} {owner.name!r})"
        return repr(owner)
    return repr(op)


def task_info(task: Any, now: float) -> dict[str, Any]:
    """One task as plain data: id, name, what it serves (context), parent,
    age, wait, deadlines, pending cancellation, frames, and the cost so far
    of the work it serves (on the task that began it, with request costs
    on)."""
    cancellation = task._cancellation
    cost = task._vars.get(CURRENT_COST)
    if cost is not None and (cost.ended is not None or task.parent is not None
                             and task.parent._vars.get(CURRENT_COST) is cost):
        cost = None
    return {
        "id": task.id,
        "name": task.name,
        "context": None if task.context is None else repr(task.context),
        "parent": task.parent.id if task.parent is not None else None,
        "age": now - task.created,
        "waiting_for": describe_wait(task, now),
        "deadlines": [f"{s!r}: deadline in {s.when - now:.3f} s"
                      for s in (cancellation.scopes if cancellation else ()) if s.when is not None],
        "pending_cancel": repr(cancellation.pending) if cancellation and cancellation.pending
        else None,
        "frames": coro_frames(task.coro),
        "cost": None if cost is None else cost.describe(),
    }


def live_tasks(kernel: Any) -> set[Any]:
    """What :attr:`Kernel.tasks <corofw.kernel.loop.Kernel.tasks>` returns:
    every live task, found where it is (the kernel keeps no set of them)."""
    tasks: set[Any] = set(kernel._ready)
    tasks.update(kernel._parked)
    tasks.add(kernel.current)
    for waiters in kernel._fds.values():
        tasks.add(waiters.reader)
        tasks.add(waiters.writer)
    sleep_over = kernel._sleep_over
    tasks.update(entry[3] for entry in kernel.timers.heap if entry[2] == sleep_over)
    tasks.update(job.task for job in kernel._thread_jobs)
    tasks.discard(None)
    return tasks


def any_task_alive(kernel: Any) -> bool:
    """True while ``kernel`` has a task that has not finished (cheaper than
    collecting them: the usual answer comes from counters)."""
    if kernel._ready or kernel._parked or kernel._io_waiters or kernel._thread_jobs:
        return True
    sleep_over = kernel._sleep_over
    return any(entry[2] == sleep_over for entry in kernel.timers.heap)


def kernel_stats(kernel: Any) -> dict[str, Any]:
    """What :meth:`Kernel.stats <corofw.kernel.loop.Kernel.stats>` returns."""
    wall = time.monotonic() - kernel.started
    cpu = None
    if kernel._cpu_clock is not None:
        try:
            cpu = time.clock_gettime(kernel._cpu_clock) - kernel._cpu_started
        except OSError:
            cpu = None
    return {
        "tasks": len(kernel.tasks),
        "ready": len(kernel._ready),
        "fds_registered": sum(1 for waiters in kernel._fds.values() if waiters.mask),
        "fds_waited_on": kernel._io_waiters,
        "timers": len(kernel.timers),
        "thread_jobs": len(kernel._thread_jobs),
        "ticks": kernel.ticks,
        "steps": kernel.steps,
        "uptime_s": round(wall, 3),
        "cpu_s": None if cpu is None else round(cpu, 3),
        "busy_fraction": None if cpu is None or wall <= 0 else round(min(cpu / wall, 1.0), 4),
        "reactor": kernel.reactor.name,
        "watchdog_warnings": kernel.watchdog.warnings if kernel.watchdog else 0,
    }


def format_tasks(kernel: Any = None) -> str:
    """Every live task of ``kernel`` (default: this thread's) as a tree by
    parent, each with its age, what it waits for, its deadlines and the
    chain of frames where it is suspended."""
    if kernel is None:
        kernel = current_kernel()
        if kernel is None:
            return "no corofw kernel is running in this thread\n"
    now = kernel.clock()
    tasks = sorted(kernel.tasks, key=lambda t: t.id)
    live = {t.id for t in tasks}
    children: dict[Any, list[Any]] = {}
    for task in tasks:
        parent = task.parent.id if task.parent is not None and task.parent.id in live else None
        children.setdefault(parent, []).append(task)
    stats = kernel.stats()
    lines = [f"{len(tasks)} live task(s); {stats['ready']} ready, {stats['fds_waited_on']} "
             f"waiting on fds, {stats['timers']} timer(s), {stats['thread_jobs']} thread job(s); "
             f"loop ticks {stats['ticks']}, busy {_percent(stats['busy_fraction'])}"]

    def walk(task: Any, depth: int) -> None:
        info = task_info(task, now)
        pad = "  " * depth
        serving = f" serving {info['context']}" if info["context"] else ""
        lines.append(f"{pad}- task {info['id']} {info['name']!r}{serving}, age {info['age']:.3f} s")
        lines.append(f"{pad}    waiting for: {info['waiting_for']}")
        for deadline in info["deadlines"]:
            lines.append(f"{pad}    deadline {deadline}")
        if info["pending_cancel"]:
            lines.append(f"{pad}    cancel pending: {info['pending_cancel']}")
        if info["cost"]:
            lines.append(f"{pad}    cost so far: {info['cost']}")
        for filename, line, function in info["frames"]:
            source = linecache.getline(filename, line).strip()
            lines.append(f"{pad}    {filename}:{line} in {function}"
                         + (f": {source}" if source else ""))
        for child in children.get(task.id, ()):
            walk(child, depth + 1)

    for root in children.get(None, ()):
        walk(root, 0)
    return "\n".join(lines) + "\n"


def _percent(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{fraction * 100:.1f}% of the time"


def dump_tasks(file: Any = None) -> None:
    """Print :func:`format_tasks` for this thread's kernel (to stderr)."""
    out = file or sys.stderr
    out.write(format_tasks())
    out.flush()
