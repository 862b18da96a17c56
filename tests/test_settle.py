"""Partial results: gather_settled() keeps every call's outcome, first_k()
returns once k calls have succeeded; neither lets a child outlive it."""

from __future__ import annotations

import pytest

from corofw import (
    Cancelled,
    TaskTimeout,
    VirtualClock,
    current_deadline,
    current_task,
    current_time,
    run,
    sleep,
    spawn,
    timeout_after,
)
from corofw.kernel.settle import Outcome, TooFewSucceeded, first_k, gather_settled

pytestmark = pytest.mark.usefixtures("no_leaks")


def vrun(coro):
    return run(coro, clock=VirtualClock())


def now():
    return (yield from current_time())


def after(seconds, value, log=None):
    try:
        yield from sleep(seconds)
        return value
    finally:
        if log is not None:
            log.append((value, (yield from now())))


def failing_after(seconds, error, log=None):
    try:
        yield from sleep(seconds)
        raise error
    finally:
        if log is not None:
            log.append((repr(error), (yield from now())))


def alive_children():
    """The tasks other than the caller, right now."""
    me = yield from current_task()
    return {task for task in me.kernel.tasks if task is not me}


# -- Outcome ----------------------------------------------------------------------


def test_an_outcome_unwraps_to_its_value_or_raises_its_error():
    good, bad = Outcome(3), Outcome(error=KeyError("k"))
    assert good.ok and good.unwrap() == 3 and repr(good) == "Outcome(value=3)"
    assert not bad.ok and bad.value is None
    with pytest.raises(KeyError):
        bad.unwrap()
    assert repr(bad) == "Outcome(error=KeyError('k'))"
    assert Outcome(None).ok  # a call may return None


# -- gather_settled -----------------------------------------------------------------


def test_gather_settled_waits_for_every_call_and_keeps_each_outcome():
    refused = ConnectionRefusedError("down")

    def main():
        outcomes = yield from gather_settled(
            after(3, "a"), failing_after(1, refused), after(2, "c"),
            failing_after(0.5, ValueError("bad")))
        return outcomes, (yield from now()), (yield from alive_children())

    outcomes, elapsed, alive = vrun(main())
    assert [o.ok for o in outcomes] == [True, False, True, False]
    assert outcomes[0].value == "a" and outcomes[2].value == "c"
    assert outcomes[1].error is refused
    assert isinstance(outcomes[3].error, ValueError)
    assert elapsed == 3.0  # an early failure cancelled nobody
    assert alive == set()


def test_gather_settled_of_nothing():
    def main():
        return (yield from gather_settled())

    assert vrun(main()) == []


def test_gather_settled_refuses_what_is_not_a_generator():
    def main():
        yield from gather_settled(after(1, "a"), sleep)

    with pytest.raises(TypeError, match="generator objects"):
        vrun(main())


def test_cancelling_the_caller_cancels_and_waits_for_every_child():
    log = []

    def main():
        try:
            yield from timeout_after(1.5, gather_settled(after(1, "a", log),
                                                         after(5, "b", log),
                                                         after(9, "c", log)))
        except TaskTimeout:
            return (yield from now()), (yield from alive_children())

    elapsed, alive = vrun(main())
    assert elapsed == 1.5
    assert sorted(log) == [("a", 1.0), ("b", 1.5), ("c", 1.5)]  # cleaned up before it returned
    assert alive == set()


def test_a_child_cancelled_by_someone_else_is_an_error_outcome():
    def victim():
        task = yield from current_task()
        task.cancel("cancelled by a neighbour")
        yield from sleep(1)

    def main():
        return (yield from gather_settled(victim(), after(1, "ok")))

    outcomes = vrun(main())
    assert isinstance(outcomes[0].error, Cancelled)
    assert outcomes[0].error.reason == "cancelled by a neighbour"
    assert outcomes[1].value == "ok"


def test_a_keyboard_interrupt_in_a_child_stops_the_others_and_propagates():
    log = []

    def interrupted():
        yield from sleep(1)
        raise KeyboardInterrupt

    def main():
        yield from gather_settled(interrupted(), after(5, "b", log))

    with pytest.raises(KeyboardInterrupt):
        vrun(main())
    assert log == [("b", 1.0)]


