"""Non-blocking sockets and TLS as kernel coroutines."""

from .connect import open_connection
from .sockets import Socket, is_numeric_host, listen, resolve
from .tls import TLSSocket, wrap_client, wrap_server

__all__ = ["Socket", "TLSSocket", "is_numeric_host", "listen", "open_connection", "resolve",
           "wrap_client", "wrap_server"]
