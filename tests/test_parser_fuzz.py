"""Property tests of the request parser (hypothesis).

1. Generated valid requests parse to what was generated, fed whole, one byte
   at a time and in random pieces.
2. Pipelined valid requests come out in order.
3. A differential against h11: on valid requests both agree; on mutated
   ones, whenever h11 rejects we reject too, and whenever we accept, h11
   frames the message the same way (we may be stricter than h11).
4. Arbitrary bytes only ever raise ProtocolError, never hang, and give the
   same result however they are split.

Runs derandomized and small by default; HYPOTHESIS_PROFILE=fuzz (registered
in conftest.py) runs a hundred times more examples with fresh randomness.
"""

from __future__ import annotations

import re
import string
from urllib.parse import quote

import h11
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from corofw.http.parser import (
    DEFAULT_LIMITS,
    Limits,
    ProtocolError,
    RequestParser,
    ResponseParser,
)

_PROFILE = settings()  # whatever profile tests/conftest.py loaded
FUZZING = _PROFILE.max_examples > 1000
if FUZZING:  # a long run: lift pytest-timeout's per-test limit
    pytestmark = pytest.mark.timeout(0)


def fuzz_settings(examples: int) -> settings:
    scaled = examples * _PROFILE.max_examples // 100 if FUZZING else examples
    return settings(max_examples=scaled, derandomize=not FUZZING, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# -- generating valid requests -----------------------------------------------------

TCHARS = "!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters
PCHARS = "-._~" + "!$&'()*+,;=" + ":@"  # besides letters and digits, kept raw in a path
VCHAR_OBS = [chr(c) for c in [*range(0x21, 0x7f), *range(0x80, 0x100)]]
QUERY_CHARS = [chr(c) for c in range(0x21, 0x7f) if c != 0x23]
RESERVED_NAMES = {"content-length", "transfer-encoding", "host", "connection", "expect"}

tokens = st.text(alphabet=TCHARS, min_size=1, max_size=12)
field_names = tokens.filter(lambda name: name.lower() not in RESERVED_NAMES)
ows = st.sampled_from(["", "", " ", "\t", "  ", " \t "])


@st.composite
def field_values(draw) -> tuple[bytes, str]:
    """(the value on the wire with OWS around it, the value the parser gives)."""
    words = draw(st.lists(st.text(alphabet=VCHAR_OBS, min_size=1, max_size=8), max_size=4))
    inner = "".join(word + (draw(st.sampled_from([" ", "\t", "  ", " \t"]))
                            if i < len(words) - 1 else "") for i, word in enumerate(words))
    wire = draw(ows) + inner + draw(ows)
    return wire.encode("latin-1"), inner


@st.composite
def paths(draw) -> tuple[str, str]:
    """(the path as sent, percent-encoded; the decoded path)."""
    texts = draw(st.lists(st.text(st.characters(blacklist_categories=("Cc", "Cs")),
                                  max_size=6), max_size=4))
    wire = []
    for text in texts:
        encoded = quote(text, safe=PCHARS if draw(st.booleans()) else "")
        if draw(st.booleans()):
            encoded = re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), encoded)
        wire.append(encoded)
    return "/" + "/".join(wire), "/" + "/".join(texts)


