"""The PostgreSQL client against a real server: queries, parameters bound
by the server, records, prepared statements, pipelines, typed errors."""

from __future__ import annotations

import datetime
import decimal
import uuid

import pytest

from corofw import run
from corofw.data import pg
from corofw.kernel.traps import EITHER, READ

pytestmark = pytest.mark.usefixtures("no_leaks")


def with_connection(dsn, work, **options):
    """Run ``work(db)`` on a fresh connection, closed at the end."""

    def main():
        db = yield from pg.connect(dsn, **options)
        with db:
            return (yield from work(db))

    return run(main())


def count_fd_waits(coro):
    """Drive ``coro`` inside a task, counting its waits for its socket:
    ``waits`` in all, ``either`` for the readwrite_wait of a stuck flush."""
    counts = {"waits": 0, "either": 0}

    def counted():
        value, error = None, None
        while True:
            try:
                trap = coro.throw(error) if error is not None else coro.send(value)
            except StopIteration as stop:
                return stop.value
            if trap[0] is READ or trap[0] is EITHER:
                counts["waits"] += 1
                counts["either"] += trap[0] is EITHER
            try:
                value, error = (yield trap), None
            except BaseException as exc:  # noqa: B902 - handed back to the coroutine
                value, error = None, exc

    return counted(), counts


def test_fetch_fetchrow_fetchval_execute(pg_dsn):
    def work(db):
        rows = yield from db.fetch("SELECT g AS n, g * 2 AS twice FROM generate_series(1, $1) g", 3)
        row = yield from db.fetchrow("SELECT 1 AS a, 'x' AS b")
        none = yield from db.fetchrow("SELECT 1 WHERE false")
        value = yield from db.fetchval("SELECT $1::int + 1", 41)
        second = yield from db.fetchval("SELECT 1, 'two'", column=1)
        missing = yield from db.fetchval("SELECT 1 WHERE false")
        status = yield from db.execute("CREATE TEMP TABLE items (id int, name text)")
        inserted = yield from db.execute("INSERT INTO items VALUES ($1, $2), ($3, $4)",
                                         1, "a", 2, "b")
        several = yield from db.execute("UPDATE items SET name = 'c'; DELETE FROM items")
        return rows, row, none, value, second, missing, status, inserted, several

    rows, row, none, value, second, missing, status, inserted, several = \
        with_connection(pg_dsn, work)
    assert rows == [(1, 2), (2, 4), (3, 6)]
    assert [r["twice"] for r in rows] == [2, 4, 6]
    assert row == (1, "x") and row["b"] == "x" and dict(row) == {"a": 1, "b": "x"}
    assert none is None and missing is None
    assert value == 42 and second == "two"
    assert (status, inserted, several) == ("CREATE TABLE", "INSERT 0 2", "DELETE 2")


def test_record_behaves_as_a_tuple_with_names(pg_dsn):
    def work(db):
        return (yield from db.fetchrow("SELECT 1 AS id, 'hello' AS message"))

    row = with_connection(pg_dsn, work)
    id_, message = row
    assert (id_, message) == (1, "hello")
    assert row[0] == row["id"] == 1 and row[-1] == "hello"
    assert row.keys() == ("id", "message") and list(row.items())[1] == ("message", "hello")
    assert row.get("nope", 5) == 5
    assert row == (1, "hello") and hash(row) == hash((1, "hello"))
    with pytest.raises(KeyError, match="no column named 'nope'"):
        row["nope"]
    assert repr(row) == "<Record id=1 message='hello'>"


def test_values_round_trip_through_psycopg_adaptation(pg_dsn):
    values = [None, True, 7, 2**40, 1.5, decimal.Decimal("1.25"), "zaïre 日本",
              b"\x00\xff", datetime.date(2024, 2, 29), uuid.UUID(int=5),
              datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc), [1, 2, 3]]

    def work(db):
        out = []
        for value in values:
            out.append((yield from db.fetchval("SELECT $1", value)))
        return out

    assert with_connection(pg_dsn, work) == values


