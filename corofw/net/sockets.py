"""Non-blocking sockets driven by the kernel.

Every call is optimistic: it tries the system call first and only when the
OS answers "would block" (``BlockingIOError``) does it ``yield`` a
read-wait or write-wait trap. The fd stays registered with epoll between
waits; :meth:`Socket.close` drops the registration before closing the fd.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from ..kernel.fdwait import forget_fd
from ..kernel.traps import RESCHEDULE, Coro, read_wait, run_in_thread, write_wait

#: reads and writes in a row that find the socket ready before the task
#: lets the other tasks run (a busy peer must not hold the loop)
FAIR_SHARE = 16

class Socket:
    """A non-blocking socket whose waits are coroutines.

    Use ``yield from`` with :meth:`recv`, :meth:`send_all`, :meth:`accept`
    and :meth:`connect`; :meth:`close` and :meth:`shutdown` are plain calls.
    """

    __slots__ = ("sock", "fd", "unyielded", "__weakref__")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.unyielded = 0  # reads and writes in a row that did not have to wait

    def __repr__(self) -> str:
        return f"<corofw Socket fd={self.fd}>"

    def fileno(self) -> int:
        """The fd (-1 once closed); lets a Socket be passed to
        ``read_wait``/``write_wait``."""
        return self.fd

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def recv(self, maxsize: int) -> Coro[bytes]:
        """Up to ``maxsize`` bytes; ``b""`` at end of stream. A task whose
        reads and writes on this socket never have to wait still lets the
        others run, every ``FAIR_SHARE`` calls."""
        while True:
            try:
                data: bytes = self.sock.recv(maxsize)
                break
            except BlockingIOError:
                pass
            self.unyielded = 0
            yield read_wait(self.fd)  # outside the except block: no exception kept alive
        self.unyielded += 1
        if self.unyielded > FAIR_SHARE:
            self.unyielded = 0
            yield RESCHEDULE
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0) -> Coro[int]:
        """Read into ``buffer`` (up to ``nbytes``, or its size when 0) and
        return the number of bytes read; 0 at end of stream."""
        while True:
            try:
                return self.sock.recv_into(buffer, nbytes)
            except BlockingIOError:
                pass
            yield read_wait(self.fd)

    def send(self, data: Any) -> Coro[int]:
        """Send some of ``data``, waiting until at least one byte fits."""
        while True:
            try:
                return self.sock.send(data)
            except BlockingIOError:
                pass
            yield write_wait(self.fd)

    def send_all(self, data: Any) -> Coro[None]:
        """Send all of ``data``; large buffers are sliced with a memoryview,
        never copied. Waits for ``write_wait`` whenever the OS buffer is full,
        so a slow reader slows the writer down instead of growing memory."""
        sock_send = self.sock.send
        try:
            sent = sock_send(data)
        except BlockingIOError:
            sent = 0
        if type(data) is bytes and sent == len(data):
            self.unyielded += 1
            if self.unyielded > FAIR_SHARE:  # as in recv(): the other tasks get a turn
                self.unyielded = 0
                yield RESCHEDULE
            return
        view = memoryview(data).cast("B")
        total = view.nbytes  # len() of an array or a typed memoryview counts items
        try:
            while sent < total:
                try:
                    sent += sock_send(view[sent:])
                    continue
                except BlockingIOError:
                    pass
                self.unyielded = 0
                yield write_wait(self.fd)
        finally:
            view.release()

    def accept(self) -> Coro[tuple[Socket, Any]]:
        """The next connection, as a non-blocking :class:`Socket` with
        TCP_NODELAY set, and the peer's address."""
        while True:
            try:
                conn, address = self.sock.accept()
                return Socket(nodelay(conn)), address
            except BlockingIOError:
                pass
            yield read_wait(self.fd)

    def connect(self, address: Any) -> Coro[None]:
        """Connect without blocking: start the connect, wait until the socket
        is writable, then read the outcome from ``SO_ERROR``."""
        code = self.sock.connect_ex(address)
        if code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            yield write_wait(self.fd)
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, f"connect to {address!r} failed: {errno.errorcode.get(code, code)}"
                                f" ({_strerror(code)})")

    def shutdown(self, how: int = socket.SHUT_WR) -> None:
        """Shut down one or both directions; errors of a peer already gone
        are ignored."""
        try:
            self.sock.shutdown(how)
        except OSError:
            pass

    def close(self) -> None:
        """Drop the epoll registration, then close the fd. Idempotent."""
        if self.fd >= 0:
            forget_fd(self.fd)
            self.fd = -1
            self.sock.close()

    def __del__(self) -> None:
        # Dropped without close(): the fd is about to be closed by the garbage
        # collector, and a stale registration would hang the next socket to
        # get this fd number.
        fd = getattr(self, "fd", -1)
        if fd >= 0:
            try:
                forget_fd(fd)
            except Exception:
                pass

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self.fd < 0

    def getsockname(self) -> Any:
        """The local address, as ``socket.getsockname`` gives it."""
        return self.sock.getsockname()

    def getpeername(self) -> Any:
        """The remote address, as ``socket.getpeername`` gives it."""
        return self.sock.getpeername()

    def setsockopt(self, *args: Any) -> None:
        """``socket.setsockopt`` on the underlying socket."""
        self.sock.setsockopt(*args)


def _strerror(code: int) -> str:
    return os.strerror(code)


def nodelay(sock: socket.socket) -> socket.socket:
    """Turn off Nagle's algorithm on a TCP socket (a request or response
    written in one send leaves at once); returns ``sock``."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def is_numeric_host(host: str) -> bool:
    """True for an IPv4 or IPv6 literal, which needs no name resolution."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except (OSError, ValueError):
            pass
    return False


def listen(host: str, port: int = 0, backlog: int = 1024, reuse_port: bool = False) -> Socket:
    """A non-blocking listening :class:`Socket` bound to ``(host, port)``
    (port 0 picks a free one: read it back with ``getsockname()``).
    ``reuse_port`` sets SO_REUSEPORT so several processes share the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if not is_numeric_host(host):
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family = infos[0][0]
        host = str(infos[0][4][0])
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return Socket(sock)


def resolve(host: str, port: int) -> Coro[list[tuple[Any, ...]]]:
    """``getaddrinfo`` for a TCP connection, offloaded to a thread because it
    blocks; numeric addresses are answered at once, with no thread."""
    if is_numeric_host(host):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
    return (yield from run_in_thread(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM))
