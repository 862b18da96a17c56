"""Event, Lock, Semaphore, Queue and run_in_thread."""

from __future__ import annotations

import threading
import time

import pytest

from corofw import (
    Cancelled,
    Event,
    Lock,
    Queue,
    QueueEmpty,
    QueueFull,
    Semaphore,
    TaskTimeout,
    VirtualClock,
    current_kernel,
    current_time,
    format_tasks,
    gather,
    run,
    run_in_thread,
    sleep,
    spawn,
    timeout_after,
)

pytestmark = pytest.mark.usefixtures("no_leaks")


def vrun(coro):
    return run(coro, clock=VirtualClock())


def now():
    return (yield from current_time())


# -- Event ---------------------------------------------------------------------

def test_event_wakes_every_waiter():
    event = Event()
    woken = []

    def waiter(name):
        yield from event.wait()
        woken.append((name, (yield from now())))

    def main():
        tasks = []
        for name in "abc":
            tasks.append((yield from spawn(waiter(name))))
        yield from sleep(1)
        assert woken == [] and not event.is_set()
        event.set()
        for task in tasks:
            yield from task.join()
        yield from event.wait()  # set: returns at once
        event.clear()
        return event.is_set()

    assert vrun(main()) is False
    assert woken == [("a", 1.0), ("b", 1.0), ("c", 1.0)]


def test_cancelled_event_waiter_leaves_the_queue():
    event = Event()

    def main():
        task = yield from spawn(event.wait())
        yield from sleep(0)
        assert len(event._waiters) == 1
        task.cancel()
        assert len(event._waiters) == 0
        with pytest.raises(Cancelled):
            yield from task.join()

    vrun(main())


# -- Lock and Semaphore --------------------------------------------------------------

def test_lock_gives_mutual_exclusion_in_fifo_order():
    lock = Lock()
    log = []

    def worker(name):
        with (yield from lock.acquire()):
            log.append(("in", name))
            yield from sleep(1)
            log.append(("out", name))

    def main():
        yield from gather(*(worker(n) for n in "abc"))
        return (yield from now()), lock.locked()

    assert vrun(main()) == (3.0, False)
    assert log == [("in", "a"), ("out", "a"), ("in", "b"), ("out", "b"),
                   ("in", "c"), ("out", "c")]


def test_lock_is_not_reentrant():
    lock = Lock()

    def main():
        yield from lock.acquire()
        with pytest.raises(RuntimeError, match="not reentrant"):
            yield from lock.acquire()
        lock.release()
        with pytest.raises(RuntimeError, match="not held"):
            lock.release()

    vrun(main())


def test_cancelled_lock_waiter_does_not_take_the_lock():
    lock = Lock()

    def holder():
        with (yield from lock.acquire()):
            yield from sleep(1)

    def main():
        yield from spawn(holder())
        yield from sleep(0)
        waiter = yield from spawn(lock.acquire())
        yield from sleep(0.5)
        waiter.cancel()
        with pytest.raises(Cancelled):
            yield from waiter.join()
        yield from lock.acquire()  # the cancelled waiter got nothing
        lock.release()
        return (yield from now())

    assert vrun(main()) == 1.0


def test_lock_acquire_with_timeout():
    lock = Lock()

    def main():
        yield from lock.acquire()
        helper = yield from spawn(timeout_after(0.5, lock.acquire()))
        with pytest.raises(TaskTimeout):
            yield from helper.join()
        lock.release()
        return lock.locked()

    assert vrun(main()) is False


def test_semaphore_limits_concurrency():
    sem = Semaphore(2)
    running = []
    peak = []

    def worker():
        with (yield from sem.acquire()):
            running.append(1)
            peak.append(len(running))
            yield from sleep(1)
            running.pop()

    def main():
        yield from gather(*(worker() for _ in range(5)))
        return (yield from now()), sem.value

    assert vrun(main()) == (3.0, 2)
    assert max(peak) == 2


def test_semaphore_refuses_a_negative_value():
    with pytest.raises(ValueError):
        Semaphore(-1)


def test_only_the_task_holding_a_lock_may_release_it():
    lock = Lock()
    log = []

    def holder():
        with (yield from lock.acquire()):
            log.append("holder in")
            yield from sleep(1)
            log.append("holder out")

    def waiter():
        with (yield from lock.acquire()):
            log.append("waiter in")

    def main():
        yield from spawn(holder(), name="holder")
        yield from sleep(0)
        waiting = yield from spawn(waiter())
        yield from sleep(0.5)
        with pytest.raises(RuntimeError, match="held by task .* 'holder'"):
            lock.release()  # main does not hold it: mutual exclusion must survive
        assert lock.locked()
        yield from waiting.join()
        return (yield from now())

    assert vrun(main()) == 1.0
    assert log == ["holder in", "holder out", "waiter in"]


