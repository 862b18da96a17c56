"""Writing a response on a connection: the bytes, the body's kind, the log line.

:func:`encode_at_once` is the server's fast path, a small response as one
bytes object. :func:`write_response` takes every other response: with
headers, large, to HEAD or HTTP/1.0, a file (``sendfile``) or a stream (a
generator whose chunks are sent as they come). Each writes the access log
line of its response (:mod:`corofw.http.accesslog`), saying why one was cut
short, and echoes the request's id in its response when it has one.
"""

from __future__ import annotations

import logging
from typing import Any

from ..kernel import Cancelled
from ..kernel.traps import Coro
from ..net.files import sendfile
from .connection import Connection, format_client, send
from .files import FileResponse
from .messages import Request, Response, StreamingResponse
from .serialize import (
    _NO_BODY_STATUS,
    LAST_CHUNK,
    body_allowed,
    chunk,
    error_response,
    response_head,
    simple_response,
)

log = logging.getLogger("corofw.server")

_JOIN_LIMIT = 65536  # a body below this is sent joined to its head, in one send


def encode_at_once(response: Any, request: Request, keep_alive: bool,
                   extra: bytes = b"") -> bytes | None:
    """The whole response as bytes, for the common case: a small
    :class:`Response` with no extra headers to a GET/POST/... over HTTP/1.1,
    with the server's own ``extra`` header lines (the request id's echo).
    None for anything else, which :func:`write_response` handles."""
    if type(response) is not Response or response.headers:
        return None
    body = response.body
    status = response.status
    if type(body) is not bytes or len(body) >= _JOIN_LIMIT or status in _NO_BODY_STATUS \
            or not 200 <= status < 600 or request.method == "HEAD" \
            or request.version != "HTTP/1.1":
        return None
    return simple_response(status, response.content_type, body, keep_alive, extra)


def write_response(conn: Connection, request: Request, response: Any,
                   keep_alive: bool) -> Coro[tuple[bool, bool]]:
    """Send a response that :func:`encode_at_once` does not take. Returns
    (whether the connection stays open, whether the response went out
    whole); an invalid response is logged and answered with a 500."""
    http10 = request.version == "HTTP/1.0"
    kind = type(response)
    headers = getattr(response, "headers", None)
    if headers and "close" in (headers.get("connection") or "").lower():
        keep_alive = False  # the app asked for the connection to end
    if kind is StreamingResponse:
        keep_alive = keep_alive and not http10
    try:
        status = response.status
        if not 200 <= status <= 999:
            raise ValueError(f"status {status!r} cannot be a final response")
        length: int | None
        if kind is StreamingResponse:
            body: Any = response.body
            length = None
        elif kind is FileResponse:
            body, length = None, response.count
        else:
            body = response.body
            if type(body) is not bytes:
                body = bytes(body)
            length = len(body)
        head = response_head(status, response.content_type, response.headers, length,
                             keep_alive, http10)
        extra = conn.access.ids.echo(request)
        if extra and not (headers and headers.get(conn.access.ids.header) is not None):
            head = head[:-2] + extra + b"\r\n"  # unless the app gave its own
    except (ValueError, TypeError, AttributeError) as exc:
        log.error("invalid response to %s %s: %s", request.method, request.target, exc)
        discard(response)
        error = error_response(500, "Internal Server Error")
        extra = conn.access.ids.echo(request)
        if extra:
            head, _, error_body = error.partition(b"\r\n\r\n")
            error = head + b"\r\n" + extra + b"\r\n" + error_body
        yield from send(conn, error)
        if conn.config.access_log:
            log_access(conn, request, 500, len(error.partition(b"\r\n\r\n")[2]),
                       "invalid response")
        return False, False
    with_body = body_allowed(status, request.method)
    if kind is StreamingResponse and with_body:
        complete = yield from stream(conn, request, status, head, body, http10)
        return keep_alive and complete, complete
    if kind is FileResponse and with_body:
        yield from _send_file(conn, request, response, head)
        return keep_alive, True
    discard(response)
    if kind is StreamingResponse or kind is FileResponse:
        body, length = None, 0  # no body for this status or method
    elif not with_body:
        body = None
    elif len(body) < _JOIN_LIMIT:
        head, body = head + body, None
    try:
        yield from send(conn, head, body)
    except (OSError, Cancelled) as exc:
        if conn.config.access_log:
            log_access(conn, request, status, length, interrupted(exc))
        raise
    if conn.config.access_log:
        log_access(conn, request, status, length)
    return keep_alive, True


