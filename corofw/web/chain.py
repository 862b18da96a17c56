"""Wrapping a handler in middleware and error handling: the call chain.

A route owned by router ``Ln``, mounted (through ``L1`` ...) in the root
``L0``, runs as::

    guard(L0) > middleware of L0 > guard(L1) > middleware of L1 > ...
        > middleware of Ln > guard(Ln) > handler

where ``guard(Li)`` offers exceptions to the error handlers of ``Li`` and
its ancestors (see :mod:`.errors`). So middleware sees the response made
for an exception its inner layers raised, and an exception raised by a
middleware itself is handled too. Each exception is offered once per
request. A guard around a level's middleware exists only when that level
has middleware; with none anywhere, the chain is the handler plus one
``try`` and returns a response without creating a generator when the
handler is a plain function.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from types import GeneratorType
from typing import Any

from ..http.messages import Request
from .coerce import RESPONSE_TYPES, coerce
from .errors import ErrorScope

#: ``endpoint(request)``: a response, or a generator that returns one.
Endpoint = Callable[[Request], Any]
_Layer = Callable[[Request, Any], Any]


class Scope:
    """One router as the app sees it: ``levels`` are the routers from the
    root down to it."""

    __slots__ = ("levels", "errors", "router")

    def __init__(self, levels: Sequence[Any]) -> None:
        self.levels = tuple(levels)
        self.router = self.levels[-1]
        self.errors = [ErrorScope(self.levels[depth::-1]) for depth in range(len(self.levels))]

    def endpoint(self, handler: Callable[..., Any], with_params: bool = True) -> Endpoint:
        """``handler`` wrapped for this scope. ``with_params=False`` calls it
        as ``handler(request)`` (static routes), else with the path params."""
        if not any(level._middleware for level in self.levels):
            return _core(handler, self.errors[-1], with_params)

        layer: _Layer = _core(handler, self.errors[-1], with_params)
        for depth in range(len(self.levels) - 1, -1, -1):
            middleware = self.levels[depth]._middleware
            if middleware:
                for fn in reversed(middleware):
                    layer = _middleware_layer(fn, layer)
                layer = _guard(layer, self.errors[depth])
        outer = layer

        def endpoint(request: Request) -> Any:
            return outer(request, [])

        return endpoint


def _core(handler: Any, errors: ErrorScope, with_params: bool) -> Any:
    """The innermost layer: call the handler, coerce, handle its errors.
    Called as ``(request)`` alone, or as ``(request, offered)`` inside middleware."""
    if inspect.isgeneratorfunction(handler):
        def call(request: Request, offered: Any = None) -> Any:
            try:
                gen = handler(request, **request.path_params) if with_params else handler(request)
            except Exception as exc:
                response = errors.handle(request, exc, offered)
                if response is None:
                    raise
                return response
            return _drive(gen, handler, request, errors, offered)
    elif with_params:
        def call(request: Request, offered: Any = None) -> Any:
            try:
                result = handler(request, **request.path_params)
                if type(result) is GeneratorType:
                    return _drive(result, handler, request, errors, offered)
                return coerce(result, handler)
            except Exception as exc:
                response = errors.handle(request, exc, offered)
                if response is None:
                    raise
                return response
    else:
        def call(request: Request, offered: Any = None) -> Any:
            try:
                result = handler(request)
                if type(result) is GeneratorType:
                    return _drive(result, handler, request, errors, offered)
                return coerce(result, handler)
            except Exception as exc:
                response = errors.handle(request, exc, offered)
                if response is None:
                    raise
                return response
    return call


def _drive(gen: Any, handler: Any, request: Request, errors: ErrorScope, offered: Any) -> Any:
    try:
        return coerce((yield from gen), handler)
    except Exception as exc:
        response = errors.handle(request, exc, offered)
        if response is None:
            raise
        if type(response) is GeneratorType:
            response = yield from response
        return response


def _middleware_layer(fn: Any, inner: _Layer) -> _Layer:
    def layer(request: Request, offered: list) -> Any:
        def call_next(request: Request) -> Any:
            response = inner(request, offered)
            if type(response) is GeneratorType:
                response = yield from response
            return response

        response = yield from fn(request, call_next)
        if not isinstance(response, RESPONSE_TYPES):
            response = coerce(response, fn)
        return response

    return layer


def _guard(inner: _Layer, errors: ErrorScope) -> _Layer:
    def layer(request: Request, offered: list) -> Any:
        try:
            response = inner(request, offered)
            if type(response) is GeneratorType:
                response = yield from response
            return response
        except Exception as exc:
            response = errors.handle(request, exc, offered)
            if response is None:
                raise
            if type(response) is GeneratorType:
                response = yield from response
            return response

    return layer
