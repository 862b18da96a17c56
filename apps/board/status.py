"""The status panel: several backend APIs called at once, under one deadline.

Every service of ``Settings.services`` is called concurrently (``gather``);
each call is bounded by what is left of the panel's deadline
(``timeout_after``), and catches its own failure, so one slow or broken
backend costs the panel its row, never the page: the panel answers, at the
latest, at the deadline, with what answered by then. Each row says whether
the service answered, failed or ran out of time, and how long it took.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from corofw import (
    Client,
    ClientError,
    Coro,
    Router,
    TaskTimeout,
    current_time,
    gather,
    timeout_after,
)

from .context import Board, require_user
from .settings import Service

ANSWERED, FAILED, TIMED_OUT = "answered", "failed", "timed out"


@dataclass(frozen=True)
class Probe:
    """How one backend call went: ``state`` is answered, failed or timed
    out; ``seconds`` how long it took (or was given); ``detail`` what it
    said, or why it did not."""

    service: str
    state: str
    seconds: float
    detail: str


def call_service(client: Client, service: Service, deadline: float) -> Coro[Probe]:
    """Call ``service`` with whatever is left until ``deadline`` (a
    ``current_time()`` value); never raises for the backend's failures."""
    started = yield from current_time()
    try:
        response = yield from timeout_after(
            deadline - started,
            client.get(f"/api/{service.number}", params={"delay": service.delay}))
        response.raise_for_status()
        data = response.json()
        state, detail = ANSWERED, f"value {data.get('value')}"
    except TaskTimeout:
        state, detail = TIMED_OUT, "no answer before the deadline"
    except ClientError as exc:
        state, detail = FAILED, f"{type(exc).__name__}: {str(exc)[:120]}"
    except ValueError as exc:
        state, detail = FAILED, f"not JSON: {str(exc)[:120]}"
    elapsed = (yield from current_time()) - started
    return Probe(service.name, state, round(elapsed, 4), detail)


def fan_out(client: Client, services: tuple[Service, ...], seconds: float
            ) -> Coro[dict[str, Any]]:
    """Call every service at once within ``seconds``: the probes, in the
    order of ``services``, and the panel's own time."""
    started = yield from current_time()
    probes = yield from gather(*(call_service(client, service, started + seconds)
                                 for service in services))
    elapsed = (yield from current_time()) - started
    return {"deadline": seconds, "seconds": round(elapsed, 4), "probes": probes,
            "answered": sum(probe.state == ANSWERED for probe in probes)}


def make_routes(board: Board) -> Router:
    """``/status`` (a page) and ``/status.json``."""
    routes = Router()
    settings = board.settings

    def panel() -> Coro[dict[str, Any]]:
        return (yield from fan_out(board.backend, settings.services, settings.status_deadline))

    @routes.get("/status")
    def status_page(request):
        require_user(request)
        return board.page(request, "status.html", **(yield from panel()))

    @routes.get("/status.json")
    def status_json(request):
        require_user(request)
        result = yield from panel()
        result["probes"] = [asdict(probe) for probe in result["probes"]]
        return result

    return routes
