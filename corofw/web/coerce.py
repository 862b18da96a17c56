"""Turning what a handler returned into a response.

=====================================  ===========================================
handler returns                        response
=====================================  ===========================================
a ``Response``, ``StreamingResponse``  itself
or ``FileResponse``
``str``                                ``text/plain; charset=utf-8``
``bytes`` (or bytearray, memoryview)   ``application/octet-stream``
``dict`` / ``list``                    JSON (``Response.json``)
``(body, status)``                     body coerced as above, with that status
``(body, status, headers)``            ... and those headers set on it
                                       (each name they hold replaces the
                                       body's own; repeated names such as
                                       Set-Cookie keep every value)
anything else, ``None`` included       ``TypeError`` naming the handler
=====================================  ===========================================
"""

from __future__ import annotations

from typing import Any

from ..http.files import FileResponse
from ..http.headers import Headers
from ..http.messages import Response, StreamingResponse
from ..http.ws_server import WebSocketUpgrade

RESPONSE_TYPES = (Response, StreamingResponse, FileResponse, WebSocketUpgrade)
#: what :func:`coerce` gives: one of ``RESPONSE_TYPES``
Coerced = Response | StreamingResponse | FileResponse | WebSocketUpgrade


def describe(fn: Any) -> str:
    """How error messages name a handler: ``module.qualname``."""
    qualname = getattr(fn, "__qualname__", None) or repr(fn)
    module = getattr(fn, "__module__", None)
    return f"{module}.{qualname}" if module else qualname


def coerce(result: Any, source: Any) -> Coerced:
    """``result`` as a response; ``source`` (the handler) names the culprit
    in the ``TypeError`` raised for a value that is not one of the above."""
    kind = type(result)
    if kind is Response or kind is StreamingResponse:
        response: Response | StreamingResponse = result
        return response
    if kind is str:
        return Response(result)
    if isinstance(result, RESPONSE_TYPES):
        return result
    if isinstance(result, tuple) and 2 <= len(result) <= 3:
        return _from_tuple(result, source)
    return _from_body(result, source)


def _from_body(body: Any, source: Any) -> Coerced:
    if isinstance(body, RESPONSE_TYPES):
        return body
    if isinstance(body, str):
        return Response(body)
    if isinstance(body, (bytes, bytearray, memoryview)):
        return Response(bytes(body))
    if isinstance(body, (dict, list)):
        try:
            return Response.json(body)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"handler {describe(source)} returned a {type(body).__name__} "
                            f"that cannot be serialised as JSON: {exc}") from exc
    raise TypeError(
        f"handler {describe(source)} returned {type(body).__name__}"
        f"{' (did it forget a return statement?)' if body is None else ''}; expected a "
        f"Response, StreamingResponse, FileResponse, str, bytes, dict, list or a "
        f"(body, status[, headers]) tuple"
    )


def _from_tuple(result: tuple[Any, ...], source: Any) -> Coerced:
    body, status, *rest = result
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
        raise TypeError(f"handler {describe(source)} returned a tuple whose status is "
                        f"{status!r}; expected an int from 100 to 999")
    response = _from_body(body, source)
    response.status = status
    if rest:
        headers = rest[0]
        try:
            given = Headers(headers)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"handler {describe(source)} returned headers of type "
                            f"{type(headers).__name__}; expected a dict, (name, value) "
                            f"pairs or Headers") from exc
        if response.headers is None:
            response.headers = given
        else:
            response.headers.update(given)
    return response
