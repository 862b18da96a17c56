"""RequestParser against RFC 9112: the request line, header fields, message
framing, keep-alive, Expect, limits, errors, and the Request it builds.

Every table row is parsed twice, once fed whole and once one byte at a time,
and must give the same answer both ways (see :func:`outcome`)."""

from __future__ import annotations

import pytest

from corofw.http.parser import (
    DEFAULT_LIMITS,
    Limits,
    ProtocolError,
    RequestParser,
    ResponseParser,
)

HOST = b"Host: example.com\r\n"


def requests_in(data: bytes, limits: Limits = DEFAULT_LIMITS, step: int = 0) -> list:
    """Every request in ``data`` (fed whole, or ``step`` bytes at a time),
    calling next_request after every feed. ProtocolError propagates."""
    parser = RequestParser(limits, client=("127.0.0.1", 1234))
    out = []
    pieces = [data] if not step else [data[i:i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        parser.feed(piece)
        while (request := parser.next_request()) is not None:
            out.append(request)
    return out


def outcome(data: bytes, limits: Limits = DEFAULT_LIMITS) -> list | int:
    """The requests in ``data``, or the status of the ProtocolError it
    raises; fed whole and byte by byte, which must agree."""
    results = []
    for step in (0, 1):
        try:
            results.append([summary(r) for r in requests_in(data, limits, step)])
        except ProtocolError as exc:
            results.append(exc.status)
    assert results[0] == results[1], f"whole: {results[0]!r}, bytewise: {results[1]!r}"
    return results[0]


def summary(request) -> tuple:
    return (request.method, request.target, request.path, request.query_string,
            request.version, request.headers.items(), request.body, request.keep_alive)


def one(data: bytes, limits: Limits = DEFAULT_LIMITS):
    """The only request in ``data`` (checked whole and bytewise)."""
    result = outcome(data, limits)
    assert isinstance(result, list) and len(result) == 1, result
    (request,) = requests_in(data, limits)
    return request


def status_of(data: bytes, limits: Limits = DEFAULT_LIMITS) -> int:
    result = outcome(data, limits)
    assert isinstance(result, int), f"accepted: {result!r}"
    return result


def get(target: bytes = b"/", headers: bytes = HOST, version: bytes = b"HTTP/1.1") -> bytes:
    return b"GET " + target + b" " + version + b"\r\n" + headers + b"\r\n"


def post(body_headers: bytes, body: bytes, headers: bytes = HOST,
         version: bytes = b"HTTP/1.1") -> bytes:
    return b"POST / " + version + b"\r\n" + headers + body_headers + b"\r\n" + body


def chunked(body: bytes) -> bytes:
    return post(b"Transfer-Encoding: chunked\r\n", body)


# -- the basics ------------------------------------------------------------------


def test_simple_get():
    request = one(b"GET /hello?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n")
    assert request.method == "GET"
    assert request.target == "/hello?x=1"
    assert request.path == "/hello"
    assert request.query_string == "x=1"
    assert request.version == "HTTP/1.1"
    assert request.headers.items() == [("host", "example.com"), ("accept", "*/*")]
    assert request.body == b""
    assert request.keep_alive is True
    assert request.client == ("127.0.0.1", 1234)
    assert request.path_params == {}


def test_post_with_content_length():
    request = one(post(b"Content-Length: 5\r\n", b"hello"))
    assert request.body == b"hello"
    assert type(request.body) is bytes


def test_no_framing_headers_means_no_body():
    # RFC 9112 §6.3 (7): a request without Content-Length or Transfer-Encoding
    # has an empty body; what follows is the next request.
    requests = outcome(post(b"", b"") + get())
    assert [r[0] for r in requests] == ["POST", "GET"]
    assert requests[0][6] == b""


def test_content_length_zero():
    assert one(post(b"Content-Length: 0\r\n", b"")).body == b""


@pytest.mark.parametrize("method", [
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE",
    b"PROPFIND", b"M-SEARCH", b"get", b"X!#$%&'*+-.^_`|~9"])
def test_methods_are_case_sensitive_tokens(method):
    request = one(method + b" / HTTP/1.1\r\n" + HOST + b"\r\n")
    assert request.method == method.decode()


# -- the request line ------------------------------------------------------------


@pytest.mark.parametrize("line", [
    b"GET  / HTTP/1.1",          # two spaces
    b"GET /  HTTP/1.1",
    b" GET / HTTP/1.1",          # leading whitespace
    b"GET / HTTP/1.1 ",          # trailing whitespace
    b"GET\t/ HTTP/1.1",          # HTAB is not SP
    b"GET /\tHTTP/1.1",
    b"GET / HTTP/1.1\t",
    b"GET /",                    # HTTP/0.9
    b"GET HTTP/1.1",             # no target
    b"GET / ",
    b"/ HTTP/1.1",
    b"GET / http/1.1",           # HTTP-name is case-sensitive
    b"GET / Http/1.1",
    b"GET / HTTP/1.10",          # one digit each
    b"GET / HTTP/01.1",
    b"GET / HTTP/01.01",
    b"GET / HTTP/1",
    b"GET / HTTP/1.",
    b"GET / HTTP/.1",
    b"GET / HTTP/ 1.1",
    b"GET / HTTP /1.1",
    b"GET / HTTP/1.1x",
    b"GET / HTTP/1,1",
    b"GET / HTTP\\1.1",
    b"GE(T / HTTP/1.1",          # method must be a token
    b"GE\x00T / HTTP/1.1",
    b"G\xc3\xa9T / HTTP/1.1",
    b"GET /pa th HTTP/1.1",      # whitespace inside the target
    b"GET /\x00test HTTP/1.1",   # NUL in the target
    b"GET /\x7f HTTP/1.1",       # DEL
    b"GET /\x01 HTTP/1.1",
    b"GET /caf\xc3\xa9 HTTP/1.1",  # raw non-ASCII (RFC 3986: percent-encode it)
    b"GET /\xc0\xaf HTTP/1.1",     # overlong UTF-8 for "/"
    b"GET /path#frag HTTP/1.1",  # a fragment is never part of a request-target
    b"GET # HTTP/1.1",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
    b"   ",
])
def test_malformed_request_line_is_400(line):
    assert status_of(line + b"\r\n" + HOST + b"\r\n") == 400


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/9.9", b"HTTP/3.0",
                                     b"HTTP/0.0"])
