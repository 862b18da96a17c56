"""request.form(): urlencoded and multipart forms read by handlers, uploads
spooled to disk past the threshold and closed once the request is
answered, and every bad form answered 400/413/415 (never 500) over the
wire."""

from __future__ import annotations

import logging
from types import GeneratorType

import httpx
import pytest
from live import RawClient

from corofw import Response, Router, StreamingResponse, run, sleep
from corofw.http.forms import FormData, UploadFile
from corofw.http.messages import MalformedBody, Request
from corofw.http.multipart import FormLimits, encode_multipart
from corofw.http.server import ServerConfig
from corofw.testing import serve_in_thread

CONFIG = ServerConfig(access_log=False, graceful_timeout=5.0)


def post(routes: Router, body: bytes, content_type: str | None) -> Response:
    headers = {"content-type": content_type} if content_type else {}
    result = routes.handle(Request("POST", "/", headers=headers, body=body))
    if type(result) is GeneratorType:
        result = run(result)
    return result


def echo_app(limits: FormLimits | None = None, seen: list | None = None) -> Router:
    routes = Router()

    @routes.post("/")
    def echo(request):
        form = yield from request.form(limits)
        assert (yield from request.form()) is form  # read once, kept
        if seen is not None:
            seen.append(form)
        out = {}
        for name, value in form.items():
            if isinstance(value, UploadFile):
                out.setdefault(name, []).append(
                    {"filename": value.filename, "type": value.content_type,
                     "size": value.size, "content": value.read().decode("latin-1")})
            else:
                out.setdefault(name, []).append(value)
        return out

    return routes


def test_urlencoded_form():
    response = post(echo_app(), b"a=1&tag=x&tag=y+z&caf%C3%A9=%E2%82%AC",
                    "application/x-www-form-urlencoded")
    assert response.status == 200
    assert response.body.decode() == '{"a":["1"],"tag":["x","y z"],"café":["€"]}'


def test_urlencoded_form_with_utf8_charset():
    response = post(echo_app(), b"a=1", "application/x-www-form-urlencoded; charset=UTF-8")
    assert response.body == b'{"a":["1"]}'


def test_multipart_form_with_fields_and_files():
    body = encode_multipart([("title", "héllo"), ("doc", b"%PDF\x00\xff", "a.pdf",
                                                  "application/pdf"),
                             ("doc", b"", "", "application/octet-stream")], "xYz")
    response = post(echo_app(), body, "multipart/form-data; boundary=xYz")
    assert response.status == 200, response.body
    assert response.body.decode() == (
        '{"title":["héllo"],"doc":[{"filename":"a.pdf","type":"application/pdf","size":6,'
        '"content":"%PDF\\u0000ÿ"},{"filename":"","type":"application/octet-stream",'
        '"size":0,"content":""}]}')


def test_form_data_is_a_read_only_multidict():
    seen: list[FormData] = []
    body = encode_multipart([("a", "1"), ("a", "2"), ("f", b"x", "f.txt", "text/plain")], "b")
    post(echo_app(seen=seen), body, "multipart/form-data; boundary=b")
    form = seen[0]
    assert form["a"] == "1" and form.getlist("a") == ["1", "2"] and len(form) == 2
    assert [upload.filename for upload in form.files()] == ["f.txt"]
    assert dict(form)["a"] == "1"


def test_uploads_spool_to_disk_past_the_threshold_and_are_closed_after_the_request():
    seen: list[FormData] = []
    big, small = b"B" * 5000, b"s" * 100
    body = encode_multipart([("big", big, "big.bin", "application/octet-stream"),
                             ("small", small, "small.bin", "application/octet-stream")], "b")
    response = post(echo_app(FormLimits(spool_threshold=1000), seen), body,
                    "multipart/form-data; boundary=b")
    assert response.status == 200
    form = seen[0]
    assert form["big"].file._rolled and not form["small"].file._rolled
    assert form["big"].closed and form["small"].closed


def test_uploads_stay_open_until_a_streamed_response_ends():
    routes = Router()
    uploads = []

    @routes.post("/")
    def stream_back(request):
        form = yield from request.form()
        upload = form["f"]
        uploads.append(upload)

        def body():
            yield from sleep(0)
            yield upload.read()

        return StreamingResponse(body())

    body = encode_multipart([("f", b"content", "f.txt", "text/plain")], "b")
    response = post(routes, body, "multipart/form-data; boundary=b")
    assert not uploads[0].closed

    def drain():
        chunks = []
        send = None
        while True:
            try:
                item = response.body.send(send)
            except StopIteration:
                return chunks
            if isinstance(item, bytes):
                chunks.append(item)
                send = None
            else:
                send = yield item

    assert run(drain()) == [b"content"]
    assert uploads[0].closed


