"""Durations and deadlines entering the kernel: NaN is refused in the task
that passed it, a negative duration has already passed, infinity is
"never"."""

from __future__ import annotations

import math
import time

import pytest

from corofw import (
    Cancelled,
    Deadline,
    TaskTimeout,
    VirtualClock,
    current_kernel,
    current_task,
    current_time,
    gather,
    move_on_after,
    run,
    sleep,
    spawn,
    timeout_after,
)

pytestmark = pytest.mark.usefixtures("no_leaks")

NAN = float("nan")


def vrun(coro):
    return run(coro, clock=VirtualClock())


def now():
    return (yield from current_time())


def woke_at(seconds):
    yield from sleep(seconds)
    return (yield from now())


# -- NaN -------------------------------------------------------------------------

def test_sleep_nan_raises_in_the_caller_and_leaves_other_sleepers_on_time():
    def bad():
        with pytest.raises(ValueError, match="NaN"):
            yield from sleep(NAN)
        return "refused"

    def main():
        return (yield from gather(woke_at(0.1), bad(), woke_at(0.15), woke_at(0.3)))

    assert vrun(main()) == [0.1, "refused", 0.15, 0.3]


def test_sleep_nan_cannot_break_the_loop_with_the_real_clock():
    def main():
        try:
            yield from sleep(NAN)
        except ValueError:
            pass
        started = time.monotonic()
        yield from sleep(0.01)  # polls with the nearest timer's timeout
        return time.monotonic() - started

    assert run(main()) < 1.0


@pytest.mark.parametrize("scope", [timeout_after, move_on_after])
def test_timeout_scopes_refuse_nan_before_running_the_body(scope):
    ran = []

    def body():
        ran.append(1)
        yield from sleep(1)

    def main():
        with pytest.raises(ValueError, match="NaN"):
            yield from scope(NAN, body())
        return len(current_kernel().timers)

    assert vrun(main()) == 0
    assert ran == []


def test_deadline_refuses_nan_and_keeps_its_previous_setting():
    def main():
        deadline = Deadline((yield from current_task()))
        deadline.set(1, "read")
        with pytest.raises(ValueError, match="NaN"):
            deadline.set(NAN, "write")
        try:
            yield from sleep(5)
        except Cancelled as exc:
            assert exc.scope is deadline
            return deadline.label, (yield from now())
        finally:
            deadline.close()

    assert vrun(main()) == ("read", 1.0)


def test_add_timer_refuses_nan():
    def main():
        with pytest.raises(ValueError, match="NaN"):
            current_kernel().add_timer(NAN, print, None)
        return len(current_kernel().timers)
        yield

    assert vrun(main()) == 0


def test_virtual_clock_refuses_nan_and_infinity():
    with pytest.raises(ValueError):
        VirtualClock(NAN)
    with pytest.raises(ValueError):
        VirtualClock(math.inf)
    with pytest.raises(ValueError):
        VirtualClock(autojump_threshold=NAN)
    clock = VirtualClock()
    with pytest.raises(ValueError):
        clock.advance(NAN)
    with pytest.raises(ValueError):
        clock.advance(math.inf)
    with pytest.raises(ValueError):
        clock.autojump_threshold = -1
    assert clock() == 0.0


# -- negative durations: already passed -------------------------------------------

def test_negative_sleep_returns_at_once():
    def main():
        yield from sleep(-1)
        yield from sleep(-math.inf)
        return (yield from now())

    assert vrun(main()) == 0.0


def test_negative_timeouts_have_already_expired():
    def main():
        with pytest.raises(TaskTimeout):
            yield from timeout_after(-1, sleep(1))
        moved = yield from move_on_after(-math.inf, sleep(1), default="moved on")
        return moved, (yield from now())

    assert vrun(main()) == ("moved on", 0.0)


def test_negative_deadline_cancels_at_the_next_wait():
    def main():
        deadline = Deadline((yield from current_task()))
        deadline.set(-1, "idle")
        try:
            yield from sleep(5)
        except Cancelled as exc:
            return exc.scope is deadline, (yield from now())
        finally:
            deadline.close()

    assert vrun(main()) == (True, 0.0)


# -- infinity: never -------------------------------------------------------------

@pytest.mark.parametrize("clock", [None, VirtualClock], ids=["real", "virtual"])
def test_sleep_inf_waits_until_cancelled_while_other_timers_fire(clock):
    def forever():
        yield from sleep(math.inf)

    def main():
        task = yield from spawn(forever())
        first = yield from woke_at(0.01)
        task.cancel("enough")
        with pytest.raises(Cancelled, match="enough"):
            yield from task.join()
        return first

    started = time.monotonic()
    result = run(main(), clock=clock and clock())
    assert result >= 0.01
    assert time.monotonic() - started < 1.0


def test_infinite_timeouts_and_deadlines_never_fire():
    def main():
        value = yield from timeout_after(math.inf, woke_at(1))
        moved = yield from move_on_after(math.inf, woke_at(2), default="moved on")
        deadline = Deadline((yield from current_task()))
        deadline.set(math.inf, "idle")
        yield from sleep(3)
        deadline.close()
        return value, moved, (yield from now())

    assert vrun(main()) == (1.0, 3.0, 6.0)


@pytest.mark.parametrize("threshold", [NAN, math.inf, -1])
def test_a_watchdog_threshold_that_is_not_a_duration_is_refused(threshold):
    def main():
        yield from sleep(0)

    with pytest.raises(ValueError, match="watchdog"):
        run(main(), watchdog=threshold)
