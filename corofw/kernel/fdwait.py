"""Waiting for fds: which task waits on which fd, and epoll's interest list.

The kernel keeps one :class:`FdWaiters` per fd it has seen. An fd stays
registered with epoll between waits; its mask only changes when a task
waits for a direction not yet in it, or when epoll reports a direction
nobody waits for any more. Closing a socket through :func:`forget_fd`
drops the registration.

A socket closed without it leaves the kernel believing in a registration
that epoll dropped on close, and the OS hands the number to the next
socket. ``owner`` (a weak reference to the object last waited on) lets the
kernel notice: when another object turns up with the same number, the
registration is rebuilt. A bare number names no object, so fds waited on
by number must be closed through ``forget_fd``.

Epoll drops a registration only when the file itself closes: if a copy of
the fd (a ``dup``, a child process) keeps it open, the entry lives on and
reports the old file's events under the number, and no call can remove
it. So when the kernel rebinds a number whose registration it could not
remove, or epoll reports a direction the kernel never asked for, it
renews the reactor: a fresh epoll with only the live registrations
(a cost in proportion to the fds registered, on this rare path only).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from .context import current_kernel
from .reactor import READABLE, WRITABLE
from .task import BusyResourceError, ClosedResourceError, Task
from .traps import PARKED, Trap


class FdWaiters:
    """What the kernel knows of one fd: the task waiting to read it, the
    task waiting to write it (the same task in both for a
    ``readwrite_wait``), the ``mask`` registered with epoll (0: not
    registered) and ``owner``, a weak reference to the object it was last
    waited on through (None for a bare number)."""

    __slots__ = ("reader", "writer", "mask", "owner")

    def __init__(self, owner: Callable[[], Any] | None) -> None:
        self.reader: Task | None = None
        self.writer: Task | None = None
        self.mask = 0
        self.owner = owner


class FdWaits:
    """The fd traps of :class:`~corofw.kernel.loop.Kernel` and their undo
    (a mixin: it uses the kernel's ``reactor``, ``_fds``, ``_io_waiters``
    and ``reschedule_error``)."""

    reactor: Any
    renew_reactor: bool
    _fds: dict[int, FdWaiters]
    _wake_fd: int
    _io_waiters: int
    fd_labels: dict[int, str]
    reschedule_error: Callable[[Task, BaseException], None]

    def _waiters_of(self, fd: int, owner: Any) -> FdWaiters:
        """The record of ``fd``, made or rebuilt if ``owner`` (the object
        waited on through, or None) is not the one last seen."""
        waiters = self._fds.get(fd)
        if waiters is None:
            waiters = self._fds[fd] = FdWaiters(None if owner is None else _weak(owner))
        elif _owner(waiters) is not owner:
            self._rebind(fd, waiters, owner)
        return waiters

    def _trap_read(self, task: Task, trap: Trap) -> Any:
        """Park ``task`` until the fd of ``trap`` is readable (EPOLLIN). At
        most one task reads an fd at a time; the mask only grows when it
        must."""
        fd = trap[1]
        if type(fd) is int:
            owner = None
        else:
            owner = fd
            fd = fd.fileno()
            trap = (trap[0], fd)
        waiters = self._fds.get(fd)
        if waiters is None or (waiters.owner and waiters.owner()) is not owner:
            waiters = self._waiters_of(fd, owner)
        if waiters.reader is not None:
            raise BusyResourceError(f"another task is already waiting to read fd {fd}")
        mask = waiters.mask
        if not mask & READABLE:
            self._arm(fd, waiters, mask | READABLE)
        waiters.reader = task
        self._io_waiters += 1
        task._trap = trap
        return PARKED

    def _trap_write(self, task: Task, trap: Trap) -> Any:
        """Park ``task`` until the fd of ``trap`` is writable (EPOLLOUT); as
        :meth:`_trap_read` otherwise."""
        fd = trap[1]
        if type(fd) is int:
            owner = None
        else:
            owner = fd
            fd = fd.fileno()
            trap = (trap[0], fd)
        waiters = self._fds.get(fd)
        if waiters is None or (waiters.owner and waiters.owner()) is not owner:
            waiters = self._waiters_of(fd, owner)
        if waiters.writer is not None:
            raise BusyResourceError(f"another task is already waiting to write fd {fd}")
        mask = waiters.mask
        if not mask & WRITABLE:
            self._arm(fd, waiters, mask | WRITABLE)
        waiters.writer = task
        self._io_waiters += 1
        task._trap = trap
        return PARKED

    def _trap_fd_either(self, task: Task, trap: Trap) -> Any:
        """Park ``task`` as both reader and writer of an fd until it is
        readable or writable; whichever event comes first frees both."""
        fd = trap[1]
        owner = None
        if type(fd) is not int:
            owner = fd
            fd = fd.fileno()
            trap = (trap[0], fd)
        waiters = self._waiters_of(fd, owner)
        if waiters.reader is not None or waiters.writer is not None:
            raise BusyResourceError(f"another task is already waiting on fd {fd}")
        both = READABLE | WRITABLE
        if waiters.mask & both != both:
            self._arm(fd, waiters, waiters.mask | both)
        waiters.reader = waiters.writer = task
        self._io_waiters += 2
        task._trap = trap
        return PARKED

    def _undo_fd(self, task: Task, trap: Trap) -> None:
        """Take ``task`` out of whichever slots of the fd it waits in."""
        waiters = self._fds.get(trap[1])
        if waiters is None:
            return
        if waiters.reader is task:
            waiters.reader = None
            self._io_waiters -= 1
        if waiters.writer is task:
            waiters.writer = None
            self._io_waiters -= 1

    def _rebind(self, fd: int, waiters: FdWaiters, owner: Any) -> None:
        """``fd`` is waited on through another object than last time. The
        earlier one may have been closed without :func:`forget_fd` (epoll
        then dropped its registration, and the number was reused): so the
        kernel believes nothing of the fd's registration, registers it
        afresh, and a task still waiting on the closed object gets
        :class:`ClosedResourceError` instead of hanging."""
        if waiters.owner is not None and _is_closed(waiters.owner(), fd):
            self._close_waiters(fd, waiters)
        waiters.owner = None if owner is None else _weak(owner)
        if waiters.mask:
            try:
                self.reactor.unregister(fd)
            except (OSError, ValueError):
                self.renew_reactor = True  # gone with the file, or left behind by a copy
            waiters.mask = 0
            live = (READABLE if waiters.reader is not None else 0) \
                | (WRITABLE if waiters.writer is not None else 0)
            if live:
                self._arm(fd, waiters, live)

    def _arm(self, fd: int, waiters: FdWaiters, mask: int) -> None:
        """Register ``fd`` with epoll for ``mask``, or change its mask."""
        reactor = self.reactor
        try:
            if waiters.mask:
                reactor.modify(fd, mask)
            else:
                reactor.register(fd, mask)
        except FileNotFoundError:
            reactor.register(fd, mask)  # closed and reused behind our back
            self.renew_reactor = True
        except FileExistsError:
            reactor.modify(fd, mask)
        waiters.mask = mask

    def _disarm(self, fd: int, waiters: FdWaiters, direction: int) -> None:
        """Epoll reported ``direction`` and nobody waits for it: drop it
        from the mask (unregister the fd once nobody waits at all)."""
        mask = waiters.mask & ~direction
        if waiters.reader is None and waiters.writer is None:
            mask = 0
        try:
            if mask:
                self.reactor.modify(fd, mask)
            else:
                self.reactor.unregister(fd)
        except OSError:  # closed: its entry may live on with a copy of the file
            mask = 0
            self.renew_reactor = True
        waiters.mask = mask

    def _renew(self) -> Any:
        """Replace the reactor with a fresh one holding only the live
        registrations (stale entries of closed numbers go with the old
        one); tasks waiting on an fd that is no longer open get
        :class:`ClosedResourceError`. Returns the new reactor's ``poll``."""
        self.renew_reactor = False
        old = self.reactor
        new = old.renew()
        try:
            new.register(self._wake_fd, READABLE)
            for fd, waiters in list(self._fds.items()):
                if waiters.mask:
                    try:
                        new.register(fd, waiters.mask)
                    except OSError:
                        waiters.mask = 0
                        del self._fds[fd]
                        self._close_waiters(fd, waiters)
        except BaseException:
            new.close()
            raise
        self.reactor = new
        old.close()
        return new.poll

    def _forget_fd(self, fd: int) -> None:
        self.fd_labels.pop(fd, None)
        waiters = self._fds.pop(fd, None)
        if waiters is None:
            return
        if waiters.mask:
            try:
                self.reactor.unregister(fd)
            except (OSError, ValueError):
                pass
        self._close_waiters(fd, waiters)

    def _close_waiters(self, fd: int, waiters: FdWaiters) -> None:
        """Wake the tasks waiting on ``fd`` with ClosedResourceError."""
        reader, writer = waiters.reader, waiters.writer
        waiters.reader = waiters.writer = None
        self._io_waiters -= (reader is not None) + (writer is not None)
        if reader is writer:  # a readwrite_wait holds both slots
            writer = None
        for task in (reader, writer):
            if task is not None:
                task._trap = None
                self.reschedule_error(task, ClosedResourceError(f"fd {fd} was closed"))


