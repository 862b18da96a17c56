"""The kernel's life cycle: shutdown, crash logging, introspection, virtual
time and deadlock detection."""

from __future__ import annotations

import gc
import io
import logging
import signal
import socket
import time

import pytest
from conftest import open_fds

from corofw import (
    DeadlockError,
    Event,
    Kernel,
    VirtualClock,
    current_kernel,
    current_task,
    current_time,
    dump_tasks,
    forget_fd,
    format_tasks,
    read_wait,
    run,
    run_in_thread,
    sleep,
    spawn,
)
from corofw.kernel.reactor import EpollReactor

pytestmark = pytest.mark.usefixtures("no_leaks")


def returns(value):
    yield from sleep(0)
    return value


def fails(error):
    yield from sleep(0)
    raise error


def wait_readable(sock):
    yield read_wait(sock)


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


# -- which tasks are alive ---------------------------------------------------------

def test_every_live_task_is_known_whatever_it_waits_for(pair):
    """The kernel keeps no set of all tasks: it finds them where they wait."""
    a, _ = pair
    event = Event()
    ended = []

    def waiter(how):
        try:
            yield from how
        finally:
            ended.append(how.__name__)

    def main():
        kernel = current_kernel()
        me = yield from current_task()
        tasks = [
            (yield from spawn(waiter(sleep(100)), name="sleeping")),
            (yield from spawn(waiter(wait_readable(a)), name="reading")),
            (yield from spawn(waiter(event.wait()), name="parked")),
            (yield from spawn(waiter(run_in_thread(time.sleep, 0.2)), name="in a thread")),
        ]
        yield from sleep(0)  # each is waiting now
        ready = yield from spawn(returns(1), name="ready")  # not run yet
        expected = {me, ready, *tasks}
        assert kernel.tasks == expected
        assert kernel.stats()["tasks"] == len(expected)
        dump = format_tasks()
        assert all(f"'{task.name}'" in dump for task in expected)
        return "main ended with the others still waiting"

    assert run(main()) == "main ended with the others still waiting"
    assert sorted(ended) == ["run_in_thread", "sleep", "wait", "wait_readable"]


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
    assert text.startswith("4 live task(s);")
    reader_block = text.split("'reader'")[1].split("- task")[0]
    assert f"read_wait(fd={a.fileno()})" in reader_block
    for name in ("outer_level", "middle_level", "inner_level"):
        assert f"in {name}" in reader_block
    assert reader_block.index("outer_level") < reader_block.index("inner_level")
    assert "'sleeper'" in text and "sleep: timer fires in" in text
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

    with pytest.raises(DeadlockError, match="join\\(task \\d+ 'stuck'\\)"):
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


class InterruptedReactor(EpollReactor):
    """Raises KeyboardInterrupt out of poll(), as Ctrl-C does when the kernel
    does not handle signals itself."""

    def __init__(self):
        super().__init__()
        self._poll, self.poll = self.poll, self._interrupt

    def _interrupt(self, timeout):
        if timeout == 0:
            return self._poll(0)
        raise KeyboardInterrupt  # once every task waits


def test_a_crashed_loop_still_runs_finally_blocks_and_releases_everything():
    log = []

    def child():
        try:
            yield from sleep(10)
        finally:
            log.append("child finally")
            yield from sleep(0.01)  # cannot wait any more: the loop is gone
            log.append("never")

    def main():
        yield from spawn(child())
        try:
            yield from sleep(10)
        finally:
            log.append("main finally")

    before = open_fds()
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        Kernel(reactor=InterruptedReactor()).run(main())
    assert sorted(log) == ["child finally", "main finally"]
    assert open_fds() == before
    assert signal.getsignal(signal.SIGINT) is handler
    assert current_kernel() is None
