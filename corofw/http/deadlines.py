"""Request deadlines that travel: what is left of the running task's
deadline, carried to the next service in a header.

A task's deadline is the kernel's effective deadline
(:func:`corofw.current_deadline`): the earliest of the timeout scopes it
runs in (``timeout_after``, ``move_on_after``, the server's per-request
deadline from :func:`corofw.web.deadline.deadline_middleware`), including
its caller's for a task that ``gather`` (or ``gather_settled``,
``first_k``) waits for, since it is cancelled with its caller.

On the wire the remaining time is Envoy's ``x-envoy-expected-rq-timeout-ms``
header: whole milliseconds, rounded down. Envoy sets the same header on
the requests it forwards, so a service behind an Envoy proxy receives its
deadline the same way as from a corofw caller. Rounding down promises the
next service a little less than is left, never more: it gives up first,
and its answer (a 504) still arrives in time to be used.
"""

from __future__ import annotations

import math
import re

from ..kernel import current_kernel
from ..kernel.cancel import effective_deadline

#: The header that carries the caller's remaining time, in milliseconds.
DEADLINE_HEADER = "x-envoy-expected-rq-timeout-ms"
_MILLIS = re.compile(r"[0-9]{1,12}")


def deadline_now() -> float | None:
    """The running task's deadline on the kernel clock, read without
    yielding (``yield from current_deadline()`` is the coroutine form);
    None outside a task or when it has none."""
    kernel = current_kernel()
    task = kernel.current if kernel is not None else None
    return effective_deadline(task) if task is not None else None


def time_left(deadline: float | None = None) -> float | None:
    """Seconds until ``deadline`` (a kernel-clock time; default: the running
    task's deadline), zero or less once it has passed; None when there is
    none, or no kernel runs."""
    if deadline is None:
        deadline = deadline_now()
    kernel = current_kernel()
    if deadline is None or kernel is None:
        return None
    return deadline - kernel.clock()


def format_timeout(seconds: float) -> str:
    """``seconds`` as the header's value: whole milliseconds, rounded down,
    never negative."""
    return str(max(0, math.floor(seconds * 1000)))


def parse_timeout(value: str | None) -> float | None:
    """The seconds a header value asks for; None when it is missing or is
    not a whole number of milliseconds (1 to 12 ASCII digits), which a
    server ignores, as Envoy does."""
    if value is None:
        return None
    value = value.strip()
    if not _MILLIS.fullmatch(value):
        return None
    return int(value) / 1000
