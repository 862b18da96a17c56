"""Responses on the wire: headers a handler sets (Content-Type, repeated
Set-Cookie), error handlers and HTTP errors, JSON that is not JSON,
redirects, invalid content types, request bodies in a bad charset or that
are not JSON, and trailing-slash redirects."""

from __future__ import annotations

import logging
import math

import httpx
import pytest
from live import RawClient, get

from corofw import Headers, HTTPError, Response, Router, StreamingResponse, sleep
from corofw.http.server import ServerConfig
from corofw.testing import serve_in_thread

FAST = dict(keep_alive_timeout=2.0, header_timeout=2.0, body_timeout=2.0, send_timeout=2.0,
            graceful_timeout=5.0, access_log=False)


def config(**overrides) -> ServerConfig:
    return ServerConfig(**{**FAST, **overrides})


def fetch(app: Router, path: str, method: str = "GET", body: bytes = b"",
          headers: str = "") -> tuple:
    """One request over a raw socket: (status, header pairs, body)."""
    with serve_in_thread(app, config()) as server, RawClient(server.port) as client:
        response = client.request(method, path, body, headers)
    return response.status, response.header_list, response.body


def values(header_list: list[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in header_list if key == name]


# -- 3. a Content-Type the handler sets replaces the default -------------------------

def content_type_app() -> Router:
    routes = Router()

    @routes.get("/tuple")
    def as_tuple(request):
        return "<p>hi</p>", 200, {"Content-Type": "text/html; charset=utf-8"}

    @routes.get("/response")
    def as_response(request):
        return Response("<p>hi</p>", headers={"content-type": "text/html"})

    @routes.get("/json-as-text")
    def json_as_text(request):
        return Response.json({"a": 1}, headers=[("CONTENT-TYPE", "text/plain")])

    @routes.get("/events")
    def events(request):
        def body():
            yield "data: one\n\n"
            yield from sleep(0)
            yield "data: two\n\n"
        return StreamingResponse(body(), headers={"Content-Type": "text/event-stream"})

    @routes.get("/default")
    def default(request):
        return Response("plain", headers={"x-extra": "1"})

    return routes


@pytest.mark.parametrize(("path", "expected"), [
    ("/tuple", "text/html; charset=utf-8"),
    ("/response", "text/html"),
    ("/json-as-text", "text/plain"),
    ("/events", "text/event-stream"),
    ("/default", "text/plain; charset=utf-8"),
])
def test_one_content_type_and_the_handlers_wins(path, expected):
    status, header_list, _ = fetch(content_type_app(), path)
    assert status == 200
    assert values(header_list, "content-type") == [expected]


def test_content_type_set_by_middleware_replaces_the_default():
    routes = content_type_app()

    @routes.middleware
    def as_html(request, call_next):
        response = yield from call_next(request)
        response.set_header("Content-Type", "text/html; charset=utf-8")
        return response

    with serve_in_thread(routes, config()) as server, httpx.Client() as client:
        for path in ("/default", "/events"):
            r = client.get(server.url + path)
            assert r.headers.get_list("content-type") == ["text/html; charset=utf-8"]


# -- 4. every value of a repeated header is sent -------------------------------------

COOKIES = [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/")]


def cookie_app() -> Router:
    routes = Router()

    @routes.get("/pairs")
    def pairs(request):
        return "ok", 200, COOKIES

    @routes.get("/multi")
    def multi(request):
        return {"ok": True}, 201, Headers(COOKIES)

    @routes.get("/replaces")
    def replaces(request):
        response = Response("ok", headers=[("set-cookie", "old=1"), ("x-kept", "1")])
        return response, 200, COOKIES

    @routes.get("/refused")
    def refused(request):
        raise HTTPError(401, "log in", headers=COOKIES)

    @routes.get("/refused-plain")
    def refused_plain(request):
        raise HTTPError(403, "no", headers=COOKIES)

    @routes.error_handler(401)
    def unauthorized(request, exc):
        return {"error": exc.detail}, 401

    return routes


@pytest.mark.parametrize("path", ["/pairs", "/multi", "/refused", "/refused-plain"])
def test_repeated_set_cookie_is_sent_whole(path):
    with serve_in_thread(cookie_app(), config()) as server, httpx.Client() as client:
        r = client.get(server.url + path)
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert dict(r.cookies) == {"a": "1", "b": "2"}


def test_tuple_headers_replace_the_responses_own_by_name():
    status, header_list, _ = fetch(cookie_app(), "/replaces")
    assert values(header_list, "set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert values(header_list, "x-kept") == ["1"]


def test_headers_update_keeps_every_value_it_is_given():
    headers = Headers([("Set-Cookie", "old=1"), ("X-A", "1")])
    headers.update([("set-cookie", "a=1"), ("Set-Cookie", "b=2"), ("x-b", "2")])
    assert headers.get_all("set-cookie") == ["a=1", "b=2"]
    assert headers.items() == [("X-A", "1"), ("set-cookie", "a=1"), ("Set-Cookie", "b=2"),
                               ("x-b", "2")]
    headers.update({"X-A": "3"})
    assert headers.get_all("x-a") == ["3"]


# -- 5. error_handler(Exception) leaves deliberate HTTP errors alone ---------------------

def catch_all_app() -> Router:
    routes = Router()

    @routes.get("/items")
    def items(request):
        return "items"

    @routes.get("/forbidden")
    def forbidden(request):
        raise HTTPError(403, "not yours")

    @routes.get("/boom")
    def boom(request):
        yield from sleep(0)
        raise RuntimeError("exploded")

    @routes.error_handler(Exception)
    def everything(request, exc):
        return {"error": type(exc).__name__}, 500

    return routes


def test_catch_all_handler_keeps_http_error_statuses():
    with serve_in_thread(catch_all_app(), config()) as server, httpx.Client() as client:
        r = client.get(server.url + "/missing")
        assert (r.status_code, r.text) == (404, "Not Found\n")
        r = client.post(server.url + "/items")
        assert r.status_code == 405
        assert r.headers["allow"] == "GET, HEAD, OPTIONS"
        r = client.get(server.url + "/forbidden")
        assert (r.status_code, r.text) == (403, "not yours\n")
        r = client.get(server.url + "/boom")
        assert (r.status_code, r.json()) == (500, {"error": "RuntimeError"})


def test_http_error_and_status_handlers_still_take_http_errors():
    routes = catch_all_app()
    sub = Router()

    @sub.get("/forbidden")
    def forbidden(request):
        raise HTTPError(403)

    @sub.error_handler(HTTPError)
    def http_errors(request, exc):
        return {"status": exc.status}, exc.status

    routes.mount("/sub", sub)

    @routes.error_handler(404)
    def not_found(request, exc):
        return "nothing here", 404

    with serve_in_thread(routes, config()) as server, httpx.Client() as client:
        r = client.get(server.url + "/missing")
        assert (r.status_code, r.text) == (404, "nothing here")
        r = client.get(server.url + "/sub/forbidden")
        assert (r.status_code, r.json()) == (403, {"status": 403})
        r = client.get(server.url + "/forbidden")
        assert (r.status_code, r.text) == (403, "not yours\n")


# -- 6. url_for refuses dot segments -------------------------------------------------------

def files_app() -> Router:
    routes = Router()

    @routes.get("/files/{name}", name="file")
    def file(request, name):
        return f"file {name}"

    @routes.get("/files/{path:path}/raw", name="raw")
    def raw(request, path):
        return f"raw {path}"

    @routes.get("/admin", name="admin")
    def admin(request):
        return "admin"

    return routes


@pytest.mark.parametrize(("name", "params"), [
    ("file", {"name": ".."}),
    ("file", {"name": "."}),
    ("raw", {"path": "../../admin"}),
    ("raw", {"path": "a/./b"}),
    ("raw", {"path": "a/.."}),
])
def test_url_for_refuses_dot_segments(name, params):
    routes = files_app()
    with pytest.raises(ValueError, match="dot segment"):
        routes.url_for(name, **params)


@pytest.mark.parametrize("value", ["...", ".hidden", "a..b", "%2e%2e", "..x"])
def test_url_for_keeps_values_with_dots_that_are_not_dot_segments(value):
    routes = files_app()
    url = routes.url_for("file", name=value)
    with serve_in_thread(routes, config()) as server, httpx.Client() as client:
        assert client.get(server.url + url).text == f"file {value}"


# -- 7. JSON that is not JSON is refused ------------------------------------------------

def test_nan_in_a_dict_is_a_logged_500_not_invalid_json(caplog):
    caplog.set_level(logging.ERROR, logger="corofw.server")
    routes = Router()

    @routes.get("/avg")
    def average(request):
        return {"avg": math.nan}

    @routes.get("/big")
    def big(request):
        return Response.json([math.inf])

    with serve_in_thread(routes, config()) as server, httpx.Client() as client:
        for path in ("/avg", "/big"):
            r = client.get(server.url + path)
            assert r.status_code == 500
            assert "NaN" not in r.text and "Infinity" not in r.text
    assert "average returned a dict that cannot be serialised as JSON" in caplog.text
    assert "Out of range float values are not JSON compliant" in caplog.text


# -- 8. redirects to non-ASCII URLs are percent-encoded --------------------------------

@pytest.mark.parametrize(("target", "location"), [
    ("/caf\u00e9", "/caf%C3%A9"),
    ("/\u65e5\u672c?q=\u00fc#top", "/%E6%97%A5%E6%9C%AC?q=%C3%BC#top"),
    ("https://example.com/a b/%41%zz?x=[1]&y=a+b;c", "https://example.com/a%20b/%41%25zz?x=[1]&y=a+b;c"),
    ("/plain/path?a=1&b=2", "/plain/path?a=1&b=2"),
    ("/x\r\nset-cookie: a=1", "/x%0D%0Aset-cookie:%20a=1"),
])
def test_redirect_location_is_percent_encoded(target, location):
    routes = Router()

    @routes.get("/go")
    def go(request):
        return Response.redirect(target, 302)

    status, header_list, _ = fetch(routes, "/go")
    assert status == 302
    assert values(header_list, "location") == [location]
    assert values(header_list, "set-cookie") == []


# -- 12. an invalid content_type is a 500, with or without other headers -----------------

@pytest.mark.parametrize("content_type", [
    "text/plain\r\nx-injected: 1",
    "text/plain; charset=\u2603",
])
@pytest.mark.parametrize("extra", [None, {"x-extra": "1"}])
def test_invalid_content_type_is_a_logged_500(caplog, content_type, extra):
    caplog.set_level(logging.ERROR, logger="corofw.server")
    routes = Router()

    @routes.get("/bad")
    def bad(request):
        return Response("x", headers=extra, content_type=content_type)

    @routes.get("/")
    def index(request):
        return "index"

    with serve_in_thread(routes, config()) as server, RawClient(server.port) as client:
        client.send(get("/bad"))
        response = client.response()
        assert response.status == 500
        assert values(response.header_list, "x-injected") == []
        assert client.is_closed()
        with RawClient(server.port) as again:
            assert again.request("GET", "/").body == b"index"
    assert "invalid response to GET /bad" in caplog.text
    assert "content-type" in caplog.text


# -- 13. request bodies: a bad charset, JSON that does not parse ---------------------------

def body_app() -> Router:
    routes = Router()

    @routes.post("/text")
    def text(request):
        return request.text

    @routes.post("/json")
    def parse(request):
        return {"got": request.json()}

    return routes


@pytest.mark.parametrize(("content_type", "body", "expected"), [
    ("text/plain; charset=nope", "h\u00e9llo".encode(), "h\u00e9llo"),
    ("text/plain; charset=hex", "h\u00e9llo".encode(), "h\u00e9llo"),
    ("text/plain; charset=rot13", b"abc", "abc"),
    ("text/plain; charset=undefined", b"abc", "abc"),
    ("text/plain; charset=idna", b"\xff", "\ufffd"),
    ("text/plain; charset=latin-1", "h\u00e9llo".encode("latin-1"), "h\u00e9llo"),
    ("text/plain", b"bad \xff utf-8", "bad \ufffd utf-8"),
])
def test_request_text_with_a_charset_it_cannot_use_falls_back_to_utf8(caplog, content_type,
                                                                     body, expected):
    caplog.set_level(logging.ERROR, logger="corofw.server")
    with serve_in_thread(body_app(), config()) as server, httpx.Client() as client:
        r = client.post(server.url + "/text", content=body,
                        headers={"content-type": content_type})
    assert (r.status_code, r.text) == (200, expected)
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "request body is not valid JSON: Expecting property name"),
    (b"", "request body is not valid JSON: Expecting value"),
    (b'"\xff"', "request body is not valid JSON"),
    (b"[" * 100_000, "request body is not valid JSON: nested too deeply"),
])
def test_malformed_json_body_is_a_400_saying_why(caplog, body, message):
    caplog.set_level(logging.ERROR, logger="corofw.server")
    with serve_in_thread(body_app(), config()) as server, httpx.Client() as client:
        r = client.post(server.url + "/json", content=body)
        assert r.status_code == 400
        assert r.text.startswith(message)
        assert client.post(server.url + "/json", json=[1, 2]).json() == {"got": [1, 2]}
    assert "Traceback" not in caplog.text


