"""Request costs under hostile use: nested Costs, readers in other threads,
odd wait names in the access log and the metrics, clients that leave, work
a handler hides from its Cost, pipelined requests."""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time

import httpx
import pytest

from corofw import (
    Client,
    Hedge,
    Router,
    ServerConfig,
    StreamingResponse,
    Upstream,
    gather,
    run,
    sleep,
    spawn,
)
from corofw.data import Redis
from corofw.kernel import current_kernel
from corofw.kernel.costs import CURRENT_COST, Cost, label_fd, start_metering
from corofw.kernel.traps import read_wait
from corofw.net import Socket
from corofw.testing import run_virtual, serve_in_thread
from corofw.web.metrics import Metrics


def wait_until(check, limit=5.0):
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# -- a Cost of one's own inside a request ------------------------------------------


def test_a_nested_cost_keeps_the_outer_ones_waits_as_waits():
    """Measuring part of a request with a Cost of its own (set, waited,
    reset) left the request's Cost "running" through the part: its waits
    were counted as time on the loop, and not as waits."""
    def main():
        start_metering()
        yield from sleep(0)
        clock = current_kernel().clock
        outer = Cost(clock)
        CURRENT_COST.set(outer)
        yield from sleep(0.01)
        inner = Cost(clock)
        token = CURRENT_COST.set(inner)
        yield from sleep(0.2)
        inner.end()
        CURRENT_COST.reset(token)
        yield from sleep(0.01)
        outer.end()
        return outer, inner

    outer, inner = run_virtual(main())
    assert inner.waits() == {"sleep": pytest.approx(0.2)}
    assert outer.cpu == 0.0  # the virtual clock stands still while tasks run
    assert outer.waits() == {"sleep": pytest.approx(0.22)}


def test_a_nested_cost_charges_the_outer_one_for_its_childrens_waits():
    def main():
        start_metering()
        yield from sleep(0)
        clock = current_kernel().clock
        outer = Cost(clock)
        CURRENT_COST.set(outer)
        inner = Cost(clock)
        CURRENT_COST.set(inner)

        def call():
            yield from sleep(0.3)

        yield from gather(call(), call())
        inner.end()
        CURRENT_COST.set(outer)
        outer.end()
        return outer, inner

    outer, inner = run_virtual(main())
    assert inner.waits() == {"tasks": pytest.approx(0.3), "sleep": pytest.approx(0.3)}
    assert outer.waits() == inner.waits() and outer.cpu == 0.0


# -- reading a Cost from another thread -------------------------------------------


def test_waits_can_be_read_from_another_thread_while_the_loop_charges():
    """``waits()`` iterated the open waits while the loop thread opened and
    closed them: "dictionary changed size during iteration"."""
    errors: list[BaseException] = []
    costs: list[Cost] = []
    done = threading.Event()

    def reader():
        while not costs:
            if done.wait(0.0005):
                return
        while not done.is_set():
            try:
                costs[0].waits()
                costs[0].describe()
            except Exception as exc:  # noqa: BLE001 - what the test looks for
                errors.append(exc)
                return

    def main():
        start_metering()
        yield from sleep(0)
        cost = Cost(current_kernel().clock)
        CURRENT_COST.set(cost)
        costs.append(cost)

        def worker(k):
            for _ in range(2000):
                yield from sleep(0.00001 if k % 2 else 0)

        yield from gather(*[worker(k) for k in range(6)])

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        run(main())
    finally:
        done.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert errors == []


# -- odd wait names ----------------------------------------------------------------

EVIL = 'evil "name"\nforged=1ms, caf\u00e9 \\ \u4e2d'


def labelled_wait_app(seen):
    routes = Router()

    @routes.get("/odd")
    def odd(request):
        left, right = socket.socketpair()
        mine, theirs = Socket(left), Socket(right)
        try:
            label_fd(mine, EVIL)

            def later():
                yield from sleep(0.02)
                theirs.sock.send(b"x")

            yield from spawn(later())
            yield read_wait(mine.fd)
        finally:
            mine.close()
            theirs.close()
        seen.append(request.cost)
        return "ok"

    return routes


