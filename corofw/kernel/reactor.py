"""The I/O readiness reactor: ``select.epoll`` on Linux, ``selectors``
elsewhere.

Both expose the same four calls with epoll's vocabulary: masks made of
``READABLE`` and ``WRITABLE``; ``poll(timeout)`` returns ``(fd, mask)``
pairs, where an error or hang-up is reported as both directions so that
the waiting task retries its call and sees the error itself.

An epoll entry outlives the closing of its fd number while a copy of the
file is open; the kernel notices and renews an :class:`EpollReactor` (see
:mod:`corofw.kernel.fdwait`). A :class:`SelectorReactor` built on
``selectors.EpollSelector`` hides such events, so it cannot: use the epoll
reactor on Linux.
"""

from __future__ import annotations

import errno
import os
import select
import selectors

READABLE = 0x001  # EPOLLIN
WRITABLE = 0x004  # EPOLLOUT
_ERROR = 0x008 | 0x010  # EPOLLERR | EPOLLHUP


class EpollReactor:
    """Level-triggered epoll; ``poll`` is ``epoll.poll`` itself (no wrapper
    on the hot path)."""

    name = "epoll"

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self.register = self._epoll.register
        self.modify = self._epoll.modify
        self.unregister = self._epoll.unregister
        self.poll = self._epoll.poll

    def fileno(self) -> int:
        """The epoll instance's own fd."""
        return self._epoll.fileno()

    def renew(self) -> EpollReactor:
        """A fresh, empty reactor of the same kind (this one stays open)."""
        return EpollReactor()

    def close(self) -> None:
        """Close the epoll instance."""
        self._epoll.close()


class SelectorReactor:
    """Fallback on systems without epoll, built on :mod:`selectors`
    (``selector`` defaults to the platform's best one).

    Registering twice raises ``FileExistsError`` and changing an unknown fd
    ``FileNotFoundError``, as epoll does, so the kernel handles both alike.
    """

    name = "selectors"

    def __init__(self, selector: selectors.BaseSelector | None = None) -> None:
        self._selector = selector or selectors.DefaultSelector()

    def register(self, fd: int, mask: int) -> None:
        """Start watching ``fd`` for the directions in ``mask``."""
        try:
            self._selector.register(fd, self._events(mask))
        except KeyError:
            raise FileExistsError(f"fd {fd} is already registered") from None

    def modify(self, fd: int, mask: int) -> None:
        """Change the directions watched on a registered ``fd``."""
        try:
            self._selector.modify(fd, self._events(mask))
        except KeyError:
            raise FileNotFoundError(f"fd {fd} is not registered") from None

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd``."""
        try:
            self._selector.unregister(fd)
        except KeyError:
            raise FileNotFoundError(f"fd {fd} is not registered") from None

    def poll(self, timeout: float = -1) -> list[tuple[int, int]]:
        """Wait up to ``timeout`` seconds (forever if negative) and return
        the ready ``(fd, mask)`` pairs."""
        try:
            ready = self._selector.select(None if timeout < 0 else timeout)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            return self._drop_closed()
        out = []
        for key, events in ready:
            mask = 0
            if events & selectors.EVENT_READ:
                mask |= READABLE
            if events & selectors.EVENT_WRITE:
                mask |= WRITABLE
            out.append((key.fd, mask))
        return out

    def _drop_closed(self) -> list[tuple[int, int]]:
        """select() refuses a closed fd: stop watching every fd that is no
        longer open and report each as an error, so that its waiters retry
        and meet the error themselves."""
        closed = []
        for key in list(self._selector.get_map().values()):
            try:
                os.fstat(key.fd)
            except OSError:
                self._selector.unregister(key.fd)
                closed.append((key.fd, READABLE | WRITABLE | _ERROR))
        return closed

    def fileno(self) -> int:
        """-1: a selector has no fd of its own to expose."""
        return -1

    def renew(self) -> SelectorReactor:
        """A fresh, empty reactor on a new selector of the same kind."""
        return SelectorReactor(type(self._selector)())

    def close(self) -> None:
        """Close the underlying selector."""
        self._selector.close()

    @staticmethod
    def _events(mask: int) -> int:
        events = 0
        if mask & READABLE:
            events |= selectors.EVENT_READ
        if mask & WRITABLE:
            events |= selectors.EVENT_WRITE
        return events


def default_reactor() -> EpollReactor | SelectorReactor:
    """epoll where the platform has it, else the best ``selectors`` choice."""
    if hasattr(select, "epoll"):
        return EpollReactor()
    return SelectorReactor()


ERROR_MASK = _ERROR