def _send_file(conn: Connection, request: Request, response: FileResponse,
               head: bytes) -> Coro[None]:
    """Send ``head`` and the file's bytes with ``sendfile``, under the send
    deadline while the client's buffer is full (restarted by every piece
    it takes); the file is closed whatever happens."""
    deadline = conn.deadline
    timeout = conn.config.send_timeout
    sent = 0
    failure = ""

    def progress(count: int) -> None:
        deadline.set(timeout, "send")

    try:
        deadline.set(timeout, "send")
        sent = yield from sendfile(conn.sock, response.file.fileno(), response.offset,
                                   response.count, head, progress)
        deadline.clear()
    except (OSError, Cancelled) as exc:
        failure = interrupted(exc)
        raise
    finally:
        response.close()
        if conn.config.access_log:
            log_access(conn, request, response.status, sent, failure)


def stream(conn: Connection, request: Request, status: int, head: bytes, body: Any,
           http10: bool) -> Coro[bool]:
    """Send ``head``, then drive a streaming body: bytes/str it yields are
    sent as chunks, anything else is a kernel trap, forwarded so the body
    can wait. Return False if the body failed (the response is then
    incomplete and the connection must close). The access log line counts
    the body bytes sent and says why a stream ended early."""
    send_value: Any = None
    error: BaseException | None = None
    sent = 0
    failure = "incomplete: the server stopped"
    try:
        yield from send(conn, head)
        while True:
            try:
                if error is None:
                    item = body.send(send_value)
                else:
                    item, error = body.throw(error), None
            except StopIteration:
                break
            except Exception as exc:
                log.exception("error streaming the response to %s %s",
                              request.method, request.target)
                failure = f"incomplete: the stream raised {type(exc).__name__}"
                return False
            send_value = None
            if isinstance(item, (bytes, bytearray, memoryview, str)):
                data = item.encode() if isinstance(item, str) else bytes(item)
                if data:
                    yield from send(conn, data if http10 else chunk(data))
                    sent += len(data)
                continue
            try:
                send_value = yield item
            except BaseException as exc:  # Cancelled included: let the body clean up
                error = exc
        if not http10:
            yield from send(conn, LAST_CHUNK)
        failure = ""
        return True
    except (OSError, Cancelled) as exc:
        failure = interrupted(exc)
        raise
    finally:
        close_body(body)
        if conn.config.access_log:
            log_access(conn, request, status, sent, failure)


def discard(response: Any) -> None:
    """Release what a response that will not be sent holds: a stream's
    generator is closed (its ``finally`` blocks run), a file closed."""
    kind = type(response)
    if kind is StreamingResponse:
        close_body(response.body)
    elif kind is FileResponse:
        response.close()


def close_body(body: Any) -> None:
    """Close a streaming body that will not be driven to its end, so its
    ``finally`` blocks run now rather than whenever it is collected."""
    try:
        body.close()
    except Exception:
        log.exception("error closing a streaming response body")


def log_access(conn: Connection, request: Request, status: int, length: Any,
               failure: str = "") -> None:
    """The access log line of a response: client, time, request line,
    status, body bytes, duration, request id; a response that failed says
    what happened (``incomplete: ...``)."""
    conn.access.write(format_client(conn.client), request, status, length, conn.started,
                      failure)


def interrupted(exc: BaseException) -> str:
    """What cut a response short, for the access log."""
    if isinstance(exc, Cancelled):
        return f"incomplete: {exc.reason}"
    return f"incomplete: connection lost ({getattr(exc, 'strerror', None) or type(exc).__name__})"
