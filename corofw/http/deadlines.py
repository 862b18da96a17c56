"""Request deadlines that travel: read the running task's deadline, and
carry what is left of it to the next service in a header.

A task's deadline is the earliest of the timeout scopes it runs in
(``timeout_after``, ``move_on_after``, the server's per-request deadline
from :func:`corofw.web.deadline.deadline_middleware`), including the scopes
of the tasks that started it: a call made inside ``gather`` is bounded by
the deadline of the handler that gathered it, since that handler's
cancellation cancels the call too.

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
from typing import Any

from ..kernel import current_kernel

#: The header that carries the caller's remaining time, in milliseconds.
DEADLINE_HEADER = "x-envoy-expected-rq-timeout-ms"
_MILLIS = re.compile(r"[0-9]{1,12}")


def deadline_of(task: Any) -> float | None:
    """The earliest deadline (a time on the kernel's clock) of the timeout
    scopes ``task`` and the tasks that started it run in; None when there
    is none."""
    earliest = math.inf
    while task is not None:
        for scope in task._scopes or ():
            when = _when(scope)
            if when is not None and when < earliest:
                earliest = when
        task = task.parent
    return None if earliest == math.inf else earliest


def _when(scope: Any) -> float | None:
    """A scope's deadline: ``when`` (None while a movable deadline is not
    armed), or ``deadline`` on a timeout scope of the earlier kernel."""
    when = getattr(scope, "when", None)
    return getattr(scope, "deadline", None) if when is None else when


def current_deadline() -> float | None:
    """The running task's deadline (see :func:`deadline_of`); None outside
    a task or when it has none."""
    kernel = current_kernel()
    task = kernel.current if kernel is not None else None
    return deadline_of(task) if task is not None else None


def time_left() -> float | None:
    """Seconds until the running task's deadline (zero or less once it has
    passed); None when it has none."""
    kernel = current_kernel()
    task = kernel.current if kernel is not None else None
    if task is None:
        return None
    deadline = deadline_of(task)
    return None if deadline is None else deadline - kernel.clock()  # type: ignore[union-attr]


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
