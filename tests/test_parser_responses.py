"""ResponseParser (the client side): status lines, 1xx, bodies framed by
Content-Length, chunked or the end of the connection, truncation, and the
same header strictness as requests. Every error is a ProtocolError (502)."""

from __future__ import annotations

import pytest

from corofw.http.headers import Headers
from corofw.http.parser import Limits, ProtocolError, ResponseParser


def response(data: bytes, method: str = "GET", eof: bool = False, step: int = 0):
    """(head, body, done) after feeding ``data`` (whole or ``step`` bytes at
    a time) and, with ``eof``, the end of the connection."""
    parser = ResponseParser()
    parser.start(method)
    pieces = [data] if not step else [data[i:i + step] for i in range(0, len(data), step)]
    head, body, done = None, b"", False
    for piece in pieces:
        parser.feed(piece)
        if head is None:
            head = parser.next_head()
        if head is not None and not done:
            data_now, done = parser.read_body()
            body += data_now
    if eof:
        parser.feed_eof()
        if head is None:
            head = parser.next_head()
        if not done:
            data_now, done = parser.read_body()
            body += data_now
    return head, body, done


def outcome(data: bytes, method: str = "GET", eof: bool = False):
    """(status, reason, version, fields, keep_alive, body, done), or "error";
    fed whole and byte by byte, which must agree."""
    results = []
    for step in (0, 1):
        try:
            head, body, done = response(data, method, eof, step)
        except ProtocolError as exc:
            assert exc.status == 502
            results.append("error")
            continue
        assert head is not None
        results.append((head.status, head.reason, head.version, head.fields, head.keep_alive,
                        body, done))
    assert results[0] == results[1], results
    return results[0]


def fails(data: bytes, method: str = "GET", eof: bool = False) -> None:
    assert outcome(data, method, eof) == "error"


# -- the status line ---------------------------------------------------------------


@pytest.mark.parametrize("line, status, reason, version", [
    (b"HTTP/1.1 200 OK", 200, "OK", "HTTP/1.1"),
    (b"HTTP/1.0 404 Not Found", 404, "Not Found", "HTTP/1.0"),
    (b"HTTP/1.1 200", 200, "", "HTTP/1.1"),        # reason omitted, even its SP
    (b"HTTP/1.1 200 ", 200, "", "HTTP/1.1"),
    (b"HTTP/1.1 599 whatever\tyou like", 599, "whatever\tyou like", "HTTP/1.1"),
    (b"HTTP/1.1 200 D\xe9j\xe0 vu", 200, "D\u00e9j\u00e0 vu", "HTTP/1.1"),
    (b"HTTP/1.2 200 OK", 200, "OK", "HTTP/1.1"),
])
def test_status_lines(line, status, reason, version):
    got = outcome(line + b"\r\nContent-Length: 2\r\n\r\nok")
    assert got[:3] == (status, reason, version)
    assert got[5:] == (b"ok", True)


@pytest.mark.parametrize("line", [
    b"HTTP/1.1 20 OK", b"HTTP/1.1 2000 OK", b"HTTP/1.1 OK", b"HTTP/1.1  200 OK",
    b"HTTP/1.1 099 Low", b"HTTP/1.1 000 Zero", b"HTTP/2 200 OK", b"HTTP/2.0 200 OK",
    b"HTTP/1.10 200 OK", b"http/1.1 200 OK", b"ICY 200 OK", b"HTTP/1.1 2OO OK",
    b"HTTP/1.1 200 O\x00K", b"HTTP/1.1 200 O\x7fK", b" HTTP/1.1 200 OK", b"200 OK",
    b"<html>", b"",
])
def test_garbage_status_lines_fail(line):
    fails(line + b"\r\nContent-Length: 0\r\n\r\n")


