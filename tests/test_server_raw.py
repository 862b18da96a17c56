"""The HTTP server at the byte level, over raw sockets: connection reuse,
pipelining, timeouts, HTTP/1.0, 100-continue and malformed requests."""

from __future__ import annotations

import threading
import time

import pytest
from live import RawClient, get

from corofw import Router, StreamingResponse, sleep
from corofw.http.parser import Limits
from corofw.http.server import ServerConfig
from corofw.testing import serve_in_thread

CONFIG = ServerConfig(keep_alive_timeout=3.0, header_timeout=3.0, body_timeout=3.0,
                      send_timeout=3.0, graceful_timeout=2.0, access_log=False,
                      limits=Limits(max_request_line=1024, max_header_bytes=4096,
                                    max_headers=20, max_body_bytes=65536))


@pytest.fixture(scope="module")
def server(new_server_app):
    with serve_in_thread(new_server_app(), CONFIG) as running:
        yield running


@pytest.fixture
def client(server):
    with RawClient(server.port) as raw:
        yield raw


# -- connection reuse ---------------------------------------------------------------

def test_keep_alive_serves_requests_on_one_connection(client):
    port = str(client.local_port()).encode()
    for _ in range(3):
        response = client.request("GET", "/client")
        assert response.status == 200
        assert response.body == port  # the server saw the same connection each time
        assert "connection" not in response.headers
    assert client.request("POST", "/echo", b"abc").body == b"abc"
    assert not client.is_closed(timeout=0.1)


def test_idle_keep_alive_connection_times_out(server_app):
    with serve_in_thread(server_app, ServerConfig(keep_alive_timeout=0.3,
                                                  access_log=False)) as server:
        with RawClient(server.port) as raw:
            assert raw.request("GET", "/").status == 200
            started = time.monotonic()
            assert raw.is_closed(timeout=5)
            assert 0.2 < time.monotonic() - started < 3.0
        with RawClient(server.port) as raw:  # idle from the start
            assert raw.is_closed(timeout=5)
        with RawClient(server.port) as raw:  # after a pipelined pair too
            raw.send(get("/") + get("/"))
            assert raw.response().status == 200
            assert raw.response().status == 200
            assert raw.is_closed(timeout=5)


def test_idle_timeout_applies_after_a_longer_phase(server_app):
    """The connection's deadline moves from a long phase (a slow request head)
    to a short one (keep-alive idle): the short one must still be kept."""
    config = ServerConfig(keep_alive_timeout=0.3, header_timeout=20.0, access_log=False)
    with serve_in_thread(server_app, config) as server, RawClient(server.port) as raw:
        raw.send(b"GET / HTTP/1.1\r\n")
        time.sleep(0.6)  # past the first idle deadline, well within the header timeout
        raw.send(b"Host: t\r\n\r\n")
        assert raw.response().status == 200
        started = time.monotonic()
        assert raw.is_closed(timeout=8)
        assert time.monotonic() - started < 5.0