def test_parameters_are_bound_by_the_server_never_pasted_into_the_sql(pg_dsn):
    hostile = "x'); DROP TABLE victims; --"

    def work(db):
        yield from db.execute("CREATE TEMP TABLE victims (name text)")
        yield from db.execute("INSERT INTO victims VALUES ($1)", hostile)
        stored = yield from db.fetchval("SELECT name FROM victims")
        count = yield from db.fetchval("SELECT count(*) FROM victims WHERE name = $1", hostile)
        return stored, count

    assert with_connection(pg_dsn, work) == (hostile, 1)


def test_repeated_queries_are_prepared_once_and_reused(pg_dsn):
    sql = "SELECT $1::int * 3 AS tripled"

    def prepared(db):
        return (yield from db.fetch(
            "SELECT name, statement FROM pg_prepared_statements ORDER BY name"))

    def work(db):
        results = []
        first = None
        for i in range(5):
            results.append((yield from db.fetchval(sql, i)))
            if i == 0:
                first = yield from prepared(db)
        return results, first, (yield from prepared(db))

    results, after_one, after_five = with_connection(pg_dsn, work)
    assert results == [0, 3, 6, 9, 12]
    assert not [row for row in after_one if row["statement"] == sql]  # once: not prepared
    assert len([row for row in after_five if row["statement"] == sql]) == 1


@pytest.mark.parametrize("close_message", [True, False], ids=["close-message", "deallocate"])
def test_the_statement_cache_is_bounded_and_closes_evicted_statements(pg_dsn, monkeypatch,
                                                                      close_message):
    from corofw.data import pg_wire

    # libpq 17 closes with a protocol message; older ones with DEALLOCATE
    monkeypatch.setattr(pg_wire, "CLOSE_MESSAGE", close_message and pg_wire.CLOSE_MESSAGE)

    def on_server(db):
        rows = yield from db.fetch("SELECT statement FROM pg_prepared_statements")
        return sorted(row[0] for row in rows if "+ $1" in row[0])

    def twice(db, i):
        for _ in range(2):  # the second run prepares it
            yield from db.fetchval(f"SELECT {i} + $1::int", 1)

    def work(db):
        for i in range(6):
            yield from twice(db, i)
        first = yield from on_server(db)
        yield from twice(db, 6)
        return len(db._statements), first, (yield from on_server(db))

    cached, first, second = with_connection(pg_dsn, work, statement_cache_size=3)
    assert cached == 3
    # 0, 1 and 2 were closed on the server as later ones were prepared; 3 has
    # just been evicted (by the query looking), and goes with the next prepare
    assert first == ["SELECT 3 + $1::int", "SELECT 4 + $1::int", "SELECT 5 + $1::int"]
    assert second == ["SELECT 5 + $1::int", "SELECT 6 + $1::int"]


def test_a_statement_whose_prepare_was_interrupted_is_prepared_again(pg_dsn):
    # In a pipeline cancelled during a slow first query, the second query's
    # PREPARE never runs: its name must not be used afterwards.
    sql = "SELECT $1::int + 100"

    def work(db):
        yield from db.fetchval(sql, 1)
        batch = pg.Batch().execute("SELECT pg_sleep(5)").fetchval(sql, 2)  # prepares it
        with pytest.raises(pg.QueryTimeout):
            yield from db.pipeline(batch, timeout=0.2)
        return (yield from db.fetchval(sql, 3)), (yield from db.fetchval(sql, 4))

    assert with_connection(pg_dsn, work) == (103, 104)


def test_a_prepared_statement_survives_a_schema_change(pg_dsn):
    def work(db):
        yield from db.execute("CREATE TEMP TABLE shapes (a int)")
        yield from db.execute("INSERT INTO shapes VALUES (1)")
        sql = "SELECT * FROM shapes WHERE a = $1"
        for _ in range(3):
            yield from db.fetchrow(sql, 1)
        yield from db.execute("ALTER TABLE shapes ADD COLUMN b text DEFAULT 'new'")
        try:
            yield from db.fetchrow(sql, 1)
        except pg.QueryError as exc:
            assert exc.sqlstate == "0A000"  # cached plan must not change result type
        return (yield from db.fetchrow(sql, 1))

    assert dict(with_connection(pg_dsn, work)) == {"a": 1, "b": "new"}


