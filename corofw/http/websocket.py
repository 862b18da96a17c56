"""A WebSocket client on the kernel, over the sans-I/O layer of
:mod:`corofw.ws`::

    ws = yield from client.websocket("ws://127.0.0.1:8000/chat")
    yield from ws.send("hello")
    reply = yield from ws.receive()        # str for text, bytes for binary
    yield from ws.close()

The opening handshake is an HTTP/1.1 upgrade request made on a connection
of its own (never pooled), with the client's headers, credentials, cookies
and TLS settings; through a proxy, a ``ws://`` URL goes through a CONNECT
tunnel as a ``wss://`` one does. Opening is bounded by the client's
``connect``, ``write`` and ``read`` timeouts (and ``total``); an answer
other than a valid 101 is a
:class:`~corofw.http.client_errors.WebSocketHandshakeError`.

Once open: :meth:`ClientWebSocket.receive` answers pings by itself and
gives the next message; a close frame from the server is answered, the
connection closed, and :class:`~corofw.http.client_errors.WebSocketClosed`
raised with its code and reason (1006 when the connection just ended; a
peer that breaks the protocol gets the close code RFC 6455 prescribes, and
the same error). :meth:`ClientWebSocket.close` does the close handshake,
waiting at most ``close_timeout`` seconds for the server's close frame.
``receive`` waits as long as it takes unless given a ``timeout``;
``send`` is bounded, per stall, by the client's write timeout. One task
may receive while another sends; sends from several tasks go out whole,
one after the other.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

from ..kernel.deadline import Deadline
from ..kernel.sync import Event, Lock
from ..kernel.task import Cancelled, Task
from ..kernel.timeouts import move_on_after
from ..kernel.traps import NOW, RESCHEDULE, TASK, Coro
from ..net import Socket
from ..net.sockets import FAIR_SHARE
from ..ws.deflate import PerMessageDeflate
from ..ws.events import (
    BytesMessage,
    CloseCode,
    CloseConnection,
    ConnectionState,
    LocalProtocolError,
    Ping,
    Pong,
    RemoteProtocolError,
    TextMessage,
)
from ..ws.handshake import ClientHandshake, HandshakeFailed
from ..ws.protocol import DEFAULT_MAX_MESSAGE_SIZE, Connection
from .client_errors import (
    TIMEOUTS,
    ReadError,
    WebSocketClosed,
    WebSocketHandshakeError,
    WriteError,
)
from .headers import Headers
from .parser import ProtocolError, ResponseParser
from .request_body import NO_BODY
from .timeouts import Timeout

RECV_SIZE = 65536
MAX_HEAD = 65536
CLOSE_TIMEOUT = 10.0
_PUMP_EVERY = 0.1  # seconds between looks for pings while a handler only sends
#: messages kept for receive() while other calls read; past it they stop reading
MAX_QUEUE = 64
_TIMED_OUT = object()
_monotonic = time.monotonic
_SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


class ClientWebSocket:
    """An open WebSocket: ``url``, ``subprotocol`` (the one the server
    chose, or None), ``headers`` (of the server's 101 answer). See the
    module's docstring for what each call does."""

    def __init__(self, sock: Socket, connection: Connection, url: str,
                 subprotocol: str | None, headers: Headers, timeouts: Timeout,
                 close_timeout: float = CLOSE_TIMEOUT) -> None:
        self.url = url
        self.subprotocol = subprotocol
        self.headers = headers
        self.close_code: int | None = None
        self.close_reason = ""
        self._sock: Socket | None = sock
        self._conn = connection
        self._timeouts = timeouts
        self._close_timeout = close_timeout
        # lists, not deques: at most MAX_QUEUE messages, and a tenth of the
        # memory while empty (an idle WebSocket keeps both)
        self._messages: list[str | bytes] = []
        self._pongs: list[bytes] = []
        self._awaited: list[bytes] = []  # payloads of the pings sent, not yet answered
        self._in_read = False
        self._waiting = 0  # tasks waiting for the one that reads
        self._handed = Event()
        self._pumped = _monotonic()
        self._write_lock = Lock()
        self._reading: Deadline | None = None
        self._writing: Deadline | None = None

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else self._conn.state.value
        return f"<ClientWebSocket {self.url} {state}>"

    @property
    def closed(self) -> bool:
        """Whether the connection has ended (a close handshake, an error,
        or :meth:`abort`)."""
        return self._sock is None

    # -- sending ---------------------------------------------------------------------

    def send(self, message: str | bytes) -> Coro[None]:
        """Send a text (``str``) or binary (bytes-like) message."""
        if isinstance(message, str):
            event: Any = TextMessage(message)
        elif isinstance(message, (bytes, bytearray, memoryview)):
            event = BytesMessage(bytes(message))
        else:
            raise TypeError(f"a WebSocket message is str or bytes, "
                            f"got {type(message).__name__}")
        yield from self._send_event(event)

    def ping(self, payload: bytes = b"", timeout: float | None = None) -> Coro[float]:
        """Send a ping and wait for its pong; return the round trip in
        seconds. Messages that arrive meanwhile are kept for
        :meth:`receive`."""
        started: float = yield NOW
        payload = bytes(payload)
        self._awaited.append(payload)
        try:
            yield from self._send_event(Ping(payload))
            while payload not in self._pongs:
                yield from self._next_event(timeout)
            self._pongs.remove(payload)
        finally:
            self._awaited.remove(payload)
        now: float = yield NOW
        return now - started

    def _send_event(self, event: Any) -> Coro[None]:
        if self._sock is None or self._conn.state is not ConnectionState.OPEN:
            raise self._closed_error()
        if not self._in_read and _monotonic() - self._pumped >= _PUMP_EVERY:
            yield from self._pump()
            if self._sock is None or self._conn.state is not ConnectionState.OPEN:
                raise self._closed_error()
        yield from self._write(self._conn.send(event))

    def _write(self, data: bytes) -> Coro[None]:
        """Send one frame whole, one writer at a time: at once when no other
        task is writing and the (plain) socket takes it all; else under the
        write lock and the write timeout."""
        sock = self._sock
        if sock is None:
            raise self._closed_error()
        lock = self._write_lock
        if type(sock) is Socket and not lock.locked():  # no frame half sent: try it whole
            try:
                sent = sock.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:  # a reset: the WebSocket is closed
                self.abort()
                raise self._closed_error() from None
            if sent == len(data):
                sock.unyielded += 1
                if sock.unyielded > FAIR_SHARE:  # as Socket.send_all: the others get a turn
                    sock.unyielded = 0
                    yield RESCHEDULE
                return
            data = data[sent:]  # the rest under the lock, taken at once: nothing ran since
        yield from lock.acquire()
        try:
            deadline = yield from self._deadline("_writing")
            seconds = self._timeouts.write
            if seconds is not None:
                deadline.set(seconds, "write")
            try:
                yield from sock.send_all(data)
            except Cancelled as exc:
                self.abort()  # a frame cut short cannot be followed by another
                if exc.scope is deadline:
                    raise TIMEOUTS["write"]("write timeout", self.url) from None
                raise
            except OSError:  # a reset: the WebSocket is closed
                self.abort()
                raise self._closed_error() from None
            finally:
                deadline.clear()
        finally:
            lock.release()

    # -- receiving -------------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> Coro[str | bytes]:
        """The next message: ``str`` for a text one, ``bytes`` for a binary
        one. WebSocketClosed once the connection is closed; a ReadTimeout
        when ``timeout`` seconds pass without a message (the WebSocket stays
        open)."""
        messages = self._messages
        while not messages:
            yield from self._next_event(timeout, receiving=True)
        message = messages.pop(0)
        if self._waiting and len(messages) == MAX_QUEUE - 1:
            self._hand_over()  # room again for a task that waits to read
        return message

    def _next_event(self, timeout: float | None, receiving: bool = False) -> Coro[None]:
        """Handle the next event (reading when none is complete): keep a
        message or pong, answer a ping, finish a close. One task reads at a
        time: while another does, or while ``MAX_QUEUE`` messages wait for
        :meth:`receive` (unless this is it), wait for a hand-over instead,
        then return for the caller to look again."""
        conn = self._conn
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                yield from self._fail(exc)
                return
            if event is not None:
                break
            if self._sock is None:
                raise self._closed_error()
            if self._in_read or (not receiving and len(self._messages) >= MAX_QUEUE):
                yield from self._wait_for_hand_over(timeout)
                return
            yield from self._read(timeout)
        yield from self._handle(event)

    def _wait_for_hand_over(self, timeout: float | None) -> Coro[None]:
        """Wait until the reading task has handed over what it read (or
        stopped reading), or a message was taken; ReadTimeout after
        ``timeout`` seconds."""
        handed = self._handed
        self._waiting += 1
        try:
            if timeout is None:
                yield from handed.wait()
            elif (yield from move_on_after(timeout, handed.wait(), _TIMED_OUT)) is _TIMED_OUT:
                raise TIMEOUTS["read"]("read timeout", self.url)
        finally:
            self._waiting -= 1

    def _hand_over(self) -> None:
        """Wake the tasks waiting for the reader (see :meth:`_next_event`)."""
        handed, self._handed = self._handed, Event()
        handed.set()

    def _handle(self, event: Any) -> Coro[None]:
        """Keep a message (unless closing) or an awaited pong, answer a
        ping, finish a close."""
        conn = self._conn
        if isinstance(event, (TextMessage, BytesMessage)):
            if conn.state is ConnectionState.OPEN:
                self._messages.append(event.data)
        elif isinstance(event, Ping):
            if conn.state is ConnectionState.OPEN:
                yield from self._write(conn.send(event.response()))
        elif isinstance(event, Pong):
            if event.payload in self._awaited:  # one nobody asked for is dropped
                self._pongs.append(event.payload)
        else:
            yield from self._closed_by_peer(event)

    def _pump(self) -> Coro[None]:
        """Between sends of a handler that never receives (called at most
        every ``_PUMP_EVERY`` seconds, and not while another task reads,
        which handles them): take what has arrived without waiting, so that
        pings are answered and a close is seen."""
        self._pumped = _monotonic()
        sock = self._sock
        assert sock is not None
        try:
            data = sock.sock.recv(RECV_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError:
            self.abort()
            raise self._closed_error() from None
        conn = self._conn
        conn.receive_data(data)
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                yield from self._fail(exc)
                return
            if event is None:
                return
            yield from self._handle(event)

    def _read(self, timeout: float | None) -> Coro[None]:
        sock = self._sock
        assert sock is not None
        deadline = None  # no deadline to make or move for a read without a timeout
        if timeout is not None:
            deadline = yield from self._deadline("_reading")
            deadline.set(timeout, "read")
        self._in_read = True
        self._pumped = _monotonic()
        try:
            data = yield from sock.recv(RECV_SIZE)
        except Cancelled as exc:
            if deadline is not None and exc.scope is deadline:
                raise TIMEOUTS["read"]("read timeout", self.url) from None
            raise
        except OSError:  # a reset, or closed by another task: the WebSocket is closed
            self.abort()
            raise self._closed_error() from None
        finally:
            if deadline is not None:
                deadline.clear()
            self._in_read = False
        self._conn.receive_data(data)
        if self._waiting:
            self._hand_over()

    def _closed_by_peer(self, event: CloseConnection) -> Coro[None]:
        """The server's close frame (or the end of the connection): answer
        it, close, raise WebSocketClosed."""
        if self.close_code is None:
            self.close_code, self.close_reason = event.code, event.reason
        if self._conn.state is ConnectionState.REMOTE_CLOSING and self._sock is not None:
            try:
                yield from self._write(self._conn.send(event.response()))
            except (WriteError, LocalProtocolError):
                pass
        self.abort()
        raise self._closed_error()

    def _fail(self, error: RemoteProtocolError) -> Coro[None]:
        """The server broke the protocol: send the close frame the
        protocol layer made for it (its code says why), close, raise."""
        self.close_code, self.close_reason = error.code, error.reason
        if error.close_frame:
            try:
                yield from self._write(error.close_frame)
            except (WriteError, WebSocketClosed):
                pass
        self.abort()
        raise self._closed_error()

    # -- closing ---------------------------------------------------------------------

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> Coro[None]:
        """The close handshake: send a close frame, wait (at most the
        close timeout) for the server's, discarding messages, then close
        the connection. Nothing happens if it is already closed."""
        if self._sock is None:
            return
        if self._conn.state is ConnectionState.OPEN:
            self.close_code, self.close_reason = code, reason
            try:
                yield from self._write(self._conn.send(CloseConnection(code, reason)))
            except (WriteError, WebSocketClosed, TIMEOUTS["write"]):
                self.abort()
                return
        until = (yield NOW) + self._close_timeout
        try:
            while self._sock is not None:
                yield from self._next_event(max(until - (yield NOW), 0.0))
        except (WebSocketClosed, ReadError, TIMEOUTS["read"]):
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        """Close the connection at once, without a close handshake."""
        sock, self._sock = self._sock, None
        for name in ("_reading", "_writing"):
            deadline = getattr(self, name)
            if deadline is not None:
                deadline.close()
                setattr(self, name, None)
        if sock is not None:
            sock.close()
        if self.close_code is None:
            self.close_code = CloseCode.ABNORMAL

    def __enter__(self) -> ClientWebSocket:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Leaving a ``with`` block aborts a WebSocket still open (call
        :meth:`close` inside it for a clean close)."""
        self.abort()

    def _deadline(self, name: str) -> Coro[Deadline]:
        task: Task = yield TASK
        deadline: Deadline | None = getattr(self, name)
        if deadline is None:
            deadline = Deadline(task)
            setattr(self, name, deadline)
        elif deadline.task is not task:
            deadline.retarget(task)
        return deadline

    def _closed_error(self) -> WebSocketClosed:
        return WebSocketClosed(self.close_code or CloseCode.ABNORMAL, self.close_reason,
                               self.url)


def open_websocket(client: Any, url: str, *, subprotocols: Any = (), headers: Any = None,
                   params: Any = None, auth: Any = None, timeout: Any = ...,
                   max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, deflate: bool = False,
                   origin: str | None = None,
                   close_timeout: float = CLOSE_TIMEOUT) -> Coro[ClientWebSocket]:
    """Open a WebSocket to ``url`` (``ws://``, ``wss://``) with
    ``client``'s settings; see :meth:`~corofw.http.client.Client.websocket`."""
    scheme, colon, rest = url.partition("://")
    http_scheme = _SCHEMES.get(scheme.lower())
    if colon and http_scheme is not None:
        url = f"{http_scheme}://{rest}"
    timeouts = client.timeout if timeout is ... else Timeout.of(timeout)
    handshake = ClientHandshake(subprotocols=list(subprotocols), origin=origin,
                                deflate=PerMessageDeflate() if deflate else None)
    pairs = client._call_headers(headers, auth)
    names = {name.lower() for name, _ in pairs}
    pairs += [pair for pair in handshake.request_headers() if pair[0].lower() not in names]
    prepared = client._builder.prepare("GET", url, client.base_url, params, pairs, NO_BODY,
                                       client.cookies, tunnel=True)
    shown = prepared.url.replace("http", "ws", 1)
    task = yield TASK
    deadline = Deadline(task)
    kernel = deadline.kernel
    total_until = None if timeouts.total is None else kernel.clock() + timeouts.total

    def arm(label: str, seconds: float | None) -> None:
        if total_until is not None:
            left = total_until - kernel.clock()
            if seconds is None or left < seconds:
                deadline.set(max(left, 0.0), "total")
                return
        if seconds is None:
            deadline.clear()
        else:
            deadline.set(seconds, label)

    sock: Socket | None = None
    try:
        arm("connect", timeouts.connect)
        sock = yield from client._connector(prepared.key, shown, tunnel=True)
        arm("write", timeouts.write)
        try:
            yield from sock.send_all(prepared.payload)
        except OSError as exc:
            raise WriteError(f"sending the WebSocket handshake failed: {exc}", shown) from None
        arm("read", timeouts.read)
        head, leftover = yield from _read_head(sock, shown)
        response_headers = Headers.from_raw(head.fields)
        if client.cookies is not None:
            client.cookies.update(prepared.origin.scheme, prepared.origin.host, prepared.path,
                                  response_headers.get_all("set-cookie"))
        try:
            accepted = handshake.verify(head.status, response_headers)
        except HandshakeFailed as exc:
            raise WebSocketHandshakeError(f"the server did not open the WebSocket: "
                                          f"{exc.reason}", shown, exc.status,
                                          response_headers) from None
    except Cancelled as exc:
        if sock is not None:
            sock.close()
        if exc.scope is deadline:
            raise TIMEOUTS[deadline.label](f"{deadline.label} timeout", shown) from None
        raise
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    finally:
        deadline.close()
    connection = accepted.connection(max_message_size)
    if leftover:
        connection.receive_data(leftover)
    return ClientWebSocket(sock, connection, shown, accepted.subprotocol, response_headers,
                           timeouts, close_timeout)


def _read_head(sock: Socket, url: str) -> Coro[tuple[Any, bytes]]:
    """The server's answer head, parsed, and the bytes that came after it
    (the first frames, already)."""
    buffer = b""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > MAX_HEAD:
            raise WebSocketHandshakeError("the server's answer head is too large", url, 0)
        try:
            data = yield from sock.recv(RECV_SIZE)
        except OSError as exc:
            raise ReadError(f"reading the WebSocket handshake failed: {exc}", url) from None
        if not data:
            raise ReadError("the server closed the connection during the WebSocket "
                            "handshake", url)
        buffer += data
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(buffer[:end + 4])
    try:
        head = parser.next_head()
    except ProtocolError as exc:
        raise WebSocketHandshakeError(f"the server's answer is not valid HTTP: {exc.message}",
                                      url, 0) from None
    if head is None:  # a 1xx other than 101 and nothing after it
        raise WebSocketHandshakeError("the server did not answer the upgrade", url, 0)
    return head, buffer[end + 4:]