def test_pipelined_requests_are_answered_in_order(client):
    client.send(get("/slow") + get("/")
                + b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
    assert client.response().body == b"slow"
    assert client.response().body == b"Hello, World!"
    assert client.response().body == b"hello"
    assert client.request("GET", "/").status == 200


def test_pipelined_request_split_across_sends(client):
    data = get("/") + b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz" + get("/")
    for i in range(0, len(data), 7):
        client.send(data[i:i + 7])
        time.sleep(0.001)
    assert [client.response().status for _ in range(3)] == [200] * 3


def test_head_has_get_headers_and_no_body(client):
    client.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" + get("/"))
    head = client.response("HEAD")
    assert head.status == 200
    assert head.headers["content-length"] == "13"
    assert head.headers["content-type"].startswith("text/plain")
    # the next bytes on the wire are the GET's response: HEAD sent no body
    assert client.buf == b"" or client.buf.startswith(b"HTTP/1.1 200 OK\r\n")
    assert client.response().body == b"Hello, World!"


def test_head_of_streaming_response_sends_no_body(client):
    client.send(b"HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\n" + get("/"))
    head = client.response("HEAD")
    assert head.status == 200
    assert client.response().body == b"Hello, World!"


def test_204_has_no_body_and_no_length(client):
    client.send(get("/empty") + get("/"))
    response = client.response()
    assert response.status == 204
    assert "content-length" not in response.headers
    assert "transfer-encoding" not in response.headers
    assert client.response().body == b"Hello, World!"  # nothing was sent in between


def test_streamed_chunks_are_not_held_back(client):
    """Chunks are small separate writes: with Nagle's algorithm on, each
    would wait for the client's delayed ACK (about 40 ms a response)."""
    started = time.monotonic()
    for _ in range(50):
        client.send(get("/quick-stream"))
        assert client.response().body == b"x" * 500
    assert time.monotonic() - started < 1.5  # 50 x 40 ms = 2 s when held back


def test_connection_close_is_honoured(client):
    client.send(get("/", "Connection: close\r\n"))
    response = client.response()
    assert response.status == 200
    assert response.headers["connection"] == "close"
    assert client.is_closed()


def test_handler_error_keeps_pipelined_connection(client):
    client.send(get("/boom") + get("/"))
    assert client.response().status == 500
    assert client.response().body == b"Hello, World!"
    assert not client.is_closed(timeout=0.1)


def test_max_connections_closes_idle_connections_for_new_clients(server_app):
    """At the limit an idle keep-alive connection gives its slot to a new
    client at once (as nginx does), instead of the client waiting a whole
    keep-alive timeout."""
    config = ServerConfig(max_connections=2, keep_alive_timeout=30.0, access_log=False)
    with serve_in_thread(server_app, config) as server, \
            RawClient(server.port) as first, RawClient(server.port) as second:
        assert first.request("GET", "/").status == 200
        assert second.request("GET", "/").status == 200
        with RawClient(server.port) as third:
            started = time.monotonic()
            assert third.request("GET", "/").body == b"Hello, World!"
            assert time.monotonic() - started < 2.0
            assert first.is_closed() or second.is_closed()  # an idle one made room
            assert len(server.server.connections) == 2


def test_max_connections_busy_answers_503_at_once(server_app):
    config = ServerConfig(max_connections=2, access_log=False)
    with serve_in_thread(server_app, config) as server, \
            RawClient(server.port) as first, RawClient(server.port) as second:
        first.send(get("/slow"))
        second.send(get("/slow"))
        time.sleep(0.1)  # both in their handler: no connection is idle
        with RawClient(server.port) as third:
            started = time.monotonic()
            response = third.request("GET", "/")
            assert response.status == 503  # at once, not a slot after the slow requests
            assert time.monotonic() - started < 1.0
            assert response.headers["connection"] == "close"
            assert third.is_closed()
        assert first.response().body == b"slow"  # the busy ones are not disturbed
        assert second.response().body == b"slow"
        with RawClient(server.port) as fourth:  # served again once one is idle
            assert fourth.request("GET", "/").status == 200


# -- HTTP/1.0 ----------------------------------------------------------------------------

def test_http10_closes_by_default(client):
    client.send(get("/", version="1.0"))
    response = client.response()
    assert response.status == 200
    assert response.body == b"Hello, World!"
    assert response.headers.get("connection") == "close"
    assert client.is_closed()


def test_http10_keep_alive_is_echoed(client):
    for _ in range(2):
        client.send(get("/", "Connection: keep-alive\r\n", version="1.0"))
        response = client.response()
        assert response.body == b"Hello, World!"
        assert response.headers["connection"] == "keep-alive"
    assert not client.is_closed(timeout=0.1)


def test_http10_streaming_is_close_delimited(client):
    client.send(get("/stream", "Connection: keep-alive\r\n", version="1.0"))
    status, _, headers = client.read_head()
    fields = dict(headers)
    assert status == 200
    assert "transfer-encoding" not in fields
    assert "content-length" not in fields
    assert fields["connection"] == "close"
    assert client.read_until_close() == b"part0;part1;part2;"


def test_http11_streaming_is_chunked(client):
    client.send(get("/stream"))
    response = client.response()
    assert response.chunked
    assert response.body == b"part0;part1;part2;"
    assert client.request("GET", "/").status == 200


# -- timeouts ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def impatient(new_server_app):
    config = ServerConfig(keep_alive_timeout=0.4, header_timeout=0.4, body_timeout=0.4,
                          send_timeout=1.0, access_log=False)
    with serve_in_thread(new_server_app(), config) as running:
        yield running


def test_header_timeout_even_while_bytes_trickle_in(impatient):
    with RawClient(impatient.port) as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
        started = time.monotonic()
        try:
            for _ in range(100):  # 5 s of trickling, far past the header timeout
                raw.send(b"X-Slow: 1\r\n")
                time.sleep(0.05)
        except OSError:
            pass  # the server closed the connection: good
        response = raw.response()
        assert response.status == 408
        assert response.headers["connection"] == "close"
        assert time.monotonic() - started < 4.0
        assert raw.is_closed()


def test_body_timeout(impatient):
    with RawClient(impatient.port) as raw:
        raw.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        started = time.monotonic()
        response = raw.response()
        assert response.status == 408
        assert response.headers["connection"] == "close"
        assert time.monotonic() - started < 4.0
        assert raw.is_closed()


def test_slow_but_timely_body_is_accepted(impatient):
    with RawClient(impatient.port) as raw:
        raw.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nabc")
        time.sleep(0.1)
        raw.send(b"def")
        assert raw.response().body == b"abcdef"


def test_body_timeout_is_reset_by_progress(impatient):
    """--body-timeout is an idle timeout (nginx's client_body_timeout): a slow
    upload that keeps sending is not cut off, however long it takes in all."""
    with RawClient(impatient.port) as raw:
        raw.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 12\r\n\r\n")
        for piece in (b"ab", b"cd", b"ef", b"gh", b"ij", b"kl"):  # 0.15 s apart, 0.9 s in all
            time.sleep(0.15)
            raw.send(piece)
        assert raw.response().body == b"abcdefghijkl"
    with RawClient(impatient.port) as raw:  # chunked, the same
        raw.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"2\r\nab\r\n", b"2\r\ncd\r\n", b"2\r\nef\r\n", b"2\r\ngh\r\n",
                      b"2\r\nij\r\n", b"0\r\n\r\n"):
            time.sleep(0.15)
            raw.send(piece)
        assert raw.response().body == b"abcdefghij"