def test_typed_errors_carry_sqlstate_and_query_but_never_parameter_values(pg_dsn):
    secret = "s3cr3t-value"

    def work(db):
        errors = []
        yield from db.execute("CREATE TEMP TABLE people (email text PRIMARY KEY)")
        yield from db.execute("INSERT INTO people VALUES ($1)", secret)
        for sql, args in [("INSERT INTO people VALUES ($1)", (secret,)),
                          ("SELECT * FROM no_such_table WHERE x = $1", (secret,)),
                          ("SELEC 1", ()),
                          ("SELECT 1 / $1::int", (0,)),
                          ("SELECT no_such_column FROM people", ()),
                          ("SELECT $1::text::int", (secret,))]:
            try:
                yield from db.fetch(sql, *args)
            except pg.QueryError as exc:
                errors.append(exc)
        return errors, (yield from db.fetchval("SELECT 'still usable'"))

    errors, after = with_connection(pg_dsn, work)
    unique, table, syntax, division, column, bad_value = errors
    assert isinstance(unique, pg.UniqueViolation) and isinstance(unique, pg.IntegrityError)
    assert unique.sqlstate == "23505" and unique.constraint_name == "people_pkey"
    assert unique.query == "INSERT INTO people VALUES ($1)"
    assert isinstance(table, pg.UndefinedTable) and table.sqlstate == "42P01"
    assert isinstance(syntax, pg.QuerySyntaxError) and isinstance(syntax, pg.ProgrammingError)
    assert isinstance(division, pg.DataError) and division.sqlstate == "22012"
    assert isinstance(column, pg.UndefinedColumn)
    for error in errors:
        assert secret not in str(error) and secret not in repr(error)
        assert f"SQLSTATE {error.sqlstate}" in str(error) and error.query in str(error)
    assert isinstance(bad_value, pg.DataError) and bad_value.sqlstate == "22P02"
    assert 'integer: "..."' in str(bad_value)
    assert secret in (unique.detail or "") and secret in bad_value.message  # kept apart
    assert after == "still usable"


def test_executemany_runs_in_one_round_trip_and_is_atomic(pg_dsn):
    def work(db):
        yield from db.execute("CREATE TEMP TABLE bulk (id int PRIMARY KEY)")
        coro, counts = count_fd_waits(
            db.executemany("INSERT INTO bulk VALUES ($1)", [(i,) for i in range(500)]))
        yield from coro
        count = yield from db.fetchval("SELECT count(*) FROM bulk")
        try:
            yield from db.executemany("INSERT INTO bulk VALUES ($1)",
                                      [(1000,), (1001,), (5,), (1002,)])
        except pg.UniqueViolation:
            pass
        after = yield from db.fetchval("SELECT count(*) FROM bulk")
        return count, counts["waits"], after

    count, waits, after = with_connection(pg_dsn, work)
    assert count == 500
    assert waits <= 5  # one round trip (a few reads for the results), not 500
    assert after == 500  # the failing batch left nothing behind


def test_a_batch_sends_many_queries_in_one_round_trip(pg_dsn):
    def work(db):
        batch = pg.Batch()
        for i in range(30):
            batch.fetchval("SELECT $1::int * 10", i)
        batch.fetchrow("SELECT 'a' AS x, 'b' AS y")
        batch.fetch("SELECT generate_series(1, 3)")
        batch.execute("SELECT 1")
        coro, counts = count_fd_waits(db.pipeline(batch))
        results = yield from coro
        return results, counts["waits"], (yield from db.pipeline(pg.Batch()))

    results, waits, empty = with_connection(pg_dsn, work)
    assert results[:30] == [i * 10 for i in range(30)]
    assert results[30] == ("a", "b") and results[30]["y"] == "b"
    assert results[31] == [(1,), (2,), (3,)] and results[32] == "SELECT 1"
    assert waits <= 3 and empty == []


