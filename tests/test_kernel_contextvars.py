"""Context variables are per task: each task runs in its own
contextvars.Context, copied from its parent's when it is spawned (as asyncio
and trio do), and a thread job runs in a copy of its task's."""

from __future__ import annotations

import contextvars
import threading

import httpx
import pytest

from corofw import Router, VirtualClock, gather, run, run_in_thread, sleep, spawn
from corofw.testing import serve_in_thread

pytestmark = pytest.mark.usefixtures("no_leaks")

request_id: contextvars.ContextVar[object] = contextvars.ContextVar("request_id", default=None)


def vrun(coro):
    return run(coro, clock=VirtualClock())


def set_sleep_read(value, delay=1):
    request_id.set(value)
    yield from sleep(delay)
    return request_id.get()


def test_tasks_under_gather_each_keep_their_own_value():
    def main():
        return (yield from gather(*(set_sleep_read(i) for i in range(3))))

    assert vrun(main()) == [0, 1, 2]


def test_children_inherit_the_value_at_spawn_and_cannot_change_the_parents():
    def child():
        inherited = request_id.get()
        request_id.set("child's own")
        yield from sleep(0)
        return inherited, request_id.get()

    def main():
        request_id.set("parent's")
        task = yield from spawn(child())
        request_id.set("parent's, changed after the spawn")
        seen = yield from task.join()
        return seen, request_id.get()

    assert vrun(main()) == (("parent's", "child's own"), "parent's, changed after the spawn")


def test_the_main_task_starts_from_the_callers_context():
    request_id.set("set before run()")
    try:
        assert vrun(set_sleep_read("in main")) == "in main"
        assert request_id.get() == "set before run()"
    finally:
        request_id.set(None)


def test_a_thread_job_sees_its_tasks_values_and_keeps_its_own_changes():
    def in_thread():
        seen = request_id.get()
        request_id.set("set in the thread")
        return seen, threading.current_thread() is not threading.main_thread()

    def worker(value):
        request_id.set(value)
        seen = yield from run_in_thread(in_thread)
        return seen, request_id.get()

    def main():
        return (yield from gather(worker("a"), worker("b")))

    assert run(main()) == [(("a", True), "a"), (("b", True), "b")]


def test_the_servers_requests_do_not_see_each_others_values():
    routes = Router()
    both_in = threading.Barrier(2, timeout=10)

    @routes.get("/{name}")
    def handler(request, name):
        request_id.set(name)
        yield from run_in_thread(both_in.wait)  # both requests are in flight now
        yield from sleep(0.01)
        return {"set": name, "read": request_id.get()}

    with serve_in_thread(routes) as server:
        results = {}

        def call(name):
            results[name] = httpx.get(f"{server.url}/{name}", timeout=10).json()

        threads = [threading.Thread(target=call, args=(name,)) for name in ("alice", "bob")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == {"alice": {"set": "alice", "read": "alice"},
                       "bob": {"set": "bob", "read": "bob"}}
