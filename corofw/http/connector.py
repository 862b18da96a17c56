"""Opening the client's connections: TCP, then TLS for ``https``, through
a proxy's tunnel when one is configured.

A :class:`Connector` turns a pool key ``(scheme, host, port)`` into a
connected socket and every way that can fail into a
:class:`~corofw.http.client_errors.ConnectError` naming the URL: the name
did not resolve (DNSError), nothing listens (ConnectionRefused), the TLS
handshake failed (TLSError), the proxy would not open the tunnel
(ProxyError).

An https call through a proxy connects to the proxy, asks it for a tunnel
(``CONNECT host:port``), and on a 2xx answer does the TLS handshake with
the server through it, checking the server's certificate as for a direct
connection. A plain http call through a proxy needs no tunnel: its pool
key is the proxy's own (see :mod:`corofw.http.prepare`).
"""

from __future__ import annotations

import errno
import socket
import ssl

from ..kernel.costs import label_fd
from ..kernel.traps import Coro
from ..net import Socket, open_connection, wrap_client
from .client_errors import ConnectError, ConnectionRefused, DNSError, ProxyError, TLSError
from .parser import ProtocolError, ResponseParser
from .proxies import Proxies, Proxy

RECV_SIZE = 65536

_contexts: dict[bool, ssl.SSLContext] = {}


def default_context(verify: bool = True) -> ssl.SSLContext:
    """The shared TLS context: the system's trust store and host name
    checks, or (``verify=False``) no verification at all."""
    context = _contexts.get(verify)
    if context is None:
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _contexts[verify] = context
    return context


class Connector:
    """Opens connections with ``ssl_context`` for https (None: the default
    context, verifying certificates unless ``verify`` is False), through
    ``proxies`` where they say so."""

    __slots__ = ("ssl_context", "verify", "proxies")

    def __init__(self, ssl_context: ssl.SSLContext | None = None, verify: bool = True,
                 proxies: Proxies | None = None) -> None:
        self.ssl_context = ssl_context
        self.verify = verify
        self.proxies = proxies

    def tls_context(self) -> ssl.SSLContext:
        """The context for a TLS connection."""
        return self.ssl_context or default_context(self.verify)

    def __call__(self, key: tuple[str, str, int], url: str,
                 tunnel: bool = False) -> Coro[Socket]:
        """A connection to ``key``; a ConnectError naming ``url`` if it
        cannot be opened. ``tunnel``: a plain connection through a proxy
        goes through a CONNECT tunnel too (a WebSocket's does)."""
        scheme, host, port = key
        context = self.tls_context() if scheme == "https" else None
        if (context is not None or tunnel) and self.proxies is not None:
            proxy = self.proxies.route(scheme, host, port)
            if proxy is not None:
                sock = yield from self._through(proxy, host, port, context, url)
                label_fd(sock.fd, f"upstream {host}:{port}")
                return sock
        try:
            return (yield from open_connection(host, port, ssl=context,
                                               label=f"upstream {host}:{port}"))
        except OSError as exc:  # ssl.SSLError and socket.gaierror included
            error = connect_error(exc, host, port, url)
            proxies = self.proxies
            if proxies is not None and proxies.http is not None and key == proxies.http.key:
                error = type(error)(f"proxy {proxies.http.url}: {error.message}", url)
            raise error from None

    def _through(self, proxy: Proxy, host: str, port: int, context: ssl.SSLContext | None,
                 url: str) -> Coro[Socket]:
        """A connection to ``host:port`` through ``proxy``'s tunnel, with
        TLS over it when there is a ``context``."""
        _, proxy_host, proxy_port = proxy.key
        try:
            sock = yield from open_connection(proxy_host, proxy_port,
                                              label=f"upstream {host}:{port}")
        except OSError as exc:
            error = connect_error(exc, proxy_host, proxy_port, url)
            raise type(error)(f"proxy {proxy.url}: {error.message}", url) from None
        try:
            yield from open_tunnel(sock, host, port, proxy, url)
        except BaseException:
            sock.close()
            raise
        if context is None:
            return sock
        try:
            return (yield from wrap_client(sock, context, host))  # closes sock if it fails
        except OSError as exc:
            raise connect_error(exc, host, port, url) from None


def open_tunnel(sock: Socket, host: str, port: int, proxy: Proxy, url: str) -> Coro[None]:
    """Ask ``proxy`` (connected on ``sock``) for a tunnel to
    ``host:port``; return once it answered 2xx, else raise ProxyError."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = f"CONNECT {authority} HTTP/1.1\r\nhost: {authority}\r\n"
    if proxy.authorization:
        request += f"proxy-authorization: {proxy.authorization}\r\n"
    try:
        yield from sock.send_all((request + "\r\n").encode("latin-1"))
    except OSError as exc:
        raise ProxyError(f"proxy {proxy.url}: sending CONNECT failed: {exc}", url) from None
    parser = ResponseParser()
    parser.start("HEAD")  # a 2xx answer to CONNECT has no body, as one to HEAD
    try:
        while (head := parser.next_head()) is None:
            try:
                data = yield from sock.recv(RECV_SIZE)
            except OSError as exc:
                raise ProxyError(f"proxy {proxy.url}: reading its answer to CONNECT failed: "
                                 f"{exc}", url) from None
            if data:
                parser.feed(data)
            else:
                parser.feed_eof()
    except ProtocolError as exc:
        raise ProxyError(f"proxy {proxy.url}: its answer to CONNECT {authority} is not valid "
                         f"HTTP ({exc.message})", url) from None
    if not 200 <= head.status < 300:
        raise ProxyError(f"proxy {proxy.url} answered {head.status} {head.reason} to CONNECT "
                         f"{authority}", url, head.status)
    if parser.buffered:
        raise ProxyError(f"proxy {proxy.url} sent data before the TLS handshake", url)


def connect_error(exc: OSError, host: str, port: int, url: str) -> ConnectError:
    """The client error for a failure to connect to ``host:port``."""
    if isinstance(exc, socket.gaierror):
        return DNSError(f"cannot resolve {host!r}: {exc.strerror}", url)
    if isinstance(exc, ssl.SSLError):
        return TLSError(f"TLS handshake with {host}:{port} failed: {exc}", url)
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return ConnectionRefused(f"connection to {host}:{port} refused", url)
    return ConnectError(f"cannot connect to {host}:{port}: {exc}", url)
