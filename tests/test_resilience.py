"""Upstream: hedging cuts the tail within its budget, retries stay within
theirs, the breaker ejects and probes, and the deadline travels with each
call; against corofw backends in the same kernel, on a virtual clock."""

from __future__ import annotations

import pytest
from tail_servers import Backend, closed_port_url, percentile, run_served

from corofw import (
    Client,
    ConnectionRefused,
    ReadTimeout,
    Timeout,
    current_kernel,
    current_time,
    gather,
    move_on_after,
    sleep,
    spawn,
    timeout_after,
)
from corofw.http.resilience import Breaker, Hedge, Retry, Upstream, UpstreamUnavailable

pytestmark = pytest.mark.usefixtures("no_leaks")


def now():
    return (yield from current_time())


def spread(n):
    """A fast call: 40 to 60 ms, spread over a thousand values."""
    return 0.040 + (n * 7919 % 1000) * 0.00002


def heavy_tail(n):
    """One request in a hundred takes a second."""
    return 1.0 if n % 100 == 37 else spread(n)


def fanouts(api, count, width=10, workers=20):
    """``count`` fan-outs of ``width`` calls each, ``workers`` at a time;
    return each fan-out's duration."""
    durations = []

    def one(i):
        started = yield from now()
        responses = yield from gather(*(api.get(f"/item/{i * width + j}")
                                        for j in range(width)))
        assert all(r.status_code == 200 for r in responses)
        durations.append((yield from now()) - started)

    def worker(w):
        for i in range(w, count, workers):
            yield from one(i)

    yield from gather(*(worker(w) for w in range(workers)))
    return durations


# -- hedging ---------------------------------------------------------------------------


@pytest.mark.parametrize("hedge", [None, Hedge(after="p95", floor=0.065, min_per_second=0)],
                         ids=["no hedging", "hedged after p95"])
def test_hedging_cuts_the_fanout_tail_within_its_budget(hedge):
    backend = Backend(delay=heavy_tail)
    calls = 300 * 10

    def body(url):
        client = Client(url, max_connections=1000)
        api = Upstream(client, hedge=hedge)
        try:
            durations = yield from fanouts(api, 300)
        finally:
            client.close()
        return durations, api.stats

    durations, stats = run_served([backend.routes], body)
    p50 = percentile([spread(n) for n in range(calls)], 50)
    assert p50 == pytest.approx(0.05, abs=0.001)
    p99 = percentile(durations, 99)
    extra = backend.calls - calls
    assert extra == stats.hedges
    if hedge is None:
        assert p99 >= 1.0 and extra == 0
    else:
        assert p99 <= 3 * p50                 # the stragglers were overtaken
        assert 0.005 * calls <= extra <= 0.05 * calls
        assert stats.hedge_wins >= 0.9 * stats.hedges


def test_the_hedge_budget_caps_extra_calls_however_eager_the_policy():
    backend = Backend(delay=lambda n: 0.05)

    def body(url):
        client = Client(url, max_connections=1000)
        api = Upstream(client, hedge=Hedge(after=0.001, min_per_second=0))
        try:
            yield from fanouts(api, 100)
        finally:
            client.close()
        return api.stats

    stats = run_served([backend.routes], body)
    assert backend.calls == 1000 + stats.hedges
    assert 0.04 * 1000 <= stats.hedges <= 0.05 * 1000  # every call wanted a copy; 5% got one


def test_the_losing_copy_is_cancelled_and_its_connection_never_reused():
    backend = Backend(delay=lambda n: 1.0 if n == 0 else 0.01)

    def body(url):
        client = Client(url)
        api = Upstream(client, hedge=Hedge(after=0.1))
        try:
            started = yield from now()
            first = yield from api.get("/item/0")
            elapsed = (yield from now()) - started
            yield from sleep(2)  # the straggler's answer is due now, on a closed socket
            later = []
            for i in range(1, 6):
                later.append((yield from api.get(f"/item/{i}")).json())
        finally:
            client.close()
        return first.json(), elapsed, later, api.stats

    first, elapsed, later, stats = run_served([backend.routes], body)
    assert first == {"id": 0, "n": 1}         # the copy answered
    assert elapsed == pytest.approx(0.11)
    assert stats.hedges == 1 and stats.hedge_wins == 1
    # each later call got its own answer: no connection held a stale one
    assert [body["id"] for body in later] == [1, 2, 3, 4, 5]
    assert [body["n"] for body in later] == [2, 3, 4, 5, 6]


def test_a_streamed_answer_can_be_hedged_and_read():
    backend = Backend(delay=lambda n: 1.0 if n == 0 else 0.01)

    def body(url):
        client = Client(url)
        api = Upstream(client, hedge=Hedge(after=0.1))
        try:
            with (yield from api.get("/item/3", stream=True)) as response:
                data = yield from response.read()
            again = yield from api.get("/item/4")
        finally:
            client.close()
        return data, again.json()

    data, again = run_served([backend.routes], body)
    assert data == b'{"id":3,"n":1}' and again == {"id": 4, "n": 2}


