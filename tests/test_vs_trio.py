"""The same small programs in trio and in corofw, side by side.

Each pair records what it observes (events, virtual times, exceptions) and
the two records must match. Virtual clocks on both sides (trio's MockClock,
corofw's VirtualClock) make the times exact; the first test uses real time.
"""

from __future__ import annotations

import time

import pytest

from corofw import (
    Cancelled,
    TaskTimeout,
    VirtualClock,
    current_time,
    gather,
    move_on_after,
    run,
    sleep,
    spawn,
    timeout_after,
)

trio = pytest.importorskip("trio")
from trio.testing import MockClock  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_leaks")


def run_trio(async_fn, *args):
    return trio.run(async_fn, *args, clock=MockClock(autojump_threshold=0))


def run_corofw(coro):
    return run(coro, clock=VirtualClock())


def leaves(exc):
    """The exceptions inside a (possibly nested) exception group."""
    if hasattr(exc, "exceptions"):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def elapsed(fn):
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def test_ten_concurrent_sleeps_overlap_in_both():
    async def trio_main():
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(trio.sleep, 0.2)

    def corofw_main():
        yield from gather(*(sleep(0.2) for _ in range(10)))

    trio_seconds = elapsed(lambda: trio.run(trio_main))
    corofw_seconds = elapsed(lambda: run(corofw_main()))
    assert 0.19 <= trio_seconds < 0.6
    assert 0.19 <= corofw_seconds < 0.6  # ten in a row would take 2 s


# -- one failing child ---------------------------------------------------------------

async def trio_child(name, delay, log, fail=False):
    try:
        await trio.sleep(delay)
        if fail:
            raise ValueError(name)
        log.append((name, "done", trio.current_time()))
    finally:
        log.append((name, "finally", trio.current_time()))


def corofw_child(name, delay, log, fail=False):
    try:
        yield from sleep(delay)
        if fail:
            raise ValueError(name)
        log.append((name, "done", (yield from current_time())))
    finally:
        log.append((name, "finally", (yield from current_time())))


CHILDREN = [("quick", 0.5, False), ("slow", 10, False), ("bad", 1, True), ("slower", 20, False)]


def test_one_failing_child_cancels_the_siblings_in_both():
    async def trio_main(log):
        try:
            async with trio.open_nursery() as nursery:
                for name, delay, fail in CHILDREN:
                    nursery.start_soon(trio_child, name, delay, log, fail)
        except BaseException as exc:  # an ExceptionGroup in trio
            return [repr(e) for e in leaves(exc)], trio.current_time()

    def corofw_main(log):
        try:
            yield from gather(*(corofw_child(n, d, log, f) for n, d, f in CHILDREN))
        except Exception as exc:
            return [repr(exc)], (yield from current_time())

    trio_log, corofw_log = [], []
    trio_result = run_trio(trio_main, trio_log)
    corofw_result = run_corofw(corofw_main(corofw_log))
    assert trio_result == corofw_result == (["ValueError('bad')"], 1.0)
    assert trio_log[:2] == corofw_log[:2] == [("quick", "done", 0.5), ("quick", "finally", 0.5)]
    assert trio_log[2] == corofw_log[2] == ("bad", "finally", 1.0)
    siblings = {("slow", "finally", 1.0), ("slower", "finally", 1.0)}
    assert set(trio_log[3:]) == set(corofw_log[3:]) == siblings  # sibling order may differ


# -- nested timeouts --------------------------------------------------------------

def test_inner_longer_deadline_cannot_extend_the_outer_in_both():
    async def trio_main():
        inner_caught = None
        try:
            with trio.fail_after(1):
                with trio.move_on_after(10) as inner:
                    await trio.sleep(20)
                inner_caught = inner.cancelled_caught
        except trio.TooSlowError:
            return "timeout", trio.current_time(), inner_caught

    def corofw_main():
        inner_result = None
        try:
            inner_result = yield from timeout_after(
                1, move_on_after(10, sleep(20), default="inner fired"))
        except TaskTimeout:
            return "timeout", (yield from current_time()), inner_result

    assert run_trio(trio_main) == run_corofw(corofw_main()) == ("timeout", 1.0, None)


