"""corofw.testing: serve_in_thread leaves nothing behind; run_virtual."""

from __future__ import annotations

import gc
import os
import threading
import time

import httpx
import pytest
from live import RawClient, get

from corofw import sleep
from corofw.http.server import ServerConfig
from corofw.testing import run_virtual, serve_in_thread


def fd_count() -> int:
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def counts():
    """Fail unless the test leaves as many fds and threads as it found."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    before = (fd_count(), threading.active_count())
    yield
    assert (fd_count(), threading.active_count()) == before


def test_serve_in_thread_leaves_no_thread_or_fd(counts, server_app):
    with serve_in_thread(server_app) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.host == "127.0.0.1"
        with httpx.Client() as client:
            for _ in range(3):
                assert client.get(server.url + "/").text == "Hello, World!"
        assert server.server is not None
        served = server.server
        deadline = time.monotonic() + 2.0  # counted just after the send, in the server's thread
        while served.requests_served < 3 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert served.requests_served == 3
        assert threading.active_count() >= 2


def test_open_client_connections_do_not_keep_it_alive(counts, server_app):
    clients: list[RawClient] = []
    started = time.monotonic()
    try:
        with serve_in_thread(server_app) as server:
            idle = RawClient(server.port)
            clients.append(idle)
            assert idle.request("GET", "/").status == 200
            half = RawClient(server.port)  # a request head that never completes
            clients.append(half)
            half.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
            fresh = RawClient(server.port)  # connected, nothing sent
            clients.append(fresh)
            time.sleep(0.05)
        assert time.monotonic() - started < 3.0
        for client in clients:
            assert client.is_closed()
    finally:
        for client in clients:
            client.close()


def test_exception_in_block_still_stops_server(counts, server_app):
    with pytest.raises(ZeroDivisionError), serve_in_thread(server_app) as server:
        port = server.port
        1 / 0  # noqa: B018
    with pytest.raises(OSError):
        RawClient(port, timeout=2)


def test_app_that_cannot_be_served_raises_at_once(counts):
    with pytest.raises(TypeError, match="handle"), serve_in_thread(object()):
        pass


def test_two_servers_at_once(counts, server_app):
    with serve_in_thread(server_app) as one, serve_in_thread(server_app) as two:
        assert one.port != two.port
        assert httpx.get(one.url + "/").text == httpx.get(two.url + "/").text == "Hello, World!"


def test_request_in_flight_finishes_before_block_exits(counts, server_app):
    raw = None
    try:
        with serve_in_thread(server_app, ServerConfig(access_log=False)) as server:
            raw = RawClient(server.port)
            raw.send(get("/sleep/0.3"))
            time.sleep(0.05)
        response = raw.response()
        assert response.body == b"done"
        assert response.headers["connection"] == "close"
    finally:
        if raw is not None:
            raw.close()


def test_run_virtual_takes_no_real_time():
    def main():
        yield from sleep(3600)
        return "an hour later"

    started = time.monotonic()
    assert run_virtual(main()) == "an hour later"
    assert time.monotonic() - started < 1.0
