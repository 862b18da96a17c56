"""The Redis client against a real redis-server: commands, replies and
their Python values, errors, the pool, pipelines and transactions, URLs,
authentication and databases."""

from __future__ import annotations

import socket
import time

import pytest
from redis_server import free_port

from corofw import Kernel, VirtualClock, current_time, gather, run, spawn
from corofw.data.redis import Redis, _parse_url
from corofw.data.redis_errors import (
    RedisConnectionError,
    RedisError,
    RedisPoolTimeout,
    ResponseError,
)

pytestmark = pytest.mark.usefixtures("no_leaks")


def virtual(coro):
    """Run ``coro`` under a virtual clock that jumps only when the server has
    been silent for 0.25 real seconds (so it never races a real reply)."""
    return Kernel(clock=VirtualClock(autojump_threshold=0.25)).run(coro)


def server_stat(url: str, name: str) -> int:
    """One field of INFO stats, read on a plain blocking socket."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"INFO stats\r\n")
        data = b""
        while data.count(b"\r\n") < 2 or len(data) < int(data[1:data.index(b"\r\n")]):
            data += sock.recv(65536)
    for line in data.decode().splitlines():
        if line.startswith(name + ":"):
            return int(line.split(":", 1)[1])
    raise KeyError(name)


# -- commands ----------------------------------------------------------------------

def test_string_and_key_commands(redis_url):
    def main():
        with Redis(redis_url) as r:
            assert (yield from r.ping()) is True
            assert (yield from r.echo("hi")) == b"hi"
            assert (yield from r.get("missing")) is None
            assert (yield from r.set("k", "v")) is True
            assert (yield from r.get("k")) == b"v"
            assert (yield from r.set("k", "new", nx=True)) is None
            assert (yield from r.set("other", "x", xx=True)) is None
            assert (yield from r.set("k", "w", xx=True, get=True)) == b"v"
            assert (yield from r.set("t", 1, ex=100)) is True
            assert 99 <= (yield from r.ttl("t")) <= 100
            assert (yield from r.set("t", 2, keepttl=True)) is True
            assert (yield from r.ttl("t")) > 0
            assert (yield from r.set("p", b"\x00\xff", px=50_000)) is True
            assert 49_000 < (yield from r.pttl("p")) <= 50_000
            assert (yield from r.get("p")) == b"\x00\xff"
            assert (yield from r.set("f", 2.5, ex=1.5)) is True
            assert 1000 < (yield from r.pttl("f")) <= 1500
            assert (yield from r.incr("n")) == 1
            assert (yield from r.incr("n", 10)) == 11
            assert (yield from r.decr("n")) == 10
            assert (yield from r.decr("n", 4)) == 6
            assert (yield from r.expire("n", 30)) is True
            assert (yield from r.expire("missing", 30)) is False
            assert (yield from r.pexpire("n", 30_000)) is True
            assert (yield from r.ttl("missing")) == -2
            assert (yield from r.mset({"a": 1, "b": "two", b"c": b"3"})) is True
            assert (yield from r.mget("a", "b", "c", "zz")) == [b"1", b"two", b"3", None]
            assert (yield from r.exists("a", "b", "zz")) == 2
            assert (yield from r.delete("a", "b", "zz")) == 2
            assert (yield from r.execute("ZADD", "z", 1, "one", 2, "two")) == 2
            assert (yield from r.execute_command("ZRANGE", "z", 0, -1)) == [b"one", b"two"]
            assert (yield from r.flushdb()) is True
            assert (yield from r.exists("k", "z")) == 0

    run(main())


def test_hash_list_and_set_commands(redis_url):
    def main():
        with Redis(redis_url) as r:
            assert (yield from r.hset("h", "f", "v")) == 1
            assert (yield from r.hset("h", mapping={"g": 1, "f": "w"})) == 1
            assert (yield from r.hget("h", "f")) == b"w"
            assert (yield from r.hgetall("h")) == {b"f": b"w", b"g": b"1"}
            assert (yield from r.hgetall("missing")) == {}
            assert (yield from r.hincrby("h", "g", 5)) == 6
            assert (yield from r.hdel("h", "f", "zz")) == 1
            with pytest.raises(ValueError):
                r.hset("h")
            assert (yield from r.lpush("l", "b", "a")) == 2
            assert (yield from r.rpush("l", "c")) == 3
            assert (yield from r.lrange("l")) == [b"a", b"b", b"c"]
            assert (yield from r.llen("l")) == 3
            assert (yield from r.lpop("l")) == b"a"
            assert (yield from r.rpop("l")) == b"c"
            assert (yield from r.blpop(["empty", "l"], 1)) == (b"l", b"b")
            assert (yield from r.rpop("l")) is None
            yield from r.rpush("l", "x", "y")
            assert (yield from r.brpop("l", 1)) == (b"l", b"y")
            assert (yield from r.sadd("s", "a", "b", "a")) == 2
            assert (yield from r.smembers("s")) == {b"a", b"b"}

    run(main())


def test_decode_responses_gives_str(redis_url):
    def main():
        with Redis(redis_url, decode_responses=True) as r:
            yield from r.set("k", "héllo")
            assert (yield from r.get("k")) == "héllo"
            yield from r.hset("h", mapping={"a": "1"})
            assert (yield from r.hgetall("h")) == {"a": "1"}
            assert (yield from r.ping()) is True
            assert (yield from r.set("k", "x", nx=True)) is None

    run(main())


def test_an_error_reply_raises_with_the_server_text_and_keeps_the_connection(redis_url):
    def main():
        with Redis(redis_url) as r:
            yield from r.set("s", "text")
            with pytest.raises(ResponseError) as info:
                yield from r.lpush("s", "x")
            assert info.value.kind == "WRONGTYPE"
            assert "WRONGTYPE Operation against a key" in str(info.value)
            with pytest.raises(ResponseError, match="unknown command"):
                yield from r.execute("NO-SUCH-COMMAND")
            assert isinstance(info.value, RedisError)
            assert (r.pool.size, r.pool.idle) == (1, 1)
            assert (yield from r.get("s")) == b"text"

    run(main())


def test_an_argument_redis_has_no_type_for_fails_before_anything_is_sent(redis_url):
    def main():
        with Redis(redis_url) as r:
            with pytest.raises(TypeError, match="cannot send None"):
                r.set("k", None)
            with pytest.raises(TypeError):
                r.execute("SET", "k", True)
            assert r.pool.size == 0
            yield from r.ping()

    run(main())


# -- the pool ----------------------------------------------------------------------

def test_64_concurrent_tasks_share_the_pool(redis_url):
    def worker(r, i):
        for _ in range(20):
            assert (yield from r.get(f"key{i}")) == f"value{i}".encode()
        return i

    def main():
        with Redis(redis_url, max_connections=16) as r:
            yield from r.mset({f"key{i}": f"value{i}" for i in range(64)})
            done = yield from gather(*[worker(r, i) for i in range(64)])
            assert done == list(range(64))
            assert r.pool.size <= 16
            assert r.pool.idle == r.pool.size and r.pool.waiting == 0

    run(main())


def test_waiters_get_connections_first_come_first_served(redis_url):
    order = []

    def waiter(r, n):
        yield from r.get("anything")
        order.append(n)

    def main():
        with Redis(redis_url, max_connections=1) as r, Redis(redis_url) as other:
            holder = yield from spawn(r.blpop("queue", 0))
            while r.pool.idle or r.pool.size == 0:
                yield from other.ping()  # until the holder's BLPOP has the one connection
            waiters = []
            for n in range(5):
                waiters.append((yield from spawn(waiter(r, n))))
                yield from other.ping()
            assert r.pool.waiting == 5
            yield from other.rpush("queue", "go")
            assert (yield from holder.join()) == (b"queue", b"go")
            for task in waiters:
                yield from task.join()
            assert order == [0, 1, 2, 3, 4]
            assert (r.pool.size, r.pool.idle) == (1, 1)

    run(main())


def test_a_caller_waits_at_most_the_pool_timeout(redis_url):
    def main():
        with Redis(redis_url, max_connections=1, pool_timeout=30) as r, \
                Redis(redis_url) as other:
            holder = yield from spawn(r.blpop("queue", 0))
            while r.pool.idle or r.pool.size == 0:
                yield from other.ping()
            started = yield from current_time()
            with pytest.raises(RedisPoolTimeout, match="within 30 s"):
                yield from r.get("x")
            assert (yield from current_time()) - started == pytest.approx(30)
            assert r.pool.waiting == 0
            yield from other.rpush("queue", "go")
            yield from holder.join()
            assert (yield from r.get("x")) is None
            assert r.pool.size == 1

    virtual(main())


def test_a_refused_connection_is_a_connection_error_and_frees_its_slot():
    port = free_port()

    def main():
        with Redis(port=port, max_connections=1, pool_timeout=1) as r:
            for _ in range(3):
                with pytest.raises(RedisConnectionError, match="connection refused"):
                    yield from r.get("k")
            assert r.pool.size == 0

    run(main())


def test_a_closed_client_refuses_commands(redis_url):
    def main():
        r = Redis(redis_url)
        yield from r.ping()
        r.close()
        assert r.pool.size == 0
        with pytest.raises(RedisConnectionError, match="closed"):
            yield from r.ping()
        with pytest.raises(RedisConnectionError, match="closed"):
            yield from r.subscribe("ch")

    run(main())


# -- pipelines -----------------------------------------------------------------------

def test_a_pipeline_is_one_round_trip(redis_url):
    def main():
        with Redis(redis_url) as r:
            yield from r.ping()  # the connection exists before counting
            before = server_stat(redis_url, "total_reads_processed")
            p = r.pipeline(transaction=False)
            for i in range(200):
                p.set(f"k{i}", i)
            p.get("k7").incr("k7").hgetall("none")
            results = yield from p.execute()
            pipelined = server_stat(redis_url, "total_reads_processed") - before
            assert results == [True] * 200 + [b"7", 8, {}]
            assert len(p) == 0
            before = server_stat(redis_url, "total_reads_processed")
            for i in range(20):
                yield from r.get(f"k{i}")
            one_by_one = server_stat(redis_url, "total_reads_processed") - before
            # each count includes two reads of the counting itself: the second
            # INFO command, and the end of the first one's connection
            assert pipelined - 2 == 1
            assert one_by_one - 2 == 20

    run(main())


def test_a_transaction_runs_atomically_and_an_empty_pipeline_sends_nothing(redis_url):
    def main():
        with Redis(redis_url) as r:
            assert (yield from r.pipeline().execute()) == []
            p = r.pipeline()
            p.set("a", 1).incr("a").execute_command("LPUSH", "l", "x").get("a")
            assert (yield from p.execute()) == [True, 2, 1, b"2"]

            p = r.pipeline()  # refused while queueing: Redis discards the transaction
            p.set("b", 1).execute_command("SET", "c")
            with pytest.raises(ResponseError, match="wrong number of arguments"):
                yield from p.execute()
            assert (yield from r.exists("b")) == 0
            assert r.pool.size == r.pool.idle == 1

    run(main())


def test_error_replies_in_a_pipeline(redis_url):
    def main():
        with Redis(redis_url) as r:
            yield from r.set("s", "text")
            p = r.pipeline(transaction=False)
            p.lpush("s", "x").set("after", 1).get("after")
            with pytest.raises(ResponseError, match="WRONGTYPE"):
                yield from p.execute()
            assert (yield from r.get("after")) == b"1"
            p.lpush("s", "x").incr("after")
            error, value = yield from p.execute(raise_on_error=False)
            assert isinstance(error, ResponseError) and value == 2
            p = r.pipeline()  # in a transaction: a runtime error leaves the rest applied
            p.lpush("s", "x").incr("after")
            error, value = yield from p.execute(raise_on_error=False)
            assert isinstance(error, ResponseError) and value == 3
            assert r.pool.size == r.pool.idle == 1

    run(main())


# -- configuration -----------------------------------------------------------------------

def test_urls():
    assert _parse_url("redis://localhost") == {"host": "localhost", "port": None}
    assert _parse_url("redis://:s%40cret@h:7000/3") == {
        "host": "h", "port": 7000, "db": 3, "password": "s@cret"}
    assert _parse_url("redis://ann:pw@h/0?db=2") == {
        "host": "h", "port": None, "db": 2, "username": "ann", "password": "pw"}
    assert _parse_url("unix:///run/redis.sock?db=1") == {"path": "/run/redis.sock", "db": 1}
    for bad in ("http://h", "rediss://h", "redis://h/x", "redis://h?timeout=1"):
        with pytest.raises(ValueError):
            _parse_url(bad)
    r = Redis("redis://h:7000/2", db=5, port=7001)
    assert (r.host, r.port, r.db) == ("h", 7001, 5)


def test_databases_are_selected_and_a_unix_socket_works(redis_url, redis_server):
    def main():
        with Redis(redis_url) as zero, Redis(redis_url, db=1) as one, \
                Redis(f"unix://{redis_server.unix_socket}?db=1") as local:
            yield from zero.set("k", "zero")
            yield from one.set("k", "one")
            assert (yield from zero.get("k")) == b"zero"
            assert (yield from local.get("k")) == b"one"
            yield from one.flushdb()

    run(main())


def test_password_authentication(redis_url):
    def main():
        with Redis(redis_url) as admin:
            yield from admin.execute("CONFIG", "SET", "requirepass", "s3cret")
            try:
                with Redis(redis_url, password="s3cret") as good, \
                        Redis(redis_url.replace("//", "//default:s3cret@")) as named, \
                        Redis(redis_url, password="wrong") as bad, Redis(redis_url) as none:
                    assert (yield from good.ping()) is True
                    assert (yield from named.ping()) is True
                    with pytest.raises(ResponseError) as info:
                        yield from bad.ping()
                    assert info.value.kind == "WRONGPASS"
                    assert bad.pool.size == 0
                    with pytest.raises(ResponseError) as info:
                        yield from none.ping()
                    assert info.value.kind == "NOAUTH"
            finally:
                yield from admin.execute("CONFIG", "SET", "requirepass", "")

    run(main())


def test_blpop_waits_overlap(redis_url):
    def main():
        with Redis(redis_url) as r:
            yield from gather(*[r.ping() for _ in range(10)])  # ten open connections
            started = time.monotonic()
            results = yield from gather(*[r.blpop(f"empty{i}", 0.2) for i in range(10)])
            elapsed = time.monotonic() - started
            assert results == [None] * 10
            assert 0.19 < elapsed < 1.0  # one after the other would take 2 s

    run(main())


def test_the_client_works_with_the_pure_python_reader(run_python, redis_url):
    result = run_python("""
        import sys
        sys.modules["hiredis"] = None  # as if it were not installed
        from corofw import gather, run
        from corofw.data import resp
        from corofw.data.redis import Redis
        assert resp.Reader is resp.PythonReader

        def main():
            with Redis(sys.argv[1], decode_responses=True) as r:
                yield from r.hset("h", mapping={"a": "é", "b": 2})
                assert (yield from r.hgetall("h")) == {"a": "é", "b": "2"}
                p = r.pipeline()
                p.set("k", "v").get("k").execute_command("LPUSH", "h", "x")
                assert (yield from p.execute(raise_on_error=False))[:2] == [True, "v"]
                values = yield from gather(*[r.get("k") for _ in range(20)])
                assert values == ["v"] * 20
                with (yield from r.subscribe("ch")) as sub:
                    yield from r.publish("ch", "m")
                    assert (yield from sub.next_message()).data == "m"
            print("ok")

        run(main())
    """, redis_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
