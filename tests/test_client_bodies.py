"""Request and response bodies beyond plain bytes, against corofw's own
server and raw loopback servers: uploads streamed from a generator or a
file (chunked), multipart forms with files, and gzip/deflate responses
decoded when asked for, within bounds."""

from __future__ import annotations

import gzip
import io
import socket
import tracemalloc
import zlib

import pytest
from raw_server import RawServer, call

from corofw import (
    Client,
    DecodingError,
    Response,
    Router,
    Timeout,
    WriteTimeout,
    compression_middleware,
    run,
    sleep,
    spawn,
    timeout_after,
)
from corofw.testing import serve_in_thread

pytestmark = pytest.mark.usefixtures("no_leaks")

app = Router()
BOMB = zlib.compress(b"\0" * (64 << 20), 9)  # 64 MiB of zeros in about 64 KiB


@app.post("/upload")
def upload(request):
    return {"headers": {k: v for k, v in request.headers.items()},
            "size": len(request.body), "head": request.body[:20].decode("latin-1")}


@app.post("/form")
def form(request):
    data = yield from request.form()
    fields = {}
    for name, value in data.items():
        if isinstance(value, str):
            fields[name] = data.getlist(name)
        else:
            fields[name] = {"filename": value.filename, "type": value.content_type,
                            "content": value.read().decode("latin-1")}
    return {"fields": fields, "content_type": request.headers["content-type"]}


@app.get("/encoded/{coding}")
def encoded(request, coding):
    body = b"hello, " * 1000
    data = {"gzip": gzip.compress, "deflate": zlib.compress}[coding](body)
    return Response(data, headers=[("content-encoding", coding)], content_type="text/plain")


@app.get("/bomb")
def bomb(request):
    return Response(BOMB, headers=[("content-encoding", "deflate")])


@app.get("/corrupt")
def corrupt(request):
    return Response(b"\x1f\x8bnot really", headers=[("content-encoding", "gzip")])


@app.get("/accept")
def accept(request):
    return {"accept-encoding": request.headers.get("accept-encoding")}


compressed = Router()
compressed.middleware(compression_middleware())


@compressed.get("/text")
def text(request):
    return "compressible text " * 500


@pytest.fixture(scope="module")
def server():
    with serve_in_thread(app) as srv:
        yield srv.url


def go(make, **options):
    def main():
        with Client(**options) as client:
            return (yield from make(client))

    return run(main())


# -- streamed uploads --------------------------------------------------------------------

def test_a_generator_is_sent_chunked_piece_by_piece(server):
    pulled = []

    def pieces():
        for i in range(50):
            pulled.append(i)
            yield b"%05d" % i * 1000

    def make(client):
        return (yield from client.post(server + "/upload", content=pieces()))

    seen = go(make).json()
    assert seen["headers"]["transfer-encoding"] == "chunked"
    assert "content-length" not in seen["headers"]
    assert seen["size"] == 50 * 5000 and seen["head"] == "00000" * 4
    assert pulled == list(range(50))


def test_a_file_is_streamed_and_empty_pieces_are_skipped(server):
    def make(client):
        first = yield from client.post(server + "/upload", content=io.BytesIO(b"x" * 200_000))
        second = yield from client.post(server + "/upload", content=[b"", b"ab", b"", b"c"])
        return first.json(), second.json()

    first, second = go(make)
    assert first["size"] == 200_000 and first["headers"]["transfer-encoding"] == "chunked"
    assert second["size"] == 3 and second["head"] == "abc"


def test_a_stream_giving_text_is_refused_and_its_errors_propagate(server):
    def make(pieces):
        def call_it(client):
            return (yield from client.post(server + "/upload", content=pieces))
        return call_it

    with pytest.raises(TypeError, match="bytes"):
        go(make(iter(["text"])))

    def failing():
        yield b"a"
        raise OSError("the disk went away")

    with pytest.raises(OSError, match="disk"):
        go(make(failing()))


def test_a_streamed_upload_stalled_by_the_server_times_out():
    def handler(server, conn, index):
        conn.recv(1)
        server.stopping.wait(10)

    def pieces():
        while True:
            yield b"z" * 65536

    def make(client):
        return (yield from timeout_after(10, client.post(url + "/", content=pieces())))

    with RawServer(handler) as srv:
        url = srv.url
        error, seconds = call(make, timeout=Timeout(write=0.3))
    assert type(error) is WriteTimeout and seconds < 3


def test_an_early_answer_to_a_streamed_upload_is_returned():
    def handler(server, conn, index):
        conn.recv(100)
        conn.sendall(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\n"
                     b"Connection: close\r\n\r\nbig")
        server.stopping.wait(1)

    def pieces():
        for _ in range(2000):
            yield b"z" * 65536

    def make(client):
        response = yield from timeout_after(10, client.post(url + "/", content=pieces()))
        return response.status_code, response.content

    with RawServer(handler) as srv:
        url = srv.url
        result, _ = call(make, timeout=Timeout(write=1))
    assert result == (413, b"big")


# -- multipart ---------------------------------------------------------------------------

