"""Per-upstream circuit breaking (Envoy calls it outlier ejection).

A :class:`Circuit` watches the calls to one address. After ``failures``
failures in a row, or a failure rate of ``failure_rate`` over ``window``
seconds (once ``min_calls`` calls were made in it), the address is
ejected: for ``cooldown`` seconds every call fails fast with
:class:`UpstreamUnavailable` instead of waiting on an upstream that is
down. Then one call at a time is let through as a probe (half-open): a
probe that succeeds closes the circuit, one that fails ejects the address
again for twice as long as before (up to ``max_cooldown``), as Envoy
lengthens the ejection of an outlier ejected again and again.

What counts as a failure is the caller's call (:class:`~corofw.http.upstream.Upstream`
counts connection failures, timeouts and 5xx answers); a call cancelled
before it finished counts as neither.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .budget import SlidingCounts, kernel_clock
from .client_errors import ClientError

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
#: What :meth:`Circuit.admit` answers: a call may go, or it is the probe.
ADMITTED, PROBE = "admitted", "probe"


class UpstreamUnavailable(ClientError):
    """Failed fast: every address of the upstream is ejected after failing
    (see :mod:`corofw.http.breaker`). ``retry_in`` is the time in seconds
    until the first of them is probed again."""

    def __init__(self, message: str, url: str = "", retry_in: float = 0.0) -> None:
        super().__init__(message, url)
        self.retry_in = retry_in


@dataclass(frozen=True)
class Breaker:
    """When to eject an address and for how long (seconds); see the module
    docstring. ``failure_rate`` None: only consecutive failures count."""

    failures: int = 5
    failure_rate: float | None = None
    window: float = 10.0
    min_calls: int = 20
    cooldown: float = 5.0
    max_cooldown: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.failures, int) or self.failures < 1:
            raise ValueError(f"failures must be a whole number >= 1, got {self.failures!r}")
        if self.failure_rate is not None and not 0 < self.failure_rate <= 1:
            raise ValueError(f"failure_rate must be above 0 and at most 1, "
                             f"got {self.failure_rate!r}")
        for name in ("window", "cooldown", "max_cooldown"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")

    def circuit(self, clock: Callable[[], float] | None = None) -> Circuit:
        """A new circuit (closed) for one address."""
        return Circuit(self, clock)


class Circuit:
    """The breaker state of one address: ``state`` (closed, open or
    half-open), ``ejections`` so far, ``reopens_at`` (kernel-clock time)
    while open."""

    __slots__ = ("policy", "state", "consecutive", "ejections", "reopens_at", "probing",
                 "_cooldown", "_counts", "_clock")

    def __init__(self, policy: Breaker, clock: Callable[[], float] | None = None) -> None:
        self.policy = policy
        self.state = CLOSED
        self.consecutive = 0
        self.ejections = 0
        self.reopens_at = 0.0
        self.probing = False
        self._cooldown = policy.cooldown
        self._clock = clock or kernel_clock
        self._counts = SlidingCounts(policy.window, 2, clock=self._clock) \
            if policy.failure_rate is not None else None

    def __repr__(self) -> str:
        return f"<Circuit {self.state} ejections={self.ejections}>"

    def admit(self) -> str | None:
        """Whether a call may go now: ``ADMITTED``, ``PROBE`` (the one call
        let through to test an ejected address; report its outcome) or
        None (fail fast)."""
        if self.state == CLOSED:
            return ADMITTED
        if self.state == OPEN:
            if self._clock() < self.reopens_at:
                return None
            self.state = HALF_OPEN
        if self.probing:
            return None
        self.probing = True
        return PROBE

    def retry_in(self) -> float:
        """Seconds until an ejected address is probed (0 when it may be)."""
        return max(0.0, self.reopens_at - self._clock()) if self.state == OPEN else 0.0

    def succeeded(self, admission: str) -> None:
        """A call admitted as ``admission`` succeeded."""
        if admission == PROBE:
            self.probing = False
            self.state = CLOSED
            self._cooldown = self.policy.cooldown
            if self._counts is not None:
                self._counts.clear()
        if self.state == CLOSED:
            self.consecutive = 0
            if self._counts is not None:
                self._counts.add(0, 1)

    def failed(self, admission: str) -> None:
        """A call admitted as ``admission`` failed."""
        if admission == PROBE:
            self.probing = False
            self._cooldown = min(self._cooldown * 2, self.policy.max_cooldown)
            self._eject(self._cooldown)
            return
        if self.state != CLOSED:
            return  # a call sent before the ejection: already counted out
        self.consecutive += 1
        if self.consecutive >= self.policy.failures:
            self._eject(self._cooldown)
            return
        counts = self._counts
        if counts is not None:
            counts.add(0, 1)
            counts.add(1, 1)
            calls, failures = counts.totals()
            rate = self.policy.failure_rate
            if calls >= self.policy.min_calls and rate is not None and failures >= rate * calls:
                self._eject(self._cooldown)

    def abandoned(self, admission: str) -> None:
        """A call admitted as ``admission`` was cancelled before it
        finished: it says nothing about the address, but a probe's turn
        passes to the next call."""
        if admission == PROBE:
            self.probing = False

    def _eject(self, cooldown: float) -> None:
        self.state = OPEN
        self.ejections += 1
        self.consecutive = 0
        self.reopens_at = self._clock() + cooldown
