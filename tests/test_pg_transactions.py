"""Transactions (commit, rollback on errors and on cancellation, isolation)
and LISTEN/NOTIFY delivered to a waiting task."""

from __future__ import annotations

import pytest

from corofw import Event, TaskTimeout, gather, run, sleep, spawn
from corofw.data import pg

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.fixture
def table(pg_dsn):
    """A fresh ``accounts`` table, dropped at the end."""

    def setup():
        db = yield from pg.connect(pg_dsn)
        with db:
            yield from db.execute("DROP TABLE IF EXISTS accounts; "
                                  "CREATE TABLE accounts (name text PRIMARY KEY, balance int)")

    def teardown():
        db = yield from pg.connect(pg_dsn)
        with db:
            yield from db.execute("DROP TABLE accounts")

    run(setup())
    yield "accounts"
    run(teardown())


def names(dsn):
    def main():
        db = yield from pg.connect(dsn)
        with db:
            return sorted(r[0] for r in (yield from db.fetch("SELECT name FROM accounts")))

    return run(main())


def test_a_transaction_commits_what_its_work_did(pg_dsn, table):
    def work(db, name):
        yield from db.execute("INSERT INTO accounts VALUES ($1, 10)", name)
        return (yield from db.fetchval("SELECT count(*) FROM accounts"))

    def main():
        db = yield from pg.connect(pg_dsn)
        with db:
            count = yield from db.transaction(work, "ann")
            return count, db.in_transaction

    assert run(main()) == (1, False)
    assert names(pg_dsn) == ["ann"]


def test_an_exception_rolls_back_and_propagates(pg_dsn, table):
    def work(db):
        yield from db.execute("INSERT INTO accounts VALUES ('bob', 1)")
        raise ValueError("changed my mind")

    def main():
        db = yield from pg.connect(pg_dsn)
        with db:
            with pytest.raises(ValueError, match="changed my mind"):
                yield from db.transaction(work)
            return db.in_transaction, (yield from db.fetchval("SELECT 1"))

    assert run(main()) == (False, 1)
    assert names(pg_dsn) == []


def test_a_failed_statement_rolls_the_transaction_back(pg_dsn, table):
    def work(db):
        yield from db.execute("INSERT INTO accounts VALUES ('cy', 1)")
        yield from db.execute("INSERT INTO accounts VALUES ('cy', 2)")

    def swallowing(db):
        yield from db.execute("INSERT INTO accounts VALUES ('dee', 1)")
        try:
            yield from db.execute("INSERT INTO accounts VALUES ('dee', 2)")
        except pg.UniqueViolation:
            pass  # the transaction is still failed: COMMIT cannot succeed

    def main():
        db = yield from pg.connect(pg_dsn)
        with db:
            with pytest.raises(pg.UniqueViolation):
                yield from db.transaction(work)
            with pytest.raises(pg.InFailedTransaction):
                yield from db.transaction(swallowing)
            return db.in_transaction

    assert run(main()) is False
    assert names(pg_dsn) == []


def test_a_cancelled_transaction_is_rolled_back_without_waiting(pg_dsn, table):
    started = Event()

    def work(db):
        yield from db.execute("INSERT INTO accounts VALUES ('eve', 1)")
        started.set()
        yield from db.execute("SELECT pg_sleep(30)")

    def idle_work(db):
        yield from db.execute("INSERT INTO accounts VALUES ('fay', 1)")
        started.set()
        yield from sleep(30)  # cancelled while no query runs

    def main():
        db = yield from pg.connect(pg_dsn)
        with db:
            outcomes = []
            for fn in (work, idle_work):
                started.clear()
                task = yield from spawn(db.transaction(fn))
                yield from started.wait()
                yield from sleep(0.05)
                task.cancel()
                try:
                    yield from task.join()
                except BaseException as exc:
                    outcomes.append(type(exc).__name__)
                # at once another transaction: it waits for the rollback, then runs
                outcomes.append((yield from db.transaction(count)))
                outcomes.append(db.in_transaction)
            return outcomes

    def count(db):
        return (yield from db.fetchval("SELECT count(*) FROM accounts"))

    assert run(main()) == ["Cancelled", 0, False, "Cancelled", 0, False]
    assert names(pg_dsn) == []


