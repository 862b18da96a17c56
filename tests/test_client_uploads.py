"""Sending large request bodies: the write deadline bounds each stall of an
upload (plain and TLS), the total deadline bounds all of it, and a server
that answers before the body is sent (a 413) has its answer returned."""

from __future__ import annotations

import socket
import time

import pytest
from raw_server import RawServer, call

from corofw import Timeout, TotalTimeout, WriteTimeout, timeout_after

pytestmark = pytest.mark.usefixtures("no_leaks")

TOO_LARGE = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\ntoo much"


def read_head(conn):
    """The request head (bytes up to the blank line), reading nothing more
    than a few bytes beyond it."""
    data = b""
    while b"\r\n\r\n" not in data:
        got = conn.recv(4096)
        if not got:
            return None
        data += got
    return data


def upload(url, size, **kwargs):
    """A client call: POST ``size`` bytes; (status, body, connections left
    in the pool). A safety net turns a hang into a failure."""

    def go(client):
        resp = yield from timeout_after(10, client.post(url, content=b"u" * size, **kwargs))
        return resp.status_code, resp.content, client.pool.total

    return go


@pytest.mark.parametrize("timeout, expected", [
    (Timeout(write=0.5, total=1.0), WriteTimeout),
    (Timeout(write=5.0, total=1.0), TotalTimeout),
])
def test_a_tls_upload_to_a_server_that_stops_reading_times_out(
        tls_server_context, tls_client_context, timeout, expected):
    def handler(server, conn, index):
        with tls_server_context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)
            server.stopping.wait(10)

    with RawServer(handler) as srv:
        error, seconds = call(upload(f"https://127.0.0.1:{srv.port}/", 32 << 20),
                              timeout=timeout, ssl_context=tls_client_context)
    assert type(error) is expected
    assert seconds < 3.0


def slow_reader(burst, pause):
    """A handler reading the body ``burst`` bytes at a time with ``pause``
    seconds in between, then answering with the number of bytes read."""

    def handler(server, conn, index):
        head = read_head(conn)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        received = len(head.partition(b"\r\n\r\n")[2])
        while received < length:
            time.sleep(pause)
            goal = min(length, received + burst)
            while received < goal:
                received += len(conn.recv(goal - received))
        size = str(received).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(size), size))
        server.wait_for_eof(conn)

    return handler


def test_the_write_timeout_bounds_each_stall_not_the_whole_upload():
    # 40 MiB read 4 MiB at a time, 0.1 s apart: the upload takes about a
    # second (far beyond what the socket buffers hold), each stall 0.1 s.
    with RawServer(slow_reader(4 << 20, 0.1)) as srv:
        srv.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        (status, body, _), seconds = call(upload(srv.url, 40 << 20), timeout=Timeout(write=0.5))
    assert (status, body) == (200, str(40 << 20).encode())
    assert seconds > 0.5  # longer than the write timeout in all


def test_a_tls_upload_that_keeps_moving_is_not_cut_off(tls_server_context, tls_client_context):
    plain = slow_reader(2 << 20, 0.1)

    def handler(server, conn, index):
        with tls_server_context.wrap_socket(conn, server_side=True) as tls:
            plain(server, tls, index)

    with RawServer(handler) as srv:
        srv.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        (status, body, _), seconds = call(upload(f"https://127.0.0.1:{srv.port}/", 24 << 20),
                                          timeout=Timeout(write=0.5),
                                          ssl_context=tls_client_context)
    assert (status, body) == (200, str(24 << 20).encode())
    assert seconds > 0.5


# -- an early answer -------------------------------------------------------------


def answer_early_then_close(server, conn, index):
    """413 after the head, then close with the body unread (an RST)."""
    read_head(conn)
    conn.sendall(TOO_LARGE)
    time.sleep(0.05)


def answer_early_and_stop_reading(server, conn, index):
    """413 after the head, then neither read nor close."""
    read_head(conn)
    conn.sendall(TOO_LARGE)
    server.stopping.wait(10)


@pytest.mark.parametrize("handler", [answer_early_then_close, answer_early_and_stop_reading])
def test_an_answer_before_the_body_is_sent_is_returned(handler):
    with RawServer(handler) as srv:
        (status, body, left), seconds = call(upload(srv.url, 32 << 20),
                                             timeout=Timeout(write=5.0))
    assert (status, body) == (413, b"too much")
    assert left == 0  # half a request went out: the connection is not reused
    assert seconds < 3.0  # noticed at a pause, not at the write timeout


def test_an_answer_arriving_while_the_upload_waits_is_returned_at_once():
    def handler(server, conn, index):
        read_head(conn)
        time.sleep(0.3)  # the client waits to write by now, and sees nothing new
        conn.sendall(TOO_LARGE)
        server.stopping.wait(10)

    with RawServer(handler) as srv:
        (status, body, left), seconds = call(upload(srv.url, 32 << 20),
                                             timeout=Timeout(write=2.5))
    assert (status, body, left) == (413, b"too much", 0)
    assert 0.3 <= seconds < 2.0  # when the answer came, not when the write deadline passed


def test_an_answer_arriving_while_a_tls_upload_waits_is_returned_at_once(
        tls_server_context, tls_client_context):
    def handler(server, conn, index):
        with tls_server_context.wrap_socket(conn, server_side=True) as tls:
            read_head(tls)
            time.sleep(0.3)
            tls.sendall(TOO_LARGE)
            server.stopping.wait(10)

    with RawServer(handler) as srv:
        (status, body, left), seconds = call(upload(f"https://127.0.0.1:{srv.port}/", 32 << 20),
                                             timeout=Timeout(write=2.5),
                                             ssl_context=tls_client_context)
    assert (status, body, left) == (413, b"too much", 0)
    assert 0.3 <= seconds < 2.0


def test_an_early_answer_over_tls_is_returned(tls_server_context, tls_client_context):
    def handler(server, conn, index):
        with tls_server_context.wrap_socket(conn, server_side=True) as tls:
            answer_early_and_stop_reading(server, tls, index)

    with RawServer(handler) as srv:
        (status, body, left), _ = call(upload(f"https://127.0.0.1:{srv.port}/", 32 << 20),
                                       timeout=Timeout(write=5.0),
                                       ssl_context=tls_client_context)
    assert (status, body, left) == (413, b"too much", 0)


def test_no_answer_after_a_failed_send_is_still_a_write_error():
    def handler(server, conn, index):
        read_head(conn)
        time.sleep(0.05)  # close with the body unread: an RST, and no answer

    with RawServer(handler) as srv:
        error, _ = call(upload(srv.url + "/upload", 32 << 20), timeout=5)
    assert type(error).__name__ == "WriteError"
    assert error.url == srv.url + "/upload"
