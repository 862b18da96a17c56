"""The status panel: several backend APIs called at once, under one deadline.

Every service of ``Settings.services`` is called concurrently with
``gather_settled``, which keeps each call's outcome, a value or an error,
so one slow or broken backend costs the panel its row, never the page.
Each call runs within what is left of the panel's deadline
(``timeout_after``); the backend is reached through an ``Upstream``, which
sends that remaining time along (``x-envoy-expected-rq-timeout-ms``),
retries a failed connection only while the deadline allows, and fails
fast once the backend has kept failing (its circuit breaker). So the
panel answers, at the latest, at its deadline, and each row says whether
the service answered, failed or ran out of time, and how long it took.

The panel's deadline is its own (``Settings.status_deadline``) or, when
the request's deadline leaves less time (a caller that sent a short
``x-envoy-expected-rq-timeout-ms``), a little less than what is left of
that, so the panel still shows what answered rather than a 504.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from corofw import (
    ClientError,
    Coro,
    Outcome,
    Router,
    TaskTimeout,
    current_deadline,
    current_time,
    gather_settled,
    timeout_after,
)
from corofw.http.resilience import Breaker, Retry, Upstream

from .context import Board, require_user
from .settings import Service

ANSWERED, FAILED, TIMED_OUT = "answered", "failed", "timed out"
#: What the panel leaves of the request's deadline to render its page.
MARGIN = 0.05


@dataclass(frozen=True)
class Probe:
    """How one backend call went: ``state`` is answered, failed or timed
    out; ``seconds`` how long it took (or was given); ``detail`` what it
    said, or why it did not."""

    service: str
    state: str
    seconds: float
    detail: str


def backend_upstream(board: Board) -> Upstream:
    """The backend as the panel calls it: one retry of a failed connection,
    and a breaker that fails fast while the backend keeps failing."""
    return Upstream(board.backend, retry=Retry(attempts=2), breaker=Breaker(failures=5))


def call_service(upstream: Upstream, service: Service, times: dict[str, float]) -> Coro[Any]:
    """What ``service`` answers (its JSON); its time goes into ``times``
    however the call ends."""
    started = yield from current_time()
    try:
        response = yield from upstream.get(f"/api/{service.number}",
                                           params={"delay": service.delay})
        response.raise_for_status()
        return response.json()
    finally:
        times[service.name] = (yield from current_time()) - started


def _probe(service: Service, outcome: Outcome, seconds: float) -> Probe:
    error = outcome.error
    if error is None:
        return Probe(service.name, ANSWERED, seconds, f"value {outcome.value.get('value')}")
    if isinstance(error, TaskTimeout):
        return Probe(service.name, TIMED_OUT, seconds, "no answer before the deadline")
    if isinstance(error, (ClientError, ValueError)):
        return Probe(service.name, FAILED, seconds, f"{type(error).__name__}: {error}"[:160])
    raise error


def panel_deadline(configured: float) -> Coro[float]:
    """The panel's time: ``configured``, or less when the request's own
    deadline leaves less (minus :data:`MARGIN`)."""
    deadline = yield from current_deadline()
    if deadline is None:
        return configured
    left = deadline - (yield from current_time())
    return max(0.0, min(configured, left - MARGIN))


def fan_out(upstream: Upstream, services: tuple[Service, ...], seconds: float
            ) -> Coro[dict[str, Any]]:
    """Call every service at once, each within ``seconds`` from now: the
    probes, in the order of ``services``, and the panel's own time."""
    started = yield from current_time()
    times: dict[str, float] = {}
    outcomes = yield from gather_settled(
        *(timeout_after(seconds, call_service(upstream, service, times))
          for service in services),
        names=[f"status: {service.name}" for service in services])
    elapsed = (yield from current_time()) - started
    probes = [_probe(service, outcome, round(times.get(service.name, elapsed), 4))
              for service, outcome in zip(services, outcomes, strict=True)]
    return {"deadline": seconds, "seconds": round(elapsed, 4), "probes": probes,
            "answered": sum(probe.state == ANSWERED for probe in probes)}


class StatusPanel:
    """The panel of one app: its backend ``Upstream`` (whose breaker and
    latency history last as long as the app) and its settings."""

    def __init__(self, board: Board) -> None:
        self.settings = board.settings
        self.upstream = backend_upstream(board)

    def collect(self) -> Coro[dict[str, Any]]:
        """Call every service now: what :func:`fan_out` returns."""
        seconds = yield from panel_deadline(self.settings.status_deadline)
        return (yield from fan_out(self.upstream, self.settings.services, seconds))


def make_routes(board: Board) -> Router:
    """``/status`` (a page) and ``/status.json``; the list page shows the
    same panel with ``?panel=1``."""
    routes = Router()
    panel = board.status

    @routes.get("/status")
    def status_page(request):
        require_user(request)
        return board.page(request, "status.html", panel=(yield from panel.collect()))

    @routes.get("/status.json")
    def status_json(request):
        require_user(request)
        result = yield from panel.collect()
        result["probes"] = [asdict(probe) for probe in result["probes"]]
        return result

    return routes
