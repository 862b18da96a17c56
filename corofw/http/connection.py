"""One client connection of the server: what it is doing, and its socket I/O.

A :class:`Connection` records the phase a connection is in (which decides
what shutting down may close at once), its deadline and its parser. The
functions here move its bytes: sending with backpressure under the send
deadline, draining what a client still sends before a close, and watching
the client while its request is answered (:func:`watch_client`).
"""

from __future__ import annotations

import socket
from typing import Any

from ..kernel import Task
from ..kernel.deadline import Deadline
from ..kernel.traps import Coro, read_wait, write_wait
from ..net import Socket
from .config import ServerConfig
from .parser import RequestParser

RECV_SIZE = 65536
LINGER_SECONDS = 1.0
_LINGER_BYTES = 1 << 24

# What a connection is doing; shutting down closes the connections whose
# phase is in CLOSABLE at once (no request of theirs has reached the app).
IDLE, HEAD, BODY, BUSY, LINGER = "idle", "head", "body", "busy", "linger"
UPGRADED = "upgraded"  # a WebSocket or an endless stream: ended at shutdown, not waited for
CLOSABLE = frozenset({IDLE, HEAD, LINGER, UPGRADED})
READING = frozenset({HEAD, BODY})  # a 408 may still be sent: no response has begun


class Connection:
    """A client connection and its state between the server's phases.

    ``filled``: the last ``recv`` filled its buffer (more may be waiting).
    ``unyielded``: requests answered since the task last let others run.
    ``sent_continue``: ``100 Continue`` went out for the request being read.
    ``linger``: close with :func:`linger` (an error response was sent).
    ``watching``: the number of the answer under way whose client is to be
    watched (0: none); ``answers`` counts them. ``watch``: the timer that
    starts watching (armed for answer number ``timed``), or the task
    running :func:`watch_client`, or None.
    ``gone``: the client closed or reset the connection.
    ``access``: the server's access log; ``started``: when the request
    being answered had arrived, for its line."""

    __slots__ = ("sock", "client", "config", "task", "phase", "deadline", "parser", "filled",
                 "unyielded", "sent_continue", "linger", "watching", "answers", "timed", "watch",
                 "gone", "access", "started")

    def __init__(self, sock: Socket, client: Any, config: ServerConfig) -> None:
        self.sock = sock
        self.client = client
        self.config = config
        self.task: Any = None
        self.phase = IDLE
        self.deadline: Deadline = None  # type: ignore[assignment]  # set by its task
        self.parser: RequestParser = None  # type: ignore[assignment]  # set by its task
        self.filled = False
        self.unyielded = 0
        self.sent_continue = False
        self.linger = False
        self.watching = 0
        self.answers = 0
        self.timed = 0
        self.watch: Any = None
        self.gone = False
        self.access: Any = None  # the server's AccessLog (request ids and their echo too)
        self.started = 0.0  # when the request being answered had arrived (kernel clock)


def send(conn: Connection, data: bytes, body: bytes | None = None) -> Coro[None]:
    """Send ``data``, then ``body`` when it was too large to join to the
    head. Whenever the client's buffer is full the send deadline runs: a
    client that stops reading for ``send_timeout`` is disconnected, one
    that reads slowly is not."""
    try:
        sent = conn.sock.sock.send(data)
    except BlockingIOError:
        sent = 0
    if sent != len(data) or body is not None:
        yield from send_rest(conn, data, sent, body)


def send_rest(conn: Connection, data: bytes, sent: int, body: bytes | None = None) -> Coro[None]:
    """Finish a send the socket could not take at once, under the send
    deadline, then restore the deadline that was running."""
    deadline = conn.deadline
    saved_when, saved_label = deadline.when, deadline.label
    if sent < len(data):
        yield from _send_slowly(conn, data, sent)
    if body is not None:
        yield from _send_slowly(conn, body, 0)
    if saved_when is None:
        deadline.clear()
    else:
        deadline.set(max(saved_when - deadline.kernel.clock(), 0.0), saved_label)


def _send_slowly(conn: Connection, data: bytes, sent: int) -> Coro[None]:
    send_now = conn.sock.sock.send
    write_trap = write_wait(conn.sock.fd)
    deadline = conn.deadline
    timeout = conn.config.send_timeout
    total = len(data)
    deadline.set(timeout, "send")
    with memoryview(data) as view:
        while sent < total:
            try:
                sent += send_now(view[sent:])
            except BlockingIOError:
                yield write_trap
                continue
            deadline.set(timeout, "send")


def try_send(sock: Socket, data: bytes) -> None:
    """Send what the socket takes at once, ignoring any error (a last word
    before closing)."""
    try:
        sock.sock.send(data)
    except OSError:
        pass


def linger(conn: Connection) -> Coro[None]:
    """Close after an error response without resetting the connection: a
    client still sending the request it was refused for would otherwise get
    a reset that can destroy the response before it is read. Stop writing,
    then read and discard for a little while."""
    conn.phase = LINGER
    conn.sock.shutdown(socket.SHUT_WR)
    conn.deadline.set(LINGER_SECONDS, "lingering close")
    yield from drain(conn.sock)


def watch_client(conn: Connection, task: Task) -> Coro[None]:
    """Watch the client while ``task`` (the connection's) answers its
    request: when the client closes its end or resets the connection,
    cancel ``task`` with "client disconnected", so that the handler and
    what it started stop and clean up. Bytes that arrive meanwhile are
    pipelined requests, not a disconnect: they are read into the parser
    and kept, until a ``RECV_SIZE`` of them waits; then watching stops and
    the rest stays in the socket, where TCP pushes back on the client.

    A client that half-closes (``shutdown(SHUT_WR)``) after its request
    is taken as gone too: an end of file cannot tell it from a close."""
    recv = conn.sock.sock.recv
    read_trap = read_wait(conn.sock.fd)
    parser = conn.parser
    while parser.buffered < RECV_SIZE:
        yield read_trap
        try:
            data = recv(RECV_SIZE)
        except BlockingIOError:
            continue
        except OSError:  # a reset
            data = b""
        if not data:
            conn.gone = True
            task.cancel("client disconnected")
            return
        parser.feed(data)


def readable(sock: Socket) -> Coro[None]:
    """Wait until ``sock`` has something to read (or its end of file)."""
    yield read_wait(sock.fd)


def drain(sock: Socket) -> Coro[None]:
    """Read and discard until the peer closes (at most 16 MiB)."""
    recv = sock.sock.recv
    drained = 0
    while drained < _LINGER_BYTES:
        try:
            data = recv(RECV_SIZE)
        except BlockingIOError:
            yield read_wait(sock.fd)
            continue
        if not data:
            return
        drained += len(data)


def format_client(client: Any) -> str:
    """``host:port``, with an IPv6 host in brackets (``[::1]:8000``)."""
    if isinstance(client, tuple) and len(client) >= 2:
        host = client[0]
        return f"[{host}]:{client[1]}" if ":" in host else f"{host}:{client[1]}"
    return str(client)
