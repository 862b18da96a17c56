"""The parts of tail tolerance on their own: latency percentiles, budgets,
circuits, the hedge and retry arithmetic, the deadline header's format."""

from __future__ import annotations

import email.utils
import math
import time

import pytest

from corofw import VirtualClock, gather, move_on_after, run, sleep, spawn
from corofw.http.breaker import ADMITTED, CLOSED, HALF_OPEN, OPEN, PROBE, Breaker
from corofw.http.budget import Budget, SlidingCounts
from corofw.http.deadlines import deadline_now, format_timeout, parse_timeout, time_left
from corofw.http.latency import LatencyTracker
from corofw.http.policies import Hedge, Retry, parse_retry_after

# -- latency ------------------------------------------------------------------------


def test_percentiles_of_recent_latencies():
    tracker = LatencyTracker(size=100)
    assert tracker.percentile(50) is None and len(tracker) == 0
    for ms in range(1, 101):
        tracker.record(ms / 1000)
    assert len(tracker) == 100
    assert tracker.percentile(50) == 0.050
    assert tracker.percentile(95) == 0.095
    assert tracker.percentile(100) == 0.100
    assert tracker.percentile(0) == 0.001


def test_old_latencies_fall_out_of_the_ring():
    tracker = LatencyTracker(size=16)
    for _ in range(16):
        tracker.record(1.0)
    for _ in range(16):
        tracker.record(0.01)
    assert len(tracker) == 16
    assert tracker.percentile(100) == 0.01


def test_a_percentile_lags_at_most_an_eighth_of_the_ring():
    tracker = LatencyTracker(size=64)
    for _ in range(64):
        tracker.record(0.01)
    assert tracker.percentile(99) == 0.01
    for _ in range(7):
        tracker.record(5.0)
    assert tracker.percentile(99) == 0.01  # the sorted copy is reused...
    tracker.record(5.0)
    assert tracker.percentile(99) == 5.0   # ...until 64 // 8 samples changed


def test_nonsense_latencies_are_ignored_and_bad_percentiles_refused():
    tracker = LatencyTracker(size=4)
    tracker.record(math.nan)
    tracker.record(-1.0)
    assert len(tracker) == 0
    with pytest.raises(ValueError):
        tracker.percentile(101)
    with pytest.raises(ValueError):
        LatencyTracker(size=0)


# -- budgets ---------------------------------------------------------------------------


def test_a_budget_allows_ratio_extra_calls_per_call():
    clock = VirtualClock()
    budget = Budget(ratio=0.2, min_per_second=0, clock=clock)
    assert not budget.try_withdraw()  # nothing deposited, no reserve
    for _ in range(10):
        budget.deposit()
    assert budget.balance == pytest.approx(2.0)
    assert budget.try_withdraw() and budget.try_withdraw()
    assert not budget.try_withdraw()


def test_the_reserve_lets_a_quiet_service_retry_and_refills_as_time_passes():
    clock = VirtualClock()
    budget = Budget(ratio=0.0, min_per_second=0.5, window=10.0, clock=clock)
    allowed = sum(budget.try_withdraw() for _ in range(20))
    assert allowed == 5  # 0.5 per second over a 10 s window
    clock.advance(5.0)
    assert not budget.try_withdraw()  # withdrawals are remembered for the window
    clock.advance(5.0)
    assert sum(budget.try_withdraw() for _ in range(20)) == 5


def test_the_floor_serves_light_traffic_and_adds_nothing_to_heavy_traffic():
    clock = VirtualClock()
    light = Budget(ratio=0.2, min_per_second=1.0, window=10.0, clock=clock)
    for _ in range(20):
        light.deposit()
    assert sum(light.try_withdraw() for _ in range(50)) == 10  # the floor, not 4
    heavy = Budget(ratio=0.2, min_per_second=1.0, window=10.0, clock=clock)
    for _ in range(1000):
        heavy.deposit()
    assert sum(heavy.try_withdraw() for _ in range(500)) == 200  # 20%, not 20% + 10


