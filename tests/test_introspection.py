"""Seeing inside the loop: watchdog, task tree, cancellation reasons,
deadlock report, counters and the debug routes."""

import logging
import time
import traceback

import httpx
import pytest

from corofw import (
    Cancelled,
    Client,
    DeadlockError,
    Event,
    Router,
    current_task,
    debug_routes,
    format_tasks,
    gather,
    run,
    serve,
    sleep,
    spawn,
    stats,
)
from corofw.net import listen
from corofw.testing import serve_in_thread


def blocking_step():
    time.sleep(0.3)  # the classic mistake: blocks the whole loop
    yield from sleep(0)


def test_watchdog_names_the_task_and_the_blocking_line(caplog):
    def main():
        yield from spawn(blocking_step(), name="sleepy")
        yield from sleep(0.4)

    with caplog.at_level(logging.WARNING, logger="corofw.watchdog"):
        run(main(), watchdog=0.1)
    warnings = [r.getMessage() for r in caplog.records if r.name == "corofw.watchdog"]
    assert len(warnings) == 1, warnings
    assert "task sleepy" in warnings[0]
    assert "in blocking_step" in warnings[0]
    assert "time.sleep(0.3)" in warnings[0]


def test_watchdog_stays_quiet_for_a_busy_but_cooperative_loop(caplog):
    def worker():
        for _ in range(200):
            yield from sleep(0)

    def main():
        yield from gather(*(worker() for _ in range(20)))

    with caplog.at_level(logging.WARNING, logger="corofw.watchdog"):
        run(main(), watchdog=0.1)
    assert not [r for r in caplog.records if r.name == "corofw.watchdog"]


def test_watchdog_can_be_turned_off(caplog):
    with caplog.at_level(logging.WARNING, logger="corofw.watchdog"):
        run(blocking_step(), watchdog=None)
    assert not [r for r in caplog.records if r.name == "corofw.watchdog"]


def test_a_blocking_handler_is_reported_with_its_request(caplog):
    routes = Router()

    @routes.get("/block")
    def block(request):
        time.sleep(0.3)
        return "done"

    with caplog.at_level(logging.WARNING, logger="corofw.watchdog"), \
            serve_in_thread(routes) as server:
        assert httpx.get(server.url + "/block").text == "done"
    warnings = [r.getMessage() for r in caplog.records if r.name == "corofw.watchdog"]
    assert warnings and "GET /block" in warnings[0] and "in block" in warnings[0]


def test_deadlock_is_reported_within_a_second():
    def waiter(event):
        yield from event.wait()

    def main():
        event = Event()
        task = yield from spawn(waiter(event), name="forgotten")
        yield from task.join()

    started = time.monotonic()
    with pytest.raises(DeadlockError) as info:
        run(main())
    assert time.monotonic() - started < 1.0
    report = str(info.value)
    assert "'forgotten'" in report and "<Event unset>" in report and "join(task" in report


def test_sibling_failure_reason_reaches_the_cancelled_task_and_its_traceback():
    caught = []

    def slow():
        try:
            yield from sleep(10)
        except Cancelled as exc:
            caught.append(exc)
            raise

    def failing():
        yield from sleep(0.01)
        raise ValueError("backend said no")

    def main():
        yield from gather(slow(), failing())

    with pytest.raises(ValueError):
        run(main())
    (exc,) = caught
    assert "sibling 'failing' failed with ValueError('backend said no')" in exc.reason
    text = "".join(traceback.format_exception(exc))
    assert "backend said no" in text and "in slow" in text


def test_explicit_and_timeout_reasons_show_in_the_task_tree():
    def victim():
        yield from sleep(10)

    def main():
        task = yield from spawn(victim(), name="victim")
        yield from sleep(0)
        me = yield from current_task()
        me.context = "GET /report from test"
        task.cancel("operator asked")
        tree = format_tasks()
        yield from sleep(0)
        return tree

    tree = run(main())
    assert "'main' serving 'GET /report from test'" in tree
    assert "victim" in tree


def backend_routes():
    routes = Router()

    @routes.get("/api/{i:int}")
    def api(request, i):
        yield from sleep(0.5)
        return {"id": i}

    return routes


def test_tree_shows_the_ten_outbound_calls_of_a_fan_out_with_their_fds():
    def call(client, i):
        response = yield from client.get(f"/api/{i}")
        return response.json()

    def main():
        listener = listen("127.0.0.1", 0)
        port = listener.getsockname()[1]
        stop_r, stop_w = __import__("socket").socketpair()
        server = yield from spawn(serve(backend_routes(), listener, stop=stop_r), name="backend")
        client = Client(f"http://127.0.0.1:{port}")
        fan = yield from spawn(gather(*(call(client, i) for i in range(10))), name="fan-out")
        yield from sleep(0.25)
        tree = format_tasks()
        counters = stats()
        results = yield from fan.join()
        client.close()
        stop_w.send(b"x")
        yield from server.join()
        stop_r.close()
        stop_w.close()
        return tree, counters, results

    tree, counters, results = run(main())
    assert results == [{"id": i} for i in range(10)]
    fan_part = tree.split("'fan-out'")[1]
    calls = fan_part.split("- task")[1:11]
    fds = set()
    for block in calls:
        assert "'call'" in block and "in call:" in block
        fd = block.split("read_wait(fd=")[1].split(")")[0]
        fds.add(int(fd))
    assert len(fds) == 10
    assert counters["fds_waited_on"] >= 10 and counters["tasks"] >= 11


def test_stats_counts_what_the_kernel_is_doing():
    def main():
        before = stats()
        sleepers = []
        for _ in range(5):
            sleepers.append((yield from spawn(sleep(1))))
        yield from sleep(0)
        during = stats()
        for task in sleepers:
            task.cancel()
        return before, during

    before, during = run(main())
    assert during["tasks"] == before["tasks"] + 5
    assert during["timers"] >= 5
    assert during["ticks"] > before["ticks"]
    assert during["reactor"] in ("epoll", "selectors")
    assert 0.0 <= during["busy_fraction"] <= 1.0


def test_debug_routes_serve_the_tree_and_the_counters_only_when_mounted():
    routes = Router()

    @routes.get("/")
    def index(request):
        return "hi"

    with serve_in_thread(routes) as server:
        assert httpx.get(server.url + "/_debug/tasks").status_code == 404
    routes.mount("/_debug", debug_routes())
    with serve_in_thread(routes) as server:
        text = httpx.get(server.url + "/_debug/tasks").text
        assert "live task(s)" in text and "accept loop" in text
        counters = httpx.get(server.url + "/_debug/stats").json()
        assert counters["tasks"] >= 2 and "busy_fraction" in counters
