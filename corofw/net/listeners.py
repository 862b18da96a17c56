"""Listening sockets besides a TCP host and port: a Unix domain socket, a
socket inherited as an open file descriptor, and the sockets systemd passes
to a socket-activated service.

Each function returns a non-blocking :class:`~corofw.net.Socket` that
listens, or raises :class:`ListenerError` with a one-line reason a person
can act on (an ``OSError`` from ``bind`` or ``listen`` is left as it is).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import MutableMapping

from .sockets import Socket

#: The permissions of a Unix socket file corofw creates: any local user may
#: connect, as to a TCP port on loopback (uvicorn and gunicorn do the same).
#: Restrict access with the permissions of the directory that holds it.
UNIX_SOCKET_MODE = 0o666
#: The first file descriptor systemd passes (``SD_LISTEN_FDS_START``).
SYSTEMD_FIRST_FD = 3
_SERVED_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)


class ListenerError(Exception):
    """A socket that cannot be served, with the reason in one line."""


class UnixListener(Socket):
    """A listening Unix socket bound to a file by :func:`listen_unix`.
    Closing it (every process that shares it closes its copy) leaves the
    file; :meth:`remove` deletes it, once serving is over."""

    __slots__ = ("path", "_identity")

    def __init__(self, sock: socket.socket, path: str) -> None:
        super().__init__(sock)
        self.path = path
        self._identity = _identity(path)

    def remove(self) -> None:
        """Delete the socket file if it is still the one bound here (a
        server started since on the same path keeps its own). Idempotent."""
        if self._identity is not None and _identity(self.path) == self._identity:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        self._identity = None


def listen_unix(path: str, backlog: int = 1024, mode: int = UNIX_SOCKET_MODE) -> UnixListener:
    """Listen on the Unix domain socket ``path``, its file made with
    permissions ``mode``. A socket file that nobody answers on (left by a
    server that died) is replaced; a path that is not a socket, or where a
    server answers, raises :class:`ListenerError`."""
    _clear_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(path)
        except OSError as exc:
            if exc.errno is None:  # "AF_UNIX path too long" has no errno
                raise ListenerError(f"cannot listen on unix:{path}: {exc}") from None
            raise
        try:
            # before listen(): nobody can connect while the mode is the umask's
            os.chmod(path, mode)
            sock.listen(backlog)
            return UnixListener(sock, path)
        except BaseException:
            os.unlink(path)
            raise
    except BaseException:
        sock.close()
        raise


def _clear_stale_socket(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError:
        return  # bind() will tell what is wrong with the path
    if not stat.S_ISSOCK(mode):
        raise ListenerError(f"cannot listen on unix:{path}: the path exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        code = probe.connect_ex(path)
    if code == errno.ECONNREFUSED:  # nobody listens: a dead server's file
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    elif code == errno.ENOENT:
        pass  # removed meanwhile
    elif code in (0, errno.EAGAIN, errno.EINPROGRESS):  # EAGAIN: its backlog is full
        raise ListenerError(f"cannot listen on unix:{path}: a server is already listening there")
    else:
        raise ListenerError(f"cannot listen on unix:{path}: {os.strerror(code).lower()}")


def _identity(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISSOCK(info.st_mode) else None


def inherited_listener(fd: int, what: str | None = None) -> Socket:
    """The listening stream socket open as ``fd`` (passed by the parent
    process; TCP or Unix, the family is read from the socket), as a
    non-blocking :class:`Socket` that owns the fd. It is made
    close-on-exec so that programs the app starts do not inherit it.
    ``what`` names the fd in errors (default ``"fd N"``)."""
    what = what or f"fd {fd}"
    try:
        info = os.fstat(fd)
    except OSError:
        raise ListenerError(f"cannot serve on {what}: it is not open") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise ListenerError(f"cannot serve on {what}: it is not a socket")
    sock = socket.socket(fileno=fd)  # family and type are read from the fd
    try:
        if sock.type != socket.SOCK_STREAM:
            raise ListenerError(f"cannot serve on {what}: it is not a stream socket")
        if sock.family not in _SERVED_FAMILIES:
            raise ListenerError(f"cannot serve on {what}: it is not a TCP or Unix socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ListenerError(f"cannot serve on {what}: the socket is not listening")
        sock.set_inheritable(False)
        return Socket(sock)
    except BaseException:
        sock.detach()  # the fd stays open: it is not ours to close unless served
        raise


def systemd_listen_fds(environ: MutableMapping[str, str] | None = None,
                       pid: int | None = None) -> list[tuple[int, str]]:
    """The sockets systemd passed to this process for socket activation,
    as ``(fd, name)`` pairs (fds 3, 4, ...; the names from
    ``LISTEN_FDNAMES``, or ``""``), empty when it passed none.

    As ``sd_listen_fds(1)`` does, the variables ``LISTEN_PID``,
    ``LISTEN_FDS`` and ``LISTEN_FDNAMES`` are removed from ``environ``
    (default ``os.environ``) so that child processes do not take the
    sockets as theirs; they count only when ``LISTEN_PID`` is this
    process (``pid``, default ``os.getpid()``). A ``LISTEN_FDS`` that is
    not a whole number raises :class:`ListenerError`."""
    environ = os.environ if environ is None else environ
    listen_pid = environ.pop("LISTEN_PID", None)
    count_text = environ.pop("LISTEN_FDS", None)
    names_text = environ.pop("LISTEN_FDNAMES", None)
    if listen_pid is None or count_text is None:
        return []
    if not listen_pid.strip().isdigit() or int(listen_pid) != (pid or os.getpid()):
        return []  # meant for another process
    text = count_text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        raise ListenerError(f"LISTEN_FDS must be a number of sockets, not {count_text!r}")
    count = int(text)
    names = names_text.split(":") if names_text else []
    if len(names) != count:
        names = [""] * count
    return [(SYSTEMD_FIRST_FD + i, names[i]) for i in range(count)]


def describe_listener(listener: Socket) -> str:
    """Where ``listener`` listens, as a log line says it:
    ``http://127.0.0.1:8000``, ``http://[::1]:8000`` or ``unix:/run/app.sock``
    (``unix:@name`` for an abstract socket)."""
    address = listener.getsockname()
    if isinstance(address, tuple):
        host, port = address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    if isinstance(address, bytes):  # Linux abstract namespace: a leading NUL
        address = "@" + address[1:].decode("utf-8", "backslashreplace")
    return f"unix:{address or '(unnamed)'}"


__all__ = ["SYSTEMD_FIRST_FD", "UNIX_SOCKET_MODE", "ListenerError", "UnixListener",
           "describe_listener", "inherited_listener", "listen_unix", "systemd_listen_fds"]
