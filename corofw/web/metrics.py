"""Prometheus metrics for an app, its outbound calls and its kernel::

    metrics = Metrics()
    metrics.install(routes)            # record its requests; serve GET /metrics
    metrics.observe(client)            # a Client's calls, per upstream host

A scrape of ``/metrics`` answers in the Prometheus text exposition format
(version 0.0.4), as ``prometheus_client`` writes it:

- per route (its registered pattern, ``/users/{id}``, never the raw path)
  and method: requests by status, a latency histogram, requests in flight.
  Requests no route took (404s, 405s) are counted under ``route=""``, so a
  scanner's paths add no series;
- per upstream host of an observed Client: calls, errors by kind (the
  exception's class name) and a latency histogram;
- the kernel: tasks, fds waited on, timers, the loop's busy fraction, the
  loop lag and the watchdog's warnings.

Recording wraps the router's dispatch (:meth:`Router.wrap_dispatch`) rather
than adding a middleware, so a request answered without a generator gets
none; it costs two clock reads, two dict lookups (by the matched Route
object and the method), a ``bisect`` and a few integer and float updates.
Nothing is formatted until a scrape. With ``--workers N`` each worker writes its
numbers to a shared directory (see :mod:`.metrics_files`) and a scrape
sums them; :mod:`.metrics_text` writes the text format.
"""

from __future__ import annotations

import logging
import math
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from types import GeneratorType
from typing import Any

from ..http.client import Client
from ..http.messages import Request, Response
from ..kernel import Cancelled, Coro, current_kernel, sleep
from ..kernel.costs import Cost
from .metrics_files import ENV_DIRECTORY, SnapshotFiles
from .metrics_text import render
from .router import Router

#: Request latency buckets, in seconds (upper bounds; ``+Inf`` is added).
DEFAULT_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                      1.0, 2.5, 5.0, 10.0)
#: The content type of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Status recorded for a request whose handler was cancelled (the client
#: went away, the server stopped): nginx's "client closed request".
CANCELLED_STATUS = 499
#: Status recorded for a request whose handler raised past every handler.
FAILED_STATUS = 500

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
                      "CONNECT"})
_perf_counter = time.perf_counter
log = logging.getLogger("corofw.metrics")


class RouteSeries:
    """What one route and method recorded: their labels ``route`` (the
    pattern, "" for no route) and ``method``, ``in_flight`` requests now,
    answers by ``statuses`` (int status -> count), latency ``buckets``
    (not cumulative; the last is ``+Inf``) and their ``sum`` in seconds;
    with request costs on, the seconds its requests ran on the loop
    (``cpu``) and waited, by what they waited on (``waits``)."""

    __slots__ = ("route", "method", "in_flight", "statuses", "buckets", "sum", "cpu", "waits")

    def __init__(self, route: str, method: str, size: int) -> None:
        self.route = route
        self.method = method
        self.in_flight = 0
        self.statuses: dict[int, int] = {}
        self.buckets = [0] * size
        self.sum = 0.0
        self.cpu = 0.0
        self.waits: dict[str, float] = {}

    def add_cost(self, cost: Cost) -> None:
        """Count what one request cost (up to its response)."""
        self.cpu += cost.cpu
        waits = self.waits
        for name, seconds in cost.waits().items():
            waits[name] = waits.get(name, 0.0) + seconds


class UpstreamSeries:
    """What the calls to one upstream host recorded: ``calls``, ``errors``
    by exception class name, latency ``buckets`` and their ``sum``."""

    __slots__ = ("calls", "errors", "buckets", "sum")

    def __init__(self, size: int) -> None:
        self.calls = 0
        self.errors: dict[str, int] = {}
        self.buckets = [0] * size
        self.sum = 0.0


