"""The kernel: run(), traps, tasks, reactors, shutdown, introspection,
virtual time and deadlock detection."""

from __future__ import annotations

import selectors
import socket
import time

import pytest
from conftest import open_fds

from corofw import (
    BusyResourceError,
    ClosedResourceError,
    Kernel,
    Task,
    VirtualClock,
    current_task,
    current_time,
    forget_fd,
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