def test_malformed_json_is_still_a_value_error_for_the_handler():
    routes = Router()

    @routes.post("/lenient")
    def lenient(request):
        try:
            return {"got": request.json()}
        except ValueError:
            return {"got": None}

    with serve_in_thread(routes, config()) as server, httpx.Client() as client:
        assert client.post(server.url + "/lenient", content=b"{").json() == {"got": None}


# -- trailing slashes ----------------------------------------------------------------------

def slash_app(**options) -> Router:
    routes = Router(**options)
    api = Router()

    @routes.get("/items")
    def items(request):
        return f"items {request.query_string}"

    @routes.post("/items")
    def add_item(request):
        return f"added {request.body.decode()}"

    @routes.get("/folders/")
    def folders(request):
        return "folders"

    @routes.get("/users/{user_id:int}")
    def user(request, user_id):
        return f"user {user_id}"

    @routes.get("//{host}")
    def odd(request, host):
        return "odd"

    @api.get("/")
    def api_index(request):
        return "api"

    routes.mount("/api", api)
    return routes


@pytest.mark.parametrize(("path", "location"), [
    ("/items/", "/items"),
    ("/items/?q=1&r=%C3%A9", "/items?q=1&r=%C3%A9"),
    ("/folders", "/folders/"),
    ("/users/7/", "/users/7"),
    ("/api", "/api/"),
    ("/items%2F", "/items"),
    ("http://test/folders?x=%20", "/folders/?x=%20"),
])
def test_trailing_slash_is_redirected_with_307(path, location):
    status, header_list, _ = fetch(slash_app(), path)
    assert status == 307
    assert values(header_list, "location") == [location]


def test_trailing_slash_redirect_keeps_method_and_body():
    with serve_in_thread(slash_app(), config()) as server, \
            httpx.Client(follow_redirects=True) as client:
        r = client.post(server.url + "/items/", content=b"pen")
        assert (r.status_code, r.text) == (200, "added pen")
        assert [h.status_code for h in r.history] == [307]
        assert client.get(server.url + "/items/?q=1").text == "items q=1"


@pytest.mark.parametrize("path", ["/nothing/", "/nothing", "/users/x/", "//evil.example/", "/"])
def test_no_redirect_when_the_other_form_is_not_routed_either(path):
    status, header_list, _ = fetch(slash_app(), path)
    assert status == 404
    assert values(header_list, "location") == []


def test_trailing_slash_redirects_can_be_turned_off():
    status, header_list, _ = fetch(slash_app(redirect_slashes=False), "/items/")
    assert status == 404
    assert values(header_list, "location") == []
