"""The Client against servers that misbehave: truncated, malformed, silent,
slow, resetting and closing peers, refused connections, unknown hosts, TLS
that does not verify. Every failure is a typed error naming the URL, never
a hang, and leaves no fd, thread, task or pooled connection behind."""

from __future__ import annotations

import select
import socket
import ssl
import time

import pytest
from raw_server import OK, RawServer, answer, call, close_now, get, reset

from corofw import (
    Client,
    ClientTimeout,
    ConnectError,
    ConnectionRefused,
    ConnectTimeout,
    DNSError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    Timeout,
    TotalTimeout,
    WriteTimeout,
    gather,
    run,
    run_in_thread,
    sleep,
)
from corofw.http.pool import PooledConnection

pytestmark = pytest.mark.usefixtures("no_leaks")


# -- malformed and truncated responses ----------------------------------------------


def test_truncated_content_length_body():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    with RawServer(answer(head + b"0123456789", then=close_now)) as srv:
        error, seconds = call(get(srv.url + "/short"))
    assert isinstance(error, RemoteProtocolError)
    assert error.url == srv.url + "/short" and srv.url in str(error)
    assert "before the body ended" in str(error)


@pytest.mark.parametrize("reply", [
    b"HELLO WORLD\r\n\r\n",
    b"HTTP/1.1 2OO OK\r\n\r\n",
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nxx",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
])
def test_malformed_responses(reply):
    with RawServer(answer(reply)) as srv:
        error, seconds = call(get(srv.url + "/", timeout=5))
    assert isinstance(error, RemoteProtocolError), error
    assert error.url == srv.url + "/"
    assert seconds < 2  # reported at once, not after a timeout


@pytest.mark.parametrize("reply", [b"HTTP/1.1 200", b"\x00\x01garbage"])
def test_partial_or_garbage_head_then_close_is_not_a_hang(reply):
    with RawServer(answer(reply, then=close_now)) as srv:
        error, seconds = call(get(srv.url, timeout=5))
    assert isinstance(error, RemoteProtocolError)
    if reply.startswith(b"HTTP"):
        assert "middle of the response head" in str(error)
    assert seconds < 2


def test_close_in_the_middle_of_a_chunk():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    with RawServer(answer(head + b"5\r\nhello\r\na\r\n01234", then=close_now)) as srv:
        error, _ = call(get(srv.url + "/chunked"))
    assert isinstance(error, RemoteProtocolError)
    assert "before the body ended" in str(error)


def test_close_in_the_middle_of_a_streamed_chunk():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

    def go(client):
        resp = yield from client.get(srv.url, stream=True)
        first = yield from resp.read_chunk()
        assert first == b"hello"
        assert (yield from resp.read_chunk()) == b"01"  # what came of the next chunk
        yield from resp.read_chunk()

    with RawServer(answer(head + b"5\r\nhello\r\n", b"a\r\n01", gap=0.05,
                          then=close_now)) as srv:
        error, _ = call(go)
    assert isinstance(error, RemoteProtocolError)


def test_a_stalled_chunk_hands_out_what_has_arrived_before_the_read_timeout():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    arrived = b"a" * (1 << 20)

    def go(client):
        received = []
        with (yield from client.get(srv.url, stream=True, timeout=Timeout(read=0.3))) as resp:
            try:
                while True:
                    received.append((yield from resp.read_chunk()))
            except ReadTimeout:
                return b"".join(received)

    with RawServer(answer(head + b"800000\r\n" + arrived)) as srv:  # 1 MiB of 8 MiB
        received, _ = call(go)
    assert received == arrived


def test_a_huge_chunk_streams_in_bounded_pieces():
    size = 16 << 20
    body = bytes(range(256)) * (size // 256)
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
        size, body)

    def go(client):
        pieces = []
        with (yield from client.get(srv.url, stream=True)) as resp:
            while piece := (yield from resp.read_chunk()):
                pieces.append(len(piece))
        whole = yield from client.get(srv.url)
        return pieces, whole.content

    def handler(server, conn, index):
        while server.read_request(conn) is not None:
            conn.sendall(reply)

    with RawServer(handler) as srv:
        (pieces, content), _ = call(go)
    assert sum(pieces) == size and max(pieces) <= 1 << 17
    assert content == body


