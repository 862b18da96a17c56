"""Server edge cases around max_connections and 100-continue: each test
states what a client relies on."""

from __future__ import annotations

import socket
import time

from live import RawClient, get

from corofw import HTTPError, Request, Response, Router, sleep
from corofw.http.server import ServerConfig
from corofw.testing import serve_in_thread


def make_app() -> Router:
    app = Router()

    @app.get("/")
    def index(request):
        return "Hello, World!"

    @app.get("/slow")
    def slow(request):
        yield from sleep(0.3)
        return "slow"

    @app.post("/upload")
    def upload(request):
        return f"route got {len(request.body)} bytes"

    @app.middleware
    def echo_outside_routes(request, call_next):
        if request.path == "/middleware-echo":  # answered here, no route has this path
            return Response(f"middleware got {len(request.body)} bytes")
        return (yield from call_next(request))

    return app


def wait_until(condition, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_no_503_once_the_connections_at_the_limit_have_closed(no_leaks):
    config = ServerConfig(max_connections=1, access_log=False)
    with serve_in_thread(make_app(), config) as server:
        with RawClient(server.port) as busy:
            busy.send(get("/slow"))
            time.sleep(0.1)
            with RawClient(server.port) as refused:
                assert refused.request("GET", "/").status == 503
            assert busy.response().body == b"slow"
        wait_until(lambda: not server.server.connections)  # nobody is connected now
        with RawClient(server.port) as later:
            assert later.request("GET", "/").status == 200


def _post_expecting_continue(port: int, path: str, body: bytes) -> bytes:
    """POST with Expect: 100-continue; the body is sent whatever the
    server answers first (as curl does after its wait); returns all the
    server sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
                     f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode())
        time.sleep(0.2)
        try:
            sock.sendall(body)
        except OSError:
            pass
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        return received


def test_expect_continue_to_a_route_gets_its_body(no_leaks):
    with serve_in_thread(make_app()) as server:
        received = _post_expecting_continue(server.port, "/upload", b"x" * 10)
    assert received.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert received.endswith(b"route got 10 bytes")


def test_expect_continue_to_a_path_middleware_answers_keeps_the_body(no_leaks):
    with serve_in_thread(make_app()) as server:
        received = _post_expecting_continue(server.port, "/middleware-echo", b"x" * 10)
    assert received.endswith(b"middleware got 10 bytes"), received


def test_expect_continue_to_a_path_an_error_handler_answers_keeps_the_body(no_leaks):
    app = Router()

    @app.error_handler(404)
    def not_found(request, exc):
        return f"404 handler got {len(request.body)} bytes", 404

    with serve_in_thread(app) as server:
        received = _post_expecting_continue(server.port, "/nowhere", b"x" * 10)
    assert received.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 ")
    assert received.endswith(b"404 handler got 10 bytes"), received


def _head(method: str, path: str) -> Request:
    return Request(method, path, headers={"expect": "100-continue", "content-length": "5"})


def test_router_accepts_a_miss_only_when_its_own_code_may_answer_it():
    plain = Router()
    plain.post("/upload")(lambda request: "ok")
    assert plain.accepts(_head("POST", "/upload"))
    assert not plain.accepts(_head("POST", "/nowhere"))  # 404 from the router alone
    assert not plain.accepts(_head("PUT", "/upload"))  # 405 from the router alone

    plain.error_handler(ValueError)(lambda request, exc: "never sees an HTTPError")
    assert not plain.accepts(_head("POST", "/nowhere"))

    for register in (lambda router: router.middleware(_passing),
                     lambda router: router.error_handler(405)(_answer),
                     lambda router: router.error_handler(HTTPError)(_answer)):
        root, inner = Router(), Router()
        root.mount("/api", inner)
        assert not root.accepts(_head("POST", "/api/nowhere"))
        register(inner)  # a mounted router's code may answer too
        assert root.accepts(_head("POST", "/api/nowhere"))
        assert root.accepts(_head("PUT", "/elsewhere"))


def _passing(request, call_next):
    return (yield from call_next(request))


def _answer(request, exc):
    return "answered", exc.status
