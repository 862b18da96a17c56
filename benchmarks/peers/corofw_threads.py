"""The TechEmpower database tests on corofw the way a user writes them
without an event-loop database client: sync psycopg called through
``run_in_thread`` (the kernel's default pool of ``min(32, cores + 4)``
threads), one connection per thread. Same queries as apps/tfb.py::

    DATABASE_URL=postgresql://... corofw run benchmarks.peers.corofw_threads:routes

``/sleep?seconds=S`` runs ``SELECT pg_sleep(S)``, for the waits benchmark.
"""

from __future__ import annotations

import html
import os
import random
import threading

import psycopg

from apps.tfb import (
    ADDITIONAL_FORTUNE,
    DEFAULT_DATABASE_URL,
    FORTUNES_HEAD,
    FORTUNES_TAIL,
    SERVER,
    WORLD_ROWS,
    query_count,
    random_ids,
)
from corofw import Response, Router, run_in_thread

DATABASE_URL = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
SELECT_WORLD = "SELECT id, randomnumber FROM world WHERE id = %s"
UPDATE_WORLD = "UPDATE world SET randomnumber = %s WHERE id = %s"
SELECT_FORTUNES = "SELECT id, message FROM fortune"

_local = threading.local()


def connection() -> psycopg.Connection:
    """This thread's connection, opened on its first use."""
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(DATABASE_URL, autocommit=True)
    return conn


def read_worlds(ids: list[int]) -> list[tuple[int, int]]:
    conn = connection()
    return [conn.execute(SELECT_WORLD, (world_id,)).fetchone() for world_id in ids]


def update_worlds(ids: list[int]) -> list[tuple[int, int]]:
    conn = connection()
    worlds = [(conn.execute(SELECT_WORLD, (world_id,)).fetchone()[0],
               random.randint(1, WORLD_ROWS)) for world_id in ids]
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(UPDATE_WORLD, [(number, world_id) for world_id, number in worlds])
    return worlds


def fetch_fortunes() -> list[tuple[int, str]]:
    return connection().execute(SELECT_FORTUNES).fetchall()


def pg_sleep(seconds: float) -> None:
    connection().execute("SELECT pg_sleep(%s)", (seconds,))


def _json(data):
    return Response.json(data, headers=SERVER)


routes = Router()


@routes.get("/db")
def single_query(request):
    rows = yield from run_in_thread(read_worlds, [random.randint(1, WORLD_ROWS)])
    return _json({"id": rows[0][0], "randomNumber": rows[0][1]})


@routes.get("/queries")
def queries(request):
    ids = random_ids(query_count(request.query.get("queries")))
    rows = yield from run_in_thread(read_worlds, ids)
    return _json([{"id": row[0], "randomNumber": row[1]} for row in rows])


@routes.get("/fortunes")
def fortunes(request):
    rows = yield from run_in_thread(fetch_fortunes)
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
    worlds = yield from run_in_thread(update_worlds, ids)
    return _json([{"id": world_id, "randomNumber": number} for world_id, number in worlds])


@routes.get("/sleep")
def sleep(request):
    yield from run_in_thread(pg_sleep, float(request.query.get("seconds", "1")))
    return _json({"slept": True})
