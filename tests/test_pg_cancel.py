"""Cancelling a task or a timeout stops its query on the server too, and
the connection comes back only once it is clean."""

from __future__ import annotations

import time

import pytest

from corofw import gather, run, sleep, spawn
from corofw.data import pg

pytestmark = pytest.mark.usefixtures("no_leaks")


def running(admin, marker):
    """Coroutine: how many server sessions are running a query containing
    ``marker`` (other than the admin's own)."""
    return admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
        "AND query LIKE $1 AND pid <> pg_backend_pid()", f"%{marker}%")


def wait_until_gone(admin, marker, limit=2.0):
    """Coroutine: seconds until no session runs ``marker`` (fails after ``limit``)."""
    started = time.monotonic()
    while (yield from running(admin, marker)):
        assert time.monotonic() - started < limit, f"{marker} still runs on the server"
        yield from sleep(0.01)
    return time.monotonic() - started


def wait_until_running(admin, marker):
    started = time.monotonic()
    while not (yield from running(admin, marker)):
        assert time.monotonic() - started < 5, f"{marker} never started"
        yield from sleep(0.005)


def test_cancelling_the_task_cancels_the_query_on_the_server(pg_dsn):
    def main():
        db = yield from pg.connect(pg_dsn)
        admin = yield from pg.connect(pg_dsn)
        with db, admin:
            task = yield from spawn(db.fetchval("SELECT pg_sleep(30) /* cancel-me-1 */"))
            yield from wait_until_running(admin, "cancel-me-1")
            cancelled_at = time.monotonic()
            task.cancel()
            try:
                yield from task.join()
            except BaseException as exc:
                outcome = type(exc).__name__
            returned_after = time.monotonic() - cancelled_at
            gone_after = yield from wait_until_gone(admin, "cancel-me-1")
            after = yield from db.fetchval("SELECT 'clean'")  # waits for the recovery
            return outcome, returned_after, gone_after, after, db.in_transaction

    outcome, returned_after, gone_after, after, in_transaction = run(main())
    assert outcome == "Cancelled"
    assert returned_after < 0.1  # the task did not wait for the server
    assert gone_after < 1.0
    assert after == "clean" and not in_transaction


def test_a_query_timeout_cancels_it_on_the_server(pg_dsn):
    def main():
        db = yield from pg.connect(pg_dsn)
        admin = yield from pg.connect(pg_dsn)
        with db, admin:
            started = time.monotonic()
            with pytest.raises(pg.QueryTimeout) as info:
                yield from db.fetchval("SELECT pg_sleep(30) /* timeout-me */", timeout=0.2)
            took = time.monotonic() - started
            assert isinstance(info.value, TimeoutError)
            assert info.value.query == "SELECT pg_sleep(30) /* timeout-me */"
            gone_after = yield from wait_until_gone(admin, "timeout-me")
            return took, gone_after, (yield from db.fetchval("SELECT 7"))

    took, gone_after, after = run(main())
    assert 0.2 <= took < 0.5 and gone_after < 1.0 and after == 7


def test_the_connection_default_query_timeout(pg_dsn):
    def main():
        db = yield from pg.connect(pg_dsn, query_timeout=0.1)
        with db:
            with pytest.raises(pg.QueryTimeout):
                yield from db.execute("SELECT pg_sleep(10)")
            return (yield from db.fetchval("SELECT 1", timeout=5))

    assert run(main()) == 1


def test_a_cancelled_pipeline_is_cancelled_and_drained(pg_dsn):
    def main():
        db = yield from pg.connect(pg_dsn)
        admin = yield from pg.connect(pg_dsn)
        with db, admin:
            batch = pg.Batch().fetchval("SELECT 1").execute(
                "SELECT pg_sleep(30) /* pipe-me */").fetchval("SELECT 3")
            with pytest.raises(pg.QueryTimeout):
                yield from db.pipeline(batch, timeout=0.3)
            gone_after = yield from wait_until_gone(admin, "pipe-me")
            again = yield from db.pipeline(pg.Batch().fetchval("SELECT 4").fetchval("SELECT 5"))
            return gone_after, again

    gone_after, again = run(main())
    assert gone_after < 1.0 and again == [4, 5]


