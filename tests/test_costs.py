"""What each request cost: time on the loop, and waits by what was waited on."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from corofw import Client, Router, ServerConfig, gather, run, sleep, spawn
from corofw.data import Redis
from corofw.kernel import Event, Lock, current_kernel, run_in_thread
from corofw.kernel.costs import CURRENT_COST, Cost, label_fd, start_metering
from corofw.kernel.introspect import format_tasks
from corofw.net import Socket
from corofw.testing import run_virtual, serve_in_thread
from corofw.web.metrics import Metrics


def metered(body):
    """Run ``body(cost)`` as the work of a fresh Cost; return the Cost."""
    def main():
        start_metering()
        yield from sleep(0)  # metering starts with the next tick
        cost = Cost(current_kernel().clock)
        CURRENT_COST.set(cost)
        yield from body(cost)
        cost.end()
        return cost
    return main


def test_parallel_waits_count_once_and_children_are_charged():
    def body(cost):
        def call():
            yield from sleep(1.0)
        yield from gather(*[call() for _ in range(10)])
        yield from sleep(0.5)

    cost = run_virtual(metered(body)())
    waits = cost.waits()
    assert waits["sleep"] == pytest.approx(1.5)
    assert waits["tasks"] == pytest.approx(1.0)
    assert cost.cpu == 0.0  # the virtual clock stands still while tasks run
    assert list(waits) == ["tasks", "sleep"]


def test_primitives_and_threads_are_named():
    def body(cost):
        lock, event = Lock(), Event()

        def holder():
            yield from lock.acquire()
            yield from sleep(0.01)
            lock.release()
            event.set()

        task = yield from spawn(holder())
        yield from sleep(0)
        yield from lock.acquire()
        lock.release()
        yield from event.wait()
        yield from run_in_thread(time.sleep, 0.01)
        yield from task.join()

    cost = run(metered(body)())
    waits = cost.waits()
    assert {"lock", "sleep", "thread"} <= set(waits)
    # the job may start while its task's step still runs (a new thread's start)
    assert waits["thread"] > 0 and waits["thread"] + cost.cpu >= 0.009
    assert cost.cpu > 0


def test_cpu_counts_time_on_the_loop():
    def body(cost):
        deadline = time.monotonic() + 0.05
        while time.monotonic() < deadline:
            pass
        yield from sleep(0.01)

    cost = run(metered(body)())
    assert 0.05 <= cost.cpu < 0.5
    assert cost.waits()["sleep"] >= 0.009


def test_labelled_fds_and_their_labels_go_with_the_fd():
    def body(cost):
        a, b = socket.socketpair()
        left, right = Socket(a), Socket(b)
        label_fd(left.fd, "peer test")

        def later():
            yield from sleep(0.01)
            yield from right.send_all(b"x")

        yield from spawn(later())
        assert (yield from left.recv(1)) == b"x"
        fd = left.fd
        left.close()
        right.close()
        assert fd not in current_kernel().fd_labels

    cost = run(metered(body)())
    assert cost.waits()["peer test"] >= 0.009


def test_nothing_is_charged_after_the_end():
    def main():
        start_metering()
        yield from sleep(0)
        cost = Cost(current_kernel().clock)
        CURRENT_COST.set(cost)
        child = yield from spawn(sleep(1.0))
        yield from sleep(0.25)
        cost.end()
        before = (cost.cpu, cost.waits())
        yield from child.join()
        return cost, before

    cost, before = run_virtual(main())
    assert (cost.cpu, cost.waits()) == before
    assert cost.waits() == {"sleep": pytest.approx(0.25)}
    assert cost.ended == pytest.approx(0.25)


def test_without_metering_the_kernel_calls_no_hook():
    def main():
        cost = Cost(current_kernel().clock)
        CURRENT_COST.set(cost)
        yield from sleep(0.5)
        return cost

    assert run_virtual(main()).waits() == {}


# -- the server -----------------------------------------------------------------


@pytest.fixture
def upstream():
    routes = Router()

    @routes.get("/slow")
    def slow(request):
        yield from sleep(0.2)
        return "ok"

    with serve_in_thread(routes) as server:
        yield server


def fan_out_app(upstream_url, seen):
    routes = Router()
    client = Client()

    @routes.get("/fan")
    def fan(request):
        yield from gather(*[client.get(upstream_url + "/slow") for _ in range(5)])
        yield from sleep(0.05)
        seen.append(request.cost)
        return "done"

    @routes.get("/hello")
    def hello(request):
        seen.append(request.cost)
        return "hi"

    routes.on_shutdown(client.close)
    return routes


def test_access_log_text_line_carries_the_costs(upstream, access_lines, no_leaks):
    seen = []
    config = ServerConfig(request_costs=True)
    host = f"upstream 127.0.0.1:{upstream.port}"
    with serve_in_thread(fan_out_app(upstream.url, seen), config) as server:
        assert httpx.get(server.url + "/fan", timeout=10).text == "done"
    line = next(line for line in access_lines if '"GET /fan' in line)
    assert " cpu=" in line and f'{host}=' in line.split(' waits="', 1)[1]
    cost = seen[0]
    waits = cost.waits()
    assert 0.19 <= waits[host] < 0.6  # five parallel calls: counted once
    assert 0.049 <= waits["sleep"] < 0.5
    assert "client" not in waits  # the client watcher's wait is not the request's
    assert cost.ended is not None and 0 < cost.cpu < 0.5


def test_access_log_json_line_carries_the_costs(upstream, access_lines, no_leaks):
    config = ServerConfig(request_costs=True, access_log_format="json")
    with serve_in_thread(fan_out_app(upstream.url, []), config) as server:
        httpx.get(server.url + "/fan", timeout=10)
        httpx.get(server.url + "/hello", timeout=10)
    entries = [json.loads(line) for line in access_lines if line.startswith("{")]
    fan = next(e for e in entries if e["target"] == "/fan")
    assert fan["cpu_ms"] > 0
    assert fan["waits_ms"][f"upstream 127.0.0.1:{upstream.port}"] >= 190
    hello = next(e for e in entries if e["target"] == "/hello")
    assert hello["waits_ms"] == {} and hello["cpu_ms"] >= 0


def test_costs_are_off_by_default(upstream, access_lines, no_leaks):
    seen = []
    with serve_in_thread(fan_out_app(upstream.url, seen), ServerConfig()) as server:
        httpx.get(server.url + "/hello", timeout=10)
    assert seen == [None]
    assert not any("cpu=" in line for line in access_lines)


def test_metrics_count_costs_per_route(upstream, no_leaks):
    routes = fan_out_app(upstream.url, [])
    Metrics(directory=None).install(routes)
    config = ServerConfig(request_costs=True, access_log=False)
    with serve_in_thread(routes, config) as server:
        httpx.get(server.url + "/fan", timeout=10)
        text = httpx.get(server.url + "/metrics", timeout=10).text
    cpu = [line for line in text.splitlines()
           if line.startswith('corofw_http_request_cpu_seconds_total{method="GET",route="/fan"}')]
    assert len(cpu) == 1 and float(cpu[0].split()[-1]) > 0
    wait = f'corofw_http_request_wait_seconds_total{{method="GET",' \
           f'on="upstream 127.0.0.1:{upstream.port}",route="/fan"}}'
    assert float(next(line for line in text.splitlines()
                      if line.startswith(wait)).split()[-1]) >= 0.19


def test_metrics_leave_costs_out_when_off(no_leaks):
    routes = Router()
    routes.get("/")(lambda request: "hi")
    Metrics(directory=None).install(routes)
    with serve_in_thread(routes) as server:
        httpx.get(server.url + "/", timeout=10)
        text = httpx.get(server.url + "/metrics", timeout=10).text
    assert "cpu_seconds" not in text and "wait_seconds" not in text


def test_task_dump_shows_the_cost_so_far(no_leaks):
    routes = Router()
    release = []

    @routes.get("/wait")
    def wait(request):
        while not release:
            yield from sleep(0.01)
        return "ok"

    @routes.get("/dump")
    def dump(request):
        text = format_tasks()
        if "serving <Request GET /wait>" in text:  # dumped while /wait waits: let it go
            release.append(True)
        return text

    config = ServerConfig(request_costs=True, access_log=False)
    with serve_in_thread(routes, config) as server, httpx.Client(timeout=10) as client, \
            httpx.Client(timeout=10) as other:
        waiting = threading.Thread(target=other.get, args=(server.url + "/wait",))
        waiting.start()
        deadline = time.monotonic() + 10  # a busy machine may take a while to send /wait
        text = client.get(server.url + "/dump").text
        while not release and time.monotonic() < deadline:
            time.sleep(0.02)
            text = client.get(server.url + "/dump").text
        release.append(True)  # never leave /wait waiting, even on a failure
        waiting.join()
    block = text.split("serving <Request GET /wait>", 1)[1]
    assert "cost so far: cpu " in block.split("- task", 1)[0]
    assert "sleep" in block.split("- task", 1)[0]


def test_redis_and_postgresql_waits_are_named(redis_url, pg_dsn, no_leaks):
    from corofw.data import pg

    routes = Router()
    seen = []
    redis = Redis(redis_url)
    pool = pg.Pool(pg_dsn, min_size=0, max_size=1)

    @routes.get("/both")
    def both(request):
        yield from redis.set("costs", "1")
        yield from pool.fetchval("select pg_sleep(0.05)")
        seen.append(request.cost)
        return "ok"

    @routes.on_shutdown
    def close():
        yield from pool.close()
        redis.close()

    config = ServerConfig(request_costs=True, access_log=False)
    with serve_in_thread(routes, config) as server:
        httpx.get(server.url + "/both", timeout=10)
    waits = seen[0].waits()
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    assert any(name.startswith("redis ") and name.endswith(port) for name in waits), waits
    pg_waits = [seconds for name, seconds in waits.items() if name.startswith("postgresql ")]
    assert pg_waits and sum(pg_waits) >= 0.045, waits
