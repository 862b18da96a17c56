"""The kernel: run(), traps, tasks, reactors, shutdown, introspection,
virtual time and deadlock detection."""

from __future__ import annotations

import gc
import io
import logging
import selectors
import socket
import time

import pytest
from conftest import open_fds

from corofw import (
    BusyResourceError,
    ClosedResourceError,
    DeadlockError,
    Event,
    Kernel,
    Task,
    VirtualClock,
    current_kernel,
    current_task,
    current_time,
    dump_tasks,
    forget_fd,
    format_tasks,
    read_wait,
    run,
    sleep,
    spawn,
    write_wait,
)
from corofw.kernel.reactor import EpollReactor, SelectorReactor

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

    assert run(main()) == set()


def test_run_accepts_a_virtual_clock():
    def main():
        yield from sleep(3600)
        return (yield from current_time())

    started = time.monotonic()
    assert run(main(), clock=VirtualClock()) == 3600.0
    assert time.monotonic() - started < 0.5


def test_kernel_runs_in_a_thread_other_than_main():
    import threading

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


# -- fd waits and reactors -------------------------------------------------------

REACTORS = {
    "epoll": EpollReactor,
    "selectors-default": SelectorReactor,
    "selectors-select": lambda: SelectorReactor(selectors.SelectSelector()),
    "selectors-poll": lambda: SelectorReactor(selectors.PollSelector()),
}


@pytest.fixture(params=sorted(REACTORS))
def reactor(request):
    return REACTORS[request.param]()


def test_socketpair_round_trip_on_each_reactor(reactor, pair):
    a, b = pair

    def echo():
        yield read_wait(b)
        data = b.recv(100)
        yield write_wait(b)
        b.send(data.upper())

    def main():
        task = yield from spawn(echo())
        yield write_wait(a)
        a.send(b"ping")
        yield read_wait(a)
        reply = a.recv(100)
        yield from task.join()
        return reply

    assert Kernel(reactor=reactor).run(main()) == b"PING"


def test_reader_and_writer_on_one_fd(reactor, pair):
    a, b = pair
    order = []

    def reader():
        yield read_wait(a)
        order.append(("read", a.recv(10)))

    def writer():
        yield write_wait(a)
        order.append("writable")
        a.send(b"x")

    def main():
        r = yield from spawn(reader())
        w = yield from spawn(writer())
        yield from w.join()
        yield read_wait(b)
        order.append(("peer got", b.recv(10)))
        b.send(b"y")
        yield from r.join()

    Kernel(reactor=reactor).run(main())
    assert order == ["writable", ("peer got", b"x"), ("read", b"y")]


def test_two_readers_of_one_fd_is_a_clear_error(pair):
    a, _ = pair

    def reader():
        yield read_wait(a)

    def main():
        first = yield from spawn(reader())
        yield from sleep(0)
        with pytest.raises(BusyResourceError, match=f"fd {a.fileno()}"):
            yield read_wait(a)
        first.cancel()

    run(main())


def test_two_writers_of_one_fd_is_a_clear_error():
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        while True:
            a.send(b"x" * 65536)  # fill the buffer so writers must wait
    except BlockingIOError:
        pass

    def writer():
        yield write_wait(a)

    def main():
        first = yield from spawn(writer())
        yield from sleep(0)
        with pytest.raises(BusyResourceError, match="write"):
            yield write_wait(a)
        first.cancel()

    try:
        run(main())
    finally:
        a.close()
        b.close()


def test_forget_fd_wakes_the_waiter_with_closed_resource_error(pair):
    a, _ = pair

    def reader():
        yield read_wait(a)

    def main():
        task = yield from spawn(reader())
        yield from sleep(0)
        forget_fd(a.fileno())
        with pytest.raises(ClosedResourceError):
            yield from task.join()

    run(main())


def test_forget_fd_without_a_kernel_is_harmless(pair):
    forget_fd(pair[0].fileno())


def test_closed_raw_fd_number_can_be_reused(pair):
    def main():
        first, peer = socket.socketpair()
        fd = first.fileno()
        waiter = yield from spawn(wait_readable(first))
        yield from sleep(0)
        waiter.cancel()
        forget_fd(fd)
        first.close()
        peer.close()
        again, peer = socket.socketpair()
        try:
            assert fd in (again.fileno(), peer.fileno())
            reuse = again if again.fileno() == fd else peer
            other = peer if reuse is again else again
            other.send(b"!")
            yield read_wait(reuse)
            return reuse.recv(10)
        finally:
            again.close()
            peer.close()

    assert run(main()) == b"!"


def wait_readable(sock):
    yield read_wait(sock)


# -- shutdown ------------------------------------------------------------------

def test_main_ending_cancels_and_finishes_the_other_tasks():
    events = []

    def child(name):
        try:
            yield from sleep(10)
        finally:
            yield from sleep(0.01)  # cleanup may still wait
            events.append(name)

    def main():
        for name in "ab":
            yield from spawn(child(name))
        yield from sleep(0)
        return "done"

    started = time.monotonic()
    assert run(main()) == "done"
    assert sorted(events) == ["a", "b"]
    assert time.monotonic() - started < 2


def test_shutdown_reason_is_given(caplog):
    reasons = []

    def child():
        try:
            yield from sleep(10)
        except BaseException as exc:
            reasons.append(exc.reason)
            raise

    def main():
        yield from spawn(child())
        yield from sleep(0)

    run(main())
    assert reasons == ["the main task finished"]


