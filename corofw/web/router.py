"""The Router: where routes, middleware and error handlers are registered.

::

    routes = Router()

    @routes.get("/users/{user_id:int}", name="user")
    def user(request, user_id):
        yield from sleep(0.01)
        return {"id": user_id}

Handlers are called ``handler(request, **path_params)`` and may be plain or
generator functions; their return value becomes a response as described in
:mod:`.coerce`. Mistakes are reported when they are made: a malformed
pattern, two routes answering the same method on the same pattern, a
repeated name.

Route names are for :meth:`Router.url_for` only and are optional. A name
must be unique among the routes a router can see: its own and those of the
routers mounted in it. ``mount(prefix, sub, name="api")`` exposes the
sub-router's names to the parent as ``"api:<name>"``; without ``name`` they
are exposed unchanged (and must not clash with the parent's).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from types import GeneratorType
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote

from ..http.messages import HTTPError, Request
from ..http.websocket import CLOSE_TIMEOUT
from ..kernel.traps import Coro
from ..ws.protocol import DEFAULT_MAX_MESSAGE_SIZE
from .chain import Handled, Scope
from .coerce import describe
from .methods import normalize_methods
from .patterns import PathPattern, parse_pattern
from .static import StaticFiles
from .table import RouteTable
from .websocket import websocket_endpoint

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("corofw.server")


class Route:
    """One registered route. ``path`` is the pattern as registered (relative
    to ``router``), ``methods`` the upper-case methods it answers (HEAD is
    also answered by a GET route), ``handler`` the function, ``name`` its
    ``url_for`` name or ``None``, ``router`` the router that owns it.
    ``stream_body``: the handler reads the body as it arrives (see
    :meth:`Request.read_chunk <corofw.http.messages.Request.read_chunk>`),
    up to ``max_body_size`` bytes (None: the server's limit)."""

    __slots__ = ("path", "methods", "handler", "name", "router", "pattern", "stream_body",
                 "max_body_size")

    def __init__(self, path: str, methods: frozenset[str], handler: Callable[..., Any],
                 name: str | None, router: Router, pattern: PathPattern) -> None:
        self.path = path
        self.methods = methods
        self.handler = handler
        self.name = name
        self.router = router
        self.pattern = pattern
        self.stream_body = False
        self.max_body_size: int | None = None

    @property
    def full_path(self) -> str:
        """The pattern with the prefixes of the routers it is mounted under."""
        return self.router._mount_prefix() + self.path

    def __repr__(self) -> str:
        methods = ",".join(sorted(self.methods))
        return f"<Route {methods} {self.full_path} -> {describe(self.handler)}>"


class _Mount(NamedTuple):
    prefix: str
    router: Router
    name: str | None


class Router:
    """Routes requests to handlers; also the app object the server calls.

    The server calls :meth:`handle` for every request. Sub-routers are
    attached with :meth:`mount`; everything registered on a router, before
    or after it is mounted, is seen by the routers above it.

    ``redirect_slashes`` (on by default, as in Starlette): a request whose
    path no route takes, but would with its trailing slash added or
    removed (``/items/`` for ``/items``), is answered ``307 Temporary
    Redirect`` to that path, query string kept; 307 makes the client repeat
    the method and body. The setting of the router that is served counts;
    a mounted router's own is ignored.
    """

    def __init__(self, *, redirect_slashes: bool = True) -> None:
        self.redirect_slashes = bool(redirect_slashes)
        self._items: list[Route | _Mount] = []
        self._middleware: list[Callable[..., Any]] = []
        self._status_handlers: dict[int, Callable[..., Any]] = {}
        self._exception_handlers: dict[type, Callable[..., Any]] = {}
        self._parent: Router | None = None
        self._prefix = ""
        self._namespace: str | None = None
        # Every route this router can see, with patterns relative to it.
        self._shapes: dict[str, list[tuple[Route, PathPattern]]] = {}
        self._names: dict[str, tuple[Route, PathPattern]] = {}
        self._table: RouteTable | None = None
        self._on_startup: list[Callable[[], Any]] = []
        self._on_shutdown: list[Callable[[], Any]] = []

    def __repr__(self) -> str:
        return f"<Router {len(self.routes)} routes>"

    # -- registration -------------------------------------------------------

    def add_route(self, path: str, handler: Callable[..., Any],
                  methods: Iterable[str] | str = ("GET",), name: str | None = None, *,
                  stream_body: bool = False, max_body_size: int | None = None) -> Route:
        """Register ``handler`` for ``methods`` on ``path`` and return the Route.

        With ``stream_body`` the handler is called as soon as a request's
        head has arrived and reads the body as it comes
        (``request.read_chunk()``, ``read()``, ``form()``), up to
        ``max_body_size`` bytes (None: the server's ``--max-body-size``;
        larger or smaller than it, for this route only).

        Raises ``ValueError`` for a malformed pattern, a route that answers a
        method another route already answers on the same pattern (parameter
        names aside), a name already in use, or a ``max_body_size`` that is
        not a whole number >= 0 or comes without ``stream_body``;
        ``TypeError`` for a handler that is not callable or is an
        ``async def``.
        """
        if max_body_size is not None and (type(max_body_size) is not int
                                          or max_body_size < 0 or not stream_body):
            raise ValueError(f"max_body_size must be a whole number >= 0, with "
                             f"stream_body=True (a buffered body has the server's limit), "
                             f"not {max_body_size!r}")
        _check_function(handler, "route handler")
        method_set = normalize_methods(methods)
        pattern = parse_pattern(path)
        if "request" in pattern.param_names:
            raise ValueError(f"route pattern {path!r}: a parameter cannot be named 'request' "
                             f"(handlers are called handler(request, **params))")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"route name must be a non-empty str, not {name!r}")
        route = Route(path, method_set, handler, name, self, pattern)
        route.stream_body = bool(stream_body)
        route.max_body_size = max_body_size
        names = [(name, route, pattern)] if name is not None else []
        self._register([(route, pattern)], names)
        self._items.append(route)
        return route

    def route(self, path: str, methods: Iterable[str] | str = ("GET",),
              name: str | None = None, **body: Any) -> Callable[[F], F]:
        """Decorator form of :meth:`add_route` (``stream_body`` and
        ``max_body_size`` too); returns the function unchanged."""
        def decorator(handler: F) -> F:
            self.add_route(path, handler, methods, name, **body)
            return handler
        return decorator

    def get(self, path: str, name: str | None = None) -> Callable[[F], F]:
        """``@routes.get(path)``: answer GET (and HEAD) on ``path``."""
        return self.route(path, ("GET",), name)

    def post(self, path: str, name: str | None = None, **body: Any) -> Callable[[F], F]:
        """``@routes.post(path)``: answer POST on ``path`` (``stream_body``,
        ``max_body_size`` as for :meth:`add_route`)."""
        return self.route(path, ("POST",), name, **body)

    def put(self, path: str, name: str | None = None, **body: Any) -> Callable[[F], F]:
        """``@routes.put(path)``: answer PUT on ``path`` (options as :meth:`post`)."""
        return self.route(path, ("PUT",), name, **body)

    def patch(self, path: str, name: str | None = None, **body: Any) -> Callable[[F], F]:
        """``@routes.patch(path)``: answer PATCH on ``path`` (options as :meth:`post`)."""
        return self.route(path, ("PATCH",), name, **body)

    def delete(self, path: str, name: str | None = None) -> Callable[[F], F]:
        """``@routes.delete(path)``: answer DELETE on ``path``."""
        return self.route(path, ("DELETE",), name)

    def websocket(self, path: str, *, name: str | None = None,
                  subprotocols: Sequence[str] = (), origins: Collection[str] | None = None,
                  deflate: bool = True, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                  close_timeout: float = CLOSE_TIMEOUT) -> Callable[[F], F]:
        """``@routes.websocket(path)``: a WebSocket endpoint on ``path``;
        the handler is called as ``handler(ws, **params)`` with a
        :class:`~corofw.http.ws_server.ServerWebSocket`. The options are
        those of :func:`~corofw.web.websocket.websocket_endpoint`."""
        def decorator(handler: F) -> F:
            endpoint = websocket_endpoint(handler, subprotocols=subprotocols, origins=origins,
                                          deflate=deflate, max_message_size=max_message_size,
                                          close_timeout=close_timeout)
            self.add_route(path, endpoint, ("GET",), name)
            return handler
        return decorator

    def static(self, prefix: str, directory: str | os.PathLike[str], *, name: str | None = None,
               cache_control: str | None = None) -> Route:
        """Serve the files under ``directory`` at ``prefix`` (``"/static"``):
        ``GET /static/css/site.css`` sends ``directory/css/site.css``, HEAD
        too, with ETag/Last-Modified (304s), single Range requests (206,
        416) and the Content-Type of the extension; the body goes out with
        ``os.sendfile``. Anything that is not a regular file inside
        ``directory`` (``..``, encoded or not, backslashes, NUL, symlinks
        leading out, directories) is a 404. ``cache_control`` is sent with
        every file. ``url_for(name, path="css/site.css")`` builds links.
        Raises ``ValueError`` if ``directory`` is not a directory."""
        handler = StaticFiles(directory, cache_control=cache_control)
        return self.add_route(_normalize_prefix(prefix) + "/{path:path}", handler, ("GET",), name)

    def mount(self, prefix: str, router: Router, name: str | None = None) -> Router:
        """Serve ``router``'s routes under ``prefix`` and return ``router``.

        ``prefix`` is a static path such as ``"/api"`` (``""`` or ``"/"``
        mean no prefix); a sub-route ``"/users"`` is then served at
        ``"/api/users"`` and ``"/"`` at ``"/api/"``. ``router``'s middleware
        and error handlers apply to its own routes only, and to 404s for
        paths under ``prefix``; this router's apply around them too. A
        router can be mounted once. ``name`` namespaces its route names.
        """
        if not isinstance(router, Router):
            raise TypeError(f"mount() needs a Router, not {type(router).__name__}")
        if any(ancestor is router for ancestor, _, _ in self._lineage()):
            raise ValueError("cannot mount a router inside itself")
        if router._parent is not None:
            raise ValueError(f"this router is already mounted at "
                             f"{router._mount_prefix() or '/'!r}")
        if "handle" in vars(router):
            raise ValueError("a router whose dispatch is wrapped (wrap_dispatch) cannot be "
                             "mounted: wrap the router that is served")
        prefix = _normalize_prefix(prefix)
        if name is not None and (not isinstance(name, str) or not name or ":" in name):
            raise ValueError(f"mount name must be a non-empty str without ':', not {name!r}")
        namespace = f"{name}:" if name else ""
        routes = [(route, pattern.with_prefix(prefix))
                  for entries in router._shapes.values() for route, pattern in entries]
        names = [(namespace + key, route, pattern.with_prefix(prefix))
                 for key, (route, pattern) in router._names.items()]
        self._register(routes, names)
        router._parent, router._prefix, router._namespace = self, prefix, name
        self._items.append(_Mount(prefix, router, name))
        return router

    def middleware(self, fn: F) -> F:
        """Decorator: run the generator function ``fn(request, call_next)``
        around every route of this router (and of routers mounted in it),
        and around its 404/405/OPTIONS answers.

        ``response = yield from call_next(request)`` runs the rest of the
        chain and always returns a response; ``fn`` returns a response (or
        anything a handler may return). Middleware registered first runs
        outermost. Raises ``TypeError`` if ``fn`` is not a generator function.
        """
        if not inspect.isgeneratorfunction(fn):
            raise TypeError(
                f"middleware {describe(fn)} must be a generator function, e.g. "
                f"def mw(request, call_next): response = yield from call_next(request); "
                f"return response")
        self._middleware.append(fn)
        self._invalidate()
        return fn

    def wrap_dispatch(self, wrapper: Callable[[Callable[[Request], Any]],
                                              Callable[[Request], Any]]) -> None:
        """Replace :meth:`handle` for this router with ``wrapper(handle)``:
        a function of the request that returns what ``handle`` returns (a
        response, or a generator returning one). It sees every request,
        routed or not, after routing (``request.route`` is the Route that
        took it, or None), around all middleware; unlike a middleware, it
        adds no generator to a request answered without one, which is what
        metrics need. Only the router the server serves is wrapped: raises
        ValueError on a mounted router (and :meth:`mount` refuses a
        wrapped one)."""
        if self._parent is not None:
            raise ValueError("wrap_dispatch() on a mounted router would never be called: "
                             "wrap the router that is served")
        self.handle = wrapper(self.handle)  # type: ignore[method-assign,assignment]

    def error_handler(self, key: int | type[Exception]) -> Callable[[F], F]:
        """Decorator: answer ``HTTPError`` with status ``key`` (an int) or
        exceptions of class ``key`` with ``fn(request, exc)``.

        ``fn`` may be a plain or generator function; its return value is
        coerced like a handler's. It covers this router's routes and those
        mounted in it, unless a sub-router has its own for the same error.
        Exceptions are matched along their MRO; status handlers receive the
        ``HTTPError``, including the router's own 404, 405 and 501. An
        ``HTTPError`` is never given to an ``Exception`` handler: it keeps
        its status unless a handler is registered for its status, for
        ``HTTPError`` or for a subclass of it.
        """
        if isinstance(key, int) and not isinstance(key, bool):
            if not 100 <= key <= 999:
                raise ValueError(f"error_handler status must be from 100 to 999, not {key}")
            table: dict[Any, Callable[..., Any]] = self._status_handlers
        elif isinstance(key, type) and issubclass(key, Exception):
            table = self._exception_handlers
        else:
            raise TypeError(f"error_handler() takes a status code or an Exception subclass, "
                            f"not {key!r}")

        def decorator(fn: F) -> F:
            _check_function(fn, "error handler")
            if key in table:
                raise ValueError(f"this router already has an error handler for {key!r}: "
                                 f"{describe(table[key])}")
            table[key] = fn
            self._invalidate()
            return fn
        return decorator

    def on_startup(self, fn: F) -> F:
        """Decorator: call ``fn()`` (a plain or generator function) when the
        server starts, inside the kernel, before the first request is
        accepted: where an app opens its database pool and clients. With
        ``--workers N`` each worker calls it. Hooks run in the order
        registered, this router's before those of the routers mounted in
        it. One that raises stops the server from starting (one line saying
        what failed, a non-zero exit); the shutdown hooks do not run then."""
        _check_function(fn, "start-up hook")
        self._on_startup.append(fn)
        return fn

    def on_shutdown(self, fn: F) -> F:
        """Decorator: call ``fn()`` when the server stops, once the last
        request and background task have finished: where an app closes what
        its start-up opened. Shutdown hooks run in the reverse order of the
        start-up hooks (mounted routers' first); one that raises is logged
        and the others still run."""
        _check_function(fn, "shutdown hook")
        self._on_shutdown.append(fn)
        return fn

    def startup(self) -> Coro[None]:
        """Run the start-up hooks (the server does, once, before serving);
        the first that raises stops the others and its error propagates."""
        for fn in self._hooks("_on_startup"):
            yield from _call_hook(fn)

    def shutdown(self) -> Coro[None]:
        """Run the shutdown hooks (the server does, once, after serving);
        one that raises is logged, the others still run."""
        for fn in reversed(self._hooks("_on_shutdown")):
            try:
                yield from _call_hook(fn)
            except Exception:
                log.exception("shutdown hook %s failed", describe(fn))

    def _hooks(self, kind: str) -> list[Callable[[], Any]]:
        """This router's hooks of ``kind``, then those of mounted routers."""
        hooks = list(getattr(self, kind))
        for item in self._items:
            if isinstance(item, _Mount):
                hooks += item.router._hooks(kind)
        return hooks

    # -- lookup ---------------------------------------------------------------

    def url_for(self, name: str, /, **params: Any) -> str:
        """The percent-encoded path of the route called ``name``, with
        ``params`` filled in through the converters' ``to_url``.

        ``name`` is looked up among the routes this router can see (mounted
        routers' names prefixed as set by :meth:`mount`); the path includes
        the prefixes of the routers this one is mounted under. Raises
        ``LookupError`` for an unknown name, ``TypeError`` for missing or
        unexpected parameters, ``ValueError`` for a value that would not
        match the pattern again.
        """
        entry = self._names.get(name)
        if entry is None:
            known = ", ".join(sorted(self._names)) or "none"
            raise LookupError(f"no route named {name!r} (known names: {known})")
        _, pattern = entry
        return quote(self._mount_prefix(), safe="/") + pattern.build(params, name)

    @property
    def routes(self) -> list[Route]:
        """Every route this router serves, mounted ones included, in the
        order they are tried (static paths are still tried first)."""
        return [route for route, _, _ in self._walk("", ())]

    def methods_in_use(self) -> frozenset[str]:
        """Every method some route answers, HEAD and OPTIONS included."""
        return self._compiled().methods_in_use()

    # -- dispatch -------------------------------------------------------------

    def handle(self, request: Request) -> Handled:
        """Route ``request``: return a Response or StreamingResponse, or a
        generator the server drives with ``yield from`` that returns one.

        Static paths are found with one dict lookup; a plain-function
        handler without middleware gets its response back without any
        generator being created. Unhandled exceptions propagate (the server
        answers 500).
        """
        table = self._table
        if table is None:
            table = self._compiled()
        candidates = table.static.get(request.path)
        if candidates is not None:
            target = candidates.get(request.method)
            if target is not None:
                request.route = target.route
                return target.call(request)
        return table.resolve(request, candidates)

    def accepts(self, request: Request) -> bool:
        """Whether the app's own code may read ``request``'s body: a route
        takes its method and path, or the router's answer to it (a 404, a
        405, a slash redirect) would pass through middleware or an error
        handler, which may read the body. The server asks before it answers
        ``Expect: 100-continue``: a request the router alone answers gets
        its 404 or 405 without being invited to send its body, and no code
        of the app ever sees it with its body left out."""
        table = self._table
        if table is None:
            table = self._compiled()
        method, path = request.method, request.path
        if method in table.static.get(path, ()):
            return True
        if any(method in entry.methods and entry.pattern.match(path) is not None
               for entry in table.dynamic):
            return True
        return self._app_code_answers_misses()

    def streamed_body_limit(self, request: Request, default: int) -> int | None:
        """For a request whose body has not all arrived: the body limit of
        its route if that route streams the body (``default``, the
        server's, when the route sets none), else None (read it whole)."""
        route = self._route_for(request)
        if route is None or not route.stream_body:
            return None
        return default if route.max_body_size is None else route.max_body_size

    def streamed_body_limits(self) -> list[int | None]:
        """The ``max_body_size`` of each route that streams its body (None:
        the server's limit); empty when none does."""
        return [route.max_body_size for route, _, _ in self._walk("", (self,))
                if route.stream_body]

    def _route_for(self, request: Request) -> Route | None:
        table = self._table
        if table is None:
            table = self._compiled()
        method, path = request.method, request.path
        target = table.static.get(path, {}).get(method)
        if target is None:
            target = next((entry.methods[method] for entry in table.dynamic
                           if method in entry.methods and entry.pattern.match(path) is not None),
                          None)
        route: Route | None = None if target is None else target.route
        return route

    # -- internals --------------------------------------------------------------

    def _app_code_answers_misses(self) -> bool:
        """Whether a router of this tree has middleware, a status handler
        or an ``HTTPError`` handler: the router's own answers (404, 405,
        redirects) pass through those, so they may read a request's body."""
        routers = [self]
        while routers:
            router = routers.pop()
            if (router._middleware or router._status_handlers
                    or HTTPError in router._exception_handlers):
                return True
            routers.extend(item.router for item in router._items if isinstance(item, _Mount))
        return False

    def _compiled(self) -> RouteTable:
        table = self._table
        if table is None:
            root = Scope((self,))
            table = RouteTable(root)
            scopes: dict[tuple[Router, ...], Scope] = {(self,): root}
            for route, prefix, levels in self._walk("", (self,)):
                scope = scopes.get(levels)
                if scope is None:
                    scope = scopes[levels] = Scope(levels)
                table.add(route, route.pattern.with_prefix(prefix), scope)
            for levels, prefix in self._mounted_prefixes("", (self,)):
                scope = scopes.get(levels)
                if scope is None:
                    scope = scopes[levels] = Scope(levels)
                table.add_prefix(prefix, scope)
            self._table = table = table.finish()
        return table

    def _walk(self, prefix: str, levels: tuple[Router, ...]
              ) -> Iterator[tuple[Route, str, tuple[Router, ...]]]:
        for item in self._items:
            if isinstance(item, Route):
                yield item, prefix, levels
            else:
                yield from item.router._walk(prefix + item.prefix, (*levels, item.router))

    def _mounted_prefixes(self, prefix: str, levels: tuple[Router, ...]
                          ) -> Iterator[tuple[tuple[Router, ...], str]]:
        for item in self._items:
            if isinstance(item, _Mount):
                inner = (*levels, item.router)
                if item.prefix:
                    yield inner, prefix + item.prefix
                yield from item.router._mounted_prefixes(prefix + item.prefix, inner)

    def _lineage(self) -> Iterator[tuple[Router, str, str]]:
        """This router and those above it, each with the prefix and the
        name namespace that lead from it down to this one."""
        router: Router | None = self
        prefix = namespace = ""
        while router is not None:
            yield router, prefix, namespace
            prefix = router._prefix + prefix
            if router._namespace:
                namespace = f"{router._namespace}:{namespace}"
            router = router._parent

    def _mount_prefix(self) -> str:
        prefix = ""
        for router, _, _ in self._lineage():
            prefix = router._prefix + prefix
        return prefix

    def _register(self, routes: list[tuple[Route, PathPattern]],
                  names: list[tuple[str, Route, PathPattern]]) -> None:
        """Check ``routes`` and ``names`` (relative to this router) against
        everything this router and those above it serve, then add them."""
        lineage = list(self._lineage())
        for router, prefix, namespace in lineage:
            for route, pattern in routes:
                for other, other_pattern in router._shapes.get(prefix + pattern.shape, ()):
                    overlap = route.methods & other.methods
                    if overlap:
                        raise ValueError(
                            f"route {_methods(overlap)} {prefix + pattern.source!r} "
                            f"({describe(route.handler)}) conflicts with "
                            f"{prefix + other_pattern.source!r} ({describe(other.handler)}), "
                            f"already registered for {_methods(overlap)}")
            for name, _, _ in names:
                existing = router._names.get(namespace + name)
                if existing is not None:
                    raise ValueError(
                        f"route name {namespace + name!r} is already used by "
                        f"{prefix + existing[1].source!r} ({describe(existing[0].handler)})")
        for router, prefix, namespace in lineage:
            for route, pattern in routes:
                router._shapes.setdefault(prefix + pattern.shape, []).append(
                    (route, pattern.with_prefix(prefix)))
            for name, route, pattern in names:
                router._names[namespace + name] = (route, pattern.with_prefix(prefix))
            router._table = None

    def _invalidate(self) -> None:
        for router, _, _ in self._lineage():
            router._table = None


def _methods(methods: Iterable[str]) -> str:
    return ",".join(sorted(methods))


def _normalize_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"mount prefix must be a str, not {type(prefix).__name__}")
    if prefix in ("", "/"):
        return ""
    if not prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"mount prefix {prefix!r} must start with '/' and not end with '/'")
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"mount prefix {prefix!r} must be a static path, without parameters")
    return prefix


def _call_hook(fn: Callable[[], Any]) -> Coro[None]:
    result = fn()
    if isinstance(result, GeneratorType):
        yield from result


def _check_function(fn: Any, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what} must be callable, not {type(fn).__name__}")
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(f"{what} {describe(fn)} is an async function; corofw handlers are "
                        f"plain or generator functions (use 'yield from', not 'await')")
