"""The HTTP/1.1 server: an accept loop and one task per connection.

Each connection task reads with optimistic ``recv`` (waiting on
``read_wait`` only when the socket is empty), feeds the sans-I/O
:class:`~corofw.http.parser.RequestParser`, calls the app for each complete
request in order (pipelining), and writes each response with one ``send``
when it fits, falling back to ``write_wait`` backpressure when the client
reads slowly. One deadline per connection covers the phase it is in: idle
between requests, reading a head, reading a body, or sending; a client that
misses it is disconnected and nobody else is affected.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
from types import GeneratorType
from typing import Any

from ..kernel import (
    Cancelled,
    ClosedResourceError,
    Event,
    catch_signals,
    current_task,
    current_time,
    move_on_after,
    sleep,
    spawn,
)
from ..kernel.deadline import Deadline
from ..kernel.traps import READ, SLEEP, WRITE, Coro
from ..net import Socket
from ..net.files import sendfile
from .config import ServerConfig
from .files import FileResponse
from .messages import Request, Response, StreamingResponse
from .parser import ProtocolError, RequestParser
from .serialize import (
    _NO_BODY_STATUS,
    CONTINUE,
    LAST_CHUNK,
    body_allowed,
    chunk,
    error_response,
    response_head,
    simple_response,
)
from .stopping import watch_channel, watch_signals

log = logging.getLogger("corofw.server")
access_log = logging.getLogger("corofw.access")

_RECV_SIZE = 65536
_LINGER_SECONDS = 1.0
_FAIR_SHARE = 16  # pipelined requests served in a row before letting other tasks run
_YIELD_TRAP = (SLEEP, 0)
_LINGER_BYTES = 1 << 24
_MAX_REFUSING = 64  # clients answered 503 at once at max_connections; beyond, accepting pauses
_RESCAN_DELAY = 0.01
_OVERLOADED = error_response(503, "server at its connection limit, try again later")


# What a connection is doing; shutting down closes the connections whose
# phase is in _CLOSABLE at once (no request of theirs has reached the app).
_IDLE, _HEAD, _BODY, _BUSY, _LINGER = "idle", "head", "body", "busy", "linger"
_CLOSABLE = frozenset({_IDLE, _HEAD, _LINGER})
_READING = frozenset({_HEAD, _BODY})  # a 408 may still be sent: no response has begun


class _Connection:
    __slots__ = ("sock", "client", "task", "phase", "deadline")

    def __init__(self, sock: Socket, client: Any) -> None:
        self.sock = sock
        self.client = client
        self.task: Any = None
        self.phase = _IDLE
        self.deadline: Deadline | None = None


class Server:
    """Serves ``app`` (anything with ``handle(request)``, such as a
    :class:`~corofw.web.Router`) on listening sockets.

    An app may also have ``accepts(request) -> bool``, asked with the head
    of a request that expects ``100 Continue``: when it says False, the
    request is answered at once (``handle`` gets it with an empty body) and
    the connection closes, without inviting the client to send its body."""

    def __init__(self, app: Any, config: ServerConfig | None = None) -> None:
        if not callable(getattr(app, "handle", None)):
            raise TypeError(f"cannot serve a {type(app).__name__}: the app must have a "
                            f"handle(request) method, as a corofw Router does")
        self.app = app
        self._app_accepts = getattr(app, "accepts", None)
        self.config = config or ServerConfig()
        self.connections: set[_Connection] = set()
        self.closing = False
        self.requests_served = 0
        self._listeners: list[Socket] = []
        self._slot_free = Event()
        self._refusing = 0
        self._no_idle_until = 0.0
        self._all_closed = Event()
        self._all_closed.set()

    # -- accepting -----------------------------------------------------------

    def accept_loop(self, listener: Socket) -> Coro[None]:
        """Accept connections until :meth:`shutdown` closes ``listener``."""
        self._listeners.append(listener)
        sock = listener.sock
        fd = listener.fd
        cap = self.config.max_connections
        backoff = 0.0
        while not self.closing:
            full = False
            if len(self.connections) >= cap:
                try:
                    yield (READ, fd)  # make room only once a new client is waiting
                except ClosedResourceError:
                    return
                full = not (yield from self._make_room())
                if full and self._refusing >= _MAX_REFUSING:
                    self._slot_free.clear()
                    yield from self._slot_free.wait()
                    continue
            try:
                conn, client = sock.accept()
            except BlockingIOError:
                try:
                    yield (READ, fd)
                except ClosedResourceError:
                    return
                continue
            except OSError as exc:
                if self.closing or exc.errno == errno.EBADF:
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    backoff = min(max(backoff * 2, 0.01), 1.0)
                    log.warning("accept() failed: %s; pausing %.2f s", exc, backoff)
                    yield from sleep(backoff)
                    continue
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                raise
            backoff = 0.0
            if full:
                yield from spawn(self._refuse(Socket(conn), client), "refusing a connection")
                continue
            if conn.family != socket.AF_UNIX:
                # no Nagle: a response written in pieces (a head, then a body;
                # streamed chunks) would otherwise wait on the client's delayed ACK
                try:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            connection = _Connection(Socket(conn), client)
            self.connections.add(connection)
            self._all_closed.clear()
            connection.task = yield from spawn(self._serve(connection), "connection")

    def _make_room(self) -> Coro[bool]:
        """At ``max_connections``: close a connection that is doing nothing
        (idle between requests, or lingering after an error) so that a new
        client is served, as nginx does; False if every one is busy. A scan
        that finds none is not repeated for a short while."""
        now = yield from current_time()
        if now < self._no_idle_until:
            return False
        for conn in self.connections:
            if (conn.phase is _IDLE or conn.phase is _LINGER) and conn.task is not None:
                break
        else:
            self._no_idle_until = now + _RESCAN_DELAY
            return False
        self.connections.discard(conn)  # its slot is free now; the task ends soon
        conn.phase = _LINGER
        conn.task.cancel("closed to make room at max_connections")
        return True

    def _refuse(self, sock: Socket, client: Any) -> Coro[None]:
        """Answer a client that came while every connection was busy at
        ``max_connections`` with 503 and close, at once rather than leaving
        it waiting for a slot. The request is read first (for up to a
        second) and the close lingers, so that no reset destroys the answer."""
        self._refusing += 1
        if self._refusing == 1:
            log.warning("at max_connections (%d) with no idle connection: answering 503",
                        self.config.max_connections)
        try:
            yield from move_on_after(_LINGER_SECONDS, _readable(sock))
            self._try_send(sock, _OVERLOADED)
            log.debug("refused %s: at max_connections", _format_client(client))
            sock.shutdown(socket.SHUT_WR)
            yield from move_on_after(_LINGER_SECONDS, _drain(sock))
        except OSError:
            pass
        finally:
            sock.close()
            self._refusing -= 1
            self._slot_free.set()

    # -- one connection ---------------------------------------------------------

    def _serve(self, conn: _Connection) -> Coro[None]:
        task = yield from current_task()
        task.name = f"connection {_format_client(conn.client)}"
        deadline = conn.deadline = Deadline(task)
        config = self.config
        sock = conn.sock
        recv = sock.sock.recv
        send = sock.sock.send
        read_trap = (READ, sock.fd)
        parser = RequestParser(config.limits, conn.client)
        handle = self.app.handle
        sent_continue = False
        linger = False
        unyielded = 0  # requests handled since this task last let others run
        try:
            deadline.set(config.keep_alive_timeout, "keep-alive idle")
            keep_alive = True
            answered = False  # a response just went out for everything received
            while keep_alive:
                if answered:
                    # The client most likely waits for that response before it
                    # sends more: wait first, saving a recv that would fail.
                    # (epoll is level-triggered, so bytes already here wake us.)
                    answered = False
                    unyielded = 0
                    yield read_trap
                try:
                    data = recv(_RECV_SIZE)
                except BlockingIOError:
                    data = None
                if data is None:
                    unyielded = 0
                    yield read_trap  # outside the except block: no exception kept alive
                    continue
                if not data:
                    break
                parser.feed(data)
                while True:
                    try:
                        request = parser.next_request()
                    except ProtocolError as exc:
                        log.info("bad request from %s: %s (%d)",
                                 _format_client(conn.client), exc.message, exc.status)
                        yield from self._send(conn, error_response(exc.status, exc.message))
                        keep_alive = False
                        linger = True
                        break
                    if request is None:
                        if conn.phase is _IDLE and parser.buffered:  # a request has begun
                            conn.phase = _HEAD
                            deadline.set(config.header_timeout, "request header")
                        pending = parser.awaiting_body
                        if pending is None:
                            break
                        # an idle timeout: every piece of the body restarts it
                        conn.phase = _BODY
                        deadline.set(config.body_timeout, "request body")
                        if not parser.expect_continue or sent_continue:
                            break
                        if self._accepts(pending):
                            sent_continue = True
                            yield from self._send(conn, CONTINUE)
                            break
                        # refused at its head (no such route): the final answer goes
                        # out without 100 Continue and without reading the body
                        request = pending
                        request.body = b""
                        request.keep_alive = False
                        linger = True
                    sent_continue = False
                    unyielded += 1
                    if unyielded > _FAIR_SHARE:  # a pipelining client must not starve others
                        unyielded = 0
                        conn.phase = _BUSY  # a request is in hand: not to be closed as idle
                        yield _YIELD_TRAP
                    task.context = request  # what the task dump and watchdog report
                    try:
                        response = handle(request)
                    except Exception:
                        response = _app_failed(request)
                    if type(response) is GeneratorType:  # the app waits: no deadline meanwhile
                        conn.phase = _BUSY
                        deadline.clear()
                        response = yield from _drive_app(response, request)
                    keep_alive = request.keep_alive and not self.closing
                    wire = _simple_response(response, request, keep_alive)
                    if wire is None:
                        # the request is read: its timers stop; a stream has no total
                        # limit, only the send timeout while the client does not read
                        conn.phase = _BUSY
                        deadline.clear()
                        keep_alive = yield from self._respond(conn, request, response, keep_alive)
                    else:
                        try:
                            sent = send(wire)
                        except BlockingIOError:
                            sent = 0
                        if sent != len(wire):
                            conn.phase = _BUSY
                            yield from self._send_rest(conn, wire, sent)
                        self.requests_served += 1
                        if config.access_log:
                            self._log_access(conn, request, response.status, len(response.body))
                    task.context = None
                    if not keep_alive:
                        break
                    if parser.buffered:
                        conn.phase = _HEAD
                        deadline.set(config.header_timeout, "request header")
                    else:
                        conn.phase = _IDLE
                        deadline.set(config.keep_alive_timeout, "keep-alive idle")
                        answered = len(data) < _RECV_SIZE
            if linger:
                yield from self._linger(conn)
        except Cancelled as exc:
            if exc.scope is not deadline:
                raise
            if conn.phase in _READING and deadline.label in ("request header", "request body"):
                self._try_send(sock, error_response(408, "request timeout"))
            log.debug("%s: %s, closing", task.name, exc.reason)
        except OSError as exc:
            log.debug("%s: %s", task.name, exc)
        except Exception:
            log.exception("%s failed", task.name)
        finally:
            deadline.close()
            sock.close()
            self.connections.discard(conn)
            self._slot_free.set()
            if not self.connections:
                self._all_closed.set()

    def _accepts(self, request: Request) -> bool:
        """Whether the app would take ``request`` (head only), asked before
        ``100 Continue`` through the app's optional ``accepts(request)``."""
        accepts = self._app_accepts
        if accepts is None:
            return True
        try:
            return bool(accepts(request))
        except Exception:
            log.exception("error in accepts() for %s %s", request.method, request.target)
            return True

    def _linger(self, conn: _Connection) -> Coro[None]:
        """Close after an error response without resetting the connection:
        a client still sending the request it was refused for would
        otherwise get a reset that can destroy the response before it is
        read. Stop writing, then read and discard for a little while."""
        conn.phase = _LINGER
        conn.sock.shutdown(socket.SHUT_WR)
        conn.deadline.set(_LINGER_SECONDS, "lingering close")  # type: ignore[union-attr]
        yield from _drain(conn.sock)

    def _respond(self, conn: _Connection, request: Request, response: Any,
                 keep_alive: bool) -> Coro[bool]:
        """Send any response the fast path in :meth:`_serve` does not take
        (streamed, large, HEAD, HTTP/1.0, with headers...); return whether
        the connection stays open."""
        http10 = request.version == "HTTP/1.0"
        streaming = type(response) is StreamingResponse
        headers = getattr(response, "headers", None)
        if headers and "close" in (headers.get("connection") or "").lower():
            keep_alive = False  # the app asked for the connection to end
        try:
            status = response.status
            if not 200 <= status <= 999:
                raise ValueError(f"status {status!r} cannot be a final response")
            if streaming:
                keep_alive = keep_alive and not http10
                length = 0
                head = response_head(status, response.content_type, response.headers,
                                     None, keep_alive, http10)
            elif type(response) is FileResponse:
                length = response.count
                head = response_head(status, response.content_type, response.headers,
                                     length, keep_alive, http10)
            else:
                body = response.body
                if type(body) is not bytes:
                    body = bytes(body)
                length = len(body)
                head = response_head(status, response.content_type, response.headers,
                                     length, keep_alive, http10)
        except (ValueError, TypeError, AttributeError) as exc:
            log.error("invalid response to %s %s: %s", request.method, request.target, exc)
            if streaming:
                _close_body(response.body)
            elif type(response) is FileResponse:
                response.close()
            error = error_response(500, "Internal Server Error")
            yield from self._send(conn, error)
            if self.config.access_log:
                self._log_access(conn, request, 500, len(error.partition(b"\r\n\r\n")[2]),
                                 "invalid response")
            return False
        if streaming:
            if body_allowed(status, request.method):
                completed = yield from self._stream(conn, head, response.body, http10,
                                                    request, status)
                return keep_alive and completed
            _close_body(response.body)
        elif type(response) is FileResponse:
            return (yield from self._send_file(conn, request, response, head, keep_alive))
        try:
            if streaming or not body_allowed(status, request.method):
                yield from self._send(conn, head)
            elif length < 65536:
                yield from self._send(conn, head + body)
            else:
                yield from self._send(conn, head, body)
        except (OSError, Cancelled) as exc:
            if self.config.access_log:
                self._log_access(conn, request, status, length, _interrupted(exc))
            raise
        self.requests_served += 1
        if self.config.access_log:
            self._log_access(conn, request, status, length)
        return keep_alive

    def _send_file(self, conn: _Connection, request: Request, response: FileResponse,
                   head: bytes, keep_alive: bool) -> Coro[bool]:
        """Send ``head`` and the file's bytes with ``sendfile``, under the
        send deadline while the client's buffer is full (restarted by every
        piece it takes); the file is closed whatever happens."""
        deadline: Deadline = conn.deadline  # type: ignore[assignment]
        timeout = self.config.send_timeout
        status = response.status
        sent = 0
        failure = ""

        def progress(count: int) -> None:
            deadline.set(timeout, "send")

        try:
            if body_allowed(status, request.method):
                deadline.set(timeout, "send")
                sent = yield from sendfile(conn.sock, response.file.fileno(), response.offset,
                                           response.count, head, progress)
                deadline.clear()
            else:
                yield from self._send(conn, head)
        except (OSError, Cancelled) as exc:
            failure = _interrupted(exc)
            raise
        finally:
            response.close()
            if self.config.access_log:
                self._log_access(conn, request, status, sent, failure)
        self.requests_served += 1
        return keep_alive

    @staticmethod
    def _log_access(conn: _Connection, request: Request, status: int, length: Any,
                    failure: str = "") -> None:
        """One line per response: client, request line, status, body bytes;
        a response that failed says what happened (``incomplete: ...``)."""
        if failure:
            access_log.info('%s "%s %s %s" %d %s (%s)', _format_client(conn.client),
                            request.method, request.target, request.version, status, length,
                            failure)
        else:
            access_log.info('%s "%s %s %s" %d %s', _format_client(conn.client), request.method,
                            request.target, request.version, status, length)

    def _send(self, conn: _Connection, data: bytes, body: bytes | None = None) -> Coro[None]:
        """Send ``data``, then ``body`` when it was too large to join to the
        head. Whenever the client's buffer is full the send deadline runs:
        a client that stops reading for ``send_timeout`` is disconnected,
        one that reads slowly is not."""
        try:
            sent = conn.sock.sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent != len(data) or body is not None:
            yield from self._send_rest(conn, data, sent, body)

    def _send_rest(self, conn: _Connection, data: bytes, sent: int,
                   body: bytes | None = None) -> Coro[None]:
        """Finish a send the socket could not take at once, under the send
        deadline, then restore the deadline that was running."""
        deadline: Deadline = conn.deadline  # type: ignore[assignment]
        saved_when, saved_label = deadline.when, deadline.label
        if sent < len(data):
            yield from self._send_slowly(conn, data, sent)
        if body is not None:
            yield from self._send_slowly(conn, body, 0)
        if saved_when is None:
            deadline.clear()
        else:
            deadline.set(max(saved_when - deadline.kernel.clock(), 0.0), saved_label)

    def _send_slowly(self, conn: _Connection, data: bytes, sent: int) -> Coro[None]:
        send = conn.sock.sock.send
        write_trap = (WRITE, conn.sock.fd)
        deadline: Deadline = conn.deadline  # type: ignore[assignment]
        timeout = self.config.send_timeout
        total = len(data)
        deadline.set(timeout, "send")
        with memoryview(data) as view:
            while sent < total:
                try:
                    sent += send(view[sent:])
                except BlockingIOError:
                    yield write_trap
                    continue
                deadline.set(timeout, "send")

    def _stream(self, conn: _Connection, head: bytes, body: Any, http10: bool,
                request: Request, status: int) -> Coro[bool]:
        """Send ``head``, then drive a streaming body: bytes/str it yields
        are sent as chunks, anything else is a kernel trap, forwarded so the
        body can wait.
        Return False if the body failed (the response is then incomplete
        and the connection must close). The access log line, written here,
        counts the body bytes sent and says why a stream ended early."""
        send_value: Any = None
        error: BaseException | None = None
        sent = 0
        failure = "incomplete: the server stopped"
        try:
            yield from self._send(conn, head)
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
                        yield from self._send(conn, data if http10 else chunk(data))
                        sent += len(data)
                    continue
                try:
                    send_value = yield item
                except BaseException as exc:  # Cancelled included: let the body clean up
                    error = exc
            if not http10:
                yield from self._send(conn, LAST_CHUNK)
            failure = ""
            self.requests_served += 1
            return True
        except (OSError, Cancelled) as exc:
            failure = _interrupted(exc)
            raise
        finally:
            _close_body(body)
            if self.config.access_log:
                self._log_access(conn, request, status, sent, failure)

    @staticmethod
    def _try_send(sock: Socket, data: bytes) -> None:
        try:
            sock.sock.send(data)
        except OSError:
            pass

    # -- shutting down ---------------------------------------------------------

    def shutdown(self, grace: float | None = None) -> Coro[None]:
        """Stop accepting, close connections with no request in flight
        (idle ones, and those still receiving a request's head), let requests in flight
        finish for up to ``grace`` seconds, then cancel what is left."""
        grace = self.config.graceful_timeout if grace is None else grace
        self.closing = True
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        self._slot_free.set()
        for conn in list(self.connections):
            if conn.phase in _CLOSABLE and conn.task is not None:
                conn.task.cancel("server shutting down")
        yield from move_on_after(grace, self._all_closed.wait())
        if self.connections:
            log.warning("grace period over: cancelling %d connection(s)",
                        len(self.connections))
            self.abort("server shutdown grace period over")
            yield from self._all_closed.wait()

    def abort(self, reason: str = "server aborted") -> None:
        """Cancel every connection, requests in flight included."""
        for conn in list(self.connections):
            if conn.task is not None:
                conn.task.cancel(reason)


