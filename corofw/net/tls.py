"""Non-blocking TLS on top of :class:`~corofw.net.sockets.Socket`.

``ssl.SSLSocket`` in non-blocking mode raises ``SSLWantReadError`` or
``SSLWantWriteError`` when the TLS engine needs the network; each becomes a
read-wait or write-wait trap, and the call is retried.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any, cast

from ..kernel.traps import Coro, T, read_wait, write_wait
from .sockets import Socket


class TLSSocket(Socket):
    """A :class:`Socket` speaking TLS; same coroutine API."""

    __slots__ = ()

    def _retry(self, call: Callable[..., T], *args: Any) -> Coro[T]:
        while True:
            try:
                return call(*args)
            except ssl.SSLWantReadError:
                trap = read_wait(self.fd)
            except ssl.SSLWantWriteError:
                trap = write_wait(self.fd)
            yield trap

    def handshake(self) -> Coro[None]:
        """Run the TLS handshake, waiting on the fd whenever the TLS engine
        needs the network."""
        yield from self._retry(cast(ssl.SSLSocket, self.sock).do_handshake)

    def recv(self, maxsize: int) -> Coro[bytes]:
        """Up to ``maxsize`` decrypted bytes; ``b""`` at end of stream (also
        when the peer closed without a TLS close_notify)."""
        try:
            return (yield from self._retry(self.sock.recv, maxsize))
        except ssl.SSLEOFError:
            return b""  # the peer closed without close_notify: treat as end of stream

    def recv_into(self, buffer: Any, nbytes: int = 0) -> Coro[int]:
        """Decrypt into ``buffer``; return the number of bytes, 0 at end of
        stream."""
        try:
            return (yield from self._retry(self.sock.recv_into, buffer, nbytes))
        except ssl.SSLEOFError:
            return 0

    def send(self, data: Any) -> Coro[int]:
        """Encrypt and send some of ``data``; return how much was taken."""
        return (yield from self._retry(self.sock.send, data))

    def send_all(self, data: Any) -> Coro[None]:
        """Send all of ``data``, in records of up to 64 KiB, waiting on
        ``write_wait`` whenever the socket buffer is full."""
        view = memoryview(data).cast("B")
        try:
            sent, total = 0, len(view)
            while sent < total:
                sent += yield from self._retry(self.sock.send, view[sent:sent + 65536])
        finally:
            view.release()

    def accept(self) -> Coro[Any]:
        """Not available: accept on the plain listener, then
        :func:`wrap_server` the connection."""
        raise TypeError("accept() on a TLS connection; accept on the listener, then wrap")
        yield  # pragma: no cover


def _wrap(sock: Socket, context: ssl.SSLContext, server_side: bool,
          server_hostname: str | None) -> Coro[TLSSocket]:
    raw: socket.socket = sock.sock
    try:
        tls_sock = context.wrap_socket(raw, server_side=server_side,
                                       server_hostname=server_hostname,
                                       do_handshake_on_connect=False)
    except BaseException:
        sock.close()  # the fd may be closed already: the kernel must forget it
        raise
    # wrap_socket detached ``raw``; the fd number and its epoll registration live on.
    wrapped = TLSSocket.__new__(TLSSocket)
    wrapped.sock = tls_sock
    wrapped.fd = tls_sock.fileno()
    wrapped.unyielded = 0
    sock.fd = -1
    try:
        yield from wrapped.handshake()
    except BaseException:
        wrapped.close()
        raise
    return wrapped


def wrap_client(sock: Socket, context: ssl.SSLContext, server_hostname: str) -> Coro[TLSSocket]:
    """Do a client-side TLS handshake over a connected socket."""
    return (yield from _wrap(sock, context, False, server_hostname))


def wrap_server(sock: Socket, context: ssl.SSLContext) -> Coro[TLSSocket]:
    """Do a server-side TLS handshake over an accepted socket."""
    return (yield from _wrap(sock, context, True, None))
