"""Opening an outbound connection: resolve, connect, and TLS when asked.

This sits above both :mod:`corofw.net.sockets` and :mod:`corofw.net.tls`
(neither imports the other's way back), so a plain connection and a TLS one
come from the same call.
"""

from __future__ import annotations

import socket
from typing import Any

from ..kernel.costs import label_fd
from ..kernel.traps import Coro
from .sockets import Socket, nodelay, resolve
from .tls import wrap_client


def open_connection(host: str, port: int, ssl: Any = None,
                    server_hostname: str | None = None, label: str | None = None
                    ) -> Coro[Socket]:
    """Connect to ``host:port`` (trying each resolved address in turn) and
    return a :class:`~corofw.net.sockets.Socket` with TCP_NODELAY set; with
    ``ssl`` (an ``ssl.SSLContext``) perform the TLS handshake too and return
    a :class:`~corofw.net.tls.TLSSocket`. Raises the last address's
    ``OSError`` when none of them accepts. ``label`` names its waits in
    request costs (:func:`~corofw.kernel.costs.label_fd`), from the connect on."""
    infos = yield from resolve(host, port)
    error: OSError | None = None
    for family, type_, proto, _, address in infos:
        sock = Socket(socket.socket(family, type_, proto))
        if label is not None:
            label_fd(sock.fd, label)
        try:
            yield from sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        nodelay(sock.sock)
        if ssl is None:
            return sock
        return (yield from wrap_client(sock, ssl, server_hostname or host))
    raise error or OSError(f"no address found for {host!r}")
