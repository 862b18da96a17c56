"""Redis pub/sub: messages reach a task waiting for them; subscriptions
change while it waits; timeouts leave the subscription intact; a lost
connection is a clear error."""

from __future__ import annotations

import pytest

from corofw import Kernel, VirtualClock, current_time, gather, run, run_in_thread, sleep, spawn
from corofw.data.redis import Redis
from corofw.data.redis_errors import RedisConnectionError
from corofw.data.redis_pubsub import Message

pytestmark = pytest.mark.usefixtures("no_leaks")


def virtual(coro):
    """A virtual clock that jumps only after 0.25 real seconds of silence."""
    return Kernel(clock=VirtualClock(autojump_threshold=0.25)).run(coro)


def test_a_waiting_task_gets_each_message_in_order(redis_url):
    def listener(sub, count):
        got = []
        for _ in range(count):
            got.append((yield from sub.next_message()))
        return got

    def main():
        with Redis(redis_url) as r:
            with (yield from r.subscribe("news", "sport")) as sub:
                assert sub.channels == {b"news", b"sport"}
                task = yield from spawn(listener(sub, 3))
                yield from sleep(0.01)  # the listener is waiting in epoll
                assert (yield from r.publish("news", "one")) == 1
                yield from r.publish("sport", b"\x00two")
                yield from r.publish("weather", "nobody hears this")
                yield from r.publish("news", "three")
                assert (yield from task.join()) == [
                    Message(b"news", b"one"), Message(b"sport", b"\x00two"),
                    Message(b"news", b"three")]
            assert sub.closed
            assert r.pool.size == r.pool.idle  # the subscription never used the pool

    run(main())


def test_pattern_subscriptions_and_decoded_messages(redis_url):
    def main():
        with Redis(redis_url, decode_responses=True) as r, \
                (yield from r.psubscribe("user.*")) as sub:
            yield from sub.subscribe("plain")
            yield from r.publish("user.42", "héllo")
            yield from r.publish("plain", "x")
            assert (yield from sub.next_message()) == Message("user.42", "héllo", "user.*")
            assert (yield from sub.next_message()) == Message("plain", "x")
            yield from sub.punsubscribe()
            assert sub.patterns == set()
            assert (yield from r.publish("user.1", "gone")) == 0
            assert sub.channels == {"plain"}

    run(main())


def test_subscribe_and_unsubscribe_while_another_task_waits(redis_url):
    def main():
        with Redis(redis_url) as r, (yield from r.subscribe("a")) as sub:
            waiting = yield from spawn(sub.next_message())
            yield from sleep(0.01)
            yield from sub.subscribe("b")  # confirmed through the waiting reader
            assert sub.channels == {b"a", b"b"}
            yield from r.publish("b", "to b")
            assert (yield from waiting.join()) == Message(b"b", b"to b")
            waiting = yield from spawn(sub.next_message())
            yield from sleep(0.01)
            yield from sub.unsubscribe("a")
            assert sub.channels == {b"b"}
            assert (yield from r.publish("a", "lost")) == 0
            yield from r.publish("b", "kept")
            assert (yield from waiting.join()) == Message(b"b", b"kept")
            yield from sub.unsubscribe()
            assert sub.channels == set()

    run(main())


def test_a_timed_out_wait_leaves_the_subscription_intact(redis_url):
    def main():
        with Redis(redis_url) as r, (yield from r.subscribe("ch")) as sub:
            started = yield from current_time()
            assert (yield from sub.next_message(timeout=30)) is None
            assert (yield from current_time()) - started == pytest.approx(30)
            yield from r.publish("ch", "after the timeout")
            assert (yield from sub.next_message(timeout=30)) == Message(
                b"ch", b"after the timeout")
            waiting = yield from spawn(sub.next_message())
            yield from sleep(1)
            waiting.cancel()
            with pytest.raises(BaseException, match="cancelled"):
                yield from waiting.join()
            yield from r.publish("ch", "after a cancel")
            assert (yield from sub.next_message()) == Message(b"ch", b"after a cancel")

    virtual(main())


def test_many_subscribers_each_get_every_message(redis_url):
    def main():
        with Redis(redis_url) as r:
            subs = yield from gather(*[r.subscribe("fan") for _ in range(20)])
            assert (yield from r.publish("fan", "x")) == 20
            messages = yield from gather(*[sub.next_message() for sub in subs])
            assert messages == [Message(b"fan", b"x")] * 20
            for sub in subs:
                sub.close()

    run(main())


def test_closing_wakes_the_waiting_task_with_a_connection_error(redis_url):
    def main():
        with Redis(redis_url) as r:
            sub = yield from r.subscribe("ch")
            waiting = yield from spawn(sub.next_message())
            yield from sleep(0.01)
            sub.close()
            with pytest.raises(RedisConnectionError, match="closed"):
                yield from waiting.join()
            with pytest.raises(RedisConnectionError):
                yield from sub.subscribe("other")

    run(main())


def test_a_lost_connection_is_a_connection_error(redis_url, redis_server):
    def main():
        with Redis(redis_url) as r:
            with (yield from r.subscribe("ch")) as sub:
                waiting = yield from spawn(sub.next_message())
                yield from sleep(0.01)
                yield from run_in_thread(redis_server.restart)
                with pytest.raises(RedisConnectionError, match="closed the connection"):
                    yield from waiting.join()
                assert sub.closed
                with pytest.raises(RedisConnectionError, match="broke"):
                    yield from sub.next_message()
            with (yield from r.subscribe("ch")) as again:  # a new subscription works
                yield from r.publish("ch", "back")
                assert (yield from again.next_message()) == Message(b"ch", b"back")

    run(main())
