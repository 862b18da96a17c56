"""Finding and calling the error handler for an exception.

Routers are searched from the one that owns the route outward to the root;
the first router with a matching handler wins. Within one router a status
handler (``error_handler(404)``) matching an :class:`HTTPError` comes
before the exception-class handlers, which are looked up along the
exception's MRO (the most specific class first). An ``HTTPError`` is
offered to status handlers and to handlers of ``HTTPError`` and its
subclasses only, never to a handler of a base class that is not an HTTP
error (``Exception``, or ``ValueError`` for a :class:`MalformedBody`): an
HTTP error raised on purpose keeps its status, as in Starlette. An
unhandled ``HTTPError`` becomes ``HTTPError.to_response()``; any other
unhandled exception propagates.
An error handler may itself raise a new ``HTTPError``, which becomes its
``to_response()`` directly (it is not offered to handlers again).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import GeneratorType
from typing import Any

from ..http.headers import Headers
from ..http.messages import HTTPError, Request
from .coerce import Coerced, coerce


class ErrorScope:
    """The error handlers visible from one router: ``routers`` nearest first
    (each with ``_status_handlers`` and ``_exception_handlers`` dicts)."""

    __slots__ = ("routers",)

    def __init__(self, routers: Sequence[Any]) -> None:
        self.routers = tuple(routers)

    def find(self, exc: BaseException) -> Any:
        """The handler for ``exc``, or ``None``. An ``HTTPError`` is
        offered only to handlers of its status and of ``HTTPError`` or its
        subclasses: a handler of a non-HTTP base (``Exception``,
        ``ValueError``) must not turn a deliberate 400 or 404 into its
        own answer."""
        if isinstance(exc, HTTPError):
            status = exc.status
            mro = tuple(cls for cls in type(exc).__mro__ if issubclass(cls, HTTPError))
        else:
            status = None
            mro = type(exc).__mro__
        for router in self.routers:
            if status is not None:
                handler = router._status_handlers.get(status)
                if handler is not None:
                    return handler
            by_class = router._exception_handlers
            if by_class:
                for cls in mro:
                    handler = by_class.get(cls)
                    if handler is not None:
                        return handler
        return None

    def handle(self, request: Request, exc: Exception,
               offered: list[Exception] | None = None) -> Any:
        """A response (or a generator returning one) for ``exc``; ``None``
        when nothing handles it and the caller should re-raise.

        ``offered`` lists the exceptions this request already offered to
        error handlers, so that one re-raised by its handler, or left
        unhandled by an inner router, is not offered again further out.
        """
        if offered is not None:
            if any(seen is exc for seen in offered):
                return None
            offered.append(exc)
        handler = self.find(exc)
        if handler is None:
            return exc.to_response() if isinstance(exc, HTTPError) else None
        try:
            result = handler(request, exc)
        except HTTPError as again:
            if again is exc:
                raise
            return again.to_response()
        if type(result) is GeneratorType:
            return _finish(result, handler, exc)
        return _add_error_headers(coerce(result, handler), exc)


def _finish(gen: Any, handler: Any, exc: Exception) -> Any:
    try:
        result = yield from gen
    except HTTPError as again:
        if again is exc:
            raise
        return again.to_response()
    return _add_error_headers(coerce(result, handler), exc)


def _add_error_headers(response: Coerced, exc: Exception) -> Coerced:
    """Add the headers an HTTPError carries (Allow on a 405, Set-Cookie...)
    whose names the handler's response does not set itself, every value
    of each."""
    extra = getattr(exc, "headers", None) if isinstance(exc, HTTPError) else None
    if extra:
        headers = response.headers
        if headers is None:
            headers = response.headers = Headers()
        own = {name.lower() for name in headers}
        for name, value in Headers(extra).items():
            if name.lower() not in own:
                headers.add(name, value)
    return response
