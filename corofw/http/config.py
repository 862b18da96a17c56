"""The timeouts and limits of a :class:`~corofw.http.server.Server`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .parser import DEFAULT_LIMITS, Limits

#: the watchdog threshold must be below a day, the kernel's longest wait
MAX_WATCHDOG = 86400.0
ACCESS_LOG_FORMATS = ("text", "json")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass
class ServerConfig:
    """Timeouts (seconds) and limits of a server; every one has a default
    that suits a server facing the internet behind a proxy.

    ``keep_alive_timeout``: how long a connection may sit idle between
    requests. ``header_timeout``: the whole head of a request must arrive
    within it. ``body_timeout``: an idle timeout, restarted by every piece
    of the body that arrives (nginx's ``client_body_timeout``); a body has
    no total time limit, only a size limit (``limits.max_body_bytes``).
    Once a request is read these timers stop: a handler, and a streamed
    response, take as long as they take. ``send_timeout``: a response is
    abandoned when its client reads nothing for that long.
    ``graceful_timeout``: what requests in flight get to finish on
    shutdown. ``max_connections``: open connections; at the limit a new
    client takes the place of an idle one, or gets a 503. ``watchdog``:
    warn when one step of a task blocks the loop longer than this many
    seconds (below ``MAX_WATCHDOG``); None or 0 is off.
    ``access_log``: one line per response to the ``corofw.access`` logger,
    as ``access_log_format``, "text" or "json" (see docs/logging.md).
    ``request_id_header``: the request header a request's id is taken from
    (when valid) and the response header it is echoed in; None takes no id
    from clients and echoes none (ids are then always made by the server).
    ``request_costs``: meter what each request costs (the time its tasks
    run on the loop and what they wait on, see :mod:`corofw.kernel.costs`),
    for ``request.cost``, the access log and the metrics.
    """

    limits: Limits = field(default_factory=lambda: DEFAULT_LIMITS)
    keep_alive_timeout: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    send_timeout: float = 30.0
    graceful_timeout: float = 10.0
    max_connections: int = 10000
    access_log: bool = True
    access_log_format: str = "text"  # "text" (nginx-like) or "json" (one object per line)
    request_id_header: str | None = "x-request-id"  # None: take no id from clients, echo none
    watchdog: float | None = 0.1  # blocked-loop warning threshold in seconds; None: off
    request_costs: bool = False

    def __post_init__(self) -> None:
        """Refuse values the server cannot run with (NaN, infinity, negative
        or zero timeouts) here, with a ``ValueError`` naming the setting,
        rather than at the first connection."""
        for name in ("keep_alive_timeout", "header_timeout", "body_timeout", "send_timeout"):
            _check_seconds(name, getattr(self, name), 0.0, inclusive=False)
        _check_seconds("graceful_timeout", self.graceful_timeout, 0.0, inclusive=True)
        if self.watchdog is not None:
            _check_seconds("watchdog", self.watchdog, 0.0, inclusive=True)
            if self.watchdog >= MAX_WATCHDOG:
                raise ValueError(f"watchdog must be below {MAX_WATCHDOG:g} seconds (a day), "
                                 f"not {self.watchdog!r}")
        if self.access_log_format not in ACCESS_LOG_FORMATS:
            raise ValueError(f"access_log_format must be one of {', '.join(ACCESS_LOG_FORMATS)}, "
                             f"not {self.access_log_format!r}")
        header = self.request_id_header
        if header is not None and (type(header) is not str or not _TOKEN.fullmatch(header)):
            raise ValueError(f"request_id_header must be a header name or None, not {header!r}")
        if type(self.max_connections) is not int or self.max_connections < 1:
            raise ValueError(f"max_connections must be a whole number >= 1, "
                             f"not {self.max_connections!r}")


def _check_seconds(name: str, value: Any, minimum: float, inclusive: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and (value >= minimum if inclusive else value > minimum)
    if not ok:
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, not {value!r}")
