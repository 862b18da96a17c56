"""The compiled route table a router dispatches with.

Static paths sit in a dict, ``path -> {method: target}``, so the common
request costs two dict lookups. Patterns with parameters are tried in
registration order; routes with the same shape (equal but for parameter
names) share one entry and differ by method. For each method, the entries
that answer it are joined into one alternation regex, so finding the
route is one regex call; only 405, OPTIONS, and a converter rejecting a
value fall back to trying the entries one by one. Everything that is not a
static hit goes through :meth:`RouteTable.resolve`. A path nothing takes
is offered the trailing-slash redirect before the 404 (see
:class:`~corofw.web.router.Router`).
"""

from __future__ import annotations

import re
from typing import Any, Literal, cast
from urllib.parse import quote

from ..http.messages import HTTPError, Request, Response
from .chain import Endpoint, Handled, Scope
from .methods import STANDARD_METHODS, allow_header
from .patterns import PathPattern


class Target:
    """A route as compiled into one table: ``call(request)`` runs it with
    its middleware and error handlers; ``names`` are its parameter names."""

    __slots__ = ("route", "call", "scope", "names")

    def __init__(self, route: Any, call: Endpoint, scope: Scope, names: list[str]) -> None:
        self.route = route
        self.call = call
        self.scope = scope
        self.names = names


class _Dynamic:
    __slots__ = ("pattern", "methods")

    def __init__(self, pattern: PathPattern) -> None:
        self.pattern = pattern
        self.methods: dict[str, Target] = {}


def _not_found(request: Request) -> Any:
    raise HTTPError(404)


def _not_implemented(request: Request) -> Any:
    raise HTTPError(501)


def _method_not_allowed(allow: str) -> Any:
    def method_not_allowed(request: Request) -> Any:
        raise HTTPError(405, headers={"Allow": allow})
    return method_not_allowed


def _redirect(location: str) -> Any:
    def redirect(request: Request) -> Response:
        return Response.redirect(location, 307)
    return redirect


def _options(allow: str) -> Any:
    def options(request: Request) -> Response:
        return Response(b"", 204, {"Allow": allow})
    return options


class _Combined:
    """The entries answering one method as a single regex; ``slots`` maps
    the group number wrapping each entry to that entry."""

    __slots__ = ("regex", "slots")

    def __init__(self, entries: list[_Dynamic]) -> None:
        pieces = []
        self.slots: dict[int, _Dynamic] = {}
        group = 1
        for entry in entries:
            pieces.append(f"({entry.pattern.regex.pattern})")
            self.slots[group] = entry
            group += 1 + entry.pattern.regex.groups
        self.regex = re.compile("|".join(pieces), re.DOTALL)


