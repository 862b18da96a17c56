"""apps/tfb.py's routes plus two that wait on the database, for the waits
benchmark::

    DATABASE_URL=postgresql://... corofw run benchmarks.peers.corofw_waits:routes

``/sleep?seconds=S`` runs ``SELECT pg_sleep(S)``; ``/sleep-gather?seconds=S&count=N``
runs N of them at once through ``gather`` (each on its own connection of the pool).
"""

from __future__ import annotations

import os

from apps.tfb import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, SERVER, make_routes
from corofw import Response, gather
from corofw.data import Redis, pg

db = pg.Pool(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL), min_size=0,
             max_size=int(os.environ.get("DATABASE_POOL_SIZE", "100")))
routes = make_routes(db, Redis(os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)))


def pg_sleep(seconds: float):
    return (yield from db.fetchval("SELECT pg_sleep($1)", seconds))


@routes.get("/sleep")
def sleep(request):
    yield from pg_sleep(float(request.query.get("seconds", "1")))
    return Response.json({"slept": True}, headers=SERVER)


@routes.get("/sleep-gather")
def sleep_gather(request):
    seconds = float(request.query.get("seconds", "1"))
    count = int(request.query.get("count", "10"))
    yield from gather(*(pg_sleep(seconds) for _ in range(count)))
    return Response.json({"slept": count}, headers=SERVER)
