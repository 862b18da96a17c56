"""The PostgreSQL pool: sizes, acquire timeout, FIFO hand-off, checks on
acquire, lifetimes, and connections given back dirty."""

from __future__ import annotations

import socket

import pytest

from corofw import Cancelled, gather, run, sleep, spawn
from corofw.data import pg

pytestmark = pytest.mark.usefixtures("no_leaks")


def with_pool(dsn, work, **options):
    def main():
        pool = pg.Pool(dsn, **options)
        try:
            return (yield from work(pool))
        finally:
            yield from pool.close()

    return run(main())


def test_open_fills_min_size_and_load_grows_it_to_max_size_only(pg_dsn):
    def work(pool):
        yield from pool.open()
        opened = pool.size, pool.idle
        peak = []

        def query():
            result = yield from pool.fetchval("SELECT pg_sleep(0.05)")
            peak.append(pool.size)
            return result

        yield from gather(*(query() for _ in range(12)))
        return opened, max(peak), pool.size, pool.idle

    opened, peak, size, idle = with_pool(pg_dsn, work, min_size=2, max_size=5)
    assert opened == (2, 2)
    assert peak == 5 and size == 5 and idle == 5


def test_acquire_times_out_with_pool_timeout(pg_dsn):
    def work(pool):
        conn = yield from pool.acquire()
        with conn:
            with pytest.raises(pg.PoolTimeout) as info:
                yield from pool.acquire(timeout=0.1)
            assert isinstance(info.value, TimeoutError)
        return (yield from pool.fetchval("SELECT 1")), pool.waiting

    assert with_pool(pg_dsn, work, min_size=0, max_size=1) == (1, 0)


def test_a_timed_out_or_cancelled_waiter_leaves_the_others_waiting_in_order(pg_dsn):
    def work(pool):
        order = []
        holder = yield from pool.acquire()

        def waiter(name, timeout=None):
            try:
                conn = yield from pool.acquire(timeout=timeout)
            except pg.PoolTimeout:
                order.append(name + " timed out")
                return
            with conn:
                order.append(name)

        first = yield from spawn(waiter("a"))
        yield from sleep(0.01)
        impatient = yield from spawn(waiter("b", timeout=0.05))  # in the middle of the queue
        yield from sleep(0.01)
        cancelled = yield from spawn(waiter("c", timeout=0.1))
        yield from sleep(0.01)
        last = yield from spawn(waiter("d"))
        yield from sleep(0.01)
        cancelled.cancel()
        with pytest.raises(Cancelled):
            yield from cancelled.join()
        yield from sleep(0.2)  # past both timeouts: "c"'s timer must not wake anyone
        waiting = pool.waiting
        pool.release(holder)
        for task in (first, impatient, last):
            yield from task.join()
        return order, waiting, pool.waiting

    assert with_pool(pg_dsn, work, min_size=1, max_size=1) == (
        ["b timed out", "a", "d"], 2, 0)


def test_waiters_are_served_first_come_first_served_by_hand_off(pg_dsn):
    def work(pool):
        order = []
        holder = yield from pool.acquire()

        def waiter(name):
            conn = yield from pool.acquire()
            with conn:
                order.append(name)
                yield from conn.fetchval("SELECT 1")

        tasks = []
        for name in "abcd":
            tasks.append((yield from spawn(waiter(name))))
            yield from sleep(0.01)
        holder.pool.release(holder)  # handed to "a", though "e" is about to ask
        late = yield from spawn(waiter("e"))
        for task in [*tasks, late]:
            yield from task.join()
        return order

    assert with_pool(pg_dsn, work, min_size=1, max_size=1) == list("abcde")


def test_a_connection_given_back_in_a_transaction_is_rolled_back(pg_dsn):
    def work(pool):
        conn = yield from pool.acquire()
        pid = conn.server_pid
        with conn:
            yield from conn.execute("BEGIN")
            yield from conn.execute("CREATE TABLE pool_dirty (a int)")
        failed = yield from pool.acquire()
        with failed:
            assert failed.server_pid == pid and not failed.in_transaction
            exists = yield from failed.fetchval("SELECT to_regclass('pool_dirty') IS NOT NULL")
            yield from failed.execute("BEGIN")
            with pytest.raises(pg.DataError):
                yield from failed.execute("SELECT 1/0")
        again = yield from pool.acquire()
        with again:
            return exists, again.server_pid == pid, again.in_transaction, \
                (yield from again.fetchval("SELECT 2"))

    assert with_pool(pg_dsn, work, min_size=1, max_size=1) == (False, True, False, 2)


def test_a_cancelled_query_comes_back_to_the_pool_only_when_clean(pg_dsn):
    def work(pool):
        task = yield from spawn(pool.fetchval("SELECT pg_sleep(30)"))
        yield from sleep(0.1)
        task.cancel()
        try:
            yield from task.join()
        except BaseException:
            pass
        conn = yield from pool.acquire(timeout=2)  # the only connection, cleaned up
        with conn:
            return (yield from conn.fetchval("SELECT 3")), conn.in_transaction

    assert with_pool(pg_dsn, work, min_size=1, max_size=1) == (3, False)


