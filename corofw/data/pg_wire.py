"""libpq driven by the kernel: every wait is a kernel fd wait.

libpq (through psycopg's binding ``psycopg.pq``) speaks the protocol; this
module only decides when to call it and what to wait for, the way psycopg's
own ``generators.py`` does for its waiting functions:

- connecting: ``connect_poll`` says whether to wait for reading or writing;
- sending: libpq queues the message and writes what the socket takes;
  while ``flush`` reports more to write, wait for *either* direction
  (:func:`~corofw.kernel.traps.readwrite_wait`) and consume input too, so a
  server blocked on sending results to us never deadlocks a long pipeline;
- reading: wait readable, ``consume_input``, and take results once libpq is
  no longer busy.

libpq closes sockets behind our back (a failed connection attempt, a lost
connection), while the kernel keeps fds registered with epoll between waits.
So every fd libpq might close is forgotten (:func:`forget_fd`) first: after
each wait while connecting, and before ``finish``.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq.abc import PGconn, PGresult

from ..kernel.costs import label_fd
from ..kernel.fdwait import forget_fd
from ..kernel.task import TaskTimeout
from ..kernel.timeouts import timeout_after
from ..kernel.traps import Coro, read_wait, readwrite_wait, run_in_thread, write_wait
from ..net.sockets import is_numeric_host, resolve
from .pg_errors import ConnectError, InterfaceError, PgError, one_line
from .pg_record import Notification

log = logging.getLogger("corofw.data.pg")

LibpqError = psycopg.Error  # what psycopg.pq raises when a libpq call fails

_POLL_OK = pq.PollingStatus.OK
_POLL_READING = pq.PollingStatus.READING
_POLL_FAILED = pq.PollingStatus.FAILED
_BAD = pq.ConnStatus.BAD
_OK = pq.ConnStatus.OK
_FATAL = pq.ExecStatus.FATAL_ERROR
_SYNC = pq.ExecStatus.PIPELINE_SYNC
_COPY_IN = pq.ExecStatus.COPY_IN
_COPY_OUT = pq.ExecStatus.COPY_OUT
_COPY_BOTH = pq.ExecStatus.COPY_BOTH
_COPY = (_COPY_IN, _COPY_OUT, _COPY_BOTH)
_IDLE = pq.TransactionStatus.IDLE

#: libpq 17 cancels over a connection of its own that can be polled; older
#: versions only offer the blocking PQcancel (run in a thread, then).
NONBLOCKING_CANCEL = pq.version() >= 170000 and hasattr(pq.PGconn, "cancel_conn")
#: libpq 17 can close a prepared statement with a protocol message, which
#: never fails (DEALLOCATE fails inside a failed transaction, say).
CLOSE_MESSAGE = pq.version() >= 170000 and hasattr(pq.PGconn, "send_close_prepared")


def _poll_until_done(poll: Callable[[], int], socket: Callable[[], int],
                     failed: Callable[[], str],
                     label: Callable[[], str] | None = None) -> Coro[None]:
    """Drive a libpq ``*_poll`` function to the end: wait for the direction
    it asks for, forget the fd (the next poll may close it and open
    another), poll again. ``label`` names the waits in request costs."""
    while True:
        status = poll()
        if status == _POLL_OK:
            return
        if status == _POLL_FAILED:
            raise ConnectError(failed())
        fd = socket()
        if label is not None:
            label_fd(fd, label())
        try:
            yield read_wait(fd) if status == _POLL_READING else write_wait(fd)
        finally:
            forget_fd(fd)


def open_pgconn(conninfo: str) -> Coro[PGconn]:
    """Connect without blocking and return the PGconn, in non-blocking mode.

    Raises :class:`ConnectError` with libpq's reason on one line.
    """
    pgconn = pq.PGconn.connect_start(conninfo.encode())

    def reason() -> str:
        return f"cannot connect to PostgreSQL: {one_line(pgconn.get_error_message())}"

    try:
        if pgconn.status == _BAD:
            raise ConnectError(reason())
        yield from _poll_until_done(pgconn.connect_poll, lambda: pgconn.socket, reason,
                                    lambda: f"postgresql {_where(pgconn)}")
        pgconn.nonblocking = 1
    except BaseException:
        pgconn.finish()
        raise
    return pgconn


def make_conninfo_utf8(dsn: str, params: dict[str, Any]) -> str:
    """``dsn`` (a ``postgresql://`` URL or ``key=value`` string) merged with
    ``params``, asking the server for UTF-8."""
    try:
        return make_conninfo(dsn, client_encoding="utf8", **params)
    except psycopg.Error:
        # psycopg's message may quote the string, password included
        raise InterfaceError("invalid PostgreSQL connection string or parameters "
                             "(expected a postgresql:// URL or key=value pairs)") from None


def resolve_hosts(conninfo: str) -> Coro[str]:
    """Resolve host names here (off the loop, in a thread) and hand libpq
    every address as ``hostaddr``, since libpq would resolve them with a
    blocking call; it then tries them in order, as it would have. Numeric
    addresses and socket directories need nothing."""
    params = conninfo_to_dict(conninfo)
    names = str(params.get("host") or "").split(",")
    if params.get("hostaddr") or all(_needs_no_lookup(name) for name in names):
        return conninfo
    ports = str(params.get("port") or "").split(",")
    hosts: list[str] = []
    addresses: list[str] = []
    host_ports: list[str] = []
    for index, name in enumerate(names):
        port = ports[index] if len(ports) == len(names) else ports[0]
        if _needs_no_lookup(name):
            found = [name if is_numeric_host(name) else ""]
        else:
            try:
                infos = yield from resolve(name, int(port or 5432))
            except OSError as exc:
                raise ConnectError(f"cannot connect to PostgreSQL: cannot resolve host "
                                   f"{name!r}: {exc}") from None
            found = list(dict.fromkeys(info[4][0] for info in infos))
        for address in found:
            hosts.append(name)
            addresses.append(address)
            host_ports.append(port)
    if any(host_ports):
        return make_conninfo(conninfo, host=",".join(hosts), hostaddr=",".join(addresses),
                             port=",".join(host_ports))
    return make_conninfo(conninfo, host=",".join(hosts), hostaddr=",".join(addresses))


def _needs_no_lookup(host: str) -> bool:
    return not host or host.startswith(("/", "@")) or is_numeric_host(host)


def open_connection(conninfo: str, timeout: float | None) -> Coro[PGconn]:
    """Resolve and connect within ``timeout`` seconds (None: no limit)."""
    conninfo = yield from resolve_hosts(conninfo)
    if timeout is None:
        return (yield from open_pgconn(conninfo))
    try:
        return (yield from timeout_after(timeout, open_pgconn(conninfo)))
    except TaskTimeout:
        params = conninfo_to_dict(conninfo)
        where = f"{params.get('host') or 'local socket'}:{params.get('port') or 5432}"
        raise ConnectError(f"cannot connect to PostgreSQL at {where}: no answer within "
                           f"{timeout:g} s") from None


def canceller(pgconn: PGconn) -> Callable[[], Coro[None]]:
    """A coroutine function asking the server to cancel what ``pgconn`` runs.

    What it needs is taken now, so it still works once ``pgconn`` is
    closed. It returns when the server has taken the request (libpq 17+:
    a non-blocking cancel connection, whose closing by the server says the
    backend was signalled); with an older libpq, the blocking ``PQcancel``
    runs in a thread.
    """
    if NONBLOCKING_CANCEL:
        cancel_conn = pgconn.cancel_conn()

        def send() -> Coro[None]:
            try:
                cancel_conn.start()
                yield from _poll_until_done(
                    cancel_conn.poll, lambda: cancel_conn.socket,
                    lambda: f"cancel request failed: {one_line(cancel_conn.get_error_message())}")
            finally:
                cancel_conn.finish()

        return send
    pgcancel = pgconn.get_cancel()
    return lambda: run_in_thread(pgcancel.cancel)


class Wire:
    """One open libpq connection and its socket: send, flush, read results
    and collect notifications. It knows nothing of types or statements."""

    __slots__ = ("pgconn", "fd", "notifications", "listening", "fatal", "__weakref__")

    def __init__(self, pgconn: PGconn) -> None:
        self.pgconn = pgconn
        self.fd = pgconn.socket
        label_fd(self.fd, f"postgresql {_where(pgconn)}")
        self.notifications: deque[Notification] = deque()
        self.listening = False
        self.fatal: str | None = None  # a FATAL error the server sent while we were idle
        pgconn.notice_handler = _notice_handler(weakref.ref(self))

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self.fd < 0

    def close(self) -> None:
        """Drop the fd from epoll, then let libpq close it. Idempotent."""
        if self.fd >= 0:
            forget_fd(self.fd)
            self.fd = -1
            self.pgconn.finish()

    def broken(self) -> bool:
        """True once libpq has given the connection up (it may have closed
        the socket already), or the server said it is ending the session."""
        return self.fd < 0 or self.pgconn.status == _BAD or self.fatal is not None

    def consume(self) -> None:
        """Read what the server sent, without waiting; keep notifications."""
        pgconn = self.pgconn
        pgconn.consume_input()
        if self.listening:
            while (notify := pgconn.notifies()) is not None:
                self.notifications.append(Notification(
                    notify.relname.decode("utf-8", "replace"),
                    notify.extra.decode("utf-8", "replace"), notify.be_pid))

    def flush(self) -> Coro[None]:
        """Write libpq's queued output. While the socket is full, wait for
        either direction and read what arrives, so that a server stalled
        sending us results can go on reading our commands."""
        pgconn = self.pgconn
        while pgconn.flush():
            yield readwrite_wait(self.fd)
            self.consume()

    def wait_readable(self) -> Coro[None]:
        """Wait for input and consume it."""
        yield read_wait(self.fd)
        self.consume()

    def results(self) -> Coro[list[PGresult]]:
        """The results of one command, up to libpq's end-of-command marker.

        A server that reports a FATAL error and hangs up leaves that error
        as the last result, rather than the bare loss of the connection.
        """
        pgconn = self.pgconn
        results: list[PGresult] = []
        while True:
            if pgconn.is_busy():
                try:
                    yield read_wait(self.fd)
                    self.consume()
                except LibpqError:
                    if any(r.status == _FATAL for r in results):
                        return results
                    raise
                continue
            result = pgconn.get_result()
            if result is None:
                return results
            status = result.status
            if status in _COPY:
                yield from self._refuse_copy(status)
                continue
            results.append(result)

    def pipeline_results(self) -> Coro[list[list[PGresult]]]:
        """The results of a pipeline, one list per command, up to its sync."""
        pgconn = self.pgconn
        groups: list[list[PGresult]] = []
        group: list[PGresult] = []
        while True:
            if pgconn.is_busy():
                yield read_wait(self.fd)
                self.consume()
                continue
            result = pgconn.get_result()
            if result is None:
                groups.append(group)
                group = []
            elif result.status == _SYNC:
                return groups
            else:
                group.append(result)

    def _refuse_copy(self, status: int) -> Coro[None]:
        """COPY is not supported: end a COPY FROM with an error, read a COPY
        TO to its end, so the connection stays usable."""
        pgconn = self.pgconn
        if status != _COPY_OUT:
            pgconn.put_copy_end(b"COPY is not supported by corofw's PostgreSQL client")
            yield from self.flush()
            return
        while True:
            size, _ = pgconn.get_copy_data(1)
            if size == -1:
                return
            if size == 0:
                yield from self.wait_readable()

    def idle_and_alive(self) -> bool:
        """Without waiting: is the connection still open, idle and outside a
        transaction? Reads whatever the server sent meanwhile (a closed
        socket shows up here as an error)."""
        if self.fd < 0:
            return False
        pgconn = self.pgconn
        try:
            self.consume()
            busy = pgconn.is_busy()  # parses what came: a FATAL notice marks us
        except LibpqError:
            return False
        return self.fatal is None and pgconn.status == _OK and not busy \
            and pgconn.transaction_status == _IDLE


def _notice_handler(wire: weakref.ref[Wire]) -> Callable[[PGresult], None]:
    """Log the server's notices; a FATAL one (the session is being
    terminated: shutdown, pg_terminate_backend) marks the connection dead
    before the end of the stream shows up."""

    def handle(result: PGresult) -> None:
        message = one_line(result.get_error_message("utf-8"))
        severity = result.error_field(pq.DiagnosticField.SEVERITY_NONLOCALIZED)
        if severity in (b"FATAL", b"PANIC"):
            owner = wire()
            if owner is not None:
                owner.fatal = message
        log.debug("server notice: %s", message)

    return handle


def quote_identifier(pgconn: PGconn, name: str) -> str:
    """``name`` as a quoted SQL identifier (for LISTEN and NOTIFY channels)."""
    try:
        return pq.Escaping(pgconn).escape_identifier(name.encode()).decode()
    except LibpqError as exc:
        raise PgError(f"cannot quote identifier: {exc}") from None


def describe(pgconn: Any) -> str:
    """Where a connection goes, for logs: host:port/database (no secrets)."""
    try:
        host = pgconn.host.decode() or "local socket"
        return f"{host}:{pgconn.port.decode()}/{pgconn.db.decode()}"
    except Exception:
        return "?"


def _where(pgconn: PGconn) -> str:
    """``host:port`` of ``pgconn``, for request costs."""
    host, port = pgconn.host, pgconn.port
    return (f"{host.decode('utf-8', 'replace') if host else ''}:"
            f"{port.decode('utf-8', 'replace') if port else ''}")