def test_a_hedge_goes_to_another_address():
    slow = Backend(delay=lambda n: 5.0)
    fast = Backend(delay=lambda n: 0.01)

    def body(slow_url, fast_url):
        client = Client()
        api = Upstream(client, endpoints=[slow_url, fast_url], hedge=Hedge(after=0.2))
        try:
            started = yield from now()
            response = yield from api.get("/item/7")
            return response.json(), (yield from now()) - started, api.metrics()
        finally:
            client.close()

    answer, elapsed, metrics = run_served([slow.routes, fast.routes], body)
    assert answer == {"id": 7, "n": 0}
    assert elapsed == pytest.approx(0.21)
    assert slow.calls == 1 and fast.calls == 1
    assert metrics["hedges"] == 1 and metrics["hedge_wins"] == 1


def test_a_hedge_waits_for_enough_latencies_before_trusting_a_percentile():
    backend = Backend(delay=lambda n: 0.1 * (n + 1))  # each call slower than the last

    def body(url):
        client = Client(url)
        api = Upstream(client, hedge=Hedge(after="p50", min_samples=5, min_per_second=5))
        try:
            for i in range(6):
                yield from api.get(f"/item/{i}")
        finally:
            client.close()
        return api.stats

    stats = run_served([backend.routes], body)
    assert stats.hedges == 1 and backend.calls == 7  # only the sixth call had a percentile


def test_a_cancelled_caller_leaves_no_copy_running():
    backend = Backend(delay=lambda n: 5.0)

    def body(url):
        client = Client(url)
        api = Upstream(client, hedge=Hedge(after=0.1))
        try:
            task = yield from spawn(api.get("/item/1"))
            yield from sleep(1)
            task.cancel("the page was closed")
            with pytest.raises(BaseException) as caught:
                yield from task.join()
            kernel = current_kernel()
            alive = {t.name for t in kernel.tasks if "item" in t.name}
        finally:
            client.close()
        return caught.value, alive, api.stats

    error, alive, stats = run_served([backend.routes], body)
    assert getattr(error, "reason", "") == "the page was closed"
    assert alive == set() and stats.hedges == 1


def test_calls_the_budget_refused_get_the_next_tokens_oldest_first():
    # Calls 0 and 1 take a second; every other call 10 ms. Each call pays
    # 0.4 of a token, a copy costs one: the two slow calls ask for copies
    # at 20 ms and are refused; the calls after them pay for their copies,
    # the older first.
    backend = Backend(delay=lambda n: 1.0 if n < 2 else 0.01)

    def body(url):
        client = Client(url)
        api = Upstream(client, hedge=Hedge(after=0.02, ratio=0.4, min_per_second=0))
        done = {}

        def call(name, i):
            started = yield from now()
            response = yield from api.get(f"/item/{i}")
            done[name] = ((yield from now()) - started, response.json()["id"])

        try:
            tasks = []
            begun = yield from now()
            for name, at in [("a", 0.0), ("b", 0.005), ("c", 0.03), ("d", 0.05), ("e", 0.06)]:
                yield from sleep(begun + at - (yield from now()))
                tasks.append((yield from spawn(call(name, ord(name)))))
            for task in tasks:
                yield from task.join()
        finally:
            client.close()
        return done, api.stats

    done, stats = run_served([backend.routes], body)
    assert done["a"] == (pytest.approx(0.04, abs=0.003), ord("a"))  # hedged at 30 ms, by c
    assert done["b"] == (pytest.approx(0.065, abs=0.003), ord("b"))  # hedged at 60 ms, by e
    assert stats.hedges == 2 and stats.hedge_wins == 2
    assert stats.hedges_denied == 2  # each refused call counted once, however often it asked
    assert backend.calls == 7


def test_a_hedged_call_leaves_nothing_for_the_garbage_collector():
    import gc

    backend = Backend(delay=lambda n: 1.0 if n % 2 == 0 else 0.01)

    def body(url):
        client = Client(url)
        api = Upstream(client, hedge=Hedge(after=0.05, min_per_second=100))
        try:
            yield from api.get("/item/0")  # opens the connections the rest reuse
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
            for i in range(1, 20):
                yield from api.get(f"/item/{i}")  # half of them won by their copy
            gc.collect()
            left = [type(o).__name__ for o in gc.garbage]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
            client.close()
        return left, api.stats

    left, stats = run_served([backend.routes], body)
    assert stats.hedge_wins >= 8
    assert "Task" not in left and "_Arrivals" not in left and "Cancelled" not in left


