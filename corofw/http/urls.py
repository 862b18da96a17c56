"""URLs as the client sends them, sans-I/O: split into an origin and a
request target, percent-encoded where needed.

A URL is split into its origin (scheme, host and port: the pool's key and
the Host header) and its request target. A client talks to few origins, so
each is parsed once and remembered; targets are many, and one that needs no
encoding (the common case) costs a single regular-expression match.

Encoding follows httpx and the WHATWG URL standard: non-ASCII text in the
path and query is percent-encoded as UTF-8, existing ``%XX`` escapes are
kept, a ``%`` that starts no escape is sent as ``%25``, and a space or any
other character a request line cannot carry becomes an escape. A non-ASCII
host is IDNA-encoded as IDNA 2008 with the UTS 46 mapping, as browsers and
httpx do (``faß.de`` is ``xn--fa-hia.de``, not IDNA 2003's ``fass.de``),
checked by the ``idna`` package when it is installed. The path's
``.`` and ``..`` segments are resolved as RFC 3986 (section 5.2.4) and
browsers resolve them (``/a/b/../c`` is sent as ``/a/c``); escaped dots
(``%2E``) are left alone. ``user:pass@`` in the URL becomes Basic
credentials, and is masked as ``[secure]`` in the URL that errors and
responses show. What cannot be sent is an :class:`InvalidURL`: an unknown
scheme, no host, a port that is not a number from 1 to 65535, a control
character, an unencodable host.
"""

from __future__ import annotations

import base64
import re
import socket
import unicodedata
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote_plus, unquote, unquote_plus

try:
    import idna as _idna
except ImportError:  # optional: without it, IDNA 2008 without code point checks
    _idna = None  # type: ignore[assignment]  # checked before each use

from .client_errors import InvalidURL

DEFAULT_PORTS = {"http": 80, "https": 443}
CACHE_SIZE = 2048

# Sent as is: printable ASCII except space " # % < > ` { } (a "?" ends the path).
_PLAIN_TARGET = re.compile(r"[\x21\x24\x26-\x3b\x3d\x3f-\x5f\x61-\x7a\x7c\x7e]*")
# What to escape: a "%" that starts no escape, and anything outside the safe set
# (a path's: printable ASCII except space " # < > ? ` { }; a query's also keeps ? ` { }).
_PATH_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})|[^\x21\x24-\x3b\x3d\x40-\x5f\x61-\x7a\x7c\x7e]")
_QUERY_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})|[^\x21\x24-\x3b\x3d\x3f-\x7e]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REG_NAME = re.compile(r"(?:[a-z0-9\-._~!$&'()*+,;=]|%[0-9a-f]{2})+")
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")


class Origin(NamedTuple):
    """The parsed ``scheme://[user:pass@]host[:port]`` part of a URL."""

    scheme: str
    host: str  # ASCII (IDNA-encoded), an IPv6 address without brackets
    port: int
    authority: str  # the Host header
    authorization: str | None  # Basic credentials from the URL's userinfo
    text: str  # the origin as written
    shown: str  # the origin as errors and responses show it (password masked)


def split_url(url: str, origins: dict[str, Origin]) -> tuple[Origin, str]:
    """The origin of the absolute ``url`` (parsed once, then taken from
    ``origins``) and its request target, encoded, without the fragment."""
    start = url.find("://") + 3
    end = len(url)
    for mark in "/?#":
        found = url.find(mark, start)
        if 0 <= found < end:
            end = found
    text = url[:end]
    origin = origins.get(text)
    if origin is None:
        origin = parse_origin(text, url)
        if len(origins) >= CACHE_SIZE:
            origins.clear()
        origins[text] = origin
    target = url[end:].partition("#")[0] or "/"
    if target[0] == "?":
        target = "/" + target
    if not _PLAIN_TARGET.fullmatch(target):
        target = quote_target(target, url if origin.shown is text else origin.shown + url[end:])
    if "/." in target:
        path, question, query = target.partition("?")
        if "/." in path:
            target = remove_dot_segments(path) + question + query
    return origin, target


def remove_dot_segments(path: str) -> str:
    """``path`` (starting with ``/``) with its ``.`` and ``..`` segments
    resolved; a trailing one leaves a trailing ``/``, and ``..`` never
    climbs above the root."""
    segments = path.split("/")[1:]
    kept: list[str] = []
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
            continue
        if index == last:
            kept.append("")
    return "/" + "/".join(kept)


def parse_origin(text: str, url: str) -> Origin:
    """Parse ``scheme://[userinfo@]host[:port]``; :class:`InvalidURL` if it
    cannot be sent."""
    scheme_text, _, rest = text.partition("://")
    userinfo, _, hostport = rest.rpartition("@")
    user, colon, password = userinfo.partition(":")
    shown = text
    if colon:
        shown = f"{scheme_text}://{user}:[secure]@{hostport}"
        url = shown + url[len(text):]  # no password in an error message either
    scheme = scheme_text.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidURL(f"unsupported URL scheme {scheme_text!r}", url)
    if _CONTROL.search(rest):
        raise InvalidURL("the URL's host part contains a control character", url)
    if hostport.startswith("["):
        host, bracket, after = hostport[1:].partition("]")
        if not bracket or after[:1] not in ("", ":") or not _is_ipv6(host):
            raise InvalidURL("invalid IPv6 address in the URL", url)
        port_text = after[1:]
        shown_host = f"[{host}]"
    else:
        host, _, port_text = hostport.partition(":")
        host = shown_host = encode_host(host, url)
    port = _port(port_text, scheme, url)
    authority = shown_host if port == DEFAULT_PORTS[scheme] else f"{shown_host}:{port}"
    authorization = None
    if userinfo:
        credentials = f"{unquote(user)}:{unquote(password)}".encode()
        authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
    return Origin(scheme, host, port, authority, authorization, text, shown)


