"""Cancellation and timeouts."""

from __future__ import annotations

import socket
import time

import pytest

from corofw import (
    Cancelled,
    Deadline,
    Event,
    TaskTimeout,
    VirtualClock,
    current_kernel,
    current_task,
    current_time,
    move_on_after,
    read_wait,
    run,
    sleep,
    spawn,
    timeout_after,
)

pytestmark = pytest.mark.usefixtures("no_leaks")


def vrun(coro):
    """Run under a virtual clock: timings are exact and cost no real time."""
    return run(coro, clock=VirtualClock())


def now():
    return (yield from current_time())


# -- cancellation ----------------------------------------------------------------

def test_cancelled_is_not_an_exception():
    assert issubclass(Cancelled, BaseException)
    assert not issubclass(Cancelled, Exception)


def test_except_exception_does_not_swallow_cancel():
    log = []

    def worker():
        try:
            yield from sleep(10)
        except Exception:
            log.append("swallowed")
        log.append("after")

    def main():
        task = yield from spawn(worker())
        yield from sleep(0)
        task.cancel("because")
        with pytest.raises(Cancelled) as info:
            yield from task.join()
        return info.value.reason, task.cancelled

    assert vrun(main()) == ("because", True)
    assert log == []


def test_cancel_runs_finally_blocks_that_may_still_wait():
    log = []

    def worker():
        try:
            yield from sleep(10)
        finally:
            log.append(("finally", (yield from now())))
            yield from sleep(0.5)
            log.append(("cleaned", (yield from now())))

    def main():
        task = yield from spawn(worker())
        yield from sleep(1)
        task.cancel()
        with pytest.raises(Cancelled):
            yield from task.join()
        return (yield from now())

    assert vrun(main()) == 1.5
    assert log == [("finally", 1.0), ("cleaned", 1.5)]


def test_cancelled_sleeper_timer_never_fires():
    def main():
        kernel = current_kernel()
        task = yield from spawn(sleep(10))
        yield from sleep(0)
        assert len(kernel.timers) == 1
        task.cancel()
        assert len(kernel.timers) == 0
        with pytest.raises(Cancelled):
            yield from task.join()
        return (yield from now())

    assert vrun(main()) == 0.0  # nothing kept the clock running to t=10


def test_cancelled_fd_waiter_frees_the_slot():
    a, b = socket.socketpair()

    def reader():
        yield read_wait(a)
        return a.recv(10)

    def main():
        first = yield from spawn(reader())
        yield from sleep(0)
        first.cancel()
        second = yield from spawn(reader())
        yield from sleep(0)
        b.send(b"data")
        with pytest.raises(Cancelled):
            yield from first.join()
        return (yield from second.join())

    with a, b:
        assert run(main()) == b"data"


def test_cancelling_a_finished_task_is_a_no_op():
    def main():
        task = yield from spawn(sleep(0))
        yield from task.join()
        task.cancel()
        yield from sleep(0)
        return task.done, task.cancelled, (yield from task.join())

    assert vrun(main()) == (True, False, None)


def test_task_cancelled_before_it_started_never_runs_a_line():
    ran = []

    def worker():
        ran.append("started")
        yield from sleep(0)

    def main():
        task = yield from spawn(worker())
        task.cancel("too early")
        with pytest.raises(Cancelled, match="too early"):
            yield from task.join()
        return task.cancelled

    assert vrun(main()) is True
    assert ran == []


def test_cancelling_yourself_takes_effect_at_the_next_wait():
    log = []

    def main():
        me = yield from current_task()
        me.cancel("self")
        log.append("still running")
        try:
            yield from sleep(1)
        except Cancelled as exc:
            log.append(exc.reason)

    vrun(main())
    assert log == ["still running", "self"]


def test_cancel_of_a_woken_task_keeps_its_value_and_hits_the_next_wait():
    log = []
    event = Event()

    def waiter():
        yield from event.wait()
        log.append("woke")
        yield from sleep(1)
        log.append("never")

    def main():
        task = yield from spawn(waiter())
        yield from sleep(0)
        event.set()
        task.cancel()
        with pytest.raises(Cancelled):
            yield from task.join()

    vrun(main())
    assert log == ["woke"]


def test_cancel_reason_of_a_timeout_names_the_scope():
    reasons = []

    def body():
        try:
            yield from sleep(10)
        except Cancelled as exc:
            reasons.append(exc.reason)
            raise

    def main():
        with pytest.raises(TaskTimeout):
            yield from timeout_after(0.5, body())

    vrun(main())
    assert reasons == ["timeout_after(0.5 s) expired (deadline was t=0.500 on the kernel clock)"]


# -- timeouts ------------------------------------------------------------------

def test_timeout_after_raises_task_timeout_at_the_deadline():
    def main():
        with pytest.raises(TaskTimeout, match="0.5 s") as info:
            yield from timeout_after(0.5, sleep(10))
        assert isinstance(info.value, TimeoutError)
        return (yield from now())

    assert vrun(main()) == 0.5


