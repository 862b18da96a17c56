"""The fan-out demo: one request, ten backend calls.

``GET /fanout`` calls the backend's ``/api/0`` .. ``/api/9`` concurrently
with ``gather``: each call is a coroutine parked in ``read_wait`` on its own
socket, so the ten one-second waits overlap and the whole request takes
about one second, on one CPU core. ``GET /fanout/sequential`` makes the
same calls one after another, for contrast. The backend is ``BACKEND_URL``
(default ``http://127.0.0.1:9001``); ``?delay=`` is passed on to it.

An upstream that cannot be reached (or answers 4xx/5xx) gives a 502, one
slower than the client's timeout a 504, both as JSON naming the upstream
URL. ``routes`` is built from the environment when this module is
imported; tests and embedders build their own with :func:`make_routes`.
"""

import os

from corofw import (
    Client,
    ClientError,
    ClientTimeout,
    HTTPStatusError,
    Router,
    Timeout,
    current_time,
    gather,
)

DEFAULT_BACKEND_URL = "http://127.0.0.1:9001"
DEFAULT_TIMEOUT = Timeout(connect=5.0, read=30.0, pool=30.0, total=60.0)
CALLS = 10


def backend_client(url=None, timeout=DEFAULT_TIMEOUT):
    """A :class:`Client` for the backend at ``url`` (default: ``BACKEND_URL``
    from the environment); the pool is large enough never to make the ten
    calls of a request wait for one another."""
    url = url or os.environ.get("BACKEND_URL") or DEFAULT_BACKEND_URL
    return Client(url.rstrip("/"), timeout=timeout, max_connections=20000,
                  max_idle_per_host=20000)


def make_routes(backend):
    """The fan-out app, calling the backend through the client ``backend``."""
    routes = Router()

    def call_backend(i, params):
        started = yield from current_time()
        response = yield from backend.get(f"/api/{i}", params=params)
        response.raise_for_status()
        duration = (yield from current_time()) - started
        return {"call": i, "result": response.json(), "duration": round(duration, 4)}

    @routes.get("/fanout")
    def fanout(request):
        params = _params(request)
        started = yield from current_time()
        calls = yield from gather(*(call_backend(i, params) for i in range(CALLS)))
        elapsed = (yield from current_time()) - started
        return {"mode": "concurrent", "calls": calls, "elapsed": round(elapsed, 4)}

    @routes.get("/fanout/sequential")
    def fanout_sequential(request):
        params = _params(request)
        started = yield from current_time()
        calls = []
        for i in range(CALLS):
            calls.append((yield from call_backend(i, params)))
        elapsed = (yield from current_time()) - started
        return {"mode": "sequential", "calls": calls, "elapsed": round(elapsed, 4)}

    @routes.error_handler(ClientTimeout)
    def upstream_timeout(request, exc):
        return {"error": f"upstream timed out: {exc.message}", "upstream": exc.url}, 504

    @routes.error_handler(HTTPStatusError)
    def upstream_status(request, exc):
        return {"error": f"upstream answered {exc.response.status_code}",
                "upstream": exc.url}, 502

    @routes.error_handler(ClientError)
    def upstream_failed(request, exc):
        return {"error": f"upstream failed: {exc.message}", "upstream": exc.url}, 502

    return routes


def _params(request):
    delay = request.query.get("delay")
    return {"delay": delay} if delay is not None else None


backend = backend_client()
routes = make_routes(backend)
BACKEND_URL = backend.base_url