def test_files_and_fields_as_multipart(server, tmp_path):
    path = tmp_path / "report.csv"
    path.write_bytes(b"a,b\n1,2\n")

    def make(client):
        with open(path, "rb") as handle:
            return (yield from client.post(server + "/form", data={"x": ["1", "2"], "y": 3},
                                           files={"plain": b"raw bytes",
                                                  "named": ("n.txt", "text \u00e9"),
                                                  "typed": ("t.bin", b"\x00\x01", "app/x"),
                                                  "file": handle}))

    seen = go(make).json()
    fields = seen["fields"]
    assert seen["content_type"].startswith("multipart/form-data; boundary=")
    assert fields["x"] == ["1", "2"] and fields["y"] == ["3"]
    assert fields["plain"] == {"filename": "upload", "type": "application/octet-stream",
                               "content": "raw bytes"}
    assert fields["named"] == {"filename": "n.txt", "type": "text/plain",
                               "content": "text \u00e9".encode().decode("latin-1")}
    assert fields["typed"]["type"] == "app/x" and fields["typed"]["content"] == "\x00\x01"
    assert fields["file"] == {"filename": "report.csv", "type": "text/csv",
                              "content": "a,b\n1,2\n"}


def test_filenames_cannot_break_out_of_their_header(server):
    def make(client):
        return (yield from client.post(server + "/form", files={
            "f": ('evil"\r\nContent-Type: text/html\r\n\r\n.txt', b"data")}))

    fields = go(make).json()["fields"]
    assert list(fields) == ["f"]
    assert fields["f"]["content"] == "data" and fields["f"]["type"] == "text/plain"
    assert "\r" not in fields["f"]["filename"] and '"' not in fields["f"]["filename"]


def test_each_form_gets_a_fresh_boundary_absent_from_its_content(server, monkeypatch):
    draws = iter([b"\x01" * 16, b"\x02" * 16])
    monkeypatch.setattr("corofw.http.request_body.os.urandom", lambda n: next(draws))
    taken = "01" * 16

    def make(client):
        return (yield from client.post(server + "/form",
                                       files={"f": ("a", b"--" + taken.encode())}))

    seen = go(make).json()
    assert seen["content_type"].endswith("boundary=" + "02" * 16)
    assert seen["fields"]["f"]["content"] == "--" + taken


def test_a_bad_file_entry_is_refused(server):
    def make(files):
        def post(client):
            return (yield from client.post(server + "/form", files=files))
        return post

    with pytest.raises(TypeError):
        go(make({"f": ("a", b"x", "t", "extra")}))
    with pytest.raises(TypeError):
        go(make({"f": 12}))


# -- decoding responses ------------------------------------------------------------------

def test_compressed_bodies_are_left_alone_unless_asked(server):
    def make(client):
        return (yield from client.get(server + "/encoded/gzip"))

    response = go(make)
    assert response.content[:2] == b"\x1f\x8b"


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_gzip_and_deflate_are_decoded_when_asked(server, coding):
    def make(client):
        whole = yield from client.get(server + f"/encoded/{coding}")
        streamed = yield from client.get(server + f"/encoded/{coding}", stream=True)
        pieces = []
        while piece := (yield from streamed.read_chunk()):
            pieces.append(piece)
        return whole, b"".join(pieces)

    whole, streamed = go(make, decompress=True)
    assert whole.text == "hello, " * 1000 and streamed == b"hello, " * 1000
    assert whole.headers["content-encoding"] == coding


def test_accept_encoding_is_sent_when_decompressing_and_can_be_overridden(server):
    def make(headers=None):
        def get(client):
            return (yield from client.get(server + "/accept", headers=headers))
        return get

    assert go(make()).json()["accept-encoding"] is None
    assert go(make(), decompress=True).json()["accept-encoding"] == "gzip, deflate"
    assert go(make({"Accept-Encoding": "identity"}),
              decompress=True).json()["accept-encoding"] == "identity"


def test_a_compressing_server_round_trips():
    def make(client):
        return (yield from client.get(srv.url + "/text"))

    with serve_in_thread(compressed) as srv:
        response = go(make, decompress=True)
    assert response.headers["content-encoding"] == "gzip"
    assert response.text == "compressible text " * 500


def test_a_decompression_bomb_grows_memory_only_by_what_is_read(server):
    def make(client):
        response = yield from client.get(server + "/bomb", stream=True)
        with response:
            tracemalloc.start()
            try:
                got = 0
                for _ in range(20):
                    got += len((yield from response.read_chunk()))
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        return got, peak

    got, peak = go(make, decompress=True)
    assert got == 20 * 65536
    assert peak < 4 << 20  # the 64 MiB it decodes to were never held


def test_a_body_read_whole_is_bounded(server, monkeypatch):
    monkeypatch.setattr("corofw.http.client_response.MAX_DECODED", 1 << 20)

    def make(client):
        return (yield from client.get(server + "/bomb"))

    with pytest.raises(DecodingError, match="more than 1048576 bytes"):
        go(make, decompress=True)


def test_a_corrupt_body_is_a_decoding_error(server):
    def make(client):
        return (yield from client.get(server + "/corrupt"))

    with pytest.raises(DecodingError, match="could not be decoded"):
        go(make, decompress=True)


def test_a_fast_body_read_gives_the_other_tasks_turns():
    body_size = 32 << 20

    def handler(server, conn, index):
        while b"\r\n\r\n" not in conn.recv(4096, socket.MSG_PEEK):
            pass
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % body_size)
        conn.sendall(b"x" * body_size)
        server.stopping.wait(10)

    def main(url):
        client = Client()
        response = yield from client.get(url, stream=True)
        connection = response._exchange.conn
        samples = []
        reading = True

        def ticker():
            while reading:
                samples.append(connection.received)
                yield from sleep(0)

        task = yield from spawn(ticker())
        content = yield from response.read()
        reading = False
        yield from task.join()
        client.close()
        return len(content), samples

    with RawServer(handler) as srv:
        size, samples = run(main(srv.url))
    assert size == body_size
    longest = max(after - before for before, after in zip(samples, samples[1:], strict=False))
    assert longest <= 20 * 65536, f"{longest} bytes read without another task's turn"