# -- retries -----------------------------------------------------------------------------


def test_retries_honour_retry_after_then_succeed():
    backend = Backend(status=lambda n: 503 if n < 2 else 200, retry_after=lambda n: 1)

    def body(url):
        client = Client(url)
        api = Upstream(client, retry=Retry(attempts=3, seed=1))
        try:
            started = yield from now()
            response = yield from api.get("/item/1")
            return response.status_code, (yield from now()) - started, api.stats
        finally:
            client.close()

    status, elapsed, stats = run_served([backend.routes], body)
    assert status == 200 and backend.calls == 3
    assert elapsed == pytest.approx(2.0)  # Retry-After: 1, twice (longer than the backoff)
    assert stats.retries == 2


def test_retries_give_up_with_the_last_answer_after_the_attempts():
    backend = Backend(status=lambda n: 502)

    def body(url):
        client = Client(url)
        api = Upstream(client, retry=Retry(attempts=4, backoff=0.1, seed=3))
        try:
            started = yield from now()
            response = yield from api.get("/item/1")
            return response.status_code, response.json(), (yield from now()) - started
        finally:
            client.close()

    status, answer, elapsed = run_served([backend.routes], body)
    assert status == 502 and answer["n"] == 3 and backend.calls == 4
    assert 0 < elapsed <= 0.1 + 0.2 + 0.4  # full jitter under a doubling ceiling


def test_a_refused_connection_is_retried_on_the_next_address():
    backend = Backend()

    def body(url):
        client = Client()
        api = Upstream(client, endpoints=[closed_port_url(), url],
                       retry=Retry(attempts=2, seed=1))
        try:
            response = yield from api.get("/item/4")
            return response.json(), api.stats
        finally:
            client.close()

    answer, stats = run_served([backend.routes], body)
    assert answer == {"id": 4, "n": 0} and stats.retries == 1 and stats.attempts == 2


def test_the_last_error_is_raised_when_every_attempt_fails():
    def body():
        client = Client(closed_port_url())
        api = Upstream(client, retry=Retry(attempts=3, backoff=0.01, seed=1))
        try:
            yield from api.get("/item/4")
        except ConnectionRefused as exc:
            return exc, api.stats
        finally:
            client.close()

    error, stats = run_served([], body)
    assert "refused" in str(error) and stats.attempts == 3 and stats.retries == 2


def test_a_read_timeout_is_retried_for_idempotent_calls_only():
    backend = Backend(delay=lambda n: 1.0 if n in (0, 2) else 0.0)

    def body(url):
        client = Client(url, timeout=Timeout(read=0.5))
        api = Upstream(client, retry=Retry(attempts=2, backoff=0.01, seed=1))
        try:
            retried = yield from api.get("/item/1")
            with pytest.raises(ReadTimeout):
                yield from api.post("/item/2")
        finally:
            client.close()
        return retried.json()

    assert run_served([backend.routes], body) == {"id": 1, "n": 1}
    assert backend.calls == 3


def test_non_idempotent_calls_are_retried_only_when_marked_safe():
    backend = Backend(status=lambda n: 503)

    def body(url):
        client = Client(url)
        api = Upstream(client, retry=Retry(attempts=3, backoff=0.01, seed=1))
        try:
            plain = yield from api.post("/item/1", json={"a": 1})
            counted = backend.calls
            safe = yield from api.post("/item/1", json={"a": 1}, safe=True)
            unsafe_get = yield from api.get("/item/1", safe=False)
        finally:
            client.close()
        return plain.status_code, counted, safe.status_code, unsafe_get.status_code

    assert run_served([backend.routes], body) == (503, 1, 503, 503)
    assert backend.calls == 1 + 3 + 1


def test_the_deadline_ends_retries_early_with_the_last_answer():
    backend = Backend(status=lambda n: 503, retry_after=lambda n: 2)

    def body(url):
        client = Client(url)
        api = Upstream(client, retry=Retry(attempts=5, seed=1))
        try:
            started = yield from now()
            response = yield from timeout_after(1.5, api.get("/item/1"))
            return response.status_code, (yield from now()) - started
        finally:
            client.close()

    status, elapsed = run_served([backend.routes], body)
    assert status == 503 and backend.calls == 1 and elapsed == 0.0


@pytest.mark.parametrize("retries", [False, True], ids=["retries off", "retries on"])
def test_the_retry_budget_holds_on_an_upstream_failing_half_its_calls(retries):
    backend = Backend(status=lambda n: 503 if n % 2 else 200, delay=lambda n: 0.01)
    calls = 1000

    def body(url):
        client = Client(url, max_connections=1000)
        retry = Retry(attempts=3, backoff=0.005, seed=5, min_per_second=0) if retries else None
        api = Upstream(client, retry=retry)
        try:
            def worker(w):
                for _ in range(w, calls, 20):
                    yield from api.get("/item/1")

            yield from gather(*(worker(w) for w in range(20)))
        finally:
            client.close()
        return api.stats

    stats = run_served([backend.routes], body)
    if retries:
        assert calls * 1.15 <= backend.calls <= calls * 1.2  # not the 1.75x unbudgeted
        assert stats.retries_denied > 0
    else:
        assert backend.calls == calls


