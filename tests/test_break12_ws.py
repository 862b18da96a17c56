"""WebSocket routes attacked as a hostile client or a careless user would:
each test is a defect found that way, kept as a regression test.

The client here is a raw socket that writes frames byte-exactly, so that a
test controls what the server sees (resets, partial frames, pongs nobody
asked for, frames that never end)."""

from __future__ import annotations

import base64
import logging
import os
import socket
import struct
import time
import tracemalloc
import zlib

import pytest

from corofw import (
    Router,
    ServerConfig,
    WebSocketClosed,
    move_on_after,
    sleep,
    spawn,
)
from corofw.testing import serve_in_thread

pytestmark = pytest.mark.usefixtures("no_leaks")

WS_LOG = "corofw.websocket"


# -- a raw WebSocket client ----------------------------------------------------------


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True,
                 rsv1: bool = False, length: int | None = None) -> bytes:
    """A masked frame as a client sends it; ``length`` overrides the
    declared payload length (the payload given is then only its start)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload) if length is None else length
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = bytes((first, 0x80 | 126)) + struct.pack(">H", size)
    else:
        head = bytes((first, 0x80 | 127)) + struct.pack(">Q", size)
    key = os.urandom(4)
    repeated = (key * (len(payload) // 4 + 1))[:len(payload)]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return head + key + masked.to_bytes(len(payload), "big")


def handshake(path: str, extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key}\r\n{extra}\r\n").encode("latin-1")


class RawWebSocket:
    """A TCP connection that sends an upgrade request (unless ``path`` is
    None) and reads the server's answer head and frames byte-exactly."""

    def __init__(self, port: int, path: str | None, extra: str = "", *,
                 timeout: float = 2.0, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect: the window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.head = b""
        if path is not None:
            self.sock.sendall(handshake(path, extra))
            self.head = self.read_head()
            assert self.head.startswith(b"HTTP/1.1 101 "), self.head

    def __enter__(self) -> RawWebSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, size: int) -> None:
        while len(self.buf) < size:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed; {self.buf[:80]!r} left over")
            self.buf += data

    def read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed before an answer head: {self.buf!r}")
            self.buf += data
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head

    def frame(self) -> tuple[int, bytes]:
        """The next frame from the server: ``(opcode, payload)``."""
        self._fill(2)
        length, start = self.buf[1] & 0x7F, 2
        if length == 126:
            self._fill(4)
            length, start = struct.unpack(">H", self.buf[2:4])[0], 4
        elif length == 127:
            self._fill(10)
            length, start = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._fill(start + length)
        opcode, payload = self.buf[0] & 0x0F, self.buf[start:start + length]
        self.buf = self.buf[start + length:]
        return opcode, payload

    def read_to_end(self) -> bytes:
        """Everything until the server closes (or the timeout passes)."""
        data, self.buf = self.buf, b""
        try:
            while chunk := self.sock.recv(1 << 20):
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return data

    def reset(self) -> None:
        """Close with an RST, as a client that crashes or loses its network."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def close_code(payload: bytes) -> int | None:
    return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None


def wait_for(condition, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the server did not get there in time"
        time.sleep(0.01)


def errors_of(caplog, name: str) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name == name and record.levelno >= logging.ERROR]


# -- a client that goes away -----------------------------------------------------------


def test_a_client_reset_while_the_handler_receives_is_a_close_not_a_handler_failure(caplog):
    outcome: list[object] = []
    app = Router()

    @app.websocket("/echo")
    def echo(ws):
        try:
            while True:
                yield from ws.send((yield from ws.receive()))
        except WebSocketClosed as closed:
            outcome.append(closed.code)
            raise
        except Exception as exc:
            outcome.append(exc)
            raise

    with serve_in_thread(app) as server:
        client = RawWebSocket(server.port, "/echo")
        client.send(client_frame(0x1, b"half a message", fin=False)[:6])
        time.sleep(0.1)  # the handler waits in receive()
        client.reset()
        wait_for(lambda: outcome)
    assert outcome == [1006], f"receive() raised {outcome[0]!r}"
    assert not errors_of(caplog, WS_LOG), errors_of(caplog, WS_LOG)


def test_a_send_to_a_client_that_reset_is_a_close_not_a_handler_failure(caplog):
    outcome: list[object] = []
    app = Router()

    @app.websocket("/late")
    def late(ws):
        yield from ws.receive()
        yield from sleep(0.2)  # the client resets meanwhile
        try:
            yield from ws.send("too late")
        except WebSocketClosed as closed:
            outcome.append(closed.code)
            raise
        except Exception as exc:
            outcome.append(exc)
            raise

    with serve_in_thread(app) as server:
        client = RawWebSocket(server.port, "/late")
        client.send(client_frame(0x1, b"go"))
        time.sleep(0.05)
        client.reset()
        wait_for(lambda: outcome)
    assert outcome == [1006], f"send() raised {outcome[0]!r}"
    assert not errors_of(caplog, WS_LOG), errors_of(caplog, WS_LOG)


def test_a_client_that_never_reads_is_dropped_without_a_handler_traceback(caplog):
    ended: list[object] = []
    app = Router()

    @app.websocket("/flood")
    def flood(ws):
        try:
            while True:
                yield from ws.send(b"x" * 65536)
        except BaseException as exc:
            ended.append(exc)
            raise

    config = ServerConfig(access_log=False, send_timeout=0.3)
    with serve_in_thread(app, config) as server, \
            RawWebSocket(server.port, "/flood", rcvbuf=4096):
        wait_for(lambda: ended)
        time.sleep(0.05)  # run_session has handled the error
    assert not errors_of(caplog, WS_LOG), errors_of(caplog, WS_LOG)


def test_receive_in_one_task_while_another_closes_raises_websocket_closed():
    outcome: list[object] = []
    app = Router()

    @app.websocket("/closer")
    def closer(ws):
        def reader():
            try:
                yield from ws.receive()
            except WebSocketClosed:
                outcome.append("WebSocketClosed")
            except Exception as exc:
                outcome.append(exc)

        task = yield from spawn(reader(), "reader")
        yield from sleep(0.05)  # the reader waits in receive()
        yield from ws.close(4001, "done")
        yield from task.join()

    with serve_in_thread(app) as server, RawWebSocket(server.port, "/closer") as client:
        opcode, payload = client.frame()
        assert (opcode, close_code(payload)) == (0x8, 4001)
        client.send(client_frame(0x8, payload))
        wait_for(lambda: outcome)
    assert outcome == ["WebSocketClosed"], f"receive() raised {outcome[0]!r}"


# -- sends cut short -------------------------------------------------------------------


def test_a_send_cancelled_midway_does_not_corrupt_the_frame_stream():
    size = 8 << 20  # more than loopback buffers hold while the client does not read
    app = Router()

    @app.websocket("/cut", close_timeout=0.3)
    def cut(ws):
        yield from move_on_after(0.1, ws.send(b"y" * size))
        try:
            yield from ws.send("after")
        except WebSocketClosed:
            pass

    with serve_in_thread(app) as server, \
            RawWebSocket(server.port, "/cut", rcvbuf=4096, timeout=1.0) as client:
        time.sleep(0.3)  # the first send is cancelled, the second sent
        data = client.read_to_end()
    assert data[:2] == b"\x82\x7f" and struct.unpack(">Q", data[2:10])[0] == size
    start = 10
    if len(data) >= start + size:  # the frame was finished: what follows is whole frames
        assert data[start + size:].startswith(b"\x81\x05after")
    else:  # the frame was cut: nothing may follow it
        assert data.find(b"\x81\x05after", start) < 0, (
            f"a frame of {size} bytes was cut after {len(data) - start} bytes and the "
            f"next frame was written inside its payload")


# -- memory a client can make the server hold ------------------------------------------


def traced_growth(action) -> int:
    """How much more memory Python holds after ``action()`` than before."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        action()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_unsolicited_pongs_are_not_kept():
    app = Router()

    @app.websocket("/echo")
    def echo(ws):
        while True:
            yield from ws.send((yield from ws.receive()))

    pongs = b"".join(client_frame(0xA, os.urandom(125)) for _ in range(20000))
    with serve_in_thread(app) as server, RawWebSocket(server.port, "/echo") as client:
        def flood() -> None:
            client.send(pongs + client_frame(0x1, b"done"))
            assert client.frame() == (0x1, b"done")  # the server has read every pong

        grown = traced_growth(flood)
    assert grown < 1_000_000, f"the server holds {grown} more bytes after 20000 pongs"


