"""The HTTP/1.1 server: an accept loop and one task per connection.

Each connection task goes through the phases of a connection, request after
request (:meth:`Server._serve`): it reads a request, with an optimistic
``recv`` that waits on ``read_wait`` only when the socket is empty, into the
sans-I/O :class:`~corofw.http.parser.RequestParser`; decides whether to
invite the body of a request that expects ``100 Continue``; runs the
handler; writes the response (:mod:`corofw.http.responding`), with one
``send`` when it fits and ``write_wait`` backpressure when the client reads
slowly; then keeps the connection for the next request (pipelined ones are
answered in order) or closes it. One deadline per connection covers the
phase it is in: idle between requests, reading a head, reading a body, or
sending; a client that misses it is disconnected and nobody else is affected.
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
    current_kernel,
    current_task,
    current_time,
    move_on_after,
    sleep,
    spawn,
)
from ..kernel.costs import CURRENT_COST, Cost, start_metering
from ..kernel.deadline import Deadline
from ..kernel.traps import RESCHEDULE, Coro, read_wait
from ..net import Socket
from .accesslog import AccessLog
from .bodies import BodyDecisions
from .config import ServerConfig
from .connection import (
    BODY,
    BUSY,
    CLOSABLE,
    HEAD,
    IDLE,
    LINGER,
    LINGER_SECONDS,
    READING,
    RECV_SIZE,
    UPGRADED,
    Connection,
    drain,
    format_client,
    linger,
    readable,
    send,
    send_rest,
    try_send,
    watch_client,
)
from .lifespan import BackgroundTasks, StartupError, drop_background, start_app, stop_app
from .messages import Request, Response, StreamingResponse
from .parser import Limits, ProtocolError, RequestParser
from .request_id import RequestIds
from .responding import encode_at_once, log_access, write_response
from .serialize import error_response
from .stopping import watch_channel, watch_signals
from .ws_server import WebSocketUpgrade, run_session

log = logging.getLogger("corofw.server")

_FAIR_SHARE = 16  # pipelined requests served in a row before letting other tasks run
_YIELD_TRAP = RESCHEDULE
_MAX_REFUSING = 64  # clients answered 503 at once at max_connections; beyond, accepting pauses
_RESCAN_DELAY = 0.01
_WATCH_AFTER = 0.005  # seconds into answering a request before the client is watched
_OVERLOADED = error_response(503, "server at its connection limit, try again later")

# What reading a request may come to besides a Request
_WAIT = "wait for more bytes"
_CLOSED = "the client closed its side"
_DECIDE = "a head expects 100 Continue"
_STREAM = "a head whose route reads the body as it arrives"


class Server(BodyDecisions):
    """Serves ``app`` (anything with ``handle(request)``, such as a
    :class:`~corofw.web.Router`) on listening sockets.

    An app may also have ``accepts(request) -> bool``, asked with the head
    of a request that expects ``100 Continue``: when it says False, the
    request is answered at once (``handle`` gets it with an empty body) and
    the connection closes, without inviting the client to send its body.
    So an app says False only when none of its own code would see that
    request, as a Router does for a 404 or 405 it answers by itself."""

    def __init__(self, app: Any, config: ServerConfig | None = None) -> None:
        if not callable(getattr(app, "handle", None)):
            raise TypeError(f"cannot serve a {type(app).__name__}: the app must have a "
                            f"handle(request) method, as a corofw Router does")
        self.app = app
        self._app_accepts = getattr(app, "accepts", None)
        self._body_limits: tuple[Limits, int] | None = None  # see _parser_limits
        self._streaming = False  # whether some route reads its body as it arrives
        self.config = config or ServerConfig()
        self.connections: set[Connection] = set()
        self.closing = False
        self.requests_served = 0
        self._listeners: list[Socket] = []
        self._slot_free = Event()
        self._refusing = 0
        self._no_idle_until = 0.0
        self._all_closed = Event()
        self._all_closed.set()
        self._kernel: Any = None
        self.background = BackgroundTasks()
        self._hooks: Any = None  # the task running the app's start-up or shutdown
        self._started = False
        self.access = AccessLog(self.config.access_log_format,
                                RequestIds(self.config.request_id_header,
                                           always=self.config.access_log),
                                costs=self.config.request_costs)

    # -- accepting -----------------------------------------------------------

    def accept_loop(self, listener: Socket) -> Coro[None]:
        """Accept connections until :meth:`shutdown` closes ``listener``."""
        self._kernel = current_kernel()
        if self.config.request_costs:
            start_metering()
        self._listeners.append(listener)
        sock = listener.sock
        fd = listener.fd
        cap = self.config.max_connections
        backoff = 0.0
        while not self.closing:
            full = False
            if len(self.connections) >= cap:
                try:
                    yield read_wait(fd)  # make room only once a new client is waiting
                except ClosedResourceError:
                    return
                # connections may have closed while the loop waited
                full = len(self.connections) >= cap and not (yield from self._make_room())
                if full and self._refusing >= _MAX_REFUSING:
                    self._slot_free.clear()
                    yield from self._slot_free.wait()
                    continue
            try:
                conn, client = sock.accept()
            except BlockingIOError:
                try:
                    yield read_wait(fd)
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
            connection = Connection(Socket(conn), client, self.config)
            connection.access = self.access
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
            if (conn.phase is IDLE or conn.phase is LINGER) and conn.task is not None:
                break
        else:
            self._no_idle_until = now + _RESCAN_DELAY
            return False
        self.connections.discard(conn)  # its slot is free now; the task ends soon
        conn.phase = LINGER
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
            yield from move_on_after(LINGER_SECONDS, readable(sock))
            try_send(sock, _OVERLOADED)
            log.debug("refused %s: at max_connections", format_client(client))
            sock.shutdown(socket.SHUT_WR)
            yield from move_on_after(LINGER_SECONDS, drain(sock))
        except OSError:
            pass
        finally:
            sock.close()
            self._refusing -= 1
            self._slot_free.set()

    # -- one connection, phase by phase ----------------------------------------

    def _serve(self, conn: Connection) -> Coro[None]:
        """Serve one connection through its phases, request after request:
        read a request (deciding on the way whether to invite a body that
        waits for ``100 Continue``), run the handler, write the response,
        then keep the connection for the next request or close it."""
        task = conn.task = yield from current_task()
        who = format_client(conn.client)
        task.name = f"connection {who}"
        deadline = conn.deadline = Deadline(task)
        limits, check_above = self._body_limits or self._parser_limits()
        streaming = self._streaming
        conn.parser = RequestParser(limits, conn.client)
        read_trap = read_wait(conn.sock.fd)
        handle = self.app.handle
        send_now = conn.sock.sock.send
        kernel = task.kernel
        access = self.access if self.config.access_log else None
        ids = self.access.ids
        echo = ids.echo if ids.header is not None else None
        costs = self.config.request_costs
        cost = None
        try:
            deadline.set(self.config.keep_alive_timeout, "keep-alive idle")
            while True:
                try:
                    request = self._read_request(conn)
                except ProtocolError as exc:
                    yield from self._refuse_request(conn, exc)
                    break
                if request is _WAIT:
                    yield read_trap
                    continue
                if request is _CLOSED:
                    break
                if request is _DECIDE:
                    request = yield from self._decide_continue(conn)
                    if request is None:
                        continue
                elif request is _STREAM:
                    request = self._stream_body(conn)
                elif streaming and request.body and len(request.body) > check_above:
                    try:
                        self._check_body_size(conn, request, len(request.body))
                    except ProtocolError as exc:
                        yield from self._refuse_request(conn, exc)
                        break
                if conn.unyielded > _FAIR_SHARE:  # a pipelining client must not starve others
                    conn.unyielded = 0
                    conn.phase = BUSY  # a request is in hand: not to be closed as idle
                    yield _YIELD_TRAP
                task.context = request  # what the task dump and watchdog report
                request._id = ids
                if costs:
                    cost = request._cost = Cost(kernel.clock, conn.sock.fd)
                    CURRENT_COST.set(cost)  # and so in every task spawned for it
                if access is not None:
                    conn.started = kernel.tick_started
                try:
                    response = handle(request)
                except Exception:
                    response = _app_failed(request)
                if type(response) is GeneratorType:
                    response = yield from self._wait_for_app(conn, request, response)
                keep_alive = request.keep_alive and not self.closing
                if request._stream is not None and not getattr(request._stream, "done", True):
                    keep_alive = False  # its body was left unread: close, lingering
                    conn.linger = True
                # the request's id is echoed when it has one (always, with the access log)
                wire = encode_at_once(response, request, keep_alive, b"" if echo is None or (
                    access is None and type(request._id) is not str) else echo(request))
                try:
                    if wire is None:
                        if type(response) is WebSocketUpgrade:  # one frame less in a session
                            keep_alive = yield from self._upgrade(conn, request, response)
                        else:
                            keep_alive = yield from self._write(conn, request, response,
                                                                keep_alive)
                    else:
                        try:
                            sent = send_now(wire)
                        except BlockingIOError:
                            sent = 0
                        if sent != len(wire):  # the client's buffer is full
                            conn.phase = BUSY
                            yield from send_rest(conn, wire, sent)
                        self.requests_served += 1
                        if access is not None:
                            access.write(who, request, response.status,
                                         len(response.body), conn.started)
                finally:
                    if request._state is not None:  # request.background() may have been used
                        self.background.start_for(request)
                task.context = None
                if cost is not None:
                    cost.end()
                    cost = None
                    CURRENT_COST.set(None)
                if conn.watching:
                    self._unwatch(conn)
                if not keep_alive:
                    break
                if self._keep_alive(conn):
                    yield read_trap
            if conn.linger:
                yield from linger(conn)
        except Cancelled as exc:
            if exc.scope is not deadline and not conn.gone:
                raise
            if conn.phase in READING and deadline.label in ("request header", "request body"):
                try_send(conn.sock, error_response(408, "request timeout"))
            log.debug("%s: %s, closing", task.name, exc.reason)
        except OSError as exc:
            log.debug("%s: %s", task.name, exc)
        except Exception:
            log.exception("%s failed", task.name)
        finally:
            if cost is not None:  # the request was cut short
                cost.end()
            conn.watching = 0
            if conn.watch is not None:
                self._unwatch(conn)
            deadline.close()
            conn.sock.close()
            self.connections.discard(conn)
            self._slot_free.set()
            if not self.connections:
                self._all_closed.set()

    def _read_request(self, conn: Connection) -> Any:
        """Reading a request: the next one, parsed from what has arrived and
        from an optimistic ``recv``. Returns the :class:`Request`, or
        ``_CLOSED`` (the client closed its side), or what to do before
        asking again: ``_WAIT`` until the socket is readable, ``_DECIDE``
        on ``100 Continue`` (:meth:`_decide_continue`). Raises
        ProtocolError for a malformed request."""
        parser = conn.parser
        request = parser.next_request()
        while request is None:
            if self._streaming:  # some route reads its body as it arrives: is it this one?
                awaiting = parser.awaiting_body
                if awaiting is not None and awaiting._stream is None \
                        and self._check_body_size(conn, awaiting, parser.body_so_far):
                    return _STREAM
            try:
                data = conn.sock.sock.recv(RECV_SIZE)
            except BlockingIOError:
                conn.unyielded = 0
                return self._await_bytes(conn)
            if not data:
                return _CLOSED
            conn.filled = len(data) == RECV_SIZE
            parser.feed(data)
            request = parser.next_request()
        conn.sent_continue = False
        conn.unyielded += 1
        return request

    def _await_bytes(self, conn: Connection) -> str:
        """Before waiting for more of a request, move the deadline with the
        phase: a head has begun (the header timeout), or a body is under way
        (its idle timeout, restarted by every piece). A head that expects
        ``100 Continue`` is to be decided on first."""
        parser = conn.parser
        if conn.phase is IDLE and parser.buffered:
            conn.phase = HEAD
            conn.deadline.set(self.config.header_timeout, "request header")
        if parser.awaiting_body is not None:
            conn.phase = BODY
            conn.deadline.set(self.config.body_timeout, "request body")
            if parser.expect_continue and not conn.sent_continue:
                return _DECIDE
        return _WAIT

    def _refuse_request(self, conn: Connection, error: ProtocolError) -> Coro[None]:
        """A malformed request: answer with its 4xx, then close lingering."""
        log.info("bad request from %s: %s (%d)", format_client(conn.client), error.message,
                 error.status)
        yield from send(conn, error_response(error.status, error.message))
        conn.linger = True

    def _wait_for_app(self, conn: Connection, request: Request, app_coroutine: Any
                      ) -> Coro[Any]:
        """Running a handler that waits (the app returned a generator): drive
        it to its response, with no deadline meanwhile but with the client
        watched (:meth:`_watch`); an exception it raises is answered with a
        500."""
        conn.phase = BUSY
        conn.deadline.clear()
        if request._stream is None or getattr(request._stream, "done", True):
            self._watch(conn)  # (a handler reading its body sees the client leave itself)
        try:
            return (yield from app_coroutine)
        except Exception:
            return _app_failed(request)
        except Cancelled:
            drop_background(request)
            if conn.gone and self.config.access_log:
                log_access(conn, request, 499, 0, "client disconnected")
            raise

    def _watch(self, conn: Connection) -> None:
        """Watch the client while its request is answered (a handler waits,
        a response streams): :func:`~corofw.http.connection.watch_client`
        cancels the connection's task if the client goes away. Watching
        starts once the answer has taken ``_WATCH_AFTER``: a handler that
        returns soon costs no watcher task (a client that left meanwhile is
        found gone as soon as watching starts), and a busy connection keeps
        one timer for its answers rather than one per answer."""
        if conn.watching:
            return  # a stream after a handler that waited: one answer
        conn.answers += 1
        conn.watching = conn.answers
        if conn.watch is None:
            conn.timed = conn.answers
            conn.watch = self._kernel.add_timer(_WATCH_AFTER, self._watch_due, conn)

    def _watch_due(self, conn: Connection) -> None:
        """The timer of :meth:`_watch`: start watching an answer that has
        lasted ``_WATCH_AFTER``; give a later answer its own time."""
        if not conn.watching:
            conn.watch = None
        elif conn.watching == conn.timed:
            watcher = conn.watch = self._kernel.spawn(watch_client(conn, conn.task),
                                                      "client watcher", conn.task)
            watcher._vars.run(CURRENT_COST.set, None)  # its waits are not the request's
        else:
            conn.timed = conn.watching
            conn.watch = self._kernel.add_timer(_WATCH_AFTER, self._watch_due, conn)

    def _unwatch(self, conn: Connection) -> None:
        """The answer is over: stop its watcher (a timer, if any, stays armed
        for the next answer and otherwise goes quietly)."""
        conn.watching = 0
        watch = conn.watch
        if watch is not None and type(watch) is not list:
            conn.watch = None
            watch.cancel("response sent")

    def _write(self, conn: Connection, request: Request, response: Any,
               keep_alive: bool) -> Coro[bool]:
        """Writing a response the fast path does not take (see
        :func:`~corofw.http.responding.write_response`); return whether the
        connection stays open. The request is read: its timers stop, and a
        stream has no total limit, only the send timeout while the client
        does not read."""
        conn.phase = BUSY
        conn.deadline.clear()
        if type(response) is StreamingResponse:
            self._watch(conn)
            if response.endless:
                conn.phase = UPGRADED  # like a WebSocket: a shutdown does not wait for it
        keep_alive, complete = yield from write_response(conn, request, response, keep_alive)
        if complete:
            self.requests_served += 1
        return keep_alive

    def _upgrade(self, conn: Connection, request: Request,
                 upgrade: WebSocketUpgrade) -> Coro[bool]:
        """Hand the connection to a WebSocket session for as long as it
        lasts; the connection is closed after it (False: not kept alive).
        A shutdown tells the client it is going away rather than waiting
        for the session."""
        conn.deadline.clear()
        if conn.watching:
            self._unwatch(conn)  # the session reads the socket itself
        conn.phase = UPGRADED
        failure = "incomplete: cancelled"
        try:
            yield from run_session(conn, request, upgrade)
            failure = ""
        finally:
            self.requests_served += 1
            if self.config.access_log:
                log_access(conn, request, 101, "-", failure)
        return False

    def _keep_alive(self, conn: Connection) -> bool:
        """Between requests: a pipelined request that has begun gets the
        header timeout, an empty connection the keep-alive timeout. True
        when the response just sent answered everything received: the
        client most likely waits for it before sending more, so wait for
        bytes rather than try a ``recv`` that would fail."""
        if conn.parser.buffered:
            conn.phase = HEAD
            conn.deadline.set(self.config.header_timeout, "request header")
            return False
        conn.phase = IDLE
        conn.deadline.set(self.config.keep_alive_timeout, "keep-alive idle")
        return not conn.filled

    # -- shutting down ---------------------------------------------------------

    # -- starting and shutting down -------------------------------------------

    def start(self) -> Coro[None]:
        """Run the app's start-up (a Router's ``on_startup`` hooks), inside
        the kernel, before any connection is accepted. Raises
        :class:`~corofw.http.lifespan.StartupError` if it fails, or is
        cancelled by :meth:`abort`."""
        hooks = self._hooks = yield from spawn(start_app(self.app), "start-up")
        try:
            yield from hooks.join()
        except Cancelled:
            if not hooks.done:  # this task is cancelled, not the start-up
                hooks.cancel("server cancelled")
                raise
            raise StartupError("start-up cancelled: asked again to stop") from None
        finally:
            self._hooks = None
        self._started = True

    def shutdown(self, grace: float | None = None) -> Coro[None]:
        """Stop accepting, close connections with no request in flight
        (idle ones, and those still receiving a request's head), let requests
        in flight and background tasks finish for up to ``grace`` seconds,
        then cancel what is left; then run the app's shutdown (a Router's
        ``on_shutdown`` hooks) if its start-up ran. The access log's lines
        are all written before the shutdown hooks run."""
        grace = self.config.graceful_timeout if grace is None else grace
        ends = (yield from current_time()) + grace
        self.closing = True
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        self._slot_free.set()
        for conn in list(self.connections):
            if conn.phase in CLOSABLE and conn.task is not None:
                conn.task.cancel("server shutting down")
        yield from move_on_after(grace, self._all_closed.wait())
        if self.connections:
            log.warning("grace period over: cancelling %d connection(s)",
                        len(self.connections))
            self.abort("server shutdown grace period over")
            yield from self._all_closed.wait()
        yield from self._finish_background(ends)
        self.access.close()  # every line of the requests served is written
        if self._started:
            self._started = False
            hooks = self._hooks = yield from spawn(stop_app(self.app), "shutdown")
            try:
                yield from hooks.join()
            except Cancelled:
                if not hooks.done:
                    hooks.cancel("server cancelled")
                    raise
            finally:
                self._hooks = None

    def _finish_background(self, ends: float) -> Coro[None]:
        """Let the background tasks finish until ``ends`` (the end of the
        grace period), then cancel those still running; say so in the log."""
        background = self.background
        if not background.running:
            return
        log.info("waiting for %d background task(s)", len(background.running))
        left = ends - (yield from current_time())
        if not (yield from background.wait(max(left, 0.0))):
            log.warning("grace period over: cancelling %d background task(s)",
                        len(background.running))
            background.cancel("server shutdown grace period over")
        yield from background.finish()

    def abort(self, reason: str = "server aborted") -> None:
        """Cancel everything in flight: every connection (requests
        included), the background tasks, and the app's start-up or
        shutdown if it is running."""
        for conn in list(self.connections):
            if conn.task is not None:
                conn.task.cancel(reason)
        self.background.cancel(reason)
        if self._hooks is not None:
            self._hooks.cancel(reason)


def _app_failed(request: Request) -> Response:
    log.exception("error handling %s %s", request.method, request.target)
    drop_background(request)
    return Response(b"Internal Server Error\n", 500, None, "text/plain; charset=utf-8")


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

    The app's start-up runs before the first connection is accepted
    (:class:`~corofw.http.lifespan.StartupError` if it fails), and its
    shutdown after the last request and background task have finished.
    ``on_ready(server)`` is called once the server accepts connections.
    """
    server = Server(app, config)
    server.background.owner = yield from current_task()
    stopped = Event()
    with (yield from catch_signals(signal.SIGINT, signal.SIGTERM)) as signals:
        helpers = [(yield from spawn(watch_signals(signals, stopped, server.abort),
                                     "signal watcher"))]
        if stop is not None:
            helpers.append((yield from spawn(watch_channel(stop, stopped, server.abort),
                                             "stop watcher")))
        try:
            yield from server.start()
            if not stopped.is_set():  # not asked to stop during the start-up
                helpers.append((yield from spawn(server.accept_loop(listener), "accept loop")))
                if on_ready is not None:
                    on_ready(server)
                yield from stopped.wait()
            yield from server.shutdown()
        finally:
            server.access.close()
            for task in helpers:
                task.cancel("server stopped")
    return server