def test_a_listening_connection_stops_listening_when_given_back(pg_dsn):
    def work(pool):
        conn = yield from pool.acquire()
        with conn:
            yield from conn.listen("pool_channel")
        conn = yield from pool.acquire()
        with conn:
            return (yield from conn.fetchval("SELECT count(*) FROM pg_listening_channels()"))

    assert with_pool(pg_dsn, work, min_size=1, max_size=1) == 0


def test_a_connection_the_server_dropped_is_replaced_on_acquire(pg_dsn):
    def work(pool):
        yield from pool.open()
        conn = yield from pool.acquire()
        old_pid = conn.server_pid
        pool.release(conn)
        admin = yield from pg.connect(pg_dsn)
        with admin:
            yield from admin.fetchval("SELECT pg_terminate_backend($1)", old_pid)
        yield from sleep(0.1)
        conn = yield from pool.acquire()
        with conn:
            return conn.server_pid != old_pid, (yield from conn.fetchval("SELECT 4")), pool.size

    assert with_pool(pg_dsn, work, min_size=1, max_size=2) == (True, 4, 1)


def test_connections_are_replaced_after_their_lifetime(pg_dsn):
    def work(pool):
        conn = yield from pool.acquire()
        first = conn.server_pid
        pool.release(conn)
        yield from sleep(0.35)
        conn = yield from pool.acquire()
        with conn:
            return conn.server_pid != first, pool.size

    assert with_pool(pg_dsn, work, min_size=0, max_size=2, max_lifetime=0.3) == (True, 1)


def test_idle_connections_above_min_size_are_closed(pg_dsn):
    def work(pool):
        yield from gather(*(pool.fetchval("SELECT pg_sleep(0.05)") for _ in range(4)))
        grown = pool.size
        yield from sleep(0.25)
        yield from pool.fetchval("SELECT 1")  # giving a connection back trims the idle ones
        return grown, pool.size

    assert with_pool(pg_dsn, work, min_size=1, max_size=4, max_idle=0.2) == (4, 1)


def test_a_connection_idle_for_long_is_pinged_first(pg_dsn):
    def work(pool):
        yield from pool.open()
        conn = yield from pool.acquire()
        pid = conn.server_pid
        pool.release(conn)
        yield from sleep(0.05)
        conn = yield from pool.acquire()  # idle past ping_after: SELECT 1 first
        with conn:
            return conn.server_pid == pid

    assert with_pool(pg_dsn, work, min_size=1, max_size=1, ping_after=0.01) is True


def test_one_call_helpers(pg_dsn):
    def work(pool):
        yield from pool.execute("CREATE TEMP TABLE IF NOT EXISTS h (a int)")  # on one connection
        rows = yield from pool.fetch("SELECT generate_series(1, $1::int)", 2)
        row = yield from pool.fetchrow("SELECT 1 AS one")
        value = yield from pool.fetchval("SELECT 'v'")
        batch = yield from pool.pipeline(pg.Batch().fetchval("SELECT 1").fetchval("SELECT 2"))

        def work_in_tx(conn, n):
            yield from conn.execute("CREATE TEMP TABLE tx_probe (a int) ON COMMIT DROP")
            rows = [(i,) for i in range(n)]
            yield from conn.executemany("INSERT INTO tx_probe VALUES ($1)", rows)
            return (yield from conn.fetchval("SELECT count(*) FROM tx_probe"))

        counted = yield from pool.transaction(work_in_tx, 5)
        return rows, row["one"], value, batch, counted

    assert with_pool(pg_dsn, work, min_size=1, max_size=1) == ([(1,), (2,)], 1, "v", [1, 2], 5)


def test_closing_the_pool_releases_waiters_and_refuses_new_acquires(pg_dsn):
    def main():
        pool = pg.Pool(pg_dsn, min_size=0, max_size=1)
        conn = yield from pool.acquire()
        waiter = yield from spawn(pool.acquire())
        yield from sleep(0.01)
        yield from pool.close()
        with pytest.raises(pg.InterfaceError, match="closed"):
            yield from waiter.join()
        pool.release(conn)
        with pytest.raises(pg.InterfaceError, match="closed"):
            yield from pool.acquire()
        return conn.closed, pool.size

    assert run(main()) == (True, 0)


def test_a_database_down_at_startup_is_one_clear_error(pg_dsn):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    def main():
        pool = pg.Pool(f"postgresql://postgres@127.0.0.1:{port}/postgres", min_size=2)
        try:
            yield from pool.open()
        finally:
            yield from pool.close()

    with pytest.raises(pg.ConnectError) as info:
        run(main())
    assert "\n" not in str(info.value) and f"port {port} failed" in str(info.value)


def test_pool_arguments_are_checked():
    with pytest.raises(ValueError, match="min_size"):
        pg.Pool("", min_size=5, max_size=2)