def test_messages_queued_while_ping_waits_are_bounded():
    app = Router()

    @app.websocket("/pinger")
    def pinger(ws):
        yield from ws.ping(b"p", timeout=5)

    message = client_frame(0x2, b"z" * 1000)
    with serve_in_thread(app) as server, RawWebSocket(server.port, "/pinger") as client:
        assert client.frame() == (0x9, b"p")

        def flood() -> None:
            client.sock.settimeout(0.5)
            try:
                client.send(message * 3000 + client_frame(0x9, b"sync"))
                client.frame()  # the pong to "sync": the server has read up to it
            except TimeoutError:
                pass  # a server that stops reading: what it holds is bounded

        grown = traced_growth(flood)
        try:
            client.send(client_frame(0xA, b"p"))
        except TimeoutError:
            pass  # the server stopped reading at its bound: backpressure, as intended
    assert grown < 1_000_000, f"the server holds {grown} more bytes after 3000 messages"


def test_a_compressed_frame_declaring_a_huge_length_is_refused_with_1009():
    app = Router()

    @app.websocket("/echo")
    def echo(ws):
        while True:
            yield from ws.send((yield from ws.receive()))

    offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    with serve_in_thread(app) as server, \
            RawWebSocket(server.port, "/echo", offer, timeout=0.5) as client:
        assert b"permessage-deflate" in client.head
        start = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = start.compress(b"a") + start.flush(zlib.Z_SYNC_FLUSH)
        client.send(client_frame(0x2, data, rsv1=True, length=1 << 40))
        try:
            opcode, payload = client.frame()
        except TimeoutError:
            pytest.fail("a frame declaring 2**40 compressed bytes is being read, not refused")
    assert (opcode, close_code(payload)) == (0x8, 1009)