def _readable(sock: Socket) -> Coro[None]:
    yield (READ, sock.fd)


def _drain(sock: Socket) -> Coro[None]:
    """Read and discard until the peer closes (at most ``_LINGER_BYTES``)."""
    recv = sock.sock.recv
    drained = 0
    while drained < _LINGER_BYTES:
        try:
            data = recv(_RECV_SIZE)
        except BlockingIOError:
            yield (READ, sock.fd)
            continue
        if not data:
            return
        drained += len(data)


def _app_failed(request: Request) -> Response:
    log.exception("error handling %s %s", request.method, request.target)
    return Response(b"Internal Server Error\n", 500, None, "text/plain; charset=utf-8")


def _drive_app(app_coroutine: Any, request: Request) -> Coro[Any]:
    try:
        return (yield from app_coroutine)
    except Exception:
        return _app_failed(request)


def _simple_response(response: Any, request: Request, keep_alive: bool) -> bytes | None:
    """The whole response as bytes, for the common case: a small
    :class:`Response` with no extra headers to a GET/POST/... over HTTP/1.1.
    None for anything else, which :meth:`Server._respond` handles."""
    if type(response) is not Response or response.headers:
        return None
    body = response.body
    status = response.status
    if type(body) is not bytes or len(body) >= 65536 or status in _NO_BODY_STATUS \
            or not 200 <= status < 600 or request.method == "HEAD" \
            or request.version != "HTTP/1.1":
        return None
    return simple_response(status, response.content_type, body, keep_alive)


