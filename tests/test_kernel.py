"""The kernel: run(), traps, tasks, reactors, shutdown, introspection,
virtual time and deadlock detection."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from conftest import open_fds

from corofw import (
    Task,
    VirtualClock,
    current_task,
    current_time,
    run,
    sleep,
    spawn,
)

pytestmark = pytest.mark.usefixtures("no_leaks")


def returns(value):
    """A coroutine that waits once, then returns ``value``."""
    yield from sleep(0)
    return value


def fails(error):
    yield from sleep(0)
    raise error


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


# -- run() -------------------------------------------------------------------

def test_run_returns_the_main_value():
    assert run(returns(42)) == 42


def test_run_raises_the_main_exception():
    with pytest.raises(ValueError, match="boom"):
        run(fails(ValueError("boom")))


@pytest.mark.parametrize("bad", [42, None, [1, 2], "main"])
def test_run_refuses_a_non_generator(bad):
    with pytest.raises(TypeError, match="needs a generator object"):
        run(bad)


def test_run_refusing_a_generator_function_says_to_call_it():
    with pytest.raises(TypeError, match="call your generator function"):
        run(returns)


def test_a_refused_run_leaks_no_fd():
    before = open_fds()
    with pytest.raises(TypeError) as info:
        run(42)
    assert open_fds() <= before  # even while the traceback is still alive
    del info


def test_nested_run_is_refused_without_leaking():
    def main():
        yield from sleep(0)
        before = open_fds()
        inner = returns(1)
        with pytest.raises(RuntimeError, match="already running") as info:
            run(inner)
        inner.close()
        leaked = open_fds() - before  # while the traceback is still alive
        del info
        return leaked

    # no watchdog: a warning about the slow gc.collect() in open_fds() would
    # read source files (an fd open in its thread) while the fds are listed
    assert run(main(), watchdog=None) == set()


def test_run_accepts_a_virtual_clock():
    def main():
        yield from sleep(3600)
        return (yield from current_time())

    started = time.monotonic()
    assert run(main(), clock=VirtualClock()) == 3600.0
    assert time.monotonic() - started < 0.5


def test_kernel_runs_in_a_thread_other_than_main():

    result = []
    thread = threading.Thread(target=lambda: result.append(run(returns("ok"))))
    thread.start()
    thread.join(10)
    assert result == ["ok"]


# -- tasks ---------------------------------------------------------------------

def test_spawn_and_join_return_the_result():
    def main():
        task = yield from spawn(returns(7))
        assert isinstance(task, Task)
        return (yield from task.join())

    assert run(main()) == 7


def test_join_reraises_the_task_exception():
    def main():
        task = yield from spawn(fails(KeyError("k")))
        with pytest.raises(KeyError):
            yield from task.join()
        return task.done, task.cancelled

    assert run(main()) == (True, False)


def test_join_of_a_finished_task_returns_at_once():
    def main():
        task = yield from spawn(returns(1))
        yield from sleep(0.01)
        assert task.done
        return (yield from task.join())

    assert run(main()) == 1


def test_current_task_and_parent():
    def child():
        return (yield from current_task())

    def main():
        me = yield from current_task()
        task = yield from spawn(child(), name="kid")
        assert (yield from task.join()) is task
        return me, task

    me, task = run(main())
    assert me.name == "main"
    assert task.name == "kid"
    assert task.parent is me


def test_current_time_is_the_kernel_clock():
    def main():
        start = yield from current_time()
        yield from sleep(0.25)
        return (yield from current_time()) - start

    assert run(main(), clock=VirtualClock(start=100)) == 0.25


def test_sleep_waits_about_the_time_asked():
    def main():
        start = time.monotonic()
        yield from sleep(0.05)
        return time.monotonic() - start

    assert 0.045 <= run(main()) < 1.0


def test_sleep_zero_lets_others_run():
    order = []

    def other():
        order.append("other")
        yield from sleep(0)

    def main():
        yield from spawn(other())
        order.append("main before")
        yield from sleep(0)
        order.append("main after")

    run(main())
    assert order == ["main before", "other", "main after"]


def test_spawn_refuses_a_non_generator():
    def main():
        with pytest.raises(TypeError, match="call the generator function"):
            yield from spawn(returns)
        return "survived"

    assert run(main()) == "survived"


# -- yielding the wrong thing ------------------------------------------------

def test_yielding_a_non_trap_throws_type_error_into_the_coroutine():
    def main():
        try:
            yield 42
        except TypeError as exc:
            return str(exc)

    assert "not a corofw trap" in run(main())


def test_yielding_a_generator_says_you_forgot_yield_from():
    def main():
        try:
            yield sleep(1)
        except TypeError as exc:
            return str(exc)

    message = run(main())
    assert "did you forget `yield from`?" in message
    assert "sleep" in message


@pytest.mark.parametrize("trap", [(), ([],), {}, None, "read", (object(), 1)])
def test_odd_yields_are_type_errors_not_kernel_crashes(trap):
    def main():
        with pytest.raises(TypeError):
            yield trap
        yield from sleep(0)
        return "alive"

    assert run(main()) == "alive"
