"""Cross-site request forgery protection, opt in::

    routes.middleware(csrf_middleware(["a long random secret"]))

    @routes.get("/form")
    def form(request):
        return Response.html(f'<form method="post"><input type="hidden" '
                             f'name="csrf_token" value="{csrf_token(request)}">...')

The signed double-submit cookie pattern (OWASP): each client gets a random
token, signed with the keys, in a cookie; a request with an unsafe method
(anything but GET, HEAD, OPTIONS, TRACE) must send the same token back, in
the ``X-CSRF-Token`` header (scripts) or the ``csrf_token`` form field
(forms), or it is answered ``403`` saying why. Another site can make a
browser send the cookie, but cannot read it to put the token in the
request; the signature stops a token planted by a sibling subdomain. The
comparison takes constant time. An unsafe request whose ``Origin`` is
another site's (and not in ``trusted_origins``) is refused first.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from ..http.messages import Request, Response
from ..http.multipart import FormLimits
from ..kernel.traps import Coro
from .signing import BadSignature, Signer

CSRF_STATE_KEY = "corofw.csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def csrf_token(request: Request) -> str:
    """The token a form or script must send back with this client's
    unsafe requests; ``LookupError`` when no CSRF middleware runs around
    the handler."""
    state = request._state
    token: str | None = state.get(CSRF_STATE_KEY) if state is not None else None
    if token is None:
        raise LookupError("no CSRF token: add routes.middleware(csrf_middleware(keys)) to the "
                          "router that serves this route")
    return token


def _origin_host(origin: str) -> str | None:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return parts.netloc.lower()


def csrf_middleware(secret_keys: Iterable[str | bytes] | str | bytes, *,
                    cookie_name: str = "csrftoken", header_name: str = "X-CSRF-Token",
                    field_name: str = "csrf_token", trusted_origins: Iterable[str] = (),
                    max_age: int = 365 * 24 * 3600, path: str = "/", domain: str | None = None,
                    secure: bool = False, samesite: str | None = "lax",
                    salt: str = "corofw.csrf", form_limits: FormLimits | None = None
                    ) -> Callable[[Request, Any], Coro[Any]]:
    """A middleware (for :meth:`Router.middleware`) refusing unsafe requests
    that do not carry this client's CSRF token.

    ``secret_keys`` sign the tokens (the first signs, each verifies);
    ``header_name`` and ``field_name`` are where a request may carry the
    token; ``trusted_origins`` (``"https://app.example"``) may post from
    another origin. The cookie is readable by scripts (not HttpOnly), so
    that they can copy it into the header; its other attributes are the
    arguments of the same names. A form post's token is read from the
    form, parsed with ``form_limits`` (the defaults when None); a handler
    that reads the form with stricter limits still has them applied."""
    signer = Signer(secret_keys, salt)
    trusted = {origin.rstrip("/").lower() for origin in trusted_origins}

    def give_cookie(response: Any, token: str) -> None:
        response.set_cookie(cookie_name, token, max_age=max_age, path=path, domain=domain,
                            secure=secure, httponly=False, samesite=samesite)

    def refuse(reason: str, token: str, new: bool) -> Response:
        response = Response.text(f"CSRF check failed: {reason}\n", 403)
        if new:
            give_cookie(response, token)
        return response

    def csrf(request: Request, call_next: Any) -> Coro[Any]:
        cookie = request.cookies.get(cookie_name)
        new = True
        if cookie is not None:
            try:
                signer.unsign_bytes(cookie)
                new = False
            except BadSignature:
                pass
        token = signer.sign(secrets.token_urlsafe(32)) if new else cookie
        assert token is not None
        request.state[CSRF_STATE_KEY] = token
        if request.method not in SAFE_METHODS:
            origin = request.headers.get("origin")
            if origin is not None and origin.rstrip("/").lower() not in trusted:
                host = (request.host or "").lower()
                if _origin_host(origin) != host:
                    return refuse(f"cross-origin request from {origin[:100]!r}", token, new)
            if new:
                return refuse("the CSRF cookie is missing or invalid (reload the page)",
                              token, new)
            submitted = request.headers.get(header_name)
            if submitted is None and (request.content_type or "").lower().startswith(
                    _FORM_TYPES):
                form = yield from request.form(form_limits)
                value = form.get(field_name)
                submitted = value if isinstance(value, str) else None
            if submitted is None:
                return refuse(f"no CSRF token in the {header_name} header or the "
                              f"{field_name!r} form field", token, new)
            if not hmac.compare_digest(submitted.encode(), token.encode()):
                return refuse("the CSRF token does not match", token, new)
        response = yield from call_next(request)
        if new:
            give_cookie(response, token)
        return response

    return csrf