# -- first_k ----------------------------------------------------------------------------


def test_first_k_returns_once_k_have_succeeded_and_cancels_the_rest():
    log = []

    def main():
        results = yield from first_k(2, after(1, "a", log), after(4, "b", log),
                                     after(2, "c", log), failing_after(0.5, OSError("x"), log))
        return results, (yield from now()), (yield from alive_children())

    results, elapsed, alive = vrun(main())
    assert elapsed == 2.0
    assert results[0].value == "a" and results[2].value == "c"
    assert results[1] is None  # cancelled: no longer needed
    assert isinstance(results[3].error, OSError)  # a failure before the decision is kept
    assert ("b", 2.0) in log  # cancelled and cleaned up before first_k returned
    assert alive == set()


def test_first_k_cancels_with_a_reason_saying_why():
    reasons = []

    def slow():
        try:
            yield from sleep(10)
        except Cancelled as exc:
            reasons.append(exc.reason)
            raise

    def main():
        yield from first_k(1, after(1, "a"), slow())

    vrun(main())
    assert reasons == ["not needed: 1 of 2 calls had succeeded"]


def test_first_k_counts_exactly_k_even_when_more_finish_at_the_same_moment():
    def main():
        return (yield from first_k(2, after(1, "a"), after(1, "b"), after(1, "c")))

    results = vrun(main())
    assert [r.value if r else None for r in results] == ["a", "b", None]


def test_first_k_raises_when_k_can_no_longer_be_reached():
    log = []
    refused, reset = ConnectionRefusedError("refused"), ConnectionResetError("reset")

    def main():
        try:
            yield from first_k(3, failing_after(1, refused), after(9, "b", log),
                               failing_after(2, reset), after(0.5, "d"))
        except TooFewSucceeded as exc:
            return exc, (yield from now()), (yield from alive_children())

    exc, elapsed, alive = vrun(main())
    assert elapsed == 2.0  # after the second failure, at most two could succeed
    assert exc.needed == 3
    assert exc.errors == {0: refused, 2: reset}
    assert exc.outcomes[3].value == "d" and exc.outcomes[1] is None
    assert "needed 3 of 4 calls to succeed, 1 did and 2 failed" in str(exc)
    assert "call 0: ConnectionRefusedError('refused')" in str(exc)
    assert log == [("b", 2.0)] and alive == set()


def test_first_k_of_all_is_gather_that_tolerates_no_failure_but_waits_for_cleanup():
    def main():
        try:
            yield from first_k(2, failing_after(1, KeyError("k")), after(3, "b"))
        except TooFewSucceeded as exc:
            return list(exc.errors), (yield from now())

    assert vrun(main()) == ([0], 1.0)


def test_first_k_of_zero_starts_nothing():
    started = []

    def noted():
        started.append(1)
        yield from sleep(1)

    def main():
        return (yield from first_k(0, noted(), noted())), (yield from now())

    assert vrun(main()) == ([None, None], 0.0)
    assert started == []


@pytest.mark.parametrize("k", [-1, 3, 1.5, True])
def test_first_k_refuses_a_k_out_of_range(k):
    def main():
        yield from first_k(k, after(1, "a"), after(1, "b"))

    with pytest.raises(ValueError, match="k from 0 to 2"):
        vrun(main())


def test_first_k_caller_cancelled_cancels_every_child():
    log = []

    def main():
        task = yield from spawn(first_k(1, after(5, "a", log), after(6, "b", log)))
        yield from sleep(1)
        task.cancel("the page was closed")
        try:
            yield from task.join()
        except Cancelled as exc:
            return exc.reason, (yield from alive_children())

    reason, alive = vrun(main())
    assert reason == "the page was closed"
    assert sorted(log) == [("a", 1.0), ("b", 1.0)]
    assert alive == set()


def test_the_children_run_within_their_callers_deadline():
    def deadline_seen():
        yield from sleep(1)
        return (yield from current_deadline())

    def main():
        settled = yield from timeout_after(5, gather_settled(deadline_seen(), deadline_seen()))
        firsts = yield from timeout_after(3, first_k(1, deadline_seen()))
        return [o.value for o in settled], [o.value for o in firsts]

    assert vrun(main()) == ([5.0, 5.0], [4.0])
