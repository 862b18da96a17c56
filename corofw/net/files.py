"""Sending a file's bytes on a non-blocking socket with ``os.sendfile``.

The kernel copies from the page cache to the socket with no trip through
Python. On a non-blocking socket each call sends what the socket buffer
takes; when it is full the coroutine yields a write-wait, so a slow client
parks its task and one large download never blocks the loop. A client
that keeps reading fast gets the loop back for others every few MiB.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable

from ..kernel.traps import RESCHEDULE, Coro, write_wait
from .sockets import Socket

_MAX_CALL = 1 << 30  # Linux sends at most 0x7ffff000 bytes per call anyway
_FAIR_SHARE = 4 << 20  # bytes sent without waiting before letting other tasks run
_FALLBACK_PIECE = 1 << 16
_NO_SENDFILE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSOCK,
                          errno.EAFNOSUPPORT})
_MSG_MORE = getattr(socket, "MSG_MORE", 0)


def sendfile(sock: Socket, file: int, offset: int, count: int, head: bytes = b"",
             progress: Callable[[int], None] | None = None) -> Coro[int]:
    """Send ``head`` (a response head, say), then ``count`` bytes of the
    open file descriptor ``file`` from ``offset``; return the file bytes
    sent (``count``). The file's own position is not used or moved.

    ``progress(sent)`` is called after every send that moved data (the
    caller can restart a send timeout on it). ``head`` is sent with
    ``MSG_MORE`` so that it leaves in the same packet as the file's first
    bytes. Where ``os.sendfile`` cannot be used on this socket or file
    (``EINVAL``, ``ENOSYS``...), the bytes are read and sent in pieces
    instead. ``OSError(EIO)`` if the file ends before ``count`` bytes (it
    shrank after the caller measured it)."""
    if head:
        yield from _send_head(sock, head, bool(count), progress)
    out = sock.fd
    sent = 0
    unyielded = 0
    while sent < count:
        try:
            done = os.sendfile(out, file, offset + sent, min(count - sent, _MAX_CALL))
        except BlockingIOError:
            done = -1
        except OSError as exc:
            if exc.errno in _NO_SENDFILE and sent == 0:
                return (yield from _copy(sock, file, offset, count, progress))
            raise
        if done < 0:
            unyielded = 0
            yield write_wait(out)
            continue
        if done == 0:
            raise OSError(errno.EIO, f"the file ended {count - sent} bytes early")
        sent += done
        if progress is not None:
            progress(sent)
        unyielded += done
        if unyielded >= _FAIR_SHARE and sent < count:
            unyielded = 0
            yield RESCHEDULE
    return sent


def _send_head(sock: Socket, head: bytes, more: bool,
               progress: Callable[[int], None] | None) -> Coro[None]:
    send = sock.sock.send
    flags = _MSG_MORE if more else 0
    sent = 0
    with memoryview(head) as view:
        while sent < len(head):
            try:
                sent += send(view[sent:], flags)
            except BlockingIOError:
                yield write_wait(sock.fd)
                continue
            if progress is not None:
                progress(0)


def _copy(sock: Socket, file: int, offset: int, count: int,
          progress: Callable[[int], None] | None) -> Coro[int]:
    """The fallback: ``pread`` a piece, send it all, repeat."""
    sent = 0
    while sent < count:
        piece = os.pread(file, min(count - sent, _FALLBACK_PIECE), offset + sent)
        if not piece:
            raise OSError(errno.EIO, f"the file ended {count - sent} bytes early")
        yield from sock.send_all(piece)
        sent += len(piece)
        if progress is not None:
            progress(sent)
    return sent
