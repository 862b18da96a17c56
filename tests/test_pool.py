"""The client's connection pool: reuse, per-host and total limits with
callers waiting for a slot, pool timeouts, and slots that always come back
(after errors, timeouts and cancellation)."""

from __future__ import annotations

import time

import pytest

from corofw import (
    Client,
    ConnectionRefused,
    PoolTimeout,
    ReadTimeout,
    Router,
    Timeout,
    current_time,
    gather,
    move_on_after,
    run,
    sleep,
    spawn,
)
from corofw.http.pool import TRUSTED_IDLE, PooledConnection
from corofw.testing import serve_in_thread

app = Router()
app.in_flight = 0
app.most_in_flight = 0


@app.get("/slow")
def slow(request):
    app.in_flight += 1
    app.most_in_flight = max(app.most_in_flight, app.in_flight)
    try:
        yield from sleep(float(request.query.get("delay", "0.05")))
    finally:
        app.in_flight -= 1
    return {"port": request.client[1], "tag": request.query.get("tag")}


@pytest.fixture(scope="module")
def servers():
    with serve_in_thread(app) as first, serve_in_thread(app) as second:
        yield first, second


@pytest.fixture
def server(servers, no_leaks):
    app.most_in_flight = 0
    yield servers[0]
    deadline = time.monotonic() + 2.0
    while any(s.server.connections for s in servers) and time.monotonic() < deadline:
        time.sleep(0.005)


def drive(make_coro, **client_options):
    """Run ``make_coro(client)``; afterwards the pool holds only idle
    connections, then none once the client is closed."""

    def main():
        client = Client(**client_options)
        try:
            result = yield from make_coro(client)
            idle = sum(len(conns) for conns in client.pool._idle.values())
            assert client.pool.total == idle, client.pool
            assert sum(client.pool._per_host.values()) == client.pool.total
            assert not client.pool._waiters
        finally:
            client.close()
        assert client.pool.total == 0 and not client.pool._per_host
        return result

    return run(main())


def watch(client, samples):
    """Record the pool's connection count every millisecond."""
    while True:
        samples.append(client.pool.total)
        yield from sleep(0.001)


def test_per_host_limit_makes_callers_wait(server):
    samples = []

    def go(client):
        watcher = yield from spawn(watch(client, samples))
        started = yield from current_time()
        responses = yield from gather(*(client.get(f"/slow?delay=0.05&tag={i}")
                                        for i in range(10)))
        elapsed = (yield from current_time()) - started
        watcher.cancel()
        return responses, elapsed

    responses, elapsed = drive(go, base_url=server.url, max_per_host=2)
    assert [r.json()["tag"] for r in responses] == [str(i) for i in range(10)]
    assert len({r.json()["port"] for r in responses}) == 2
    assert max(samples) == 2
    assert app.most_in_flight == 2  # never more than two at the server either
    assert elapsed >= 0.2  # five rounds of two 50 ms calls


def test_total_limit_across_hosts(servers, server):
    first, second = servers
    samples = []

    def go(client):
        watcher = yield from spawn(watch(client, samples))
        calls = [client.get(f"{(first, second)[i % 2].url}/slow?delay=0.03") for i in range(12)]
        responses = yield from gather(*calls)
        watcher.cancel()
        return [r.status_code for r in responses]

    assert drive(go, max_connections=3) == [200] * 12
    assert max(samples) == 3


def waiting(client):
    return len(client.pool._waiters)


def test_waiters_are_served_in_order(server):
    order = []

    def one(client, i):
        yield from client.get("/slow?delay=0")
        order.append(i)

    def go(client):
        held = yield from client.get("/slow?delay=0", stream=True)  # the only slot
        tasks = []
        for i in range(1, 6):  # queue up, one after the other
            tasks.append((yield from spawn(one(client, i))))
            while waiting(client) < i:
                yield from sleep(0)
        yield from held.read()
        for task in tasks:
            yield from task.join()

    drive(go, base_url=server.url, max_per_host=1)
    assert order == [1, 2, 3, 4, 5]


def test_a_freed_connection_goes_to_the_longest_waiter(server):
    def busy(client, done):
        for _ in range(30):
            yield from client.get("/slow?delay=0")
            done.append(1)

    def go(client):
        done = []
        task = yield from spawn(busy(client, done))
        while not done:  # the busy task has the only connection, and keeps asking
            yield from sleep(0)
        resp = yield from client.get("/slow?delay=0", timeout=Timeout(pool=5))
        served_meanwhile = len(done)
        yield from task.join()
        return resp.status_code, served_meanwhile

    status, served_meanwhile = drive(go, base_url=server.url, max_per_host=1)
    assert status == 200 and served_meanwhile <= 3


def test_a_freed_slot_goes_to_the_longest_waiter_for_any_host(servers, server):
    first, second = servers
    order = []

    def one(client, url, tag):
        yield from client.get(url + "/slow?delay=0")
        order.append(tag)

    def go(client):
        held = yield from client.get(first.url + "/slow?delay=0", stream=True)  # the only slot
        tasks = []
        for tag, url in (("second", second.url), ("first", first.url)):
            tasks.append((yield from spawn(one(client, url, tag))))
            while waiting(client) < len(tasks):
                yield from sleep(0)
        held.close()  # its slot goes to the caller for the other host, who asked first
        for task in tasks:
            yield from task.join()

    drive(go, max_connections=1)
    assert order == ["second", "first"]


