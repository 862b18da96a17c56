"""The fan-out demo (apps.fanout) against the stand-in backend
(apps.backend): ten concurrent calls take as long as one, sequential calls
add up, and upstream failures become 502/504 JSON naming the upstream."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apps import backend, fanout  # noqa: E402
from corofw import (  # noqa: E402
    Client,
    ServerConfig,
    Timeout,
    VirtualClock,
    current_time,
    run,
    serve,
    spawn,
)
from corofw.net import listen  # noqa: E402
from corofw.testing import serve_in_thread  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_leaks")

QUICK = ServerConfig(access_log=False, graceful_timeout=0.5)


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FanoutStack:
    """The backend and the fan-out app, each served in a thread."""

    def __init__(self, backend_url=None, timeout=fanout.DEFAULT_TIMEOUT):
        self.backend_url = backend_url
        self.timeout = timeout

    def __enter__(self):
        self._backend = serve_in_thread(backend.routes, QUICK)
        backend_server = self._backend.__enter__()
        url = self.backend_url or backend_server.url
        self.client = fanout.backend_client(url, timeout=self.timeout)
        self._fanout = serve_in_thread(fanout.make_routes(self.client), QUICK)
        self.url = self._fanout.__enter__().url
        self.http = httpx.Client(base_url=self.url, timeout=30)
        return self

    def __exit__(self, *exc_info):
        self.http.close()
        self._fanout.__exit__(*exc_info)
        self.client.close()
        self._backend.__exit__(*exc_info)

    def get(self, path):
        started = time.monotonic()
        resp = self.http.get(path)
        return resp, time.monotonic() - started


def check_results(calls, delay):
    assert [c["call"] for c in calls] == list(range(10))
    assert [c["result"] for c in calls] == [
        {"id": i, "value": i * i, "delay": delay, "waited": pytest.approx(delay, abs=0.15)}
        for i in range(10)]


def test_ten_concurrent_calls_take_as_long_as_one():
    with FanoutStack() as stack:
        stack.get("/fanout?delay=0")  # warm up: the pool opens its connections
        resp, wall = stack.get("/fanout?delay=0.2")
        again, _ = stack.get("/fanout?delay=0.2")
    assert resp.status_code == 200
    body = resp.json()
    assert body["mode"] == "concurrent"
    check_results(body["calls"], 0.2)
    assert 0.2 <= body["elapsed"] < 0.9
    assert wall < 0.9
    assert all(0.2 <= c["duration"] < 0.9 for c in body["calls"])
    check_results(again.json()["calls"], 0.2)


def test_sequential_calls_add_up():
    with FanoutStack() as stack:
        resp, wall = stack.get("/fanout/sequential?delay=0.2")
    body = resp.json()
    assert resp.status_code == 200 and body["mode"] == "sequential"
    check_results(body["calls"], 0.2)
    assert body["elapsed"] >= 2.0 and wall >= 2.0


def test_backend_down_is_a_502_naming_the_upstream():
    url = f"http://127.0.0.1:{closed_port()}"
    with FanoutStack(backend_url=url) as stack:
        resp, wall = stack.get("/fanout")
        sequential, _ = stack.get("/fanout/sequential")
    assert resp.status_code == 502 and sequential.status_code == 502
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["upstream"].startswith(url + "/api/")
    assert "refused" in body["error"]
    assert wall < 5


def test_backend_slower_than_the_timeout_is_a_504():
    timeout = Timeout(connect=5, read=0.2, pool=5)
    with FanoutStack(timeout=timeout) as stack:
        resp, wall = stack.get("/fanout?delay=1")
    assert resp.status_code == 504
    body = resp.json()
    assert "timed out" in body["error"] and "read" in body["error"]
    assert "/api/" in body["upstream"] and "delay=1" in body["upstream"]
    assert wall < 0.9  # the ten calls gave up together, after 0.2 s, not 1 s


def test_backend_error_status_is_a_502():
    with FanoutStack() as stack:
        resp, _ = stack.get("/fanout?delay=not-a-number")
    assert resp.status_code == 502
    assert resp.json()["error"] == "upstream answered 400"
    assert "delay=not-a-number" in resp.json()["upstream"]


def test_backend_url_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("BACKEND_URL", "http://127.0.0.1:9123/")
    client = fanout.backend_client()
    assert client.base_url == "http://127.0.0.1:9123"
    monkeypatch.delenv("BACKEND_URL")
    assert fanout.backend_client().base_url == fanout.DEFAULT_BACKEND_URL
    # ``corofw run apps.fanout:routes`` serves the module-level app
    assert fanout.backend.base_url == fanout.BACKEND_URL
    assert {r.path for r in fanout.routes.routes} == {"/fanout", "/fanout/sequential"}


def test_backend_rejects_bad_delays():
    with serve_in_thread(backend.routes, QUICK) as srv, httpx.Client(base_url=srv.url) as http:
        assert http.get("/api/3?delay=0").json() == {"id": 3, "value": 9, "delay": 0.0,
                                                     "waited": 0.0}
        assert http.get("/api/3?delay=-1").status_code == 400
        assert http.get("/api/3?delay=61").status_code == 400
        assert "number" in http.get("/api/3?delay=x").json()["error"]
        assert http.get("/api/x").status_code == 404


# -- both apps in one kernel, on a virtual clock -------------------------------------


def test_fanout_on_a_virtual_clock():
    """Ten 1-second calls measure 1.0 s of virtual time, in a blink of real
    time: the backend, the fan-out app and the caller share one kernel."""

    def main():
        stops = [socket.socketpair() for _ in range(2)]
        backend_listener = listen("127.0.0.1", 0)
        fanout_listener = listen("127.0.0.1", 0)
        client = fanout.backend_client(f"http://127.0.0.1:{backend_listener.getsockname()[1]}")
        caller = Client(f"http://127.0.0.1:{fanout_listener.getsockname()[1]}", timeout=30)
        servers = [
            (yield from spawn(serve(backend.routes, backend_listener, QUICK, stop=stops[0][0]))),
            (yield from spawn(serve(fanout.make_routes(client), fanout_listener, QUICK,
                                    stop=stops[1][0]))),
        ]
        try:
            started = yield from current_time()
            concurrent = yield from caller.get("/fanout?delay=1")
            middle = yield from current_time()
            sequential = yield from caller.get("/fanout/sequential?delay=1&deadline=15")
            ended = yield from current_time()
        finally:
            caller.close()
            for _, stop_w in stops:
                stop_w.send(b"x")
            for task in servers:
                yield from task.join()
            client.close()
            for pair in stops:
                for sock in pair:
                    sock.close()
            backend_listener.close()
            fanout_listener.close()
        return concurrent.json(), middle - started, sequential.json(), ended - middle

    real_started = time.monotonic()
    concurrent, first, sequential, second = run(main(), clock=VirtualClock())
    real = time.monotonic() - real_started
    check_results(concurrent["calls"], 1.0)
    assert concurrent["elapsed"] == pytest.approx(1.0, abs=1e-6)
    assert first == pytest.approx(1.0, abs=1e-6)
    assert all(c["duration"] == pytest.approx(1.0, abs=1e-6) for c in concurrent["calls"])
    assert all(c["result"]["waited"] == 1.0 for c in concurrent["calls"])
    assert sequential["elapsed"] == pytest.approx(10.0, abs=1e-6)
    assert second == pytest.approx(10.0, abs=1e-6)
    assert real < 5.0  # eleven virtual seconds, a fraction of a real one