def test_a_lock_released_outside_any_task_is_refused():
    lock = Lock()

    def main():
        yield from lock.acquire()

    vrun(main())  # ends holding the lock
    with pytest.raises(RuntimeError, match="held by task"):
        lock.release()


def test_a_bounded_semaphore_refuses_one_release_too_many():
    sem = Semaphore(2, max_value=2)

    def main():
        with (yield from sem.acquire()):
            pass
        with pytest.raises(ValueError, match="released too many times"):
            sem.release()
        return sem.value

    assert vrun(main()) == 2


def test_a_semaphore_cannot_start_above_its_bound():
    with pytest.raises(ValueError):
        Semaphore(3, max_value=2)
    with pytest.raises(TypeError):
        Semaphore(1.5)


# -- Queue ---------------------------------------------------------------------

def test_queue_get_waits_while_empty():
    queue = Queue()

    def producer():
        for i in range(3):
            yield from sleep(1)
            yield from queue.put(i)

    def main():
        yield from spawn(producer())
        got = []
        for _ in range(3):
            got.append(((yield from queue.get()), (yield from now())))
        return got

    assert vrun(main()) == [(0, 1.0), (1, 2.0), (2, 3.0)]


def test_bounded_queue_holds_the_producer_back():
    queue = Queue(maxsize=2)
    produced = []

    def producer():
        for i in range(10):
            yield from queue.put(i)
            produced.append(i)

    def main():
        task = yield from spawn(producer())
        consumed = []
        yield from sleep(1)
        assert produced == [0, 1] and queue.full()
        assert "<Queue size=2 maxsize=2>" in format_tasks()
        while len(consumed) < 10:
            consumed.append((yield from queue.get()))
            yield from sleep(1)
            assert len(produced) <= len(consumed) + 2  # never more than maxsize ahead
        yield from task.join()
        return consumed

    assert vrun(main()) == list(range(10))


def test_queue_nowait_variants():
    queue = Queue(1)
    with pytest.raises(QueueEmpty):
        queue.get_nowait()
    queue.put_nowait("x")
    with pytest.raises(QueueFull):
        queue.put_nowait("y")
    assert len(queue) == queue.qsize() == 1 and not queue.empty()
    assert queue.get_nowait() == "x"


def test_cancelled_getter_does_not_take_an_item():
    queue = Queue()

    def main():
        first = yield from spawn(queue.get())
        second = yield from spawn(queue.get())
        yield from sleep(0)
        first.cancel()
        yield from queue.put("item")
        with pytest.raises(Cancelled):
            yield from first.join()
        return (yield from second.join()), len(queue)

    assert vrun(main()) == ("item", 0)


def test_getter_that_times_out_as_the_item_arrives_keeps_it():
    queue = Queue()
    clock = VirtualClock()

    def feeder():
        queue.put_nowait("item")
        clock.advance(5)  # the getter's deadline passes in the same tick
        yield from sleep(0)

    def main():
        yield from spawn(feeder())
        return (yield from timeout_after(1, queue.get())), len(queue)

    assert run(main(), clock=clock) == ("item", 0)


def test_cancelled_putter_does_not_put():
    queue = Queue(1)

    def main():
        queue.put_nowait("first")
        putter = yield from spawn(queue.put("second"))
        yield from sleep(0)
        putter.cancel()
        assert (yield from queue.get()) == "first"
        yield from sleep(0)
        with pytest.raises(Cancelled):
            yield from putter.join()
        return len(queue)

    assert vrun(main()) == 0


# -- run_in_thread ---------------------------------------------------------------

def test_run_in_thread_returns_the_result():
    def main():
        name = yield from run_in_thread(lambda: threading.current_thread().name)
        return name, (yield from run_in_thread(pow, 2, 10))

    name, value = run(main())
    assert name.startswith("corofw") and value == 1024


def test_run_in_thread_raises_the_exception():
    def main():
        yield from run_in_thread(int, "not a number")

    with pytest.raises(ValueError, match="not a number"):
        run(main())


def test_cancelled_thread_wait_abandons_the_result():
    release = threading.Event()
    finished = []

    def blocking():
        release.wait(5)
        finished.append("thread done")
        return "late"

    def main():
        with pytest.raises(TaskTimeout):
            yield from timeout_after(0.05, run_in_thread(blocking))
        release.set()
        return "main done"

    started = time.monotonic()
    assert run(main()) == "main done"
    assert time.monotonic() - started < 2
    assert finished == ["thread done"]  # run() waited for the thread before returning


def test_thread_jobs_overlap():
    def main():
        started = time.monotonic()
        yield from gather(*(run_in_thread(time.sleep, 0.2) for _ in range(4)))
        return time.monotonic() - started

    assert run(main()) < 0.6  # one after another would take 0.8 s


def test_numeric_work_never_starts_the_pool():
    def main():
        yield from sleep(0)
        return current_kernel()._pool

    assert run(main()) is None