def encode_host(host: str, url: str = "") -> str:
    """``host`` lower-cased, IDNA-encoded when it is not ASCII."""
    if not host:
        raise InvalidURL("the URL has no host", url)
    if host.isascii():
        host = host.lower()
    else:
        try:
            host = _idna2008(host)
        except (UnicodeError, ValueError):
            raise InvalidURL(f"the host {host!r} is not a valid international domain name",
                             url) from None
    if not _REG_NAME.fullmatch(host):
        raise InvalidURL(f"invalid host {host!r}", url)
    return host


def _idna2008(host: str) -> str:
    """``host`` in IDNA 2008 ASCII form, mapped as UTS 46 (non-transitional:
    ``ß`` stays ``ß``). The ``idna`` package checks every code point when
    it is installed; without it, labels are mapped (NFKC, lower case) and
    Punycode-encoded, and only their lengths are checked."""
    if _idna is not None:
        return str(_idna.encode(host, uts46=True, transitional=False).decode("ascii"))
    mapped = unicodedata.normalize("NFKC", host).lower()
    for dot in "\u3002\uff0e\uff61":
        mapped = mapped.replace(dot, ".")
    labels = []
    for label in mapped.split("."):
        if not label.isascii():
            label = "xn--" + label.encode("punycode").decode("ascii")
        if len(label) > 63:
            raise ValueError("a label is longer than 63 characters")
        labels.append(label)
    return ".".join(labels)


def _is_ipv6(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6, host)
    except (OSError, ValueError):
        return False
    return True


def _port(text: str, scheme: str, url: str) -> int:
    if not text:
        return DEFAULT_PORTS[scheme]
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise InvalidURL(f"invalid port {text!r} in the URL (1 to 65535)", url)
    return int(text)


def quote_target(target: str, url: str = "") -> str:
    """``target`` (path and query) with whatever a request line cannot
    carry percent-encoded; valid ``%XX`` escapes are left as they are."""
    if _CONTROL.search(target):
        raise InvalidURL("the URL contains a control character (such as a line break)", url)
    path, question, query = target.partition("?")
    try:
        path = _PATH_ESCAPE.sub(_escape, path)
        if question:
            return path + "?" + _QUERY_ESCAPE.sub(_escape, query)
    except UnicodeEncodeError:
        raise InvalidURL("the URL cannot be encoded as UTF-8", url) from None
    return path


def _escape(match: re.Match[str]) -> str:
    return "".join([f"%{byte:02X}" for byte in match.group().encode("utf-8")])


def with_params(url: str, params: Any) -> str:
    """``url`` (or a request target) with ``params`` merged into its query,
    as httpx merges them: a key in ``params`` replaces every value of that
    key in the query (where it first was), new keys go at the end; the
    fragment stays last. ``params`` as :func:`encode_params` takes them,
    or a query string."""
    rest, hash_mark, fragment = url.partition("#")
    path, _, query = rest.partition("?")
    added = encode_params(params)
    groups: dict[str, list[str]] = {}
    for pair in query.split("&"):
        if pair:
            groups.setdefault(_key(pair), []).append(pair)
    replaced: dict[str, list[str]] = {}
    for pair in added.split("&"):
        if pair:
            replaced.setdefault(_key(pair), []).append(pair)
    groups.update(replaced)
    merged = "&".join(pair for pairs in groups.values() for pair in pairs)
    return path + ("?" + merged if merged else "") + hash_mark + fragment


def _key(pair: str) -> str:
    return unquote_plus(pair.partition("=")[0])


def encode_params(params: Any) -> str:
    """``params`` (a mapping or ``(key, value)`` pairs; a list or tuple
    value repeats its key) as a form-encoded query string. As in httpx,
    None is sent as an empty value and True/False as ``true``/``false``."""
    if isinstance(params, (str, bytes)):
        text = params.decode("ascii") if isinstance(params, bytes) else params
        params = parse_qsl(text.lstrip("?"), keep_blank_values=True)
    items = params.items() if hasattr(params, "items") else params
    parts = []
    for key, value in items:
        if isinstance(value, (list, tuple)):
            parts.extend([f"{_form(key)}={_form(item)}" for item in value])
        else:
            parts.append(f"{_form(key)}={_form(value)}")
    return "&".join(parts)


def _form(value: Any) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    return quote_plus(value if isinstance(value, (str, bytes)) else str(value))


def is_absolute(url: str) -> bool:
    """Whether ``url`` starts with a scheme (``http://...``), rather than
    being relative to a base URL."""
    return _ABSOLUTE.match(url) is not None
