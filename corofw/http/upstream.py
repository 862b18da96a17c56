"""An upstream service reached through a :class:`~corofw.http.client.Client`,
with hedging, retries, budgets, circuit breaking and deadline propagation::

    api = Upstream(client, hedge=Hedge(after="p95"), retry=Retry(attempts=3),
                   breaker=Breaker())
    resp = yield from api.get("/x")

A call goes to one of the upstream's addresses (``endpoints``, round
robin, skipping those the breaker ejected). GET, HEAD, OPTIONS, PUT,
DELETE and TRACE may be hedged and retried; other methods only when the
caller passes ``safe=True``. When the calling task has a deadline (a
``timeout_after`` around it, or the server's request deadline), what is
left of it goes out in the ``x-envoy-expected-rq-timeout-ms`` header, and
no retry is started that could not finish in time.

A hedged call runs each copy as a child task of the caller; the copy that
loses is cancelled, which closes its connection (a half-read connection
is never returned to the pool), and both are finished before the call
returns.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..kernel import Cancelled, Coro, Task, current_kernel, park, sleep, spawn
from ..kernel.task import SmallWaitQueue
from .breaker import ADMITTED, Breaker, Circuit, UpstreamUnavailable
from .budget import Budget, kernel_clock
from .client import Client, ClientResponse
from .client_errors import (
    ConnectError,
    ConnectTimeout,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    TLSError,
    TotalTimeout,
    WriteError,
    WriteTimeout,
)
from .deadlines import DEADLINE_HEADER, deadline_now, format_timeout, time_left
from .headers import Headers
from .latency import LatencyTracker
from .policies import IDEMPOTENT, Hedge, Retry

# Failures worth another try: the request may not have reached the server,
# or the connection broke or stalled before the answer came.
_RETRYABLE = (ConnectError, ConnectTimeout, ReadError, ReadTimeout, RemoteProtocolError,
              WriteError, WriteTimeout)
# Failures that speak of the address's health (a full local pool does not).
_UNHEALTHY = (*_RETRYABLE, TotalTimeout)


class Endpoint:
    """One address of an upstream: the client that reaches it, its base
    URL, its recent ``latencies`` and its breaker ``circuit``."""

    __slots__ = ("client", "base_url", "latencies", "circuit", "_prefix")

    def __init__(self, client: Client, base_url: str | None, latencies: LatencyTracker,
                 circuit: Circuit | None) -> None:
        self.client = client
        self.base_url = (client.base_url if base_url is None else base_url).rstrip("/")
        self._prefix = "" if base_url is None else self.base_url
        self.latencies = latencies
        self.circuit = circuit

    def __repr__(self) -> str:
        return f"<Endpoint {self.base_url}>"

    def url(self, path: str) -> str:
        """The URL to ask the client for ``path``."""
        return self._prefix + path


@dataclass
class UpstreamStats:
    """Counters of an :class:`Upstream` since it was made, for metrics."""

    calls: int = 0           # calls made through it
    attempts: int = 0        # requests sent: first tries, hedges and retries
    hedges: int = 0          # second copies sent
    hedge_wins: int = 0      # calls the second copy answered first
    hedges_denied: int = 0   # copies the hedge budget refused
    retries: int = 0         # retries sent
    retries_denied: int = 0  # retries the retry budget refused
    failed_fast: int = 0     # calls refused at once: every address was ejected

    def as_dict(self) -> dict[str, int]:
        """The counters as a dict."""
        return asdict(self)


class Upstream:
    """Calls to one service, made tail-tolerant.

    ``client`` makes the requests. ``endpoints`` lists the service's
    addresses: base URLs (reached through ``client``) or Clients of their
    own; by default the one address is ``client.base_url``. ``hedge``,
    ``retry`` and ``breaker`` are the policies (None: off). The hedge and
    retry budgets are shared by every address. ``propagate_deadline``
    sends the caller's remaining time in the ``x-envoy-expected-rq-timeout-ms``
    header. ``latency_samples`` is the size of each address's window of
    recent latencies.
    """

    def __init__(self, client: Client, *, endpoints: Sequence[Client | str] | None = None,
                 hedge: Hedge | None = None, retry: Retry | None = None,
                 breaker: Breaker | None = None, propagate_deadline: bool = True,
                 name: str | None = None, latency_samples: int = 512) -> None:
        if not isinstance(client, Client):
            raise TypeError(f"Upstream() needs a corofw Client, got {client!r}")
        if endpoints is not None and not endpoints:
            raise ValueError("endpoints, when given, must list at least one address")
        self.client = client
        self.hedge = hedge
        self.retry = retry
        self.breaker = breaker
        self.propagate_deadline = propagate_deadline
        self.endpoints = [self._endpoint(item, latency_samples)
                          for item in (endpoints if endpoints is not None else [client])]
        self.name = name or self.endpoints[0].base_url
        self.hedge_budget = Budget(hedge.ratio, hedge.min_per_second) if hedge else None
        self.retry_budget = Budget(retry.ratio, retry.min_per_second) if retry else None
        self.stats = UpstreamStats()
        self._next = 0
        # Calls whose copy the hedge budget refused, by when each began: the
        # next token goes to the oldest, the likeliest straggler.
        self._hedge_line: dict[_Arrivals, float] = {}

    def _endpoint(self, item: Client | str, samples: int) -> Endpoint:
        circuit = self.breaker.circuit() if self.breaker is not None else None
        if isinstance(item, Client):
            if not item.base_url:
                raise ValueError("an Upstream's client needs a base_url, or list the "
                                 "addresses as endpoints=[\"http://host:port\", ...]")
            return Endpoint(item, None, LatencyTracker(samples), circuit)
        if isinstance(item, str) and "://" in item:
            return Endpoint(self.client, item, LatencyTracker(samples), circuit)
        raise ValueError(f"an endpoint is a Client or an absolute base URL, got {item!r}")

    def __repr__(self) -> str:
        return f"<Upstream {self.name} {len(self.endpoints)} address(es)>"

    def metrics(self) -> dict[str, Any]:
        """The counters, the budgets' balances, and per address its breaker
        state, ejections and recent latency percentiles (seconds)."""
        out: dict[str, Any] = self.stats.as_dict()
        out["ejections"] = sum(e.circuit.ejections for e in self.endpoints if e.circuit)
        if self.hedge_budget is not None:
            out["hedge_budget"] = round(self.hedge_budget.balance, 3)
        if self.retry_budget is not None:
            out["retry_budget"] = round(self.retry_budget.balance, 3)
        out["endpoints"] = {
            e.base_url: {
                "state": e.circuit.state if e.circuit else "closed",
                "ejections": e.circuit.ejections if e.circuit else 0,
                "samples": len(e.latencies),
                **{f"p{p}": e.latencies.percentile(p) for p in (50, 95, 99)},
            } for e in self.endpoints}
        return out

    # -- the public calls ----------------------------------------------------------

    def get(self, path: str, **kwargs: Any) -> Coro[ClientResponse]:
        """A GET (hedged and retried as configured); see :meth:`request`."""
        return self.request("GET", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> Coro[ClientResponse]:
        """A HEAD (hedged and retried as configured); see :meth:`request`."""
        return self.request("HEAD", path, **kwargs)

    def options(self, path: str, **kwargs: Any) -> Coro[ClientResponse]:
        """An OPTIONS (hedged and retried as configured); see :meth:`request`."""
        return self.request("OPTIONS", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Coro[ClientResponse]:
        """A PUT (idempotent: hedged and retried as configured)."""
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Coro[ClientResponse]:
        """A DELETE (idempotent: hedged and retried as configured)."""
        return self.request("DELETE", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Coro[ClientResponse]:
        """A POST: never hedged or retried unless ``safe=True``."""
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Coro[ClientResponse]:
        """A PATCH: never hedged or retried unless ``safe=True``."""
        return self.request("PATCH", path, **kwargs)

    def request(self, method: str, path: str, *, safe: bool | None = None,
                **kwargs: Any) -> Coro[ClientResponse]:
        """Send ``method`` ``path`` (relative to the address chosen; it must
        start with ``/``) with the client's arguments (``params``,
        ``headers``, ``json``, ``timeout``, ``stream``, ...) and return the
        response.

        ``safe`` says whether the call may be sent more than once (default:
        whether the method is idempotent). Raises what the client raises
        (the last error, once retries are over), or
        :class:`~corofw.http.breaker.UpstreamUnavailable` at once while
        every address is ejected. A retryable status (429, 502, 503, 504)
        that retries could not fix is returned as the response."""
        if not path.startswith("/"):
            raise ValueError(f"an Upstream path starts with '/', got {path!r}")
        method = method.upper()
        repeatable = method in IDEMPOTENT if safe is None else safe
        self.stats.calls += 1
        if self.hedge_budget is not None:
            self.hedge_budget.deposit()
            if self._hedge_line:
                self._call_next_in_line()
        if self.retry_budget is not None:
            self.retry_budget.deposit()
        retry = self.retry if repeatable else None
        hedge = self.hedge if repeatable else None
        deadline = deadline_now()  # the copies of a hedged call run in tasks of their own
        tries = 0
        while True:
            tries += 1
            try:
                response = yield from self._attempt(method, path, kwargs, hedge, deadline)
            except _RETRYABLE as exc:
                if isinstance(exc, TLSError) or retry is None or tries >= retry.attempts:
                    raise
                wait = retry.wait_before(tries, None, time_left(deadline))
                if wait is None or not self._may_retry():
                    raise
            else:
                if retry is None or response.status_code not in retry.statuses \
                        or tries >= retry.attempts:
                    return response
                wait = retry.wait_before(tries, response.headers.get("retry-after"),
                                         time_left(deadline))
                if wait is None or not self._may_retry():
                    return response
                response.close()
            self.stats.retries += 1
            yield from sleep(wait)

    # -- one attempt: a call, hedged or not ------------------------------------------

    def _may_retry(self) -> bool:
        assert self.retry_budget is not None
        if self.retry_budget.try_withdraw():
            return True
        self.stats.retries_denied += 1
        return False

    def _pick(self, avoid: Endpoint | None = None) -> tuple[Endpoint, str] | None:
        """The next address in turn whose breaker lets a call through (one
        other than ``avoid`` if there is such), with its admission."""
        endpoints = self.endpoints
        count = len(endpoints)
        if count == 1:
            endpoint = endpoints[0]
            circuit = endpoint.circuit
            admission = circuit.admit() if circuit is not None else ADMITTED
            return None if admission is None else (endpoint, admission)
        start = self._next
        self._next = (start + 1) % count
        order = [endpoints[(start + i) % count] for i in range(count)]
        if avoid is not None and count > 1:
            order.remove(avoid)
            order.append(avoid)
        for endpoint in order:
            circuit = endpoint.circuit
            admission = circuit.admit() if circuit is not None else ADMITTED
            if admission is not None:
                return endpoint, admission
        return None

    def _attempt(self, method: str, path: str, kwargs: dict[str, Any], hedge: Hedge | None,
                 deadline: float | None) -> Coro[ClientResponse]:
        picked = self._pick()
        if picked is None:
            self.stats.failed_fast += 1
            wait = min(e.circuit.retry_in() for e in self.endpoints if e.circuit)
            raise UpstreamUnavailable(f"{self.name}: every address is ejected after failing "
                                      f"(next probe in {wait:.3g} s)", self.name, wait)
        endpoint, admission = picked
        delay = None
        if hedge is not None:
            delay = hedge.delay(endpoint.latencies)
        if delay is None:
            return (yield from self._send(endpoint, admission, method, path, kwargs, deadline))
        return (yield from self._race(endpoint, admission, delay, method, path, kwargs,
                                      deadline))

    def _send(self, endpoint: Endpoint, admission: str, method: str, path: str,
              kwargs: dict[str, Any], deadline: float | None) -> Coro[ClientResponse]:
        """One request to ``endpoint``, sending what is left before the
        caller's ``deadline``; its outcome goes to the address's breaker
        and, when good, its latency to the address's tracker."""
        self.stats.attempts += 1
        if self.propagate_deadline and deadline is not None:
            left = time_left(deadline)
            if left is not None:
                kwargs = {**kwargs, "headers": _with_deadline(kwargs.get("headers"), left)}
        circuit = endpoint.circuit
        started = kernel_clock()
        try:
            response = yield from endpoint.client.request(method, endpoint.url(path), **kwargs)
        except _UNHEALTHY:
            if circuit is not None:
                circuit.failed(admission)
            raise
        except BaseException:
            if circuit is not None:
                circuit.abandoned(admission)
            raise
        if response.status_code >= 500:
            if circuit is not None:
                circuit.failed(admission)
        else:
            if circuit is not None:
                circuit.succeeded(admission)
            if response.status_code != 429:  # a quick refusal says nothing of the latency
                endpoint.latencies.record(kernel_clock() - started)
        return response

    def _race(self, endpoint: Endpoint, admission: str, delay: float, method: str, path: str,
              kwargs: dict[str, Any], deadline: float | None) -> Coro[ClientResponse]:
        """The call as a child task and, if it has not answered well after
        ``delay`` seconds, a copy to another address (budget permitting:
        else the call waits in the line for a token, oldest first); the
        first good answer wins and the other copy is cancelled."""
        finished = _Arrivals()  # the copies as they finish, and the alarm
        copies: list[Task] = []
        seen = 0

        def start(target: Endpoint, admitted: str) -> Coro[None]:
            task = yield from spawn(self._send(target, admitted, method, path, kwargs, deadline),
                                    f"{method} {target.base_url}{path}")
            task.add_done_callback(finished.put)
            copies.append(task)

        winner: Task | None = None
        good = False
        started = kernel_clock()
        line = self._hedge_line
        refused = False
        # A timer, not a timeout scope: the delay is no deadline of the call's.
        kernel = current_kernel()
        assert kernel is not None
        alarm: Any = kernel.add_timer(delay, finished.put, _HEDGE_NOW)
        try:
            yield from start(endpoint, admission)
            while True:
                task = yield from finished.get()
                if task is _HEDGE_NOW or task is _YOUR_TURN:
                    if task is _HEDGE_NOW:
                        alarm = None
                    # the first copy may have finished as the alarm rang
                    if len(copies) > 1 or copies[0].done:
                        continue
                    if task is _HEDGE_NOW and line and finished not in line:
                        sent = False  # calls refused before this one go first
                    else:
                        sent = yield from self._hedge(endpoint, start)
                    if sent:
                        line.pop(finished, None)
                        continue
                    if not refused:
                        refused = True
                        self.stats.hedges_denied += 1
                    line[finished] = started
                    if alarm is None:  # for a refill no new call brings (old ones expire)
                        waited = max(kernel_clock() - started, 0.001)
                        alarm = kernel.add_timer(waited, finished.put, _HEDGE_NOW)
                    continue
                seen += 1
                error = task.exception()
                if error is None and _good(task.result()):
                    winner, good = task, True
                    break
                if seen == len(copies):
                    winner = task  # no good answer: the last one stands
                    break
        finally:
            line.pop(finished, None)
            if alarm is not None:
                kernel.cancel_timer(alarm)
            yield from _finish_copies(copies, finished, seen, winner)
        first = copies[0]
        if winner is not first and first.cancelled:
            # The first copy's latency is at least this long: keeping it
            # keeps slow calls in the percentile that decides when to hedge.
            endpoint.latencies.record(kernel_clock() - started)
        assert winner is not None
        if good and winner is not first:
            self.stats.hedge_wins += 1
        response: ClientResponse = winner.result()  # each copy is a call
        return response

    def _call_next_in_line(self) -> None:
        """A token is free: wake the oldest call the budget refused."""
        assert self.hedge_budget is not None
        if self.hedge_budget.balance >= 1.0:
            line = self._hedge_line
            oldest = min(line, key=line.__getitem__)
            del line[oldest]
            oldest.put(_YOUR_TURN)

    def _hedge(self, first: Endpoint, start: Any) -> Coro[bool]:
        """Send a copy, if an address takes it and the budget pays for it;
        False when the budget refused it (the caller may ask again later)."""
        picked = self._pick(avoid=first)
        if picked is None:
            return True  # every address is ejected: no later try would differ
        target, admitted = picked
        assert self.hedge_budget is not None
        if not self.hedge_budget.try_withdraw():
            if target.circuit is not None:
                target.circuit.abandoned(admitted)
            return False
        self.stats.hedges += 1
        yield from start(target, admitted)
        return True


