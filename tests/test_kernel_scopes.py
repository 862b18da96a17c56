"""One scope type: timeout_after, move_on_after and Deadline are ranked by
the same rules, show in the task dump and make up the effective deadline."""

from __future__ import annotations

import pytest

from corofw import (
    Cancelled,
    Deadline,
    Event,
    TaskTimeout,
    VirtualClock,
    current_deadline,
    current_task,
    current_time,
    format_tasks,
    gather,
    move_on_after,
    run,
    sleep,
    spawn,
    timeout_after,
)

pytestmark = pytest.mark.usefixtures("no_leaks")


def vrun(coro):
    return run(coro, clock=VirtualClock())


def now():
    return (yield from current_time())


def deadline_of_this_task(seconds, label):
    deadline = Deadline((yield from current_task()))
    deadline.set(seconds, label)
    return deadline


def cleanup_outlasting_everything():
    try:
        yield from sleep(100)
    finally:
        yield from sleep(100)


# -- the task dump ---------------------------------------------------------------

def test_a_deadline_around_a_timeout_dumps_both():
    dumps = []

    def body():
        yield from sleep(1)
        dumps.append(format_tasks())

    def main():
        deadline = yield from deadline_of_this_task(5, "request")
        try:
            yield from timeout_after(3, body())
            dumps.append(format_tasks())
        finally:
            deadline.close()
        dumps.append(format_tasks())

    vrun(main())
    inside, after_timeout, after_close = dumps
    assert "deadline <Deadline request>: deadline in 4.000 s" in inside
    assert "deadline timeout_after(3 s): deadline in 2.000 s" in inside
    assert inside.index("<Deadline request>") < inside.index("timeout_after(3 s)")
    assert "<Deadline request>" in after_timeout and "timeout_after" not in after_timeout
    assert "deadline" not in after_close


def test_a_cleared_deadline_leaves_the_dump_until_it_is_set_again():
    def main():
        deadline = yield from deadline_of_this_task(5, "read")
        deadline.clear()
        cleared = format_tasks()
        deadline.set(2, "write")
        armed = format_tasks()
        deadline.close()
        yield from sleep(0)
        return cleared, armed

    cleared, armed = vrun(main())
    assert "Deadline" not in cleared
    assert "deadline <Deadline write>: deadline in 2.000 s" in armed


# -- ranked with the other cancellations --------------------------------------------

def test_an_expired_deadline_outranks_a_timeout_that_expires_during_its_cleanup():
    def job():
        deadline = yield from deadline_of_this_task(1, "read")
        try:
            yield from timeout_after(5, cleanup_outlasting_everything())
        except TaskTimeout:
            return "the deadline became the inner timeout"
        except Cancelled as exc:
            return exc.scope is deadline, (yield from now())
        finally:
            deadline.close()

    assert vrun(job()) == (True, 5.0)


def test_a_deadline_outranks_an_inner_timeout_when_both_expire_while_the_task_is_ready():
    clock = VirtualClock()
    event = Event()

    def wake_late():
        event.set()
        clock.advance(2)  # past both deadlines: both timers fire in the same tick
        yield from sleep(0)

    def job():
        deadline = yield from deadline_of_this_task(1, "read")
        try:
            yield from move_on_after(0.5, event.wait())
            yield from sleep(100)
            return "the deadline was lost"
        except Cancelled as exc:
            return exc.scope is deadline, (yield from now())
        finally:
            deadline.close()

    def main():
        yield from spawn(wake_late())
        return (yield from job())

    assert run(main(), clock=clock) == (True, 2.0)


def test_an_outer_timeout_outranks_a_deadline_that_expires_during_its_cleanup():
    def body():
        deadline = yield from deadline_of_this_task(5, "read")
        try:
            yield from cleanup_outlasting_everything()
        except Cancelled as exc:
            if exc.scope is deadline:
                return "the outer timeout became a read timeout"
            raise
        finally:
            deadline.close()

    def main():
        value = yield from move_on_after(1, body(), default="outer moved on")
        return value, (yield from now())

    assert vrun(main()) == ("outer moved on", 5.0)


def test_a_deadline_set_again_withdraws_its_undelivered_cancel():
    clock = VirtualClock()
    event = Event()

    def wake_late():
        event.set()
        clock.advance(2)
        yield from sleep(0)

    def job():
        deadline = yield from deadline_of_this_task(1, "idle")
        try:
            yield from event.wait()  # woken, but the deadline fired in that tick too
            deadline.set(10, "read")  # the next phase: the idle timeout is moot
            yield from sleep(3)
            return "read went on", (yield from now())
        finally:
            deadline.close()

    def main():
        yield from spawn(wake_late())
        return (yield from job())

    assert run(main(), clock=clock) == ("read went on", 5.0)


# -- moved between kernels ------------------------------------------------------------

def test_a_deadline_retargeted_to_a_task_of_another_kernel_fires_there():
    kept = []

    def first_run():
        deadline = yield from deadline_of_this_task(1, "idle")  # a timer in this kernel
        kept.append(deadline)
        deadline.clear()

    def second_run():
        (deadline,) = kept
        deadline.retarget((yield from current_task()))
        deadline.set(2, "read")  # later than the first kernel's timer
        try:
            yield from sleep(5)
            return "never fired"
        except Cancelled as exc:
            return exc.scope is deadline, (yield from now())
        finally:
            deadline.close()

    vrun(first_run())
    assert vrun(second_run()) == (True, 2.0)


# -- the effective deadline --------------------------------------------------------------

def test_current_deadline_is_the_earliest_enclosing_one():
    seen = []

    def note():
        seen.append((yield from current_deadline()))

    def body():
        yield from note()
        yield from move_on_after(10, note())  # a later inner scope changes nothing
        yield from move_on_after(1, note())

    def main():
        yield from sleep(2)
        yield from note()
        deadline = yield from deadline_of_this_task(5, "request")
        yield from note()
        yield from timeout_after(3, body())
        yield from note()
        deadline.clear()
        yield from note()
        deadline.close()

    vrun(main())
    assert seen == [None, 7.0, 5.0, 5.0, 3.0, 7.0, None]


def test_gather_children_count_their_callers_deadline_and_spawned_tasks_do_not():
    def child():
        return (yield from current_deadline())

    def inner_child():
        return (yield from move_on_after(1, child()))

    def caller():
        spawned = yield from spawn(child())
        gathered = yield from gather(child(), inner_child())
        return [(yield from spawned.join()), *gathered]

    def main():
        yield from sleep(1)
        return (yield from timeout_after(3, caller()))

    assert vrun(main()) == [None, 4.0, 2.0]


def test_a_deadline_that_has_passed_is_still_the_effective_one():
    def main():
        deadline = yield from deadline_of_this_task(1, "read")
        try:
            yield from sleep(5)
        except Cancelled:
            return (yield from current_deadline()), (yield from now())
        finally:
            deadline.close()

    assert vrun(main()) == (1.0, 1.0)