def test_close_without_any_response():
    with RawServer(answer(then=close_now)) as srv:
        error, _ = call(get(srv.url))
    assert isinstance(error, ReadError)
    assert "before sending a response" in str(error)


def test_body_until_close_and_interim_responses():
    replies = {
        "http10": b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
        "http11": b"HTTP/1.1 200 OK\r\n\r\nuntil close",
        "continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 11"
                    b"\r\n\r\nuntil close",
    }
    for name, reply in replies.items():
        with RawServer(answer(reply, then=close_now)) as srv:
            resp, _ = call(get(srv.url))
        assert resp.status_code == 200, name
        assert resp.content == b"until close", name


def test_bytes_after_the_response_are_never_taken_for_the_next_one():
    smuggled = OK + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfake!"

    def handler(server, conn, index):
        server.read_request(conn)
        conn.sendall(smuggled if index == 0 else b"HTTP/1.1 200 OK\r\nContent-Length: 4"
                     b"\r\n\r\nreal")
        server.wait_for_eof(conn)

    def go(client):
        first = yield from client.get(srv.url)
        second = yield from client.get(srv.url)
        return first.content, second.content

    with RawServer(handler) as srv:
        (first, second), _ = call(go)
    assert (first, second) == (b"ok", b"real")
    assert srv.accepted == 2


# -- timeouts ----------------------------------------------------------------------


def test_server_that_never_answers_read_timeout():
    with RawServer(answer()) as srv:
        error, seconds = call(get(srv.url + "/silent", timeout=Timeout(read=0.2)))
        assert srv.events["client-closed"].wait(5)  # the timeout closed the connection
    assert type(error) is ReadTimeout
    assert isinstance(error, ClientTimeout) and isinstance(error, TimeoutError)
    assert error.url == srv.url + "/silent"
    assert 0.15 <= seconds < 2.0


def test_short_read_timeout_after_a_long_pool_timeout():
    # phases armed in order pool (30 s), connect (30 s), write (30 s), read (0.2 s)
    timeout = Timeout(connect=30, read=0.2, write=30, pool=30)
    with RawServer(answer()) as srv:
        error, seconds = call(get(srv.url, timeout=timeout))
    assert type(error) is ReadTimeout
    assert seconds < 2.0


def test_slow_server_within_the_read_timeout_succeeds():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n"
    parts = [head[:5], head[5:20], head[20:]] + [bytes([c]) for c in b"drip!!"]
    with RawServer(answer(*parts, gap=0.05)) as srv:
        resp, seconds = call(get(srv.url, timeout=Timeout(read=0.3)))
    assert resp.content == b"drip!!"
    assert seconds >= 0.35  # eight 50 ms gaps, none longer than the read timeout


def test_slow_server_meets_the_total_timeout():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n"
    parts = [head] + [b"x"] * 20
    with RawServer(answer(*parts, gap=0.05)) as srv:
        error, seconds = call(get(srv.url, timeout=Timeout(read=0.3, total=0.3)))
    assert type(error) is TotalTimeout
    assert 0.25 <= seconds < 2.0


def test_total_timeout_covers_a_streamed_body():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n"
    parts = [head] + [b"x"] * 20

    def go(client):
        resp = yield from client.get(srv.url, stream=True,
                                     timeout=Timeout(read=0.3, total=0.3))
        yield from resp.read()

    with RawServer(answer(*parts, gap=0.05)) as srv:
        error, seconds = call(go)
    assert type(error) is TotalTimeout
    assert seconds < 2.0


def test_connect_timeout():
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):  # the accept queue is full: further SYNs are dropped
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        url = f"http://127.0.0.1:{port}/"
        error, seconds = call(get(url, timeout=Timeout(connect=0.2)))
    finally:
        for sock in fillers + [listener]:
            sock.close()
    assert type(error) is ConnectTimeout and error.url == url
    assert seconds < 2.0


def test_write_timeout_when_the_server_does_not_read():
    def handler(server, conn, index):
        conn.recv(1)
        server.stopping.wait(10)

    def go(client):
        yield from client.post(srv.url, content=b"x" * (64 << 20))

    with RawServer(handler) as srv:
        error, seconds = call(go, timeout=Timeout(write=0.3))
    assert type(error) is WriteTimeout
    assert seconds < 3.0


