"""The kernel: generator coroutines scheduled on an epoll reactor."""

from .clock import VirtualClock
from .context import current_kernel
from .fdwait import forget_fd
from .gather import gather
from .introspect import dump_tasks, format_tasks
from .loop import Kernel, run, stats
from .settle import Outcome, TooFewSucceeded, first_k, gather_settled
from .signals import SignalCatcher, catch_signals
from .sync import Event, Lock, Queue, QueueEmpty, QueueFull, Semaphore
from .task import (
    BusyResourceError,
    Cancelled,
    ClosedResourceError,
    DeadlockError,
    Task,
    TaskTimeout,
    WaitQueue,
)
from .timeouts import current_deadline, move_on_after, timeout_after
from .traps import (
    Coro,
    current_task,
    current_time,
    park,
    read_wait,
    run_in_thread,
    sleep,
    spawn,
    write_wait,
)

__all__ = [
    "BusyResourceError", "Cancelled", "ClosedResourceError", "Coro", "DeadlockError",
    "Event", "Kernel", "Lock", "Outcome", "Queue", "QueueEmpty", "QueueFull", "Semaphore",
    "TooFewSucceeded", "first_k", "gather_settled",
    "SignalCatcher", "Task", "TaskTimeout", "VirtualClock", "WaitQueue", "catch_signals",
    "current_deadline", "current_kernel", "current_task", "current_time", "dump_tasks", "forget_fd",
    "format_tasks", "gather", "move_on_after", "park", "read_wait", "run",
    "run_in_thread", "sleep", "spawn", "stats", "timeout_after", "write_wait",
]
