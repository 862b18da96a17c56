"""Opening the client's connections: TCP, then TLS for ``https``.

A :class:`Connector` turns a pool key ``(scheme, host, port)`` into a
connected socket and every way that can fail into a
:class:`~corofw.http.client_errors.ConnectError` naming the URL: the name
did not resolve (DNSError), nothing listens (ConnectionRefused), the TLS
handshake failed (TLSError).
"""

from __future__ import annotations

import errno
import socket
import ssl

from ..kernel.traps import Coro
from ..net import Socket, open_connection
from .client_errors import ConnectError, ConnectionRefused, DNSError, TLSError

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
    context, verifying certificates unless ``verify`` is False)."""

    __slots__ = ("ssl_context", "verify")

    def __init__(self, ssl_context: ssl.SSLContext | None = None, verify: bool = True) -> None:
        self.ssl_context = ssl_context
        self.verify = verify

    def tls_context(self) -> ssl.SSLContext:
        """The context for a TLS connection."""
        return self.ssl_context or default_context(self.verify)

    def __call__(self, key: tuple[str, str, int], url: str) -> Coro[Socket]:
        """A connection to ``key``; a ConnectError naming ``url`` if it
        cannot be opened."""
        scheme, host, port = key
        context = self.tls_context() if scheme == "https" else None
        try:
            return (yield from open_connection(host, port, ssl=context))
        except OSError as exc:  # ssl.SSLError and socket.gaierror included
            raise connect_error(exc, host, port, url) from None


def connect_error(exc: OSError, host: str, port: int, url: str) -> ConnectError:
    """The client error for a failure to connect to ``host:port``."""
    if isinstance(exc, socket.gaierror):
        return DNSError(f"cannot resolve {host!r}: {exc.strerror}", url)
    if isinstance(exc, ssl.SSLError):
        return TLSError(f"TLS handshake with {host}:{port} failed: {exc}", url)
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return ConnectionRefused(f"connection to {host}:{port} refused", url)
    return ConnectError(f"cannot connect to {host}:{port}: {exc}", url)
