"""One request's trip over the network, from finding a connection to the
last byte of the response.

An :class:`Exchange` holds what a call needs while it talks to a server:
the connection, the timeouts, the total deadline and the URL. It owns every
step that waits: a connection from the pool (or a new one), sending the
request, reading the response head, then the body. Each wait is bounded by
one deadline, armed for the phase it guards each time the exchange has to
wait, never beyond the call's total deadline: ``pool`` and ``connect``
while a connection is found, ``write`` for each stall of the upload (as in
httpx, a pause and not the whole upload, so a large body on a slow link is
fine while it moves), ``read`` for each silence while the response comes.
When the deadline passes, the task is cancelled at its wait with the
deadline as the cancellation's scope; :meth:`Exchange.timeout_error` is the
one place that turns this into the phase's
:class:`~corofw.http.client_errors.ClientTimeout`.

At each pause of an upload the exchange also looks for an early answer,
and one arriving during a pause ends it at once: a server that responds
before the body is sent (a 413, say) and then stops reading or closes has
its response returned, as when sending fails outright; only when no
response can be read does the call fail with the send's error. (A server
that closes at once with the body unread resets the connection, and the
reset may discard its answer in flight: RFC 9112 section 9.6 asks servers
to close in stages for that reason.)

A body streamed from an iterator goes out chunked, one piece at a time,
each read from the iterator only once the previous one has been sent.

A request that failed on a reused connection before anything came back
(the server closed the idle connection) is sent once more on a new
connection, if it may be repeated (an idempotent method) or never left,
and no piece of a streamed body has been read.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from typing import Any

from ..kernel.deadline import Deadline
from ..kernel.task import Cancelled, Task
from ..kernel.traps import RESCHEDULE, Coro, read_wait, readwrite_wait, write_wait
from ..net.sockets import FAIR_SHARE
from .client_errors import (
    TIMEOUTS,
    ClientError,
    ClientTimeout,
    ReadError,
    RemoteProtocolError,
    WriteError,
    WriteTimeout,
)
from .parser import Limits, ProtocolError
from .pool import Pool, PooledConnection
from .request_body import LAST_CHUNK, chunk
from .timeouts import Timeout

RECV_SIZE = 65536
# A TLS send that has to be retried must be given the same bytes again, so
# TLS sends go in pieces of this size.
_TLS_PIECE = 65536
_peek = socket.socket.recv
_RETRIED = (ReadError, WriteError, RemoteProtocolError)


class Exchange:
    """One call's exchange with the server at ``key`` (``(scheme, host,
    port)``); ``url`` names it in errors. ``connect(key, url)`` opens a new
    connection (a coroutine returning a socket). ``total_until`` is the
    call's total deadline on the kernel's clock (None: none)."""

    __slots__ = ("pool", "connect", "method", "url", "key", "timeouts", "total_until",
                 "task", "started", "conn", "deadline", "pulled")

    def __init__(self, pool: Pool, connect: Any, method: str, url: str,
                 key: tuple[str, str, int], timeouts: Timeout, total_until: float | None,
                 task: Task) -> None:
        self.pool = pool
        self.connect = connect
        self.method = method
        self.url = url
        self.key = key
        self.timeouts = timeouts
        self.total_until = total_until
        self.task = task
        self.started = task.kernel.clock()
        self.conn: PooledConnection | None = None
        self.deadline: Deadline | None = None  # the one guarding the current wait
        self.pulled = False  # whether a piece of a streamed body has been read

    def __repr__(self) -> str:
        return f"<Exchange {self.method} {self.url}>"

    # -- the one translation -------------------------------------------------------

    def timeout_error(self, exc: Cancelled) -> ClientTimeout | None:
        """The client error for ``exc`` if this exchange's deadline sent it
        (a ConnectTimeout, ReadTimeout... naming the URL); None when the
        cancellation came from elsewhere and must go on."""
        deadline = self.deadline
        if deadline is None or exc.scope is not deadline:
            return None
        label = deadline.label
        return TIMEOUTS[label](f"{label} timeout", self.url)

    # -- the steps -----------------------------------------------------------------

    def start(self, payload: bytes, retryable: bool, limits: Limits,
              stream: Iterator[bytes] | None = None) -> Coro[bool]:
        """Find a connection, send ``payload`` (then the pieces of
        ``stream``, chunked) and read until the response head has been
        parsed (``self.conn.parser.head``); the body is read with
        :meth:`read_body`. Returns whether all of the request was sent
        (False: the server answered early, and the connection must not be
        reused). ``limits`` bound the response.

        ``conn.sent`` and ``conn.received`` count the bytes that went each
        way, which decides whether a failed request may be retried. A
        request the socket takes at once never arms the write deadline."""
        pool = self.pool
        task = self.task
        try:
            for attempt in range(2):
                # A retry always gets a new connection: when one idle connection
                # was dead (a restarted server), its idle siblings are too.
                conn = pool.take_idle(self.key, self.started, retryable) if not attempt else None
                if conn is None:
                    conn = yield from self._open(fresh=attempt > 0)
                else:
                    deadline = conn.deadline
                    if deadline.task is not task:
                        deadline.retarget(task)
                    self.conn = conn
                    self.deadline = deadline
                parser = conn.parser
                parser.limits = limits
                parser.start(self.method)
                conn.received = 0
                try:
                    whole = True
                    failure = None
                    raw = conn.sock.sock
                    conn.sent = 0
                    try:  # what the socket takes at once (over TLS, at most one piece)
                        if type(raw) is socket.socket or len(payload) <= _TLS_PIECE:
                            sent = raw.send(payload)
                        else:
                            sent = raw.send(memoryview(payload)[:_TLS_PIECE])
                    except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                        sent = 0
                    except OSError as exc:
                        raise WriteError(f"sending the request failed: {exc}",
                                         self.url) from None
                    conn.sent = sent
                    if sent < len(payload):
                        failure = yield from self._send_rest(payload, sent)
                    if stream is not None and failure is None:
                        failure = yield from self._send_stream(stream)
                    if failure is not None:
                        try:
                            yield from self._read_head()
                        except ClientError:
                            raise failure from None
                        conn.deadline.clear()
                        return False
                    sock = conn.sock
                    if type(raw) is socket.socket and not parser.buffered:
                        # The request has just left: nothing can have come back
                        # yet, so wait first instead of a recv that would fail.
                        self._arm("read", self.timeouts.read)
                        yield read_wait(sock.fd)
                        try:
                            self._deliver(raw.recv(RECV_SIZE))
                        except BlockingIOError:
                            pass  # woken early: _read_head waits again
                        except OSError as exc:
                            raise ReadError(f"reading the response failed: {exc}",
                                            self.url) from None
                    try:
                        if parser.next_head() is not None:
                            conn.deadline.clear()  # the body's reads arm their own
                            return whole
                    except ProtocolError as exc:
                        raise self._bad_head(exc) from None
                    yield from self._read_head()
                    conn.deadline.clear()
                    return whole
                except _RETRIED as exc:
                    self.drop()
                    unanswered = conn.reused and not conn.received
                    unsent = isinstance(exc, WriteError) and not conn.sent
                    if attempt == 0 and unanswered and (retryable or unsent) \
                            and not self.pulled:
                        continue
                    raise
                except BaseException:
                    self.drop()
                    raise
            raise AssertionError("unreachable")  # pragma: no cover
        except Cancelled as exc:
            error = self.timeout_error(exc)
            if error is None:
                raise
            raise error from None

    def read_body(self, task: Task | None = None) -> Coro[tuple[bytes, bool]]:
        """The body bytes that have arrived (waiting for some if none
        have), and whether the body is complete. ``task`` is the task
        reading (when it may not be the one that started the exchange)."""
        conn = self.conn
        assert conn is not None
        parser = conn.parser
        deadline = conn.deadline
        if task is not None and task is not deadline.task:
            deadline.retarget(task)
            self.task = task
        try:
            while True:
                try:
                    data, done = parser.read_body()
                except ProtocolError as exc:
                    raise RemoteProtocolError(exc.message, self.url) from None
                if data or done:
                    return data, done
                yield from self._receive()
        except Cancelled as exc:
            error = self.timeout_error(exc)
            if error is None:
                raise
            raise error from None
        finally:
            deadline.clear()

    def finish(self, reusable: bool) -> float:
        """Hand the connection back (kept for reuse if ``reusable`` and
        nothing beyond the response arrived) and return the seconds since
        the exchange started."""
        conn, self.conn = self.conn, None
        now = self.task.kernel.clock()
        if conn is not None:
            conn.deadline.clear()
            # Bytes beyond the end of the response would be taken for the next
            # response on this connection: such a connection is never reused.
            if reusable and not conn.parser.buffered:
                self.pool.release(conn, now)
            else:
                self.pool.discard(conn, conn.key)
        return now - self.started

    def drop(self) -> None:
        """Close the connection (a failed or abandoned exchange)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            self.pool.discard(conn, conn.key)

    # -- finding a connection ------------------------------------------------------

    def _use(self, conn: PooledConnection) -> None:
        deadline = conn.deadline
        if deadline.task is not self.task:
            deadline.retarget(self.task)
        self.conn = conn
        self.deadline = deadline

    def _open(self, fresh: bool) -> Coro[PooledConnection]:
        """A connection: one freed while waiting for the pool's limits (an
        idle one too, unless ``fresh``), or a new one, whose deadline is
        the one that guarded the waits."""
        waiting = self.deadline = Deadline(self.task)
        try:
            self._arm("pool", self.timeouts.pool)
            conn = yield from self.pool.acquire(self.key, self.started, fresh)
            if conn is None:
                try:
                    self._arm("connect", self.timeouts.connect)
                    sock = yield from self.connect(self.key, self.url)
                except BaseException:
                    self.pool.discard(None, self.key)
                    raise
                waiting.clear()
                conn = PooledConnection(self.key, sock, waiting)
                self.conn = conn
                return conn
        except BaseException:
            waiting.close()
            raise
        waiting.close()
        self._use(conn)
        return conn

    def _arm(self, label: str, seconds: float | None) -> None:
        """Arm the deadline for phase ``label`` (None: no limit), bounded by
        the call's total deadline."""
        deadline = self.deadline
        assert deadline is not None
        total_until = self.total_until
        if total_until is not None:
            left = total_until - deadline.kernel.clock()
            if seconds is None or left < seconds:
                deadline.set(max(left, 0.0), "total")
                return
        if seconds is None:
            deadline.clear()
        else:
            deadline.set(seconds, label)

    # -- sending -------------------------------------------------------------------

    def _send_stream(self, stream: Iterator[bytes]) -> Coro[ClientError | None]:
        """Send each piece of ``stream`` as a chunk, then the last chunk;
        None once all has gone, else as for :meth:`_send_rest`."""
        for piece in stream:
            self.pulled = True
            failure = yield from self._send_rest(chunk(piece), 0)
            if failure is not None:
                return failure
        return (yield from self._send_rest(LAST_CHUNK, 0))

    def _send_rest(self, data: bytes, sent: int) -> Coro[ClientError | None]:
        """Send ``data`` from offset ``sent``, re-arming the write deadline
        at each pause (``conn.sent`` counts what went). None once it has
        all gone; else the error to raise if no response can be read: the
        send failed, or response bytes arrived (seen at a pause, or when
        the write deadline passed)."""
        conn = self.conn
        assert conn is not None
        sock = conn.sock
        raw = sock.sock
        total = len(data)
        plain = type(raw) is socket.socket
        piece = total if plain else _TLS_PIECE
        before = conn.sent - sent
        view = memoryview(data)
        try:
            while True:
                try:
                    while sent < total:
                        sent += raw.send(view[sent:sent + piece])
                    trap = None
                except BlockingIOError:
                    # An answer arriving while the upload waits wakes it too:
                    # a server that answers early and stops reading is heard
                    # at once, not at the write deadline.
                    trap = readwrite_wait(sock.fd)
                except ssl.SSLWantWriteError:
                    trap = readwrite_wait(sock.fd)
                except ssl.SSLWantReadError:
                    trap = read_wait(sock.fd)
                except OSError as exc:
                    conn.sent = before + sent
                    return WriteError(f"sending the request failed: {exc}", self.url)
                conn.sent = before + sent
                if trap is None:
                    return None
                if self._answered():
                    return self._answered_early()
                self._arm("write", self.timeouts.write)
                try:
                    yield trap
                except Cancelled as exc:
                    error = self.timeout_error(exc)
                    if isinstance(error, WriteTimeout) and self._answered():
                        return error
                    raise
                # Over TLS a send that meets the server's reset leaves the
                # session unable to read, so look for the answer first.
                if not plain and self._answered():
                    return self._answered_early()
        finally:
            view.release()

    def _answered_early(self) -> WriteError:
        return WriteError("the server answered (or closed the connection) "
                          "before the request was sent", self.url)

    def _answered(self) -> bool:
        """Whether response bytes have arrived: a peek over plain TCP (the
        end of the stream counts: the server will not read the rest); over
        TLS a read, whose bytes go to the parser (only a TLS read can tell a
        response from a session ticket)."""
        conn = self.conn
        assert conn is not None
        raw = conn.sock.sock
        try:
            if type(raw) is socket.socket:
                _peek(raw, 1, socket.MSG_PEEK)
                return True  # bytes, or the end of the stream
            data = raw.recv(RECV_SIZE)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return True  # the end of the stream: the server will not read the rest
        except OSError:  # nothing yet (a would-block), or an error the send will meet
            return False
        if data:
            self._deliver(data)
        return bool(data)

    # -- receiving -----------------------------------------------------------------

    def _read_head(self) -> Coro[None]:
        """Read until the final response head has been parsed."""
        conn = self.conn
        assert conn is not None
        parser = conn.parser
        while True:
            try:
                if parser.next_head() is not None:
                    return
            except ProtocolError as exc:
                raise self._bad_head(exc) from None
            yield from self._receive()

    def _bad_head(self, exc: ProtocolError) -> ClientError:
        conn = self.conn
        assert conn is not None
        if not conn.received:  # closed at once: a dead connection, not bad HTTP
            return ReadError(exc.message, self.url)
        return RemoteProtocolError(exc.message, self.url)

    def _receive(self) -> Coro[None]:
        """Feed the parser the next bytes from the server (or its end of
        stream). The read deadline, the longest silence allowed, is armed
        each time the call has to wait."""
        conn = self.conn
        assert conn is not None
        sock = conn.sock
        raw = sock.sock
        while True:
            try:
                data = raw.recv(RECV_SIZE)
                break
            except (BlockingIOError, ssl.SSLWantReadError):
                trap = read_wait(sock.fd)
            except ssl.SSLWantWriteError:
                trap = write_wait(sock.fd)
            except ssl.SSLEOFError:
                data = b""
                break
            except OSError as exc:
                raise ReadError(f"reading the response failed: {exc}", self.url) from None
            self._arm("read", self.timeouts.read)
            sock.unyielded = 0
            yield trap
        self._deliver(data)
        sock.unyielded += 1
        if sock.unyielded > FAIR_SHARE:  # as a Socket's own reads: the others get a turn
            sock.unyielded = 0
            yield RESCHEDULE

    def _deliver(self, data: bytes) -> None:
        """Hand the parser what a recv returned: bytes, or ``b""`` for the
        end of the stream."""
        conn = self.conn
        assert conn is not None
        if data:
            conn.received += len(data)
            conn.parser.feed(data)
        else:
            conn.parser.feed_eof()
