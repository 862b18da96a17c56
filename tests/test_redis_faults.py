"""The Redis client when things go wrong: command timeouts, cancellation,
a server that restarts, a server that sends garbage. In every case the
pool keeps only clean connections: each later reply answers its own
command."""

from __future__ import annotations

import random
import socket
import time

import pytest

from corofw import (
    Kernel,
    TaskTimeout,
    VirtualClock,
    current_time,
    gather,
    move_on_after,
    run,
    run_in_thread,
    sleep,
    spawn,
    timeout_after,
)
from corofw.data.redis import Redis
from corofw.data.redis_errors import RedisConnectionError, RedisProtocolError, RedisTimeout
from corofw.net import listen

pytestmark = pytest.mark.usefixtures("no_leaks")


def virtual(coro):
    """A virtual clock that jumps only after 0.25 real seconds of silence."""
    return Kernel(clock=VirtualClock(autojump_threshold=0.25)).run(coro)


def check_replies_match(r, count=50):
    """Every key answers with its own value: no reply is off by one."""
    keys = {f"check{i}": f"value{i}".encode() for i in range(count)}
    yield from r.mset(keys)
    results = yield from gather(*[r.get(key) for key in keys])
    assert results == list(keys.values())


def test_a_command_timeout_discards_its_connection(redis_url):
    def main():
        with Redis(redis_url, timeout=10) as r:
            yield from r.ping()
            started = yield from current_time()
            with pytest.raises(RedisTimeout, match="after 10 s"):
                yield from r.execute("BLPOP", "nothing", 0)  # the server never answers
            assert (yield from current_time()) - started == pytest.approx(10)
            assert r.pool.size == 0
            with pytest.raises(RedisTimeout, match="after 3 s"):
                yield from r.execute("BLPOP", "nothing", 0, timeout=3)
            assert (yield from r.execute("BLPOP", "nothing", 0.01, timeout=None)) is None
            yield from check_replies_match(r)

    virtual(main())


def test_a_blocking_helper_gets_its_wait_on_top_of_the_timeout(redis_url):
    def main():
        with Redis(redis_url, timeout=0.5) as r, Redis(redis_url) as other:
            task = yield from spawn(r.blpop("q", 5))
            yield from sleep(2)  # longer than the command timeout alone
            yield from other.rpush("q", "late")
            assert (yield from task.join()) == (b"q", b"late")
            task = yield from spawn(r.blpop("q", 0))  # 0 waits for ever: no deadline
            yield from sleep(100)
            yield from other.rpush("q", "much later")
            assert (yield from task.join()) == (b"q", b"much later")

    virtual(main())


def test_an_outer_timeout_discards_the_connection_too(redis_url):
    def main():
        with Redis(redis_url) as r:
            with pytest.raises(TaskTimeout):
                yield from timeout_after(5, r.blpop("nothing", 0))
            assert r.pool.size == 0
            assert (yield from move_on_after(5, r.brpop("nothing", 0), "gave up")) == "gave up"
            yield from check_replies_match(r)

    virtual(main())


def test_cancelled_commands_leave_no_broken_connection_in_the_pool(redis_url):
    rng = random.Random(7)

    def reader(r, i):
        for _ in range(10):
            assert (yield from r.get(f"key{i}")) == f"value{i}".encode()

    def main():
        with Redis(redis_url, max_connections=8) as r:
            yield from r.mset({f"key{i}": f"value{i}" for i in range(32)})
            for _ in range(10):
                tasks = []
                for i in range(32):
                    tasks.append((yield from spawn(reader(r, i))))
                for _ in range(rng.randrange(1, 6)):
                    yield from sleep(0)
                for task in rng.sample(tasks, 12):
                    task.cancel("cancelled at a random point")
                for task in tasks:
                    try:
                        yield from task.join()
                    except BaseException as exc:
                        assert type(exc).__name__ == "Cancelled"
                assert r.pool.waiting == 0
                assert r.pool.size == r.pool.idle <= 8
                yield from check_replies_match(r)

    run(main())