def test_timeout_after_returns_the_value_in_time_and_leaves_no_timer():
    def body():
        yield from sleep(1)
        return "value"

    def main():
        result = yield from timeout_after(2, body())
        return result, len(current_kernel().timers)

    assert vrun(main()) == ("value", 0)


def test_timeout_really_interrupts_with_the_real_clock():
    def main():
        started = time.monotonic()
        with pytest.raises(TaskTimeout):
            yield from timeout_after(0.05, sleep(5))
        return time.monotonic() - started

    assert 0.04 < run(main()) < 1.0


def test_move_on_after_returns_the_default():
    def main():
        value = yield from move_on_after(1, sleep(10), default="gave up")
        return value, (yield from now())

    assert vrun(main()) == ("gave up", 1.0)


def test_timeout_refuses_a_non_generator():
    def main():
        with pytest.raises(TypeError, match="generator"):
            yield from timeout_after(1, 42)

    vrun(main())


def test_inner_longer_timeout_cannot_extend_the_outer_one():
    log = []

    def inner():
        try:
            result = yield from move_on_after(10, sleep(20), default="inner fired")
        except Cancelled:
            log.append("inner passed the cancel on")
            raise
        log.append(result)

    def main():
        with pytest.raises(TaskTimeout):
            yield from timeout_after(1, inner())
        return (yield from now())

    assert vrun(main()) == 1.0
    assert log == ["inner passed the cancel on"]


def test_inner_longer_timeout_after_cannot_turn_an_outer_move_on_into_a_timeout():
    def main():
        value = yield from move_on_after(1, timeout_after(10, sleep(20)), default="outer")
        return value, (yield from now())

    assert vrun(main()) == ("outer", 1.0)


def test_inner_shorter_timeout_fires_first_and_the_outer_continues():
    def body():
        first = yield from move_on_after(1, sleep(10), default="inner fired")
        yield from sleep(1)
        return first, (yield from now())

    def main():
        return (yield from timeout_after(5, body()))

    assert vrun(main()) == ("inner fired", 2.0)


def advance_and_wake(clock, event, seconds):
    """Set ``event`` and move the virtual clock past several deadlines in
    one step, so their timers fire in the same tick as the wake-up."""
    event.set()
    clock.advance(seconds)
    yield from sleep(0)


def test_outer_deadline_is_kept_when_both_expire_while_the_task_is_ready():
    clock = VirtualClock()
    event = Event()

    def body():
        yield from timeout_after(0.5, event.wait())  # woken in time, but its timer fired too
        yield from sleep(100)  # already past the outer deadline: must be cut short
        return "outer deadline lost"

    def main():
        yield from spawn(advance_and_wake(clock, event, 2))
        with pytest.raises(TaskTimeout, match="after 1 s"):
            yield from timeout_after(1, body())
        return (yield from now())

    assert run(main(), clock=clock) == 2.0


def test_explicit_cancel_is_not_lost_behind_a_pending_timeout():
    clock = VirtualClock()
    event = Event()
    log = []

    def worker():
        yield from timeout_after(1, event.wait())
        log.append("got the event")
        yield from sleep(100)
        log.append("the cancel was lost")

    def canceller(task):
        yield from sleep(0)  # queued ahead of the worker for the next tick
        task.cancel("explicit")

    def main():
        task = yield from spawn(worker())
        yield from sleep(0)
        yield from spawn(canceller(task))
        yield from spawn(advance_and_wake(clock, event, 2))
        with pytest.raises(Cancelled, match="explicit"):
            yield from task.join()

    run(main(), clock=clock)
    assert log == ["got the event"]


def test_keyboard_interrupt_is_not_lost_behind_a_pending_cancel():
    def main():
        me = yield from current_task()
        me.cancel("first")
        me.kernel.cancel(me, KeyboardInterrupt())
        try:
            yield from sleep(1)
        except BaseException as exc:
            return type(exc).__name__

    assert vrun(main()) == "KeyboardInterrupt"


def test_timeouts_that_never_fire_do_not_pile_up_in_the_heap():
    def main():
        heap = current_kernel().timers.heap
        biggest = 0
        for _ in range(5000):
            yield from timeout_after(10, sleep(0))
            biggest = max(biggest, len(heap))
        return biggest, len(current_kernel().timers)

    biggest, live = vrun(main())
    assert live == 0
    assert biggest < 2500  # dead entries are compacted away, not kept 5000 deep


# -- a cancellation outranks timeouts that expire during its clean-up ---------------

def cleanup_outlasting_everything():
    try:
        yield from sleep(100)
    finally:
        yield from sleep(100)  # a clean-up that waits past every deadline


def test_explicit_cancel_outranks_a_timeout_that_expires_during_the_cleanup():
    def job():
        try:
            yield from timeout_after(0.5, cleanup_outlasting_everything())
        except TaskTimeout:
            return "the cancel became a timeout"

    def main():
        task = yield from spawn(job())
        yield from sleep(0.1)
        task.cancel("explicit")
        with pytest.raises(Cancelled, match="explicit"):
            yield from task.join()
        return (yield from now())

    assert vrun(main()) == 0.5  # the timeout still cuts the clean-up short