def test_idle_timeout_does_not_send_408(impatient):
    with RawClient(impatient.port) as raw:
        assert raw.request("GET", "/").status == 200
        assert raw.read_until_close() == b""


# -- Expect: 100-continue ------------------------------------------------------------------

def test_expect_100_continue(client):
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                b"Expect: 100-continue\r\n\r\n")
    assert client.interim() == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.send(b"hello")
    response = client.response()
    assert response.status == 200
    assert response.body == b"hello"
    # and once more on the same connection
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
                b"Expect: 100-continue\r\n\r\n")
    assert client.interim() == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.send(b"ok")
    assert client.response().body == b"ok"


def test_expect_100_continue_refused_body_gets_final_status_only(client):
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n"
                b"Expect: 100-continue\r\n\r\n")
    response = client.response()
    assert response.status == 413
    assert client.is_closed()


@pytest.mark.parametrize(("method", "path", "status"), [
    ("POST", "/nowhere", 404),
    ("PUT", "/echo", 405),
])
def test_no_100_continue_for_a_request_no_route_takes(client, method, path, status):
    """The final status goes out at once, never after an invitation to send
    a body that nobody would read."""
    client.send(f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                f"Expect: 100-continue\r\n\r\n".encode())
    head = client.interim()  # the first thing sent back
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"\r\nconnection: close\r\n" in head.lower()
    client.send(b"hello")  # a client may send the body anyway: it is read and dropped
    assert b"HTTP/1.1" not in client.read_until_close()  # nothing more is answered


def test_no_100_continue_when_body_already_sent(client):
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
                b"Expect: 100-continue\r\n\r\nhi")
    head = client.interim()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")


# -- malformed requests --------------------------------------------------------------------

