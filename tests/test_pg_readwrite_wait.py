"""readwrite_wait: the kernel trap that parks a task until its fd is
readable or writable, which the PostgreSQL client uses while libpq flushes
a pipeline (it must keep reading results while a write is stuck)."""

from __future__ import annotations

import selectors
import socket

import pytest

from corofw import (
    BusyResourceError,
    ClosedResourceError,
    Event,
    Kernel,
    forget_fd,
    read_wait,
    run,
    sleep,
    spawn,
    stats,
    write_wait,
)
from corofw.kernel.reactor import EpollReactor, SelectorReactor
from corofw.kernel.traps import readwrite_wait

pytestmark = pytest.mark.usefixtures("no_leaks")

REACTORS = {
    "epoll": EpollReactor,
    "selectors-default": SelectorReactor,
    "selectors-poll": lambda: SelectorReactor(selectors.PollSelector()),
}


@pytest.fixture(params=sorted(REACTORS))
def reactor(request):
    return REACTORS[request.param]()


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def fill(sock: socket.socket) -> int:
    """Write until the socket's send buffer is full; return the bytes sent."""
    sent = 0
    chunk = b"x" * 65536
    while True:
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            return sent


def drain(sock: socket.socket) -> int:
    got = 0
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return got
        if not data:
            return got
        got += len(data)


def test_a_writable_fd_wakes_the_task_at_once(reactor, pair):
    a, _ = pair

    def main():
        yield readwrite_wait(a)
        return stats()["fds_waited_on"]

    assert Kernel(reactor=reactor).run(main()) == 0


def test_a_stuck_writer_wakes_when_data_arrives(reactor, pair):
    a, b = pair
    fill(a)

    def peer():
        yield from sleep(0.05)
        b.send(b"result")

    def main():
        yield from spawn(peer())
        yield readwrite_wait(a)
        return a.recv(100)

    assert Kernel(reactor=reactor).run(main()) == b"result"


def test_a_stuck_writer_wakes_when_the_buffer_drains(reactor, pair):
    a, b = pair
    fill(a)

    def peer():
        yield from sleep(0.05)
        drain(b)

    def main():
        yield from spawn(peer())
        yield readwrite_wait(a)
        return a.send(b"more")

    assert Kernel(reactor=reactor).run(main()) == 4


def test_both_directions_ready_wake_the_task_once(reactor, pair):
    # Readable and writable in the same poll: a second wake-up would resume
    # the task inside its next wait (here, an Event nobody has set yet).
    a, b = pair
    b.send(b"data")
    event = Event()

    def setter():
        yield from sleep(0.1)
        event.set()

    def main():
        yield from spawn(setter())
        yield readwrite_wait(a)
        yield from event.wait()
        return event.is_set()

    assert Kernel(reactor=reactor).run(main()) is True


def test_the_other_direction_does_not_wake_the_task_later(reactor, pair):
    # Woken by data, the task waits on another socket; the first socket then
    # becomes writable, which must not resume it.
    a, b = pair
    c, d = socket.socketpair()
    c.setblocking(False)
    d.setblocking(False)
    fill(a)

    def peer():
        yield from sleep(0.02)
        b.send(b"x")
        yield from sleep(0.05)
        drain(b)  # a becomes writable while main waits on c
        yield from sleep(0.05)
        d.send(b"c")

    def main():
        yield from spawn(peer())
        yield readwrite_wait(a)
        a.recv(10)
        yield read_wait(c)
        return c.recv(10)

    try:
        assert Kernel(reactor=reactor).run(main()) == b"c"
    finally:
        c.close()
        d.close()


def test_cancelling_the_wait_frees_both_directions(pair):
    a, b = pair
    fill(a)

    def waiter():
        yield readwrite_wait(a)

    def main():
        task = yield from spawn(waiter())
        yield from sleep(0.01)
        task.cancel()
        yield from sleep(0)
        waiting = stats()["fds_waited_on"]
        b.send(b"x")
        yield read_wait(a)  # no BusyResourceError: both slots were freed
        drain(b)
        yield write_wait(a)
        return waiting, task.cancelled

    assert run(main()) == (0, True)


def test_closing_the_fd_wakes_the_waiter_once(pair):
    a, _ = pair
    fill(a)

    def waiter():
        try:
            yield readwrite_wait(a)
        except ClosedResourceError:
            return "closed"

    def main():
        task = yield from spawn(waiter())
        yield from sleep(0.01)
        forget_fd(a.fileno())
        result = yield from task.join()
        return result, stats()["fds_waited_on"]

    assert run(main()) == ("closed", 0)


def test_a_second_waiter_on_the_fd_is_refused(pair):
    a, _ = pair

    def reader():
        yield read_wait(a)

    def main():
        task = yield from spawn(reader())
        yield from sleep(0.01)
        try:
            yield readwrite_wait(a)
        except BusyResourceError as exc:
            return str(exc)
        finally:
            task.cancel()

    assert "already waiting" in run(main())
