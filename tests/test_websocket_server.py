"""WebSocket routes on corofw's server, driven by corofw's client and by
another implementation's (the ``websockets`` package): messages both ways,
path parameters, subprotocols, permessage-deflate, the close handshake
from either side, a failing handler, refused handshakes, frames that
arrive with the handshake, middleware headers on the 101, and shutdown."""

from __future__ import annotations

import base64
import os
import socket
import sys
import threading
import time

import pytest

from corofw import (
    Client,
    Router,
    ServerConfig,
    WebSocketClosed,
    WebSocketHandshakeError,
    run,
)
from corofw.testing import serve_in_thread
from corofw.web.websocket import websocket_endpoint
from corofw.ws.handshake import accept_key

websockets = pytest.importorskip("websockets")
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_leaks")

app = Router()
seen: dict[str, object] = {}


@app.websocket("/echo")
def echo(ws):
    while True:
        message = yield from ws.receive()
        yield from ws.send(message)


@app.websocket("/rooms/{room}", subprotocols=["chat.v2", "chat.v1"])
def room(ws, room):
    yield from ws.send(f"{room} via {ws.subprotocol} for {ws.request.query.get('who')}")


@app.websocket("/fails")
def fails(ws):
    yield from ws.send("about to fail")
    raise RuntimeError("handler bug")


@app.websocket("/listen")
def listen(ws):
    try:
        yield from ws.receive()
    except WebSocketClosed as closed:
        seen["client closed"] = (closed.code, ws.close_reason)
        raise


@app.websocket("/forever")
def forever(ws):
    yield from ws.send("open")
    while True:
        yield from ws.receive()


@app.websocket("/only-here", origins=["https://app.example"])
def only_here(ws):
    yield from ws.send("welcome")


@app.get("/plain")
def plain(request):
    return "still serving"


def cookie_on_upgrade(request, call_next):
    response = yield from call_next(request)
    response.set_cookie("seen", "1")
    return response


app.middleware(cookie_on_upgrade)


@pytest.fixture(scope="module")
def server():
    with serve_in_thread(app) as running:
        yield running


def ws_url(server, path):
    return f"ws://127.0.0.1:{server.port}{path}"


def drive(make_coro):
    def main():
        client = Client()
        try:
            return (yield from make_coro(client))
        finally:
            client.close()

    return run(main())


def test_messages_go_both_ways(server):
    def go(client):
        ws = yield from client.websocket(ws_url(server, "/echo"))
        replies = []
        for message in ("h\u00e9llo", b"\x00\xffbytes", "x" * 100_000):
            yield from ws.send(message)
            replies.append((yield from ws.receive()))
        yield from ws.close()
        return replies, ws.close_code

    replies, code = drive(go)
    assert replies == ["h\u00e9llo", b"\x00\xffbytes", "x" * 100_000]
    assert code == 1000


def test_path_parameters_subprotocol_and_the_request(server):
    def go(client):
        ws = yield from client.websocket(ws_url(server, "/rooms/kitchen?who=ann"),
                                         subprotocols=["chat.v1", "chat.v2"])
        text = yield from ws.receive()
        try:
            yield from ws.receive()
        except WebSocketClosed as closed:
            return text, ws.subprotocol, closed.code

    assert drive(go) == ("kitchen via chat.v2 for ann", "chat.v2", 1000)


def test_another_client_with_permessage_deflate(server):
    with connect(ws_url(server, "/echo"), compression="deflate") as ws:
        assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        ws.send("compressible " * 1000)
        assert ws.recv() == "compressible " * 1000
        ws.send(b"\x01\x02")
        assert ws.recv() == b"\x01\x02"
        ws.ping(b"are you there").wait(5)


def test_a_handler_that_fails_closes_with_1011_and_the_server_goes_on(server, caplog):
    with connect(ws_url(server, "/fails")) as ws:
        assert ws.recv() == "about to fail"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()
    assert closed.value.rcvd.code == 1011
    assert "handler bug" in caplog.text
    import httpx

    assert httpx.get(f"http://127.0.0.1:{server.port}/plain").text == "still serving"


def test_the_handler_sees_the_client_close(server):
    seen.clear()
    with connect(ws_url(server, "/listen")) as ws:
        ws.close(4000, "done here")
    for _ in range(200):
        if "client closed" in seen:
            break
        threading.Event().wait(0.01)
    assert seen["client closed"] == (4000, "done here")


@pytest.mark.parametrize("headers, status", [
    ({}, 426),
    ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "8",
      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, 426),
    ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": "short"}, 400),
])
def test_a_request_that_is_not_a_valid_handshake_gets_http(server, headers, status):
    import httpx

    response = httpx.get(f"http://127.0.0.1:{server.port}/echo", headers=headers)
    assert response.status_code == status
    assert httpx.get(f"http://127.0.0.1:{server.port}/plain").text == "still serving"