# -- careless middleware and options ---------------------------------------------------


def test_middleware_headers_with_cr_lf_cannot_inject_into_the_101():
    app = Router()

    @app.websocket("/echo")
    def echo(ws):
        yield from ws.send("hi")

    @app.middleware
    def tag(request, call_next):
        response = yield from call_next(request)
        response.set_header("X-Tag", request.query.get("tag", "none"))
        return response

    with serve_in_thread(app) as server, \
            RawWebSocket(server.port, None) as client:
        client.send(handshake("/echo?tag=a%0D%0ASet-Cookie:%20evil=1"))
        head = client.read_head()
    assert b"\r\nset-cookie: evil" not in head.lower(), head


def test_middleware_header_that_is_not_latin_1_gets_an_http_answer(caplog):
    app = Router()

    @app.websocket("/echo")
    def echo(ws):
        yield from ws.send("hi")

    @app.middleware
    def tag(request, call_next):
        response = yield from call_next(request)
        response.set_header("X-Tag", "snow \u2603")
        return response

    with serve_in_thread(app) as server, RawWebSocket(server.port, None) as client:
        client.send(handshake("/echo"))
        try:
            head = client.read_head()
        except EOFError:
            head = b""
    assert head.startswith(b"HTTP/1.1 "), "the connection was closed without an answer"
    assert not [r for r in caplog.records if r.exc_info and
                isinstance(r.exc_info[1], UnicodeEncodeError)]


def test_origins_given_as_a_string_allows_that_origin_or_is_refused():
    app = Router()
    try:
        @app.websocket("/only", origins="https://app.example")
        def only(ws):
            yield from ws.send("welcome")
    except (TypeError, ValueError):
        return  # refused when the route is made: fine
    with serve_in_thread(app) as server, RawWebSocket(server.port, None) as client:
        client.send(handshake("/only", "Origin: https://app.example\r\n"))
        head = client.read_head()
    assert head.startswith(b"HTTP/1.1 101 "), head.split(b"\r\n")[0]


