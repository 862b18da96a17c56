"""POSIX signals: KeyboardInterrupt out of run(), catch_signals, the SIGUSR1
task dump, and handlers restored afterwards.

A signal sent to this very process is only sent once the test has checked
that the kernel's handler is installed, so a regression fails the test
instead of killing the test run; signals from outside go to a subprocess.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest

from corofw import Cancelled, catch_signals, current_kernel, run, sleep, spawn

pytestmark = [
    pytest.mark.usefixtures("no_leaks"),
    pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals"),
]


def kernel_handles(signum):
    handler = signal.getsignal(signum)
    return getattr(handler, "__self__", None) is current_kernel()


def send_to_self(signum):
    """Signal this process, refusing if the kernel would not catch it."""
    assert kernel_handles(signum), f"the kernel does not handle {signal.Signals(signum).name}"
    os.kill(os.getpid(), signum)


def test_catch_signals_lets_a_task_receive_sigterm():
    def main():
        with (yield from catch_signals(signal.SIGTERM)) as signals:
            send_to_self(signal.SIGTERM)
            return (yield from signals.wait())

    assert run(main()) == signal.SIGTERM


def test_catch_signals_queues_signals_that_arrive_while_nobody_waits():
    def main():
        with (yield from catch_signals(signal.SIGINT, signal.SIGTERM)) as signals:
            send_to_self(signal.SIGTERM)
            send_to_self(signal.SIGINT)
            yield from sleep(0.01)
            return sorted([(yield from signals.wait()), (yield from signals.wait())])

    assert run(main()) == sorted([signal.SIGINT, signal.SIGTERM])


def test_catch_signals_works_for_a_signal_the_kernel_does_not_handle_by_default():
    before = signal.getsignal(signal.SIGUSR2)

    def main():
        with (yield from catch_signals(signal.SIGUSR2)) as signals:
            send_to_self(signal.SIGUSR2)
            got = yield from signals.wait()
        return got, signal.getsignal(signal.SIGUSR2) == before

    assert run(main()) == (signal.SIGUSR2, True)  # restored when the block ends
    assert signal.getsignal(signal.SIGUSR2) == before


def test_a_signal_ignored_by_default_stays_harmless_after_catch_signals():
    def main():
        with (yield from catch_signals(signal.SIGWINCH)) as signals:
            send_to_self(signal.SIGWINCH)
            yield from signals.wait()
        os.kill(os.getpid(), signal.SIGWINCH)  # default action: ignore
        yield from sleep(0.01)
        return "survived"

    assert run(main()) == "survived"


def test_handlers_and_wakeup_fd_are_restored_after_run():
    ours_r, ours_w = socket.socketpair()
    ours_w.setblocking(False)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    previous = signal.set_wakeup_fd(ours_w.fileno())
    try:
        def main():
            yield from sleep(0)
            during = signal.set_wakeup_fd(-1)
            signal.set_wakeup_fd(during)
            return during, all(kernel_handles(s) for s in before)

        during, installed = run(main())
        assert during not in (-1, ours_w.fileno()) and installed
        assert signal.set_wakeup_fd(previous) == ours_w.fileno()
        assert {s: signal.getsignal(s) for s in before} == before
    finally:
        signal.set_wakeup_fd(previous)
        ours_r.close()
        ours_w.close()


def test_kernel_in_another_thread_leaves_signals_alone():
    before = signal.getsignal(signal.SIGINT)
    seen = []

    def main():
        yield from sleep(0)
        seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=run, args=(main(),))
    thread.start()
    thread.join(10)
    assert seen == [before]


SIGINT_PROGRAM = """
    import signal
    from corofw import run, sleep, spawn

    def child():
        try:
            yield from sleep(60)
        finally:
            print("child finally", flush=True)

    def main():
        yield from spawn(child())
        try:
            print("ready", flush=True)
            yield from sleep(60)
        finally:
            yield from sleep(0.01)
            print("main finally", flush=True)

    try:
        run(main())
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
    print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
