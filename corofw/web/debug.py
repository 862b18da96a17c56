"""An opt-in debug router: the live task tree and the kernel's counters.

Never mounted by default. An app that wants it mounts it explicitly, behind
whatever protection its deployment needs::

    routes.mount("/_debug", debug_routes())

``GET /_debug/tasks`` answers the task dump as text (every live task, its
parent, age, what it waits for and the chain of frames where it is
suspended); ``GET /_debug/stats`` answers the counters as JSON.
"""

from __future__ import annotations

from typing import Any

from ..http.messages import Request, Response
from ..kernel.context import current_kernel
from ..kernel.introspect import format_tasks
from .router import Router


def debug_routes() -> Router:
    """A fresh :class:`Router` with ``/tasks`` and ``/stats``."""
    routes = Router()

    @routes.get("/tasks")
    def tasks(request: Request) -> Response:
        return Response.text(format_tasks())

    @routes.get("/stats")
    def stats(request: Request) -> dict[str, Any]:
        kernel = current_kernel()
        return {} if kernel is None else kernel.stats()

    return routes