# -- dead, reset and refused connections --------------------------------------------


def test_reset_in_the_middle_of_the_response():
    def handler(server, conn, index):
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        time.sleep(0.05)
        reset(conn)

    with RawServer(handler) as srv:
        error, _ = call(get(srv.url + "/reset"))
    assert type(error) is ReadError
    assert error.url == srv.url + "/reset"


def test_reset_before_the_response():
    def handler(server, conn, index):
        server.read_request(conn)
        reset(conn)

    with RawServer(handler) as srv:
        error, _ = call(get(srv.url))
    assert type(error) is ReadError


def keep_alive_then_close(server, conn, index):
    """Connection 0 answers once, reads the next request and closes without
    answering it; later connections answer every request."""
    while server.read_request(conn) is not None:
        if index == 0 and len(server.requests) == 2:
            return
        conn.sendall(OK)


def test_get_is_retried_when_a_reused_connection_turns_out_dead():
    def go(client):
        first = yield from client.get(srv.url + "/a")
        second = yield from client.get(srv.url + "/b")
        return first.content, second.content

    with RawServer(keep_alive_then_close) as srv:
        (first, second), _ = call(go)
    assert (first, second) == (b"ok", b"ok")
    assert srv.accepted == 2
    assert [r.split(b" ")[1] for r in srv.requests] == [b"/a", b"/b", b"/b"]


def test_post_is_not_retried_once_sent():
    def go(client):
        yield from client.post(srv.url + "/a", json=1)
        yield from client.post(srv.url + "/b", json=2)

    with RawServer(keep_alive_then_close) as srv:
        error, _ = call(go)
    assert isinstance(error, ReadError) and error.url == srv.url + "/b"
    assert srv.accepted == 1
    assert len(srv.requests) == 2  # /b was sent once, never again


def test_idle_connection_closed_by_the_server_is_not_reused():
    def handler(server, conn, index):
        server.read_request(conn)
        conn.sendall(OK)
        if index == 0:
            conn.close()
            server.events["closed"].set()
        else:
            server.wait_for_eof(conn)

    def go(client):
        yield from client.post(srv.url, json=1)
        assert (yield from run_in_thread(srv.events["closed"].wait, 5))
        second = yield from client.post(srv.url, json=2)  # a fresh connection: no error
        return second.content

    with RawServer(handler) as srv:
        content, _ = call(go)
    assert content == b"ok" and srv.accepted == 2


def test_the_retry_after_a_dead_pooled_connection_gets_a_new_one():
    def handler(server, conn, index):
        if index < 2:  # the first two connections answer once, then the server restarts
            server.read_request(conn)
            conn.sendall(OK)
            return
        while server.read_request(conn) is not None:
            conn.sendall(OK)

    def go(client):
        yield from gather(client.get(srv.url + "/a"), client.get(srv.url + "/b"))
        pooled = client.pool.total
        resp = yield from client.get(srv.url + "/after-restart")  # both pooled ones are dead
        return pooled, resp.content

    with RawServer(handler) as srv:
        (pooled, content), _ = call(go)
    assert (pooled, content) == (2, b"ok")
    assert srv.accepted == 3


def test_post_is_retried_when_nothing_could_be_sent(monkeypatch):
    # A reset idle connection is normally noticed before reuse; pretend it
    # was not, so that sending the request fails: nothing reached the server.
    monkeypatch.setattr(PooledConnection, "looks_alive", lambda self: True)

    def handler(server, conn, index):
        server.read_request(conn)
        conn.sendall(OK)
        if index == 0:
            reset(conn)
            server.events["closed"].set()
        else:
            server.read_request(conn)
            server.wait_for_eof(conn)

    def go(client):
        yield from client.post(srv.url, json=1)
        assert (yield from run_in_thread(srv.events["closed"].wait, 5))
        second = yield from client.post(srv.url, json=2)
        return second.content

    with RawServer(handler) as srv:
        content, _ = call(go)
    assert content == b"ok" and srv.accepted == 2


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused():
    url = f"http://127.0.0.1:{closed_port()}/api"
    error, _ = call(get(url))
    assert type(error) is ConnectionRefused and isinstance(error, ConnectError)
    assert error.url == url and url in str(error) and "refused" in str(error)


