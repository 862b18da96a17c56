"""The server's end of a WebSocket: the upgrade a route answers with, and
the session that runs its handler on the upgraded connection.

A WebSocket route's handler gets a :class:`ServerWebSocket` and speaks
WebSocket until it returns::

    @routes.websocket("/echo")
    def echo(ws):
        while True:
            message = yield from ws.receive()
            yield from ws.send(message)

Its calls are those of the client's WebSocket
(:class:`~corofw.http.websocket.ClientWebSocket`): ``receive`` (pings are
answered on the way), ``send``, ``ping``, ``close``. When the client
closes, ``receive`` raises :class:`~corofw.http.client_errors.WebSocketClosed`
with the client's code; a handler that lets it propagate ends the session
quietly. A handler that returns gets the close handshake with 1000, one
that raises gets 1011 (and the error is logged), and one still running
when the server shuts down is cancelled after the client is sent 1001
("going away"). A send waits at most the server's ``send_timeout`` for a
client that does not read.

The upgrade itself is an ordinary request to the route: a request that is
not a valid WebSocket handshake gets the answer RFC 6455 prescribes (426,
400, 403 or 405, see :func:`~corofw.ws.handshake.accept_upgrade`) and
the connection goes on speaking HTTP.
"""

from __future__ import annotations

import logging
from types import GeneratorType
from typing import Any

from ..kernel.task import Cancelled
from ..kernel.timeouts import move_on_after
from ..kernel.traps import Coro
from ..ws.events import CloseCode
from ..ws.handshake import ServerHandshake
from ..ws.protocol import DEFAULT_MAX_MESSAGE_SIZE
from .client_errors import ClientError, WebSocketClosed, WebSocketError
from .connection import send
from .headers import Headers
from .messages import Request, _ResponseHeaders
from .serialize import check_field, error_response
from .timeouts import Timeout
from .websocket import CLOSE_TIMEOUT, ClientWebSocket

log = logging.getLogger("corofw.websocket")

#: how long a close frame sent on shutdown or after an error may take
_PARTING_SECONDS = 1.0
_NOT_IN_A_101 = frozenset({"content-length", "transfer-encoding", "content-encoding",
                           "content-type", "vary"})


_TIMEOUTS: dict[float | None, Timeout] = {}


class ServerWebSocket(ClientWebSocket):
    """An open WebSocket, seen from the server: ``request`` is the upgrade
    request (its headers, cookies and query), ``headers`` the headers the
    client sent with it (as on the client's side, the peer's handshake
    headers), ``subprotocol`` the one agreed (or None), ``url`` the
    ``ws://`` address it was opened at."""

    def __init__(self, sock: Any, connection: Any, request: Request,
                 subprotocol: str | None, send_timeout: float | None,
                 close_timeout: float = CLOSE_TIMEOUT) -> None:
        host = request.headers.get("host") or "localhost"
        timeouts = _TIMEOUTS.get(send_timeout)
        if timeouts is None:  # one per setting, shared: a session keeps it for its length
            timeouts = _TIMEOUTS[send_timeout] = Timeout(connect=None, read=None,
                                                         write=send_timeout, pool=None)
        super().__init__(sock, connection, f"ws://{host}{request.target}", subprotocol,
                         request.headers, timeouts, close_timeout)
        request.headers.shrink()  # kept for the session's length: only as received
        self.request = request

    def __repr__(self) -> str:
        state = "closed" if self.closed else self._conn.state.value
        return f"<ServerWebSocket {self.request.target} {state}>"


class WebSocketUpgrade(_ResponseHeaders):
    """What a WebSocket route answers an accepted handshake with: the
    server sends the 101 and runs ``handler(ws, **params)`` on the
    connection (see :func:`run_session`). Middleware may add headers
    (``set_header``, ``set_cookie``): they go in the 101."""

    __slots__ = ("handshake", "handler", "params", "max_message_size", "close_timeout")
    status = 101
    content_type = None

    def __init__(self, handshake: ServerHandshake, handler: Any, params: dict[str, Any],
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 close_timeout: float = CLOSE_TIMEOUT) -> None:
        self.headers: Headers | None = None
        self.handshake = handshake
        self.handler = handler
        self.params = params
        self.max_message_size = max_message_size
        self.close_timeout = close_timeout

    def __repr__(self) -> str:
        return f"<WebSocketUpgrade {getattr(self.handler, '__qualname__', self.handler)}>"