def test_a_failing_sibling_in_gather_cancels_the_others_queries(pg_dsn):
    def main():
        pool = pg.Pool(pg_dsn, min_size=0, max_size=4)
        admin = yield from pg.connect(pg_dsn)
        with admin:
            def fail_soon():
                yield from sleep(0.2)
                raise ValueError("boom")

            with pytest.raises(ValueError):
                yield from gather(
                    pool.fetchval("SELECT pg_sleep(30) /* sibling-a */"),
                    pool.fetchval("SELECT pg_sleep(30) /* sibling-b */"),
                    fail_soon())
            gone_after = yield from wait_until_gone(admin, "sibling-")
            value = yield from pool.fetchval("SELECT 9")
        yield from pool.close()
        return gone_after, value

    gone_after, value = run(main())
    assert gone_after < 1.0 and value == 9


def test_interrupted_while_sending_closes_the_connection_and_still_cancels(pg_server):
    # Over a unix socket the server, busy in pg_sleep, stops reading: the big
    # second query cannot be sent whole. Cancelling then leaves the protocol
    # mid-message, so the connection is closed; the sleep is cancelled too.
    big = "x" * (8 << 20)

    def main():
        db = yield from pg.connect(pg_server.socket_dsn)
        admin = yield from pg.connect(pg_server.dsn)
        with db, admin:
            batch = pg.Batch().execute("SELECT pg_sleep(30) /* mid-send */")
            batch.fetchval("SELECT length($1::text)", big)
            task = yield from spawn(db.pipeline(batch))
            yield from wait_until_running(admin, "mid-send")
            task.cancel()
            try:
                yield from task.join()
            except BaseException:
                pass
            closed = db.closed
            gone_after = yield from wait_until_gone(admin, "mid-send")
            return closed, gone_after

    closed, gone_after = run(main())
    assert closed is True and gone_after < 1.0


def test_closing_a_connection_under_a_waiting_query_raises_connection_lost(pg_dsn):
    def main():
        db = yield from pg.connect(pg_dsn)
        admin = yield from pg.connect(pg_dsn)
        with admin:
            task = yield from spawn(db.fetchval("SELECT pg_sleep(0.5) /* closed-under */"))
            yield from wait_until_running(admin, "closed-under")
            db.close()
            with pytest.raises(pg.ConnectionLost):
                yield from task.join()
            yield from wait_until_gone(admin, "closed-under")

    run(main())


def test_queries_in_flight_when_the_kernel_stops_are_cancelled_on_the_server(pg_dsn):
    def main():
        db = yield from pg.connect(pg_dsn)
        admin = yield from pg.connect(pg_dsn)
        yield from spawn(db.fetchval("SELECT pg_sleep(30) /* at-shutdown */"))
        yield from wait_until_running(admin, "at-shutdown")
        admin.close()
        return db  # main ends: the kernel cancels the query's task

    db = run(main())
    db.close()

    def check():
        admin = yield from pg.connect(pg_dsn)
        with admin:
            return (yield from wait_until_gone(admin, "at-shutdown"))

    assert run(check()) < 1.0


def test_with_an_older_libpq_the_blocking_cancel_runs_in_a_thread(pg_dsn, monkeypatch):
    from corofw.data import pg_wire

    monkeypatch.setattr(pg_wire, "NONBLOCKING_CANCEL", False)  # as with libpq < 17

    def main():
        db = yield from pg.connect(pg_dsn)
        admin = yield from pg.connect(pg_dsn)
        with db, admin:
            with pytest.raises(pg.QueryTimeout):
                yield from db.fetchval("SELECT pg_sleep(30) /* old-libpq */", timeout=0.2)
            gone_after = yield from wait_until_gone(admin, "old-libpq")
            return gone_after, (yield from db.fetchval("SELECT 8"))

    gone_after, after = run(main())
    assert gone_after < 1.0 and after == 8


def test_a_query_abandoned_as_the_kernel_stops_is_still_cancelled(pg_dsn):
    # main's own query times out and main returns at once: its recovery is
    # cancelled by the kernel's shutdown before it runs a line; the cancel
    # request must go out all the same, and nothing may leak.
    def main():
        db = yield from pg.connect(pg_dsn)
        try:
            yield from db.fetchval("SELECT pg_sleep(30) /* abandoned */", timeout=0.2)
        except pg.QueryTimeout:
            pass
        return db

    db = run(main())
    assert db.closed

    def check():
        admin = yield from pg.connect(pg_dsn)
        with admin:
            return (yield from wait_until_gone(admin, "abandoned"))

    assert run(check()) < 1.0