def test_uploads_are_closed_when_the_handler_fails_and_with_middleware():
    routes = Router()
    uploads = []

    @routes.middleware
    def reads_first(request, call_next):
        form = yield from request.form()
        uploads.append(form["f"])
        if request.query.get("stop"):
            return Response("stopped by middleware", 403)
        return (yield from call_next(request))

    @routes.post("/")
    def handler(request):
        form = yield from request.form()
        assert form["f"] is uploads[-1] and not form["f"].closed
        if request.query.get("fail"):
            raise ValueError("handler failed")
        return "ok"

    @routes.error_handler(ValueError)
    def handled(request, exc):
        assert not uploads[-1].closed  # the error handler still sees it
        return "handled", 500

    body = encode_multipart([("f", b"x", "f.txt", "text/plain")], "b")
    for target, status in (("/", 200), ("/?fail=1", 500), ("/?stop=1", 403)):
        request = Request("POST", target, headers={"content-type":
                                                   "multipart/form-data; boundary=b"},
                          body=body)
        response = run(routes.handle(request))
        assert response.status == status
        assert uploads[-1].closed


@pytest.mark.parametrize(("body", "content_type", "status", "message"), [
    (b"a=1", None, 415, "request has no Content-Type"),
    (b"{}", "application/json", 415, "cannot read a application/json body as a form"),
    (b"a=1", "application/x-www-form-urlencoded; charset=latin-1", 415, "charset 'latin-1'"),
    (b"a=%FF", "application/x-www-form-urlencoded", 400, "not valid UTF-8"),
    (b"x", "multipart/form-data", 400, "without a boundary parameter"),
    (b"x", "multipart/form-data; boundary=", 400, "malformed Content-Type"),
    (b"x", 'multipart/form-data; boundary="a;b"', 400, "bad multipart boundary"),
    (b"x", 'multipart/form-data; boundary="bad boundary "', 400, "bad multipart boundary"),
    (b"--b\r\n", "multipart/form-data; boundary=b", 400, "truncated"),
    (b'--b\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\nxx',
     "multipart/form-data; boundary=b", 400, "truncated in part 'f'"),
    (b"--b\r\nX: 1\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=b", 400,
     "no Content-Disposition"),
    (b'--b\r\nContent-Disposition: form-data; name="f"\r\n\r\n\xff\r\n--b--',
     "multipart/form-data; boundary=b", 400, "form field 'f' is not valid utf-8"),
    (b'--b\r\nContent-Disposition: form-data; name="f"\r\nContent-Type: text/plain; '
     b'charset=nope\r\n\r\nx\r\n--b--', "multipart/form-data; boundary=b", 415,
     "unknown charset 'nope'"),
    (b"a=12345678901", "application/x-www-form-urlencoded", 413, "larger than 10 bytes"),
    (encode_multipart([("f", b"x" * 11, "f", "t/p")], "b"), "multipart/form-data; boundary=b",
     413, "larger than 10 bytes"),
])
def test_bad_forms_are_answered_with_the_right_status(body, content_type, status, message):
    response = post(echo_app(FormLimits(max_field_size=10, max_file_size=10)), body,
                    content_type)
    assert response.status == status
    assert message in response.body.decode()


def test_a_handler_may_catch_a_bad_form_as_a_value_error():
    routes = Router()

    @routes.post("/")
    def lenient(request):
        try:
            yield from request.form()
        except ValueError as exc:
            assert isinstance(exc, MalformedBody) and exc.status == 415
            return "no form, fine"
        return "form"

    assert post(routes, b"{}", "application/json").body == b"no form, fine"


# -- on the wire ---------------------------------------------------------------------


def test_forms_over_the_wire_from_an_independent_encoder(no_leaks):
    seen: list[FormData] = []
    with serve_in_thread(echo_app(FormLimits(spool_threshold=100), seen), CONFIG) as server:
        response = httpx.post(server.url + "/", data={"name": "Zoë", "n": ["1", "2"]},
                              files={"up": ("r\u00e9sum\u00e9.txt", b"R" * 300,
                                            "text/plain")})
        assert response.status_code == 200, response.text
        assert response.json() == {
            "name": ["Zoë"], "n": ["1", "2"],
            "up": [{"filename": "résumé.txt", "type": "text/plain", "size": 300,
                    "content": "R" * 300}]}
        response = httpx.post(server.url + "/", data={"a": "1 2", "b": "&="})
        assert response.json() == {"a": ["1 2"], "b": ["&="]}
    assert all(upload.closed for form in seen for upload in form.files())


def test_bad_forms_over_the_wire_are_4xx_never_500(no_leaks, caplog):
    caplog.set_level(logging.ERROR)
    routes = echo_app(FormLimits(max_files=1))
    cases = [
        ("multipart/form-data; boundary=b", b"--b\r\ntruncated", 400),
        ("multipart/form-data", b"x", 400),
        ("text/plain", b"x", 415),
        ("multipart/form-data; boundary=b",
         encode_multipart([("a", b"1", "a", "t/p"), ("b", b"2", "b", "t/p")], "b"), 413),
    ]
    with serve_in_thread(routes, CONFIG) as server, RawClient(server.port) as client:
        for content_type, body, status in cases:
            response = client.request("POST", "/", body, f"Content-Type: {content_type}\r\n")
            assert response.status == status, response.body
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
