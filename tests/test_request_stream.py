"""Request bodies read as they arrive: routes with ``stream_body=True`` and
their own ``max_body_size``, beside routes whose bodies are read whole."""

from __future__ import annotations

import socket

import httpx
import pytest

from corofw import Limits, MalformedBody, Router, ServerConfig
from corofw.http.multipart import encode_multipart
from corofw.testing import serve_in_thread

pytestmark = pytest.mark.usefixtures("no_leaks")

MiB = 1 << 20
app = Router()


@app.post("/upload", stream_body=True, max_body_size=64 * MiB)
def upload(request):
    assert request.streamed and request.body is None
    pieces = size = 0
    while chunk := (yield from request.read_chunk()):
        pieces += 1
        size += len(chunk)
    return {"size": size, "pieces": pieces}


@app.post("/small", stream_body=True, max_body_size=1000)
def small(request):
    data = yield from request.read()
    return {"size": len(data)}


@app.post("/ignore", stream_body=True)
def ignore(request):
    return "not read"


@app.post("/form", stream_body=True, max_body_size=64 * MiB)
def form(request):
    data = yield from request.form()
    upload = data["file"]
    head = upload.file.read(4)
    return {"name": data["name"], "size": upload.size, "head": head.decode()}


@app.post("/whole")
def whole(request):
    return {"size": len(request.body)}


CONFIG = ServerConfig(access_log=False, limits=Limits(max_body_bytes=MiB), body_timeout=0.5)


@pytest.fixture(scope="module")
def server():
    with serve_in_thread(app, CONFIG) as running:
        yield running


def test_a_large_upload_streams_in_pieces_past_the_servers_limit(server):
    body = b"x" * (20 * MiB)
    response = httpx.post(server.url + "/upload", content=body, timeout=30)
    assert response.status_code == 200
    assert response.json()["size"] == len(body)
    assert response.json()["pieces"] > 20  # read a piece at a time, not whole


def test_a_chunked_upload_streams_too(server):
    def pieces():
        for _ in range(50):
            yield b"y" * 100_000

    response = httpx.post(server.url + "/upload", content=pieces(), timeout=30)
    assert response.json()["size"] == 5_000_000


def test_routes_that_read_bodies_whole_keep_the_servers_limit(server):
    assert httpx.post(server.url + "/whole", content=b"z" * 1000).json() == {"size": 1000}
    assert httpx.post(server.url + "/whole", content=b"z" * (2 * MiB)).status_code == 413


@pytest.mark.parametrize("size", [999, 1000])
def test_a_route_limit_below_the_servers_is_kept(server, size):
    assert httpx.post(server.url + "/small", content=b"s" * size).json() == {"size": size}


@pytest.mark.parametrize("size", [1001, 50_000, 3 * MiB])
def test_a_body_over_the_routes_limit_is_413(server, size):
    assert httpx.post(server.url + "/small", content=b"s" * size).status_code == 413


def test_a_chunked_body_over_the_routes_limit_is_413(server):
    def pieces():
        for _ in range(10):
            yield b"c" * 500

    assert httpx.post(server.url + "/small", content=pieces()).status_code == 413


def test_a_multipart_upload_is_parsed_as_it_arrives(server):
    content = b"HEAD" + b"\0" * (5 * MiB)
    body = encode_multipart([("name", "caf\u00e9"),
                             ("file", content, "a.bin", "application/octet-stream")], "BOUNDARY")
    response = httpx.post(server.url + "/form", content=body, timeout=30,
                          headers={"content-type": "multipart/form-data; boundary=BOUNDARY"})
    assert response.json() == {"name": "caf\u00e9", "size": 5 * MiB + 4, "head": "HEAD"}


def raw_exchange(server, data: bytes, read_until: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            if read_until and read_until in received:
                break
        return received


def test_a_body_left_unread_closes_the_connection_after_the_answer(server):
    head = b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    received = raw_exchange(server, head + b"u" * 1000)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in received.lower() and received.endswith(b"not read")


def test_the_next_request_after_a_streamed_body_is_served_on_the_connection(server):
    first = b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    second = b"POST /whole HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    received = raw_exchange(server, first + second, read_until=b'{"size":3}')
    assert received.count(b"HTTP/1.1 200 ") == 2
    assert b'{"size":5}' in received and received.endswith(b'{"size":3}')


def test_100_continue_is_sent_when_the_handler_reads_and_not_before():
    with serve_in_thread(app, CONFIG) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"body")
        assert sock.recv(1000).endswith(b'{"size":4}')
        sock.sendall(b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        answer = sock.recv(1000)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"100 Continue" not in answer


def test_a_client_that_stops_sending_gets_408_and_one_that_leaves_a_400(server):
    head = b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head + b"p" * 10)
        received = sock.recv(1000)
    assert received.startswith(b"HTTP/1.1 408 ")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head + b"p" * 10)
        sock.shutdown(socket.SHUT_WR)
        received = sock.recv(1000)
    assert received.startswith(b"HTTP/1.1 400 ")
    assert httpx.post(server.url + "/small", content=b"ok").json() == {"size": 2}


def test_a_buffered_request_reads_the_same_way():
    from corofw import Request, run

    request = Request("POST", "/", body=b"abc")

    def main():
        assert (yield from request.read_chunk()) == b"abc"
        assert (yield from request.read_chunk()) == b""
        return (yield from request.read())

    assert run(main()) == b"abc" and not request.streamed


def test_stream_options_are_checked_when_the_route_is_made():
    routes = Router()
    with pytest.raises(ValueError, match="max_body_size"):
        routes.add_route("/a", upload, ["POST"], max_body_size=10)  # without stream_body
    with pytest.raises(ValueError, match="max_body_size"):
        routes.add_route("/b", upload, ["POST"], stream_body=True, max_body_size=-1)
    assert issubclass(MalformedBody, ValueError)


def test_a_malformed_chunked_body_gets_one_answer_and_the_connection_closes(server):
    head = b"POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    after = b"POST /whole HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    received = raw_exchange(server, head + b"5\r\nhello\r\nzz\r\n" + after)
    assert received.count(b"HTTP/1.1 ") == 1  # no answer for what follows the broken body
    assert received.startswith(b"HTTP/1.1 400 ") and b"connection: close" in received.lower()
