"""Turning a client call's arguments into the request's bytes, sans-I/O.

The URL is split and encoded by :mod:`corofw.http.urls`, the body made by
:mod:`corofw.http.request_body`; this module puts the request line, the
headers and the body together. The client's default headers are encoded
once; a call with nothing but a method and a URL (the common case) is
built once and then taken from a dict.

Headers: the call's replace the client's of the same name (names compare
without case). The framing headers (Content-Length, Transfer-Encoding) are
always the client's own, so a request can never disagree with its body.
``user:pass@`` in the URL becomes a Basic ``Authorization`` header unless
the call sends its own. A cookie jar adds the cookies it holds for the URL
unless the call sends its own ``Cookie`` header. Through a proxy, a plain
``http`` request goes to the proxy with its absolute URL as the target
(and ``Proxy-Authorization`` when the proxy URL has credentials); an
``https`` one goes through a tunnel (see :mod:`corofw.http.connector`) and
is built as for a direct connection.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from .client_errors import ClientError, InvalidURL
from .headers import Headers
from .request_body import NO_BODY, Body, encode_body
from .urls import (
    CACHE_SIZE,
    DEFAULT_PORTS,
    Origin,
    encode_host,
    encode_params,
    is_absolute,
    quote_target,
    remove_dot_segments,
    split_url,
    with_params,
)

__all__ = ["DEFAULT_PORTS", "Prepared", "RequestBuilder", "encode_headers", "encode_host",
           "encode_params", "merge_headers", "quote_target", "remove_dot_segments",
           "split_url"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FRAMING = frozenset({"content-length", "transfer-encoding"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


class Prepared(NamedTuple):
    """A request ready to go: the URL to show (any password masked), the
    pool key ``(scheme, host, port)`` (the proxy's, for a plain request
    through a proxy), the request's bytes (the head, and the body unless it
    is streamed), the streamed body's pieces (None: no stream), the URL's
    origin, the URL itself (credentials included, to resolve a redirect's
    Location against) and its path (encoded, for cookies)."""

    url: str
    key: tuple[str, str, int]
    payload: bytes
    stream: Iterator[bytes] | None
    origin: Origin
    raw_url: str
    path: str


class RequestBuilder:
    """A client's share of every request: its default headers (given once,
    encoded once), its proxies (an object whose ``route(scheme, host,
    port)`` gives the proxy for an origin, or None), the origins it has
    parsed, and the requests it has prepared for plain calls."""

    def __init__(self, headers: Any = None, user_agent: str = "corofw",
                 proxies: Any = None) -> None:
        default = [("user-agent", user_agent), ("accept", "*/*")]
        self._base_pairs = merge_headers(default, headers)
        self._base_headers = encode_headers(self._base_pairs)
        self._base_names = frozenset(name.lower() for name, _ in self._base_pairs)
        self.proxies = proxies
        self._origins: dict[str, Origin] = {}
        self.prepared: dict[tuple[str, str, str], Prepared] = {}
        """The requests of plain calls (a method and a URL, nothing else)
        by ``(method, base_url, url)``: a caller may look one up first."""

    def build(self, method: str, url: str, base_url: str = "", params: Any = None,
              headers: Any = None, content: Any = None, data: Any = None,
              json: Any = None, files: Any = None) -> Prepared:
        """The request for one call: ``url`` (relative ones are joined to
        ``base_url``), ``params`` added to its query, ``headers`` over the
        client's, and a body from ``json``, ``data``, ``files`` or
        ``content`` (see :func:`~corofw.http.request_body.encode_body`). A
        :class:`ClientError` (an :class:`InvalidURL` for the URL) when it
        cannot be sent."""
        if params is headers is content is data is json is files is None:
            cache_key = (method, base_url, url)
            prepared = self.prepared.get(cache_key)
            if prepared is None:
                prepared = self.prepare(method, url, base_url, None, None, NO_BODY)
                if len(self.prepared) >= CACHE_SIZE:
                    self.prepared.clear()
                self.prepared[cache_key] = prepared
            return prepared
        return self.prepare(method, url, base_url, params, headers,
                            encode_body(content, data, json, files))

    def origin(self, url: str) -> Origin:
        """The origin of the absolute ``url``."""
        return split_url(url, self._origins)[0]

    def prepare(self, method: str, url: str, base_url: str, params: Any, headers: Any,
                body: Body, cookies: Any = None, tunnel: bool = False) -> Prepared:
        """The request for ``body`` (already encoded); ``cookies`` is a
        cookie jar to take the URL's cookies from (None: none). With
        ``tunnel`` a plain http request is built for a tunnel through the
        proxy (as a WebSocket's), not in absolute form."""
        if is_absolute(url):
            full_url = url
        elif base_url:
            full_url = base_url + url if url[:1] == "/" else base_url + "/" + url
        else:
            raise InvalidURL("a relative URL needs a client with a base_url", url)
        origin, target = split_url(full_url, self._origins)
        scheme, host, port, authority, authorization, text, shown = origin
        raw_url = full_url
        if shown is not text:
            full_url = shown + full_url[len(text):]
        if params:
            target = with_params(target, params)
            full_url = with_params(full_url, params)
            raw_url = with_params(raw_url, params)
        extra = []
        path = target.partition("?")[0]
        if cookies is not None:
            cookie = cookies.header_for(scheme, host, path)
            if cookie:
                extra.append(("cookie", cookie))
        key = (scheme, host, port)
        line_target = target
        proxy = self.proxies.route(scheme, host, port) if self.proxies is not None else None
        if proxy is not None and scheme == "http" and not tunnel:
            key = proxy.key
            line_target = f"http://{authority}{target}"
            if proxy.authorization:
                extra.append(("proxy-authorization", proxy.authorization))
        if method not in _METHODS and not _TOKEN.fullmatch(method):
            raise ClientError(f"invalid method {method!r}", full_url)
        payload = self._serialize(method, line_target, authority, authorization, headers,
                                  body, extra)
        return Prepared(full_url, key, payload, body.stream, origin, raw_url, path)

    def _serialize(self, method: str, target: str, authority: str, authorization: str | None,
                   headers: Any, body: Body, extra: list[tuple[str, str]]) -> bytes:
        if headers or "host" in self._base_names:
            pairs = merge_headers(self._base_pairs, headers)
            names = frozenset(name.lower() for name, _ in pairs)
            host = [value for name, value in pairs if name.lower() == "host"]
            if host:
                authority = host[-1]
                pairs = [p for p in pairs if p[0].lower() != "host"]
                if any(c in authority for c in "\r\n\0"):
                    raise ClientError("invalid Host header", target)
            encoded = encode_headers(pairs)
        else:
            names = self._base_names
            encoded = self._base_headers
        head = f"{method} {target} HTTP/1.1\r\nhost: {authority}\r\n"
        if authorization and "authorization" not in names:
            head += f"authorization: {authorization}\r\n"
        try:
            lines = [head.encode("latin-1"), encoded]
        except UnicodeEncodeError:
            raise ClientError("the Host header can only carry latin-1 text", target) from None
        for name, value in extra:
            if name not in names:
                lines.append(encode_headers([(name, value)]))
        data, stream, content_type = body
        if content_type and "content-type" not in names:
            lines.append(f"content-type: {content_type}\r\n".encode())
        if stream is not None:
            lines.append(b"transfer-encoding: chunked\r\n")
        elif data or method in _BODY_METHODS:
            lines.append(b"content-length: %d\r\n" % len(data))
        lines.append(b"\r\n")
        lines.append(data)
        return b"".join(lines)


def merge_headers(base: list[tuple[str, str]], extra: Any) -> list[tuple[str, str]]:
    """``base`` with every header named in ``extra`` replaced by ``extra``'s
    values (names compare without case). The body's framing headers are the
    client's to write: a caller's Content-Length or Transfer-Encoding is
    dropped, so the request can never disagree with its own body."""
    if not extra:
        return list(base)
    added = [(name, value) for name, value in Headers(extra).items()
             if name.lower() not in _FRAMING]
    names = {name.lower() for name, _ in added}
    return [pair for pair in base if pair[0].lower() not in names] + added


def encode_headers(pairs: Any) -> bytes:
    """Header lines as bytes; a name or value that could break the request
    (CR, LF, NUL, a colon in the name, text beyond latin-1) is refused."""
    out = []
    for name, value in pairs:
        if any(c in name + value for c in "\r\n\0") or not name or ":" in name:
            raise ClientError(f"invalid header {name!r}")
        try:
            out.append(f"{name}: {value}\r\n".encode("latin-1"))
        except UnicodeEncodeError:
            raise ClientError(f"invalid header {name!r}: only latin-1 text can be sent") from None
    return b"".join(out)