def test_unresolvable_host():
    url = "http://no-such-host.invalid/x"
    error, seconds = call(get(url, timeout=10))
    assert type(error) is DNSError and isinstance(error, ConnectError)
    assert error.url == url and "no-such-host.invalid" in str(error)


def test_refused_calls_release_their_pool_slots():
    url = f"http://127.0.0.1:{closed_port()}/"

    def go(client):
        for _ in range(5):
            try:
                yield from client.get(url)
            except ConnectionRefused:
                pass
        return client.pool.total

    total, _ = call(go, max_per_host=1, timeout=Timeout(pool=0.5))
    assert total == 0


# -- TLS ---------------------------------------------------------------------------


def test_tls_verification_failure_success_and_reuse(tls_server_context, tls_client_context):
    def handler(server, conn, index):
        try:
            tls = tls_server_context.wrap_socket(conn, server_side=True)
        except OSError:  # the client refused our certificate
            return
        with tls:
            while server.read_request(tls) is not None:
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")

    def go(client):
        contents = []
        for _ in range(3):
            resp = yield from client.get(f"https://127.0.0.1:{srv.port}/")
            contents.append(resp.content)
        return contents

    with RawServer(handler) as srv:
        untrusted, _ = call(go, timeout=5)
        assert srv.accepted == 1
        trusted, _ = call(go, timeout=5, ssl_context=tls_client_context)
        assert srv.accepted == 2  # three requests over one TLS connection
        unverified, _ = call(go, timeout=5, verify=False)
        assert srv.accepted == 3
    assert type(untrusted).__name__ == "TLSError"
    assert "certificate" in str(untrusted).lower()
    assert untrusted.url == f"https://127.0.0.1:{srv.port}/"
    assert trusted == unverified == [b"secure"] * 3


def test_tls_idle_connection_closed_by_the_server(tls_server_context, tls_client_context):
    def handler(server, conn, index):
        with tls_server_context.wrap_socket(conn, server_side=True) as tls:
            server.read_request(tls)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            if index == 0:
                server.events["closed"].set()
                return
            server.wait_for_eof(tls)

    def go(client):
        yield from client.post(f"https://127.0.0.1:{srv.port}/", json=1)
        assert (yield from run_in_thread(srv.events["closed"].wait, 5))
        return (yield from client.post(f"https://127.0.0.1:{srv.port}/", json=2)).content

    with RawServer(handler) as srv:
        content, _ = call(go, timeout=5, ssl_context=tls_client_context)
    assert content == b"ok" and srv.accepted == 2


def test_tls_close_notify_on_an_idle_connection_is_noticed(tls_server_context,
                                                           tls_client_context):
    def handler(server, conn, index):
        with tls_server_context.wrap_socket(conn, server_side=True) as tls:
            server.read_request(tls)
            tls.sendall(OK)
            if index:
                server.wait_for_eof(tls)
                return
            tls.setblocking(False)
            try:
                tls.unwrap()  # sends close_notify; the TCP connection stays open
            except ssl.SSLWantReadError:
                pass
            server.events["closed"].set()
            while not server.stopping.is_set():  # until the client closes
                ready, _, _ = select.select([tls], [], [], 0.05)
                if ready and not socket.socket.recv(tls, 65536):
                    return

    def go(client):
        yield from client.post(f"https://127.0.0.1:{srv.port}/", json=1)
        assert (yield from run_in_thread(srv.events["closed"].wait, 5))
        return (yield from client.post(f"https://127.0.0.1:{srv.port}/", json=2)).content

    with RawServer(handler) as srv:
        content, _ = call(go, timeout=5, ssl_context=tls_client_context)
    assert content == b"ok" and srv.accepted == 2


def test_plain_http_server_behind_an_https_url():
    def handler(server, conn, index):
        conn.sendall(OK)  # answers the TLS client hello with plain HTTP
        server.wait_for_eof(conn)

    with RawServer(handler) as srv:
        error, seconds = call(get(f"https://127.0.0.1:{srv.port}/", timeout=2))
    assert isinstance(error, ConnectError)
    assert seconds < 2.0


# -- framing that keeps the connection usable ----------------------------------------


