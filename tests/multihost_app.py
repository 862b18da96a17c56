"""The app each host serves in tests/test_multihost.py:
``corofw run tests.multihost_app:routes``.

State lives in Redis (``MULTIHOST_REDIS_URL``), shared by every host, so it
does not matter which host answers. ``GET /counter`` reads the counter
(idempotent); ``POST /counter`` increments it. Both name the host that
answered (``MULTIHOST_NAME``) and the worker's PID.
"""

import os

from corofw import Redis, Router

routes = Router()
HOST = os.environ.get("MULTIHOST_NAME", "?")
redis = Redis(os.environ.get("MULTIHOST_REDIS_URL"), timeout=5.0)


@routes.on_shutdown
def close_redis():
    redis.close()


@routes.get("/counter")
def read_counter(request):
    value = yield from redis.get("counter")
    return {"host": HOST, "pid": os.getpid(), "value": int(value or 0)}


@routes.post("/counter")
def increment_counter(request):
    value = yield from redis.incr("counter")
    return {"host": HOST, "pid": os.getpid(), "value": value}