def test_a_websocket_route_does_not_advertise_head_and_then_refuse_it():
    app = Router()

    @app.websocket("/echo")
    def echo(ws):
        yield from ws.send("hi")

    with serve_in_thread(app) as server:
        with RawWebSocket(server.port, None) as client:
            client.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
            post = client.read_head()
        with RawWebSocket(server.port, None) as client:
            client.send(handshake("/echo").replace(b"GET ", b"HEAD ", 1))
            head = client.read_head()
    allow = next(line for line in post.split(b"\r\n") if line.lower().startswith(b"allow:"))
    if b"HEAD" in allow:
        assert not head.startswith(b"HTTP/1.1 405 "), (
            f"POST was told {allow.decode()}, but HEAD got {head.splitlines()[0].decode()}")


# -- a handler with more than one task ------------------------------------------------


def test_ping_in_a_heartbeat_task_does_not_hang_receive_in_another():
    outcome: list[object] = []
    app = Router()

    @app.websocket("/heartbeat")
    def heartbeat(ws):
        def beat():
            try:
                yield from ws.ping(b"hb", timeout=0.3)
                outcome.append("pong")
            except Exception as exc:
                outcome.append(exc)

        task = yield from spawn(beat(), "heartbeat")
        try:
            outcome.append((yield from ws.receive(timeout=0.3)))
        except Exception as exc:
            outcome.append(exc)
        yield from task.join()

    with serve_in_thread(app) as server, RawWebSocket(server.port, "/heartbeat") as client:
        assert client.frame() == (0x9, b"hb")
        client.send(client_frame(0xA, b"hb") + client_frame(0x1, b"hello"))
        deadline = time.monotonic() + 3.0
        while len(outcome) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        finished = list(outcome)  # before the client leaves, which wakes any read
    assert len(finished) == 2, (f"after 3 s only {finished} came back: receive(timeout=0.3) "
                                f"is still waiting")
    assert sorted(map(str, finished)) == ["hello", "pong"], finished


# -- the 101 as a response -------------------------------------------------------------


def test_the_101_echoes_the_request_id_like_any_response():
    app = Router()

    @app.websocket("/echo")
    def echo(ws):
        yield from ws.send("hi")

    @app.get("/plain")
    def plain(request):
        return "plain"

    with serve_in_thread(app, ServerConfig(access_log=True)) as server:
        with RawWebSocket(server.port, None) as client:
            client.send(b"GET /plain HTTP/1.1\r\nHost: test\r\nX-Request-ID: abc-123\r\n\r\n")
            assert b"\r\nx-request-id: abc-123" in client.read_head().lower()
        with RawWebSocket(server.port, "/echo", "X-Request-ID: abc-123\r\n") as client:
            head = client.head
    assert b"\r\nx-request-id: abc-123" in head.lower(), head


# -- a handler that only sends ---------------------------------------------------------


def test_a_handler_that_only_sends_still_answers_pings():
    app = Router()

    @app.websocket("/ticker")
    def ticker(ws):
        count = 0
        while True:
            yield from ws.send(f"tick {count}")
            count += 1
            yield from sleep(0.02)

    with serve_in_thread(app) as server, RawWebSocket(server.port, "/ticker") as client:
        assert client.frame()[0] == 0x1
        client.send(client_frame(0x9, b"alive?"))
        seen = []
        deadline = time.monotonic() + 3.0  # pings are looked for every 0.1 s
        while time.monotonic() < deadline:
            opcode, payload = client.frame()
            seen.append(opcode)
            if opcode == 0xA:
                break
        client.send(client_frame(0x8, struct.pack(">H", 1000)))
    assert (0xA, payload) == (opcode, b"alive?"), (
        f"no pong in 3 s; {seen.count(0x1)} text frames came meanwhile")