def test_bodiless_and_chunked_responses_keep_the_connection():
    replies = [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b""),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n", b""),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", b""),
        ("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b""),
        ("GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nChecksum: x\r\n\r\n", b"Wikipedia"),
        ("GET", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
         b"ok"),
        ("GET", b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
         b"ok"),
    ]

    def handler(server, conn, index):
        for _, reply, _ in replies:
            if server.read_request(conn) is None:
                return
            conn.sendall(reply)
        server.wait_for_eof(conn)

    def go(client):
        bodies = []
        for method, _, _ in replies:
            resp = yield from client.request(method, srv.url)
            bodies.append(resp.content)
        return bodies

    with RawServer(handler) as srv:
        bodies, _ = call(go, timeout=5)
    assert bodies == [body for _, _, body in replies]
    assert srv.accepted == 1


def test_connection_close_response_is_not_reused():
    def handler(server, conn, index):
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye")
        server.wait_for_eof(conn)  # the client, not the server, closes it

    def go(client):
        contents = []
        for _ in range(3):
            contents.append((yield from client.get(srv.url)).content)
            assert client.pool.total == 0
        return contents

    with RawServer(handler) as srv:
        contents, _ = call(go, timeout=5)
    assert contents == [b"bye"] * 3 and srv.accepted == 3


def test_reset_while_sending_a_large_body_is_a_write_error():
    def handler(server, conn, index):
        conn.recv(65536)
        reset(conn)

    def go(client):
        yield from client.post(srv.url + "/upload", content=b"x" * (64 << 20))

    with RawServer(handler) as srv:
        error, _ = call(go, timeout=5)
    assert type(error).__name__ == "WriteError"
    assert error.url == srv.url + "/upload"
    assert srv.accepted == 1  # a fresh connection: not retried


def test_large_request_body_over_tls(tls_server_context, tls_client_context):
    def handler(server, conn, index):
        with tls_server_context.wrap_socket(conn, server_side=True) as tls:
            while server.read_request(tls) is not None:
                size = str(len(server.requests[-1].partition(b"\r\n\r\n")[2])).encode()
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                            % (len(size), size))

    def go(client):
        sizes = []
        for size in (0, 100, 5 << 20):
            resp = yield from client.put(f"https://127.0.0.1:{srv.port}/", content=b"y" * size)
            sizes.append(int(resp.content))
        return sizes

    with RawServer(handler) as srv:
        sizes, _ = call(go, timeout=10, ssl_context=tls_client_context)
    assert sizes == [0, 100, 5 << 20] and srv.accepted == 1


def test_huge_bodies_are_refused_unless_streamed():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (4 << 30)

    def stream(client):
        with (yield from client.get(srv.url, stream=True)) as resp:
            first = yield from resp.read_chunk()
        return resp.headers["content-length"], first

    with RawServer(answer(head + b"start")) as srv:
        error, seconds = call(get(srv.url))
        (length, first), _ = call(stream)
    assert isinstance(error, RemoteProtocolError) and seconds < 2
    assert length == str(4 << 30) and first == b"start"


def test_a_switched_protocol_connection_is_not_reused():
    def handler(server, conn, index):
        server.read_request(conn)
        if index == 0:
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n"
                         b"Connection: Upgrade\r\n\r\n")
        else:
            conn.sendall(OK)
        server.wait_for_eof(conn)

    def go(client):
        first = yield from client.get(srv.url, headers={"Upgrade": "x", "Connection": "Upgrade"})
        second = yield from client.get(srv.url)
        return first.status_code, second.content

    with RawServer(handler) as srv:
        (status, content), _ = call(go, timeout=5)
    assert (status, content) == (101, b"ok") and srv.accepted == 2


def test_a_streamed_response_left_unread_does_not_time_out_the_caller():
    """The read timeout bounds each wait for the server, not the time the
    caller takes between getting a streamed response and reading it."""

    def handler(server, conn, index):
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        server.stopping.wait(10)

    def main(url):
        client = Client(timeout=Timeout(read=0.2))
        try:
            response = yield from client.get(url, stream=True)
            yield from sleep(0.5)  # longer than the read timeout
            return (yield from response.read())
        finally:
            client.close()

    with RawServer(handler) as srv:
        assert run(main(srv.url)) == b"hello"
