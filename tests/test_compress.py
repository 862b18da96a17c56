"""The compression middleware: Accept-Encoding negotiation with q-values,
what is left alone (small, already encoded, no body, ranges, images,
no-transform, files), Vary and ETag, HEAD, and streams compressed chunk by
chunk as they stream."""

from __future__ import annotations

import gzip
import zlib
from types import GeneratorType

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from live import RawClient

from corofw import Request, Response, Router, StreamingResponse, run, sleep
from corofw.http.files import FileResponse
from corofw.http.server import ServerConfig
from corofw.testing import serve_in_thread
from corofw.web.compress import (
    _Stream,
    choose_encoding,
    compression_middleware,
    parse_accept_encoding,
)
from corofw.web.cors import cors_middleware

TEXT = ("corofw compresses text that repeats. " * 100).encode()


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    ("", None),
    ("gzip", "gzip"),
    ("GZip", "gzip"),
    ("x-gzip", "gzip"),
    ("deflate", None),
    ("gzip;q=0", None),
    ("gzip; q=0.000", None),
    ("gzip;q=0.001", "gzip"),
    ("*", "gzip"),
    ("*;q=0", None),
    ("*;q=0, gzip", "gzip"),
    ("gzip;q=0, *", None),           # an explicit q=0 beats the wildcard
    ("identity", None),
    ("identity;q=1, gzip;q=0.5", None),
    ("gzip;q=0.5, identity;q=0.5", "gzip"),
    ("gzip, identity;q=0", "gzip"),
    ("gzip;q=2", None),              # malformed q: the entry is ignored
    ("gzip;q=abc", None),
    ("gzip;level=1", None),
    ("deflate, gzip;q=0.3", "gzip"),
])
def test_choose_encoding_gzip_only(header, expected):
    assert choose_encoding(header, ("gzip",)) == expected


@pytest.mark.parametrize(("header", "expected"), [
    ("gzip, br", "br"),
    ("br;q=0.5, gzip", "gzip"),
    ("br;q=0, *", "gzip"),
    ("*", "br"),
])
def test_choose_encoding_prefers_brotli_at_equal_weight(header, expected):
    assert choose_encoding(header, ("br", "gzip")) == expected


@given(st.text(alphabet="gzipbr*identy;q=0.51, x-", max_size=40))
def test_a_chosen_coding_is_always_acceptable(header):
    coding = choose_encoding(header, ("br", "gzip"))
    if coding is not None:
        weights = parse_accept_encoding(header)
        assert weights.get(coding, weights.get("*", 0)) > 0


def make_app(**options) -> Router:
    routes = Router()
    routes.middleware(compression_middleware(**options))

    @routes.get("/text")
    def text(request):
        return Response(TEXT, content_type="text/html; charset=utf-8",
                        headers={"etag": '"v1"'})

    @routes.get("/small")
    def small(request):
        return "tiny"

    @routes.get("/png")
    def png(request):
        return Response(TEXT, content_type="image/png")

    @routes.get("/encoded")
    def encoded(request):
        return Response(gzip.compress(TEXT), content_type="text/plain",
                        headers={"content-encoding": "gzip"})

    @routes.get("/no-transform")
    def no_transform(request):
        return Response(TEXT, content_type="text/plain",
                        headers={"cache-control": "public, no-transform"})

    @routes.get("/partial")
    def partial(request):
        return Response(TEXT[:600], 206, {"content-range": f"bytes 0-599/{len(TEXT)}"},
                        "text/plain")

    @routes.get("/empty")
    def empty(request):
        return Response(b"", 204)

    @routes.get("/json")
    def as_json(request):
        return {"items": list(range(300))}

    @routes.get("/events")
    def events(request):
        def body():
            for n in range(3):
                yield f"data: event {n} {'x' * 50}\n\n"
                yield from sleep(0)
        return StreamingResponse(body(), content_type="text/event-stream")

    return routes


def call(routes: Router, path: str, method: str = "GET", **headers: str):
    request = Request(method, path, headers={name.replace("_", "-"): value
                                             for name, value in headers.items()})
    response = routes.handle(request)
    if type(response) is GeneratorType:
        response = run(response)
    return response


def test_a_text_response_is_gzipped_with_vary_and_a_weak_etag():
    response = call(make_app(), "/text", accept_encoding="gzip, deflate")
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["etag"] == 'W/"v1"'
    assert gzip.decompress(response.body) == TEXT and len(response.body) < len(TEXT) // 10


def test_not_accepted_means_identity_but_still_vary():
    for header in ({}, {"accept_encoding": "identity"}, {"accept_encoding": "gzip;q=0"}):
        response = call(make_app(), "/text", **header)
        assert response.body == TEXT and "content-encoding" not in response.headers
        assert response.headers["vary"] == "Accept-Encoding"
        assert response.headers["etag"] == '"v1"'


@pytest.mark.parametrize("path", ["/small", "/png", "/encoded", "/no-transform", "/partial",
                                  "/empty"])
