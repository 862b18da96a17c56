"""Tail tolerance for outbound calls, in one import::

    from corofw.http.resilience import Breaker, Hedge, Retry, Upstream

    api = Upstream(client, hedge=Hedge(after="p95"), retry=Retry(attempts=3),
                   breaker=Breaker())
    resp = yield from api.get("/x")

A fan-out is as slow as its slowest call. The pieces, each in a module of
its own:

- :class:`~corofw.http.upstream.Upstream` (:mod:`.upstream`) applies the
  policies below around a :class:`~corofw.http.client.Client`, and sends
  the caller's remaining deadline on (:mod:`.deadlines`).
- :class:`~corofw.http.policies.Hedge`: a second copy of a slow idempotent
  call, after a fixed delay or a percentile of the address's recent
  latencies (:class:`~corofw.http.latency.LatencyTracker`).
- :class:`~corofw.http.policies.Retry`: jittered exponential backoff on
  connection failures and 429/502/503/504, honouring ``Retry-After``,
  within the deadline.
- :class:`~corofw.http.budget.Budget`: hedges and retries are extra load,
  capped at a fraction of the calls (5% and 20% by default).
- :class:`~corofw.http.breaker.Breaker`: an address that keeps failing is
  ejected for a while; calls fail fast with
  :class:`~corofw.http.breaker.UpstreamUnavailable`.

The server's side of deadlines is
:func:`corofw.web.deadline.deadline_middleware`; partial results are
:func:`corofw.kernel.settle.gather_settled` and
:func:`corofw.kernel.settle.first_k`.
"""

from .breaker import Breaker, Circuit, UpstreamUnavailable
from .budget import Budget
from .deadlines import DEADLINE_HEADER, deadline_now, time_left
from .latency import LatencyTracker
from .policies import Hedge, Retry, parse_retry_after
from .upstream import Upstream, UpstreamStats

__all__ = ["DEADLINE_HEADER", "Breaker", "Budget", "Circuit", "Hedge", "LatencyTracker",
           "Retry", "Upstream", "UpstreamStats", "UpstreamUnavailable", "deadline_now",
           "parse_retry_after", "time_left"]