def test_deposits_expire_so_quiet_time_does_not_save_up_retries():
    clock = VirtualClock()
    budget = Budget(ratio=1.0, min_per_second=0, window=10.0, clock=clock)
    for _ in range(100):
        budget.deposit()
    assert budget.balance == pytest.approx(100)
    clock.advance(5.0)
    assert budget.balance == pytest.approx(100)
    clock.advance(5.0)
    assert budget.balance == pytest.approx(0)  # older than the window: gone
    clock.advance(3600)
    assert budget.balance == 0


def test_a_budget_follows_the_kernel_clock():
    def main():
        budget = Budget(ratio=0.0, min_per_second=0.1, window=10.0)
        first = budget.try_withdraw()
        second = budget.try_withdraw()
        yield from sleep(10)
        return first, second, budget.try_withdraw()

    assert run(main(), clock=VirtualClock()) == (True, False, True)


def test_sliding_counts_survive_a_clock_that_starts_over():
    clock = VirtualClock(start=100.0)
    counts = SlidingCounts(10.0, 1, clock=clock)
    counts.add(0, 3)
    assert counts.totals() == [3]
    counts._clock = VirtualClock()  # a new kernel's clock starts at 0
    assert counts.totals() == [0]


@pytest.mark.parametrize("kwargs", [{"ratio": -0.1}, {"ratio": math.nan},
                                    {"ratio": 0.1, "min_per_second": -1},
                                    {"ratio": 0.1, "window": 0}])
def test_bad_budgets_are_refused(kwargs):
    with pytest.raises(ValueError):
        Budget(**kwargs)


# -- circuits ----------------------------------------------------------------------------


def test_a_circuit_opens_after_consecutive_failures_and_fails_fast():
    clock = VirtualClock()
    circuit = Breaker(failures=3, cooldown=5.0).circuit(clock)
    for _ in range(2):
        assert circuit.admit() == ADMITTED
        circuit.failed(ADMITTED)
    circuit.succeeded(ADMITTED)  # a success in between starts the count again
    for _ in range(3):
        circuit.failed(circuit.admit())
    assert circuit.state == OPEN and circuit.ejections == 1
    assert circuit.admit() is None
    assert circuit.retry_in() == 5.0


def test_one_probe_at_a_time_once_the_cooldown_is_over():
    clock = VirtualClock()
    circuit = Breaker(failures=1, cooldown=5.0).circuit(clock)
    circuit.failed(circuit.admit())
    clock.advance(5.0)
    assert circuit.admit() == PROBE and circuit.state == HALF_OPEN
    assert circuit.admit() is None  # the others wait for the probe's outcome
    circuit.abandoned(PROBE)        # a cancelled probe passes its turn on
    assert circuit.admit() == PROBE
    circuit.succeeded(PROBE)
    assert circuit.state == CLOSED and circuit.admit() == ADMITTED


def test_a_failed_probe_ejects_again_for_twice_as_long_up_to_the_maximum():
    clock = VirtualClock()
    circuit = Breaker(failures=1, cooldown=1.0, max_cooldown=3.0).circuit(clock)
    circuit.failed(circuit.admit())
    waits = []
    for _ in range(3):
        waits.append(circuit.retry_in())
        clock.advance(circuit.retry_in())
        circuit.failed(circuit.admit())
    assert waits == [1.0, 2.0, 3.0]
    clock.advance(3.0)
    circuit.succeeded(circuit.admit())
    circuit.failed(circuit.admit())
    assert circuit.retry_in() == 1.0  # a recovery resets the cooldown


def test_calls_that_were_in_flight_do_not_reopen_or_close_an_open_circuit():
    clock = VirtualClock()
    circuit = Breaker(failures=1, cooldown=5.0).circuit(clock)
    circuit.failed(circuit.admit())
    circuit.succeeded(ADMITTED)
    circuit.failed(ADMITTED)
    assert circuit.state == OPEN and circuit.ejections == 1


def test_a_failure_rate_over_the_window_opens_the_circuit():
    clock = VirtualClock()
    circuit = Breaker(failures=100, failure_rate=0.5, min_calls=10, window=10.0).circuit(clock)
    for i in range(9):
        (circuit.failed if i % 2 else circuit.succeeded)(circuit.admit())
    assert circuit.state == CLOSED  # 4 of 9: too few calls to judge
    circuit.failed(circuit.admit())
    assert circuit.state == OPEN    # 5 of 10 failed