def test_a_failing_query_in_a_batch_raises_its_error_and_the_connection_goes_on(pg_dsn):
    def work(db):
        batch = pg.Batch().fetchval("SELECT 1").fetchval("SELECT 1/0").fetchval("SELECT 3")
        try:
            yield from db.pipeline(batch)
        except pg.DataError as exc:
            error = exc
        return error, (yield from db.fetchval("SELECT 4"))

    error, after = with_connection(pg_dsn, work)
    assert error.query == "SELECT 1/0" and after == 4


def test_a_large_pipeline_does_not_deadlock_when_both_sides_fill_their_buffers(pg_server):
    # Over a unix socket (fixed ~200 KB buffers), 2 MB of queries answered
    # with 8 MB: the server blocks sending results while we still send, so a
    # flush that only waited to write would wait forever; it keeps reading.
    payload = "x" * 10000

    def work(db):
        batch = pg.Batch()
        for i in range(200):
            batch.fetchval("SELECT repeat($1::text, 4) || $2::text", payload, str(i))
        coro, counts = count_fd_waits(db.pipeline(batch, timeout=10))
        results = yield from coro
        return len(results), len(results[0]), results[-1][-4:], counts["either"]

    count, size, last, either = with_connection(pg_server.socket_dsn, work)
    assert (count, size, last) == (200, 40001, "x199")
    assert either > 0  # the flush did get stuck, and went on


def test_a_connection_runs_one_query_at_a_time(pg_dsn):
    from corofw import gather

    def work(db):
        try:
            yield from gather(db.fetchval("SELECT pg_sleep(0.1)"), db.fetchval("SELECT 1"))
        except pg.InterfaceError as exc:
            message = str(exc)
        yield from pg_wait_idle(db)
        return message

    assert "another operation is in progress" in with_connection(pg_dsn, work)


def pg_wait_idle(db):
    """Let a cancelled query's recovery finish (next query waits for it)."""
    return (yield from db.fetchval("SELECT 1"))


def test_copy_is_refused_and_the_connection_stays_usable(pg_dsn):
    def work(db):
        yield from db.execute("CREATE TEMP TABLE c (a int)")
        for sql in ("COPY c FROM STDIN", "COPY (SELECT 1) TO STDOUT"):
            try:
                yield from db.execute(sql)
            except pg.QueryError:
                pass
        return (yield from db.fetchval("SELECT 5"))

    assert with_connection(pg_dsn, work) == 5


def test_a_closed_connection_says_so(pg_dsn):
    def work(db):
        db.close()
        with pytest.raises(pg.ConnectionLost, match="closed"):
            yield from db.fetchval("SELECT 1")
        return db.closed

    assert with_connection(pg_dsn, work) is True


def test_connect_to_a_server_that_is_down_is_one_clear_line(free_port_dsn):
    def main():
        yield from pg.connect(free_port_dsn, connect_timeout=5)

    with pytest.raises(pg.ConnectError) as info:
        run(main())
    message = str(info.value)
    assert "\n" not in message and "Connection refused" in message
    assert "cannot connect to PostgreSQL" in message and "hunter2" not in message


def test_a_bad_dsn_is_an_interface_error_without_the_password():
    def main():
        yield from pg.connect("host=x password=hunter2 nonsense")

    with pytest.raises(pg.InterfaceError) as info:
        run(main())
    assert "hunter2" not in str(info.value)


@pytest.fixture
def free_port_dsn():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres:hunter2@127.0.0.1:{port}/postgres"


def test_a_host_name_is_resolved_off_the_loop_and_every_address_tried(pg_server):
    dsn = f"host=localhost port={pg_server.port} user=postgres dbname=postgres"

    def work(db):
        return (yield from db.fetchval("SELECT inet_server_addr()::text"))

    assert with_connection(dsn, work) in ("127.0.0.1/32", "127.0.0.1")
