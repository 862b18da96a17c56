"""Offloading blocking calls to a thread pool, and waking the loop from
other threads.

``run_in_thread`` hands a call to a bounded pool; the finished job is queued
and a byte on the kernel's wake-up socket makes ``epoll_wait`` return, so
the waiting task resumes in the loop thread with the result or exception.
The same socket carries signal wake-ups (``signal.set_wakeup_fd``).
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from . import traps
from .task import Task
from .traps import PARKED


class ThreadJob:
    """One ``run_in_thread`` call: its task (None once abandoned by a
    cancel), the call, and its outcome."""

    __slots__ = ("task", "fn", "args", "vars", "result", "error", "future")

    def __init__(self, task: Task, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.task: Task | None = task
        self.vars = task._vars.copy()  # the thread sees the task's context variables
        self.fn = fn
        self.args = args
        self.result: Any = None
        self.error: BaseException | None = None
        self.future: Future[None] | None = None


class ThreadOffload:
    """The thread traps of :class:`~corofw.kernel.loop.Kernel` (a mixin: it
    uses the kernel's pool size, wake-up socket and rescheduling)."""

    max_threads: int
    _pool: ThreadPoolExecutor | None
    _thread_jobs: set[ThreadJob]
    _thread_done: deque[ThreadJob]
    _wake_r: socket.socket
    _wake_w: socket.socket
    reschedule_error: Callable[[Task, BaseException], None]
    reschedule: Callable[[Task, Any], None]

    def _trap_thread(self, task: Task, trap: traps.Trap) -> Any:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_threads, thread_name_prefix="corofw")
        job = ThreadJob(task, trap[1], trap[2])
        self._thread_jobs.add(job)
        job.future = self._pool.submit(self._run_job, job)
        task._trap = (traps.THREAD, job)
        return PARKED

    def _run_job(self, job: ThreadJob) -> None:
        try:
            job.result = job.vars.run(job.fn, *job.args)
        except BaseException as error:
            job.error = error
        self._thread_done.append(job)
        self._wake_loop()

    def _undo_thread(self, task: Task, trap: traps.Trap) -> None:
        job = trap[1]
        job.task = None
        job.future.cancel()
        self._thread_jobs.discard(job)

    def _wake_loop(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake-up is already pending, or the kernel has closed

    def _drain_wake_socket(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        done = self._thread_done
        while done:
            job = done.popleft()
            self._thread_jobs.discard(job)
            task = job.task
            if task is None:
                continue
            task._trap = None
            if job.error is not None:
                self.reschedule_error(task, job.error)
            else:
                self.reschedule(task, job.result)