def run_session(conn: Any, request: Request, upgrade: WebSocketUpgrade) -> Coro[None]:
    """Send the 101, then run the handler on the upgraded connection until
    it returns, the client leaves, or the task is cancelled; the caller
    closes the connection afterwards. Bytes the client sent after the
    handshake (already in ``conn.parser``) are its first frames."""
    try:
        head = _head(upgrade, b"" if conn.access is None else conn.access.ids.echo(request))
    except ValueError as exc:
        log.error("WebSocket handshake for %s: %s", request.target, exc)
        yield from send(conn, error_response(500, "Internal Server Error"))
        return
    try:
        yield from conn.sock.send_all(head)
    except OSError as exc:
        log.debug("%s: the 101 could not be sent: %s", request.target, exc)
        return
    connection = upgrade.handshake.connection(upgrade.max_message_size)
    leftover = conn.parser.take_buffered()
    if leftover:
        connection.receive_data(leftover)
    conn.parser = None  # HTTP is over on this connection: frames from here on
    ws = ServerWebSocket(conn.sock, connection, request, upgrade.handshake.subprotocol,
                         conn.config.send_timeout, upgrade.close_timeout)
    upgrade.headers = None  # the 101 is sent: what made it is not kept for the session
    upgrade.handshake = None  # type: ignore[assignment]
    try:
        result = upgrade.handler(ws, **upgrade.params)
        if type(result) is GeneratorType:
            yield from result
    except WebSocketClosed:
        pass  # the client closed (or broke the protocol): answered already
    except Cancelled:
        yield from _part(ws, CloseCode.GOING_AWAY, "server shutting down")
        raise
    except WebSocketError as exc:
        log.debug("%s: %s", ws.url, exc)
    except ClientError as exc:
        if not ws.closed or exc.url != ws.url:  # not this WebSocket's own send timing out
            log.exception("WebSocket handler for %s failed", request.target)
            yield from _part(ws, CloseCode.INTERNAL_ERROR, "internal error")
        else:
            log.debug("%s: %s", ws.url, exc)
    except Exception:
        log.exception("WebSocket handler for %s failed", request.target)
        yield from _part(ws, CloseCode.INTERNAL_ERROR, "internal error")
    else:
        if not ws.closed:
            yield from ws.close()
    finally:
        ws.abort()


def _head(upgrade: WebSocketUpgrade, echo: bytes = b"") -> bytes:
    """The 101 head: the handshake's fields, the request id's ``echo``,
    then the fields middleware added (less any that would contradict the
    upgrade). ValueError for a field that cannot be sent as it is (a line
    break in it, a name that is not a token, text that is not Latin-1)."""
    head = upgrade.handshake.response_head()[:-2] + echo
    if upgrade.headers:
        taken = {name.lower() for name, _ in upgrade.handshake.headers} | _NOT_IN_A_101
        if echo:
            taken.add(echo.partition(b":")[0].decode("ascii"))
        for name, value in upgrade.headers.items():
            if name.lower() in taken:
                continue
            check_field(name, value)
            head += f"{name}: {value}\r\n".encode("latin-1")
    return head + b"\r\n"


def _part(ws: ServerWebSocket, code: int, reason: str) -> Coro[None]:
    """Start the close handshake and wait briefly for the answer: the
    client learns why, and a slow one does not hold the server."""
    if ws.closed:
        return
    ws._close_timeout = min(ws._close_timeout, _PARTING_SECONDS)
    yield from move_on_after(_PARTING_SECONDS, ws.close(code, reason))
