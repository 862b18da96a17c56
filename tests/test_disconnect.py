"""A client that goes away cancels the work done for it: the handler and what
it started (outbound calls) are cancelled with "client disconnected", their
finally blocks run, a stream stops; pipelined requests are not mistaken for
a disconnect; a plain handler that answers at once needs no watcher."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

import pytest

from corofw import (
    Cancelled,
    Client,
    Event,
    Router,
    ServerConfig,
    StreamingResponse,
    current_kernel,
    current_time,
    move_on_after,
    sleep,
    spawn,
)
from corofw.net import listen, open_connection

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apps import fanout  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_leaks")

GET = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n"


def live_task_names() -> set[str]:
    return {task.name for task in current_kernel().tasks}


def wait_until(predicate, timeout: float = 2.0):
    """Let the kernel run until ``predicate()`` is true (or ``timeout`` passes)."""
    deadline = (yield from current_time()) + timeout
    while not predicate() and (yield from current_time()) < deadline:
        yield from sleep(0.005)
    return predicate()


def read_bodies(sock, count: int) -> list[bytes]:
    """The bodies of the next ``count`` responses (each with Content-Length)."""
    data = b""
    bodies = []
    while len(bodies) < count:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(rest) >= length:
                bodies.append(rest[:length])
                data = rest[length:]
                continue
        chunk = yield from sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    return bodies


def test_fanout_calls_end_when_the_client_goes_away(beside_server):
    """The issue's test: /fanout against a backend that would answer after
    10 s; the client closes after 0.1 s; the backend soon sees all ten
    connections closed, and no task is left of the request."""
    backend_listener = listen("127.0.0.1", 0)
    backend_url = f"http://127.0.0.1:{backend_listener.getsockname()[1]}"
    backend = Client(backend_url, timeout=fanout.DEFAULT_TIMEOUT)
    accepted = []
    closed_at = []
    all_called = Event()
    all_closed = Event()

    def hold(sock):
        """Read the request, never answer (as if it took 10 s), note the close."""
        while (yield from sock.recv(65536)):
            pass
        closed_at.append((yield from current_time()))
        sock.close()
        if len(closed_at) == fanout.CALLS:
            all_closed.set()

    def serve_backend():
        while True:
            sock, _ = yield from backend_listener.accept()
            accepted.append(sock)
            yield from spawn(hold(sock), "backend connection")
            if len(accepted) == fanout.CALLS:
                all_called.set()

    def client(port):
        backend_task = yield from spawn(serve_backend(), "backend")
        sock = yield from open_connection("127.0.0.1", port)
        yield from sock.send_all(b"GET /fanout?delay=10 HTTP/1.1\r\nHost: t\r\n\r\n")
        yield from all_called.wait()
        yield from sleep(0.1)
        gone = yield from current_time()
        sock.close()
        yield from move_on_after(5.0, all_closed.wait())
        request_tasks = {"client watcher", "call_backend", "backend connection"}
        settled = yield from wait_until(
            lambda: not any(name in request_tasks or name.startswith("connection ")
                            for name in live_task_names()))
        backend_task.cancel("test over")
        return gone, settled

    try:
        gone, settled = beside_server(fanout.make_routes(backend), client)
    finally:
        backend.close()
        backend_listener.close()
    assert len(closed_at) == fanout.CALLS, "the backend calls went on"
    assert max(closed_at) - gone < 0.5  # a few ms when the machine is not loaded
    assert settled, "tasks of the request were left behind"


def test_a_waiting_handler_is_cancelled_and_its_finally_runs(beside_server, caplog):
    caplog.set_level(logging.INFO, logger="corofw.access")
    seen = []
    app = Router()

    @app.get("/wait")
    def wait(request):
        try:
            yield from sleep(30)
        except Cancelled as exc:
            seen.append(exc.reason)
            raise
        finally:
            seen.append("finally")
        return "never"

    def client(port):
        sock = yield from open_connection("127.0.0.1", port)
        yield from sock.send_all(GET % b"/wait")
        yield from sleep(0.05)
        sock.close()
        return (yield from wait_until(lambda: "finally" in seen))

    assert beside_server(app, client, ServerConfig(graceful_timeout=2.0))
    assert seen == ["client disconnected", "finally"]
    assert any('"GET /wait HTTP/1.1" 499 0 ' in r.getMessage()
               and r.getMessage().endswith(" (client disconnected)") for r in caplog.records)


def test_a_reset_is_a_disconnect_too(beside_server):
    seen = []
    app = Router()

    @app.get("/wait")
    def wait(request):
        try:
            yield from sleep(30)
        finally:
            seen.append("finally")

    def client(port):
        sock = yield from open_connection("127.0.0.1", port)
        yield from sock.send_all(GET % b"/wait")
        yield from sleep(0.05)
        sock.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        sock.close()  # with a zero linger: RST instead of FIN
        return (yield from wait_until(lambda: seen == ["finally"]))

    assert beside_server(app, client)


def test_a_stream_stops_and_cleans_up_when_the_client_goes_away(beside_server):
    seen = []
    app = Router()

    @app.get("/ticks")
    def ticks(request):
        def body():
            try:
                for _ in range(3):
                    yield b"tick\n"
                yield from sleep(30)  # nothing more to send for a long while
            finally:
                seen.append("stream closed")
        return StreamingResponse(body(), content_type="text/plain")

    def client(port):
        sock = yield from open_connection("127.0.0.1", port)
        yield from sock.send_all(GET % b"/ticks")
        data = b""
        while data.count(b"tick") < 3:
            data += yield from sock.recv(65536)
        sock.close()
        return (yield from wait_until(lambda: seen == ["stream closed"]))

    assert beside_server(app, client)


def test_a_half_close_after_the_request_is_a_disconnect(beside_server):
    """As with uvicorn, aiohttp and Go: an end of file cannot tell a client
    that half-closed from one that closed, so a handler still waiting is
    cancelled and nothing is sent; a plain handler has answered already."""
    seen = []
    app = Router()

    @app.get("/wait")
    def wait(request):
        try:
            yield from sleep(0.2)
        finally:
            seen.append("finally")
        return "late"

    @app.get("/now")
    def now(request):
        return "at once"

    def client(port):
        answers = []
        for path in (b"/now", b"/wait"):
            sock = yield from open_connection("127.0.0.1", port)
            yield from sock.send_all(GET % path)
            sock.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := (yield from sock.recv(65536)):
                data += chunk
            sock.close()
            answers.append(data)
        return answers

    now_answer, wait_answer = beside_server(app, client)
    assert now_answer.startswith(b"HTTP/1.1 200 OK") and now_answer.endswith(b"at once")
    assert wait_answer == b""
    assert seen == ["finally"]


def test_pipelined_requests_during_a_handler_are_not_a_disconnect(beside_server):
    app = Router()

    @app.get("/slow/{n:int}")
    def slow(request, n):
        yield from sleep(0.05)
        return f"slow {n}"

    @app.get("/fast/{n:int}")
    def fast(request, n):
        return f"fast {n}"

    def client(port):
        sock = yield from open_connection("127.0.0.1", port)
        yield from sock.send_all(GET % b"/slow/1")
        yield from sleep(0.01)  # the handler is waiting now: the rest arrives meanwhile
        yield from sock.send_all(GET % b"/fast/2" + GET % b"/slow/3" + GET % b"/fast/4")
        bodies = yield from read_bodies(sock, 4)
        sock.close()
        return bodies

    assert beside_server(app, client) == [b"slow 1", b"fast 2", b"slow 3", b"fast 4"]


def test_only_a_handler_that_takes_a_while_is_watched(beside_server):
    """A plain handler is never watched, nor one that waits only briefly
    (the watcher starts a few ms into an answer); one that waits longer is,
    until its response is sent."""
    watched = {}
    app = Router()

    @app.get("/plain")
    def plain(request):
        watched["plain"] = "client watcher" in live_task_names()
        return "plain"

    @app.get("/quick")
    def quick(request):
        yield from sleep(0)
        watched["quick"] = "client watcher" in live_task_names()
        return "quick"

    @app.get("/slow")
    def slow(request):
        yield from sleep(0.05)
        watched["slow"] = "client watcher" in live_task_names()
        return "slow"

    def client(port):
        sock = yield from open_connection("127.0.0.1", port)
        for path in (b"/plain", b"/quick", b"/slow", b"/plain"):
            yield from sock.send_all(GET % path)
            yield from read_bodies(sock, 1)
        yield from sleep(0)
        left = "client watcher" in live_task_names()
        sock.close()
        return left

    assert beside_server(app, client) is False  # the watcher ends with its response
    assert watched["plain"] is False and watched["slow"] is True