_HEDGE_NOW = object()  # what the alarm puts among the finished copies
_YOUR_TURN = object()  # what a token for a call in the line puts there


class _Arrivals:
    """The copies of one hedged call as they finish (and the alarm), for
    the one task that races them."""

    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        # Owned by a name, not by self: no cycle for the collector to find.
        # A task dump shows the name; request costs count the wait as "tasks".
        self.waiter = SmallWaitQueue("the copies of a hedged call")

    def put(self, item: Any) -> None:
        self.items.append(item)
        self.waiter.wake_one()

    def get(self) -> Coro[Any]:
        while not self.items:
            yield from park(self.waiter)
        return self.items.popleft()


def _next_copy(finished: _Arrivals) -> Coro[Task]:
    """The next copy to finish (a late alarm is skipped)."""
    while True:
        item = yield from finished.get()
        if item is not _HEDGE_NOW:
            task: Task = item
            return task


def _good(response: ClientResponse) -> bool:
    return response.status_code < 500 and response.status_code != 429


def _finish_copies(copies: list[Task], finished: _Arrivals, seen: int,
                   winner: Task | None) -> Coro[None]:
    """Cancel the copies still running and wait for every one of them;
    close the answers not returned. A cancellation of the caller meanwhile
    cancels them again (cutting their clean-up short) and is re-raised
    once they are done."""
    reason = "another copy of the call answered first" if winner is not None \
        else "the call was abandoned"
    caught: BaseException | None = None
    for task in copies:
        if not task.done:
            task.cancel(reason)
    while seen < len(copies):
        try:
            yield from _next_copy(finished)
            seen += 1
        except Cancelled as exc:
            caught = exc
            for task in copies:
                if not task.done:
                    task.cancel(exc.reason)
    for task in copies:
        if task is not winner and task.exception() is None:
            task.result().close()
    if caught is not None:
        raise caught


def _with_deadline(headers: Any, left: float) -> Headers:
    """``headers`` with the deadline header added (unless the caller set
    it)."""
    merged = Headers(headers) if headers is not None else Headers()
    if DEADLINE_HEADER not in merged:
        merged[DEADLINE_HEADER] = format_timeout(left)
    return merged
