"""The fan-out demo: one request, ten backend calls.

``GET /fanout`` calls the backend's ``/api/0`` .. ``/api/9`` concurrently
with ``gather_settled``: each call is a coroutine parked in ``read_wait`` on
its own socket, so the ten one-second waits overlap and the whole request
takes about one second, on one CPU core. ``GET /fanout/sequential`` makes
the same calls one after another, for contrast. The backend is
``BACKEND_URL`` (default ``http://127.0.0.1:9001``); ``?delay=`` is passed
on to it.

The fan-out has a deadline: ``FANOUT_DEADLINE`` seconds (default 5), or
``?deadline=`` (at most 60). A call still waiting when it passes is
cancelled and reported as late; so is, in sequential mode, a call the
deadline left no time to start. The answer, as JSON:

- ``calls``: one entry per call, in order. A call that succeeded has
  ``ok: true``, the backend's ``status`` and its JSON ``result`` (``null``
  for a reply without a body, such as 204 No Content or 304 Not
  Modified); one that failed has ``ok: false``, ``error`` (what went
  wrong), ``kind`` (``late``, ``timeout``, ``unreachable``, ``status``,
  ``invalid`` or ``failed``) and the ``upstream`` URL. Each has its
  ``duration``.
- ``complete``: whether every call succeeded; ``late``: the indexes of
  the calls the deadline cut off; ``deadline`` and ``elapsed`` in seconds.
- The status: 200 when at least one call succeeded, with ``complete:
  false`` when some failed (a partial result is still a result); when none
  did, 504 if they all ran out of time, else 502, with ``error`` and
  ``upstream`` naming the first failure.

``routes`` is built from the environment when this module is imported;
tests and embedders build their own with :func:`make_routes`.
"""

import math
import os

from corofw import (
    Client,
    ClientError,
    ClientTimeout,
    ConnectError,
    HTTPError,
    Outcome,
    Router,
    TaskTimeout,
    Timeout,
    current_time,
    gather_settled,
    timeout_after,
)

DEFAULT_BACKEND_URL = "http://127.0.0.1:9001"
DEFAULT_TIMEOUT = Timeout(connect=5.0, read=30.0, pool=30.0, total=60.0)
DEFAULT_DEADLINE = 5.0
MAX_DEADLINE = 60.0
CALLS = 10


def backend_client(url=None, timeout=DEFAULT_TIMEOUT):
    """A :class:`Client` for the backend at ``url`` (default: ``BACKEND_URL``
    from the environment); the pool is large enough never to make the ten
    calls of a request wait for one another."""
    url = url or os.environ.get("BACKEND_URL") or DEFAULT_BACKEND_URL
    return Client(url.rstrip("/"), timeout=timeout, max_connections=20000,
                  max_idle_per_host=20000)


def default_deadline():
    """``FANOUT_DEADLINE`` from the environment, else 5 seconds."""
    text = os.environ.get("FANOUT_DEADLINE")
    return DEFAULT_DEADLINE if text is None else _seconds(text, "FANOUT_DEADLINE", ValueError)


class CallFailed(Exception):
    """One backend call did not give a usable result: ``kind`` and
    ``message`` say why, ``upstream`` is the URL it called."""

    def __init__(self, kind, message, upstream):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.upstream = upstream