def test_text_access_line_escapes_wait_names(access_lines, no_leaks):
    """A wait name with a double quote, a newline or non-ASCII went into the
    text line as is: it ended the ``waits="..."`` field, split the line in
    two (a forged line) and made the line non-ASCII."""
    seen = []
    config = ServerConfig(request_costs=True)
    with serve_in_thread(labelled_wait_app(seen), config) as server:
        assert httpx.get(server.url + "/odd", timeout=10).text == "ok"
    assert EVIL in seen[0].waits()
    lines = [line for line in access_lines if "/odd" in line or "forged" in line]
    assert len(lines) == 1, lines
    line = lines[0]
    assert "\n" not in line and line.isascii()
    field = line.split(' waits="', 1)[1]
    assert field.count('"') == 1 and field.endswith('"')  # the field's own closing quote
    assert field.startswith(r"evil \x22name\x22\x0Aforged=1ms, caf\xE9 \x5C \u4E2D=")


def test_json_access_line_keeps_odd_wait_names(access_lines, no_leaks):
    config = ServerConfig(request_costs=True, access_log_format="json")
    with serve_in_thread(labelled_wait_app([]), config) as server:
        httpx.get(server.url + "/odd", timeout=10)
    entry = next(json.loads(line) for line in access_lines if line.startswith("{"))
    assert entry["waits_ms"][EVIL] >= 15


def test_metrics_escape_odd_wait_names(no_leaks):
    routes = labelled_wait_app([])
    Metrics(directory=None).install(routes)
    config = ServerConfig(request_costs=True, access_log=False)
    with serve_in_thread(routes, config) as server:
        httpx.get(server.url + "/odd", timeout=10)
        text = httpx.get(server.url + "/metrics", timeout=10).text
    escaped = EVIL.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    wanted = f'corofw_http_request_wait_seconds_total{{method="GET",on="{escaped}",route="/odd"}}'
    line = next(line for line in text.splitlines() if line.startswith(wanted))
    assert float(line.rsplit(" ", 1)[1]) >= 0.015