def test_status_line_must_end_with_crlf():
    fails(b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n")
    fails(b"HTTP/1.1 200 OK\rContent-Length: 0\r\n\r\n")


def test_status_line_limit():
    parser = ResponseParser(Limits(max_request_line=50))
    parser.start("GET")
    parser.feed(b"HTTP/1.1 200 " + b"x" * 60)
    with pytest.raises(ProtocolError) as info:
        parser.next_head()
    assert info.value.status == 502


# -- 1xx and bodiless responses ----------------------------------------------------


def test_informational_responses_are_skipped():
    data = (b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert outcome(data)[0::5] == (200, b"ok")


def test_101_is_returned_with_no_body():
    head, body, done = response(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nraw")
    assert (head.status, body, done) == (101, b"", True)


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
def test_204_and_304_have_no_body(status):
    got = outcome(b"HTTP/1.1 " + status + b"\r\nContent-Length: 10\r\n\r\n")
    assert got[4:] == (True, b"", True)


def test_head_responses_have_no_body():
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert outcome(data, "HEAD")[4:] == (True, b"", True)


# -- bodies ------------------------------------------------------------------------


def test_content_length_body():
    assert outcome(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")[4:] == \
        (True, b"hello", True)


def test_chunked_body():
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n")
    assert outcome(data)[5:] == (b"hello world", True)


def test_body_until_close():
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"
    assert outcome(data)[4:] == (False, b"all of it", False)
    assert outcome(data, eof=True)[4:] == (False, b"all of it", True)
    assert outcome(b"HTTP/1.0 200 OK\r\n\r\n", eof=True)[4:] == (False, b"", True)


def test_read_body_hands_out_what_has_arrived():
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel")
    assert parser.next_head().status == 200
    assert parser.read_body() == (b"hel", False)
    assert parser.read_body() == (b"", False)
    parser.feed(b"lo world")
    assert parser.read_body() == (b"lo worl", True)
    assert parser.buffered == 1  # the extra "d" belongs to whatever comes next


def test_chunked_read_body_in_pieces():
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    parser.next_head()
    assert parser.read_body() == (b"abc", False)
    parser.feed(b"2\r\nde\r\n0\r\n\r\n")
    assert parser.read_body() == (b"de", True)


def test_the_arrived_part_of_a_chunk_is_handed_out_at_once():
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabcd")
    parser.next_head()
    assert parser.read_body() == (b"abcd", False)
    parser.feed(b"efghijklmnop")
    # the chunk's last byte waits for the CRLF that must follow it
    assert parser.read_body() == (b"efghijklmno", False)
    parser.feed(b"\r\n0\r\n\r\n")
    assert parser.read_body() == (b"p", True)


def test_a_chunk_handed_out_in_parts_still_needs_its_crlf():
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
    parser.next_head()
    assert parser.read_body() == (b"hel", False)
    parser.feed(b"loXX")
    with pytest.raises(ProtocolError, match="not followed by CRLF"):
        parser.read_body()


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",     # in the middle of the head
    b"HTTP/1.1 200 O",
])
def test_truncated_responses_fail_at_eof(data):
    fails(data, eof=True)


def test_eof_before_any_response():
    parser = ResponseParser()
    parser.start("GET")
    assert parser.received_anything is False
    parser.feed_eof()
    with pytest.raises(ProtocolError) as info:
        parser.next_head()
    assert "before sending a response" in info.value.message


def test_keep_alive():
    assert outcome(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")[4] is True
    assert outcome(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")[4] \
        is False
    assert outcome(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")[4] is False
    assert outcome(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
                   )[4] is True


def test_responses_in_sequence_on_one_connection():
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
                b"HTTP/1.1 204 No Content\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nc\r\n0\r\n\r\n")
    assert parser.next_head().status == 200 and parser.read_body() == (b"a", True)
    parser.start("DELETE")
    assert parser.head is None
    assert parser.next_head().status == 204 and parser.read_body() == (b"", True)
    parser.start("GET")
    assert parser.next_head().status == 200 and parser.read_body() == (b"c", True)
    assert parser.buffered == 0


# -- strictness --------------------------------------------------------------------


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\nX : y\r\n",
    b"HTTP/1.1 200 OK\r\nX: y\r\n folded\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\rb\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\nY: b\r\n",
    b"HTTP/1.1 200 OK\r\nBad[Name: b\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;a=b\r\n",
])
def test_malformed_response_heads_fail(head):
    fails(head + b"\r\nhello")


@pytest.mark.parametrize("body", [
    b"5 \r\nhello\r\n0\r\n\r\n", b"0x5\r\nhello\r\n0\r\n\r\n", b"5\r\nhello0\r\n\r\n",
    b"5\nhello\r\n0\r\n\r\n", b"0\r\nContent-Length: 1\r\n\r\n",
])
def test_malformed_chunked_response_bodies_fail(body):
    fails(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)


def test_response_header_limit():
    parser = ResponseParser(Limits(max_header_bytes=100))
    parser.start("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 200)
    with pytest.raises(ProtocolError) as info:
        parser.next_head()
    assert info.value.status == 502


def test_the_parser_is_dead_after_an_error():
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
    with pytest.raises(ProtocolError):
        parser.next_head()
    with pytest.raises(ProtocolError):
        parser.next_head()
    with pytest.raises(ProtocolError):
        parser.read_body()


# -- remembered heads --------------------------------------------------------------

def test_a_response_head_seen_before_parses_exactly_as_the_first_time():
    raw = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
           b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello")
    first = outcome(raw)
    for _ in range(3):
        assert outcome(raw) == first
    parser = ResponseParser()
    parser.feed(raw * 3)
    for _ in range(3):
        parser.start("GET")
        head = parser.next_head()
        assert (head.status, head.fields) == (first[0], first[3])
        assert parser.read_body() == (b"hello", True)
    assert not parser.buffered


def test_a_remembered_response_head_is_framed_for_each_request_method():
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
    assert outcome(raw + b"abc")[5:] == (b"abc", True)
    assert outcome(raw, method="HEAD")[5:] == (b"", True)
    assert outcome(raw + b"abc")[5:] == (b"abc", True)
    conflicting = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert outcome(conflicting, method="HEAD")[5:] == (b"", True)
    fails(conflicting + b"3\r\nabc\r\n0\r\n\r\n")


def test_a_remembered_response_head_still_meets_the_limits():
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-A: 1\r\nX-B: 2\r\n\r\n0123456789"
    assert outcome(raw)[5] == b"0123456789"
    for limits in (Limits(max_body_bytes=5), Limits(max_headers=1)):
        parser = ResponseParser(limits)
        parser.start("GET")
        parser.feed(raw)
        with pytest.raises(ProtocolError):
            parser.next_head()


def test_changing_remembered_response_headers_leaves_the_next_response_alone():
    raw = b"HTTP/1.1 200 OK\r\nX-Tag: one\r\nContent-Length: 0\r\n\r\n"
    head, _, _ = response(raw)
    headers = Headers.from_raw(head.fields)
    headers["x-tag"] = "changed"
    again, _, _ = response(raw)
    assert Headers.from_raw(again.fields)["x-tag"] == "one"


def test_shrunk_headers_decode_again_and_changed_ones_are_kept():
    raw = [(b"x-tag", b"one"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
    headers = Headers.from_raw(raw)
    assert headers["X-Tag"] == "one"
    headers.shrink()
    assert headers._items is None and headers._index is None
    assert headers.get_all("set-cookie") == ["a=1", "b=2"] and len(headers) == 3
    for change in (lambda h: h.add("x-new", "1"), lambda h: h.__setitem__("x-tag", "two"),
                   lambda h: h.__delitem__("x-tag"), lambda h: h.update({"x-tag": "three"})):
        changed = Headers.from_raw(list(raw))
        change(changed)
        expected = changed.items()
        changed.shrink()  # keeps the change: the wire pairs are no longer the truth
        assert changed.items() == expected
    built = Headers([("A", "1")])
    built.shrink()
    assert built.items() == [("A", "1")]