def make_routes(backend, deadline=None):
    """The fan-out app, calling the backend through the client ``backend``,
    with ``deadline`` seconds per fan-out (default: :func:`default_deadline`)."""
    routes = Router()
    default = default_deadline() if deadline is None else deadline

    def ask_backend(i, params):
        """One call's result: the backend's status and JSON (None when the
        reply has no body). CallFailed when there is no usable result."""
        try:
            response = yield from backend.get(f"/api/{i}", params=params)
        except ClientTimeout as exc:
            raise CallFailed("timeout", f"upstream timed out: {exc.message}", exc.url) from None
        except ConnectError as exc:
            raise CallFailed("unreachable", f"upstream failed: {exc.message}", exc.url) from None
        except ClientError as exc:
            raise CallFailed("failed", f"upstream failed: {exc.message}", exc.url) from None
        status = response.status_code
        if not (200 <= status < 300 or status == 304):
            raise CallFailed("status", f"upstream answered {status}", response.url)
        if not response.content:
            return status, None  # 204 No Content, 304 Not Modified, an empty 200
        try:
            return status, response.json()
        except ValueError:
            raise CallFailed("invalid", f"upstream answered {status} with a body that is "
                             "not JSON", response.url) from None

    def call_backend(i, params, until):
        """``ask_backend`` cut off at ``until`` (the fan-out's deadline, on
        the kernel clock); the call's entry in ``calls``."""
        started = yield from current_time()
        left = until - started
        if left <= 0:
            raise CallFailed("late", "not started: the deadline had passed",
                             f"{backend.base_url}/api/{i}")
        try:
            status, result = yield from timeout_after(left, ask_backend(i, params))
        except TaskTimeout:
            raise CallFailed("late", f"no answer before the fan-out's deadline, "
                             f"{left:.3g} s after the call started",
                             f"{backend.base_url}/api/{i}") from None
        duration = (yield from current_time()) - started
        return {"call": i, "ok": True, "status": status, "result": result,
                "duration": round(duration, 4)}

    @routes.get("/fanout")
    def fanout(request):
        params, deadline = _options(request, default)
        started = yield from current_time()
        until = started + deadline
        calls = (call_backend(i, params, until) for i in range(CALLS))
        outcomes = yield from gather_settled(*calls)
        elapsed = (yield from current_time()) - started
        return _answer("concurrent", outcomes, deadline, elapsed)

    @routes.get("/fanout/sequential")
    def fanout_sequential(request):
        params, deadline = _options(request, default)
        started = yield from current_time()
        until = started + deadline
        outcomes = []
        for i in range(CALLS):
            try:
                outcomes.append(Outcome((yield from call_backend(i, params, until))))
            except CallFailed as exc:
                outcomes.append(Outcome(error=exc))
        elapsed = (yield from current_time()) - started
        return _answer("sequential", outcomes, deadline, elapsed)

    return routes


def _answer(mode, outcomes, deadline, elapsed):
    """The JSON and status for the settled calls (see the module's
    docstring); an error that is not a failed call (a bug) propagates."""
    calls = []
    failures = []
    for i, outcome in enumerate(outcomes):
        if outcome.ok:
            calls.append(outcome.value)
            continue
        error = outcome.error
        if not isinstance(error, CallFailed):
            raise error
        failures.append(error)
        calls.append({"call": i, "ok": False, "error": error.message, "kind": error.kind,
                      "upstream": error.upstream})
    body = {"mode": mode, "complete": not failures, "calls": calls,
            "late": [c["call"] for c in calls if c.get("kind") == "late"],
            "deadline": deadline, "elapsed": round(elapsed, 4)}
    if len(failures) < len(calls):
        return body
    first = failures[0]
    body["error"] = first.message
    body["upstream"] = first.upstream
    timed_out = all(f.kind in ("late", "timeout") for f in failures)
    return body, 504 if timed_out else 502


def _options(request, default):
    delay = request.query.get("delay")
    text = request.query.get("deadline")
    deadline = default if text is None else _seconds(text, "deadline", _bad_request)
    return ({"delay": delay} if delay is not None else None), deadline


def _seconds(text, name, error):
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_DEADLINE:
        raise error(f"{name} must be a number of seconds above 0 and at most "
                    f"{MAX_DEADLINE:g}, got {text!r}")
    return seconds


def _bad_request(message):
    return HTTPError(400, {"error": message})


backend = backend_client()
routes = make_routes(backend)
BACKEND_URL = backend.base_url
