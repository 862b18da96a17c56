"""One exchange on a pooled connection: send the request, read the response
head, then its body, every wait bounded by the connection's deadline.

The deadline is armed for the phase it guards each time the exchange has to
wait, and never beyond the call's total deadline: ``read`` bounds each
silence while the response comes, ``write`` each stall of the upload (as in
httpx, a pause and not the whole upload, so a large body on a slow link is
fine while it moves). At each pause of an upload the exchange also looks
for an early answer: a server that responds before the body is sent (a 413,
say) and then stops reading or closes has its response returned, as when
sending fails outright; only when no response can be read does the call
fail with the send's error.
"""

from __future__ import annotations

import socket
import ssl
from typing import TYPE_CHECKING

from ..kernel.deadline import Deadline
from ..kernel.task import Cancelled
from ..kernel.traps import READ, WRITE, Coro
from .client_errors import ClientError, ReadError, RemoteProtocolError, WriteError, WriteTimeout
from .parser import ProtocolError
from .pool import PooledConnection

if TYPE_CHECKING:
    from .client import Timeout

RECV_SIZE = 65536
# A TLS send that has to be retried must be given the same bytes again, so
# TLS sends go in pieces of this size.
_TLS_PIECE = 65536
_peek = socket.socket.recv


def arm(deadline: Deadline, label: str, seconds: float | None,
        total_until: float | None) -> None:
    """Arm ``deadline`` for phase ``label`` (None: no limit), bounded by the
    call's total deadline."""
    if total_until is not None:
        left = total_until - deadline.kernel.clock()
        if seconds is None or left < seconds:
            deadline.set(max(left, 0.0), "total")
            return
    if seconds is None:
        deadline.clear()
    else:
        deadline.set(seconds, label)


def exchange(conn: PooledConnection, payload: bytes, timeouts: Timeout,
             total_until: float | None, url: str) -> Coro[bool]:
    """Send the request and read until the response head has been parsed.
    Returns whether all of the request was sent (False: the server answered
    early, and the connection must not be reused). ``conn.sent`` and
    ``conn.received`` count the bytes that went each way (what decides
    whether a failed request may be retried). A request the socket takes at
    once never arms the write deadline."""
    sock = conn.sock
    raw = sock.sock
    plain = type(raw) is socket.socket  # TLS encrypts as it sends, and may buffer replies
    conn.sent = 0
    try:
        if plain or len(payload) <= _TLS_PIECE:
            sent = raw.send(payload)
        else:
            sent = raw.send(memoryview(payload)[:_TLS_PIECE])
    except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
        sent = 0
    except OSError as exc:
        raise WriteError(f"sending the request failed: {exc}", url) from None
    conn.sent = sent
    if sent < len(payload):
        failure = yield from _send_rest(conn, payload, timeouts, total_until, url)
        if failure is not None:
            try:
                yield from read_head(conn, timeouts, total_until, url)
            except ClientError:
                raise failure from None
            return False
    if plain and not conn.parser.buffered:
        # The request has just left: nothing can have come back yet, so wait
        # first instead of a recv that would fail.
        arm(conn.deadline, "read", timeouts.read, total_until)
        yield (READ, sock.fd)
        try:
            deliver(conn, raw.recv(RECV_SIZE))
        except BlockingIOError:
            pass  # woken early: read_head waits again
        except OSError as exc:
            raise ReadError(f"reading the response failed: {exc}", url) from None
    yield from read_head(conn, timeouts, total_until, url)
    return True


def _send_rest(conn: PooledConnection, payload: bytes, timeouts: Timeout,
               total_until: float | None, url: str) -> Coro[ClientError | None]:
    """Send what the first send left, re-arming the write deadline at each
    pause. None once it has all gone; else the error to raise if no
    response can be read: the send failed, or response bytes arrived (seen
    at a pause, or when the write deadline passed)."""
    sock = conn.sock
    raw = sock.sock
    deadline = conn.deadline
    total = len(payload)
    piece = total if type(raw) is socket.socket else _TLS_PIECE
    sent = conn.sent
    view = memoryview(payload)
    try:
        while True:
            try:
                while sent < total:
                    sent += raw.send(view[sent:sent + piece])
                trap = None
            except (BlockingIOError, ssl.SSLWantWriteError):
                trap = (WRITE, sock.fd)
            except ssl.SSLWantReadError:
                trap = (READ, sock.fd)
            except OSError as exc:
                conn.sent = sent
                return WriteError(f"sending the request failed: {exc}", url)
            conn.sent = sent
            if trap is None:
                return None
            if _answered(conn):
                return WriteError("the server answered before the request was sent", url)
            arm(deadline, "write", timeouts.write, total_until)
            try:
                yield trap
            except Cancelled as exc:
                if exc.scope is deadline and deadline.label == "write" and _answered(conn):
                    return WriteTimeout("write timeout", url)
                raise
    finally:
        view.release()


def _answered(conn: PooledConnection) -> bool:
    """Whether response bytes have arrived: a peek over plain TCP; over TLS
    a read, whose bytes go to the parser (only a TLS read can tell a
    response from a session ticket)."""
    raw = conn.sock.sock
    try:
        if type(raw) is socket.socket:
            return bool(_peek(raw, 1, socket.MSG_PEEK))
        data = raw.recv(RECV_SIZE)
    except OSError:  # nothing yet (a would-block), or an error the send will meet
        return False
    if data:
        deliver(conn, data)
    return bool(data)


def read_head(conn: PooledConnection, timeouts: Timeout, total_until: float | None,
              url: str) -> Coro[None]:
    """Read until the final response head has been parsed."""
    parser = conn.parser
    while True:
        try:
            if parser.next_head() is not None:
                return
        except ProtocolError as exc:
            if not conn.received:  # closed at once: a dead connection, not bad HTTP
                raise ReadError(exc.message, url) from None
            raise RemoteProtocolError(exc.message, url) from None
        yield from receive(conn, timeouts, total_until, url)


def receive(conn: PooledConnection, timeouts: Timeout, total_until: float | None,
            url: str) -> Coro[None]:
    """Feed the parser the next bytes from the server (or its end of
    stream). The read deadline, the longest silence allowed, is armed each
    time the call has to wait."""
    sock = conn.sock
    raw = sock.sock
    while True:
        try:
            data = raw.recv(RECV_SIZE)
            break
        except (BlockingIOError, ssl.SSLWantReadError):
            trap = (READ, sock.fd)
        except ssl.SSLWantWriteError:
            trap = (WRITE, sock.fd)
        except ssl.SSLEOFError:
            data = b""
            break
        except OSError as exc:
            raise ReadError(f"reading the response failed: {exc}", url) from None
        arm(conn.deadline, "read", timeouts.read, total_until)
        yield trap
    deliver(conn, data)


def deliver(conn: PooledConnection, data: bytes) -> None:
    """Hand the parser what a recv returned: bytes, or ``b""`` for the end
    of the stream."""
    if data:
        conn.received += len(data)
        conn.parser.feed(data)
    else:
        conn.parser.feed_eof()


def read_some_body(conn: PooledConnection, timeouts: Timeout, total_until: float | None,
                   url: str) -> Coro[tuple[bytes, bool]]:
    """The body bytes that have arrived (waiting for some if none have),
    and whether the body is complete."""
    parser = conn.parser
    while True:
        try:
            data, done = parser.read_body()
        except ProtocolError as exc:
            raise RemoteProtocolError(exc.message, url) from None
        if data or done:
            return data, done
        yield from receive(conn, timeouts, total_until, url)