class RouteTable:
    """Routes of one router and of those mounted in it, flattened."""

    def __init__(self, root: Scope) -> None:
        self.root = root
        self.static: dict[str, dict[str, Target]] = {}
        self.dynamic: list[_Dynamic] = []
        self._shapes: dict[str, _Dynamic] = {}
        self._prefixes: list[tuple[str, Scope]] = []
        self._not_found: dict[int, Endpoint] = {}
        self._combined: dict[str, _Combined | None] = {}
        self.methods: set[str] = set()

    def add(self, route: Any, pattern: PathPattern, scope: Scope) -> None:
        """Add ``route`` served at ``pattern`` (its full path), in ``scope``."""
        target = Target(route, scope.endpoint(route.handler, not pattern.is_static), scope,
                        pattern.param_names)
        if pattern.is_static:
            slot = self.static.setdefault(pattern.source, {})
        else:
            entry = self._shapes.get(pattern.shape)
            if entry is None:
                entry = self._shapes[pattern.shape] = _Dynamic(pattern)
                self.dynamic.append(entry)
            slot = entry.methods
        for method in route.methods:
            slot.setdefault(method, target)
        self.methods.update(route.methods)

    def add_prefix(self, prefix: str, scope: Scope) -> None:
        """Answer 404s under ``prefix`` (a mounted router's) in ``scope``."""
        self._prefixes.append((prefix, scope))

    def finish(self) -> RouteTable:
        """Serve HEAD with GET where no route takes HEAD itself; prepare
        the router's own answers."""
        for slot in [*self.static.values(), *(entry.methods for entry in self.dynamic)]:
            if "GET" in slot and "HEAD" not in slot:
                slot["HEAD"] = slot["GET"]
        self._prefixes.sort(key=lambda item: -len(item[0]))
        self.known_methods = STANDARD_METHODS | self.methods
        self.allow_all = allow_header(self.methods)
        root = self.root
        self._not_implemented = root.endpoint(_not_implemented, False)
        self._options_all = root.endpoint(_options(self.allow_all), False)
        return self

    def methods_in_use(self) -> frozenset[str]:
        """Every method some route answers, HEAD and OPTIONS included."""
        return frozenset(name.strip() for name in self.allow_all.split(", "))

    def resolve(self, request: Request, candidates: dict[str, Target] | None) -> Handled:
        """Dispatch what the static fast path did not: a response, or a
        generator returning one."""
        method = request.method
        if method not in self.known_methods:
            return self._not_implemented(request)
        path = request.path
        if method == "OPTIONS" and request.target == "*":
            return self._options_all(request)
        combined: _Combined | None | Literal[False] = self._combined.get(method, False)
        if combined is False:
            combined = self._combine(method)
        if combined is not None:
            found = combined.regex.fullmatch(path)
            if found is not None:
                base = cast(int, found.lastindex)  # the group of the entry that matched
                entry = combined.slots[base]
                try:
                    values = [conv.to_python(found.group(base + group))
                              for group, conv in entry.pattern.converters]
                except ValueError:
                    pass
                else:
                    target = entry.methods[method]
                    request.path_params = dict(zip(target.names, values, strict=True))
                    request.route = target.route
                    return target.call(request)
        return self._fallback(request, candidates)

    def _combine(self, method: str) -> _Combined | None:
        """The entries answering ``method`` (all of them for ``""``) as one regex."""
        entries = [entry for entry in self.dynamic if not method or method in entry.methods]
        combined = self._combined[method] = _Combined(entries) if entries else None
        return combined

    def _fallback(self, request: Request, candidates: dict[str, Target] | None) -> Handled:
        """Try the entries one by one, collecting the methods the path
        allows, and answer 405, OPTIONS or 404 when no route takes it."""
        method = request.method
        path = request.path
        allowed: set[str] = set()
        scope = None
        if candidates:
            allowed.update(candidates)
            scope = next(iter(candidates.values())).scope
        everything: _Combined | None | Literal[False] = self._combined.get("", False)
        if everything is False:
            everything = self._combine("")
        if everything is None or everything.regex.fullmatch(path) is None:
            entries: list[_Dynamic] = []
        else:
            entries = self.dynamic
        for entry in entries:
            values = entry.pattern.match(path)
            if values is None:
                continue
            target = entry.methods.get(method)
            if target is None:
                allowed.update(entry.methods)
                if scope is None:
                    scope = next(iter(entry.methods.values())).scope
                continue
            request.path_params = dict(zip(target.names, values, strict=True))
            request.route = target.route
            return target.call(request)
        if scope is None:
            if self.root.router.redirect_slashes:
                redirect = self._slash_redirect(request)
                if redirect is not None:
                    return redirect(request)
            return self._missing(path)(request)
        allow = allow_header(allowed)
        if method == "OPTIONS":
            return scope.endpoint(_options(allow), False)(request)
        return scope.endpoint(_method_not_allowed(allow), False)(request)

    def _slash_redirect(self, request: Request) -> Endpoint | None:
        """A redirect to the request's path with its trailing slash removed
        or added, if a route takes that path (for any method); it runs in
        that route's scope, so its routers' middleware sees it."""
        path = request.path
        if path == "/":
            return None
        other = path[:-1] if path.endswith("/") else path + "/"
        target = self._any_target(other)
        if target is None:
            return None
        raw_path, mark, query = request.target.partition("?")
        if raw_path.startswith("/") and raw_path.endswith("/") == path.endswith("/"):
            location = raw_path[:-1] if raw_path.endswith("/") else raw_path + "/"
        else:  # an absolute-form target, or a path ending in %2F
            location = quote(other, safe="/")
        if location.startswith(("//", "/\\")):
            return None  # a client would read it as another host's URL
        return target.scope.endpoint(_redirect(location + mark + query), False)

    def _any_target(self, path: str) -> Target | None:
        """A target of some route that takes ``path``, for any method."""
        slot = self.static.get(path)
        if slot:
            return next(iter(slot.values()))
        for entry in self.dynamic:
            if entry.pattern.match(path) is not None:
                return next(iter(entry.methods.values()))
        return None

    def _missing(self, path: str) -> Endpoint:
        scope = self.root
        for prefix, candidate in self._prefixes:
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                scope = candidate
                break
        endpoint = self._not_found.get(id(scope))
        if endpoint is None:
            endpoint = self._not_found[id(scope)] = scope.endpoint(_not_found, False)
        return endpoint
