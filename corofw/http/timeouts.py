"""The outbound client's timeouts: how long each phase of a call may take.

A :class:`Timeout` is given to a :class:`~corofw.http.client.Client` (the
default of every call) or to one call. The exchange arms one deadline per
phase as it waits (see :mod:`corofw.http.exchange`); when it passes, the
call fails with the phase's :class:`~corofw.http.client_errors.ClientTimeout`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

PHASES = ("connect", "read", "write", "pool", "total")


@dataclass(frozen=True)
class Timeout:
    """Seconds allowed per phase (None or ``inf``: no limit). ``connect``
    covers opening the connection (TLS included), ``pool`` the wait for a
    free connection slot, ``read`` the longest silence while waiting for
    the response, ``write`` the longest stall while sending the request;
    ``total`` bounds the whole call, redirects included. A negative or NaN
    value is a ValueError here, not a surprise later."""

    connect: float | None = 10.0
    read: float | None = 30.0
    write: float | None = 30.0
    pool: float | None = 30.0
    total: float | None = None

    def __post_init__(self) -> None:
        for phase in PHASES:
            value = getattr(self, phase)
            if value is None:
                continue
            if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
                raise TypeError(f"Timeout {phase} must be a number of seconds or None, "
                                f"got {value!r}")
            seconds = float(value)
            if not seconds >= 0:  # also catches NaN
                raise ValueError(f"Timeout {phase} must be zero or more seconds, got {value!r}")
            object.__setattr__(self, phase, None if math.isinf(seconds) else seconds)

    @classmethod
    def of(cls, value: Any) -> Timeout:
        """A Timeout from a Timeout, a number (every phase but ``total``) or
        None (no limit at all)."""
        if isinstance(value, Timeout):
            return value
        return cls(value, value, value, value, None)


DEFAULT_TIMEOUT = Timeout()
"""A client's timeouts unless it is given others: 10 s to connect, 30 s for
each read silence, write stall and pool wait, no total limit."""
