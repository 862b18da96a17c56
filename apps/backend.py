"""A stand-in backend API: ``GET /api/{i}`` answers JSON after a delay.

The delay is 1.0 s unless ``BACKEND_DELAY`` or ``?delay=`` says otherwise.
While it waits, the backend sleeps in epoll like any corofw app, so it
serves thousands of these calls at once.
"""

import os

from corofw import HTTPError, Router, current_time, sleep

DEFAULT_DELAY = float(os.environ.get("BACKEND_DELAY", "1.0"))
MAX_DELAY = 60.0

routes = Router()


@routes.get("/api/{i:int}")
def api(request, i):
    delay = _delay(request.query.get("delay"))
    started = yield from current_time()
    yield from sleep(delay)
    waited = (yield from current_time()) - started
    return {"id": i, "value": i * i, "delay": delay, "waited": round(waited, 4)}


def _delay(text):
    if text is None:
        return DEFAULT_DELAY
    try:
        delay = float(text)
    except ValueError:
        raise HTTPError(400, {"error": f"delay must be a number of seconds, got {text!r}"})
    if not 0 <= delay <= MAX_DELAY:
        raise HTTPError(400, {"error": f"delay must be between 0 and {MAX_DELAY:g} seconds"})
    return delay