def test_an_origin_not_allowed_is_refused(server):
    def go(client, origin):
        try:
            ws = yield from client.websocket(ws_url(server, "/only-here"), origin=origin)
        except WebSocketHandshakeError as exc:
            return exc.status
        text = yield from ws.receive()
        yield from ws.close()
        return text

    assert drive(lambda client: go(client, "https://evil.example")) == 403
    assert drive(lambda client: go(client, "https://app.example")) == "welcome"


def test_middleware_headers_go_in_the_101(server):
    with connect(ws_url(server, "/echo")) as ws:
        assert ws.response.status_code == 101
        assert ws.response.headers["Set-Cookie"].startswith("seen=1")


def test_a_frame_sent_with_the_handshake_is_received():
    key = base64.b64encode(os.urandom(16)).decode()
    mask = os.urandom(4)
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"early"))
    frame = bytes([0x81, 0x80 | 5]) + mask + payload
    with serve_in_thread(app) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall((f"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                      f"Sec-WebSocket-Key: {key}\r\n\r\n").encode() + frame)
        received = b""
        while not received.endswith(b"early"):
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
    head, _, echoed = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert f"Sec-WebSocket-Accept: {accept_key(key)}".encode() in head
    assert echoed == b"\x81\x05early"


def test_shutdown_tells_an_open_websocket_going_away_without_waiting_for_it():
    serving = serve_in_thread(app, ServerConfig(access_log=False, graceful_timeout=5))
    server = serving.__enter__()
    try:
        with connect(ws_url(server, "/forever"), close_timeout=5) as ws:
            assert ws.recv() == "open"
            started = time.monotonic()
            serving.__exit__(None, None, None)
            stopped_in = time.monotonic() - started
            serving = None
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv()
    finally:
        if serving is not None:
            serving.__exit__(None, None, None)
    assert closed.value.rcvd.code == 1001
    assert stopped_in < 3.0  # the grace period (5 s) is not waited out


def test_bad_options_are_refused_when_the_route_is_made():
    with pytest.raises(ValueError, match="max_message_size"):
        websocket_endpoint(echo, max_message_size=0)
    with pytest.raises(ValueError, match="close_timeout"):
        websocket_endpoint(echo, close_timeout=float("nan"))
    with pytest.raises(TypeError):
        websocket_endpoint("not a function")


def _open_raw(port: int, path: str) -> tuple[socket.socket, bytes]:
    """A WebSocket opened by hand, and what followed the 101's head."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nCookie: a=1\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock, head.partition(b"\r\n\r\n")[2]


def test_an_idle_websocket_keeps_little_memory():
    """What the server keeps for an idle WebSocket: no empty wait queues
    or message deques, no HTTP parser, no decoded copy of the upgrade
    request's headers, no handshake (about 13 KB of Python heap each
    before; an idle aiohttp WebSocket takes about 13.6 KB of RSS)."""
    import gc
    import tracemalloc

    count = 200
    with serve_in_thread(app) as server:
        warm = [_open_raw(server.port, "/forever")[0] for _ in range(5)]
        for sock in warm:
            sock.close()
        time.sleep(0.3)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            socks = [_open_raw(server.port, "/forever")[0] for _ in range(count)]
            time.sleep(0.5)  # every session has sent "open" and waits to receive
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        per_websocket = sum(stat.size_diff for stat in after.compare_to(before, "lineno")) / count
        for sock in socks:
            sock.close()
    limit = 8_000 if sys.version_info >= (3, 11) else 11_000  # 3.10's frames are larger
    assert per_websocket < limit, f"{per_websocket:,.0f} bytes per idle WebSocket"


def test_the_server_side_headers_are_the_upgrade_requests_and_still_read_after_the_handshake():
    routes = Router()

    @routes.websocket("/h")
    def headers(ws):
        yield from ws.send(f"{ws.headers.get('cookie')} {ws.request.cookies.get('a')} "
                           f"{ws.headers is ws.request.headers}")

    with serve_in_thread(routes) as server:
        sock, data = _open_raw(server.port, "/h")
        while b"True" not in data and b"False" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        sock.close()
    assert b"a=1 1 True" in data


def test_large_messages_to_a_slow_reader_arrive_whole():
    """A frame the socket takes only in part goes on under the write lock
    and the send timeout: the frames that follow are not interleaved."""
    routes = Router()
    sizes = (3 << 20, 5, 2 << 20)

    @routes.websocket("/big")
    def big(ws):
        for index, size in enumerate(sizes):
            yield from ws.send(bytes([index]) * size)
        yield from ws.receive()

    with serve_in_thread(routes) as server, \
            connect(f"ws://127.0.0.1:{server.port}/big", max_size=None) as ws:
        time.sleep(0.3)  # the server fills the socket buffers meanwhile
        received = [ws.recv(timeout=10) for _ in sizes]
        ws.send("done")
    assert [len(m) for m in received] == list(sizes)
    assert [m[0] for m in received] == [0, 1, 2] and all(len(set(m)) == 1 for m in received)
