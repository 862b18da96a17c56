"""Distributed tracing with W3C Trace Context, exported through OpenTelemetry
when its SDK is there::

    tracing = Tracing()
    tracing.install(routes)            # a span per request
    tracing.instrument(client)         # a child span per outbound call
    tracing.instrument(redis)          # ... per command (a Redis client)
    tracing.instrument(pool)           # ... per query (a PostgreSQL pool)

A request that brings a valid ``traceparent`` continues that trace (its
``tracestate`` is passed on unchanged); any other starts one, sampled
unless ``Tracing(sampled=False)``. Its span is named after the route's
pattern (``GET /users/{id}``; the method alone when no route took it) and
carries the method, route, path, status and client address, with an error
status for a 5xx or an exception. While the request runs, the span is the
*current span* (:func:`current_span`) of its task and of every task it
spawns (each task runs in a copy of its parent's context variables), so
each call an instrumented Client makes, gathered or not, gets a child span
and sends ``traceparent`` naming it, and ``tracestate``; so does each
command or query of an instrumented Redis client or PostgreSQL pool. A
call made outside any traced request is not traced and sends neither.

The trace id is kept in ``request.state["trace_id"]``
(:data:`~corofw.http.tracecontext.TRACE_ID_STATE_KEY`) for the code that
runs after the handler, such as the access log.

Spans are exported through an OpenTelemetry ``TracerProvider``: the one
given, or by default the global one if it is the SDK's when
:meth:`Tracing.install` runs. The SDK then makes the ids and decides on
sampling. Without a provider the ids are made here and spans are not
exported; they still propagate.

Recording wraps the router's dispatch (:meth:`Router.wrap_dispatch`), so a
plain handler's request gets no generator added; with neither
:meth:`~Tracing.install` nor :meth:`~Tracing.instrument` called, nothing
here runs at all.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextvars import ContextVar
from types import GeneratorType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..data.redis import Redis
from ..http.client import Client
from ..http.messages import Request
from ..http.tracecontext import (
    SAMPLED,
    TRACE_ID_STATE_KEY,
    TraceParent,
    format_traceparent,
    new_span_id,
    new_trace_and_span_ids,
    parse_traceparent,
    parse_tracestate,
)
from ..kernel import Coro
from .router import Router

try:
    from opentelemetry import trace as otel
    from opentelemetry.context import Context as OtelContext
except ImportError:  # the API is optional
    otel = None  # type: ignore[assignment]
try:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
except ImportError:  # so is the SDK
    SdkTracerProvider = None  # type: ignore[assignment,misc]

__all__ = ["Span", "Tracing", "current_span"]

#: The status recorded for a request whose handler raised past every handler.
FAILED_STATUS = 500
SERVER, CLIENT = "server", "client"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
                      "CONNECT"})
_AUTO: Any = object()

_current: ContextVar[Span | None] = ContextVar("corofw_current_span", default=None)


def current_span() -> Span | None:
    """The span of the traced request this task serves (or was spawned by),
    or None: no traced request."""
    return _current.get()


class Span:
    """One operation of a trace: a request served or a call made.

    ``trace_id`` (32 hex digits), ``span_id`` (16), ``parent_id`` (the
    parent span's, None for a trace's first span), ``flags`` (the W3C
    trace flags; bit 0 is *sampled*), ``tracestate`` (as passed on, or
    None), ``kind`` ("server" or "client"), ``name``, ``attributes`` and
    ``error`` (a description once it has failed, else None). Attributes
    set here also go to the exported span."""

    __slots__ = ("trace_id", "span_id", "parent_id", "flags", "tracestate", "kind", "name",
                 "attributes", "error", "_otel")

    def __init__(self, trace_id: str, span_id: str, parent_id: str | None, flags: int,
                 tracestate: str | None, kind: str, name: str, attributes: dict[str, Any],
                 otel_span: Any = None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.flags = flags
        self.tracestate = tracestate
        self.kind = kind
        self.name = name
        self.attributes = attributes
        self.error: str | None = None
        self._otel = otel_span

    def __repr__(self) -> str:
        return f"<Span {self.kind} {self.name!r} {self.traceparent}>"

    @property
    def sampled(self) -> bool:
        """Whether the trace is recorded (the sampled flag)."""
        return bool(self.flags & SAMPLED)

    @property
    def traceparent(self) -> str:
        """The ``traceparent`` that names this span as the parent."""
        return format_traceparent(self.trace_id, self.span_id, self.flags)

    def set_attribute(self, key: str, value: Any) -> None:
        """Set one attribute (a str, bool, int or float, or a list of one
        of them, as OpenTelemetry allows)."""
        self.attributes[key] = value
        if self._otel is not None:
            self._otel.set_attribute(key, value)

    def set_error(self, description: str) -> None:
        """Mark the operation failed, saying why."""
        self.error = description

    # -- a Client's call (the CallTrace a Client's tracer returns) ----------------

    def headers(self) -> list[tuple[str, str]]:
        """The headers an outbound call sends to continue the trace from here."""
        traceparent = format_traceparent(self.trace_id, self.span_id, self.flags)
        if self.tracestate is None:
            return [("traceparent", traceparent)]
        return [("traceparent", traceparent), ("tracestate", self.tracestate)]

    def end_call(self, url: str, status: int | None, error: BaseException | None) -> None:
        """End this span of an outbound call to ``url``: it answered
        ``status`` (4xx and 5xx are errors), or raised ``error``."""
        attributes = self.attributes
        attributes["url.full"] = _without_userinfo(url)
        if status is not None:
            attributes["http.response.status_code"] = status
            if status >= 400:
                self.error = attributes["error.type"] = str(status)
        if error is not None:
            self.error = attributes["error.type"] = type(error).__name__
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:  # a URL the Client refused
            host = port = None
        if host:
            attributes["server.address"] = host
            attributes["server.port"] = port or (443 if parts.scheme == "https" else 80)
        if self._otel is not None:
            _export_end(self, error)

    def end_query(self, error: BaseException | None) -> None:
        """End this span of a database command or query: it succeeded
        (``error`` None) or raised ``error``."""
        if error is not None:
            self.error = self.attributes["error.type"] = type(error).__name__
        if self._otel is not None:
            _export_end(self, error)


C = TypeVar("C")


class Tracing:
    """Tracing for one app and the Clients it calls out with; see the
    module docstring.

    ``tracer_provider`` is the OpenTelemetry ``TracerProvider`` to export
    through (by default, the global one if it is the SDK's when
    :meth:`install` or :meth:`instrument` first runs; None: do not
    export). ``sampled`` is the sampled flag of a trace started here
    without a provider (with one, its sampler decides).
    """

    def __init__(self, tracer_provider: Any = _AUTO, *, sampled: bool = True) -> None:
        self.tracer_provider = tracer_provider
        self.sampled = sampled
        self._flags = SAMPLED if sampled else 0
        self._tracer: Any = None
        self._resolved = False
        self._installed = False
        self._patterns: dict[Any, str] = {}  # Route -> its full pattern

    def __repr__(self) -> str:
        export = "exported" if self._tracer is not None else "not exported"
        return f"<Tracing {export}>"

    # -- wiring ------------------------------------------------------------------

    def install(self, routes: Router) -> None:
        """Make a span for every request ``routes`` answers; ``routes`` is
        the router the server serves (its dispatch is wrapped). Raises
        ValueError for a mounted router, RuntimeError if this Tracing is
        already installed."""
        if self._installed:
            raise RuntimeError("this Tracing is already installed; one Tracing traces one app")
        self._resolve()
        routes.wrap_dispatch(self.wrap)
        self._installed = True

    def instrument(self, client: C) -> C:
        """Make a child span for each call ``client`` makes while a traced
        request runs; return ``client``. A :class:`~corofw.http.client.Client`
        sends ``traceparent`` (and ``tracestate``) with each call; a
        :class:`~corofw.data.redis.Redis` client's commands get spans too,
        as do the query methods of a PostgreSQL
        :class:`~corofw.data.pg_pool.Pool` or
        :class:`~corofw.data.pg_connection.Connection`."""
        self._resolve()
        if isinstance(client, Client):
            client.tracer = self.start_call
        elif isinstance(client, Redis):
            client.tracer = self._redis_tracer(client)
        elif isinstance(client, _pg_classes()):
            client.tracer = self._start_query  # type: ignore[attr-defined]
        else:
            raise TypeError(f"cannot trace a {type(client).__name__}: a Client, a Redis "
                            f"client or a PostgreSQL Pool or Connection is expected")
        return client

    def _resolve(self) -> None:
        if self._resolved:
            return
        provider = self.tracer_provider
        if provider is _AUTO:
            provider = None
            if otel is not None and SdkTracerProvider is not None:
                found = otel.get_tracer_provider()
                if isinstance(found, SdkTracerProvider):
                    provider = found
        if provider is not None:
            if otel is None:
                raise RuntimeError("exporting spans needs opentelemetry-api "
                                   "(pip install 'corofw[otel]')")
            self._tracer = provider.get_tracer("corofw")
        self._resolved = True

    # -- spans -------------------------------------------------------------------

    def wrap(self, handle: Callable[[Request], Any]) -> Callable[[Request], Any]:
        """``handle`` (an app's dispatch) making a span for each request,
        current while the handler runs. A request the app answers without
        a generator gets none added."""
        start = self.start_request
        end = self.end_request
        current = _current

        def traced(request: Request) -> Any:
            span = start(request)
            token = current.set(span)
            try:
                response = handle(request)
            except Exception as exc:
                end(span, request, FAILED_STATUS, exc)
                raise
            except BaseException as exc:
                end(span, request, None, exc)
                raise
            finally:
                current.reset(token)
            if type(response) is GeneratorType:
                return _traced(response, span, request, end)
            end(span, request, response.status, None)
            return response

        return traced

    def start_request(self, request: Request) -> Span:
        """The span of ``request``: continuing the trace its valid
        ``traceparent`` names, or starting one. Its trace id goes to
        ``request.state["trace_id"]``."""
        headers = request.headers
        parent = None
        tracestate = None
        if headers.first_raw(b"traceparent") is not None:
            values = headers.get_all("traceparent")
            if len(values) == 1:  # two of them make the context ambiguous: start anew
                parent = parse_traceparent(values[0])
                if parent is not None:
                    states = headers.get_all("tracestate")
                    if states:
                        tracestate = parse_tracestate(states)
        method = request.method
        attributes: dict[str, Any] = {"http.request.method": method, "url.path": request.path}
        client = request.client
        if type(client) is tuple and len(client) >= 2:
            attributes["client.address"] = client[0]
            attributes["client.port"] = client[1]
        name = method if method in _METHODS else "HTTP"
        if self._tracer is not None:
            span = self._start_exported(name, SERVER, parent, tracestate, attributes)
        elif parent is None:
            trace_id, span_id = new_trace_and_span_ids()
            span = Span(trace_id, span_id, None, self._flags, None, SERVER, name, attributes)
        else:
            span = Span(parent.trace_id, new_span_id(), parent.parent_id, parent.flags & SAMPLED,
                        tracestate, SERVER, name, attributes)
        request.state[TRACE_ID_STATE_KEY] = span.trace_id
        return span

    def end_request(self, span: Span, request: Request, status: int | None,
                    error: BaseException | None) -> None:
        """End ``request``'s span: answered ``status`` (5xx is an error),
        or interrupted by ``error``; named after the route that took it."""
        route = request.route
        attributes = span.attributes
        if route is not None:
            pattern = self._patterns.get(route)
            if pattern is None:
                pattern = self._patterns[route] = route.full_path
            attributes["http.route"] = pattern
            span.name = f"{span.name} {pattern}"
        if status is not None:
            attributes["http.response.status_code"] = status
            if status >= 500:
                span.error = attributes["error.type"] = str(status)
        if error is not None:
            span.error = attributes["error.type"] = type(error).__name__
        if span._otel is not None:
            span._otel.update_name(span.name)
            _export_end(span, error)

    def start_call(self, method: str) -> Span | None:
        """The span of an outbound ``method`` call made now: a child of the
        current span, or None when there is none (the call is not traced).
        This is the tracer :meth:`instrument` gives a Client."""
        parent = _current.get()
        if parent is None:
            return None
        return self._child(parent, method if method in _METHODS else "HTTP",
                           {"http.request.method": method})

    def _redis_tracer(self, redis: Redis) -> Callable[[str], Span | None]:
        """The tracer of one Redis client's commands."""
        where: dict[str, Any] = {"db.system.name": "redis", "db.namespace": str(redis.db)}
        if redis.unix_socket:
            where["server.address"] = redis.unix_socket
        else:
            where["server.address"] = redis.host
            where["server.port"] = redis.port

        def start_command(name: str) -> Span | None:
            parent = _current.get()
            if parent is None:
                return None
            operation = name.upper()
            return self._child(parent, operation, {**where, "db.operation.name": operation})

        return start_command

    def _start_query(self, sql: str) -> Span | None:
        """The span of a PostgreSQL query method's call (the tracer
        :meth:`instrument` gives a pool or connection)."""
        parent = _current.get()
        if parent is None:
            return None
        words = sql.split(None, 1)
        operation = words[0].upper() if words else ""
        return self._child(parent, operation or "postgresql",
                           {"db.system.name": "postgresql", "db.operation.name": operation,
                            "db.query.text": sql})

    def _child(self, parent: Span, name: str, attributes: dict[str, Any]) -> Span:
        """A client span under ``parent``."""
        if self._tracer is not None:
            return self._start_exported(name, CLIENT, parent, parent.tracestate, attributes)
        return Span(parent.trace_id, new_span_id(), parent.span_id, parent.flags,
                    parent.tracestate, CLIENT, name, attributes)

    def _start_exported(self, name: str, kind: str, parent: Span | TraceParent | None,
                        tracestate: str | None, attributes: dict[str, Any]) -> Span:
        """A span made by the OpenTelemetry tracer (which makes its ids)."""
        parent_id = None
        if parent is None:
            context = OtelContext()
        elif isinstance(parent, Span) and parent._otel is not None:
            parent_id = parent.span_id
            context = otel.set_span_in_context(parent._otel, OtelContext())
        else:
            parent_id = parent.span_id if isinstance(parent, Span) else parent.parent_id
            remote = otel.SpanContext(
                int(parent.trace_id, 16), int(parent_id, 16), is_remote=True,
                trace_flags=otel.TraceFlags(parent.flags & SAMPLED),
                trace_state=otel.TraceState.from_header([tracestate]) if tracestate else None)
            context = otel.set_span_in_context(otel.NonRecordingSpan(remote), OtelContext())
        otel_kind = otel.SpanKind.SERVER if kind == SERVER else otel.SpanKind.CLIENT
        otel_span = self._tracer.start_span(name, context, otel_kind, attributes)
        made = otel_span.get_span_context()
        return Span(f"{made.trace_id:032x}", f"{made.span_id:016x}", parent_id,
                    int(made.trace_flags), tracestate, kind, name, attributes, otel_span)


def _pg_classes() -> tuple[type, ...]:
    """The PostgreSQL client classes, if their modules are loaded (a pool or
    connection cannot exist otherwise; psycopg is not imported here)."""
    found = []
    for module, name in (("corofw.data.pg_pool", "Pool"),
                         ("corofw.data.pg_connection", "Connection")):
        loaded = sys.modules.get(module)
        if loaded is not None:
            found.append(getattr(loaded, name))
    return tuple(found)


def _traced(app: Coro[Any], span: Span, request: Request,
            end: Callable[[Span, Request, int | None, BaseException | None], None]) -> Coro[Any]:
    """Drive the app's generator for ``request`` with ``span`` current."""
    token = _current.set(span)
    try:
        response = yield from app
    except Exception as exc:
        end(span, request, FAILED_STATUS, exc)
        raise
    except BaseException as exc:
        end(span, request, None, exc)
        raise
    finally:
        try:
            _current.reset(token)
        except ValueError:  # closed outside its task (collected unfinished)
            pass
    end(span, request, response.status, None)
    return response


def _export_end(span: Span, error: BaseException | None) -> None:
    """Give the exported span its last attributes and status, and end it."""
    otel_span = span._otel
    otel_span.set_attributes(span.attributes)
    if error is not None:
        otel_span.record_exception(error)
    if span.error is not None:
        otel_span.set_status(otel.Status(otel.StatusCode.ERROR, span.error))
    otel_span.end()


def _without_userinfo(url: str) -> str:
    """``url`` without the ``user:password@`` of its authority, if any."""
    start = url.find("://")
    if start < 0:
        return url
    start += 3
    end = len(url)
    for mark in "/?#":
        found = url.find(mark, start)
        if 0 <= found < end:
            end = found
    at = url.rfind("@", start, end)
    return url if at < 0 else url[:start] + url[at + 1:]