SHUTDOWN_PROGRAM = """
    import gc, warnings
    warnings.simplefilter("error")
    from corofw import Event, run, sleep, spawn

    def stubborn(event):
        try:
            yield from event.wait()
        finally:
            yield from sleep(0.01)
            print("cleaned", flush=True)

    def never_started():
        print("never!", flush=True)
        yield from sleep(1)

    def main():
        event = Event()
        for _ in range(3):
            yield from spawn(stubborn(event))
        yield from sleep(0)
        yield from spawn(never_started())
        return "main done"

    print(run(main()))
    gc.collect()
"""


def test_shutdown_never_leaves_a_generator_ignoring_generator_exit(run_python):
    proc = run_python(SHUTDOWN_PROGRAM)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["cleaned"] * 3 + ["main", "done"]
    assert proc.stderr == ""


def test_run_leaks_no_fd_even_with_sockets_and_timers():
    def main():
        a, b = socket.socketpair()
        with a, b:
            task = yield from spawn(wait_readable(a))
            yield from sleep(0.001)
            b.send(b"x")
            yield from task.join()
            forget_fd(a.fileno())

    before = open_fds()
    run(main())
    assert open_fds() == before


def test_unjoined_crash_is_logged_with_its_traceback(caplog):
    def doomed():
        yield from sleep(0)
        raise ZeroDivisionError("nobody joined me")

    def main():
        yield from spawn(doomed(), name="doomed")
        yield from sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="corofw.kernel"):
        run(main())
        gc.collect()
    records = [r for r in caplog.records if r.name == "corofw.kernel"]
    assert len(records) == 1
    assert "doomed" in records[0].getMessage()
    assert records[0].exc_info[0] is ZeroDivisionError
    assert "nobody joined me" in caplog.text
    assert "in doomed" in caplog.text  # the traceback names the function


def test_joined_or_cancelled_tasks_are_not_logged(caplog):
    def main():
        task = yield from spawn(fails(ValueError("joined")))
        with pytest.raises(ValueError):
            yield from task.join()
        victim = yield from spawn(sleep(10))
        yield from sleep(0)
        victim.cancel()

    with caplog.at_level(logging.ERROR, logger="corofw.kernel"):
        run(main())
        gc.collect()
    assert not [r for r in caplog.records if r.name == "corofw.kernel"]


def test_a_raising_done_callback_does_not_break_the_kernel(caplog):
    def main():
        task = yield from spawn(returns(1))
        task.add_done_callback(lambda t: 1 / 0)
        seen = []
        task.add_done_callback(seen.append)
        yield from sleep(0.01)
        return (yield from task.join()), seen == [task]

    with caplog.at_level(logging.ERROR, logger="corofw.kernel"):
        assert run(main()) == (1, True)
    assert "ZeroDivisionError" in caplog.text


# -- introspection ----------------------------------------------------------------

def outer_level(sock):
    yield from middle_level(sock)


def middle_level(sock):
    yield from inner_level(sock)


def inner_level(sock):
    yield read_wait(sock)


def test_format_tasks_shows_the_yield_from_chain_and_the_wait(pair):
    a, _ = pair
    event = Event()

    def main():
        reader = yield from spawn(outer_level(a), name="reader")
        yield from spawn(sleep(5), name="sleeper")
        yield from spawn(event.wait(), name="waiter")
        yield from sleep(0)
        text = format_tasks()
        out = io.StringIO()
        dump_tasks(out)
        reader.cancel()
        event.set()
        return text, out.getvalue()

    text, dumped = run(main())
    assert text.startswith("4 live task(s):")
    reader_block = text.split("'reader'")[1].split("- task")[0]
    assert f"read_wait(fd={a.fileno()})" in reader_block
    for name in ("outer_level", "middle_level", "inner_level"):
        assert f"in {name}" in reader_block
    assert reader_block.index("outer_level") < reader_block.index("inner_level")
    assert "'sleeper'" in text and "sleep (wakes in" in text
    assert "<Event unset>" in text
    assert "'main'" in text and "running" in text
    assert "'reader'" in dumped


def test_format_tasks_without_a_kernel():
    assert "no corofw kernel" in format_tasks()
    assert current_kernel() is None


# -- virtual time and deadlock ------------------------------------------------------

def test_ten_virtual_one_second_sleeps_take_no_real_time():
    def main():
        start = yield from current_time()
        tasks = []
        for _ in range(10):
            tasks.append((yield from spawn(sleep(1))))
        for task in tasks:
            yield from task.join()
        return (yield from current_time()) - start

    started = time.monotonic()
    assert run(main(), clock=VirtualClock()) == 1.0
    assert time.monotonic() - started < 0.5


def test_virtual_clock_cannot_go_backward():
    clock = VirtualClock(5)
    clock.advance(1)
    clock.jump_to(2)
    assert clock() == 6
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_waiting_for_an_event_nobody_can_set_is_a_deadlock():
    def main():
        yield from Event().wait()

    started = time.monotonic()
    with pytest.raises(DeadlockError) as info:
        run(main())
    assert time.monotonic() - started < 1
    assert "<Event unset>" in str(info.value)
    assert "'main'" in str(info.value)


def test_deadlock_through_a_join_names_both_tasks():
    def stuck():
        yield from Event().wait()

    def main():
        task = yield from spawn(stuck(), name="stuck")
        yield from task.join()

    with pytest.raises(DeadlockError, match="join\\('stuck'\\)"):
        run(main())


def test_no_deadlock_while_an_fd_wait_can_still_complete(pair):
    a, b = pair

    def main():
        yield from spawn(later_send(b))
        yield read_wait(a)
        return a.recv(10)

    assert run(main()) == b"late"


def later_send(sock):
    yield from sleep(0.01)
    sock.send(b"late")