def fake_redis(path, stop):
    """A Unix-socket server that answers each command +PONG after 30 ms."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    listener.settimeout(0.05)

    def serve():
        conns = []
        try:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                conns.append(conn)
                conn.settimeout(5)
                while conn.recv(4096):
                    time.sleep(0.03)
                    conn.sendall(b"+PONG\r\n")
        except OSError:
            pass
        finally:
            for conn in conns:
                conn.close()
            listener.close()

    thread = threading.Thread(target=serve)
    thread.start()
    return thread


def test_redis_on_a_unix_socket_with_an_odd_path(tmp_path, access_lines, no_leaks):
    """A Redis reached on a Unix socket is named by its path, which may hold
    anything but NUL: the text line stays one well-formed ASCII line."""
    path = str(tmp_path / 'r"e\ndis.sock')
    stop = threading.Event()
    thread = fake_redis(path, stop)
    redis = Redis(unix_socket=path)
    routes = Router()
    seen = []

    @routes.get("/ping")
    def ping(request):
        yield from redis.execute("PING")
        seen.append(request.cost)
        return "pong"

    routes.on_shutdown(redis.close)
    try:
        with serve_in_thread(routes, ServerConfig(request_costs=True)) as server:
            assert httpx.get(server.url + "/ping", timeout=10).text == "pong"
    finally:
        stop.set()
        thread.join()
    assert seen[0].waits()[f"redis {path}"] >= 0.025
    line = next(line for line in access_lines if "/ping" in line)
    assert "\n" not in line
    assert line.split(' waits="', 1)[1].startswith(
        "redis " + path.replace('"', r"\x22").replace("\n", r"\x0A") + "=")


# -- pipelining --------------------------------------------------------------------


def test_pipelined_requests_each_have_their_own_cost(access_lines, no_leaks):
    routes = Router()
    seen = {}

    @routes.get("/p/{n}")
    def pause(request, n):
        seen[n] = request.cost
        yield from sleep(int(n) / 1000)
        return n

    with serve_in_thread(routes, ServerConfig(request_costs=True)) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        client.sendall(b"".join(f"GET /p/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                                for n in (120, 40, 80)))
        data = b""
        while data.count(b"HTTP/1.1 200") < 3:
            data += client.recv(65536)
    assert len({id(cost) for cost in seen.values()}) == 3
    for n, cost in seen.items():
        assert cost.ended is not None
        assert set(cost.waits()) == {"sleep"}
        assert int(n) / 1000 - 0.001 <= cost.waits()["sleep"] < int(n) / 1000 + 0.2
        assert cost.ended - cost.started < int(n) / 1000 + 0.2  # not the ones before it


# -- a client that leaves, work hidden from the Cost (server and kernel) -------------


def test_the_cost_of_a_request_whose_client_left_is_ended(access_lines, no_leaks):
    routes = Router()
    seen = {}

    @routes.get("/slow")
    def slow(request):
        seen["cost"] = request.cost

        def keeps_going():  # detached work, carrying the request's context
            for _ in range(30):
                yield from sleep(0.01)
            seen["child done"] = True

        yield from spawn(keeps_going())
        yield from sleep(5)
        return "late"

    with serve_in_thread(routes, ServerConfig(request_costs=True)) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
            client.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.1)
        wait_until(lambda: any(" 499 " in line for line in access_lines))
        wait_until(lambda: "child done" in seen)
    cost = seen["cost"]
    assert cost.ended is not None
    logged = float(next(line for line in access_lines if " 499 " in line)
                   .split('waits="sleep=', 1)[1].split("ms", 1)[0]) / 1000
    assert cost.waits()["sleep"] == pytest.approx(logged, abs=0.002)  # nothing charged after


def test_the_cost_of_a_stream_cut_short_is_ended(no_leaks):
    routes = Router()
    seen = {}

    @routes.get("/endless")
    def endless(request):
        seen["cost"] = request.cost

        def body():
            while True:
                yield b"x" * 65536
                yield from sleep(0.005)

        return StreamingResponse(body())

    config = ServerConfig(request_costs=True, access_log=False)
    with serve_in_thread(routes, config) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
            client.sendall(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
            client.recv(65536)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))  # close with a reset
        wait_until(lambda: seen["cost"].ended is not None, 2.0)


def test_work_a_handler_hides_from_its_cost_is_not_counted_as_cpu():
    """A handler that keeps a slow part off its request's bill
    (``CURRENT_COST.set(None)`` around it) had the part's whole duration
    counted as the request's time on the loop."""
    def main():
        start_metering()
        yield from sleep(0)
        cost = Cost(current_kernel().clock)
        CURRENT_COST.set(cost)
        yield from sleep(0)  # the Cost is current when the step begins, as in a handler
        token = CURRENT_COST.set(None)
        yield from sleep(0.2)
        CURRENT_COST.reset(token)
        yield from sleep(0.01)
        cost.end()
        return cost

    cost = run_virtual(main())
    assert cost.cpu == 0.0  # the virtual clock stands still while tasks run
    assert cost.waits()["sleep"] >= 0.01


def test_fd_number_reused_after_close_does_not_keep_the_old_label():
    def body():
        start_metering()
        yield from sleep(0)
        left, right = socket.socketpair()
        old = Socket(left)
        number = old.fd
        label_fd(old, "upstream gone:80")
        old.close()
        right.close()
        a, b = socket.socketpair()
        reused, other = (a, b) if a.fileno() == number else (b, a)
        assert reused.fileno() == number
        cost = Cost(current_kernel().clock)
        CURRENT_COST.set(cost)

        def later():
            yield from sleep(0.01)
            other.send(b"x")

        yield from spawn(later())
        yield read_wait(reused.fileno())
        cost.end()
        a.close()
        b.close()
        return cost

    waits = run(body()).waits()
    assert "fd" in waits and "upstream gone:80" not in waits



def test_a_hedged_call_waits_under_a_documented_name(no_leaks):
    backend = Router()

    @backend.get("/slow")
    def slow(request):
        yield from sleep(0.1)
        return "ok"

    routes = Router()
    seen = []
    with serve_in_thread(backend) as upstream:
        client = Client(base_url=upstream.url)
        api = Upstream(client, hedge=Hedge(after=0.03))
        routes.on_shutdown(client.close)

        @routes.get("/hedged")
        def hedged(request):
            response = yield from api.get("/slow")
            seen.append(request.cost)
            return response.text

        config = ServerConfig(request_costs=True, access_log=False)
        with serve_in_thread(routes, config) as server:
            assert httpx.get(server.url + "/hedged", timeout=10).text == "ok"
    waits = seen[0].waits()
    assert f"upstream 127.0.0.1:{upstream.port}" in waits
    assert not any(name.startswith("_") for name in waits), waits