@pytest.mark.parametrize("kwargs", [{"failures": 0}, {"failure_rate": 1.5},
                                    {"cooldown": 0}, {"window": math.inf}])
def test_bad_breakers_are_refused(kwargs):
    with pytest.raises(ValueError):
        Breaker(**kwargs)


# -- hedge and retry arithmetic ---------------------------------------------------------------


def test_a_hedge_waits_for_a_percentile_of_recent_latencies_with_a_floor():
    tracker = LatencyTracker()
    hedge = Hedge(after="p90", min_samples=10, floor=0.002)
    for ms in range(1, 10):
        tracker.record(ms / 1000)
    assert hedge.delay(tracker) is None  # 9 samples: not yet trusted
    tracker.record(0.010)
    assert hedge.delay(tracker) == 0.009
    assert Hedge(after="p10", min_samples=10, floor=0.002).delay(tracker) == 0.002
    assert Hedge(after=0.25).delay(LatencyTracker()) == 0.25  # fixed: no samples needed


@pytest.mark.parametrize("after", ["95", "p0", "p100", "pxx", -1, math.nan])
def test_bad_hedge_delays_are_refused(after):
    with pytest.raises(ValueError):
        Hedge(after=after)


def test_backoff_is_full_jitter_under_a_doubling_ceiling():
    retry = Retry(backoff=0.1, max_backoff=0.5, seed=7)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (60, 0.5)]:
        waits = [retry.backoff_for(attempt) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.9 and min(waits) < ceiling * 0.1
    assert [Retry(seed=1).backoff_for(1) for _ in range(2)] == [Retry(seed=1).backoff_for(1)] * 2


def test_retry_after_in_seconds_or_as_an_http_date():
    now = time.time()
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    later = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(30, abs=1)
    earlier = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0.0
    for junk in (None, "", "soon", "-5", "1.5", "٣", "Wed, 21 Oct 2015 07:28:00"):
        assert parse_retry_after(junk) is None


def test_a_wait_is_the_longer_of_backoff_and_retry_after_unless_too_long():
    retry = Retry(backoff=0.01, max_retry_after=10, seed=1)
    assert retry.wait_before(1, "3") == 3.0
    assert retry.wait_before(1, "11") is None           # more than max_retry_after
    assert retry.wait_before(1, "3", left=2.0) is None  # would end past the deadline
    assert retry.wait_before(1, "3", left=5.0) == 3.0
    assert 0 <= retry.wait_before(2, None, left=5.0) <= 0.02


# -- deadlines --------------------------------------------------------------------------------


def test_the_header_carries_whole_milliseconds_rounded_down():
    assert format_timeout(2.5) == "2500"
    assert format_timeout(0.0019) == "1"
    assert format_timeout(-3) == "0"
    assert parse_timeout("2500") == 2.5
    assert parse_timeout(" 0 ") == 0.0
    for junk in (None, "", "1.5", "-1", "1e3", "+5", "٣", "1" * 13):
        assert parse_timeout(junk) is None


def test_the_deadline_is_the_earliest_scope_and_gathered_calls_share_their_callers():
    seen = {}

    def call(name):
        yield from sleep(1)
        seen[name] = deadline_now(), time_left()

    def inner():
        seen["inner"] = deadline_now()
        yield from gather(call("gathered"), call("also gathered"))
        task = yield from spawn(call("spawned"))  # not cancelled with its caller: no deadline
        yield from task.join()

    def main():
        seen["outside"] = deadline_now(), time_left()
        yield from sleep(1)
        yield from move_on_after(10, move_on_after(4, inner()))

    run(main(), clock=VirtualClock())
    assert seen == {"outside": (None, None), "inner": 5.0, "gathered": (5.0, 3.0),
                    "also gathered": (5.0, 3.0), "spawned": (None, None)}
    assert deadline_now() is None and time_left() is None and time_left(3.0) is None
