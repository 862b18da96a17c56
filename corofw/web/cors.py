"""Cross-Origin Resource Sharing (the Fetch standard's CORS protocol)::

    routes.middleware(cors_middleware(allow_origins=["https://app.example"],
                                      allow_credentials=True))

A preflight (``OPTIONS`` with ``Origin`` and
``Access-Control-Request-Method``) is answered by the middleware itself,
``204`` when the origin, method and headers are allowed and ``400`` naming
what is not. Any other request runs as usual; when its ``Origin`` is
allowed the response says so (``Access-Control-Allow-Origin``, and
``-Allow-Credentials``/``-Expose-Headers`` as configured). A response
whose CORS headers depend on the request's ``Origin`` carries ``Vary:
Origin``, so that no cache hands one origin's answer to another.

With credentials, ``*`` is never sent (browsers refuse it): the allowed
origin is echoed, and so are the requested method and headers when
``allow_methods`` / ``allow_headers`` are ``"*"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from ..http.headers import Headers
from ..http.messages import Request, Response
from ..kernel.traps import Coro

_ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#\s]+")
_SAFELISTED = frozenset({"accept", "accept-language", "content-language", "content-type"})


def add_vary(response: Any, name: str) -> None:
    """Add ``name`` to the response's ``Vary`` header unless it is there
    (or ``Vary`` is ``*``)."""
    headers = response.headers
    if headers is None:
        headers = response.headers = Headers()
    current = ", ".join(headers.get_all("vary"))
    listed = {item.strip().lower() for item in current.split(",") if item.strip()}
    if "*" in listed or name.lower() in listed:
        return
    headers["vary"] = f"{current}, {name}" if current else name


def _names(values: Iterable[str] | str, what: str) -> tuple[bool, frozenset[str]]:
    if isinstance(values, str):
        values = [values]
    items = [value.strip() for value in values]
    if any(not isinstance(value, str) or not value for value in items):
        raise ValueError(f"{what} must be non-empty strings")
    return "*" in items, frozenset(item.lower() for item in items if item != "*")


def cors_middleware(allow_origins: Iterable[str] | str = (), *,
                    allow_origin_regex: str | None = None,
                    allow_methods: Iterable[str] | str = ("GET", "HEAD", "POST"),
                    allow_headers: Iterable[str] | str = (),
                    allow_credentials: bool = False,
                    expose_headers: Iterable[str] | str = (),
                    max_age: int = 600) -> Callable[[Request, Any], Coro[Any]]:
    """A middleware (for :meth:`Router.middleware`) applying CORS.

    ``allow_origins`` are exact origins (``"https://app.example"``, no
    path or trailing slash: ``ValueError`` otherwise) or ``"*"`` for any;
    ``allow_origin_regex`` also allows origins it matches in full.
    ``allow_methods`` and ``allow_headers`` list what a preflight may ask
    for (``"*"``: anything; the CORS-safelisted request headers are always
    allowed). ``expose_headers`` are response headers scripts may read,
    ``max_age`` how many seconds a browser may cache a preflight answer."""
    if isinstance(allow_origins, str):
        allow_origins = [allow_origins]
    origins = set()
    any_origin = False
    for origin in allow_origins:
        if origin == "*":
            any_origin = True
        elif not isinstance(origin, str) or not _ORIGIN.fullmatch(origin):
            raise ValueError(f"allowed origin {origin!r} must be scheme://host[:port], with "
                             f"no path or trailing slash (or '*')")
        else:
            origins.add(origin.lower())
    pattern = re.compile(allow_origin_regex) if allow_origin_regex is not None else None
    any_method, methods = _names(allow_methods, "allow_methods")
    methods = frozenset(method.upper() for method in methods)
    any_header, allowed_headers = _names(allow_headers, "allow_headers")
    exposed = ", ".join(value.strip() for value in
                        ([expose_headers] if isinstance(expose_headers, str) else expose_headers))
    if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0:
        raise ValueError(f"max_age must be a whole number of seconds >= 0, not {max_age!r}")
    credentials = bool(allow_credentials)
    # the answer depends on the Origin unless it is "*" for everyone
    varies = not any_origin or credentials or pattern is not None
    listed_methods = ", ".join(sorted(methods))

    def allowed(origin: str) -> bool:
        return any_origin or origin.lower() in origins or \
            (pattern is not None and pattern.fullmatch(origin) is not None)

    def allow_origin_value(origin: str) -> str:
        return "*" if any_origin and not credentials and pattern is None else origin

    def preflight(request: Request, origin: str, method: str) -> Response:
        problems = []
        if not allowed(origin):
            problems.append(f"origin {origin!r}")
        if not (any_method or method.upper() in methods):
            problems.append(f"method {method!r}")
        asked = [name.strip() for name in
                 ",".join(request.headers.get_all("access-control-request-headers")).split(",")
                 if name.strip()]
        refused = [name for name in asked if not any_header
                   and name.lower() not in allowed_headers and name.lower() not in _SAFELISTED]
        if refused:
            problems.append(f"header(s) {', '.join(refused)}")
        if problems:
            response = Response.text(f"CORS preflight refused: {'; '.join(problems)} not "
                                     f"allowed\n", 400)
            if varies:
                add_vary(response, "Origin")
            return response
        headers = Headers([("access-control-allow-origin", allow_origin_value(origin))])
        if credentials:
            headers.add("access-control-allow-credentials", "true")
        if any_method:
            headers.add("access-control-allow-methods", "*" if not credentials else method)
        else:
            headers.add("access-control-allow-methods", listed_methods)
        if asked:  # each checked above
            headers.add("access-control-allow-headers", ", ".join(asked))
        headers.add("access-control-max-age", str(max_age))
        response = Response(b"", 204, headers)
        if varies:
            add_vary(response, "Origin")
        add_vary(response, "Access-Control-Request-Method")
        add_vary(response, "Access-Control-Request-Headers")
        return response

    def cors(request: Request, call_next: Any) -> Coro[Any]:
        headers = request.headers
        origin = headers.get("origin")
        if origin is not None and request.method == "OPTIONS":
            method = headers.get("access-control-request-method")
            if method is not None:
                return preflight(request, origin, method)
        response = yield from call_next(request)
        if origin is not None and allowed(origin):
            response.set_header("access-control-allow-origin", allow_origin_value(origin))
            if credentials:
                response.set_header("access-control-allow-credentials", "true")
            if exposed:
                response.set_header("access-control-expose-headers", exposed)
        if varies:
            add_vary(response, "Origin")
        return response

    return cors
