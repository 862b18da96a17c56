"""Which calls go through a proxy, and which proxy.

``Client(proxy="http://user:pass@proxy:3128")`` sends every call through
that proxy. ``Client(trust_env=True)`` takes them from the environment, as
curl does: ``HTTP_PROXY`` for http URLs, ``HTTPS_PROXY`` for https ones,
``ALL_PROXY`` for both when the other is unset (the lower-case names win
over the upper-case ones), and ``NO_PROXY`` for the hosts reached
directly. Neither is the default (as in aiohttp; httpx reads the
environment unless told not to): a service's calls to its backends do not
change route because of the environment it runs in unless it asks.
``HTTP_PROXY`` is ignored when ``REQUEST_METHOD`` is set, since under CGI
a request's ``Proxy`` header arrives as that variable ("httpoxy").

A plain http request goes to the proxy with the absolute URL as its
target; an https one goes through a ``CONNECT`` tunnel to the server, then
TLS with the server itself (see :mod:`corofw.http.connector`). Credentials
in the proxy's URL go as ``Proxy-Authorization`` (Basic). The proxy itself
is reached over plain TCP: only ``http://`` proxy URLs are accepted (a URL
without a scheme means ``http://``).

``NO_PROXY`` is a comma-separated list of host names (``example.com`` and
``.example.com`` both cover the domain and its subdomains), IP addresses,
CIDR blocks (``10.0.0.0/8``), each optionally with ``:port``; ``*`` means
no proxy at all.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from .client_errors import InvalidURL
from .urls import split_url


class Proxy(NamedTuple):
    """A proxy: its pool key ``("http", host, port)``, the
    ``Proxy-Authorization`` to send (None: none) and its URL as shown
    (password masked)."""

    key: tuple[str, str, int]
    authorization: str | None
    url: str


def parse_proxy(url: str) -> Proxy:
    """The :class:`Proxy` at ``url``; :class:`InvalidURL` unless it is an
    ``http://`` URL."""
    if "://" not in url:
        url = "http://" + url
    origin, _ = split_url(url, {})
    if origin.scheme != "http":
        raise InvalidURL("only http:// proxies are supported", origin.shown)
    return Proxy((origin.scheme, origin.host, origin.port), origin.authorization, origin.shown)


class _Exception(NamedTuple):
    """One NO_PROXY entry: a domain (``network`` None) or an IP network,
    and a port (0: any)."""

    domain: str
    network: Any
    port: int


class Proxies:
    """The proxies of one client: ``proxy`` for every call, else (with
    ``trust_env``) those of ``environ`` (default ``os.environ``)."""

    def __init__(self, proxy: str | None = None, trust_env: bool = False,
                 environ: Mapping[str, str] | None = None) -> None:
        self.http: Proxy | None = None
        self.https: Proxy | None = None
        self.no_proxy: list[_Exception] = []
        self.bypass_all = False
        if proxy:
            self.http = self.https = parse_proxy(proxy)
        elif trust_env:
            self._from_environment(os.environ if environ is None else environ)

    def __repr__(self) -> str:
        shown = {"http": self.http and self.http.url, "https": self.https and self.https.url}
        return f"<Proxies {shown}>"

    def __bool__(self) -> bool:
        return self.http is not None or self.https is not None

    def route(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for a call to ``scheme://host:port`` (None: direct)."""
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or self.bypass_all:
            return None
        for entry in self.no_proxy:
            if entry.port and entry.port != port:
                continue
            if entry.network is not None:
                if _in_network(host, entry.network):
                    return None
            elif host == entry.domain or host.endswith("." + entry.domain):
                return None
        return proxy

    def _from_environment(self, environ: Mapping[str, str]) -> None:
        def variable(name: str) -> str:
            lower = environ.get(name.lower())
            if lower is not None:
                return lower.strip()
            if name == "HTTP_PROXY" and "REQUEST_METHOD" in environ:
                return ""  # httpoxy: under CGI this is the request's Proxy header
            return environ.get(name, "").strip()

        every = variable("ALL_PROXY")
        http = variable("HTTP_PROXY") or every
        https = variable("HTTPS_PROXY") or every
        self.http = parse_proxy(http) if http else None
        self.https = parse_proxy(https) if https else None
        for item in variable("NO_PROXY").split(","):
            item = item.strip().lower()
            if item == "*":
                self.bypass_all = True
            elif item:
                self.no_proxy.append(_parse_exception(item))


def _parse_exception(item: str) -> _Exception:
    port = 0
    if item.startswith("["):
        address, _, rest = item[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        item = address
    elif item.count(":") == 1:
        item, _, port_text = item.partition(":")
        port = int(port_text) if port_text.isdigit() else 0
    try:
        return _Exception("", ipaddress.ip_network(item, strict=False), port)
    except ValueError:
        return _Exception(item.lstrip("."), None, port)


def _in_network(host: str, network: Any) -> bool:
    try:
        return ipaddress.ip_address(host) in network
    except ValueError:
        return False
