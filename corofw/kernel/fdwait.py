"""Waiting for fds: which task waits on which fd, and epoll's interest list.

The kernel keeps ``fd -> [reader, writer, mask, owner]``. An fd stays
registered with epoll between waits; its mask only changes when a task
waits for a direction not yet in it, or when epoll reports a direction
nobody waits for any more. Closing a socket through
:func:`~corofw.kernel.loop.forget_fd` drops the registration.

A socket closed without it leaves the kernel believing in a registration
that epoll dropped on close, and the OS hands the number to the next
socket. ``owner`` (a weak reference to the object last waited on) lets the
kernel notice: when another object turns up with the same number, the
registration is rebuilt. A bare number names no object, so fds waited on
by number must be closed through ``forget_fd``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from .reactor import READABLE, WRITABLE
from .task import BusyResourceError, ClosedResourceError, Task
from .traps import PARKED

_DIRECTIONS = (READABLE, WRITABLE)


class FdWaits:
    """The fd traps of :class:`~corofw.kernel.loop.Kernel` and their undo
    (a mixin: it uses the kernel's ``reactor``, ``_fds``, ``_io_waiters``
    and ``_reschedule_error``)."""

    reactor: Any
    _fds: dict[int, list[Any]]
    _io_waiters: int
    _reschedule_error: Callable[[Task, BaseException], None]

    def _trap_fd(self, slot: int, task: Task, trap: tuple) -> Any:
        """Park ``task`` until the fd of ``trap`` is ready in one direction:
        slot 0 reads (EPOLLIN), slot 1 writes (EPOLLOUT). At most one task
        waits per direction; the fd's mask only grows when it must."""
        fd = trap[1]
        if type(fd) is int:
            owner = None
        else:
            owner = fd
            fd = fd.fileno()
            trap = (trap[0], fd)
        state = self._fds.get(fd)
        if state is None:
            state = self._fds[fd] = [None, None, 0, None if owner is None else _weak(owner)]
        else:
            ref = state[3]
            if (None if ref is None else ref()) is not owner:
                self._rebind(fd, state, owner)
            if state[slot] is not None:
                raise BusyResourceError(
                    f"another task is already waiting to {('read', 'write')[slot]} fd {fd}")
        direction = _DIRECTIONS[slot]
        mask = state[2]
        if not mask & direction:
            self._arm(fd, state, mask | direction)
        state[slot] = task
        self._io_waiters += 1
        task._trap = trap
        return PARKED

    def _undo_fd(self, slot: int, task: Task, trap: tuple) -> None:
        state = self._fds.get(trap[1])
        if state is not None and state[slot] is task:
            state[slot] = None
            self._io_waiters -= 1

    def _trap_fd_either(self, task: Task, trap: tuple) -> Any:
        """Park ``task`` in both slots of an fd until it is readable or
        writable; whichever event comes first frees both slots."""
        fd = trap[1]
        owner = None
        if type(fd) is not int:
            owner = fd
            fd = fd.fileno()
            trap = (trap[0], fd)
        state = self._fds.get(fd)
        if state is None:
            state = self._fds[fd] = [None, None, 0, None if owner is None else _weak(owner)]
        else:
            ref = state[3]
            if (None if ref is None else ref()) is not owner:
                self._rebind(fd, state, owner)
            if state[0] is not None or state[1] is not None:
                raise BusyResourceError(f"another task is already waiting on fd {fd}")
        both = READABLE | WRITABLE
        if state[2] & both != both:
            self._arm(fd, state, state[2] | both)
        state[0] = state[1] = task
        self._io_waiters += 2
        task._trap = trap
        return PARKED

    def _undo_fd_either(self, task: Task, trap: tuple) -> None:
        self._undo_fd(0, task, trap)
        self._undo_fd(1, task, trap)

    def _rebind(self, fd: int, state: list[Any], owner: Any) -> None:
        """``fd`` is waited on through another object than last time. The
        earlier one may have been closed without :func:`forget_fd` (epoll
        then dropped its registration, and the number was reused): so the
        kernel believes nothing of the fd's registration, registers it
        afresh, and a task still waiting on the closed object gets
        :class:`ClosedResourceError` instead of hanging."""
        ref = state[3]
        if ref is not None and _is_closed(ref(), fd):
            self._close_waiters(fd, state)
        state[3] = None if owner is None else _weak(owner)
        if state[2]:
            try:
                self.reactor.unregister(fd)
            except (OSError, ValueError):
                pass  # already gone with the closed object
            state[2] = 0
            live = (READABLE if state[0] is not None else 0) \
                | (WRITABLE if state[1] is not None else 0)
            if live:
                self._arm(fd, state, live)

    def _arm(self, fd: int, state: list[Any], mask: int) -> None:
        reactor = self.reactor
        try:
            if state[2]:
                reactor.modify(fd, mask)
            else:
                reactor.register(fd, mask)
        except FileNotFoundError:
            reactor.register(fd, mask)  # closed and reused behind our back
        except FileExistsError:
            reactor.modify(fd, mask)
        state[2] = mask

    def _disarm(self, fd: int, state: list[Any], direction: int) -> None:
        mask = state[2] & ~direction
        if state[0] is None and state[1] is None:
            mask = 0
        try:
            if mask:
                self.reactor.modify(fd, mask)
            else:
                self.reactor.unregister(fd)
        except OSError:
            mask = 0
        state[2] = mask

    def _forget_fd(self, fd: int) -> None:
        state = self._fds.pop(fd, None)
        if state is None:
            return
        if state[2]:
            try:
                self.reactor.unregister(fd)
            except (OSError, ValueError):
                pass
        self._close_waiters(fd, state)

    def _close_waiters(self, fd: int, state: list[Any]) -> None:
        """Wake the tasks waiting on ``fd`` with ClosedResourceError."""
        reader, writer = state[0], state[1]
        state[0] = state[1] = None
        self._io_waiters -= (reader is not None) + (writer is not None)
        if reader is writer:  # a readwrite_wait holds both slots
            writer = None
        for task in (reader, writer):
            if task is not None:
                task._trap = None
                self._reschedule_error(task, ClosedResourceError(f"fd {fd} was closed"))


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
        return fileno() != fd
    except (OSError, ValueError):
        return True