def test_pool_timeout_while_the_only_slot_is_held(server):
    def go(client):
        held = yield from client.get("/slow?delay=0", stream=True)  # not read: slot held
        started = yield from current_time()
        try:
            yield from client.get("/slow?delay=0", timeout=Timeout(pool=0.1))
        except PoolTimeout as exc:
            error = exc
        waited = (yield from current_time()) - started
        yield from held.read()  # the slot comes back ...
        after = yield from client.get("/slow?delay=0", timeout=Timeout(pool=0.1))
        return error, waited, after.status_code

    error, waited, status = drive(go, base_url=server.url, max_per_host=1)
    assert isinstance(error, PoolTimeout) and error.url == server.url + "/slow?delay=0"
    assert 0.08 <= waited < 1.0
    assert status == 200  # ... and the next call gets it at once


def test_pool_timeout_while_a_slow_call_holds_the_slot(server):
    def go(client):
        slow_call = yield from spawn(client.get("/slow?delay=0.3"))
        yield from sleep(0.02)
        try:
            yield from client.get("/slow?delay=0", timeout=Timeout(pool=0.05))
        except PoolTimeout as exc:
            error = exc
        resp = yield from slow_call.join()
        return error, resp.status_code

    error, status = drive(go, base_url=server.url, max_connections=1)
    assert isinstance(error, PoolTimeout) and status == 200


def test_cancelled_waiters_do_not_keep_or_lose_slots(server):
    def go(client):
        held = yield from client.get("/slow?delay=0", stream=True)  # the only slot
        for _ in range(3):  # wait for the slot, give up
            got = yield from move_on_after(0.01, client.get("/slow?delay=0"), "gave up")
            assert got == "gave up"
        assert waiting(client) == 0
        yield from held.read()
        resp = yield from client.get("/slow?delay=0")
        return resp.status_code, client.pool.total

    assert drive(go, base_url=server.url, max_per_host=1) == (200, 1)


def test_timeouts_and_errors_release_their_slots(server):
    def go(client):
        for _ in range(3):
            try:
                yield from client.get("/slow?delay=0.5", timeout=Timeout(read=0.03))
            except ReadTimeout:
                pass
            assert client.pool.total == 0  # the timed-out connection was closed
        for _ in range(3):
            try:
                yield from client.get("http://127.0.0.1:1/")
            except ConnectionRefused:
                pass
        resp = yield from client.get("/slow?delay=0", timeout=Timeout(pool=0.1))
        return resp.status_code

    assert drive(go, base_url=server.url, max_connections=1) == 200


def test_max_idle_per_host(server):
    def go(client):
        yield from gather(*(client.get("/slow?delay=0.02") for _ in range(4)))
        return client.pool.total

    assert drive(go, base_url=server.url, max_idle_per_host=1) == 1


def test_an_idle_connection_makes_room_for_another_host(servers, server):
    first, second = servers

    def go(client):
        a = yield from client.get(first.url + "/slow?delay=0")
        b = yield from client.get(second.url + "/slow?delay=0", timeout=Timeout(pool=0.1))
        return a.status_code, b.status_code, client.pool.total

    assert drive(go, max_connections=1) == (200, 200, 1)


def test_closing_the_client_closes_idle_connections(server):
    def go(client):
        yield from gather(*(client.get("/slow?delay=0.01") for _ in range(3)))
        before = client.pool.total
        client.close()
        return before, client.pool.total, repr(client)

    before, after, text = drive(go, base_url=server.url)
    assert (before, after) == (3, 0)
    assert "0 connections" in text


def test_a_failed_call_in_gather_closes_its_siblings_connections(server):
    def go(client):
        calls = [client.get("/slow?delay=0.5") for _ in range(3)]
        calls.append(client.get("http://127.0.0.1:1/"))  # refused at once
        try:
            yield from gather(*calls)
        except ConnectionRefused as exc:
            error = exc
        return error, client.pool.total

    error, total = drive(go, base_url=server.url)
    assert isinstance(error, ConnectionRefused)
    assert total == 0  # the three cancelled calls closed their connections


def test_only_requests_that_could_not_be_retried_peek_at_a_fresh_idle_connection(
        server, monkeypatch):
    peeks = []
    real = PooledConnection.looks_alive

    def counted(conn):
        peeks.append(conn)
        return real(conn)

    monkeypatch.setattr(PooledConnection, "looks_alive", counted)

    def go(client):
        yield from client.get("/slow?delay=0")
        yield from client.get("/slow?delay=0")  # idle a moment: a GET trusts it
        trusted = len(peeks)
        yield from client.post("/slow?delay=0")  # 405, but on the pooled connection
        after_post = len(peeks)
        yield from sleep(TRUSTED_IDLE + 0.05)
        yield from client.get("/slow?delay=0")
        return trusted, after_post, len(peeks), client.pool.total

    assert drive(go, base_url=server.url) == (0, 1, 2, 1)
