"""What the server decides about a request's body before reading it: its
limit (the server's, or its route's when the route streams it, see
:mod:`corofw.http.request_stream`), whether the handler reads it as it
arrives, and whether to invite it with ``100 Continue``.

A mixin of :class:`~corofw.http.server.Server`: it uses the server's
``app``, ``config`` and the two attributes it sets.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, cast

from ..kernel.traps import Coro
from .config import ServerConfig
from .connection import BUSY, Connection, send
from .messages import Request
from .parser import Limits, ProtocolError
from .request_stream import BodyStream
from .serialize import CONTINUE

log = logging.getLogger("corofw.server")


class BodyDecisions:
    """The body decisions of :class:`~corofw.http.server.Server`."""

    app: Any
    config: ServerConfig
    _app_accepts: Any
    _body_limits: tuple[Limits, int] | None
    _streaming: bool

    def _parser_limits(self) -> tuple[Limits, int]:
        """The limits connections parse with, and the body size above which
        a request's own route must be asked (when ``_streaming``: some
        route streams its body). When routes stream bodies with limits of
        their own, the parser takes the largest, and the server holds every
        request to its route's (see :meth:`_check_body_size`)."""
        limits = self.config.limits
        default = limits.max_body_bytes
        routes = getattr(self.app, "streamed_body_limits", None)
        sizes = [default if size is None else size for size in (routes() if routes else ())]
        if sizes and max(sizes) > default:
            limits = replace(limits, max_body_bytes=max(sizes))
        self._body_limits = limits, min([default, *sizes])
        self._streaming = bool(sizes)
        return self._body_limits

    def _check_body_size(self, conn: Connection, request: Request, size: int) -> bool:
        """Hold ``request``, whose body declares (or has) ``size`` bytes, to
        its route's limit: ProtocolError (413) beyond it. Returns whether
        the route reads the body as it arrives."""
        default = self.config.limits.max_body_bytes
        limit = self.app.streamed_body_limit(request, default)
        conn.parser.max_body = default if limit is None else limit
        if size > conn.parser.max_body:
            raise ProtocolError(413, "body larger than the server accepts")
        return limit is not None

    def _stream_body(self, conn: Connection) -> Request:
        """Hand over the request whose route streams its body, before the
        body: the handler reads it through ``request.read_chunk()``."""
        request = conn.parser.awaiting_body
        assert request is not None
        request._stream = BodyStream(conn, self.config.body_timeout)
        conn.phase = BUSY
        conn.deadline.clear()
        conn.sent_continue = False
        conn.unyielded += 1
        return request

    def _decide_continue(self, conn: Connection) -> Coro[Request | None]:
        """Deciding on ``100 Continue``, for a head that expects it: invite
        the body (None: go on reading) when the app would take the request
        (its optional ``accepts(request)``). Otherwise return the request
        with an empty body, to be answered at once and the connection
        closed, so that the client sends no body for nothing."""
        request = cast(Request, conn.parser.awaiting_body)  # a head awaits its body
        if self._accepts(request):
            conn.sent_continue = True
            yield from send(conn, CONTINUE)
            return None
        request.body = b""
        request.keep_alive = False
        conn.linger = True
        conn.unyielded += 1
        return request

    def _accepts(self, request: Request) -> bool:
        """Whether the app would take ``request`` (head only)."""
        accepts = self._app_accepts
        if accepts is None:
            return True
        try:
            return bool(accepts(request))
        except Exception:
            log.exception("error in accepts() for %s %s", request.method, request.target)
            return True
