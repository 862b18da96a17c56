"""The point of a database client on the loop: waits overlap on one core.
And a server restarted under load: typed errors, then recovery."""

from __future__ import annotations

import time

import pytest

from corofw import Client, Router, gather, run, run_in_thread, sleep, spawn
from corofw.data import pg
from corofw.testing import serve_in_thread

pytestmark = pytest.mark.usefixtures("no_leaks")

SLEEP = 0.2


def test_concurrent_requests_each_waiting_on_the_database_overlap(pg_dsn):
    # 50 tasks (requests) each run a 0.2 s query: together about 0.2 s, not 10 s.
    def main():
        pool = pg.Pool(pg_dsn, min_size=50, max_size=50)
        yield from pool.open()
        started = time.monotonic()
        results = yield from gather(*(
            pool.fetchval("SELECT pg_sleep($1::float8)::text || $2::text", SLEEP, str(i))
            for i in range(50)))
        took = time.monotonic() - started
        yield from pool.close()
        return took, results

    took, results = run(main())
    assert results == [str(i) for i in range(50)]
    assert SLEEP <= took < SLEEP * 3  # 50 x 0.2 s = 10 s if the waits did not overlap


def test_a_hundred_http_requests_each_waiting_on_the_database_overlap(pg_dsn):
    # The seed's thesis end to end: 100 concurrent requests whose handler
    # runs a 0.2 s query are served together in about 0.2 s, on one core.
    pool = pg.Pool(pg_dsn, min_size=0, max_size=100)
    app = Router()

    @app.get("/sleep")
    def sleep_in_the_database(request):
        yield from pool.execute("SELECT pg_sleep($1::float8)", float(request.query["s"]))
        return "done"

    def clients(url):
        client = Client(url, max_connections=200, max_idle_per_host=200)
        try:
            yield from gather(*(client.get("/sleep", params={"s": 0}) for _ in range(100)))
            started = time.monotonic()  # connections warm, on both sides
            responses = yield from gather(*(client.get("/sleep", params={"s": SLEEP})
                                            for _ in range(100)))
            return time.monotonic() - started, {r.text for r in responses}
        finally:
            client.close()

    try:
        with serve_in_thread(app) as server:
            took, bodies = run(clients(server.url))
    finally:
        run(pool.close())
    assert bodies == {"done"}
    assert SLEEP <= took < SLEEP * 3  # 100 x 0.2 s = 20 s if they waited in turn


def test_one_task_gathering_ten_queries_takes_about_one_query(pg_dsn):
    def main():
        pool = pg.Pool(pg_dsn, min_size=10, max_size=10)
        yield from pool.open()
        started = time.monotonic()
        yield from gather(*(pool.execute("SELECT pg_sleep($1::float8)", SLEEP)
                            for _ in range(10)))
        took = time.monotonic() - started
        yield from pool.close()
        return took

    assert SLEEP <= run(main()) < SLEEP * 2.5


def test_a_server_restarted_under_load_gives_typed_errors_then_recovers(pg_server, pg_dsn):
    """Workers query in a loop; the server is stopped (fast: sessions are
    terminated) and started again. Queries in flight fail at once with a
    typed error; while it is down, acquiring fails fast with ConnectError;
    within a second of it coming back every worker succeeds again."""
    outcomes: list[tuple[float, str, float]] = []  # (when, outcome, how long it took)
    times = {}

    def worker(pool):
        while "done" not in times:
            started = time.monotonic()
            try:
                yield from pool.fetchval("SELECT pg_sleep(0.02)")
                outcome = "ok"
            except pg.PgError as exc:
                outcome = type(exc).__name__
            now = time.monotonic()
            outcomes.append((now, outcome, now - started))
            if outcome != "ok":
                yield from sleep(0.01)  # what an app would do before retrying

    def main():
        pool = pg.Pool(pg_dsn, min_size=4, max_size=8, acquire_timeout=2)
        yield from pool.open()
        workers = []
        for _ in range(12):
            workers.append((yield from spawn(worker(pool))))
        yield from sleep(0.3)
        times["stop"] = time.monotonic()
        yield from run_in_thread(pg_server.stop)
        times["stopped"] = time.monotonic()
        yield from sleep(0.3)
        yield from run_in_thread(pg_server.start)
        times["back"] = time.monotonic()
        yield from sleep(1.5)
        times["done"] = time.monotonic()
        for task in workers:
            yield from task.join()
        yield from pool.close()

    run(main())
    kinds = {outcome for _, outcome, _ in outcomes}
    assert kinds <= {"ok", "ConnectionLost", "ConnectError"}, kinds
    assert "ConnectionLost" in kinds and "ConnectError" in kinds
    before = [o for when, o, _ in outcomes if when < times["stop"]]
    assert before and set(before) == {"ok"}
    failures = [(when, took) for when, o, took in outcomes if o != "ok"]
    assert all(took < 1.0 for _, took in failures)  # fast, not hung
    recovered = [o for when, o, _ in outcomes if when > times["back"] + 1.0]
    assert recovered and set(recovered) == {"ok"}