MALFORMED = [
    ("bad request line", b"GARBAGE\r\n\r\n", 400),
    ("missing version", b"GET /\r\nHost: t\r\n\r\n", 400),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    ("missing Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("CL and TE", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("CL with sign", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc", 400),
    ("CL hex", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0x3\r\n\r\nabc", 400),
    ("CL conflict", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                    b"Content-Length: 4\r\n\r\nabcd", 400),
    ("unknown TE", b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: foo\r\n\r\n", 501),
    ("bad chunk size", b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\n", 400),
    ("URI too long", b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    ("header too large", b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n",
     431),
    ("too many headers", b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-A: 1\r\n" * 30 + b"\r\n", 431),
    ("body too large", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n", 413),
    ("chunked body too large", b"POST /echo HTTP/1.1\r\nHost: t\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n20000\r\n", 413),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n", 400),
    ("bare LF", b"GET / HTTP/1.1\nHost: t\n\n", 400),
    ("bare LF in headers", b"GET / HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
    ("control byte in value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n", 400),
]


@pytest.mark.parametrize(("data", "status"), [(d, s) for _, d, s in MALFORMED],
                         ids=[name for name, _, _ in MALFORMED])
def test_malformed_request_gets_4xx_and_close(client, data, status):
    client.send(data)
    response = client.response()
    assert response.status == status
    assert response.headers["connection"] == "close"
    assert client.is_closed()


@pytest.mark.parametrize(("data", "status"), [(d, s) for _, d, s in MALFORMED],
                         ids=[name for name, _, _ in MALFORMED])
def test_valid_pipelined_requests_before_a_bad_one_are_answered(client, data, status):
    client.send(get("/") + get("/client") + data + get("/"))
    assert client.response().body == b"Hello, World!"
    assert client.response().body == str(client.local_port()).encode()
    response = client.response()
    assert response.status == status
    assert response.headers["connection"] == "close"
    assert client.is_closed()


def test_header_too_large_when_sent_in_pieces(client):
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
    for _ in range(20):
        try:
            client.send(b"X-Filler: " + b"a" * 500 + b"\r\n")
        except OSError:
            break
    response = client.response()
    assert response.status == 431
    assert client.is_closed()


def test_refused_large_body_is_readable_while_client_still_sends(server):
    """The server answers 413 at the head; a client that goes on sending its
    body must still read the answer (no reset destroys it)."""
    body = b"x" * (4 << 20)
    for _ in range(3):
        with RawClient(server.port) as raw:
            errors: list[BaseException] = []

            def send_all(raw=raw, errors=errors):
                try:
                    raw.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                             % len(body) + body)
                except OSError as exc:
                    errors.append(exc)

            sender = threading.Thread(target=send_all)
            sender.start()
            try:
                response = raw.response()
            finally:
                sender.join(10)
            assert response.status == 413
            assert response.headers["connection"] == "close"
            assert not errors  # the server read and discarded the rest
            assert raw.is_closed()


def test_server_survives_garbage(server):
    for data in [b"\x00" * 100, b"\r\n" * 10, b"\xff\xfe" * 50 + b"\r\n\r\n", b"GET"]:
        with RawClient(server.port) as raw:
            raw.send(data)
            raw.sock.shutdown(1)  # SHUT_WR: nothing more will come
            raw.read_until_close()
    with RawClient(server.port) as raw:
        assert raw.request("GET", "/").status == 200


def test_client_disconnect_mid_request_is_harmless(server):
    with RawClient(server.port) as raw:
        raw.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
    with RawClient(server.port) as raw:
        raw.send(get("/slow"))
    time.sleep(0.4)  # the handler finishes and writes to a closed connection
    with RawClient(server.port) as raw:
        assert raw.request("GET", "/").status == 200


def test_a_pipelining_client_does_not_starve_a_fresh_one(server_app):
    """One connection streaming pipelined requests as fast as it can must
    not keep the server from accepting and answering another client."""
    import select
    import socket
    import threading

    with serve_in_thread(server_app, ServerConfig(access_log=False)) as server:
        stop = threading.Event()

        def flood():
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.setblocking(False)
                burst = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 100
                deadline = time.monotonic() + 10
                while not stop.is_set() and time.monotonic() < deadline:
                    readable, writable, _ = select.select([sock], [sock], [], 0.05)
                    if writable:
                        try:
                            sock.send(burst)
                        except BlockingIOError:
                            pass
                    if readable:
                        sock.recv(1 << 20)

        flooder = threading.Thread(target=flood)
        flooder.start()
        try:
            time.sleep(0.5)
            started = time.monotonic()
            with RawClient(server.port) as raw:
                assert raw.request("GET", "/").status == 200
            assert time.monotonic() - started < 2.0
        finally:
            stop.set()
            flooder.join()


# -- streams from plain handlers ----------------------------------------------------------

def countdown_app() -> Router:
    """The guide's /countdown: a plain (non-generator) handler returning a stream
    that takes longer than every request-reading timeout of the server below."""
    app = Router()

    @app.route("/countdown", methods=["GET", "POST"])
    def countdown(request):
        def body():
            for n in (3, 2, 1):
                yield f"{n}\n"
                yield from sleep(0.25)
            yield "liftoff\n"
        return StreamingResponse(body(), content_type="text/plain")

    return app


READING_TIMEOUTS = ServerConfig(keep_alive_timeout=0.2, header_timeout=0.2, body_timeout=0.2,
                                send_timeout=5.0, access_log=False)


@pytest.mark.parametrize("pieces", [
    [get("/countdown")],  # in one piece: the keep-alive timer was running
    [b"GET /countdown HTTP/1.1\r\n", b"Host: t\r\n\r\n"],  # the header timer
    [b"POST /countdown HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab", b"cd"],  # body
], ids=["idle", "head", "body"])
def test_stream_from_plain_handler_outlives_request_timers(pieces):
    with serve_in_thread(countdown_app(), READING_TIMEOUTS) as server, \
            RawClient(server.port) as raw:
        for piece in pieces:
            raw.send(piece)
            time.sleep(0.05)
        response = raw.response()
        assert response.status == 200
        assert response.chunked
        assert response.body == b"3\n2\n1\nliftoff\n"  # whole, with its last chunk
        assert raw.buf == b""  # and no 408 after it
        assert raw.request("GET", "/countdown").body == b"3\n2\n1\nliftoff\n"
