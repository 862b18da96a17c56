"""A request body read as it arrives, for a route that streams it.

The server hands such a request to its handler as soon as the head is in,
with ``request.body`` None; the handler pulls the body a piece at a time
(:meth:`Request.read_chunk <corofw.http.messages.Request.read_chunk>`), so
an upload of any size within the route's limit costs one piece of memory,
and a handler that stops reading stops the client (the socket is not read
meanwhile: TCP's flow control is the backpressure). ``100 Continue`` is
sent when the handler first asks for the body, so a handler that answers
without reading never invites it. Each wait for more bytes is bounded by
the server's ``body_timeout``. A body left unread when the response is
sent closes the connection after it.
"""

from __future__ import annotations

from typing import Any

from ..kernel.task import TaskTimeout
from ..kernel.timeouts import timeout_after
from ..kernel.traps import Coro, read_wait
from .connection import RECV_SIZE, send
from .parser import ProtocolError
from .serialize import CONTINUE


class BodyError(ValueError):
    """The body could not be read to its end: ``status`` is the answer
    (400 malformed or cut short, 408 too slow, 413 over the limit)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class BodyStream:
    """The body of one request on connection ``conn``, read through its
    parser. ``done`` once it has all been read; after a failure it never
    is (the connection then closes after the answer), and each read
    raises the failure again."""

    __slots__ = ("conn", "timeout", "done", "size", "error")

    def __init__(self, conn: Any, timeout: float) -> None:
        self.conn = conn
        self.timeout = timeout
        self.done = False
        self.size = 0  # bytes handed over so far
        self.error: BodyError | None = None

    def read_chunk(self) -> Coro[bytes]:
        """The next piece of the body; ``b""`` once it has all been read.
        :class:`BodyError` if it cannot be read to its end."""
        if self.done:
            return b""
        if self.error is not None:
            raise self.error
        parser = self.conn.parser
        try:
            while True:
                data: bytes
                try:
                    data, complete = parser.take_body()
                except ProtocolError as exc:
                    raise BodyError(exc.message, exc.status) from None
                if complete:
                    self.done = True
                if data or complete:
                    self.size += len(data)
                    return data
                yield from self._receive(parser)
        except BodyError as exc:
            self.error = exc
            raise

    def _receive(self, parser: Any) -> Coro[None]:
        conn = self.conn
        raw = conn.sock.sock
        if parser.expect_continue and not conn.sent_continue:
            conn.sent_continue = True
            yield from send(conn, CONTINUE)
        while True:
            try:
                data = raw.recv(RECV_SIZE)
                break
            except BlockingIOError:
                pass
            except OSError as exc:
                raise BodyError(f"the connection broke during the body: {exc}", 400) from None
            try:
                yield from timeout_after(self.timeout, _readable(conn.sock.fd))
            except TaskTimeout:
                raise BodyError(f"no part of the body came for {self.timeout:g} s", 408) \
                    from None
        if not data:
            raise BodyError("the client closed the connection before the body ended", 400)
        parser.feed(data)


def _readable(fd: int) -> Coro[None]:
    yield read_wait(fd)
