"""Cookies: request.cookies parsed from what browsers send, set_cookie and
delete_cookie on every response type, and every value that could break a
cookie or inject a header refused."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from live import RawClient

from corofw import Response, Router, StreamingResponse, sleep
from corofw.http.cookies import format_set_cookie, parse_cookie_header
from corofw.http.messages import Request
from corofw.http.server import ServerConfig
from corofw.testing import serve_in_thread

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
OCTETS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\')
names = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=12)
values = st.text(alphabet=OCTETS, max_size=20)


def cookies_of(header: str | list[str]) -> Request:
    headers = [("cookie", h) for h in ([header] if isinstance(header, str) else header)]
    return Request("GET", "/", headers=headers)


# -- reading -------------------------------------------------------------------------


def test_a_request_that_never_reads_its_cookies_does_not_parse_them():
    request = cookies_of("a=1")
    with pytest.raises(AttributeError):
        request._cookies  # noqa: B018
    assert request.cookies == {"a": "1"}
    assert request.cookies is request.cookies


@pytest.mark.parametrize(("header", "expected"), [
    ("a=1; b=2", [("a", "1"), ("b", "2")]),
    ("a=1;b=2", [("a", "1"), ("b", "2")]),             # no space
    ("  a = 1 ;\tb=2 ; ", [("a", "1"), ("b", "2")]),   # whitespace around everything
    ('a="quoted value"', [("a", "quoted value")]),     # DQUOTEs dropped
    ('a="', [("a", '"')]),                              # a lone quote is kept
    ("a=", [("a", "")]),
    ("a==b=", [("a", "=b=")]),                          # only the first '=' splits
    ("a=x,y; b=p q", [("a", "x,y"), ("b", "p q")]),     # what document.cookie lets through
    ("a=1; a=2", [("a", "1"), ("a", "2")]),
    ("novalue; a=1", [("a", "1")]),                     # no '=': dropped
    ("=x; a=1", [("a", "1")]),                          # empty name
    ("b(ad=1; a=1", [("a", "1")]),                      # not a token
    ("a=1\x00; b=2", [("b", "2")]),                     # control character
    ("a=caf\xc3\xa9", [("a", "café")]),                 # UTF-8 bytes, as decoded latin-1
    ("a=\xff\xfe; b=2", [("b", "2")]),                  # bytes that are not UTF-8
    ("", []),
    (";;;", []),
])
def test_parse_cookie_header(header, expected):
    assert parse_cookie_header(header) == expected


def test_the_first_of_a_repeated_name_wins_and_getlist_gives_all():
    request = cookies_of("sid=specific; sid=general")
    assert request.cookies["sid"] == "specific"
    assert request.cookies.getlist("sid") == ["specific", "general"]
    assert dict(request.cookies) == {"sid": "specific"}


def test_several_cookie_headers_are_joined():
    request = cookies_of(["a=1", "b=2; c=3"])
    assert dict(request.cookies) == {"a": "1", "b": "2", "c": "3"}


def test_no_cookie_header_is_an_empty_mapping():
    assert dict(Request("GET", "/").cookies) == {}


@given(st.lists(st.tuples(names, values), max_size=8),
       st.sampled_from(["; ", ";", " ; ", ";\t"]))
def test_cookies_round_trip_as_a_browser_sends_them(pairs, separator):
    header = separator.join(f"{name}={value}" for name, value in pairs)
    assert parse_cookie_header(header) == pairs


@given(st.text(alphabet=st.characters(max_codepoint=255)))
def test_any_header_parses_to_well_formed_pairs_without_error(header):
    for name, value in parse_cookie_header(header):
        assert name and all(char in TOKEN_CHARS for char in name)
        assert ";" not in value
        assert not any(char < " " and char != "\t" or char == "\x7f" for char in value)


@given(names, values)
def test_what_set_cookie_writes_a_request_reads_back(name, value):
    line = format_set_cookie(name, value)
    cookie = line.split(";", 1)[0]  # what the browser sends back
    assert parse_cookie_header(cookie) == [(name, value)]


# -- writing -------------------------------------------------------------------------


def set_cookie_lines(response) -> list[str]:
    return response.headers.get_all("set-cookie")


def test_set_cookie_defaults_and_every_attribute():
    response = Response("ok")
    response.set_cookie("sid", "abc123")
    response.set_cookie("full", "v", max_age=3600,
                        expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
                        path="/app", domain="example.com", secure=True, httponly=True,
                        samesite="strict")
    response.set_cookie("bare", "x", path=None, samesite=None)
    assert set_cookie_lines(response) == [
        "sid=abc123; Path=/; SameSite=Lax",
        "full=v; Max-Age=3600; Expires=Wed, 02 Jan 2030 03:04:05 GMT; Domain=example.com; "
        "Path=/app; Secure; HttpOnly; SameSite=Strict",
        "bare=x",
    ]


@pytest.mark.parametrize(("kwargs", "attribute"), [
    ({"max_age": timedelta(hours=1)}, "Max-Age=3600"),
    ({"max_age": 0}, "Max-Age=0"),
    ({"expires": 0}, "Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
    ({"expires": datetime(2030, 1, 2, 3, 4, 5)}, "Expires=Wed, 02 Jan 2030 03:04:05 GMT"),
    ({"expires": datetime(2030, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))},
     "Expires=Wed, 02 Jan 2030 03:04:05 GMT"),
    ({"expires": "Wed, 02 Jan 2030 03:04:05 GMT"}, "Expires=Wed, 02 Jan 2030 03:04:05 GMT"),
    ({"samesite": "NONE", "secure": True}, "SameSite=None"),
    ({"domain": ".sub.example.com"}, "Domain=.sub.example.com"),
])
def test_set_cookie_attribute_forms(kwargs, attribute):
    assert attribute in format_set_cookie("a", "b", **kwargs).split("; ")


@pytest.mark.parametrize(("name", "value", "kwargs", "message"), [
    ("a", "x\r\nSet-Cookie: evil=1", {}, "contains CR"),
    ("a", "x\ny", {}, "contains LF"),
    ("a", "x;domain=evil", {}, "contains a semicolon"),
    ("a", "x,y", {}, "contains a comma"),
    ("a", "x y", {}, "contains a space"),
    ("a", 'x"y', {}, "contains a double quote"),
    ("a", "x\\y", {}, "contains a backslash"),
    ("a", "x\x00", {}, "control character '\\x00'"),
    ("a", "x\x7f", {}, "control character '\\x7f'"),
    ("a", "café", {}, "non-ASCII character 'é'"),
    ("", "x", {}, "is empty"),
    ("a b", "x", {}, "contains a space"),
    ("a=b", "x", {}, "contains '='"),
    ("a\r\n", "x", {}, "contains CR"),
    ("a", "x", {"path": "/a;b"}, "cookie path '/a;b' contains a semicolon"),
    ("a", "x", {"path": "/a\r\n"}, "contains CR"),
    ("a", "x", {"domain": "evil.com; x"}, "not a host name"),
    ("a", "x", {"domain": "exämple.com"}, "IDNA"),
    ("a", "x", {"samesite": "sometimes"}, "samesite must be"),
    ("a", "x", {"samesite": "none"}, "needs secure=True"),
    ("a", "x", {"expires": "Wed;x"}, "contains a semicolon"),
    ("__Secure-a", "x", {}, "__Secure- prefix"),
    ("__Host-a", "x", {"secure": True, "path": "/app"}, "__Host- prefix"),
    ("__Host-a", "x", {"secure": True, "domain": "example.com"}, "__Host- prefix"),
])
def test_set_cookie_refuses_what_would_break_the_cookie(name, value, kwargs, message):
    response = Response("ok")
    with pytest.raises(ValueError, match=message.replace("\\", "\\\\").replace("(", r"\(")):
        response.set_cookie(name, value, **kwargs)
    assert response.headers is None  # nothing half-added


@pytest.mark.parametrize("kwargs", [{"max_age": 1.5}, {"max_age": True}, {"expires": True},
                                    {"expires": [1]}])
def test_set_cookie_type_errors(kwargs):
    with pytest.raises(TypeError):
        format_set_cookie("a", "b", **kwargs)


def test_set_cookie_value_must_be_a_str():
    with pytest.raises(TypeError, match="must be a str"):
        Response().set_cookie("a", 1)  # type: ignore[arg-type]


def test_host_prefix_with_what_it_needs_is_accepted():
    assert format_set_cookie("__Host-id", "1", secure=True).startswith("__Host-id=1;")
    assert format_set_cookie("__Secure-id", "1", secure=True).startswith("__Secure-id=1;")


def test_delete_cookie():
    response = StreamingResponse(x for x in [b""])
    response.delete_cookie("sid", path="/app", domain="example.com")
    assert set_cookie_lines(response) == [
        "sid=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Domain=example.com; "
        "Path=/app; SameSite=Lax"]


# -- on the wire ---------------------------------------------------------------------


def cookie_app() -> Router:
    routes = Router()

    @routes.get("/login")
    def login(request):
        response = Response("in")
        response.set_cookie("sid", "s3cr3t", httponly=True)
        response.set_cookie("theme", "dark")
        return response

    @routes.get("/stream")
    def stream(request):
        def body():
            yield "a"
            yield from sleep(0)
            yield "b"
        response = StreamingResponse(body(), content_type="text/plain")
        response.set_cookie("streamed", "1")
        response.delete_cookie("old")
        return response

    @routes.get("/echo")
    def echo(request):
        return {"cookies": dict(request.cookies), "sid": request.cookies.getlist("sid")}

    return routes


def fetch(path: str, headers: str = ""):
    config = ServerConfig(access_log=False, graceful_timeout=5.0)
    with serve_in_thread(cookie_app(), config) as server, RawClient(server.port) as client:
        return client.request("GET", path, headers=headers)


def test_cookies_on_the_wire(no_leaks):
    response = fetch("/login")
    assert [value for name, value in response.header_list if name == "set-cookie"] == [
        "sid=s3cr3t; Path=/; HttpOnly; SameSite=Lax", "theme=dark; Path=/; SameSite=Lax"]
    response = fetch("/stream")
    assert response.body == b"ab"
    assert [value for name, value in response.header_list if name == "set-cookie"] == [
        "streamed=1; Path=/; SameSite=Lax",
        "old=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; SameSite=Lax"]
    response = fetch("/echo", "Cookie: sid=one; theme=dark; sid=two; junk\r\n")
    assert response.status == 200
    assert response.body == b'{"cookies":{"sid":"one","theme":"dark"},"sid":["one","two"]}'