def _close_body(body: Any) -> None:
    """Close a streaming body that will not be driven to its end, so its
    ``finally`` blocks run now rather than whenever it is collected."""
    try:
        body.close()
    except Exception:
        log.exception("error closing a streaming response body")


def _format_client(client: Any) -> str:
    """``host:port``, with an IPv6 host in brackets (``[::1]:8000``)."""
    if isinstance(client, tuple) and len(client) >= 2:
        host = client[0]
        return f"[{host}]:{client[1]}" if ":" in host else f"{host}:{client[1]}"
    return str(client)


def _interrupted(exc: BaseException) -> str:
    """What cut a response short, for the access log."""
    if isinstance(exc, Cancelled):
        return f"incomplete: {exc.reason}"
    return f"incomplete: connection lost ({exc.strerror or type(exc).__name__})"


def serve(app: Any, listener: Socket, config: ServerConfig | None = None,
          stop: Any = None, on_ready: Any = None) -> Coro[Server]:
    """Serve ``app`` on ``listener`` until asked to stop, then shut down
    gracefully.

    A stop is asked by SIGINT or SIGTERM, or through ``stop``: a socket or
    pipe (anything with ``fileno()``) on which each byte received, and its
    end-of-file, asks once. The first ask of either kind starts the graceful
    shutdown; a second ask of the same kind (another signal, another byte)
    cancels the requests in flight. A signal and a byte together are one
    stop: a supervisor that passes on a signal its worker also received
    directly (Ctrl-C signals the whole process group, as does systemd's
    control-group kill) does not hurry it.

    ``on_ready(server)`` is called once the server accepts connections.
    """
    server = Server(app, config)
    stopped = Event()
    with (yield from catch_signals(signal.SIGINT, signal.SIGTERM)) as signals:
        accept = yield from spawn(server.accept_loop(listener), "accept loop")
        watchers = [(yield from spawn(watch_signals(signals, stopped, server.abort),
                                      "signal watcher"))]
        if stop is not None:
            watchers.append((yield from spawn(watch_channel(stop, stopped, server.abort),
                                              "stop watcher")))
        if on_ready is not None:
            on_ready(server)
        yield from stopped.wait()
        yield from server.shutdown()
        for task in (accept, *watchers):
            task.cancel("server stopped")
    return server
