"""Waiting for fds: read_wait/write_wait on each reactor, one waiter per
direction, forgetting closed fds, and polling with far-away timers."""

from __future__ import annotations

import selectors
import socket
import threading
import time

import pytest

from corofw import (
    BusyResourceError,
    ClosedResourceError,
    Kernel,
    VirtualClock,
    current_kernel,
    current_time,
    forget_fd,
    read_wait,
    run,
    run_in_thread,
    sleep,
    spawn,
    timeout_after,
    write_wait,
)
from corofw.kernel.reactor import EpollReactor, SelectorReactor

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


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


@pytest.mark.parametrize("seconds", [1e10, float("inf")])
def test_a_far_away_timer_does_not_overflow_the_poll(reactor, seconds):
    def main():
        sleeper = yield from spawn(sleep(seconds))
        yield from run_in_thread(time.sleep, 0.01)  # the loop must poll meanwhile
        sleeper.cancel()
        return "done"

    assert Kernel(reactor=reactor).run(main()) == "done"


def test_the_virtual_clock_never_jumps_to_infinity(pair):
    a, b = pair

    def main():
        sleeper = yield from spawn(sleep(float("inf")))
        threading.Timer(0.05, b.send, (b"x",)).start()  # wakes us in real time
        yield read_wait(a)
        return sleeper.done, (yield from current_time())

    assert run(main(), clock=VirtualClock()) == (False, 0.0)


def test_peer_hang_up_wakes_the_reader_and_the_writer(reactor, pair):
    a, b = pair
    try:
        while True:
            a.send(b"x" * 65536)  # full: the writer must wait
    except BlockingIOError:
        pass

    def reader():
        yield read_wait(a)
        return "reader woke"

    def writer():
        yield write_wait(a)
        return "writer woke"

    def main():
        reading = yield from spawn(reader())
        writing = yield from spawn(writer())
        yield from sleep(0.01)
        b.close()  # the peer goes away: both directions must wake
        return [(yield from reading.join()), (yield from writing.join())]

    assert Kernel(reactor=reactor).run(main()) == ["reader woke", "writer woke"]


# -- fd numbers reused behind the kernel's back -----------------------------------

def read_one(sock):
    yield read_wait(sock)
    return sock.recv(100)


def readme_round():
    """The README's "kernel in ten lines", closing its sockets afterwards;
    returns the data and the fd number that was waited on."""
    a, b = socket.socketpair()
    try:
        b.send(b"hello")
        data = yield from timeout_after(2, read_one(a))
        return data, a.fileno()
    finally:
        a.close()
        b.close()


def test_a_socket_closed_without_forget_fd_does_not_hang_the_next_one_with_its_number(reactor):
    def main():
        first = yield from readme_round()
        second = yield from readme_round()
        return first, second

    (data1, fd1), (data2, fd2) = Kernel(reactor=reactor).run(main())
    assert fd1 == fd2  # the number was reused: the second wait must still register
    assert data1 == data2 == b"hello"


def test_the_readme_program_run_twice_in_separate_kernels():
    assert run(readme_round()) == run(readme_round())


def test_a_socket_kept_open_across_two_runs_is_registered_by_each_kernel(pair):
    a, b = pair

    def round_trip(payload):
        b.send(payload)
        return (yield from timeout_after(2, read_one(a)))

    assert run(round_trip(b"one")) == b"one"
    assert run(round_trip(b"two")) == b"two"


def test_a_waiter_on_a_socket_closed_behind_the_kernels_back_gets_closed_resource_error():
    def main():
        old, old_peer = socket.socketpair()
        fd = old.fileno()
        stranded = yield from spawn(read_one(old))
        yield from sleep(0)
        old.close()  # no forget_fd: epoll drops the fd, the kernel cannot know yet
        old_peer.close()
        new, new_peer = socket.socketpair()
        try:
            assert new.fileno() == fd
            new_peer.send(b"fresh")
            data = yield from timeout_after(2, read_one(new))
            with pytest.raises(ClosedResourceError):
                yield from stranded.join()
            return data
        finally:
            new.close()
            new_peer.close()

    assert run(main()) == b"fresh"


def test_one_open_socket_waited_on_as_an_object_and_as_a_number(reactor, pair):
    a, b = pair

    def main():
        got = []
        for target in (a, a.fileno(), a, a.fileno()):
            b.send(b"x")
            yield from timeout_after(2, read_wait_on(target))
            got.append(a.recv(10))
        return got

    assert Kernel(reactor=reactor).run(main()) == [b"x"] * 4


def read_wait_on(target):
    yield read_wait(target)


def test_forget_fd_takes_a_socket_too(pair):
    a, _ = pair

    def main():
        task = yield from spawn(read_one(a))
        yield from sleep(0)
        forget_fd(a)
        with pytest.raises(ClosedResourceError):
            yield from task.join()

    run(main())


@pytest.mark.parametrize("kind", ["epoll", "selectors-select", "selectors-poll"])
def test_a_closed_socket_whose_copy_keeps_its_file_open_does_not_make_the_loop_spin(kind):
    """The number is not reused: epoll's entry for the old file lives on (the
    copy keeps the file open) and reports under a number nobody waits on."""

    def main():
        sock, peer = socket.socketpair()
        sock.setblocking(False)
        peer.send(b"x")
        yield read_wait(sock)
        copy = sock.dup()
        sock.close()
        peer.send(b"y")
        kernel = current_kernel()
        ticks = kernel.ticks
        yield from sleep(0.2)
        idle_ticks = kernel.ticks - ticks
        copy.close()
        peer.close()
        return idle_ticks

    assert Kernel(reactor=REACTORS[kind]()).run(main()) < 20


def test_renewing_the_reactor_keeps_every_live_wait(pair):
    """A stale entry makes the kernel renew its epoll; the tasks waiting on
    other fds at that moment are still woken by their events."""
    a, b = pair

    def reader():
        yield read_wait(b)
        return b.recv(10)

    def main():
        waiting = yield from spawn(reader())
        sock, peer = socket.socketpair()
        sock.setblocking(False)
        peer.send(b"x")
        yield read_wait(sock)
        copy = sock.dup()
        sock.close()
        peer.send(b"y")  # a stale event: the kernel renews its reactor
        yield from sleep(0.05)
        a.send(b"live")
        data = yield from waiting.join()
        copy.close()
        peer.close()
        return data

    assert run(main()) == b"live"