@st.composite
def chunked_bodies(draw, body: bytes) -> bytes:
    """``body`` in the chunked coding: random pieces, sizes in either case
    with leading zeros, extensions, and a trailer section."""
    out = []
    pos = 0
    while pos < len(body):
        size = draw(st.integers(1, len(body) - pos))
        out.append(chunk_size_line(draw, size) + body[pos:pos + size] + b"\r\n")
        pos += size
    out.append(chunk_size_line(draw, 0))
    for _ in range(draw(st.integers(0, 2))):
        wire, _value = draw(field_values())
        out.append(draw(field_names).encode() + b":" + wire + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def chunk_size_line(draw, size: int) -> bytes:
    digits = f"{size:x}"
    digits = "0" * draw(st.integers(0, 2)) + draw(st.sampled_from([digits, digits.upper()]))
    exts = ""
    for _ in range(draw(st.integers(0, 2))):
        exts += draw(st.sampled_from(["", " "])) + ";" + draw(tokens)
        value = draw(st.one_of(st.none(), tokens, st.just('"q;,= \\" x"')))
        if value is not None:
            exts += "=" + value
    return (digits + exts).encode() + b"\r\n"


@st.composite
def requests(draw, forms=("origin", "absolute", "asterisk")) -> tuple[bytes, tuple]:
    """(wire bytes, expected summary) of one valid request."""
    http10 = draw(st.booleans())
    form = draw(st.sampled_from(forms))
    method = "OPTIONS" if form == "asterisk" else draw(st.one_of(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
        tokens.filter(lambda m: m not in ("CONNECT", "OPTIONS"))))
    wire_path, path = draw(paths())
    query = draw(st.one_of(st.none(), st.text(alphabet=QUERY_CHARS, max_size=12)))
    target = "*" if form == "asterisk" else wire_path + ("?" + query if query is not None else "")
    host = draw(st.sampled_from(["example.com", "example.com:8080", "127.0.0.1", "[::1]:80",
                                 "a-b.example"]))
    authority = None
    if form == "absolute":
        authority = draw(st.sampled_from(["other.example", "other.example:81", "[::1]"]))
        target = draw(st.sampled_from(["http", "https", "HTTP"])) + "://" + authority + target
    if form == "asterisk":
        path, query = "*", None

    fields: list[tuple[bytes, bytes, str]] = []  # (name, wire value, parsed value)
    for _ in range(draw(st.integers(0, 5))):
        wire, value = draw(field_values())
        fields.append((draw(field_names).encode(), wire, value))
    if not http10 or draw(st.booleans()):
        fields.append((draw(st.sampled_from([b"Host", b"host", b"HOST"])),
                       host.encode(), host))
    connection = draw(st.sampled_from([None, "close", "keep-alive", "Keep-Alive, Upgrade",
                                       "upgrade"]))
    if connection is not None:
        fields.append((b"Connection", connection.encode(), connection))
    tokens_ = {t.strip().lower() for t in (connection or "").split(",")}
    keep_alive = ("keep-alive" in tokens_ and "close" not in tokens_) if http10 \
        else "close" not in tokens_

    body = draw(st.binary(max_size=64))
    framing = draw(st.sampled_from(["length", "chunked"] if not http10 else ["length"]))
    if not body and draw(st.booleans()):
        framing = "none"
    if framing == "length":
        length = str(len(body))
        length = draw(st.sampled_from([length, length + ", " + length, "0" + length]))
        fields.append((b"Content-Length", length.encode(), length))
        wire_body = body
    elif framing == "chunked":
        coding = draw(st.sampled_from(["chunked", "Chunked", "CHUNKED"]))
        fields.append((b"Transfer-Encoding", coding.encode(), coding))
        wire_body = draw(chunked_bodies(body))
    else:
        wire_body = b""
    fields = draw(st.permutations(fields))

    head = f"{method} {target} HTTP/1.{0 if http10 else 1}\r\n".encode()
    head += b"".join(name + b":" + wire + b"\r\n" for name, wire, _ in fields)
    expected_headers = [(name.decode().lower(), value) for name, _, value in fields]
    if authority is not None:
        expected_headers = [(n, v) for n, v in expected_headers if n != "host"]
        expected_headers.append(("host", authority))
    expected = (method, target, path, query or "", "HTTP/1.0" if http10 else "HTTP/1.1",
                expected_headers, body, keep_alive)
    return head + b"\r\n" + wire_body, expected


# -- running the parser --------------------------------------------------------------


def summary(request) -> tuple:
    return (request.method, request.target, request.path, request.query_string,
            request.version, request.headers.items(), request.body, request.keep_alive)


def run(pieces, limits: Limits = DEFAULT_LIMITS) -> tuple[list, int | None]:
    """(summaries of the requests, status of the error or None), feeding
    ``pieces`` one by one; only ProtocolError may escape the parser."""
    parser = RequestParser(limits)
    out: list = []
    total = sum(len(piece) for piece in pieces)
    try:
        for piece in pieces:
            parser.feed(piece)
            for _ in range(total + 2):  # never loops forever: each request eats bytes
                request = parser.next_request()
                if request is None:
                    break
                out.append(summary(request))
            else:
                raise AssertionError("next_request keeps returning requests")
    except ProtocolError as exc:
        assert exc.status in (400, 413, 414, 417, 431, 501, 505), exc.status
        assert exc.message
        with_error = exc.status
        # dead from now on
        try:
            parser.next_request()
        except ProtocolError as again:
            assert again.status == exc.status
        else:
            raise AssertionError("the parser lived on after an error") from None
        return out, with_error
    return out, None


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


cuts = st.lists(st.integers(0, 1 << 16), max_size=12)


# -- 1. valid requests -----------------------------------------------------------------


@fuzz_settings(200)
@given(requests(), cuts)
def test_valid_requests_parse_to_what_was_generated(request, cut_points):
    wire, expected = request
    for pieces in ([wire], bytewise(wire), split(wire, cut_points)):
        assert run(pieces) == ([expected], None)


# -- 2. pipelines ------------------------------------------------------------------------


@fuzz_settings(100)
@given(st.lists(requests(), min_size=1, max_size=5), cuts,
       st.lists(st.sampled_from([b"", b"", b"\r\n"]), min_size=5, max_size=5))
def test_pipelined_requests_come_out_in_order(batch, cut_points, gaps):
    wire = b"".join(gap + request for (request, _), gap in zip(batch, gaps, strict=False))
    expected = [summary for _, summary in batch]
    for pieces in ([wire], split(wire, cut_points)):
        assert run(pieces) == (expected, None)


# -- 3. the differential against h11 ---------------------------------------------------


def h11_first(data: bytes) -> tuple:
    """How h11 sees the first request in ``data``: ("ok", method, target,
    headers, body), ("incomplete",) or ("error",)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
    try:
        if data:  # receive_data(b"") would mean the end of the connection
            conn.receive_data(data)
        request, body = None, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return ("incomplete",)
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                headers = [(bytes(n), bytes(v)) for n, v in request.headers]
                return ("ok", bytes(request.method), bytes(request.target),
                        comparable(headers), b"".join(body))
            else:
                raise AssertionError(f"unexpected h11 event {event!r} for {data!r}")
    except h11.ProtocolError:
        return ("error",)


def ours_first(data: bytes) -> tuple:
    parser = RequestParser(Limits(max_body_bytes=1 << 20))
    parser.feed(data)
    try:
        request = parser.next_request()
    except ProtocolError:
        return ("error",)
    if request is None:
        return ("incomplete",)
    return ("ok", request.method.encode(), request.target.encode(),
            comparable(list(request.headers._raw)), request.body)


def comparable(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    # h11 folds repeated Content-Length lines into one and lower-cases the
    # Transfer-Encoding value; the body tells whether both framed alike.
    return [(n, v.lower() if n == b"transfer-encoding" else v)
            for n, v in headers if n != b"content-length"]


def justified(data: bytes) -> str | None:
    """Why we may accept what h11 rejects (RFC 9112/9110 say we should)."""
    if data.startswith(b"\r\n"):
        return "RFC 9112 §2.2: ignore empty lines before the request line"
    for line in data.split(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"transfer-encoding" and b"," in value:
            return "RFC 9110 §5.6.1: empty list elements are ignored"
    if re.search(rb"\n[0-9A-Fa-f]+[ \t]+;", data):
        return "RFC 9112 §7.1.1: BWS before a chunk extension is parsed and removed"
    return None


@fuzz_settings(150)
@given(requests(forms=("origin", "asterisk")))
def test_valid_requests_agree_with_h11(request):
    wire, _ = request
    theirs, ours = h11_first(wire), ours_first(wire)
    assert ours[0] == "ok"
    assert ours == theirs or justified(wire) and theirs[0] == "error"


HEAD_BYTES = [b"\x00", b"\x01", b"\x08", b"\x0b", b"\x0c", b"\x1f", b"\x7f", b"\x80", b"\xff",
              b" ", b"\t", b"\r", b"\n", b"\r\n", b":", b",", b";", b"=", b'"', b"(", b"/",
              b"?", b"#", b"%", b"0", b"5", b"a", b"x", b"-", b"_", b"\r\n ", b"\r\n\t",
              b"\r\n\r\n"]
EXTRA_FIELDS = [
    b"Content-Length: 5", b"Content-Length: 0", b"Content-Length: +5", b"Content-Length: -1",
    b"Content-Length: 0x5", b"Content-Length: 5 5", b"Content-Length: 5,6",
    b"Content-Length: 99999999999999999999", b"Content-Length:", b"Content-Length: 1_0",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked, gzip", b"Transfer-Encoding: identity",
    b"Transfer-Encoding: chunked, chunked", b"Transfer-Encoding: xchunked",
    b"Transfer-Encoding:", b"Transfer-Encoding: \x0bchunked", b"Transfer-Encoding : chunked",
    b"Transfer-Encoding:\r\n chunked", b"Transfer_Encoding: chunked", b"Host: other",
    b"Host:", b"Host: a b", b"X-Fold: a\r\n b", b" X-Lead: a", b"X-Ctl: a\x01b", b"X-Nul: \x00",
    b"X-Space : a", b"X-Tab\t: a", b": empty", b"NoColon", b"Bad[Name: x", b"Expect: foo",
    b"X-Cr: a\rb", b"X-Lf: a\nb",
]
CHUNK_LINES = [b"0x5", b"+5", b"-1", b" 5", b"5 ", b"5;", b"5;a b", b"1_0", b"5\r", b"5\n",
               b"fffffffffffffffff", b"5;\x00", b"g", b"", b";", b"5;a=\"x"]


@st.composite
def mutated_requests(draw) -> bytes:
    wire, _ = draw(requests(forms=("origin",)))
    head_end = wire.index(b"\r\n\r\n") + 4
    kind = draw(st.sampled_from(["crlf", "insert", "delete", "field", "chunk", "version",
                                 "anywhere", "truncate", "repeat"]))
    if kind == "crlf":
        ends = [m.start() for m in re.finditer(b"\r\n", wire[:head_end])]
        at = draw(st.sampled_from(ends))
        with_ = draw(st.sampled_from([b"\n", b"\r", b"\r\r\n", b"\n\r", b"\r\n\r\n", b" \r\n"]))
        return wire[:at] + with_ + wire[at + 2:]
    if kind == "insert":
        at = draw(st.integers(0, head_end))
        return wire[:at] + draw(st.sampled_from(HEAD_BYTES)) + wire[at:]
    if kind == "delete":
        at = draw(st.integers(0, head_end - 1))
        return wire[:at] + wire[at + 1:]
    if kind == "field":
        starts = [m.end() for m in re.finditer(b"\r\n", wire[:head_end - 2])]
        at = draw(st.sampled_from(starts))
        return wire[:at] + draw(st.sampled_from(EXTRA_FIELDS)) + b"\r\n" + wire[at:]
    if kind == "chunk":
        lines = [m for m in re.finditer(rb"(?m)^[0-9a-fA-F]+(;[^\r\n]*)?\r\n", wire[head_end:])]
        if not lines or b"chunked" not in wire[:head_end].lower():
            return wire + b"\n"
        line = draw(st.sampled_from(lines))
        start, end = head_end + line.start(), head_end + line.end() - 2
        return wire[:start] + draw(st.sampled_from(CHUNK_LINES)) + wire[end:]
    if kind == "version":
        version = draw(st.sampled_from([b"HTTP/2.0", b"HTTP/1.10", b"http/1.1", b"HTTP/1",
                                        b"HTTP/1.1 ", b"HTTP/ 1.1", b"HTTP/0.9", b"HTTP/1.2"]))
        return re.sub(rb"HTTP/1\.[01]", version.replace(b"\\", b"\\\\"), wire, count=1)
    if kind == "anywhere":
        at = draw(st.integers(0, len(wire)))
        return wire[:at] + draw(st.sampled_from(HEAD_BYTES)) + wire[at:]
    if kind == "truncate":
        return wire[:draw(st.integers(0, len(wire)))]
    a = draw(st.integers(0, len(wire)))
    b = draw(st.integers(a, min(len(wire), a + 40)))
    return wire[:b] + wire[a:b] + wire[b:]


@fuzz_settings(600)
@given(mutated_requests())
@example(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
         b"\r\n\r\n0\r\n\r\n")
@example(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n"
         b"0\r\n\r\n")
@example(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n")
@example(b"GET / HTTP/1.1\nHost: a\n\n")
def test_we_reject_whatever_h11_rejects(data):
    theirs, ours = h11_first(data), ours_first(data)
    if theirs[0] == "error":
        assert ours[0] == "error" or justified(data), (theirs, ours)
    if ours[0] != "error" and not justified(data):
        # both accept (or both wait): they must frame the message alike
        assert ours == theirs


# -- 4. arbitrary bytes ------------------------------------------------------------------

FRAGMENTS = [b"GET ", b"POST ", b"OPTIONS ", b"CONNECT ", b"/", b"/a?b", b"*", b"http://h/",
             b" HTTP/1.1", b" HTTP/1.0", b" HTTP/2.0", b"\r\n", b"\r", b"\n", b"\r\n\r\n",
             b"Host: a", b"Host:", b":", b" ", b"\t", b",", b";", b"=", b'"',
             b"Content-Length: ", b"Transfer-Encoding: chunked", b"Transfer-Encoding: ",
             b"Expect: 100-continue", b"Connection: close", b"0", b"5", b"10", b"ff", b"x",
             b"hello", b"\x00", b"\x7f", b"\xff", b"%", b"%2F", b"%C0", b"\r\n "]
http_ish = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=3)),
                    max_size=40).map(b"".join)
small_limits = Limits(max_request_line=40, max_header_bytes=80, max_headers=4,
                      max_body_bytes=16)


@fuzz_settings(500)
@given(st.one_of(st.binary(max_size=300), http_ish), cuts,
       st.sampled_from([DEFAULT_LIMITS, small_limits]))
def test_arbitrary_bytes_only_raise_protocol_error(data, cut_points, limits):
    whole = run([data], limits)
    assert run(split(data, cut_points), limits) == whole
    assert run(bytewise(data), limits) == whole


@fuzz_settings(300)
@given(st.one_of(st.binary(max_size=300), http_ish.map(lambda b: b"HTTP/1.1 200 OK\r\n" + b)),
       cuts, st.sampled_from(["GET", "HEAD", "POST"]))
def test_arbitrary_responses_only_raise_protocol_error(data, cut_points, method):
    parser = ResponseParser(Limits(max_request_line=64, max_header_bytes=128, max_headers=4,
                                   max_body_bytes=64))
    parser.start(method)
    head = None
    try:
        for piece in [*split(data, cut_points), None]:
            if piece is None:
                parser.feed_eof()
            else:
                parser.feed(piece)
            if head is None:
                head = parser.next_head()
            if head is not None:
                _, done = parser.read_body()
                if done:
                    break
    except ProtocolError as exc:
        assert exc.status == 502