class Metrics:
    """The metrics of one app; see the module docstring.

    ``buckets`` and ``upstream_buckets`` are the latency histograms' upper
    bounds in seconds (ascending; ``+Inf`` is implied). ``namespace``
    prefixes every metric name (``corofw_http_requests_total``).
    ``directory`` is where workers share their numbers (default: the
    ``COROFW_METRICS_DIR`` environment variable; None: this process only);
    each writes its numbers ``write_interval`` seconds after a request
    (at most once per interval; an idle worker writes nothing), and on a
    scrape.
    """

    def __init__(self, *, buckets: Sequence[float] = DEFAULT_BUCKETS,
                 upstream_buckets: Sequence[float] = DEFAULT_BUCKETS,
                 namespace: str = "corofw", directory: str | os.PathLike[str] | None = None,
                 write_interval: float = 1.0) -> None:
        self.bounds = _check_buckets(buckets)
        self.upstream_bounds = _check_buckets(upstream_buckets)
        if not namespace.replace("_", "a").isalnum() or namespace[0].isdigit():
            raise ValueError(f"namespace must be letters, digits and '_', not {namespace!r}")
        self.namespace = namespace
        self._routes: dict[Any, dict[str, RouteSeries]] = {}
        self._upstreams: dict[str, UpstreamSeries] = {}
        self._installed = False
        if directory is None:
            directory = os.environ.get(ENV_DIRECTORY) or None
        self.files = SnapshotFiles(directory) if directory is not None else None
        self.write_interval = float(write_interval)
        self._write_due = math.inf if self.files is None else 0.0

    def __repr__(self) -> str:
        shared = f" shared in {self.files.directory!r}" if self.files else ""
        count = sum(len(by_method) for by_method in self._routes.values())
        return f"<Metrics {count} route series{shared}>"

    # -- wiring ----------------------------------------------------------------

    def install(self, routes: Router, path: str | None = "/metrics") -> None:
        """Record every request ``routes`` answers, and serve the metrics
        with ``GET path`` on it (None: serve them elsewhere, with
        :meth:`endpoint`). ``routes`` is the router the server serves:
        its dispatch is wrapped (:meth:`Router.wrap_dispatch`). Raises
        ValueError for a mounted router, RuntimeError if this Metrics is
        already installed."""
        if self._installed:
            raise RuntimeError("this Metrics is already installed; one Metrics records one app")
        routes.wrap_dispatch(self.wrap)
        self._installed = True
        if path is not None:
            routes.add_route(path, self.endpoint, ("GET",), None)

    def observe(self, client: Client) -> Client:
        """Record the calls of ``client`` (a :class:`~corofw.http.client.Client`)
        per upstream host; return ``client``."""
        client.observer = self.record_call
        return client

    # -- recording ---------------------------------------------------------------

    def wrap(self, handle: Callable[[Request], Any]) -> Callable[[Request], Any]:
        """``handle`` (an app's dispatch) recording each request: the series
        of the route it matched, its status and latency (until the response
        is made; a streamed body is sent afterwards), and, while a handler
        waits, the request in flight. A request the app answers without a
        generator gets none added."""
        bounds = self.bounds
        first = bounds[0]
        routes = self._routes
        new_series = self._route_series
        finish = self._finish

        def observed(request: Request) -> Any:
            started = _perf_counter()
            try:
                response = handle(request)
            except BaseException:
                finish(request, started, FAILED_STATUS)
                raise
            if type(response) is GeneratorType:
                return _waiting(response, request, started, self)
            ended = _perf_counter()
            by_method = routes.get(request.route)
            series = by_method.get(request.method) if by_method is not None else None
            if series is None:
                series = new_series(request.route, request.method)
            elapsed = ended - started
            series.buckets[0 if elapsed <= first else bisect_left(bounds, elapsed)] += 1
            series.sum += elapsed
            statuses = series.statuses
            status = response.status
            statuses[status] = statuses.get(status, 0) + 1
            if request._cost is not None:
                series.add_cost(request._cost)
            if ended > self._write_due:
                self._write_soon()
            return response

        return observed

    def series_for(self, request: Request) -> RouteSeries:
        """The series that records ``request`` (once it has been routed)."""
        by_method = self._routes.get(request.route)
        series = by_method.get(request.method) if by_method is not None else None
        return series if series is not None else self._route_series(request.route,
                                                                    request.method)

    def _finish(self, request: Request, started: float, status: int,
                series: RouteSeries | None = None) -> None:
        ended = _perf_counter()
        if series is None:
            series = self.series_for(request)
        elapsed = ended - started
        series.buckets[bisect_left(self.bounds, elapsed)] += 1
        series.sum += elapsed
        series.statuses[status] = series.statuses.get(status, 0) + 1
        if request._cost is not None:
            series.add_cost(request._cost)
        if ended > self._write_due:
            self._write_soon()

    def record_call(self, host: str, seconds: float, error: BaseException | None) -> None:
        """Record one outbound call to ``host`` that took ``seconds`` and
        raised ``error`` (None: it answered). A Client calls this once per
        finished call when :meth:`observe` set it as its observer."""
        series = self._upstreams.get(host)
        if series is None:
            series = self._upstreams[host] = UpstreamSeries(len(self.upstream_bounds) + 1)
        series.calls += 1
        series.buckets[bisect_left(self.upstream_bounds, seconds)] += 1
        series.sum += seconds
        if error is not None:
            kind = type(error).__name__
            series.errors[kind] = series.errors.get(kind, 0) + 1

    def _route_series(self, route: Any, method: str) -> RouteSeries:
        if route is None and method not in _METHODS:
            method = "OTHER"
            by_method = self._routes.get(route)
            if by_method is not None and method in by_method:
                return by_method[method]
        label = "" if route is None else route.full_path
        series = RouteSeries(label, method, len(self.bounds) + 1)
        self._routes.setdefault(route, {})[method] = series
        return series

    # -- exposing ----------------------------------------------------------------

    def endpoint(self, request: Request) -> Coro[Response]:
        """The handler that answers a scrape (the text exposition format).
        It first lets the loop run once, and reports how long that took as
        the loop lag."""
        started = _perf_counter()
        yield from sleep(0)
        lag = _perf_counter() - started
        return Response(self.exposition(lag).encode(), content_type=CONTENT_TYPE)

    def snapshot(self) -> dict[str, Any]:
        """This process's numbers as plain data (what a worker writes to the
        shared directory): ``routes``, ``upstreams``, ``costs`` (with request
        costs on) and ``kernel``."""
        routes = [[s.route, s.method, s.in_flight,
                   {str(status): n for status, n in s.statuses.items()}, list(s.buckets), s.sum]
                  for by_method in self._routes.values() for s in by_method.values()]
        upstreams = [[host, s.calls, dict(s.errors), list(s.buckets), s.sum]
                     for host, s in self._upstreams.items()]
        costs = [[s.route, s.method, s.cpu, dict(s.waits)]
                 for by_method in self._routes.values() for s in by_method.values()
                 if s.cpu or s.waits]
        return {"pid": os.getpid(), "bounds": list(self.bounds),
                "upstream_bounds": list(self.upstream_bounds),
                "routes": routes, "upstreams": upstreams, "costs": costs,
                "kernel": self._kernel_numbers()}

    def write(self) -> None:
        """Write this worker's snapshot to the shared directory now (a
        no-op without one). Done on its own ``write_interval`` seconds after
        the first request that follows a write, and at each scrape, so
        another worker's scrape sees numbers at most that old."""
        if self.files is not None:
            self._write_due = 0.0
            self.files.write(self.snapshot())

    def _write_soon(self) -> None:
        kernel = current_kernel()
        if self.write_interval <= 0 or kernel is None:
            self._write_quietly(None)
        else:
            self._write_due = math.inf  # one timer at a time; an idle worker sets none
            kernel.add_timer(self.write_interval, self._write_quietly, None)

    def _write_quietly(self, _: Any) -> None:
        try:
            self.write()
        except OSError as exc:  # metrics never fail a request
            log.warning("cannot write this worker's metrics: %s", exc)

    def exposition(self, loop_lag: float | None = None) -> str:
        """Every metric in the text exposition format: this process's, or,
        with a shared directory, every worker's summed. ``loop_lag`` (in
        seconds) is reported as this process's loop lag."""
        mine = self.snapshot()
        if loop_lag is not None:
            mine["kernel"]["loop_lag_seconds"] = loop_lag
        if self.files is None:
            snapshots, multi = [mine], False
        else:
            self.files.write(mine)
            snapshots, multi = self.files.read_all(), True
        return render(self.namespace, self.bounds, self.upstream_bounds, snapshots, multi)

    def _kernel_numbers(self) -> dict[str, float]:
        kernel = current_kernel()
        if kernel is None:
            return {}
        stats = kernel.stats()
        numbers = {"tasks": stats["tasks"], "fds_waited_on": stats["fds_waited_on"],
                   "timers": stats["timers"], "watchdog_warnings": stats["watchdog_warnings"]}
        if stats["busy_fraction"] is not None:
            numbers["busy_fraction"] = stats["busy_fraction"]
        return numbers


def _waiting(response: Any, request: Request, started: float, metrics: Metrics) -> Coro[Any]:
    """Drive the app's generator for ``request``, in flight meanwhile."""
    series = metrics.series_for(request)
    series.in_flight += 1
    status = FAILED_STATUS
    try:
        response = yield from response
        status = response.status
        return response
    except Cancelled:
        status = CANCELLED_STATUS
        raise
    finally:
        series.in_flight -= 1
        metrics._finish(request, started, status, series)


def _check_buckets(buckets: Sequence[float]) -> tuple[float, ...]:
    bounds = tuple(float(b) for b in buckets)
    if bounds and bounds[-1] == math.inf:
        bounds = bounds[:-1]
    if not bounds or any(not a < b for a, b in zip(bounds, bounds[1:], strict=False)) \
            or any(b != b or b == math.inf for b in bounds):
        raise ValueError(f"buckets must be finite bounds in ascending order, got {buckets!r}")
    return bounds