# -- the breaker -----------------------------------------------------------------------


def test_the_breaker_ejects_fails_fast_probes_and_recovers():
    healthy_from = [float("inf")]

    def status(n):
        return 200 if clock_now[0] >= healthy_from[0] else 503

    clock_now = [0.0]
    backend = Backend(status=status)

    def body(url):
        client = Client(url)
        api = Upstream(client, breaker=Breaker(failures=3, cooldown=1.0))
        circuit = api.endpoints[0].circuit
        log = []

        def call():
            clock_now[0] = yield from now()
            try:
                response = yield from api.get("/item/1")
                log.append(response.status_code)
            except UpstreamUnavailable as exc:
                log.append(f"fast {exc.retry_in:g}")

        try:
            for _ in range(4):
                yield from call()
            after_ejection = backend.calls
            yield from sleep(1.0)
            yield from call()                # the probe fails: ejected for 2 s
            yield from call()
            yield from sleep(2.0)
            healthy_from[0] = yield from now()
            yield from gather(call(), call())  # one probe; the other fails fast
            state = circuit.state
            yield from call()
        finally:
            client.close()
        return log, after_ejection, state, api.metrics()

    log, after_ejection, state, metrics = run_served([backend.routes], body)
    assert log == [503, 503, 503, "fast 1", 503, "fast 2", "fast 0", 200, 200]
    assert after_ejection == 3 and backend.calls == 6
    assert state == "closed"
    assert metrics["ejections"] == 2 and metrics["failed_fast"] == 3
    assert metrics["endpoints"][backend_url(metrics)]["state"] == "closed"


def backend_url(metrics):
    (url,) = metrics["endpoints"]
    return url


def test_an_ejected_address_is_skipped_while_another_serves():
    bad = Backend(status=lambda n: 503)
    good = Backend()

    def body(bad_url, good_url):
        client = Client()
        api = Upstream(client, endpoints=[bad_url, good_url],
                       breaker=Breaker(failures=2, cooldown=60))
        try:
            statuses = []
            for _ in range(8):
                statuses.append((yield from api.get("/item/1")).status_code)
        finally:
            client.close()
        return statuses

    statuses = run_served([bad.routes, good.routes], body)
    assert statuses == [503, 200, 503, 200, 200, 200, 200, 200]
    assert bad.calls == 2 and good.calls == 6


# -- deadlines on the wire ----------------------------------------------------------------


def test_the_remaining_time_travels_in_a_header():
    backend = Backend(delay=lambda n: 0.25)

    def body(url):
        client = Client(url)
        api = Upstream(client)
        quiet = Upstream(client, propagate_deadline=False)
        try:
            yield from api.get("/item/0")                              # no deadline
            yield from timeout_after(2.0, api.get("/item/1"))
            yield from move_on_after(1.0, gather(api.get("/item/2"), api.get("/item/3")))
            yield from timeout_after(2.0, api.get("/item/4",
                                                  headers={"x-envoy-expected-rq-timeout-ms":
                                                           "99"}))
            yield from timeout_after(2.0, quiet.get("/item/5"))
        finally:
            client.close()

    run_served([backend.routes], body)
    assert backend.deadlines == [None, "2000", "1000", "1000", "99", None]


def test_the_hedge_delay_is_no_deadline_of_the_call():
    backend = Backend(delay=lambda n: 0.25)

    def body(url):
        client = Client(url)
        api = Upstream(client, hedge=Hedge(after=0.1))
        try:
            yield from timeout_after(2.0, api.get("/item/1"))
        finally:
            client.close()
        return api.stats

    stats = run_served([backend.routes], body)
    assert stats.hedges == 1
    assert backend.deadlines == ["2000", "1900"]  # the copy went 0.1 s later


def test_an_upstream_needs_addresses():
    with pytest.raises(ValueError, match="base_url"):
        Upstream(Client())
    with pytest.raises(ValueError, match="absolute base URL"):
        Upstream(Client(), endpoints=["/relative"])
    with pytest.raises(ValueError, match="at least one"):
        Upstream(Client("http://x"), endpoints=[])
    with pytest.raises(TypeError):
        Upstream("http://x")


def test_paths_must_be_relative_to_the_address():
    api = Upstream(Client("http://127.0.0.1:1"))
    with pytest.raises(ValueError, match="starts with '/'"):
        next(api.get("http://elsewhere/x"))
