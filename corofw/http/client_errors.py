"""The outbound client's errors: one type per way a call can fail, each
carrying the URL it failed on."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of every client error; ``url`` is the request's URL."""

    def __init__(self, message: str, url: str = "") -> None:
        super().__init__(f"{message} ({url})" if url else message)
        self.message = message
        self.url = url


class InvalidURL(ClientError):
    """The URL cannot be sent: an unsupported scheme, no host, a bad port,
    control characters, or text that cannot be encoded."""


class ConnectError(ClientError):
    """The connection could not be opened."""


class ConnectionRefused(ConnectError):
    """Nothing listens at the address (ECONNREFUSED)."""


class DNSError(ConnectError):
    """The host name could not be resolved."""


class TLSError(ConnectError):
    """The TLS handshake failed (e.g. the certificate did not verify)."""


class ProxyError(ConnectError):
    """The proxy refused or failed to open the tunnel (CONNECT) to the
    server; ``status`` is its answer's status (0 if it sent none)."""

    def __init__(self, message: str, url: str = "", status: int = 0) -> None:
        super().__init__(message, url)
        self.status = status


class ReadError(ClientError):
    """The connection failed while reading the response (e.g. reset)."""


class WriteError(ClientError):
    """The connection failed while sending the request."""


class RemoteProtocolError(ClientError):
    """The server answered with something that is not valid HTTP/1.1, or
    closed the connection in the middle of a response."""


class DecodingError(ClientError):
    """A compressed response body (gzip, deflate) is corrupt, or decodes to
    more than the client accepts."""


class TooManyRedirects(ClientError):
    """A call followed more redirects than ``max_redirects``; ``response``
    is the last redirect received (its body read)."""

    def __init__(self, message: str, url: str, response: Any) -> None:
        super().__init__(message, url)
        self.response = response


class StreamConsumed(ClientError):
    """The request's body was streamed from an iterator and cannot be sent
    again (to follow a 307/308 redirect)."""


class WebSocketError(ClientError):
    """Base of the errors of a client WebSocket."""


class WebSocketHandshakeError(WebSocketError):
    """The server did not open the WebSocket: it answered ``status`` (with
    ``headers``) instead of a valid 101."""

    def __init__(self, message: str, url: str, status: int, headers: Any = None) -> None:
        super().__init__(message, url)
        self.status = status
        self.headers = headers


class WebSocketClosed(WebSocketError):
    """The WebSocket is closed: ``code`` and ``reason`` are those of the
    close frame (1006 when the connection ended without one, 1002, 1007 or
    1009 when the peer broke the protocol)."""

    def __init__(self, code: int, reason: str, url: str) -> None:
        super().__init__(f"the WebSocket is closed ({code}{': ' + reason if reason else ''})",
                         url)
        self.code = code
        self.reason = reason


class ClientTimeout(ClientError, TimeoutError):
    """A phase of the call took longer than its timeout."""


class ConnectTimeout(ClientTimeout):
    """Opening the connection (including TLS) took too long."""


class ReadTimeout(ClientTimeout):
    """The server sent nothing for longer than the read timeout."""


class WriteTimeout(ClientTimeout):
    """The request could not be sent within the write timeout."""


class PoolTimeout(ClientTimeout):
    """No connection slot became free within the pool timeout."""


class TotalTimeout(ClientTimeout):
    """The whole call took longer than its total timeout."""


class HTTPStatusError(ClientError):
    """Raised by ``raise_for_status()`` for a 4xx or 5xx response."""

    def __init__(self, message: str, url: str, response: Any) -> None:
        super().__init__(message, url)
        self.response = response


TIMEOUTS = {"connect": ConnectTimeout, "read": ReadTimeout, "write": WriteTimeout,
            "pool": PoolTimeout, "total": TotalTimeout}
