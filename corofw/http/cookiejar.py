"""The client's cookie jar: RFC 6265 storage and matching, strictly.

A :class:`CookieJar` keeps the cookies servers set (``Set-Cookie``) and
gives, for each request, the ``Cookie`` header a browser would send:

- domain: a cookie without a Domain attribute goes back to its host only;
  with one, to that domain and its subdomains, and only if the host that
  set it is within that domain. A Domain of one label (``com``,
  ``localhost``), taken for a public suffix, is accepted only from that
  very host (and then for it alone); an IP address matches only itself.
- path: the Path attribute, else the directory of the request's path;
  sent to that path and below it (``/a`` matches ``/a``, ``/a/b``, not
  ``/ab``).
- secure: a Secure cookie is sent over https only, can only be set over
  https, and a plain http response cannot replace it. The ``__Secure-``
  and ``__Host-`` name prefixes are enforced (RFC 6265bis).
- expiry: Max-Age wins over Expires; a cookie whose time has passed (or a
  Max-Age of zero) is deleted; one with neither lasts as long as the jar.

Cookies are sent longest path first, then oldest first. A cookie whose
name or value holds a control character, or that has no ``=``, is ignored,
as is one over 4,096 bytes; a jar holds at most 50 cookies per domain and
3,000 in all, dropping the oldest first.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timezone
from email.utils import parsedate_to_datetime

MAX_COOKIE_SIZE = 4096
MAX_PER_DOMAIN = 50
MAX_COOKIES = 3000
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(r"-?[0-9]+")


class Cookie:
    """One stored cookie. ``domain`` is lower-case, without a leading dot;
    ``host_only`` cookies go to exactly that host; ``expires`` is a Unix
    time, None for a session cookie."""

    __slots__ = ("name", "value", "domain", "host_only", "path", "secure", "http_only",
                 "expires", "created")

    def __init__(self, name: str, value: str, domain: str, path: str = "/", *,
                 host_only: bool = True, secure: bool = False, http_only: bool = False,
                 expires: float | None = None, created: int = 0) -> None:
        self.name = name
        self.value = value
        self.domain = domain
        self.host_only = host_only
        self.path = path
        self.secure = secure
        self.http_only = http_only
        self.expires = expires
        self.created = created

    def __repr__(self) -> str:
        return f"<Cookie {self.name}={self.value} for {self.domain}{self.path}>"

    def matches(self, secure: bool, host: str, path: str) -> bool:
        """Whether this cookie goes with a request to ``host`` and ``path``
        (over https when ``secure``)."""
        if self.secure and not secure:
            return False
        if self.host_only:
            if host != self.domain:
                return False
        elif not domain_match(host, self.domain):
            return False
        return path_match(path, self.path)


def domain_match(host: str, domain: str) -> bool:
    """RFC 6265 5.1.3: ``host`` is ``domain`` or a subdomain of it (an IP
    address matches only itself)."""
    if host == domain:
        return True
    return host.endswith("." + domain) and not _is_ip(host)


def path_match(path: str, cookie_path: str) -> bool:
    """RFC 6265 5.1.4: ``path`` is ``cookie_path`` or below it."""
    if path == cookie_path:
        return True
    if not path.startswith(cookie_path):
        return False
    return cookie_path.endswith("/") or path[len(cookie_path)] == "/"


def default_path(path: str) -> str:
    """RFC 6265 5.1.4: the directory of a request's path."""
    if not path.startswith("/") or path.count("/") == 1:
        return "/"
    return path[:path.rindex("/")]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class CookieJar:
    """Cookies by ``(domain, path, name)``. ``clock`` gives the time in
    Unix seconds (``time.time``; tests pass their own)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._cookies: dict[tuple[str, str, str], Cookie] = {}
        self._counter = 0

    def __repr__(self) -> str:
        return f"<CookieJar {len(self)} cookies>"

    def __len__(self) -> int:
        self._expire()
        return len(self._cookies)

    def __iter__(self) -> Iterator[Cookie]:
        self._expire()
        return iter(list(self._cookies.values()))

    def get(self, name: str, domain: str | None = None) -> str | None:
        """The value of the cookie ``name`` (for ``domain``, if given), or
        None."""
        for cookie in self:
            if cookie.name == name and (domain is None or cookie.domain == domain.lower()):
                return cookie.value
        return None

    def set(self, name: str, value: str, domain: str, path: str = "/", *,
            secure: bool = False, expires: float | None = None) -> None:
        """Store a cookie for ``domain`` (and its subdomains, unless it is
        an IP address), as if a server had set it."""
        if _CONTROL.search(name + value) or not name or "=" in name or ";" in name + value:
            raise ValueError(f"invalid cookie {name!r}")
        domain = domain.lower().lstrip(".")
        self._store(Cookie(name, value, domain, path, host_only=_is_ip(domain), secure=secure,
                           expires=expires))

    def clear(self, domain: str | None = None) -> None:
        """Forget every cookie (of ``domain`` only, if given)."""
        if domain is None:
            self._cookies.clear()
        else:
            domain = domain.lower()
            for key in [key for key in self._cookies if key[0] == domain]:
                del self._cookies[key]

    # -- what the client calls -------------------------------------------------------

    def header_for(self, scheme: str, host: str, path: str) -> str | None:
        """The ``Cookie`` header for a request (None when no cookie goes)."""
        if not self._cookies:
            return None
        self._expire()
        secure = scheme == "https"
        chosen = [c for c in self._cookies.values() if c.matches(secure, host, path)]
        if not chosen:
            return None
        chosen.sort(key=lambda c: (-len(c.path), c.created))
        return "; ".join(f"{c.name}={c.value}" for c in chosen)

    def update(self, scheme: str, host: str, path: str, set_cookies: Iterable[str]) -> None:
        """Take the ``Set-Cookie`` values of a response to a request for
        ``scheme://host`` and ``path``; each is stored, replaces the cookie
        of the same name, domain and path, deletes it (when expired), or is
        ignored (see the module's docstring)."""
        for line in set_cookies:
            cookie = parse_set_cookie(line, scheme == "https", host, path, self.clock())
            if cookie is None:
                continue
            if scheme != "https" and self._shadows_secure(cookie):
                continue
            self._store(cookie)

    # -- inside ----------------------------------------------------------------------

    def _shadows_secure(self, cookie: Cookie) -> bool:
        """RFC 6265bis 5.7 step 16: a plain-http response cannot replace a
        Secure cookie of the same name that covers it."""
        for old in self._cookies.values():
            if old.secure and old.name == cookie.name and (
                    domain_match(old.domain, cookie.domain)
                    or domain_match(cookie.domain, old.domain)) \
                    and path_match(cookie.path, old.path):
                return True
        return False

    def _store(self, cookie: Cookie) -> None:
        key = (cookie.domain, cookie.path, cookie.name)
        old = self._cookies.pop(key, None)
        if cookie.expires is not None and cookie.expires <= self.clock():
            return  # expired: a deletion
        if old is not None:
            cookie.created = old.created
        else:
            self._counter += 1
            cookie.created = self._counter
        self._cookies[key] = cookie
        self._limit(cookie.domain)

    def _limit(self, domain: str) -> None:
        same = [c for c in self._cookies.values() if c.domain == domain]
        if len(same) > MAX_PER_DOMAIN or len(self._cookies) > MAX_COOKIES:
            self._expire()
        for pool, limit in ((same, MAX_PER_DOMAIN), (list(self._cookies.values()), MAX_COOKIES)):
            pool = [c for c in pool if (c.domain, c.path, c.name) in self._cookies]
            if len(pool) > limit:
                for cookie in sorted(pool, key=lambda c: c.created)[:len(pool) - limit]:
                    del self._cookies[cookie.domain, cookie.path, cookie.name]

    def _expire(self) -> None:
        now = self.clock()
        gone = [key for key, c in self._cookies.items()
                if c.expires is not None and c.expires <= now]
        for key in gone:
            del self._cookies[key]


def parse_set_cookie(line: str, secure: bool, host: str, path: str,
                     now: float) -> Cookie | None:
    """The cookie a ``Set-Cookie`` value sets for a response to ``host``
    and ``path`` (over https when ``secure``), following RFC 6265 5.2 and
    5.3; None when it must be ignored."""
    if len(line) > MAX_COOKIE_SIZE:
        return None
    pair, *attributes = line.split(";")
    name, equals, value = pair.partition("=")
    name, value = name.strip(" \t"), value.strip(" \t")
    if not equals or not name or _CONTROL.search(name + value):
        return None
    expires: float | None = None
    max_age: float | None = None
    domain = ""
    cookie_path = ""
    secure_only = http_only = False
    for attribute in attributes:
        key, _, attr_value = attribute.partition("=")
        key = key.strip(" \t").lower()
        attr_value = attr_value.strip(" \t")
        if key == "expires":
            expires = _parse_date(attr_value) if max_age is None else expires
        elif key == "max-age" and _DIGITS.fullmatch(attr_value):
            max_age = now + int(attr_value) if int(attr_value) > 0 else -1.0
        elif key == "domain" and attr_value:
            domain = attr_value.lstrip(".").lower()
        elif key == "path":
            cookie_path = attr_value if attr_value.startswith("/") else ""
        elif key == "secure":
            secure_only = True
        elif key == "httponly":
            http_only = True
    if max_age is not None:
        expires = max_age
    if secure_only and not secure:
        return None  # only an https response may set a Secure cookie
    host_only = True
    if domain:
        if domain != host and "." not in domain:
            return None  # a public suffix, set from another host
        if not domain_match(host, domain):
            return None
        host_only = domain == host and "." not in domain
    else:
        domain = host
    cookie_path = cookie_path or default_path(path)
    if name.startswith("__Secure-") and not secure_only:
        return None
    if name.startswith("__Host-") and not (secure_only and host_only and cookie_path == "/"
                                           and not _had_domain(attributes)):
        return None
    return Cookie(name, value, domain, cookie_path, host_only=host_only, secure=secure_only,
                  http_only=http_only, expires=expires)


def _had_domain(attributes: list[str]) -> bool:
    return any(a.partition("=")[0].strip(" \t").lower() == "domain" for a in attributes)


def _parse_date(text: str) -> float | None:
    """An Expires date as a Unix time; None (the attribute is ignored)
    when it cannot be read."""
    try:
        date = parsedate_to_datetime(text)
        if date.tzinfo is None:
            date = date.replace(tzinfo=timezone.utc)  # cookie dates are GMT
        return date.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
