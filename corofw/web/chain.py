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

Once the outermost layer is done, the uploads of a form the request read
(``request.form()``) are closed; for a streaming response, when its
stream ends (:func:`release_form`). A request that read no form pays one
``None`` check, in generator handlers only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from types import GeneratorType
from typing import Any, Protocol

from ..http.messages import FORM_STATE_KEY, Request, StreamingResponse
from ..kernel.traps import Coro
from .coerce import RESPONSE_TYPES, Coerced, coerce
from .errors import ErrorScope

#: What an endpoint gives: a response, or a generator that returns one.
Handled = Coerced | Coro[Coerced]
#: ``endpoint(request)``: a :data:`Handled`.
Endpoint = Callable[[Request], Handled]
_Layer = Callable[[Request, Any], Any]


class _Call(Protocol):
    """What :func:`_core` makes: an :data:`Endpoint` that is also a
    middleware layer (``offered`` lists the exceptions already offered to
    error handlers)."""

    def __call__(self, request: Request, offered: list[Exception] | None = None) -> Handled: ...


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
            return _core(handler, self.errors[-1], with_params, True)

        layer: _Layer = _core(handler, self.errors[-1], with_params, False)
        for depth in range(len(self.levels) - 1, -1, -1):
            middleware = self.levels[depth]._middleware
            if middleware:
                for fn in reversed(middleware):
                    layer = _middleware_layer(fn, layer)
                layer = _guard(layer, self.errors[depth])
        outer = layer

        def endpoint(request: Request) -> Any:
            return _releasing(outer(request, []), request)

        return endpoint


def release_form(request: Request, response: Any) -> Any:
    """Close the uploads of the form ``request`` read (if it read one) now
    that ``response`` answers it, or, for a streaming response, once its
    stream ends; return ``response``."""
    state = request._state
    form = state.pop(FORM_STATE_KEY, None) if state is not None else None
    if form is not None:
        if isinstance(response, StreamingResponse):
            response.body = _closing_after(response.body, form)
        else:
            form.close()
    return response


def _closing_after(body: Any, form: Any) -> Any:
    try:
        return (yield from body)
    finally:
        form.close()


def _releasing(outer: Any, request: Request) -> Any:
    """The whole chain with middleware: uploads are released once it is done."""
    try:
        response = yield from outer
    except BaseException:
        release_form(request, None)
        raise
    return release_form(request, response)


def _core(handler: Any, errors: ErrorScope, with_params: bool, outermost: bool) -> _Call:
    """The innermost layer: call the handler, coerce, handle its errors.
    Called as ``(request)`` alone, or as ``(request, offered)`` inside
    middleware. When it is ``outermost`` (no middleware), a generator
    handler's form uploads are released once it is done."""
    if inspect.isgeneratorfunction(handler):
        def call(request: Request, offered: Any = None) -> Any:
            try:
                gen = handler(request, **request.path_params) if with_params else handler(request)
            except Exception as exc:
                response = errors.handle(request, exc, offered)
                if response is None:
                    raise
                return response
            return _drive(gen, handler, request, errors, offered, outermost)
    elif with_params:
        def call(request: Request, offered: Any = None) -> Any:
            try:
                result = handler(request, **request.path_params)
                if type(result) is GeneratorType:
                    return _drive(result, handler, request, errors, offered, outermost)
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
                    return _drive(result, handler, request, errors, offered, outermost)
                return coerce(result, handler)
            except Exception as exc:
                response = errors.handle(request, exc, offered)
                if response is None:
                    raise
                return response
    return call


def _drive(gen: Any, handler: Any, request: Request, errors: ErrorScope, offered: Any,
           release: bool) -> Any:
    try:
        try:
            response = coerce((yield from gen), handler)
        except Exception as exc:
            response = errors.handle(request, exc, offered)
            if response is None:
                raise
            if type(response) is GeneratorType:
                response = yield from response
    except BaseException:
        if release:
            release_form(request, None)
        raise
    if release and request._state is not None:
        return release_form(request, response)
    return response


def _middleware_layer(fn: Any, inner: _Layer) -> _Layer:
    def layer(request: Request, offered: list[Exception]) -> Any:
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
    def layer(request: Request, offered: list[Exception]) -> Any:
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
