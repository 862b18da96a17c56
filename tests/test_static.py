"""Static files: Content-Type, ETag/Last-Modified and 304s, single ranges
(206/416), HEAD, FileResponse sent with sendfile (slow clients, keep-alive,
files that shrink), and directory traversal refused in every form, through
the router and as raw request targets on the wire."""

from __future__ import annotations

import os
import socket
import time
from email.utils import formatdate
from types import GeneratorType

import pytest
from live import RawClient

from corofw import Request, Response, Router, run, spawn
from corofw.http.files import FileResponse, guess_content_type
from corofw.http.server import ServerConfig
from corofw.net import Socket
from corofw.net.files import _copy, sendfile
from corofw.testing import serve_in_thread
from corofw.web import StaticFiles

CONFIG = ServerConfig(access_log=False, graceful_timeout=5.0, send_timeout=5.0)
HELLO = b"Hello, static world!\n"
BIG = os.urandom(3 << 20)


@pytest.fixture
def site(tmp_path):
    """root/ holds the served files; secret.txt sits next to it."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "hello.txt").write_bytes(HELLO)
    (root / "sub" / "page.html").write_text("<p>hi</p>")
    (root / "big.bin").write_bytes(BIG)
    (root / "empty.txt").write_bytes(b"")
    (root / "style.css").write_text("p{}")
    (root / "%2e%2e").mkdir()
    (root / "%2e%2e" / "odd.txt").write_text("a file under a literal '%2e%2e' directory")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.txt").write_text("TOP SECRET")
    os.symlink(root / "hello.txt", root / "inner-link.txt")
    os.symlink(tmp_path / "secret.txt", root / "out-link.txt")
    os.symlink(tmp_path / "outside", root / "out-dir")
    os.symlink("../secret.txt", root / "relative-out.txt")
    return root


def app(root, **kwargs) -> Router:
    routes = Router()
    routes.static("/static", root, name="static", **kwargs)
    return routes


def call(routes: Router, target: str, method: str = "GET", **headers: str):
    request = Request(method, target, headers={name.replace("_", "-"): value
                                               for name, value in headers.items()})
    response = routes.handle(request)
    if type(response) is GeneratorType:
        response = run(response)
    return response


def body_of(response) -> bytes:
    if isinstance(response, FileResponse):
        try:
            response.file.seek(response.offset)
            return response.file.read(response.count)
        finally:
            response.close()
    return response.body


# -- through the router --------------------------------------------------------------


def test_a_file_with_its_validators(site):
    response = call(app(site), "/static/hello.txt")
    assert isinstance(response, FileResponse) and response.status == 200
    assert response.content_type == "text/plain; charset=utf-8"
    headers = response.headers
    info = os.stat(site / "hello.txt")
    assert headers["etag"] == f'"{info.st_mtime_ns:x}-{len(HELLO):x}"'
    assert headers["last-modified"] == formatdate(info.st_mtime, usegmt=True)
    assert headers["accept-ranges"] == "bytes"
    assert body_of(response) == HELLO


@pytest.mark.parametrize(("name", "expected"), [
    ("a.html", "text/html; charset=utf-8"), ("a.css", "text/css; charset=utf-8"),
    ("a.js", "text/javascript; charset=utf-8"), ("a.json", "application/json; charset=utf-8"),
    ("a.png", "image/png"), ("a.svg", "image/svg+xml; charset=utf-8"),
    ("a.woff2", "font/woff2"), ("a.wasm", "application/wasm"), ("a.PDF", "application/pdf"),
    ("a.tar.gz", "application/octet-stream"), ("noext", "application/octet-stream"),
    ("a.unknownext", "application/octet-stream"),
])
def test_content_type_from_the_extension(name, expected):
    assert guess_content_type(name) == expected


def test_cache_control_and_subdirectories_and_inner_symlinks(site):
    routes = app(site, cache_control="public, max-age=60")
    response = call(routes, "/static/sub/page.html")
    assert response.headers["cache-control"] == "public, max-age=60"
    assert body_of(response) == b"<p>hi</p>"
    assert body_of(call(routes, "/static/inner-link.txt")) == HELLO
    assert body_of(call(routes, "/static/%252e%252e/odd.txt")).startswith(b"a file under")
    assert routes.url_for("static", path="sub/page.html") == "/static/sub/page.html"


def test_resolve_gives_real_paths_and_follows_only_symlinks_that_stay_inside(site, tmp_path):
    os.symlink(site / "sub", site / "alias")
    os.symlink(tmp_path / "outside", site / "sub" / "out")
    os.symlink(tmp_path, tmp_path / "root-link")
    files = StaticFiles(tmp_path / "root-link" / "root")  # the directory through a symlink
    root = os.path.realpath(site)
    assert files.root == root
    assert files.resolve("sub/page.html") == os.path.join(root, "sub", "page.html")
    assert files.resolve("missing/page.html") == os.path.join(root, "missing", "page.html")
    assert files.resolve("inner-link.txt") == os.path.join(root, "hello.txt")
    assert files.resolve("alias/page.html") == os.path.join(root, "sub", "page.html")
    for outside in ("sub/out/x.txt", "out-dir/x.txt", "out-link.txt", "relative-out.txt"):
        assert files.resolve(outside) is None
    routes = app(tmp_path / "root-link" / "root")
    assert body_of(call(routes, "/static/alias/page.html")) == b"<p>hi</p>"
    assert call(routes, "/static/sub/out/x.txt").status == 404


TRAVERSALS = [
    "/static/../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/.%2e/secret.txt",
    "/static/..%2fsecret.txt",
    "/static/..%2Fsecret.txt",
    "/static/%2e%2e%2fsecret.txt",
    "/static/sub/../../secret.txt",
    "/static/sub/%2e%2e/%2e%2e/secret.txt",
    "/static/sub/..%5c..%5csecret.txt",
    "/static/..\\secret.txt",
    "/static/sub\\..\\..\\secret.txt",
    "/static/%5c..%5csecret.txt",
    "/static//etc/passwd",
    "/static/%2fetc/passwd",
    "/static/./hello.txt",
    "/static/sub/../hello.txt",
    "/static/hello.txt/",
    "/static/out-link.txt",
    "/static/relative-out.txt",
    "/static/out-dir/x.txt",
    "/static/sub",
    "/static/missing.txt",
    "/static/hello.txt%00.png",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_is_404_through_the_router(site, target):
    response = call(app(site), target)
    assert response.status == 404
    assert b"SECRET" not in body_of(response)


@pytest.mark.parametrize("target", TRAVERSALS + [
    "http://test/static/../secret.txt", "http://test/static/%2e%2e/secret.txt"])
def test_traversal_is_refused_on_the_wire(site, target, no_leaks):
    with serve_in_thread(app(site), CONFIG) as server, RawClient(server.port) as client:
        client.send(f"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        response = client.response()
    # a NUL never reaches the router: the server's parser answers 400 first
    assert response.status == (400 if "%00" in target else 404)
    assert b"SECRET" not in response.body


def test_other_methods_are_405(site):
    response = call(app(site), "/static/hello.txt", method="POST")
    assert response.status == 405 and "GET" in response.headers["allow"]


def test_directory_must_exist(tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        Router().static("/static", tmp_path / "nope")
    with pytest.raises(ValueError, match="must start with '/'"):
        Router().static("static", tmp_path)


# -- conditional requests -------------------------------------------------------------


def validators(site):
    response = call(app(site), "/static/hello.txt")
    response.close()
    return response.headers["etag"], response.headers["last-modified"]


def test_if_none_match_gives_304(site):
    etag, last_modified = validators(site)
    routes = app(site)
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = call(routes, "/static/hello.txt", if_none_match=header)
        assert response.status == 304 and response.body == b""
        assert response.headers["etag"] == etag
    for method in ("HEAD",):
        assert call(routes, "/static/hello.txt", method, if_none_match=etag).status == 304
    response = call(routes, "/static/hello.txt", if_none_match='"other"',
                    if_modified_since=last_modified)
    assert response.status == 200  # If-None-Match decides when present
    response.close()


def test_if_modified_since_gives_304(site):
    _, last_modified = validators(site)
    routes = app(site)
    assert call(routes, "/static/hello.txt", if_modified_since=last_modified).status == 304
    later = formatdate(time.time() + 3600, usegmt=True)
    assert call(routes, "/static/hello.txt", if_modified_since=later).status == 304
    for header in (formatdate(0, usegmt=True), "not a date", ""):
        response = call(routes, "/static/hello.txt", if_modified_since=header)
        assert response.status == 200
        response.close()


# -- ranges ---------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "span"), [
    ("bytes=0-4", (0, 4)),
    ("bytes=7-", (7, len(HELLO) - 1)),
    ("bytes=-6", (len(HELLO) - 6, len(HELLO) - 1)),
    ("bytes=-1000", (0, len(HELLO) - 1)),
    ("bytes=3-1000", (3, len(HELLO) - 1)),
    ("bytes = 2-2", (2, 2)),
    ("BYTES=1-1", (1, 1)),
])
def test_a_single_range_is_206(site, header, span):
    response = call(app(site), "/static/hello.txt", range=header)
    assert response.status == 206
    start, end = span
    assert response.headers["content-range"] == f"bytes {start}-{end}/{len(HELLO)}"
    assert body_of(response) == HELLO[start:end + 1]


@pytest.mark.parametrize("header", ["bytes=21-", "bytes=100-200", "bytes=-0", "bytes=5-2",
                                    "bytes=abc", "bytes=", "bytes=-", "bytes=1-2-3",
                                    "bytes=+1-2", "bytes=0x1-2"])
def test_a_bad_range_is_416(site, header):
    response = call(app(site), "/static/hello.txt", range=header)
    assert response.status == 416
    assert response.headers["content-range"] == f"bytes */{len(HELLO)}"


def test_any_range_of_an_empty_file_is_416(site):
    assert call(app(site), "/static/empty.txt", range="bytes=0-").status == 416
    response = call(app(site), "/static/empty.txt")
    assert response.status == 200 and body_of(response) == b""


@pytest.mark.parametrize("header", ["items=0-1", "bytes=0-1,3-4", "bytes=0-1, 5-"])
def test_other_units_and_several_ranges_get_the_whole_file(site, header):
    response = call(app(site), "/static/hello.txt", range=header)
    assert response.status == 200 and body_of(response) == HELLO


def test_if_range(site):
    etag, last_modified = validators(site)
    routes = app(site)
    assert call(routes, "/static/hello.txt", range="bytes=0-1", if_range=etag).status == 206
    assert call(routes, "/static/hello.txt", range="bytes=0-1",
                if_range=last_modified).status == 206
    for stale in ('"stale"', f"W/{etag}", formatdate(0, usegmt=True)):
        response = call(routes, "/static/hello.txt", range="bytes=0-1", if_range=stale)
        assert response.status == 200
        response.close()


# -- on the wire ----------------------------------------------------------------------


def test_files_on_the_wire_keep_alive_head_and_ranges(site, no_leaks):
    with serve_in_thread(app(site), CONFIG) as server, RawClient(server.port) as client:
        response = client.request("GET", "/static/hello.txt")
        assert response.status == 200 and response.body == HELLO
        assert response.headers["content-length"] == str(len(HELLO))
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        response = client.request("HEAD", "/static/big.bin")
        assert response.status == 200 and response.body == b""
        assert response.headers["content-length"] == str(len(BIG))
        response = client.request("GET", "/static/big.bin", headers="Range: bytes=100-\r\n")
        assert response.status == 206 and response.body == BIG[100:]
        response = client.request("GET", "/static/big.bin")
        assert response.body == BIG
        etag = response.headers["etag"]
        response = client.request("GET", "/static/big.bin",
                                  headers=f"If-None-Match: {etag}\r\n")
        assert response.status == 304 and "content-length" not in response.headers
        response = client.request("GET", "/static/hello.txt", headers="Range: bytes=99-\r\n")
        assert response.status == 416
        response = client.request("GET", "/static/style.css")  # still in step
        assert response.body == b"p{}"


def test_http10_client(site, no_leaks):
    with serve_in_thread(app(site), CONFIG) as server, RawClient(server.port) as client:
        client.send(b"GET /static/hello.txt HTTP/1.0\r\n\r\n")
        data = client.read_until_close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == HELLO


def test_a_slow_reader_gets_every_byte(site, no_leaks):
    with serve_in_thread(app(site), CONFIG) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.connect(("127.0.0.1", server.port))
        with sock:
            sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            chunks = []
            time.sleep(0.2)  # let the server fill the buffers and wait for writability
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        data = b"".join(chunks)
        assert data.partition(b"\r\n\r\n")[2] == BIG
        # other clients were served meanwhile: the loop was never blocked
        with RawClient(server.port) as client:
            assert client.request("GET", "/static/hello.txt").body == HELLO


def test_a_client_that_stops_reading_is_cut_off_after_the_send_timeout(tmp_path, no_leaks):
    (tmp_path / "huge.bin").write_bytes(b"x" * (48 << 20))
    config = ServerConfig(access_log=False, graceful_timeout=5.0, send_timeout=0.3)
    with serve_in_thread(app(tmp_path), config) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        with sock:
            sock.sendall(b"GET /static/huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(1.5)
            received = 0
            sock.settimeout(5)
            try:
                while data := sock.recv(1 << 20):
                    received += len(data)
            except ConnectionResetError:
                pass
        assert received < 48 << 20


def file_app(path, **kwargs) -> Router:
    routes = Router()

    @routes.get("/file")
    def send(request):
        return FileResponse(path, **kwargs)

    @routes.get("/bad")
    def bad(request):
        return FileResponse(path, status=99)

    return routes


def test_file_response_from_a_handler(site, no_leaks):
    with serve_in_thread(file_app(site / "sub" / "page.html"), CONFIG) as server, \
            RawClient(server.port) as client:
        response = client.request("GET", "/file")
        assert response.body == b"<p>hi</p>"
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert client.request("GET", "/bad").status == 500  # and its file closed (no_leaks)


def test_a_file_that_shrank_is_cut_short_with_the_connection_closed(site, no_leaks):
    routes = file_app(site / "hello.txt", count=len(HELLO) + 100)
    with serve_in_thread(routes, CONFIG) as server, RawClient(server.port) as client:
        client.send(b"GET /file HTTP/1.1\r\nHost: t\r\n\r\n")
        head, _, rest = client.read_until_close().partition(b"\r\n\r\n")
    assert b"content-length: %d" % (len(HELLO) + 100) in head.lower()
    assert rest == HELLO


def test_file_response_arguments(site):
    with pytest.raises(ValueError, match="offset"):
        FileResponse(site / "hello.txt", offset=-1)
    with pytest.raises(ValueError, match="count"):
        FileResponse(site / "hello.txt", count=-1)
    with pytest.raises(TypeError, match="needs a path or a binary file"):
        FileResponse(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        FileResponse(site / "missing")
    with open(site / "hello.txt", "rb") as file:
        response = FileResponse(file, offset=5)
        assert (response.count, response.content_type) == (len(HELLO) - 5,
                                                            "application/octet-stream")
        response.set_cookie("a", "1")
        response.close()
        assert file.closed
    assert isinstance(Response("x"), Response)


# -- the sendfile coroutine -----------------------------------------------------------


def test_sendfile_sends_the_head_and_a_slice_waiting_for_the_reader(site):
    left, right = socket.socketpair()
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    progress: list[int] = []

    def reader(sock, total):
        received = bytearray()
        while len(received) < total:
            received += yield from sock.recv(1000)  # small reads: the sender must wait
        return bytes(received)

    def main():
        with Socket(left) as writer, Socket(right) as receiver, \
                open(site / "big.bin", "rb") as file:
            task = yield from spawn(reader(receiver, 4 + 1_000_000))
            sent = yield from sendfile(writer, file.fileno(), 10, 1_000_000, b"HEAD",
                                       progress.append)
            return sent, (yield from task.join())

    sent, received = run(main())
    assert sent == 1_000_000 and received == b"HEAD" + BIG[10:1_000_010]
    assert progress[0] == 0 and progress[-1] == 1_000_000 and len(progress) > 2


def test_the_fallback_copy_sends_the_same_bytes(site):
    left, right = socket.socketpair()

    def reader(sock, total):
        received = bytearray()
        while len(received) < total:
            received += yield from sock.recv(65536)
        return bytes(received)

    def main():
        with Socket(left) as writer, Socket(right) as receiver, \
                open(site / "big.bin", "rb") as file:
            task = yield from spawn(reader(receiver, 200_000))
            sent = yield from _copy(writer, file.fileno(), 5, 200_000, None)
            return sent, (yield from task.join())

    assert run(main()) == (200_000, BIG[5:200_005])
