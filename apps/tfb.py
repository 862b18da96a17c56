"""The TechEmpower Framework Benchmarks app: ``corofw run apps.tfb:routes``.

The six test types, to their published rules, plus one served from Redis:

==========================  ==================================================
``/json``                   ``{"message": "Hello, World!"}``
``/plaintext``              ``Hello, World!``
``/db``                     one random ``world`` row
``/queries?queries=N``      N random rows, one query each (sent in one
                            round trip, in libpq's pipeline mode)
``/fortunes``               every ``fortune`` row plus one added at request
                            time, sorted by message, as an escaped HTML table
``/updates?queries=N``      N random rows read, given new random numbers,
                            written back (one round trip each way)
``/cached-queries?count=N`` N random rows from a Redis cache of ``world``
==========================  ==================================================

N is clamped to 1..500; anything that is not an integer counts as 1. The
database is ``DATABASE_URL`` (a ``postgresql://`` URL) and the cache
``REDIS_URL``; ``python -m apps.tfb create-db`` (``make tfb-db``) creates
and fills the standard schema. Every response carries ``Server`` and
``Date`` headers, as the rules require.
"""

from __future__ import annotations

import html
import os
import random
import sys
from typing import Any

from corofw import Coro, Response, Router, run
from corofw.data import Redis, pg

DEFAULT_DATABASE_URL = "postgresql://benchmarkdbuser:benchmarkdbpass@127.0.0.1/hello_world"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
WORLD_ROWS = 10000
SERVER = [("server", "corofw")]

SELECT_WORLD = "SELECT id, randomnumber FROM world WHERE id = $1"
UPDATE_WORLD = "UPDATE world SET randomnumber = $1 WHERE id = $2"
SELECT_FORTUNES = "SELECT id, message FROM fortune"
ADDITIONAL_FORTUNE = "Additional fortune added at request time."
FORTUNES_HEAD = ("<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
                 "<tr><th>id</th><th>message</th></tr>")
FORTUNES_TAIL = "</table></body></html>"

FORTUNES = [
    "fortune: No such file or directory",
    "A computer scientist is someone who fixes things that aren't broken.",
    "After enough decimal places, nobody gives a damn.",
    "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1",
    "A computer program does what you tell it to do, not what you want it to do.",
    "Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen",
    "Any program that runs right is obsolete.",
    "A list is only as strong as its weakest link. — Donald Knuth",
    "Feature: A bug with seniority.",
    "Computers make very fast, very accurate mistakes.",
    '<script>alert("This should not be displayed in a browser alert box.");</script>',
    "フレームワークのベンチマーク",
]


def query_count(raw: str | None) -> int:
    """The ``queries``/``count`` parameter as the rules read it: an integer
    clamped to 1..500, and 1 for anything else (missing, empty, ``foo``)."""
    try:
        count = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 1
    return min(max(count, 1), 500)


def random_ids(count: int) -> list[int]:
    """``count`` distinct random world ids, ascending (so that concurrent
    updates lock rows in one order and never deadlock)."""
    return sorted(random.sample(range(1, WORLD_ROWS + 1), count))


def _json(data: Any) -> Response:
    return Response.json(data, headers=SERVER)


def make_routes(db: pg.Pool, cache: Redis) -> Router:
    """The app, on the PostgreSQL pool ``db`` and the Redis client ``cache``."""
    routes = Router()

    @routes.get("/json")
    def json_test(request):
        return _json({"message": "Hello, World!"})

    @routes.get("/plaintext")
    def plaintext(request):
        return Response(b"Hello, World!", 200, SERVER, "text/plain")

    @routes.get("/db")
    def single_query(request):
        row = yield from db.fetchrow(SELECT_WORLD, random.randint(1, WORLD_ROWS))
        return _json({"id": row[0], "randomNumber": row[1]})

    def read_worlds(conn_or_pool, ids):
        batch = pg.Batch()
        for world_id in ids:
            batch.fetchrow(SELECT_WORLD, world_id)
        return (yield from conn_or_pool.pipeline(batch))

    @routes.get("/queries")
    def queries(request):
        ids = random_ids(query_count(request.query.get("queries")))
        rows = yield from read_worlds(db, ids)
        return _json([{"id": row[0], "randomNumber": row[1]} for row in rows])

    @routes.get("/fortunes")
    def fortunes(request):
        rows = yield from db.fetch(SELECT_FORTUNES)
        items = [(row[1], row[0]) for row in rows]
        items.append((ADDITIONAL_FORTUNE, 0))
        items.sort()
        body = "".join(f"<tr><td>{fortune_id}</td><td>{html.escape(message)}</td></tr>"
                       for message, fortune_id in items)
        return Response(FORTUNES_HEAD + body + FORTUNES_TAIL, 200, SERVER,
                        "text/html; charset=utf-8")

    @routes.get("/updates")
    def updates(request):
        ids = random_ids(query_count(request.query.get("queries")))
        conn = yield from db.acquire()
        with conn:
            rows = yield from read_worlds(conn, ids)
            worlds = [(row[0], random.randint(1, WORLD_ROWS)) for row in rows]
            yield from conn.executemany(UPDATE_WORLD, [(number, world_id)
                                                       for world_id, number in worlds])
        return _json([{"id": world_id, "randomNumber": number} for world_id, number in worlds])

    @routes.get("/cached-queries")
    def cached_queries(request):
        ids = random_ids(query_count(request.query.get("count")))
        cached = yield from cache.mget(*(f"world:{world_id}" for world_id in ids))
        missing = [world_id for world_id, value in zip(ids, cached, strict=True)
                   if value is None]
        found = {}
        if missing:
            rows = yield from read_worlds(db, missing)
            found = {row[0]: row[1] for row in rows}
            yield from cache.mset({f"world:{k}": v for k, v in found.items()})
        return _json([{"id": world_id, "randomNumber": int(value) if value is not None
                       else found[world_id]} for world_id, value in zip(ids, cached, strict=True)])

    return routes


def create_schema(dsn: str) -> Coro[None]:
    """(Re)create ``world`` (10,000 rows of random numbers) and ``fortune``
    (the twelve standard messages) in the database at ``dsn``."""
    conn = yield from pg.connect(dsn)
    with conn:
        yield from conn.execute(
            "DROP TABLE IF EXISTS world; DROP TABLE IF EXISTS fortune; "
            "CREATE TABLE world (id integer PRIMARY KEY, randomnumber integer NOT NULL); "
            "CREATE TABLE fortune (id integer PRIMARY KEY, message varchar(2048) NOT NULL)")
        yield from conn.executemany(
            "INSERT INTO world (id, randomnumber) VALUES ($1, $2)",
            [(i, random.randint(1, WORLD_ROWS)) for i in range(1, WORLD_ROWS + 1)])
        yield from conn.executemany(
            "INSERT INTO fortune (id, message) VALUES ($1, $2)",
            list(enumerate(FORTUNES, 1)))


def main(argv: list[str]) -> int:
    """``python -m apps.tfb create-db``: create and fill the schema at
    ``DATABASE_URL``."""
    if argv != ["create-db"]:
        print("usage: python -m apps.tfb create-db   (uses DATABASE_URL)", file=sys.stderr)
        return 2
    run(create_schema(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)))
    print("world and fortune created")
    return 0


routes = make_routes(
    pg.Pool(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL), min_size=0,
            max_size=int(os.environ.get("DATABASE_POOL_SIZE", "32"))),
    Redis(os.environ.get("REDIS_URL", DEFAULT_REDIS_URL), max_connections=64))

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
