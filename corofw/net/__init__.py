"""Non-blocking sockets and TLS as kernel coroutines."""

from .connect import open_connection
from .listeners import ListenerError, inherited_listener, listen_unix, systemd_listen_fds
from .sockets import Socket, is_numeric_host, listen, resolve
from .tls import TLSSocket, wrap_client, wrap_server

__all__ = ["ListenerError", "Socket", "TLSSocket", "inherited_listener", "is_numeric_host",
           "listen", "listen_unix", "open_connection", "resolve", "systemd_listen_fds",
           "wrap_client", "wrap_server"]
