"""gather(): results in order, failure cancels the siblings, no child
outlives the call."""

from __future__ import annotations

import pytest

from corofw import (
    Cancelled,
    TaskTimeout,
    VirtualClock,
    current_time,
    gather,
    run,
    sleep,
    spawn,
    timeout_after,
)
from corofw.kernel.traps import PARK

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


def test_gather_returns_results_in_order():
    def main():
        results = yield from gather(after(3, "a"), after(1, "b"), after(2, "c"))
        return results, (yield from now())

    assert vrun(main()) == (["a", "b", "c"], 3.0)


def test_the_caller_is_woken_once_when_every_child_succeeds():
    waits = []

    def counted(gen):
        """Drive ``gen``, noting each trap it yields (the kernel's answer
        goes back to it unchanged)."""
        value = None
        while True:
            try:
                trap = gen.send(value)
            except StopIteration as stop:
                return stop.value
            waits.append(trap[0])
            value = yield trap

    def main():
        return (yield from counted(gather(after(3, "a"), after(1, "b"), after(2, "c"))))

    assert vrun(main()) == ["a", "b", "c"]
    assert waits.count(PARK) == 1


def test_gather_of_nothing():
    def main():
        return (yield from gather())

    assert vrun(main()) == []


def failing_after(seconds, error):
    yield from sleep(seconds)
    raise error


def test_gather_failure_cancels_siblings_and_reraises_the_first_error():
    log = []

    def main():
        with pytest.raises(ValueError, match="first"):
            yield from gather(after(10, "slow", log), failing_after(1, ValueError("first")),
                              failing_after(2, KeyError("second")), after(0.5, "quick", log))
        return (yield from now())

    assert vrun(main()) == 1.0
    assert sorted(log) == [("quick", 0.5), ("slow", 1.0)]


def test_gather_sibling_cancel_reason_names_the_failure():
    reasons = []

    def victim():
        try:
            yield from sleep(10)
        except Cancelled as exc:
            reasons.append(exc.reason)
            raise

    def main():
        with pytest.raises(ZeroDivisionError):
            yield from gather(victim(), failing_after(1, ZeroDivisionError()), names=["v", "bad"])

    vrun(main())
    assert reasons == ["sibling 'bad' failed with ZeroDivisionError()"]


def test_cancelled_gather_cancels_and_finishes_its_children():
    log = []

    def runner():
        yield from gather(after(10, "a", log), after(20, "b", log))

    def main():
        task = yield from spawn(runner())
        yield from sleep(1)
        task.cancel("stop")
        with pytest.raises(Cancelled, match="stop"):
            yield from task.join()
        return sorted(log), (yield from now())

    assert vrun(main()) == ([("a", 1.0), ("b", 1.0)], 1.0)


def test_gather_under_a_timeout():
    log = []

    def main():
        with pytest.raises(TaskTimeout):
            yield from timeout_after(1, gather(after(5, "a", log), after(6, "b", log)))
        return sorted(log)

    assert vrun(main()) == [("a", 1.0), ("b", 1.0)]


def test_gather_with_a_bad_argument_spawns_nothing():
    ran = []

    def child():
        ran.append("child")
        yield from sleep(0)

    def main():
        with pytest.raises(TypeError):
            yield from gather(child(), 42)
        yield from sleep(1)

    vrun(main())
    assert ran == []
