"""The HTTP server against a live socket, driven with httpx (malformed input
and byte-level checks are in test_server_raw.py)."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time

import httpx
import pytest
from live import RawClient, get

from apps.hello import routes as hello_routes
from corofw import Router
from corofw.http.parser import Limits, RequestParser
from corofw.http.server import ServerConfig
from corofw.testing import serve_in_thread

# -- apps/hello.py ------------------------------------------------------------------

def test_hello_app(fast_config):
    with serve_in_thread(hello_routes, fast_config()) as server, httpx.Client() as client:
        r = client.get(server.url + "/")
        assert r.status_code == 200
        assert r.text == "Hello, World!"
        assert r.headers["content-type"].startswith("text/plain")
        assert r.headers["content-length"] == "13"
        assert "date" in r.headers

        payload = bytes(range(256)) * 100
        r = client.post(server.url + "/echo", content=payload,
                        headers={"content-type": "application/x-test"})
        assert r.status_code == 200
        assert r.content == payload
        assert r.headers["content-type"] == "application/x-test"

        started = time.monotonic()
        r = client.get(server.url + "/slow")
        assert r.status_code == 200
        assert r.text == "slow\n"
        assert time.monotonic() - started >= 0.45

        assert client.get(server.url + "/nowhere").status_code == 404
        assert client.delete(server.url + "/").status_code == 405
        served = server.server
        deadline = time.monotonic() + 2.0  # counted just after the send, in the server's thread
        while served.requests_served < 5 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert served.requests_served == 5


def test_chunked_request_body(fast_config):
    def parts():
        for i in range(5):
            yield f"piece{i};".encode()

    with serve_in_thread(hello_routes, fast_config()) as server, httpx.Client() as client:
        r = client.post(server.url + "/echo", content=parts())
        assert r.status_code == 200
        assert r.content == b"piece0;piece1;piece2;piece3;piece4;"


def test_head_sends_headers_of_get_without_body(fast_config):
    with serve_in_thread(hello_routes, fast_config()) as server, httpx.Client() as client:
        r = client.head(server.url + "/")
        assert r.status_code == 200
        assert r.headers["content-length"] == "13"
        assert r.content == b""
        assert client.get(server.url + "/").text == "Hello, World!"


def test_slow_requests_overlap(fast_config):
    with serve_in_thread(hello_routes, fast_config()) as server:
        results: list[int] = []

        def fetch():
            results.append(httpx.get(server.url + "/slow", timeout=10).status_code)

        threads = [threading.Thread(target=fetch) for _ in range(8)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200] * 8
        assert time.monotonic() - started < 3.0  # 8 x 0.5 s one after another would be 4 s


def test_router_accepts_tells_which_requests_a_route_takes():
    """What the server asks before it sends ``100 Continue``."""
    app = Router()
    app.post("/upload")(lambda request: "ok")
    app.put("/items/{item_id:int}")(lambda request, item_id: "ok")
    api = Router()
    api.post("/files/{name}")(lambda request, name: "ok")
    app.mount("/api", api)

    def head(method: str, path: str):
        parser = RequestParser()
        parser.feed(f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n".encode())
        assert parser.next_request() is None
        return parser.awaiting_body

    assert app.accepts(head("POST", "/upload"))
    assert app.accepts(head("PUT", "/items/7"))
    assert app.accepts(head("POST", "/api/files/a.txt"))
    assert not app.accepts(head("POST", "/nowhere"))
    assert not app.accepts(head("PUT", "/upload"))  # 405
    assert not app.accepts(head("PUT", "/items/seven"))  # the converter refuses it
    assert not app.accepts(head("GET", "/api/files/a.txt"))


def test_server_config_refuses_values_it_cannot_run_with():
    for bad in ({"keep_alive_timeout": float("nan")}, {"send_timeout": 0},
                {"graceful_timeout": float("inf")}, {"watchdog": -1.0},
                {"header_timeout": "10"}, {"max_connections": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ServerConfig(**bad)
    with pytest.raises(ValueError, match="max_body_bytes"):
        Limits(max_body_bytes=-1)
    assert ServerConfig(graceful_timeout=0, watchdog=None).graceful_timeout == 0


# -- handler errors ---------------------------------------------------------------------

def test_handler_exception_is_500_logged_and_server_keeps_serving(server_app, caplog, fast_config):
    caplog.set_level(logging.ERROR, logger="corofw.server")
    with serve_in_thread(server_app, fast_config()) as server, httpx.Client() as client:
        r = client.get(server.url + "/boom")
        assert r.status_code == 500
        assert "exploded" not in r.text  # no details leak to the client
        # the same connection serves the next request...
        assert client.get(server.url + "/").text == "Hello, World!"
        # ...and so does a new one
        assert httpx.get(server.url + "/").text == "Hello, World!"
        r = client.get(server.url + "/gen-boom")
        assert r.status_code == 500
    records = [r for r in caplog.records if r.name == "corofw.server"]
    assert len(records) == 2
    assert "GET /boom" in records[0].getMessage()
    assert records[0].exc_info and records[0].exc_info[0] is RuntimeError
    assert "the handler exploded" in caplog.text
    assert "Traceback" in caplog.text
    assert records[1].exc_info and records[1].exc_info[0] is KeyError


@pytest.mark.parametrize(("path", "handler", "type_name"), [
    ("/none", "returns_none", "NoneType"),
    ("/number", "returns_number", "int"),
])
def test_unusable_return_value_is_500_naming_handler_and_type(server_app,
                                                              caplog,
                                                              path,
                                                              handler,
                                                              type_name,
                                                              fast_config):
    caplog.set_level(logging.ERROR, logger="corofw.server")
    with serve_in_thread(server_app, fast_config()) as server, httpx.Client() as client:
        r = client.get(server.url + path)
        assert r.status_code == 500
        assert client.get(server.url + "/").status_code == 200
    assert handler in caplog.text
    assert type_name in caplog.text


def test_invalid_response_header_is_500_never_injected(server_app, caplog, fast_config):
    caplog.set_level(logging.ERROR, logger="corofw.server")
    with serve_in_thread(server_app, fast_config()) as server, httpx.Client() as client:
        r = client.get(server.url + "/bad-header")
        assert r.status_code == 500
        assert "set-cookie" not in r.headers
        assert client.get(server.url + "/").status_code == 200
    assert "x-evil" in caplog.text


# -- streaming ------------------------------------------------------------------------

def test_streaming_response_is_chunked_for_http11(server_app, fast_config):
    with serve_in_thread(server_app, fast_config()) as server, httpx.Client() as client:
        r = client.get(server.url + "/stream")
        assert r.status_code == 200
        assert r.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in r.headers
        assert r.text == "part0;part1;part2;"
        assert client.get(server.url + "/").text == "Hello, World!"  # still keep-alive


def test_streaming_chunks_are_sent_as_they_are_produced(server_app, fast_config):
    with serve_in_thread(server_app, fast_config()) as server, httpx.Client() as client, \
            client.stream("GET", server.url + "/gated-stream") as r:
        chunks = r.iter_raw()
        assert next(chunks) == b"first;"  # while the body still waits for /release
        assert httpx.get(server.url + "/release").text == "released"
        assert b"".join(chunks) == b"second"


def test_streaming_body_that_fails_midway_closes_the_connection(server_app, caplog, fast_config):
    caplog.set_level(logging.ERROR, logger="corofw.server")
    with serve_in_thread(server_app, fast_config()) as server:
        with RawClient(server.port) as raw:
            raw.send(get("/broken-stream"))
            status, _, headers = raw.read_head()
            assert status == 200
            # no last chunk (nor anything else): the client sees the failure
            assert raw.read_until_close() == b"7\r\npartial\r\n"
        assert httpx.get(server.url + "/").text == "Hello, World!"
    assert "stream broke" in caplog.text


# -- access log -----------------------------------------------------------------------------

def test_access_log_one_line_per_request(server_app, caplog, fast_config):
    caplog.set_level(logging.INFO, logger="corofw.access")
    with serve_in_thread(server_app, fast_config(access_log=True)) as server, \
            httpx.Client() as client:
        client.get(server.url + "/")
        client.get(server.url + "/nowhere?x=1")
        client.get(server.url + "/boom")
    lines = [r.getMessage() for r in caplog.records if r.name == "corofw.access"]
    assert len(lines) == 3
    assert '"GET / HTTP/1.1" 200 13' in lines[0]
    assert '"GET /nowhere?x=1 HTTP/1.1" 404' in lines[1]
    assert '"GET /boom HTTP/1.1" 500' in lines[2]
    assert lines[0].startswith("127.0.0.1:")


def test_access_log_includes_failed_responses(server_app, caplog, fast_config):
    caplog.set_level(logging.INFO, logger="corofw.access")
    with serve_in_thread(server_app, fast_config(access_log=True)) as server:
        with httpx.Client() as client:
            assert client.get(server.url + "/bad-header").status_code == 500
            assert client.get(server.url + "/stream").text == "part0;part1;part2;"
        with RawClient(server.port) as raw:
            raw.send(get("/broken-stream"))
            raw.read_until_close()
        with RawClient(server.port) as raw:
            raw.send(get("/endless-stream"))
            raw.read_head()
        deadline = time.monotonic() + 5  # the server notices the client has gone
        while "endless" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
    lines = [r.getMessage() for r in caplog.records if r.name == "corofw.access"]
    assert len(lines) == 4, lines
    # the duration and request id (see tests/test_access_log.py) are left out here
    lines = [re.sub(r" [0-9.]+ms \S+", "", line) for line in lines]
    assert lines[0].endswith('"GET /bad-header HTTP/1.1" 500 22 (invalid response)')
    assert lines[1].endswith('"GET /stream HTTP/1.1" 200 18')  # body bytes of a stream
    assert lines[2].endswith('"GET /broken-stream HTTP/1.1" 200 7 '
                             '(incomplete: the stream raised ValueError)')
    assert '"GET /endless-stream HTTP/1.1" 200 ' in lines[3]
    # a write that fails, or the watcher's end of file first: either says why
    assert lines[3].endswith(")")
    assert "(incomplete: connection lost" in lines[3] \
        or lines[3].endswith("(incomplete: client disconnected)")


def test_access_log_brackets_ipv6_clients(server_app, caplog, fast_config):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    caplog.set_level(logging.INFO, logger="corofw.access")
    with serve_in_thread(server_app, fast_config(access_log=True), host="::1") as server:
        assert server.url == f"http://[::1]:{server.port}"
        assert httpx.get(server.url + "/").text == "Hello, World!"
    lines = [r.getMessage() for r in caplog.records if r.name == "corofw.access"]
    assert lines[0].startswith("[::1]:")
    assert '"GET / HTTP/1.1" 200 13' in lines[0]


def test_no_access_log_when_disabled(server_app, caplog, fast_config):
    caplog.set_level(logging.DEBUG)
    with serve_in_thread(server_app, fast_config(access_log=False)) as server, \
            httpx.Client() as client:
        client.get(server.url + "/")
        client.get(server.url + "/boom")
    assert not [r for r in caplog.records if r.name == "corofw.access"]


# -- large responses and backpressure ------------------------------------------------------------

def test_large_response_to_slow_reader_arrives_intact(server_app, fast_config):
    size = 8 << 20
    expected = bytes(range(256)) * (size // 256)
    # The whole transfer takes longer than send_timeout: the timeout is for
    # a client that stops reading, not for one that reads slowly. (Not much
    # shorter: the socket turns writable only once a third of the server's
    # send buffer, up to megabytes, is free again.)
    with serve_in_thread(server_app, fast_config(send_timeout=1.0)) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", server.port))
        try:
            sock.sendall(get(f"/big/{size}", "Connection: close\r\n"))
            started = time.monotonic()
            received = bytearray()
            while True:
                data = sock.recv(64 * 1024)
                if not data:
                    break
                received += data
                time.sleep(0.015)
            assert time.monotonic() - started > 1.2
        finally:
            sock.close()
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert f"content-length: {size}".encode() in head
        assert body == expected


def test_send_timeout_drops_client_that_never_reads(server_app, caplog, fast_config):
    caplog.set_level(logging.DEBUG, logger="corofw.server")
    # long idle and header timeouts: the short send timeout must win anyway
    slow_config = fast_config(send_timeout=0.3, keep_alive_timeout=30.0, header_timeout=30.0)
    with serve_in_thread(server_app, slow_config) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.connect(("127.0.0.1", server.port))
        try:
            sock.sendall(get("/big/8388608"))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                # meanwhile others are served
                assert httpx.get(server.url + "/", timeout=5).text == "Hello, World!"
                if not server.server.connections:
                    break
                time.sleep(0.05)
            assert not server.server.connections
            assert time.monotonic() - deadline + 10 < 5.0
            # the stalled client finds its connection closed, its response cut short
            sock.settimeout(5)
            received = 0
            try:
                while data := sock.recv(1 << 20):
                    received += len(data)
            except ConnectionResetError:
                pass
            assert received < 8 << 20
        finally:
            sock.close()
    assert "send timeout" in caplog.text


# -- graceful shutdown ---------------------------------------------------------------------

def test_graceful_shutdown_finishes_request_in_flight(server_app, fast_config):
    clients: list[RawClient] = []
    try:
        with serve_in_thread(server_app, fast_config(graceful_timeout=5.0)) as server:
            port = server.port
            idle = RawClient(port)
            in_flight = RawClient(port)
            clients += [idle, in_flight]
            assert idle.request("GET", "/").status == 200
            in_flight.send(get("/sleep/0.5"))
            time.sleep(0.1)  # the request is being handled
            started = time.monotonic()
        # leaving the block has stopped the server, after the request finished
        assert 0.2 < time.monotonic() - started < 5.0
        response = in_flight.response()
        assert response.status == 200
        assert response.body == b"done"
        assert response.headers["connection"] == "close"
        assert in_flight.is_closed()
        assert idle.is_closed(timeout=0.1)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        for client in clients:
            client.close()


def test_shutdown_grace_period_cancels_long_request(server_app, caplog, fast_config):
    caplog.set_level(logging.WARNING, logger="corofw.server")
    with serve_in_thread(server_app, fast_config(graceful_timeout=0.2)) as server:
        client = RawClient(server.port)
        client.send(get("/sleep/30"))
        time.sleep(0.1)
        started = time.monotonic()
    try:
        assert time.monotonic() - started < 3.0
        assert client.read_until_close() == b""  # cancelled: no response, connection closed
    finally:
        client.close()
    assert "grace period over" in caplog.text
