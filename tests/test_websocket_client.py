"""The WebSocket client against another implementation's server (the
``websockets`` package, its threaded server on 127.0.0.1 port 0): text and
binary messages, subprotocols, permessage-deflate, pings answered and
sent, the close handshake both ways, broken connections, limits, timeouts,
TLS, the handshake's headers, and a proxy's tunnel."""

from __future__ import annotations

import contextlib
import os
import threading
import time

import pytest
from proxy_server import ProxyServer
from raw_server import RawServer

from corofw import (
    Client,
    ReadTimeout,
    Router,
    WebSocketClosed,
    WebSocketHandshakeError,
    run,
    spawn,
)
from corofw.testing import serve_in_thread
from corofw.ws.handshake import accept_key

websockets = pytest.importorskip("websockets")
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.server import serve  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_leaks")


@contextlib.contextmanager
def ws_server(handler, **options):
    """A ``websockets`` server in a thread; yields its ws:// URL and a dict
    the handler can fill in (``seen``)."""
    seen = {}
    finished: list[threading.Event] = []
    options.setdefault("ping_interval", None)

    def wrapped(connection):
        done = threading.Event()
        finished.append(done)
        try:
            handler(connection, seen)
        except ConnectionClosed:
            pass
        finally:
            # what the server received in the client's close frame, if any
            seen["closed"] = connection.close_code, connection.close_reason
            done.set()

    server = serve(wrapped, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, name="websockets-server")
    thread.start()
    try:
        scheme = "wss" if options.get("ssl") else "ws"
        yield f"{scheme}://localhost:{server.socket.getsockname()[1]}", seen
    finally:
        for done in finished:
            done.wait(5)  # each handler has run to its end
        server.shutdown()
        thread.join(10)
        for end in (getattr(server, "shutdown_watcher", None),
                    getattr(server, "shutdown_notifier", None)):
            if isinstance(end, int):
                os.close(end)  # websockets before 17 (Python 3.10) never closes its pipe


def echo(connection, seen):
    seen["request_headers"] = dict(connection.request.headers.raw_items())
    seen["subprotocol"] = connection.subprotocol
    for message in connection:
        connection.send(message)


def go(make, **options):
    def main():
        with Client(**options) as client:
            return (yield from make(client))

    return run(main())


def test_text_and_binary_messages_round_trip():
    with ws_server(echo) as (url, seen):
        def make(client):
            ws = yield from client.websocket(url + "/echo")
            yield from ws.send("h\u00e9llo")
            text = yield from ws.receive()
            yield from ws.send(b"\x00\x01\xff")
            data = yield from ws.receive()
            yield from ws.send(b"x" * 500_000)
            big = yield from ws.receive()
            yield from ws.close()
            return text, data, big, ws.closed, ws.close_code

        text, data, big, closed, code = go(make)
    assert text == "h\u00e9llo" and data == b"\x00\x01\xff" and big == b"x" * 500_000
    assert closed and code == 1000
    assert seen["closed"] == (1000, "")


def test_the_handshake_carries_the_clients_headers_and_credentials():
    with ws_server(echo, subprotocols=["v2", "v1"]) as (url, seen):
        def make(client):
            ws = yield from client.websocket(url + "/echo?room=1", subprotocols=["v1", "v2"],
                                             headers={"X-Team": "blue"}, origin="http://a.b")
            chosen = ws.subprotocol
            yield from ws.close()
            return chosen

        chosen = go(make, auth=("u", "p"), headers={"X-Client": "c"})
    headers = {k.lower(): v for k, v in seen["request_headers"].items()}
    assert chosen == seen["subprotocol"] == "v2"  # the server's preference among those offered
    assert headers["x-team"] == "blue" and headers["x-client"] == "c"
    assert headers["authorization"].startswith("Basic ") and headers["origin"] == "http://a.b"
    assert headers["upgrade"] == "websocket" and headers["sec-websocket-version"] == "13"
    assert headers["sec-websocket-protocol"] == "v1, v2"


def test_permessage_deflate_when_offered():
    with ws_server(echo) as (url, seen):
        def make(client):
            ws = yield from client.websocket(url, deflate=True)
            yield from ws.send("compress me " * 1000)
            reply = yield from ws.receive()
            yield from ws.close()
            return reply

        assert go(make) == "compress me " * 1000
    assert "permessage-deflate" in {k.lower(): v for k, v in
                                    seen["request_headers"].items()}["sec-websocket-extensions"]


def test_the_servers_pings_are_answered_while_receiving():
    def handler(connection, seen):
        pong = connection.ping(b"are you there")
        seen["answered"] = pong.wait(5)
        connection.send("after the ping")
        connection.recv()

    with ws_server(handler) as (url, seen):
        def make(client):
            ws = yield from client.websocket(url)
            message = yield from ws.receive()
            yield from ws.close()
            return message

        assert go(make) == "after the ping"
    assert seen["answered"] is True


def test_a_ping_waits_for_its_pong_and_keeps_what_came_meanwhile():
    def handler(connection, seen):
        connection.send("first")
        for message in connection:
            connection.send(message)

    with ws_server(handler) as (url, _):
        def make(client):
            ws = yield from client.websocket(url)
            rtt = yield from ws.ping(b"p1", timeout=5)
            first = yield from ws.receive()
            yield from ws.close()
            return rtt, first

        rtt, first = go(make)
    assert 0 <= rtt < 5 and first == "first"


