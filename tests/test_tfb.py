"""The TechEmpower app (apps/tfb.py) against real PostgreSQL and Redis:
every rule of each test type."""

from __future__ import annotations

import re

import httpx
import pytest

from apps.tfb import ADDITIONAL_FORTUNE, FORTUNES, create_schema, make_routes, query_count
from corofw import run
from corofw.data import Redis, pg
from corofw.testing import serve_in_thread

pytestmark = pytest.mark.usefixtures("no_leaks")

COUNTS = [(None, 1), ("", 1), ("foo", 1), ("0", 1), ("-3", 1), ("1", 1), ("7", 7),
          ("500", 500), ("501", 500), ("1e3", 1)]


@pytest.fixture
def app(pg_dsn, redis_url):
    """An HTTP client for the app, served on a fresh schema and an empty cache."""
    run(create_schema(pg_dsn))
    pool = pg.Pool(pg_dsn, min_size=0, max_size=8)
    cache = Redis(redis_url)
    try:
        with serve_in_thread(make_routes(pool, cache)) as server, \
                httpx.Client(base_url=server.url) as client:
            yield client
    finally:
        run(pool.close())
        cache.close()


def worlds_in_db(dsn, ids):
    def main():
        conn = yield from pg.connect(dsn)
        with conn:
            rows = yield from conn.fetch(
                "SELECT id, randomnumber FROM world WHERE id = ANY($1)", list(ids))
            return {row[0]: row[1] for row in rows}

    return run(main())


def check_common(response, content_type):
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["server"] and response.headers["date"]
    assert int(response.headers["content-length"]) == len(response.content)


def check_worlds(items, count, dsn):
    assert isinstance(items, list) and len(items) == count
    for item in items:
        assert set(item) == {"id", "randomNumber"}
        assert 1 <= item["id"] <= 10000 and 1 <= item["randomNumber"] <= 10000
    stored = worlds_in_db(dsn, [item["id"] for item in items])
    assert {item["id"]: item["randomNumber"] for item in items} == stored


def test_the_schema_is_the_standard_one(pg_dsn):
    run(create_schema(pg_dsn))

    def main():
        conn = yield from pg.connect(pg_dsn)
        with conn:
            return (yield from conn.pipeline(
                pg.Batch().fetchval("SELECT count(*) FROM world")
                .fetchval("SELECT min(randomnumber) >= 1 AND max(randomnumber) <= 10000 "
                          "FROM world")
                .fetch("SELECT id, message FROM fortune ORDER BY id")))

    worlds, in_range, fortunes = run(main())
    assert worlds == 10000 and in_range is True
    assert [tuple(row) for row in fortunes] == list(enumerate(FORTUNES, 1))


def test_json(app):
    response = app.get("/json")
    check_common(response, "application/json")
    assert response.json() == {"message": "Hello, World!"}


def test_plaintext(app):
    response = app.get("/plaintext")
    check_common(response, "text/plain")
    assert response.content == b"Hello, World!"


def test_single_query(app, pg_dsn):
    response = app.get("/db")
    check_common(response, "application/json")
    item = response.json()
    assert isinstance(item, dict)
    check_worlds([item], 1, pg_dsn)


@pytest.mark.parametrize("raw, count", COUNTS)
def test_query_count_rules(raw, count):
    assert query_count(raw) == count


@pytest.mark.parametrize("raw, count", [(None, 1), ("foo", 1), ("0", 1), ("20", 20),
                                        ("501", 500)])
def test_multiple_queries(app, pg_dsn, raw, count):
    response = app.get("/queries", params={} if raw is None else {"queries": raw})
    check_common(response, "application/json")
    check_worlds(response.json(), count, pg_dsn)


def test_fortunes(app):
    response = app.get("/fortunes")
    check_common(response, "text/html; charset=utf-8")
    page = response.content.decode("utf-8")
    assert page.startswith("<!DOCTYPE html><html><head><title>Fortunes</title></head>")
    rows = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td></tr>", page)
    assert len(rows) == len(FORTUNES) + 1
    messages = [message for _, message in rows]
    assert ("0", ADDITIONAL_FORTUNE) in rows
    unescaped = [m.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
                 .replace("&#x27;", "'").replace("&amp;", "&") for m in messages]
    assert unescaped == sorted(unescaped)
    assert sorted(unescaped) == sorted([*FORTUNES, ADDITIONAL_FORTUNE])
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;This should not be displayed" in page
    assert "フレームワークのベンチマーク" in page


@pytest.mark.parametrize("raw, count", [(None, 1), ("foo", 1), ("15", 15), ("501", 500)])
def test_updates(app, pg_dsn, raw, count):
    before = worlds_in_db(pg_dsn, range(1, 10001))
    response = app.get("/updates", params={} if raw is None else {"queries": raw})
    check_common(response, "application/json")
    items = response.json()
    check_worlds(items, count, pg_dsn)  # what it answered is what is stored now
    after = worlds_in_db(pg_dsn, range(1, 10001))
    changed = {i for i in after if after[i] != before[i]}
    assert changed <= {item["id"] for item in items}


def test_cached_queries(app, pg_dsn, redis_url):
    for raw, count in [(None, 1), ("foo", 1), ("30", 30), ("501", 500)]:
        response = app.get("/cached-queries", params={} if raw is None else {"count": raw})
        check_common(response, "application/json")
        check_worlds(response.json(), count, pg_dsn)

    def cached_keys():
        cache = Redis(redis_url)
        with cache:
            return (yield from cache.execute("DBSIZE"))

    assert 500 <= run(cached_keys()) <= 10000  # filled on the way
    again = app.get("/cached-queries", params={"count": 500})  # mostly from the cache now
    check_worlds(again.json(), 500, pg_dsn)


def test_the_create_db_command(pg_dsn):
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, DATABASE_URL=pg_dsn, PYTHONPATH=root)
    done = subprocess.run([sys.executable, "-m", "apps.tfb", "create-db"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "world and fortune created" in done.stdout
    wrong = subprocess.run([sys.executable, "-m", "apps.tfb"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "usage" in wrong.stderr