def test_a_restarted_server_fails_the_commands_in_flight_fast_and_then_recovers(
        redis_url, redis_server):
    def main():
        with Redis(redis_url) as r:
            yield from gather(*[r.ping() for _ in range(4)])
            assert r.pool.idle == 4
            in_flight = yield from spawn(r.blpop("queue", 0))
            yield from sleep(0.05)
            stopped = time.monotonic()
            yield from run_in_thread(redis_server.stop)
            with pytest.raises(RedisConnectionError, match="closed the connection"):
                yield from in_flight.join()
            assert time.monotonic() - stopped < 2.0
            with pytest.raises(RedisConnectionError, match="refused"):
                yield from r.get("k")  # the server is down: a clear error at once
            yield from run_in_thread(redis_server.start)
            assert (yield from r.get("k")) is None  # the dead idle connections were dropped
            assert r.pool.size == r.pool.idle == 1
            yield from check_replies_match(r)

    run(main())


def test_a_pipeline_in_flight_when_the_server_goes_away(redis_url, redis_server):
    def main():
        with Redis(redis_url) as r:
            p = r.pipeline(transaction=False)
            p.set("a", 1).execute_command("BLPOP", "queue", 0)
            task = yield from spawn(p.execute())
            yield from sleep(0.05)
            yield from run_in_thread(redis_server.restart)
            with pytest.raises(RedisConnectionError):
                yield from task.join()
            assert r.pool.size == 0
            yield from check_replies_match(r)

    run(main())


def fake_server(reply: bytes):
    """A one-connection server that answers anything with ``reply``."""
    listener = listen("127.0.0.1", 0)

    def serve():
        conn, _ = yield from listener.accept()
        with conn:
            yield from conn.recv(65536)
            yield from conn.send_all(reply)
            yield from conn.recv(65536)  # until the client closes

    return listener, serve


@pytest.mark.parametrize("reply", [b"!garbage\r\n", b":12x\r\n", b"*1\r\n!x\r\n",
                                   b"$3\r\nabcd\r\n", b"+OK\r\n+unasked\r\n"])
def test_garbage_from_the_server_is_a_protocol_error_and_closes_the_connection(reply):
    listener, serve = fake_server(reply)
    port = listener.getsockname()[1]

    def main():
        server = yield from spawn(serve())
        with listener, Redis(port=port) as r:
            with pytest.raises(RedisProtocolError):
                yield from r.get("k")
            assert r.pool.size == 0
            yield from server.join()

    run(main())


def test_a_server_that_closes_at_once_is_a_connection_error():
    listener = listen("127.0.0.1", 0)
    port = listener.getsockname()[1]

    def serve():
        conn, _ = yield from listener.accept()
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        conn.close()  # a reset, as from a crashed server

    def main():
        server = yield from spawn(serve())
        with listener, Redis(port=port) as r:
            with pytest.raises(RedisConnectionError):
                yield from r.get("k")
            assert r.pool.size == 0
            yield from server.join()

    run(main())


def test_connect_timeout_covers_the_tcp_handshake():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # one connection fills the queue: later handshakes get no answer
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))

    def main():
        with Redis(port=port, connect_timeout=5) as r:
            started = yield from current_time()
            with pytest.raises(RedisTimeout, match="connecting to redis .* longer than 5 s"):
                yield from r.ping()
            assert (yield from current_time()) - started == pytest.approx(5)
            assert r.pool.size == 0

    try:
        virtual(main())
    finally:
        filler.close()
        listener.close()


def test_connect_timeout_covers_the_setup_commands():
    listener = listen("127.0.0.1", 0)
    port = listener.getsockname()[1]

    def silent():
        conn, _ = yield from listener.accept()
        with conn:
            while (yield from conn.recv(65536)):
                pass  # AUTH arrives and is never answered

    def main():
        server = yield from spawn(silent())
        with listener, Redis(port=port, password="pw", connect_timeout=5) as r:
            with pytest.raises(RedisTimeout, match="connecting"):
                yield from r.ping()
            assert r.pool.size == 0
            yield from server.join()

    virtual(main())
