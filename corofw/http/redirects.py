"""Following redirects, sans-I/O: the request a redirect leads to.

Redirects are followed only when asked (``follow_redirects=True`` on the
client or the call, as in httpx), at most ``max_redirects`` times (20 by
default), after which the call fails with
:class:`~corofw.http.client_errors.TooManyRedirects`. For each 301, 302,
303, 307 or 308 answer with a ``Location``:

- the method: 303 turns any method but HEAD into GET, and 301 and 302 turn
  POST into GET (what browsers and httpx do); the body and its headers
  (Content-Type, Content-Length, Transfer-Encoding) are then dropped.
  307 and 308 keep the method and the body; a body streamed from an
  iterator cannot be sent twice, so following them is
  :class:`~corofw.http.client_errors.StreamConsumed`.
- the URL: ``Location`` resolved against the request's URL (RFC 3986); a
  Location that is not an http or https URL is an
  :class:`~corofw.http.client_errors.InvalidURL`.
- the headers: the call's go on, except that ``Authorization``,
  ``Proxy-Authorization``, ``Cookie`` and ``Host`` are dropped when the
  origin (scheme, host, port) changes, so credentials never reach a server
  they were not meant for; the client's ``auth=`` is not sent there
  either. A cookie jar adds the cookies for the new URL.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import urljoin, urlsplit

from .client_errors import InvalidURL
from .urls import Origin

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 20
_BODY_HEADERS = frozenset({"content-type", "content-length", "transfer-encoding"})
_ORIGIN_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "host"})


class Redirect(NamedTuple):
    """Where a redirect leads: the new method and URL, and whether the
    body goes along."""

    method: str
    url: str
    keeps_body: bool


def is_redirect(status: int, location: str | None) -> bool:
    """Whether a response with ``status`` and ``location`` is a redirect
    to follow."""
    return status in REDIRECT_STATUSES and bool(location)


def redirect(method: str, url: str, status: int, location: str) -> Redirect:
    """The request a ``status`` redirect to ``location`` leads to, from a
    ``method`` request for ``url``."""
    if status == 303 and method != "HEAD" or status in (301, 302) and method == "POST":
        method, keeps_body = "GET", False
    else:
        keeps_body = True
    try:
        target = urljoin(url, location.strip())
        scheme = urlsplit(target).scheme.lower()
    except ValueError:
        raise InvalidURL(f"the redirect's Location {location!r} is not a valid URL",
                         url) from None
    if scheme not in ("http", "https"):
        raise InvalidURL(f"the redirect's Location {location!r} is not an http or https URL",
                         url)
    return Redirect(method, target, keeps_body)


def same_origin(a: Origin, b: Origin) -> bool:
    """Whether two URLs' origins (scheme, host, port) are the same."""
    return a.scheme == b.scheme and a.host == b.host and a.port == b.port


def redirect_headers(headers: list[tuple[str, str]], keeps_body: bool,
                     same: bool) -> list[tuple[str, str]]:
    """The call's ``headers`` for the redirected request (see the
    module's docstring)."""
    dropped: set[str] = set()
    if not keeps_body:
        dropped |= _BODY_HEADERS
    if not same:
        dropped |= _ORIGIN_HEADERS
    if not dropped:
        return headers
    return [(name, value) for name, value in headers if name.lower() not in dropped]


def header_pairs(headers: Any) -> list[tuple[str, str]]:
    """A call's ``headers`` (a mapping, pairs or Headers) as pairs."""
    if not headers:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    return [(str(name), str(value)) for name, value in items]
