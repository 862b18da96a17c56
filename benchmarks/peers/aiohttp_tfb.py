"""The TechEmpower database tests on aiohttp + asyncpg, same queries as
apps/tfb.py, one process: ``python aiohttp_tfb.py PORT``.

The asyncpg pool holds ``DATABASE_POOL_SIZE`` connections (opened at
start); asyncpg prepares and caches each statement per connection.
``/sleep?seconds=S`` runs ``SELECT pg_sleep(S)``, for the waits benchmark.
"""

import html
import os
import random
import sys

import asyncpg
from aiohttp import web

DATABASE_URL = os.environ.get(
    "DATABASE_URL", "postgresql://benchmarkdbuser:benchmarkdbpass@127.0.0.1/hello_world")
POOL_SIZE = int(os.environ.get("DATABASE_POOL_SIZE", "32"))
WORLD_ROWS = 10000
SELECT_WORLD = "SELECT id, randomnumber FROM world WHERE id = $1"
UPDATE_WORLD = "UPDATE world SET randomnumber = $1 WHERE id = $2"
SELECT_FORTUNES = "SELECT id, message FROM fortune"
ADDITIONAL_FORTUNE = "Additional fortune added at request time."
FORTUNES_HEAD = ("<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
                 "<tr><th>id</th><th>message</th></tr>")
FORTUNES_TAIL = "</table></body></html>"
SERVER = {"Server": "aiohttp"}


def query_count(raw):
    try:
        return min(max(int(raw), 1), 500)
    except (TypeError, ValueError):
        return 1


def random_ids(count):
    return sorted(random.sample(range(1, WORLD_ROWS + 1), count))


async def single_query(request):
    async with request.app["pool"].acquire() as conn:
        row = await conn.fetchrow(SELECT_WORLD, random.randint(1, WORLD_ROWS))
    return web.json_response({"id": row[0], "randomNumber": row[1]}, headers=SERVER)


async def queries(request):
    ids = random_ids(query_count(request.query.get("queries")))
    async with request.app["pool"].acquire() as conn:
        rows = [await conn.fetchrow(SELECT_WORLD, world_id) for world_id in ids]
    return web.json_response([{"id": row[0], "randomNumber": row[1]} for row in rows],
                             headers=SERVER)


async def fortunes(request):
    async with request.app["pool"].acquire() as conn:
        rows = await conn.fetch(SELECT_FORTUNES)
    items = [(row[1], row[0]) for row in rows]
    items.append((ADDITIONAL_FORTUNE, 0))
    items.sort()
    body = "".join(f"<tr><td>{fortune_id}</td><td>{html.escape(message)}</td></tr>"
                   for message, fortune_id in items)
    return web.Response(text=FORTUNES_HEAD + body + FORTUNES_TAIL,
                        content_type="text/html", charset="utf-8", headers=SERVER)


async def updates(request):
    ids = random_ids(query_count(request.query.get("queries")))
    async with request.app["pool"].acquire() as conn:
        rows = [await conn.fetchrow(SELECT_WORLD, world_id) for world_id in ids]
        worlds = [(row[0], random.randint(1, WORLD_ROWS)) for row in rows]
        await conn.executemany(UPDATE_WORLD, [(number, world_id) for world_id, number in worlds])
    return web.json_response([{"id": world_id, "randomNumber": number}
                              for world_id, number in worlds], headers=SERVER)


async def sleep(request):
    async with request.app["pool"].acquire() as conn:
        await conn.fetchval("SELECT pg_sleep($1)", float(request.query.get("seconds", "1")))
    return web.json_response({"slept": True}, headers=SERVER)


async def database_pool(app):
    async with asyncpg.create_pool(DATABASE_URL, min_size=POOL_SIZE,
                                   max_size=POOL_SIZE) as pool:
        app["pool"] = pool
        yield


app = web.Application()
app.cleanup_ctx.append(database_pool)
app.router.add_get("/db", single_query)
app.router.add_get("/queries", queries)
app.router.add_get("/fortunes", fortunes)
app.router.add_get("/updates", updates)
app.router.add_get("/sleep", sleep)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