def test_explicit_cancel_outranks_a_deadline_that_expires_during_the_cleanup():
    def job():
        deadline = Deadline((yield from current_task()))
        deadline.set(0.5, "read")
        try:
            yield from cleanup_outlasting_everything()
        except Cancelled as exc:
            if exc.scope is deadline:
                return "the cancel became a read timeout"
            raise
        finally:
            deadline.close()

    def main():
        task = yield from spawn(job())
        yield from sleep(0.1)
        task.cancel("explicit")
        with pytest.raises(Cancelled, match="explicit"):
            yield from task.join()
        return (yield from now())

    assert vrun(main()) == 0.5


def test_explicit_cancel_right_after_a_timeout_fired_is_not_lost():
    def job():
        try:
            yield from timeout_after(1, sleep(10))
        except TaskTimeout:
            return "the cancel was lost"

    def main():
        task = yield from spawn(job())
        yield from sleep(0)
        # fires just after the scope's timer, before the task has run again
        current_kernel().add_timer(1, lambda _: task.cancel("explicit"), None)
        with pytest.raises(Cancelled, match="explicit"):
            yield from task.join()

    vrun(main())


def test_a_timeout_begun_inside_the_cleanup_still_bounds_it():
    log = []

    def job():
        try:
            yield from sleep(100)
        except Cancelled:
            log.append((yield from move_on_after(0.5, sleep(100), default="cleanup bounded")))
            raise

    def main():
        task = yield from spawn(job())
        yield from sleep(0.1)
        task.cancel("explicit")
        with pytest.raises(Cancelled, match="explicit"):
            yield from task.join()
        return (yield from now())

    assert vrun(main()) == 0.6
    assert log == ["cleanup bounded"]


def test_an_outer_timeout_outranks_an_inner_one_that_expires_during_the_cleanup():
    def body():
        return (yield from timeout_after(5, cleanup_outlasting_everything()))

    def main():
        value = yield from move_on_after(1, body(), default="outer moved on")
        return value, (yield from now())

    assert vrun(main()) == ("outer moved on", 5.0)


# -- a second cancel() -----------------------------------------------------------------

def test_a_second_cancel_interrupts_a_cleanup_that_waits():
    log = []

    def job():
        try:
            yield from sleep(100)
        finally:
            log.append("cleanup started")
            yield from sleep(100)
            log.append("cleanup finished")

    def main():
        task = yield from spawn(job())
        yield from sleep(0.1)
        task.cancel("first")
        yield from sleep(0.1)
        task.cancel("second")
        with pytest.raises(Cancelled, match="second") as info:
            yield from task.join()
        assert isinstance(info.value.__context__, Cancelled)
        assert info.value.__context__.reason == "first"
        return (yield from now())

    assert vrun(main()) == pytest.approx(0.2)
    assert log == ["cleanup started"]


def test_cancels_before_the_task_has_seen_the_first_merge_into_one():
    log = []

    def job():
        try:
            yield from sleep(100)
        finally:
            yield from sleep(1)  # not interrupted: the second cancel() was merged
            log.append("cleanup finished")

    def main():
        task = yield from spawn(job())
        yield from sleep(0.1)
        task.cancel("first")
        task.cancel("second")
        with pytest.raises(Cancelled, match="first"):
            yield from task.join()
        return (yield from now())

    assert vrun(main()) == pytest.approx(1.1)
    assert log == ["cleanup finished"]


def test_an_interrupt_outranks_an_undelivered_cancel():
    def job():
        try:
            yield from sleep(100)
        except BaseException as exc:
            return type(exc).__name__

    def main():
        task = yield from spawn(job())
        yield from sleep(0)
        task.cancel("first")
        current_kernel().cancel(task, KeyboardInterrupt())
        return (yield from task.join())

    assert vrun(main()) == "KeyboardInterrupt"


# -- what a cancelled task leaves behind ------------------------------------------


def test_a_cancelled_task_that_held_itself_is_freed_without_the_collector():
    import gc
    import weakref

    refs = []

    def holds_itself():
        task = yield from current_task()  # a frame that refers to its own task
        yield from sleep(10)
        return task

    def main():
        for _ in range(3):
            task = yield from spawn(holds_itself())
            yield from sleep(0.01)
            task.cancel("not needed")
            with pytest.raises(Cancelled):
                yield from task.join()
            refs.append(weakref.ref(task))
            del task
        yield from sleep(0.01)  # the loop's own last references are gone by now
        return [ref() for ref in refs]

    gc.collect()
    gc.disable()
    try:
        assert vrun(main()) == [None, None, None]
    finally:
        gc.enable()


def test_a_cancelled_tasks_error_keeps_its_traceback_lines():
    import traceback

    def waits():
        yield from sleep(10)

    def main():
        task = yield from spawn(waits())
        yield from sleep(0.01)
        task.cancel("not needed")
        try:
            yield from task.join()
        except Cancelled as exc:
            return "".join(traceback.format_exception(exc))

    text = vrun(main())
    assert "in waits" in text and "not needed" in text