def test_left_alone(path):
    plain = call(make_app(), path)
    response = call(make_app(), path, accept_encoding="gzip")
    assert response.body == plain.body
    assert (response.headers or {}).get("content-encoding") == \
        (plain.headers or {}).get("content-encoding")
    assert "vary" not in (response.headers or {})


def test_minimum_size_is_configurable():
    response = call(make_app(minimum_size=0), "/small", accept_encoding="gzip")
    assert gzip.decompress(response.body) == b"tiny"
    response = call(make_app(minimum_size=len(TEXT) + 1), "/text", accept_encoding="gzip")
    assert response.body == TEXT


def test_json_is_compressed():
    response = call(make_app(), "/json", accept_encoding="gzip")
    assert response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(response.body).startswith(b'{"items":[0,1,2')


def drive(body) -> list[bytes]:
    """Drive a streaming body as the server does: chunks out, traps to the kernel."""
    def runner():
        chunks, value = [], None
        while True:
            try:
                item = body.send(value)
            except StopIteration:
                return chunks
            if isinstance(item, bytes):
                chunks.append(item)
                value = None
            else:
                value = yield item
    return run(runner())


def test_a_stream_is_compressed_chunk_by_chunk_as_it_streams():
    response = call(make_app(), "/events", accept_encoding="gzip")
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    chunks = drive(response.body)
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    # every chunk decodes on its own arrival to exactly the event sent
    decoded = [decoder.decompress(chunk) for chunk in chunks]
    assert decoded[:3] == [f"data: event {n} {'x' * 50}\n\n".encode() for n in range(3)]
    assert b"".join(decoded) + decoder.flush() == b"".join(decoded[:3])
    assert decoder.eof


def test_closing_the_compressed_stream_closes_the_original_body():
    closed = []

    def body():
        try:
            yield b"x"
        finally:
            closed.append(True)

    original = body()
    next(original)
    stream = _Stream(original, *_gzip_parts())
    stream.close()
    assert closed == [True]
    with pytest.raises(StopIteration):
        stream.send(None)


def _gzip_parts():
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress, lambda: compressor.flush(zlib.Z_SYNC_FLUSH), compressor.flush


def test_a_head_gets_the_headers_a_get_would(no_leaks):
    config = ServerConfig(access_log=False, graceful_timeout=5.0)
    with serve_in_thread(make_app(), config) as server, RawClient(server.port) as client:
        get = client.request("GET", "/text", headers="Accept-Encoding: gzip\r\n")
        head = client.request("HEAD", "/text", headers="Accept-Encoding: gzip\r\n")
        assert head.body == b""
        for name in ("content-encoding", "content-length", "vary", "etag"):
            assert head.headers[name] == get.headers[name]
        stream_head = client.request("HEAD", "/events", headers="Accept-Encoding: gzip\r\n")
        assert stream_head.headers["content-encoding"] == "gzip"
        assert gzip.decompress(get.body) == TEXT


def test_over_the_wire_with_an_independent_decoder(no_leaks):
    config = ServerConfig(access_log=False, graceful_timeout=5.0)
    with serve_in_thread(make_app(), config) as server:
        response = httpx.get(server.url + "/text", headers={"accept-encoding": "gzip"})
        assert response.headers["content-encoding"] == "gzip"
        assert response.content == TEXT
        response = httpx.get(server.url + "/events", headers={"accept-encoding": "gzip"})
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.text == "".join(f"data: event {n} {'x' * 50}\n\n" for n in range(3))


def test_file_responses_are_sent_as_they_are(tmp_path):
    (tmp_path / "a.txt").write_bytes(TEXT)
    routes = Router()
    routes.middleware(compression_middleware())
    routes.static("/static", tmp_path)
    response = call(routes, "/static/a.txt", accept_encoding="gzip")
    assert isinstance(response, FileResponse)
    assert "content-encoding" not in response.headers
    response.close()


def test_with_cors_both_vary_values_are_kept():
    routes = make_app()
    routes.middleware(cors_middleware(allow_origins=["https://a.example"]))
    response = call(routes, "/text", accept_encoding="gzip", origin="https://a.example")
    assert response.headers.get_all("vary") == ["Origin, Accept-Encoding"]  # CORS is inner


def test_brotli_when_installed():
    brotli = pytest.importorskip("brotli", reason="the brotli package is not installed")
    response = call(make_app(), "/text", accept_encoding="gzip, br")
    assert response.headers["content-encoding"] == "br"
    assert brotli.decompress(response.body) == TEXT
    response = call(make_app(), "/events", accept_encoding="br")
    decoder = brotli.Decompressor()
    assert [decoder.process(chunk) for chunk in drive(response.body)][:3] == \
        [f"data: event {n} {'x' * 50}\n\n".encode() for n in range(3)]
    response = call(make_app(use_brotli=False), "/text", accept_encoding="br, gzip")
    assert response.headers["content-encoding"] == "gzip"


def test_configuration_errors():
    for kwargs in ({"minimum_size": -1}, {"gzip_level": 0}, {"brotli_quality": 12}):
        with pytest.raises(ValueError):
            compression_middleware(**kwargs)
