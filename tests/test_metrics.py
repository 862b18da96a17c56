"""Prometheus metrics: per-route requests, latency and in-flight; per
upstream host calls, errors and latency; the kernel's counters; workers
summed through a shared directory. Scrapes are parsed with
prometheus_client's own parser, and the text is compared with what
prometheus_client writes for the same numbers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import prometheus_client
import pytest
from live import free_port, kill_tree, start_cli, wait_listening
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from corofw import Client, ClientError, Response, Router, run, sleep
from corofw.http.messages import HTTPError, Request
from corofw.testing import serve_in_thread
from corofw.web.metrics import CONTENT_TYPE, DEFAULT_BUCKETS, Metrics
from corofw.web.metrics_text import escape_label, format_value, render

pytestmark = pytest.mark.usefixtures("no_leaks")


def families(text: str) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels``, or None."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


def make_app(metrics: Metrics) -> Router:
    routes = Router()
    metrics.install(routes)

    @routes.get("/users/{user_id:int}")
    def user(request, user_id):
        return {"id": user_id}

    @routes.post("/users")
    def create(request):
        return Response("made", status=201)

    @routes.get("/slow/{seconds:float}")
    def slow(request, seconds):
        yield from sleep(seconds)
        return "slept"

    @routes.get("/boom")
    def boom(request):
        raise RuntimeError("boom")

    @routes.get("/teapot")
    def teapot(request):
        raise HTTPError(418, "short and stout")

    return routes


# -- per route -----------------------------------------------------------------


def test_requests_counted_by_route_pattern_method_and_status():
    metrics = Metrics()
    with serve_in_thread(make_app(metrics)) as server, httpx.Client(base_url=server.url) as http:
        for user_id in range(7):
            assert http.get(f"/users/{user_id}").status_code == 200
        for _ in range(3):
            assert http.post("/users").status_code == 201
        assert http.get("/boom").status_code == 500
        assert http.get("/teapot").status_code == 418
        scrape = http.get("/metrics")
    assert scrape.headers["content-type"] == CONTENT_TYPE
    text = scrape.text
    name = "corofw_http_requests_total"
    assert sample(text, name, route="/users/{user_id:int}", method="GET", status="200") == 7
    assert sample(text, name, route="/users", method="POST", status="201") == 3
    assert sample(text, name, route="/boom", method="GET", status="500") == 1
    assert sample(text, name, route="/teapot", method="GET", status="418") == 1
    assert "/users/3" not in text  # the pattern, never the raw path
    assert families(text)["corofw_http_requests"].type == "counter"


def test_latency_histogram_is_cumulative_and_counts_every_request():
    metrics = Metrics(buckets=(0.05, 0.2, 5.0))
    with serve_in_thread(make_app(metrics)) as server, httpx.Client(base_url=server.url) as http:
        for _ in range(4):
            http.get("/users/1")
        http.get("/slow/0.1")
        http.get("/slow/0.3")
        text = http.get("/metrics").text
    name = "corofw_http_request_duration_seconds"
    fast = {"route": "/users/{user_id:int}", "method": "GET"}
    les = ("0.05", "0.2", "5.0", "+Inf")
    assert [sample(text, name + "_bucket", **fast, le=le) for le in les] == [4, 4, 4, 4]
    assert sample(text, name + "_count", **fast) == 4
    slow = {"route": "/slow/{seconds:float}", "method": "GET"}
    buckets = [sample(text, name + "_bucket", **slow, le=le) for le in les]
    assert buckets == [0, 1, 2, 2]
    assert sample(text, name + "_count", **slow) == 2
    assert 0.4 <= sample(text, name + "_sum", **slow) < 3.0
    assert families(text)[name].type == "histogram"


def test_unmatched_requests_share_one_series():
    metrics = Metrics()
    with serve_in_thread(make_app(metrics)) as server, httpx.Client(base_url=server.url) as http:
        for n in range(40):
            assert http.get(f"/scan/{n}.php").status_code == 404
        assert http.delete("/users").status_code == 405
        assert http.request("PROPFIND", "/x").status_code in (404, 405, 501)
        text = http.get("/metrics").text
    name = "corofw_http_requests_total"
    assert sample(text, name, route="", method="GET", status="404") == 40
    assert sample(text, name, route="", method="DELETE", status="405") == 1
    assert sum(s.value for f in text_string_to_metric_families(text) if f.name == name[:-6]
               for s in f.samples if s.labels["route"] == "" and s.labels["method"] == "OTHER") == 1
    assert "scan" not in text and "PROPFIND" not in text


def test_in_flight_rises_while_a_handler_waits():
    metrics = Metrics()
    routes = make_app(metrics)
    release = threading.Event()

    @routes.get("/wait")
    def wait(request):
        while not release.is_set():
            yield from sleep(0.005)
        return "done"

    flying = {"route": "/wait", "method": "GET"}
    name = "corofw_http_requests_in_flight"
    with serve_in_thread(routes) as server, httpx.Client(base_url=server.url) as http:
        answers = []
        callers = [threading.Thread(target=lambda: answers.append(
            httpx.get(server.url + "/wait", timeout=10).status_code)) for _ in range(2)]
        for caller in callers:
            caller.start()
        try:
            deadline = time.monotonic() + 10
            while sample(http.get("/metrics").text, name, **flying) != 2:
                assert time.monotonic() < deadline, "in-flight never reached 2"
                time.sleep(0.01)
        finally:
            release.set()
            for caller in callers:
                caller.join(10)
        text = http.get("/metrics").text
    assert answers == [200, 200]
    assert sample(text, name, **flying) == 0
    assert sample(text, name, route="/metrics", method="GET") == 1  # the scrape itself


# -- upstream hosts -------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_upstream_calls_errors_by_kind_and_latency():
    metrics = Metrics()
    client = metrics.observe(Client(timeout=5))
    dead = f"127.0.0.1:{closed_port()}"
    with serve_in_thread(make_app(Metrics())) as server:
        live = f"{server.host}:{server.port}"

        def calls():
            for n in range(5):
                response = yield from client.get(f"{server.url}/users/{n}")
                assert response.status_code == 200
            for _ in range(3):
                with pytest.raises(ClientError):
                    yield from client.get(f"http://{dead}/")
            with pytest.raises(ClientError) as timed_out:
                yield from client.get(f"{server.url}/slow/0.5", timeout=0.1)
            client.close()
            return type(timed_out.value).__name__

        timeout_kind = run(calls())
    text = metrics.exposition()
    assert timeout_kind == "ReadTimeout"
    assert sample(text, "corofw_upstream_requests_total", host=live) == 6
    assert sample(text, "corofw_upstream_requests_total", host=dead) == 3
    assert sample(text, "corofw_upstream_errors_total", host=dead, kind="ConnectionRefused") == 3
    assert sample(text, "corofw_upstream_errors_total", host=live, kind="ReadTimeout") == 1
    assert sample(text, "corofw_upstream_request_duration_seconds_count", host=live) == 6
    assert sample(text, "corofw_upstream_request_duration_seconds_sum", host=live) >= 0.1
    assert sample(text, "corofw_upstream_request_duration_seconds_bucket", host=live,
                  le="+Inf") == 6
    assert sample(text, "corofw_upstream_request_duration_seconds_bucket", host=live,
                  le="0.05") < 6  # the timed-out call took 0.1 s


def test_a_client_without_observer_records_nothing():
    metrics = Metrics()
    with serve_in_thread(make_app(metrics)) as server:
        client = Client()

        def call():
            yield from client.get(f"{server.url}/users/1")
            client.close()

        run(call())
    assert Client.observer is None and client.observer is None
    assert "corofw_upstream_requests_total{" not in metrics.exposition()


# -- the kernel -------------------------------------------------------------------


def test_kernel_counters_in_a_scrape():
    metrics = Metrics()
    with serve_in_thread(make_app(metrics)) as server, httpx.Client(base_url=server.url) as http:
        text = http.get("/metrics").text
    assert sample(text, "corofw_kernel_tasks") >= 2  # the accept loop and this connection
    assert sample(text, "corofw_kernel_fds_waited_on") >= 1  # the listener
    assert sample(text, "corofw_kernel_timers") >= 0
    assert 0 <= sample(text, "corofw_kernel_busy_ratio") <= 1
    assert 0 <= sample(text, "corofw_kernel_loop_lag_seconds") < 5
    assert sample(text, "corofw_kernel_watchdog_warnings_total") == 0


# -- the text format ----------------------------------------------------------------


def test_text_matches_prometheus_client_for_the_same_numbers():
    prometheus_client.disable_created_metrics()
    try:
        bounds = (0.005, 0.25, 1.0, 10.0, 1234567.0)
        odd = 'a\\b"c\nd'
        snapshot = {
            "pid": os.getpid(), "bounds": list(bounds), "upstream_bounds": list(bounds),
            "routes": [["/users/{id}", "GET", 2, {"200": 3, "404": 1}, [1, 2, 0, 0, 0, 1],
                        0.001 + 0.1 + 0.2 + 2e6],
                       [odd, "POST", 0, {"201": 1}, [0, 0, 1, 0, 0, 0], 0.5]],
            "upstreams": [["api:9001", 4, {"ConnectError": 2}, [0, 4, 0, 0, 0, 0], 0.125]],
            "kernel": {"tasks": 12, "fds_waited_on": 3, "timers": 2, "busy_fraction": 0.25,
                       "loop_lag_seconds": 1e-05, "watchdog_warnings": 1},
        }
        ours = render("app", bounds, bounds, [snapshot], multi=False)

        registry = CollectorRegistry()
        requests = Counter("app_http_requests", "h", ["route", "method", "status"],
                           registry=registry)
        latency = Histogram("app_http_request_duration_seconds", "h", ["route", "method"],
                            buckets=bounds, registry=registry)
        flying = Gauge("app_http_requests_in_flight", "h", ["route", "method"],
                       registry=registry)
        calls = Counter("app_upstream_requests", "h", ["host"], registry=registry)
        errors = Counter("app_upstream_errors", "h", ["host", "kind"], registry=registry)
        call_latency = Histogram("app_upstream_request_duration_seconds", "h", ["host"],
                                 buckets=bounds, registry=registry)
        gauges = {key: Gauge("app_kernel_" + key.replace("busy_fraction", "busy_ratio"), "h",
                             registry=registry)
                  for key in ("tasks", "fds_waited_on", "timers", "busy_fraction",
                              "loop_lag_seconds")}
        warnings = Counter("app_kernel_watchdog_warnings", "h", registry=registry)
        requests.labels("/users/{id}", "GET", "200").inc(3)
        requests.labels("/users/{id}", "GET", "404").inc(1)
        requests.labels(odd, "POST", "201").inc(1)
        for value in (0.001, 0.1, 0.2, 2e6):  # the buckets and sum of the snapshot
            latency.labels("/users/{id}", "GET").observe(value)
        latency.labels(odd, "POST").observe(0.5)
        flying.labels("/users/{id}", "GET").set(2)
        flying.labels(odd, "POST").set(0)
        calls.labels("api:9001").inc(4)
        errors.labels("api:9001", "ConnectError").inc(2)
        for _ in range(4):
            call_latency.labels("api:9001").observe(0.03125)
        for key, value in snapshot["kernel"].items():
            if key in gauges:
                gauges[key].set(value)
        warnings.inc(1)
        theirs = generate_latest(registry).decode()
    finally:
        prometheus_client.enable_created_metrics()

    def samples(text: str) -> list[str]:
        return sorted(line for line in text.splitlines() if not line.startswith("#"))

    def heads(text: str) -> list[str]:
        """``# TYPE`` lines whole, ``# HELP`` lines up to the name (the texts differ)."""
        return sorted(line if line.startswith("# TYPE") else " ".join(line.split(" ")[:3])
                      for line in text.splitlines() if line.startswith("#"))

    assert samples(ours) == samples(theirs)
    assert heads(ours) == heads(theirs)
    assert families(ours)["app_http_requests"].samples[2].labels["route"] == odd


