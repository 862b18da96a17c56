"""A deadline for every request::

    routes.middleware(deadline_middleware(default=5.0))

Each request's handler runs inside a deadline: ``default`` seconds, or
less when the caller sends what is left of its own in the
``x-envoy-expected-rq-timeout-ms`` header (whole milliseconds, as a corofw
:class:`~corofw.http.upstream.Upstream` and Envoy send it). A header can
shorten the deadline, never lengthen it; a value that is not a whole
number of milliseconds is ignored. Everything the handler waits for
(outbound calls, queries, sleeps) is inside the deadline, and outbound
calls through an ``Upstream`` pass the rest of it on.

When the deadline passes, the handler's pending work is cancelled (its
``Cancelled.reason`` names the deadline) and the answer is a
``504 Gateway Timeout`` whose JSON body says which deadline passed::

    {"error": "deadline exceeded", "deadline": "request deadline of 2.5 s (from
     the x-envoy-expected-rq-timeout-ms header)", "timeout": 2.5}

Only producing the response is bounded: a streamed body, once started,
is sent at the client's pace.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..http.deadlines import DEADLINE_HEADER, parse_timeout
from ..http.messages import Request, Response
from ..kernel import Coro, move_on_after

_EXPIRED = object()


def deadline_middleware(default: float | None = 30.0, *, header: str | None = DEADLINE_HEADER,
                        status: int = 504) -> Callable[[Request, Any], Coro[Any]]:
    """A middleware (for :meth:`Router.middleware`) that runs each request's
    handler within a deadline of ``default`` seconds (None: none unless the
    caller sends one), lowered by the ``header`` the caller sends (None:
    headers are ignored). When it passes, the answer is ``status`` (504)
    with a JSON body naming the deadline."""
    if default is not None and (isinstance(default, bool)
                                or not isinstance(default, (int, float))
                                or not default > 0 or math.isnan(default)):
        raise ValueError(f"default must be a positive number of seconds or None, "
                         f"got {default!r}")
    name = header.lower() if header else None

    def deadline(request: Request, call_next: Any) -> Coro[Any]:
        seconds, source = default, "the server's default"
        asked = parse_timeout(request.headers.get(name)) if name else None
        if asked is not None and (seconds is None or asked < seconds):
            seconds, source = asked, f"the {name} header"
        if seconds is None or math.isinf(seconds):
            return (yield from call_next(request))
        response = yield from move_on_after(seconds, call_next(request), _EXPIRED)
        if response is not _EXPIRED:
            return response
        return Response.json({"error": "deadline exceeded",
                              "deadline": f"request deadline of {seconds:g} s (from {source})",
                              "timeout": seconds}, status=status)

    return deadline