"""


def test_sigint_while_asleep_in_epoll_raises_keyboard_interrupt(spawn_python):
    proc = spawn_python(SIGINT_PROGRAM)
    assert proc.stdout.readline() == "ready\n"
    time.sleep(0.1)  # let it settle into epoll_wait
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert time.monotonic() - sent < 3
    assert proc.returncode == 0, err
    assert out.splitlines() == ["main finally", "child finally", "KeyboardInterrupt", "True"]


SLOW_CLEANUP_PROGRAM = """
    from corofw import run, sleep, spawn

    def child():
        try:
            yield from sleep(60)
        finally:
            print("cleanup started", flush=True)
            yield from sleep(60)  # a cleanup that takes far too long
            print("cleanup finished", flush=True)

    def main():
        yield from spawn(child())
        yield from sleep(0)
        return "main done"

    try:
        print(run(main()), flush=True)
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
"""


def test_sigint_after_main_ended_cuts_a_slow_cleanup_short(spawn_python):
    proc = spawn_python(SLOW_CLEANUP_PROGRAM)
    assert proc.stdout.readline() == "cleanup started\n"
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out == "KeyboardInterrupt\n"


STUBBORN_PROGRAM = """
    import sys
    from corofw import Cancelled, run, sleep, spawn

    def stubborn():
        try:
            while True:
                try:
                    yield from sleep(60)
                except Cancelled:
                    print("ignored a cancel", flush=True)
        finally:
            print("stubborn finally", flush=True)

    def main():
        yield from spawn(stubborn(), name="stubborn-worker")
        yield from sleep(0)
        print("ready", flush=True)
        if sys.argv[1] == "main waits":
            yield from sleep(60)

    try:
        run(main())
        print("run returned", flush=True)
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
"""


@pytest.mark.parametrize("scenario", ["main waits", "main returns"])
def test_a_second_sigint_abandons_a_task_that_ignores_cancellation(spawn_python, scenario):
    proc = spawn_python(STUBBORN_PROGRAM, scenario)
    assert proc.stdout.readline() == "ready\n"
    if scenario == "main waits":
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)  # main ends; shutdown cancels the worker
    assert proc.stdout.readline() == "ignored a cancel\n"
    if scenario == "main returns":
        proc.send_signal(signal.SIGINT)  # the first interrupt during shutdown cancels again
        assert proc.stdout.readline() == "ignored a cancel\n"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert time.monotonic() - sent < 3
    assert proc.returncode == 0, err
    assert out.splitlines() == ["stubborn finally", "KeyboardInterrupt"]
    assert "SIGINT again during shutdown: abandoning 1 task(s)" in err
    assert "'stubborn-worker'" in err


def test_a_second_sigterm_during_shutdown_exits_with_143(spawn_python):
    proc = spawn_python(STUBBORN_PROGRAM, "main waits")
    assert proc.stdout.readline() == "ready\n"
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline() == "ignored a cancel\n"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 143, err
    assert out == "stubborn finally\n"
    assert "'stubborn-worker'" in err


def test_a_second_interrupt_during_shutdown_closes_the_stubborn_task(caplog):
    log = []
    tasks = []

    def stubborn():
        try:
            while True:
                try:
                    yield from sleep(60)
                except Cancelled as exc:
                    log.append(exc.reason)
                    send_to_self(signal.SIGINT)  # like a user pressing Ctrl-C again
        finally:
            log.append("finally")

    def main():
        tasks.append((yield from spawn(stubborn(), name="worker")))
        yield from sleep(0)

    with pytest.raises(KeyboardInterrupt):
        run(main())
    assert log == ["the main task finished", "interrupted by SIGINT", "finally"]
    assert tasks[0].cancelled
    assert "SIGINT again during shutdown: abandoning 1 task(s)" in caplog.text
    assert "'worker'" in caplog.text


def test_keyboard_interrupt_in_a_child_is_raised_by_run():
    log = []

    def child():
        yield from sleep(0)
        raise KeyboardInterrupt

    def main():
        yield from spawn(child())
        try:
            yield from sleep(10)
        finally:
            log.append("main finally")

    with pytest.raises(KeyboardInterrupt):
        run(main())
    assert log == ["main finally"]


SIGTERM_PROGRAM = """
    from corofw import run, sleep

    def main():
        try:
            print("ready", flush=True)
            yield from sleep(60)
        finally:
            print("main finally", flush=True)

    run(main())
"""


def test_sigterm_exits_with_143_after_finally_blocks(spawn_python):
    proc = spawn_python(SIGTERM_PROGRAM)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 143, err
    assert out == "main finally\n"


SIGUSR1_PROGRAM = """
    import os, signal, socket
    from corofw import read_wait, run, sleep, spawn

    def outer_frame(sock):
        yield from inner_frame(sock)

    def inner_frame(sock):
        yield read_wait(sock)

    def main():
        a, b = socket.socketpair()
        yield from spawn(outer_frame(a), name="stuck-reader")
        yield from sleep(0)
        os.kill(os.getpid(), signal.SIGUSR1)
        yield from sleep(0.05)
        print("still running", flush=True)
        a.close()
        b.close()

    run(main())
"""


def test_sigusr1_prints_the_task_dump_to_stderr(run_python):
    proc = run_python(SIGUSR1_PROGRAM)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "still running\n"
    assert "2 live task(s);" in proc.stderr
    assert "'stuck-reader'" in proc.stderr and "read_wait(fd=" in proc.stderr
    assert "in outer_frame" in proc.stderr and "in inner_frame" in proc.stderr