def test_serializable_conflicts_raise_serialization_failure(pg_dsn, table):
    both_read = Event()
    readers = []

    def transfer(db, name):
        total = yield from db.fetchval("SELECT coalesce(sum(balance), 0) FROM accounts")
        readers.append(name)
        if len(readers) == 2:
            both_read.set()
        yield from both_read.wait()
        yield from db.execute("INSERT INTO accounts VALUES ($1, $2)", name, total + 1)
        return name

    def attempt(pool, name):
        try:
            return (yield from pool.transaction(transfer, name, isolation="serializable"))
        except pg.SerializationFailure as exc:
            assert exc.sqlstate == "40001"
            return "conflict"

    def main():
        pool = pg.Pool(pg_dsn, min_size=2, max_size=2)
        results = yield from gather(attempt(pool, "gus"), attempt(pool, "hal"))
        yield from pool.close()
        return sorted(results)

    assert run(main()) in (["conflict", "gus"], ["conflict", "hal"])


def test_transactions_do_not_nest_and_options_are_checked(pg_dsn):
    def select(db):
        yield from db.execute("SELECT 1")

    def inner(db):
        yield from db.transaction(select)

    def write(db):
        yield from db.execute("CREATE TEMP TABLE t (a int)")

    def main():
        db = yield from pg.connect(pg_dsn)
        with db:
            with pytest.raises(pg.InterfaceError, match="do not nest"):
                yield from db.transaction(inner)
            with pytest.raises(ValueError, match="isolation"):
                yield from db.transaction(write, isolation="chaotic")
            with pytest.raises(pg.QueryError) as info:
                yield from db.transaction(write, readonly=True)
            with pytest.raises(TypeError, match="generator function"):
                yield from db.transaction(lambda db: 5)
            return info.value.sqlstate, db.in_transaction

    assert run(main()) == ("25006", False)


def test_a_notification_reaches_the_waiting_task(pg_dsn):
    def main():
        listener = yield from pg.connect(pg_dsn)
        sender = yield from pg.connect(pg_dsn)
        with listener, sender:
            yield from listener.listen("orders placed")  # quoted: any name works
            waiting = yield from spawn(listener.next_notification())
            yield from sleep(0.05)
            yield from sender.notify("orders placed", "order 42")
            note = yield from waiting.join()
            return note, sender.server_pid

    note, sender_pid = run(main())
    assert note == ("orders placed", "order 42", sender_pid)
    assert note.channel == "orders placed" and note.payload == "order 42"


def test_notifications_arriving_during_queries_are_kept_in_order(pg_dsn):
    def main():
        listener = yield from pg.connect(pg_dsn)
        sender = yield from pg.connect(pg_dsn)
        with listener, sender:
            yield from listener.listen("jobs")
            for i in range(3):
                yield from sender.execute(f"NOTIFY jobs, 'job {i}'")
            yield from listener.fetchval("SELECT pg_sleep(0.05)")  # they arrive meanwhile
            got = []
            for _ in range(3):
                got.append((yield from listener.next_notification(timeout=2)))
            with pytest.raises(TaskTimeout):
                yield from listener.next_notification(timeout=0.05)
            yield from listener.unlisten("jobs")
            yield from sender.execute("NOTIFY jobs, 'unheard'")
            with pytest.raises(TaskTimeout):
                yield from listener.next_notification(timeout=0.1)
            return [n.payload for n in got], (yield from listener.fetchval("SELECT 1"))

    assert run(main()) == (["job 0", "job 1", "job 2"], 1)


def test_received_notifications_are_taken_without_waiting(pg_dsn):
    def main():
        listener = yield from pg.connect(pg_dsn)
        sender = yield from pg.connect(pg_dsn)
        with listener, sender:
            yield from listener.listen("jobs")
            assert listener.received_notifications() == []
            for i in range(5):
                yield from sender.execute(f"NOTIFY jobs, 'job {i}'")
            yield from sleep(0.2)  # in the socket's buffer, read by nobody yet
            first = listener.received_notifications(limit=2)
            rest = listener.received_notifications()
            return [n.payload for n in first], [n.payload for n in rest]

    assert run(main()) == (["job 0", "job 1"], ["job 2", "job 3", "job 4"])


def test_next_notification_needs_listen(pg_dsn):
    def main():
        db = yield from pg.connect(pg_dsn)
        with db:
            yield from db.next_notification()

    with pytest.raises(pg.InterfaceError, match="listen"):
        run(main())
