"""The parser's work grows linearly with its input, however the input is cut.

Coarse timing checks, not benchmarks: each case must finish well within a
generous bound, and twice the input may take at most about twice the time
(the bound is 4x, the best of two runs, to stay clear of noise)."""

from __future__ import annotations

import time

import pytest

from corofw.http.parser import Limits, ProtocolError, RequestParser

BIG = Limits(max_request_line=1 << 20, max_header_bytes=1 << 22, max_headers=1 << 20,
             max_body_bytes=1 << 30)


def feed_all(data: bytes, step: int, limits: Limits = BIG) -> list:
    parser = RequestParser(limits)
    view = memoryview(data)
    out = []
    for i in range(0, len(data), step):
        parser.feed(view[i:i + step])
        while (request := parser.next_request()) is not None:
            out.append(request)
    return out


def seconds(fn, *args) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
    return best


def assert_linear(make, n: int, step: int, bound: float) -> None:
    """``make(n)`` fed ``step`` bytes at a time parses within ``bound``
    seconds, and ``make(2 * n)`` takes less than four times as long."""
    small, large = make(n), make(2 * n)
    t_small = seconds(feed_all, small, step)
    t_large = seconds(feed_all, large, step)
    assert t_large < bound, f"{len(large)} bytes took {t_large:.2f}s"
    assert t_large < 4 * max(t_small, 0.002), \
        f"{len(small)} bytes: {t_small:.3f}s, {len(large)} bytes: {t_large:.3f}s"


def header_block(size: int) -> bytes:
    line = b"X-Header-Name: " + b"v" * 48 + b"\r\n"
    return b"GET / HTTP/1.1\r\nHost: a\r\n" + line * (size // len(line)) + b"\r\n"


def test_header_block_fed_one_byte_at_a_time():
    assert len(feed_all(header_block(64 << 10), 1)) == 1
    assert_linear(header_block, 32 << 10, 1, bound=2.0)


def test_one_long_header_value_fed_one_byte_at_a_time():
    def make(size: int) -> bytes:
        return b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * size + b"\r\n\r\n"
    assert_linear(make, 32 << 10, 1, bound=2.0)


def test_request_line_fed_one_byte_at_a_time():
    def make(size: int) -> bytes:
        return b"GET /" + b"a" * size + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    assert_linear(make, 16 << 10, 1, bound=2.0)


def test_body_fed_in_small_pieces():
    def make(size: int) -> bytes:
        return b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size
    (request,) = feed_all(make(1 << 20), 64)
    assert len(request.body) == 1 << 20
    assert_linear(make, 512 << 10, 64, bound=2.0)


def test_chunked_body_in_one_big_chunk_fed_in_small_pieces():
    def make(size: int) -> bytes:
        return (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n" % size + b"x" * size + b"\r\n0\r\n\r\n")
    assert_linear(make, 512 << 10, 64, bound=2.0)


def many_chunks(count: int) -> bytes:
    return (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"1;e=v\r\nx\r\n" * count + b"0\r\n\r\n")


@pytest.mark.parametrize("step, count", [(1 << 30, 25_000), (7, 10_000), (1, 5_000)])
def test_many_tiny_chunks(step, count):
    (request,) = feed_all(many_chunks(2 * count), step)
    assert request.body == b"x" * 2 * count
    assert_linear(many_chunks, count, step, bound=2.0)


def test_many_pipelined_requests():
    def make(count: int) -> bytes:
        return b"GET /a?b=c HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n" * count
    assert len(feed_all(make(10_000), 1 << 20)) == 10_000
    assert_linear(make, 5_000, 1 << 20, bound=2.0)
    assert_linear(make, 500, 5, bound=2.0)


@pytest.mark.parametrize("data", [
    # long runs that a backtracking pattern could choke on
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5" + b" " * 4000 + b"x\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a" + b" " * 4000
    + b"\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5" + b";a=b" * 1000
    + b";\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"" + b"\\\"" * 2000
    + b"\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + b"chunked ; a = b " * 1000
    + b"\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + b" ,\t" * 8000 + b"x y\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + b"5, " * 8000 + b"6\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: " + b"a." * 12000 + b"/\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX:" + b" \t" * 12000 + b"\x01\r\n\r\n",
    b"GET /" + b"%41" * 2600 + b"%4 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"a:\r\n" * 8000 + b"a\r\n\r\n",
])
def test_pathological_inputs_fail_fast(data):
    start = time.perf_counter()
    with pytest.raises(ProtocolError):
        feed_all(data, len(data), Limits(max_headers=10_000))
    assert time.perf_counter() - start < 0.5