def forget_fd(fd: Any) -> None:
    """Tell this thread's kernel that ``fd`` (a number, or an object with
    ``fileno()`` such as a socket) is about to be closed: drop its epoll
    registration and wake any task waiting on it with
    :class:`ClosedResourceError`. Safe to call with no kernel running.

    Call it before closing an fd that tasks wait on by number. For an fd
    waited on as an object, the kernel notices on its own when the number
    turns up again with another object, but a task waiting on the closed
    object is only woken then."""
    kernel = current_kernel()
    if kernel is not None:
        kernel._forget_fd(fd if type(fd) is int else fd.fileno())


def _owner(waiters: FdWaiters) -> Any:
    ref = waiters.owner
    return None if ref is None else ref()


def _weak(owner: Any) -> Callable[[], Any]:
    """A weak reference to the object an fd was waited on through; for an
    object that cannot have one, a reference that matches nothing, so each
    wait re-registers the fd (correct, if slower)."""
    try:
        return weakref.ref(owner)
    except TypeError:
        return _untracked


def _untracked() -> Any:
    return _untracked


def _is_closed(owner: Any, fd: int) -> bool:
    """True if ``owner`` is gone or no longer has ``fd`` as its fileno()."""
    if owner is None:
        return True
    fileno = getattr(owner, "fileno", None)
    if fileno is None:
        return False
    try:
        current: int = fileno()
    except (OSError, ValueError):
        return True
    return current != fd