def test_a_close_from_the_server_is_answered_and_reported():
    def handler(connection, seen):
        connection.send("bye soon")
        connection.close(4001, "going")

    with ws_server(handler) as (url, _):
        def make(client):
            ws = yield from client.websocket(url)
            first = yield from ws.receive()
            try:
                yield from ws.receive()
            except WebSocketClosed as exc:
                error = exc
            try:
                yield from ws.send("too late")
            except WebSocketClosed as exc:
                late = exc
            return first, error, late, ws.closed

        first, error, late, closed = go(make)
    assert first == "bye soon" and closed
    assert (error.code, error.reason) == (4001, "going") and late.code == 4001


def accept(server, conn, then=b""):
    """Answer a raw connection's upgrade request with a 101, then ``then``."""
    request = server.read_request(conn)
    key = [line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
           if line.lower().startswith(b"sec-websocket-key")][0]
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                 + accept_key(key.decode()).encode() + b"\r\n\r\n" + then)


def test_closing_waits_for_the_servers_close_frame_at_most_close_timeout():
    with RawServer(lambda server, conn, index: (accept(server, conn),
                                                server.wait_for_eof(conn))) as srv:
        def make(client):
            ws = yield from client.websocket(f"ws://127.0.0.1:{srv.port}/", close_timeout=0.2)
            started = time.monotonic()
            yield from ws.close(4000, "done")
            return time.monotonic() - started, ws.closed

        took, closed = go(make)
    assert closed and 0.15 < took < 2


def test_a_connection_that_just_ends_is_1006():
    def handler(server, conn, index):
        accept(server, conn, b"\x81\x02hi")

    with RawServer(handler) as srv:
        def make(client):
            ws = yield from client.websocket(f"ws://127.0.0.1:{srv.port}/")
            first = yield from ws.receive()  # the frame that came with the 101
            with pytest.raises(WebSocketClosed) as caught:
                yield from ws.receive()
            return first, caught.value.code

        assert go(make) == ("hi", 1006)


def test_a_message_over_the_limit_closes_with_1009():
    def handler(connection, seen):
        connection.send(b"y" * 2000)
        with contextlib.suppress(ConnectionClosed):
            connection.recv()

    with ws_server(handler) as (url, seen):
        def make(client):
            ws = yield from client.websocket(url, max_message_size=1000)
            with pytest.raises(WebSocketClosed) as caught:
                yield from ws.receive()
            return caught.value.code

        assert go(make) == 1009
    assert seen["closed"][0] == 1009


def test_receive_times_out_and_the_websocket_stays_open():
    def handler(connection, seen):
        time.sleep(0.3)
        connection.send("late")
        connection.recv()

    with ws_server(handler) as (url, _):
        def make(client):
            ws = yield from client.websocket(url)
            with pytest.raises(ReadTimeout):
                yield from ws.receive(timeout=0.05)
            message = yield from ws.receive(timeout=5)
            yield from ws.close()
            return message

        assert go(make) == "late"


def test_one_task_receives_while_another_sends():
    with ws_server(echo) as (url, _):
        def make(client):
            ws = yield from client.websocket(url)

            def sender():
                for i in range(20):
                    yield from ws.send(f"m{i}")

            task = yield from spawn(sender())
            got = []
            for _ in range(20):
                got.append((yield from ws.receive()))
            yield from task.join()
            yield from ws.close()
            return got

        assert go(make) == [f"m{i}" for i in range(20)]


def test_a_refused_upgrade_is_a_handshake_error():
    app = Router()

    @app.get("/")
    def index(request):
        return "not a websocket"

    with serve_in_thread(app) as srv:
        def make(client):
            return (yield from client.websocket(srv.url.replace("http", "ws") + "/nope"))

        with pytest.raises(WebSocketHandshakeError) as caught:
            go(make)
    assert caught.value.status == 404


def test_a_server_that_never_answers_the_handshake_times_out():
    with RawServer(lambda server, conn, index: server.wait_for_eof(conn)) as srv:
        def make(client):
            return (yield from client.websocket(f"ws://127.0.0.1:{srv.port}/"))

        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            go(make, timeout=0.3)
    assert time.monotonic() - started < 3


def test_wss_with_the_clients_tls_settings(tls_server_context, tls_client_context):
    with ws_server(echo, ssl=tls_server_context) as (url, _):
        def make(client):
            ws = yield from client.websocket(url)
            yield from ws.send("secret")
            reply = yield from ws.receive()
            yield from ws.close()
            return reply

        assert go(make, ssl_context=tls_client_context) == "secret"


def test_through_a_proxys_tunnel():
    with ws_server(echo) as (url, _), ProxyServer() as proxy:
        def make(client):
            ws = yield from client.websocket(url + "/via")
            yield from ws.send("tunnelled")
            reply = yield from ws.receive()
            yield from ws.close()
            return reply

        assert go(make, proxy=proxy.url) == "tunnelled"
    port = url.rsplit(":", 1)[1]
    assert [line for line, _ in proxy.seen] == [f"CONNECT localhost:{port} HTTP/1.1"]
