"""WebSocket routes: :meth:`Router.websocket <corofw.web.router.Router.websocket>`
registers a handler that gets a
:class:`~corofw.http.ws_server.ServerWebSocket`::

    @routes.websocket("/rooms/{room}", subprotocols=["chat.v1"])
    def room(ws, room):
        yield from ws.send(f"welcome to {room}")
        while True:
            text = yield from ws.receive()
            yield from ws.send(text.upper())

The route answers GET. A request that is a valid handshake is upgraded
(its middleware runs first and may refuse it, or add headers to the 101);
any other request gets the HTTP answer RFC 6455 prescribes. See
:mod:`corofw.http.ws_server` for what the session does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from typing import Any

from ..http.messages import Request, Response
from ..http.websocket import CLOSE_TIMEOUT
from ..http.ws_server import WebSocketUpgrade
from ..ws.deflate import PerMessageDeflate
from ..ws.handshake import UpgradeRejected, accept_upgrade
from ..ws.protocol import DEFAULT_MAX_MESSAGE_SIZE

_SPEAKS_ONLY_WEBSOCKET = (("Upgrade", "websocket"), ("Connection", "Upgrade"))


def websocket_endpoint(handler: Callable[..., Any], *, subprotocols: Sequence[str] = (),
                       origins: Collection[str] | None = None, deflate: bool = True,
                       max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                       close_timeout: float = CLOSE_TIMEOUT) -> Callable[..., Any]:
    """A route handler ``(request, **params)`` that upgrades to WebSocket
    and runs ``handler(ws, **params)``. ``subprotocols``: the server's, in
    order of preference; ``origins``: the Origin values allowed (one as a
    string, or several; None: any;
    give it for a WebSocket that uses cookies, or any page on the web can
    open it with your user's cookies); ``deflate``: grant
    permessage-deflate to a client that offers it; ``max_message_size``:
    a larger message closes the WebSocket with 1009; ``close_timeout``: how
    long the close handshake waits for the client's answer."""
    if not callable(handler):
        raise TypeError(f"a WebSocket handler must be callable, not {handler!r}")
    if not isinstance(max_message_size, int) or max_message_size < 1:
        raise ValueError(f"max_message_size must be a whole number >= 1, "
                         f"not {max_message_size!r}")
    if isinstance(close_timeout, bool) or not isinstance(close_timeout, (int, float)) \
            or not 0 < close_timeout < math.inf:
        raise ValueError(f"close_timeout must be a finite number of seconds > 0, "
                         f"not {close_timeout!r}")
    offered = [subprotocols] if isinstance(subprotocols, str) else list(subprotocols)
    allowed = None if origins is None else \
        frozenset([origins] if isinstance(origins, str) else origins)
    grant = PerMessageDeflate() if deflate else None

    def endpoint(request: Request, **params: Any) -> Response | WebSocketUpgrade:
        if request.method == "HEAD":  # the route answers it as a GET that is no handshake
            return Response(b"", 426, headers=_SPEAKS_ONLY_WEBSOCKET)
        try:
            handshake = accept_upgrade(request.method, request.headers,
                                       http_version=request.version, subprotocols=offered,
                                       deflate=grant, origins=allowed)
        except UpgradeRejected as refused:
            return Response(refused.reason, refused.status, headers=refused.headers)
        return WebSocketUpgrade(handshake, handler, params, max_message_size, close_timeout)

    endpoint.__name__ = getattr(handler, "__name__", "websocket")
    endpoint.__qualname__ = getattr(handler, "__qualname__", endpoint.__name__)
    endpoint.__doc__ = handler.__doc__
    return endpoint