def test_values_and_label_escaping_match_prometheus_client():
    for value in (0, 1, 0.1, 2.5, 1e-05, 123456.0, 1234567.0, 1e7, 1.5e22, float("inf"),
                  float("-inf"), float("nan"), -3.0, 17):
        assert format_value(value) == floatToGoString(value)
    assert escape_label('back\\slash "quoted"\nnew') == 'back\\\\slash \\"quoted\\"\\nnew'


def test_bad_buckets_and_namespace_are_refused():
    with pytest.raises(ValueError, match="ascending"):
        Metrics(buckets=(1.0, 0.5))
    with pytest.raises(ValueError, match="ascending"):
        Metrics(buckets=())
    with pytest.raises(ValueError, match="namespace"):
        Metrics(namespace="my-app")
    assert Metrics(buckets=(0.1, float("inf"))).bounds == (0.1,)
    assert Metrics().bounds == DEFAULT_BUCKETS


# -- workers --------------------------------------------------------------------


def test_shared_directory_sums_workers_and_drops_gauges_of_dead_ones(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    gone = Metrics(directory=tmp_path)
    series = gone.series_for(Request("GET", "/nope"))
    series.statuses[404] = 5
    series.in_flight = 3
    series.buckets[0] = 5
    snapshot = gone.snapshot()
    snapshot["pid"] = dead_pid
    snapshot["kernel"] = {"tasks": 99}
    gone.files.write(snapshot)

    metrics = Metrics(directory=tmp_path)
    with serve_in_thread(make_app(metrics)) as server, httpx.Client(base_url=server.url) as http:
        for _ in range(2):
            http.get("/nope")
        text = http.get("/metrics").text
    assert sample(text, "corofw_http_requests_total", route="", method="GET", status="404") == 7
    assert sample(text, "corofw_http_request_duration_seconds_count", route="",
                  method="GET") == 7
    assert sample(text, "corofw_http_requests_in_flight", route="", method="GET") == 0
    assert sample(text, "corofw_kernel_tasks", pid=str(os.getpid())) >= 2
    assert sample(text, "corofw_kernel_tasks", pid=str(dead_pid)) is None
    assert sorted(os.listdir(tmp_path)) == sorted([f"{dead_pid}.json", f"{os.getpid()}.json"])


@pytest.mark.skipif(sys.platform != "linux", reason="needs fork and SO_REUSEPORT")
def test_a_scrape_covers_every_worker(tmp_path):
    port = free_port()
    proc = start_cli("run", "tests.metrics_app:routes", "--host", "127.0.0.1",
                     "--port", str(port), "--workers", "2", "--no-access-log",
                     env={"COROFW_METRICS_DIR": str(tmp_path)})
    try:
        wait_listening(port, proc)
        url = f"http://127.0.0.1:{port}"
        served: dict[str, int] = {}
        for _ in range(400):  # fresh connections until both workers answered a few
            with httpx.Client() as http:
                try:
                    pid = http.get(url + "/pid", timeout=5).text
                except httpx.TransportError:
                    time.sleep(0.02)
                    continue
            served[pid] = served.get(pid, 0) + 1
            if len(served) == 2 and min(served.values()) >= 3:
                break
        assert len(served) == 2, f"only one worker answered: {served}"
        total = sum(served.values())
        for _ in range(4):  # whichever worker answers, it sees them all
            with httpx.Client() as http:
                text = http.get(url + "/metrics", timeout=5).text
            assert sample(text, "corofw_http_requests_total", route="/pid", method="GET",
                          status="200") == total
            assert {s.labels["pid"] for f in text_string_to_metric_families(text)
                    if f.name == "corofw_kernel_tasks" for s in f.samples} >= set(served)
    finally:
        kill_tree(proc)


def test_only_the_served_router_can_be_wrapped():
    parent, child = Router(), Router()
    parent.mount("/api", child)
    with pytest.raises(ValueError, match="mounted router"):
        Metrics().install(child)
    wrapped = Router()
    Metrics().install(wrapped)
    with pytest.raises(ValueError, match="wrapped"):
        Router().mount("/w", wrapped)


def test_a_plain_handler_gets_no_generator_added():
    metrics = Metrics()
    routes = make_app(metrics)
    request = Request("GET", "/users/5")
    response = routes.handle(request)
    assert isinstance(response, Response) and response.status == 200
    series = metrics.series_for(request)
    assert series.route == "/users/{user_id:int}" and series.statuses == {200: 1}
    assert sum(series.buckets) == 1 and series.in_flight == 0


def test_a_handler_cancelled_by_the_client_leaving_counts_as_499():
    metrics = Metrics()
    name = "corofw_http_requests_total"
    labels = {"route": "/slow/{seconds:float}", "method": "GET"}
    with serve_in_thread(make_app(metrics)) as server, httpx.Client(base_url=server.url) as http:
        with socket.create_connection((server.host, server.port)) as raw:
            raw.sendall(b"GET /slow/30 HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = time.monotonic() + 10
            while sample(http.get("/metrics").text, "corofw_http_requests_in_flight",
                         **labels) != 1:
                assert time.monotonic() < deadline, "the request never started"
                time.sleep(0.01)
        deadline = time.monotonic() + 10
        while sample(text := http.get("/metrics").text, name, **labels, status="499") != 1:
            assert time.monotonic() < deadline, "the cancelled request was never counted"
            time.sleep(0.01)
    assert sample(text, "corofw_http_requests_in_flight", **labels) == 0


def test_a_worker_writes_its_numbers_after_requests_without_a_scrape(tmp_path):
    metrics = Metrics(directory=tmp_path, write_interval=0.05)
    mine = tmp_path / f"{os.getpid()}.json"
    with serve_in_thread(make_app(metrics)) as server, httpx.Client(base_url=server.url) as http:
        for _ in range(3):
            http.get("/users/1")
        deadline = time.monotonic() + 10
        while not (mine.exists() and '"200":3' in mine.read_text()):
            assert time.monotonic() < deadline, "the numbers were never written"
            time.sleep(0.01)