def test_other_major_versions_are_505(version):
    assert status_of(get(version=version)) == 505


def test_http2_preface_is_505():
    assert status_of(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == 505


@pytest.mark.parametrize("version, expected", [
    (b"HTTP/1.1", "HTTP/1.1"), (b"HTTP/1.0", "HTTP/1.0"),
    (b"HTTP/1.2", "HTTP/1.1"), (b"HTTP/1.9", "HTTP/1.1")])
def test_higher_minor_versions_are_treated_as_1_1(version, expected):
    # RFC 9110 §6.2: a recipient treats a higher minor version as the highest
    # one it supports.
    assert one(get(version=version)).version == expected


def test_bad_request_line_fails_before_the_headers_arrive():
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.10\r\nHost: exam")
    with pytest.raises(ProtocolError) as info:
        parser.next_request()
    assert info.value.status == 400


def test_garbage_fails_on_its_first_byte():
    for garbage in (b"\x16", b"\x00", b" ", b"\t", b"\x80", b"{"):
        parser = RequestParser()
        parser.feed(garbage)
        with pytest.raises(ProtocolError) as info:
            parser.next_request()
        assert info.value.status == 400, garbage


# -- request targets -------------------------------------------------------------


@pytest.mark.parametrize("target, path, query", [
    (b"/", "/", ""),
    (b"/a/b/c", "/a/b/c", ""),
    (b"/a?", "/a", ""),
    (b"/a?b=c&d", "/a", "b=c&d"),
    (b"/a?b?c/d", "/a", "b?c/d"),
    (b"//double//slash", "//double//slash", ""),
    (b"/a/../b/./c", "/a/../b/./c", ""),  # dot segments are the router's business
    (b"/caf%C3%A9", "/caf\u00e9", ""),
    (b"/caf%c3%a9", "/caf\u00e9", ""),
    (b"/%E2%82%AC%F0%9F%98%80", "/\u20ac\U0001f600", ""),
    (b"/a%20b", "/a b", ""),
    (b"/a+b", "/a+b", ""),              # "+" means a space only in forms
    (b"/a%2Fb", "/a/b", ""),            # %2F decodes to "/" (the raw form is in target)
    (b"/a%2fb", "/a/b", ""),
    (b"/a%3Fb?c", "/a?b", "c"),         # an escaped "?" is part of the path
    (b"/a%25b", "/a%b", ""),
    (b"/%41%42", "/AB", ""),
    (b"/p?q=%zz&r=%", "/p", "q=%zz&r=%"),  # the query stays raw
    (b"/p?a=%20+b", "/p", "a=%20+b"),
    (b"/p?q=\"<>`{|}\\^", "/p", "q=\"<>`{|}\\^"),
    (b"/!$&'()*+,;=:@-._~", "/!$&'()*+,;=:@-._~", ""),
])
def test_origin_form(target, path, query):
    request = one(get(target))
    assert request.target == target.decode()
    assert request.path == path
    assert request.query_string == query


@pytest.mark.parametrize("target", [
    b"/%",              # an escape needs two hex digits
    b"/%4",
    b"/%zz",
    b"/%G0",
    b"/a%2",
    b"/%C3",            # not UTF-8 once decoded
    b"/%FF",
    b"/%C0%AF",         # overlong UTF-8 for "/"
    b"/%ED%A0%80",      # a UTF-16 surrogate
    b"/%00",            # control characters once decoded
    b"/a%00.html",
    b"/%0d%0aSet-Cookie:x",
    b"/%0A",
    b"/%09",
    b"/%7F",
    b"/%1b[31m",
])
def test_bad_percent_encoding_in_the_path_is_400(target):
    assert status_of(get(target)) == 400


@pytest.mark.parametrize("target, path, query", [
    (b"http://example.com/a/b?c=d", "/a/b", "c=d"),
    (b"HTTP://example.com/a", "/a", ""),
    (b"https://example.com:8443/a%20b", "/a b", ""),
    (b"http://example.com", "/", ""),
    (b"http://example.com?q", "/", "q"),
    (b"http://example.com/", "/", ""),
    (b"http://[::1]:8080/x", "/x", ""),
])
def test_absolute_form_takes_the_path_from_the_uri(target, path, query):
    request = one(get(target))
    assert (request.target, request.path, request.query_string) == (target.decode(), path, query)


def test_absolute_form_authority_replaces_the_host_header():
    # RFC 9112 §3.2.2: an origin server MUST ignore the received Host header
    # and use the host information of the request-target.
    request = one(get(b"http://other.example:81/x", b"Host: example.com\r\nA: b\r\n"))
    assert request.headers.get_all("host") == ["other.example:81"]
    assert request.headers["a"] == "b"
    assert request.host == "other.example:81"


@pytest.mark.parametrize("target", [
    b"http://user@example.com/",        # userinfo
    b"http://user:pw@example.com/",
    b"http:///path",                     # empty host
    b"http://exa mple.com/",
    b"http://a,b/",
    b"ftp://example.com/",               # not an http(s) URI
    b"mailto:a@example.com",
    b"http:/example.com/",
    b"example.com/path",                 # no scheme
    b"example.com:80",                   # authority-form is only for CONNECT
    b"a",
    b"?q",
])
def test_bad_targets_are_400(target):
    assert status_of(get(target)) == 400


def test_asterisk_form_only_with_options():
    request = one(b"OPTIONS * HTTP/1.1\r\n" + HOST + b"\r\n")
    assert (request.target, request.path, request.query_string) == ("*", "*", "")
    assert status_of(get(b"*")) == 400
    assert status_of(b"POST * HTTP/1.1\r\n" + HOST + b"\r\n") == 400
    assert status_of(b"OPTIONS *x HTTP/1.1\r\n" + HOST + b"\r\n") == 400


def test_connect_takes_authority_form_only():
    request = one(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert (request.method, request.target, request.path) == \
        ("CONNECT", "example.com:443", "example.com:443")
    assert one(b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n").path == "[::1]:443"
    for target in (b"/", b"example.com", b"http://example.com/", b"*", b"example.com:",
                   b"u@example.com:443"):
        assert status_of(b"CONNECT " + target + b" HTTP/1.1\r\n" + HOST + b"\r\n") == 400


# -- line endings ----------------------------------------------------------------


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\nHost: a\r\n\r\n",            # bare LF after the request line
    b"GET / HTTP/1.1\r\nHost: a\n\r\n",            # bare LF after a field
    b"GET / HTTP/1.1\r\nHost: a\r\n\n",            # bare LF ending the head
    b"GET / HTTP/1.1\r\nHost: a\nX-Test: v\r\n\r\n",
    b"GET / HTTP/1.1\n\n",
    b"GET / HTTP/1.1\rHost: a\r\n\r\n",            # bare CR as a line end
    b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: val\rue\r\n\r\n",   # bare CR in a value
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
    b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX\r: v\r\n\r\n",
    b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",        # a bare LF is not an empty line
    b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
])
def test_only_crlf_ends_a_line(data):
    assert status_of(data) == 400


def test_bare_cr_or_lf_fails_before_the_head_ends():
    for data in (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb", b"GET / HTTP/1.1\r\nHost: a\nX",
                 b"GET / HTTP/1.1\rX", b"GET / HTTP/1.1\r\nX: \x00"):
        parser = RequestParser()
        parser.feed(data)
        with pytest.raises(ProtocolError) as info:
            parser.next_request()
        assert info.value.status == 400, data


def test_empty_lines_before_a_request_are_ignored():
    # RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF)
    # received prior to the request-line.
    result = outcome(b"\r\n\r\n" + get() + b"\r\n" + get(b"/2"))
    assert [r[1] for r in result] == ["/", "/2"]


def test_a_split_crlf_is_not_bare():
    parser = RequestParser()
    for piece in (b"\r", b"\n", b"GET / HTTP/1.1\r", b"\nHost: a\r", b"\n\r", b"\n"):
        parser.feed(piece)
        request = parser.next_request()
    assert request is not None and request.path == "/"


# -- header fields ---------------------------------------------------------------


@pytest.mark.parametrize("line", [
    b"X-Test : value",            # whitespace between name and colon
    b"X-Test\t: value",
    b"Host : example.com",
    b"Transfer-Encoding : chunked",
    b"Content-Length : 5",
    b": empty-name",
    b"NoColonHere",
    b"Bad[Name: value",
    b"Bad Name: value",
    b"Bad\tName: value",
    b"Bad\"Name: value",
    b"Bad/Name: value",
    b"Bad@Name: value",
    b"X-T\xc3\xabst: value",      # non-ASCII name
    b"X\x00: value",
    b" X-Leading-Space: value",   # whitespace-preceded line (obs-fold at the start)
    b"\tX-Leading-Tab: value",
    b" ",
    b"\t",
])
def test_malformed_field_lines_are_400(line):
    assert status_of(b"GET / HTTP/1.1\r\nHost: a\r\n" + line + b"\r\n\r\n") == 400


def test_whitespace_line_before_the_first_field_is_400():
    assert status_of(b"GET / HTTP/1.1\r\n \r\nHost: a\r\n\r\n") == 400


@pytest.mark.parametrize("fold", [b"\r\n continued", b"\r\n\tcontinued", b"\r\n ",
                                  b"\r\n  \t x"])
def test_obs_fold_is_400(fold):
    # RFC 9112 §5.2: reject with 400 (we never unfold).
    assert status_of(b"GET / HTTP/1.1\r\nHost: a\r\nX-Test: value" + fold + b"\r\n\r\n") == 400
    assert status_of(post(b"Transfer-Encoding:" + fold + b"\r\nContent-Length: 5\r\n",
                          b"hello")) == 400


@pytest.mark.parametrize("byte", [bytes([b]) for b in [*range(0x00, 0x09), *range(0x0b, 0x0d),
                                                       *range(0x0e, 0x20), 0x7f]])
def test_control_bytes_in_values_are_400(byte):
    assert status_of(b"GET / HTTP/1.1\r\nHost: a\r\nX-Test: abc" + byte + b"def\r\n\r\n") == 400
    assert status_of(b"GET / HTTP/1.1\r\nHost: a\r\nX-Test: " + byte + b"\r\n\r\n") == 400


@pytest.mark.parametrize("value, expected", [
    (b"plain", "plain"),
    (b"  padded \t ", "padded"),
    (b"\tinner  spaces\tand\ttabs ", "inner  spaces\tand\ttabs"),
    (b"", ""),
    (b"   ", ""),
    (b"caf\xc3\xa9 \xff\x80", "caf\u00c3\u00a9 \u00ff\u0080"),  # obs-text, as latin-1
    (b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    (b"a: b: c", "a: b: c"),
])
def test_field_values(value, expected):
    request = one(b"GET / HTTP/1.1\r\nHost: a\r\nX-Test:" + value + b"\r\n\r\n")
    assert request.headers["x-test"] == expected


def test_headers_are_case_insensitive_and_keep_order_and_repeats():
    request = one(b"GET / HTTP/1.1\r\nHost: a\r\nX-Multi: 1\r\nACCEPT: text/html\r\n"
                  b"x-multi: 2\r\nSet-Cookie: a=b\r\n\r\n")
    headers = request.headers
    assert headers["Accept"] == headers["accept"] == headers["ACCEPT"] == "text/html"
    assert "X-MULTI" in headers and "x-missing" not in headers
    assert headers.get_all("X-Multi") == ["1", "2"]
    assert headers.get("x-missing", "d") == "d"
    assert [name for name, _ in headers.items()] == \
        ["host", "x-multi", "accept", "x-multi", "set-cookie"]
    assert len(headers) == 5


# -- Host --------------------------------------------------------------------------


def test_host_is_required_on_1_1_only():
    assert status_of(b"GET / HTTP/1.1\r\n\r\n") == 400
    assert status_of(b"GET / HTTP/1.1\r\nX: y\r\n\r\n") == 400
    assert one(b"GET / HTTP/1.0\r\n\r\n").headers.get("host") is None


@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
def test_more_than_one_host_is_400(version):
    assert status_of(get(b"/", b"Host: a\r\nHost: b\r\n", version)) == 400
    assert status_of(get(b"/", b"Host: a\r\nHost: a\r\n", version)) == 400
    assert status_of(get(b"/", b"Host: a\r\nX: y\r\nhost: a\r\n", version)) == 400


@pytest.mark.parametrize("value", [
    b"example.com", b"example.com:8080", b"EXAMPLE.com:", b"127.0.0.1", b"127.0.0.1:80",
    b"[::1]", b"[::1]:8080", b"[2001:db8::7]", b"xn--bcher-kva.example", b"a_b.example",
    b"%41.example", b"host-", b"localhost", b"a~b!$&'()*+;=",
])
def test_valid_host_values(value):
    assert one(get(b"/", b"Host: " + value + b"\r\n")).host == value.decode()


@pytest.mark.parametrize("value", [
    b"",                      # RFC 9110 §4.2.1: an http URI never has an empty host
    b":80",
    b"user@example.com",
    b"example.com/path",
    b"example.com, other.example",
    b"a,b",                   # a list: a combined duplicate Host
    b"exa mple.com",
    b"example.com:80a",
    b"example.com:8:80",
    b"[::1",
    b"::1",
    b"[::g]",
    b"%4",
    b"ex\\ample",
    b"caf\xc3\xa9.example",
    b"example.com?",
    b"example.com#",
])
def test_invalid_host_values_are_400(value):
    assert status_of(get(b"/", b"Host: " + value + b"\r\n")) == 400
    assert status_of(get(b"/", b"Host: " + value + b"\r\n", b"HTTP/1.0")) == 400


# -- keep-alive --------------------------------------------------------------------


@pytest.mark.parametrize("version, connection, keep_alive", [
    (b"HTTP/1.1", None, True),
    (b"HTTP/1.1", b"close", False),
    (b"HTTP/1.1", b"Close", False),
    (b"HTTP/1.1", b"CLOSE", False),
    (b"HTTP/1.1", b"keep-alive", True),
    (b"HTTP/1.1", b"upgrade, close", False),
    (b"HTTP/1.1", b" close ,upgrade", False),
    (b"HTTP/1.1", b"closed", True),
    (b"HTTP/1.1", b"", True),
    (b"HTTP/1.0", None, False),
    (b"HTTP/1.0", b"keep-alive", True),
    (b"HTTP/1.0", b"Keep-Alive", True),
    (b"HTTP/1.0", b"foo, keep-alive", True),
    (b"HTTP/1.0", b"keep-alive, close", False),
    (b"HTTP/1.0", b"close", False),
    (b"HTTP/1.0", b"keep-alives", False),
])
def test_keep_alive(version, connection, keep_alive):
    headers = HOST + (b"Connection: " + connection + b"\r\n" if connection is not None else b"")
    assert one(get(b"/", headers, version)).keep_alive is keep_alive
    # one rule for both kinds of message: a response with the same fields agrees
    responses = ResponseParser()
    responses.start("GET")
    responses.feed(version + b" 200 OK\r\n" + headers + b"Content-Length: 0\r\n\r\n")
    assert responses.next_head().keep_alive is keep_alive


def test_close_in_a_second_connection_line():
    assert one(get(b"/", HOST + b"Connection: upgrade\r\nConnection: close\r\n")).keep_alive \
        is False
    assert one(get(b"/", b"Connection: keep-alive\r\nConnection: close\r\n",
                   b"HTTP/1.0")).keep_alive is False


# -- Content-Length ----------------------------------------------------------------


@pytest.mark.parametrize("value, length", [
    (b"5", 5), (b"05", 5), (b"00005", 5), (b" 5 ", 5), (b"\t5\t", 5), (b"5, 5", 5),
    (b"5,5,5", 5), (b"5 ,\t5", 5), (b"0", 0), (b"00", 0), (b"0" * 18 + b"5", 5),
])
def test_valid_content_length(value, length):
    body = b"x" * length
    assert one(post(b"Content-Length: " + value + b"\r\n", body)).body == body


def test_identical_duplicate_content_length_lines():
    assert one(post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello")).body == b"hello"


@pytest.mark.parametrize("value", [
    b"+5", b"-5", b"-0", b"0x5", b"0X5", b"0o5", b"0b1", b"0_5", b"1_0", b"5 5", b" 5 5",
    b"5,6", b"5, 6", b"5, 05", b"5,", b",5", b"5,,5", b"", b" ", b"abc", b"5a", b"1e3",
    b"5.0", b"\xd9\xa5", b"\xef\xbc\x95", b"\xc2\xb2", b"5;", b"\"5\"", b"5\x0b",
    b"99999999999999999999",        # overflows 64 bits
    b"9223372036854775808",         # 2**63
    b"18446744073709551621",
    b"1" + b"0" * 5000,
    b"0" * 19 + b"5",               # more than 19 digits, even if only zeros lead
])
def test_invalid_content_length_is_400(value):
    assert status_of(post(b"Content-Length: " + value + b"\r\n", b"hello")) == 400


def test_differing_content_length_lines_are_400():
    assert status_of(post(b"Content-Length: 5\r\nContent-Length: 10\r\n", b"helloworld")) == 400
    assert status_of(post(b"Content-Length: 5\r\nContent-Length: 05\r\n", b"hello")) == 400
    assert status_of(post(b"Content-Length: 5\r\nContent-Length: 5, 6\r\n", b"hello")) == 400


def test_content_length_larger_than_the_limit_is_413():
    limits = Limits(max_body_bytes=10)
    assert one(post(b"Content-Length: 10\r\n", b"x" * 10), limits).body == b"x" * 10
    assert status_of(post(b"Content-Length: 11\r\n", b""), limits) == 413
    assert status_of(post(b"Content-Length: 9223372036854775807\r\n", b"")) == 413


def test_content_length_body_waits_for_every_byte():
    parser = RequestParser()
    parser.feed(post(b"Content-Length: 10\r\n", b"hello"))
    assert parser.next_request() is None
    assert parser.awaiting_body is not None
    parser.feed(b"world" + get(b"/next"))
    assert parser.next_request().body == b"helloworld"
    assert parser.awaiting_body is None
    assert parser.next_request().path == "/next"


# -- Transfer-Encoding -------------------------------------------------------------


@pytest.mark.parametrize("value", [
    b"chunked", b"Chunked", b"CHUNKED", b" chunked ", b"chunked,", b", chunked",
    b",,chunked, ,", b"\tchunked",
])
def test_chunked_spellings(value):
    assert one(post(b"Transfer-Encoding: " + value + b"\r\n",
                    b"5\r\nhello\r\n0\r\n\r\n")).body == b"hello"


@pytest.mark.parametrize("values, status", [
    ([b"chunked, chunked"], 400),            # applied twice
    ([b"chunked", b"chunked"], 400),
    ([b"chunked", b"Chunked"], 400),
    ([b"chunked, gzip"], 400),               # chunked not final
    ([b"chunked", b"gzip"], 400),
    ([b"chunked, foo"], 400),
    ([b"chunked, identity"], 400),
    ([b"chunked;ext=val"], 400),             # chunked takes no parameters
    ([b"chunked; q=1"], 400),
    ([b"chunked foo"], 400),                 # not a list of tokens
    ([b"chunked\"x\""], 400),
    ([b"\"chunked\""], 400),
    ([b"chunked;"], 400),
    ([b"gzip;q"], 400),
    ([b"ch\\unked"], 400),
    ([b""], 400),                            # empty
    ([b" , "], 400),
    ([b"chunked", b""], 400),
    ([b"\xe0\xa0\x80chunked"], 400),
    ([b"foo"], 501),                         # unknown codings
    ([b"gzip"], 501),
    ([b"identity"], 501),
    ([b"xchunked"], 501),
    ([b"chunkedx"], 501),
    ([b"chunk"], 501),
    ([b"gzip, chunked"], 501),               # valid, but we decode only chunked
    ([b"deflate,chunked"], 501),
    ([b"gzip", b"chunked"], 501),
    ([b"foo, chunked"], 501),
    ([b"gzip;level=\"9\", chunked"], 501),
])
def test_transfer_codings_other_than_a_final_chunked(values, status):
    headers = b"".join(b"Transfer-Encoding: " + value + b"\r\n" for value in values)
    assert status_of(post(headers, b"0\r\n\r\n")) == status


@pytest.mark.parametrize("headers", [
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
    b"Content-Length: 30\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\nContent-Length: 5\r\n",
    b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n",
    b"Transfer-Encoding: chunked \r\nContent-Length: 5\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: abc\r\n",
])
def test_content_length_with_transfer_encoding_is_400(headers):
    assert status_of(post(headers, b"0\r\n\r\nhello")) == 400


def test_transfer_encoding_on_http_1_0_is_400():
    assert status_of(post(b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n",
                          version=b"HTTP/1.0")) == 400
    assert status_of(post(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"hello",
                          version=b"HTTP/1.0")) == 400


def test_underscore_names_are_not_framing_headers():
    # Transfer_Encoding / Content_Length are valid tokens but other headers:
    # the body is not framed by them, so "hello" is the next request (400).
    assert status_of(post(b"Transfer_Encoding: chunked\r\n", b"0\r\n\r\n")) == 400
    assert status_of(post(b"Content_Length: 5\r\n", b"hello\r\n\r\n")) == 400
    assert outcome(post(b"Content_Length: 5\r\n", b""))[0][6] == b""


# -- chunked bodies ----------------------------------------------------------------


@pytest.mark.parametrize("body, decoded", [
    (b"0\r\n\r\n", b""),
    (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b"A\r\nhelloworld\r\n0\r\n\r\n", b"helloworld"),
    (b"a\r\nhelloworld\r\n0\r\n\r\n", b"helloworld"),
    (b"0005\r\nhello\r\n0000\r\n\r\n", b"hello"),
    (b"000000000000000f\r\n" + b"x" * 15 + b"\r\n0\r\n\r\n", b"x" * 15),
    (b"5\r\n\r\n\r\n\r\r\n0\r\n\r\n", b"\r\n\r\n\r"),
    (b"5;ext\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5;ext=value\r\nhello\r\n0;last\r\n\r\n", b"hello"),
    (b"5;a=1;b;c=\"quoted; \\\" \xff\"\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5 ;a = 1\t;\tb\r\nhello\r\n0\r\n\r\n", b"hello"),   # BWS around ";" and "="
    (b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n", b"hello"),
    (b"5\r\nhello\r\n0\r\nA: 1\r\nB:\r\nA: 2\r\n\r\n", b"hello"),
])
def test_chunked_bodies(body, decoded):
    assert one(chunked(body)).body == decoded


@pytest.mark.parametrize("body", [
    b"0x5\r\nhello\r\n0\r\n\r\n",
    b"+5\r\nhello\r\n0\r\n\r\n",
    b"-1\r\nhello\r\n0\r\n\r\n",
    b"+0\r\n\r\n",
    b"-0\r\n\r\n",
    b" 5\r\nhello\r\n0\r\n\r\n",        # whitespace before the size
    b"\t5\r\nhello\r\n0\r\n\r\n",
    b"5 \r\nhello\r\n0\r\n\r\n",        # whitespace after the size and no extension
    b"5\t\r\nhello\r\n0\r\n\r\n",
    b"5;a \r\nhello\r\n0\r\n\r\n",
    b"1_0\r\nhello world!!!!!\r\n0\r\n\r\n",
    b"5.0\r\nhello\r\n0\r\n\r\n",
    b"\xd9\xa5\r\nhello\r\n0\r\n\r\n",
    b"g\r\nhello\r\n0\r\n\r\n",
    b"\r\nhello\r\n0\r\n\r\n",          # no size at all
    b";a\r\nhello\r\n0\r\n\r\n",
    b"5;\r\nhello\r\n0\r\n\r\n",        # bare semicolon
    b"5;;a\r\nhello\r\n0\r\n\r\n",
    b"5;bad[=x\r\nhello\r\n0\r\n\r\n",
    b"5;a=\r\nhello\r\n0\r\n\r\n",
    b"5;a=\"open\r\nhello\r\n0\r\n\r\n",
    b"5;a=b c\r\nhello\r\n0\r\n\r\n",
    b"5;\x00ext\r\nhello\r\n0\r\n\r\n",
    b"5;a=\"\x00\"\r\nhello\r\n0\r\n\r\n",
    b"5;a\rX\r\nhello\r\n0\r\n\r\n",     # bare CR in an extension
    b"5\rhello\r\n0\r\n\r\n",           # bare CR ending the size line
    b"5\nhello\r\n0\r\n\r\n",           # bare LF ending the size line
    b"5;\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\n0\r\n\r\n",           # bare LF after the data
    b"5\r\nhello\r0\r\n\r\n",
    b"5\r\nhello0\r\n\r\n",             # no CRLF after the data
    b"5\r\nhello!!\r\n0\r\n\r\n",       # more data than the size
    b"5\r\nhell\r\n0\r\n\r\n\r\n",      # less data than the size
    b"0\r\n\n",                         # bare LF ending the trailer section
    b"0\r\n\rX",
    b"0\r\nX: y\n\r\n",
    b"0\r\nX: y\r\n\n",
    b"0\r\nX : y\r\n\r\n",              # malformed trailer fields
    b"0\r\nX: y\r\n z\r\n\r\n",
    b"0\r\n z\r\n\r\n",
    b"0\r\nX: \x01\r\n\r\n",
    b"0\r\nNoColon\r\n\r\n",
    b"0\r\nContent-Length: 50\r\n\r\n",  # framing and routing fields in a trailer
    b"0\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"0\r\nHost: evil.example\r\n\r\n",
    b"00000000000000001\r\nx\r\n0\r\n\r\n",   # 17 hex digits
    b"FFFFFFFFFFFFFFFF0\r\n\r\n",
    b"1" + b"0" * 100 + b"\r\n",
])
def test_invalid_chunked_bodies_are_400(body):
    assert status_of(chunked(body)) == 400


def test_chunk_size_line_length_is_bounded():
    long_ext = b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n"
    assert status_of(chunked(long_ext)) == 400
    parser = RequestParser()
    parser.feed(chunked(b"5;" + b"a" * 5000))  # no CRLF yet
    with pytest.raises(ProtocolError) as info:
        parser.next_request()
    assert info.value.status == 400


def test_chunked_total_over_the_limit_is_413():
    limits = Limits(max_body_bytes=10)
    assert one(chunked(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"), limits).body == b"helloworld"
    assert status_of(chunked(b"5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n"), limits) == 413
    assert status_of(chunked(b"ffffffffffffffff\r\n")) == 413
    # refused as soon as the size line arrives, before the data
    parser = RequestParser(limits)
    parser.feed(chunked(b"b\r\n"))
    with pytest.raises(ProtocolError) as info:
        parser.next_request()
    assert info.value.status == 413


def test_trailers_are_validated_but_not_exposed():
    request = one(chunked(b"0\r\nX-Trailer: yes\r\n\r\n"))
    assert "x-trailer" not in request.headers
    limits = Limits(max_headers=2)
    assert status_of(chunked(b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), limits) == 431
    limits = Limits(max_header_bytes=20)
    assert status_of(chunked(b"0\r\nX-Long: " + b"a" * 20 + b"\r\n\r\n"), limits) == 431


def test_chunked_body_pieces_and_head_state():
    parser = RequestParser()
    parser.feed(chunked(b"5\r\nhel"))
    assert parser.next_request() is None
    assert parser.awaiting_body is not None
    parser.feed(b"lo\r\n0\r\n")
    assert parser.next_request() is None
    parser.feed(b"\r\n")
    request = parser.next_request()
    assert request.body == b"hello"
    assert parser.awaiting_body is None
    assert parser.next_request() is None


# -- Expect ------------------------------------------------------------------------


def test_expect_100_continue():
    parser = RequestParser()
    parser.feed(post(b"Content-Length: 5\r\nExpect: 100-continue\r\n", b""))
    assert parser.next_request() is None
    assert parser.awaiting_body is not None and parser.expect_continue is True
    parser.feed(b"hello")
    assert parser.next_request().body == b"hello"
    assert parser.expect_continue is False


@pytest.mark.parametrize("value", [b"100-continue", b"100-Continue", b"100-CONTINUE",
                                   b" 100-continue ", b"100-continue, 100-continue"])
def test_expect_100_continue_spellings(value):
    parser = RequestParser()
    parser.feed(post(b"Content-Length: 5\r\nExpect: " + value + b"\r\n", b""))
    assert parser.next_request() is None and parser.expect_continue is True


def test_expect_with_a_complete_body_needs_no_continue():
    parser = RequestParser()
    parser.feed(post(b"Content-Length: 5\r\nExpect: 100-continue\r\n", b"hello"))
    assert parser.next_request().body == b"hello"
    assert parser.expect_continue is False
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n")
    assert parser.next_request().body == b""
    assert parser.expect_continue is False


@pytest.mark.parametrize("value", [b"200-ok", b"foo", b"100-continue, foo", b"100-continued",
                                   b"100-continue;a=b"])
def test_other_expectations_are_417(value):
    assert status_of(post(b"Content-Length: 5\r\nExpect: " + value + b"\r\n", b"hello")) == 417
    assert status_of(get(b"/", HOST + b"Expect: 100-continue\r\nExpect: " + value + b"\r\n")) \
        == 417


@pytest.mark.parametrize("value", [b"100-continue", b"foo"])
def test_expect_is_ignored_on_http_1_0(value):
    # RFC 9110 §10.1.1: a 100-continue expectation in HTTP/1.0 MUST be ignored
    # (and a 1.0 client cannot read a 100 response anyway).
    parser = RequestParser()
    parser.feed(post(b"Content-Length: 5\r\nExpect: " + value + b"\r\n", b"",
                     version=b"HTTP/1.0"))
    assert parser.next_request() is None
    assert parser.expect_continue is False
    parser.feed(b"hello")
    assert parser.next_request().body == b"hello"


# -- limits ------------------------------------------------------------------------


def test_request_line_limit():
    limits = Limits(max_request_line=100)
    prefix, suffix = b"GET /", b" HTTP/1.1"
    fits = prefix + b"a" * (100 - len(prefix) - len(suffix)) + suffix
    assert len(fits) == 100
    assert one(fits + b"\r\n" + HOST + b"\r\n", limits).path.startswith("/aaa")
    too_long = prefix + b"a" * (101 - len(prefix) - len(suffix)) + suffix
    assert status_of(too_long + b"\r\n" + HOST + b"\r\n", limits) == 414


def test_long_uri_is_414_before_its_crlf_arrives():
    limits = Limits(max_request_line=100)
    parser = RequestParser(limits)
    parser.feed(b"GET /" + b"a" * 95)  # 100 bytes: could still end here
    assert parser.next_request() is None
    parser.feed(b"\r")
    assert parser.next_request() is None
    parser = RequestParser(limits)
    parser.feed(b"GET /" + b"a" * 97)
    with pytest.raises(ProtocolError) as info:
        parser.next_request()
    assert info.value.status == 414


def test_default_limits_accept_an_8000_byte_target():
    assert len(one(get(b"/" + b"a" * 7999)).path) == 8000
    assert status_of(get(b"/" + b"a" * 100_000)) == 414


def test_overlong_method_is_400_not_414():
    # 414 is about the URI; a line whose method never ends is malformed.
    assert status_of(b"A" * 100_000 + b" / HTTP/1.1\r\n" + HOST + b"\r\n") == 400
    parser = RequestParser(Limits(max_request_line=50))
    parser.feed(b"A" * 60)
    with pytest.raises(ProtocolError) as info:
        parser.next_request()
    assert info.value.status == 400


def test_header_section_limit_counts_field_lines():
    block = b"Host: a\r\nX: " + b"b" * 86 + b"\r\n"
    assert len(block) == 100
    assert one(b"GET / HTTP/1.1\r\n" + block + b"\r\n", Limits(max_header_bytes=100)).host == "a"
    assert status_of(b"GET / HTTP/1.1\r\n" + block + b"\r\n", Limits(max_header_bytes=99)) == 431


def test_header_section_that_never_ends_is_431_at_the_limit():
    limits = Limits(max_header_bytes=1000)
    parser = RequestParser(limits)
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX: ")
    fed = 12  # field bytes so far
    with pytest.raises(ProtocolError) as info:
        while True:
            parser.feed(b"a")
            fed += 1
            parser.next_request()
    assert info.value.status == 431
    assert fed <= 1002  # refused right after the limit, not buffered forever


def test_default_header_limits():
    big_value = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"B" * 100_000 + b"\r\n\r\n"
    assert status_of(big_value) == 431
    big_name = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"A" * 100_000 + b": v\r\n\r\n"
    assert status_of(big_name) == 431
    many = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(
        b"X-H-%d: value\r\n" % i for i in range(10_000)) + b"\r\n"
    assert status_of(many) == 431


def test_header_count_limit():
    limits = Limits(max_headers=3)
    assert one(get(b"/", b"Host: a\r\nB: 1\r\nC: 2\r\n"), limits).host == "a"
    assert status_of(get(b"/", b"Host: a\r\nB: 1\r\nC: 2\r\nD: 3\r\n"), limits) == 431


# -- errors and pipelining ---------------------------------------------------------


def test_pipelined_requests_come_out_in_order():
    data = (get(b"/1") + post(b"Content-Length: 3\r\n", b"abc")
            + chunked(b"2\r\nde\r\n0\r\n\r\n") + get(b"/4", HOST + b"Connection: close\r\n"))
    result = outcome(data)
    assert [(r[0], r[1], r[6], r[7]) for r in result] == [
        ("GET", "/1", b"", True), ("POST", "/", b"abc", True), ("POST", "/", b"de", True),
        ("GET", "/4", b"", False)]


def test_requests_before_a_bad_one_are_returned_first():
    parser = RequestParser()
    parser.feed(get(b"/1") + post(b"Content-Length: 2\r\n", b"ok") + get(b"/3")
                + b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n" + get(b"/5"))
    assert parser.next_request().path == "/1"
    assert parser.next_request().body == b"ok"
    assert parser.next_request().path == "/3"
    with pytest.raises(ProtocolError) as info:
        parser.next_request()
    assert info.value.status == 400


def test_the_parser_is_dead_after_an_error():
    parser = RequestParser()
    parser.feed(post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello"))
    with pytest.raises(ProtocolError) as info:
        parser.next_request()
    assert info.value.status == 400
    parser.feed(get())  # ignored
    for _ in range(2):
        with pytest.raises(ProtocolError) as again:
            parser.next_request()
        assert again.value.status == 400


@pytest.mark.parametrize("data, status", [
    (post(b"Content-Length: 5\r\n", b"hello") + get(b"/", b"Host: a\r\nHost: b\r\n"), 400),
    (get() + get(version=b"HTTP/2.0"), 505),
    (get() + get(b"/" + b"a" * 10_000), 414),
    (get() + get(b"/", HOST + b"X: " + b"a" * 40_000 + b"\r\n"), 431),
    (get() + post(b"Content-Length: 2000000\r\n", b""), 413),
    (get() + post(b"Transfer-Encoding: foo\r\n", b""), 501),
    (get() + post(b"Expect: foo\r\n", b""), 417),
])
def test_error_statuses_after_a_good_request(data, status):
    parser = RequestParser()
    parser.feed(data)
    assert parser.next_request().path == "/"
    with pytest.raises(ProtocolError) as info:
        parser.next_request()
    assert info.value.status == status
    assert info.value.message


def test_smuggled_request_in_a_rejected_body_is_never_parsed():
    smuggled = get(b"/admin")
    for framing in (b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n",
                    b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n",
                    b"Content-Length: 4\r\nContent-Length: %d\r\n",
                    b"Content-Length: +%d\r\n",
                    b"Transfer-Encoding: chunked \r\nContent-Length: %d\r\n",
                    b"Transfer-Encoding:\r\n chunked\r\nContent-Length: %d\r\n"):
        body = b"0\r\n\r\n" + smuggled
        parser = RequestParser()
        parser.feed(post(framing % len(body), body))
        with pytest.raises(ProtocolError):
            parser.next_request()


def test_buffered_counts_unconsumed_bytes():
    parser = RequestParser()
    assert parser.buffered == 0
    parser.feed(get() + b"GET /partial")
    assert parser.buffered == len(get()) + 12
    parser.next_request()
    assert parser.buffered == 12
    assert parser.next_request() is None
    assert parser.buffered == 12


# -- remembered heads --------------------------------------------------------------

REPEATED = [
    b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET http://h:8/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
    b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /%E2%82%AC HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
]


def describe(request):
    return (request.method, request.target, request.path, request.query_string,
            request.version, request.headers.items(), request.body, request.keep_alive)


@pytest.mark.parametrize("raw", REPEATED)
def test_a_head_seen_before_parses_exactly_as_the_first_time(raw):
    first = RequestParser()
    first.feed(raw)
    expected = describe(first.next_request())
    for pieces in (1, 3, len(raw)):
        parser = RequestParser()
        for start in range(0, len(raw), pieces):
            parser.feed(raw[start:start + pieces])
            if start + pieces < len(raw):
                assert parser.next_request() is None
        assert describe(parser.next_request()) == expected
    pipelined = RequestParser()
    pipelined.feed(raw * 3)
    assert [describe(pipelined.next_request()) for _ in range(3)] == [expected] * 3
    assert pipelined.next_request() is None


def test_a_remembered_head_still_meets_the_body_limit():
    raw = b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789"
    roomy = RequestParser()
    roomy.feed(raw)
    assert roomy.next_request().body == b"0123456789"
    tight = RequestParser(Limits(max_body_bytes=5))
    tight.feed(raw)
    with pytest.raises(ProtocolError) as info:
        tight.next_request()
    assert info.value.status == 413