def test_inner_shorter_deadline_fires_and_the_outer_goes_on_in_both():
    async def trio_main():
        events = []
        with trio.fail_after(5):
            with trio.move_on_after(1) as inner:
                await trio.sleep(10)
            events.append(("inner fired", inner.cancelled_caught, trio.current_time()))
            await trio.sleep(1)
            events.append(("outer body done", trio.current_time()))
        return events

    def corofw_main():
        events = []

        def body():
            fired = yield from move_on_after(1, sleep(10), default=True)
            events.append(("inner fired", fired, (yield from current_time())))
            yield from sleep(1)
            events.append(("outer body done", (yield from current_time())))

        yield from timeout_after(5, body())
        return events

    expected = [("inner fired", True, 1.0), ("outer body done", 2.0)]
    assert run_trio(trio_main) == run_corofw(corofw_main()) == expected


def test_a_deadline_that_passes_while_a_failing_body_runs_in_both():
    async def trio_main():
        try:
            with trio.move_on_after(1):
                await trio.sleep(2)
                raise AssertionError("not reached")
        finally:
            now = trio.current_time()
        return "moved on", now

    def corofw_main():
        def body():
            yield from sleep(2)
            raise AssertionError("not reached")

        value = yield from move_on_after(1, body(), default="moved on")
        return value, (yield from current_time())

    assert run_trio(trio_main) == run_corofw(corofw_main()) == ("moved on", 1.0)


# -- cancellation runs finally blocks ------------------------------------------------

def test_cancellation_runs_finally_blocks_in_both():
    async def trio_worker(log):
        try:
            await trio.sleep(10)
        except trio.Cancelled:
            log.append(("cancelled", trio.current_time()))
            raise
        finally:
            with trio.CancelScope(shield=True):  # trio needs a shield to wait here
                await trio.sleep(0.5)
            log.append(("cleaned up", trio.current_time()))

    async def trio_main(log):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio_worker, log)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
        log.append(("parent goes on", trio.current_time()))

    def corofw_worker(log):
        try:
            yield from sleep(10)
        except Cancelled:
            log.append(("cancelled", (yield from current_time())))
            raise
        finally:
            yield from sleep(0.5)
            log.append(("cleaned up", (yield from current_time())))

    def corofw_main(log):
        task = yield from spawn(corofw_worker(log))
        yield from sleep(1)
        task.cancel()
        try:
            yield from task.join()
        except Cancelled:
            pass
        log.append(("parent goes on", (yield from current_time())))

    trio_log, corofw_log = [], []
    run_trio(trio_main, trio_log)
    run_corofw(corofw_main(corofw_log))
    expected = [("cancelled", 1.0), ("cleaned up", 1.5), ("parent goes on", 1.5)]
    assert trio_log == corofw_log == expected


def test_cancelling_the_parent_cancels_the_children_in_both():
    async def trio_parent(log):
        async with trio.open_nursery() as nursery:
            for name, delay in (("a", 5), ("b", 6)):
                nursery.start_soon(trio_child, name, delay, log)

    async def trio_main(log):
        with trio.move_on_after(1):
            await trio_parent(log)
        return trio.current_time()

    def corofw_main(log):
        parent = yield from spawn(gather(corofw_child("a", 5, log), corofw_child("b", 6, log)))
        yield from sleep(1)
        parent.cancel()
        try:
            yield from parent.join()
        except Cancelled:
            pass
        return (yield from current_time())

    trio_log, corofw_log = [], []
    assert run_trio(trio_main, trio_log) == run_corofw(corofw_main(corofw_log)) == 1.0
    assert sorted(trio_log) == sorted(corofw_log) == [("a", "finally", 1.0),
                                                      ("b", "finally", 1.0)]
